"""Tunnel ids by outer endpoint, shared by every entry that uses them.

Many MNs share the tunnel to one MAG (or LMA, or RO peer): the registry
hands out one id per distinct Tunnel, counts its users, and removes the
tunnel — and the peer entry that authorises decapsulation from it — when
the last user lets go. On start it adopts what the pinned maps hold, so a
restarted daemon keeps the ids the data plane is using.

A remote end is one kind of peer at a time (its LMA, a MAG, an RO peer): a
tunnel of another kind toward an end in use is refused (TunnelConflict), so
an RO binding can never turn the LMA tunnel into an RO tunnel, whatever the
node core let through (docs/security.md)."""

from __future__ import annotations

from ..dataplane import PeerKind, Tables
from ..transport import Encap, Tunnel


class TunnelConflict(Exception):
    """A tunnel of one kind toward a remote end in use as another kind."""


class TunnelRegistry:
    def __init__(self, tables: Tables):
        self.tables = tables
        self._ids: dict[Tunnel, int] = {t: i for i, t in tables.list_tunnels().items()}
        self._users: dict[int, set[str]] = {i: set() for i in self._ids.values()}
        self._kinds: dict[int, PeerKind] = {p.tunnel_id: p.kind for p in tables.list_peers()}
        self._ends: dict[tuple, set[int]] = {}       # (remote, peer port) -> the tunnel ids toward it
        for tunnel, tunnel_id in self._ids.items():
            self._ends.setdefault(self._end(tunnel), set()).add(tunnel_id)

    def acquire(self, tunnel: Tunnel, user: str, kind: PeerKind) -> int:
        """The id of tunnel (created if new), now also used by user; the
        tunnel's remote end may send us tunnelled traffic as a peer of kind."""
        self._check_kind(tunnel, kind)
        tunnel_id = self._ids.get(tunnel)
        if tunnel_id is None:
            tunnel_id = self._free_id()
            self.tables.set_tunnel(tunnel_id, tunnel)
            self._ids[tunnel] = tunnel_id
            self._users[tunnel_id] = set()
            self._ends.setdefault(self._end(tunnel), set()).add(tunnel_id)
        self._users[tunnel_id].add(user)
        if self._kinds.get(tunnel_id) != kind:
            self.tables.set_peer(tunnel.remote, tunnel_id, kind, port=self._peer_port(tunnel))
            self._kinds[tunnel_id] = kind
        return tunnel_id

    def _check_kind(self, tunnel: Tunnel, kind: PeerKind) -> None:
        for tunnel_id in self._ends.get(self._end(tunnel), ()):
            held = self._kinds.get(tunnel_id)
            if held not in (None, kind) and self._users[tunnel_id]:
                raise TunnelConflict(f"{tunnel.remote} is in use as a {held.name} peer (tunnel {tunnel_id}); "
                                     f"it cannot also be an {kind.name} peer")

    def release(self, tunnel_id: int, user: str) -> None:
        users = self._users.get(tunnel_id)
        if users is None:
            return
        users.discard(user)
        if not users:
            self._remove(tunnel_id)

    def forget_unused(self) -> None:
        """After a restart and state restore: drop adopted tunnels nobody claimed."""
        for tunnel_id in [i for i, users in self._users.items() if not users]:
            self._remove(tunnel_id)

    def _remove(self, tunnel_id: int) -> None:
        tunnel = self.tunnel(tunnel_id)
        self.tables.remove_peer(tunnel.remote, port=self._peer_port(tunnel))
        self.tables.remove_tunnel(tunnel_id)
        del self._ids[tunnel], self._users[tunnel_id]
        self._kinds.pop(tunnel_id, None)
        ends = self._ends[self._end(tunnel)]
        ends.discard(tunnel_id)
        if not ends:
            del self._ends[self._end(tunnel)]

    def id_of(self, tunnel: Tunnel) -> int:
        """The id of a tunnel in use (KeyError when nobody acquired it)."""
        return self._ids[tunnel]

    def tunnel(self, tunnel_id: int) -> Tunnel | None:
        return next((t for t, i in self._ids.items() if i == tunnel_id), None)

    def items(self):
        return [(i, t, sorted(self._users[i])) for t, i in sorted(self._ids.items(), key=lambda kv: kv[1])]

    @classmethod
    def _end(cls, tunnel: Tunnel) -> tuple:
        return tunnel.remote, cls._peer_port(tunnel)

    @staticmethod
    def _peer_port(tunnel: Tunnel) -> int:
        return tunnel.dport if tunnel.encap == Encap.UDP4 else 0

    def _free_id(self) -> int:
        used = set(self._ids.values())
        for candidate in range(1, self.tables.tunnels.max_entries):
            if candidate not in used:
                return candidate
        raise RuntimeError("no free tunnel slot: raise dataplane.max_tunnels")
