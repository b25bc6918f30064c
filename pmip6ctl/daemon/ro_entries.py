"""RO entries in the data plane, shared by the MAG (initiator and responder)
and the CN agent.

A pair may be held by both roles at once (both MAGs saw the flow and both
started RO): the entry stays while either role holds it. Each role keeps the
tunnel its own exchange set up — the two MAGs may have chosen different
transports (an IPv4-transport MAG answers over IPv4 a peer that reached it
over IPv6) — so that the peer entries of both let the peer's tunnelled
traffic in (PeerKind.RO); our own traffic takes the initiator's tunnel. A
tunnel is shared by every pair with that peer.

When the last role of a pair goes, the entry drains for DRAIN_SECONDS before
it is removed, whichever side ended it: our traffic takes the LMA path at
once, and what the peer sent before it heard of the end (or before it told
us) is still let in (RO_DRAINING)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from ..dataplane import PeerKind
from ..dataplane.tables import RO_DRAINING, deadline_ns
from ..transport import PMIP6_UDP_PORT, Encap, Tunnel
from ..protocol.ro import RoInstalled, RoPair, SavedAttempt, SavedResponder
from ..statefile import from_jsonable
from .persist import Table
from ..protocol.vocabulary import Mode, Role

log = logging.getLogger("pmip6ctl.ro")

# Longer than a packet in flight between RO peers plus their handling of our
# deregistration BU (or BE).
DRAIN_SECONDS = 2.0


@dataclass
class RoleBinding:
    peer: object
    tunnel_id: int
    expires: float


@dataclass
class InstalledPair:
    pair: RoPair
    mode: Mode
    by_role: dict[Role, RoleBinding] = field(default_factory=dict)
    installed: float = field(default_factory=time.time)

    @property
    def roles(self) -> set[Role]:
        return set(self.by_role)

    @property
    def sending(self) -> RoleBinding:
        return self.by_role.get(Role.INITIATOR) or self.by_role[Role.RESPONDER]

    @property
    def peer(self):
        return self.sending.peer

    @property
    def tunnel_id(self) -> int:
        return self.sending.tunnel_id

    @property
    def expires(self) -> float:
        return max(binding.expires for binding in self.by_role.values())


class RoEntries:
    def __init__(self, tables, tunnels, local_ipv6, local_ipv4=None, later=None):
        """later(seconds, callback): the event loop's call_later; None removes
        a stopped pair's entry at once (no draining)."""
        self.tables = tables
        self.tunnels = tunnels
        self.local_ipv6 = local_ipv6
        self.local_ipv4 = local_ipv4
        self.later = later
        self.pairs: dict[RoPair, InstalledPair] = {}
        self.draining: dict[RoPair, tuple[int, str]] = {}    # pair -> (tunnel id, its user) until removed

    def tunnel_for(self, action: RoInstalled) -> Tunnel:
        """IPv6 between proxy CoAs; IPv6/IPv4-in-IPv4 between the IPv4 proxy
        CoAs when the exchange ran over IPv4, inside UDP toward the NAT's
        mapping when a NAT is on the path (draft §2.3.2, DESIGN §3)."""
        endpoint = action.peer_ipv4
        if endpoint is None or self.local_ipv4 is None:
            return Tunnel(Encap.IP6, self.local_ipv6, action.peer)
        if action.nat:
            return Tunnel(Encap.UDP4, self.local_ipv4, endpoint.address, PMIP6_UDP_PORT, endpoint.port)
        return Tunnel(Encap.IP4, self.local_ipv4, endpoint.address)

    def install(self, action: RoInstalled) -> InstalledPair:
        pair, role = action.pair, action.role
        tunnel_id = self.tunnels.acquire(self.tunnel_for(action), self._user(pair, role), PeerKind.RO)
        entry = self.pairs.setdefault(pair, InstalledPair(pair, action.mode))
        drained = self.draining.pop(pair, None)
        previous = entry.by_role.get(role)
        entry.by_role[role] = RoleBinding(action.peer, tunnel_id, action.expires)
        entry.mode = action.mode
        self._program(entry)
        if previous is not None and previous.tunnel_id != tunnel_id:     # only once the entry left it
            self.tunnels.release(previous.tunnel_id, self._user(pair, role))
        if drained is not None:
            self.tunnels.release(*drained)
        log.info("RO %s via %s (%s, %s, %d s)", pair, action.peer, role, action.mode, action.lifetime)
        return entry

    def remove(self, pair: RoPair, role: Role, reason) -> bool:
        """True when the entry is gone from the data plane."""
        entry = self.pairs.get(pair)
        binding = entry.by_role.pop(role, None) if entry else None
        if binding is None:
            return False
        if entry.by_role:
            self._program(entry)     # onto the other role's tunnel before this one may go
            self.tunnels.release(binding.tunnel_id, self._user(pair, role))
            return False
        del self.pairs[pair]
        log.info("RO %s removed (%s): back to the LMA path", pair, reason)
        # Drained also when the peer ended the pair: it stopped sending before
        # it told us, but its last packets and its message take different
        # paths (another 5-tuple) and may arrive in either order.
        if self.later is None:
            self.tables.remove_ro(pair.local, pair.remote)
            self.tunnels.release(binding.tunnel_id, self._user(pair, role))
            return True
        # the data plane drops it by itself at the end, should this daemon not be there to
        expires_ns = deadline_ns(DRAIN_SECONDS)
        self.tables.set_ro(pair.local, pair.remote, binding.tunnel_id, expires_ns, draining=True)
        token = (binding.tunnel_id, f"draining {pair}")     # its own user: a new install of the pair may
        self.tunnels.acquire(self.tunnels.tunnel(binding.tunnel_id), token[1], PeerKind.RO)   # reuse the role's
        self.tunnels.release(binding.tunnel_id, self._user(pair, role))
        self.draining[pair] = token
        self.later(DRAIN_SECONDS, lambda: self._drained(pair, token))
        return True

    def send_only_once_heard(self, pair: RoPair) -> bool:
        """A pair we only answer for: send by the LMA path again until the
        peer's next tunnelled packet (RO_RX_ONLY, which XDP clears). An entry
        we initiated is left alone: its refresh tells."""
        entry = self.pairs.get(pair)
        if entry is None or Role.INITIATOR in entry.roles:
            return False
        self._program(entry, reconfirm=True)
        log.info("RO %s: the peer may have lost it, our side takes the LMA path until it is heard", pair)
        return True

    def forget_lapsed(self) -> None:
        """At start: a draining entry the last daemon did not live to remove,
        and entries whose lifetime is over (the data plane already ignores
        them), leave the map. Live ones go on forwarding until they lapse."""
        now_ns = time.monotonic_ns()
        for entry in self.tables.list_ro():
            lapsed = entry.expires_ns and entry.expires_ns <= now_ns
            if (lapsed or entry.flags & RO_DRAINING) and RoPair(entry.local, entry.remote) not in self.pairs:
                self.tables.remove_ro(entry.local, entry.remote)

    def forget_unknown(self) -> list[RoPair]:
        """After the store is restored: an entry of a pair it does not hold
        (installed, but not committed, before a crash; or ended while no
        daemon ran) leaves the map. The pairs removed."""
        stale = [RoPair(e.local, e.remote) for e in self.tables.list_ro()]
        stale = [pair for pair in stale if pair not in self.pairs]
        for pair in stale:
            self.tables.remove_ro(pair.local, pair.remote)
        return stale

    def _drained(self, pair: RoPair, token: tuple[int, str]) -> None:
        if self.draining.get(pair) is not token:
            return                       # installed again meanwhile: the new entry stands
        del self.draining[pair]
        self.tables.remove_ro(pair.local, pair.remote)
        self.tunnels.release(*token)

    def _program(self, entry: InstalledPair, reconfirm: bool = False) -> None:
        # the XDP programs drop the entry themselves once its lifetime is over
        expires_ns = deadline_ns(entry.expires - time.time())
        # The responder installs before its BA reaches the initiator: it sends
        # nothing into the tunnel until the initiator's first packet arrives
        # there, else its packets would meet a peer that does not know it yet.
        other_tunnels = {b.tunnel_id for b in entry.by_role.values()} - {entry.tunnel_id}
        self.tables.set_ro(entry.pair.local, entry.pair.remote, entry.tunnel_id, expires_ns,
                           rx_only=Role.INITIATOR not in entry.roles, also_from_tunnel=min(other_tunnels, default=0),
                           reconfirm=reconfirm)

    @staticmethod
    def _user(pair: RoPair, role: Role) -> str:
        return f"ro {pair} ({role})"

    def rows(self) -> list[dict]:
        now = time.time()
        return [{"local": str(e.pair.local), "remote": str(e.pair.remote), "peer": str(e.peer),
                 "tunnel": e.tunnel_id, "transport": self.tunnels.tunnel(e.tunnel_id).encap.name.lower(),
                 "mode": e.mode, "roles": sorted(e.roles), "expires_in": round(e.expires - now, 1)}
                for e in self.pairs.values()]


def ro_tables(*, responder, initiator=None) -> list[Table]:
    """The RO pairs a node keeps in its store: as the initiator (established
    pairs), as the responder, and the responder's replay Timestamps."""
    tables = [] if initiator is None else [
        Table("ro_initiator", ("ro", "initiator"), initiator.changed, initiator.saved)]
    return tables + [
        Table("ro_responder", ("ro", "responder", "bindings"), responder.changed, responder.bindings.get),
        Table("ro_replay", ("ro", "responder", "replay"), responder.replay_changed, responder.saved_replay)]


def saved_ro(data: dict) -> dict:
    """The stored RO pairs ({"initiator": [...], "responder": {"bindings", "replay"}}), typed again."""
    responder = data.get("responder")
    return {"initiator": [from_jsonable(SavedAttempt, s) for s in data.get("initiator", [])],
            "responder": from_jsonable(SavedResponder, responder) if responder else None}
