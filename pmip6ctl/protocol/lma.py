"""LmaNode: the whole local mobility anchor, sans-I/O.

It combines the binding cache (binding_cache.py: PBU/PBA), the answer to
a MAG's RO query (ro_query.py, DESIGN §2) and the query between LMAs
(inter_lma.py, scenario 2), and holds the rules that join them:

- which core a message goes to (a table keyed by message type; an LRI from
  a peer LMA is a peer's question, from anyone else a MAG's);
- a MAG's query for a CN this LMA does not anchor goes on to the peer LMAs;
- a binding that moves or ends tells the peer LMAs that asked about it;
- which tunnel carries an MN's traffic to its MAG (RFC 5844 §4: IPv4, in
  UDP to the NAT's mapping when there is one), and an entry for each
  serving MAG's own proxy CoA toward its tunnel (draft §2.1.1.2: the CoTI
  and CoT over IPv4 transport travel the LMA tunnels).

The daemon (daemon/lma.py) applies what it returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from typing import Callable, Mapping

from .. import wire
from ..actions import Command, Notification
from ..security import PeerKey
from ..transport import PMIP6_UDP_PORT, Arrival, Encap, Send, Tunnel, UdpEndpoint
from .binding_cache import (BindingCache, BindingCacheEntry, BindingRemoved, BindingUpdated, LmaPolicy,
                            mobile_node_identifier)
from .auth import AuthFailure, SignalingGuard, SignalingRefused
from .common import Deadlines, Stamper, earliest
from .handover import BufferPolicy, DownlinkHold, DropReason, HeldDropped, PacketsHeld, destination_of, granted
from .heartbeat import OFF, HeartbeatPolicy, Liveness, PeerKind
from .index import PrefixIndex
from .inter_lma import MAX_CACHED, MAX_PENDING, InterLmaQuery, Relayed
from .limits import Bounded, counts_of
from .node import Node, StateChanged, with_state_change
from .ro_query import answer_lri
from .vocabulary import MessageKind, QueryOutcome, RelayOutcome, message_kind

Address = IPv6Address | IPv4Address


@dataclass(frozen=True)
class InstallBinding(Command):
    """Point the MN's prefix and IPv4 home address at the tunnel to its
    serving MAG (created if new; the previous one released if it moved)."""
    mn_id: str
    hnp: IPv6Network
    ipv4_hoa: IPv4Address | None
    tunnel: Tunnel
    proxy_coa: IPv6Address
    moved: bool = False                    # a handover to another MAG, or a new NAT mapping
    held: bool = False                     # the MN's downlink is held: its prefix stays marked (the
                                           # uplink from the tunnel passes) until the release


@dataclass(frozen=True)
class HoldBinding(Command):
    """The MN is between two MAGs: mark its prefix and IPv4 home address
    held (XDP hands what arrives for them to the downlink hold) and release
    its tunnel."""
    mn_id: str
    hnp: IPv6Network
    ipv4_hoa: IPv4Address | None
    keep_tunnel: bool = False              # a pending move: the old MAG's tunnel stays (its uplink passes)


@dataclass(frozen=True)
class RemoveBinding(Command):
    """Take the MN's prefix and IPv4 home address out; release its tunnel."""
    mn_id: str
    hnp: IPv6Network
    ipv4_hoa: IPv4Address | None


@dataclass(frozen=True)
class RouteMagAddress(Command):
    """An entry for a serving MAG's own proxy CoA toward its tunnel (None:
    remove it: no MN is bound through that MAG any more)."""
    address: IPv6Address
    tunnel: Tunnel | None


@dataclass(frozen=True)
class QueryAnswered(Notification):
    """How a MAG's RO query was answered (or that it went on to the peers)."""
    mag: IPv6Address
    outcome: QueryOutcome | RelayOutcome


@dataclass(kw_only=True)
class LmaNodePolicy:
    binding_cache: LmaPolicy
    ro_allowed: Callable[[Address, Address], bool] = lambda mn, cn: True    # [[lma.ro_policy]]
    peers: Mapping[IPv6Address, PeerKey] = field(default_factory=dict)      # peer LMAs (scenario 2)
    max_pending_queries: int = MAX_PENDING                                 # [lma] max_pending_queries
    heartbeat: HeartbeatPolicy = OFF                                       # [heartbeat]: toward serving MAGs
    max_cached_answers: int = MAX_CACHED                                   # [lma] max_cached_answers
    # Both MNs at the asking MAG: may it route between them locally (RFC 6705)? [lma] local_routing
    local_routing: Callable[[Address, Address], bool] = lambda mn, cn: True
    # The downlink hold ([lma] hold_*): off unless configured.
    hold: BufferPolicy = field(default_factory=lambda: BufferPolicy(enabled=False))
    hold_release_delay: float = 0.05                                       # [lma] hold_release_delay


@dataclass
class _Held:
    """An MN between two MAGs: what its marks cover, and where its packets
    go once a binding is accepted (tunnel, at release_at)."""
    hnp: IPv6Network
    ipv4_hoa: IPv4Address | None
    tunnel: Tunnel | None = None
    proxy_coa: IPv6Address | None = None
    release_at: float | None = None


class LmaNode(Node):
    role = "lma"

    def __init__(self, policy: LmaNodePolicy, guard: SignalingGuard | None = None):
        self.policy = policy
        self.guard = guard
        self.cache = BindingCache(policy.binding_cache, stamper=guard.stamper if guard else None)
        self.inter_lma = InterLmaQuery(policy.binding_cache.address, dict(policy.peers),
                                       stamper=guard.stamper if guard else Stamper(),
                                       max_pending=policy.max_pending_queries, max_cached=policy.max_cached_answers)
        # each serving MAG's proxy CoA -> (MN -> tunnel) of the bindings through it,
        # and each MN's serving MAG there (issue 14: a binding change finds its MAG at once)
        self._through_mag: dict[IPv6Address, dict[str, Tunnel]] = {}
        self._mag_of: dict[str, IPv6Address] = {}
        self._mag_routes: dict[IPv6Address, Tunnel] = {}
        # liveness of the serving MAGs (RFC 5847), and where their IPv4 signaling goes
        self.liveness = Liveness(policy.heartbeat)
        self._mag_ipv4: dict[IPv6Address, UdpEndpoint | None] = {}
        # the downlink hold: the packets, the MNs between MAGs, their addresses, their releases
        self.hold = DownlinkHold(policy.hold)
        self.held: dict[str, _Held] = {}
        self._held_index: PrefixIndex[str] = PrefixIndex()
        self._releases = Deadlines()

    @property
    def bindings(self) -> dict[str, BindingCacheEntry]:
        return self.cache.bindings

    @property
    def mag_routes(self):
        """The serving MAGs' proxy CoAs that have an entry toward their tunnel."""
        return self._mag_routes.keys()

    def key_tables(self) -> list[tuple[str, dict]]:
        return [("inter_lma", self.inter_lma.peers)]

    def bounded(self) -> list[Bounded]:
        q = self.inter_lma
        return super().bounded() + [
            Bounded("peer_queries", "lma.max_pending_queries", len(q.pending), q.max_pending, {},
                    counts_of(q.refused, "peer_queries")),
            Bounded("peer_answers", "lma.max_cached_answers", len(q.cache), q.max_cached,
                    counts_of(q.pushed_out, "peer_answers")),
            self.hold.bounded()]

    # --- the guard: an LMA answers its signaling peers only -------------------------------------
    def _refused(self, msg: wire.Message, arrival: Arrival, now: float) -> SignalingRefused | None:
        """Beyond the guard's own checks: a Binding Update that is no PBU
        (RFC 5213 §5.3.1 would answer it with status 152) from a host that
        is no MAG or LMA of ours goes unanswered, or a spoofed source would
        make the LMA reflect BAs at a victim."""
        if self.guard is not None and isinstance(msg, wire.BindingUpdate) and not self.guard.is_peer(arrival.src):
            return SignalingRefused(message_kind(msg), arrival.src, AuthFailure.UNKNOWN_PEER)
        return super()._refused(msg, arrival, now)

    def unknown_message(self, mh_type: int, arrival: Arrival, now: float) -> list:
        """RFC 6275 §9.2's Binding Error, to a signaling peer only (as above)."""
        if self.guard is not None and not self.guard.is_peer(arrival.src):
            return []
        return super().unknown_message(mh_type, arrival, now)

    def mag_tunnel(self, entry: BindingCacheEntry) -> Tunnel:
        """IPv6 to the MAG's proxy CoA; over IPv4 transport, IPv4 to its IPv4
        CoA, or UDP to the NAT's mapping (RFC 5844 §4)."""
        p = self.policy.binding_cache
        if entry.mag_ipv4 is None:
            return Tunnel(Encap.IP6, p.address, entry.proxy_coa)
        if entry.nat_detected:
            return Tunnel(Encap.UDP4, p.ipv4_address, entry.mag_ipv4.address, PMIP6_UDP_PORT, entry.mag_ipv4.port)
        return Tunnel(Encap.IP4, p.ipv4_address, entry.ipv4_proxy_coa or entry.mag_ipv4.address)

    # --- inputs -----------------------------------------------------------------------------
    def _on_pbu(self, msg: wire.BindingUpdate, arrival: Arrival, now: float) -> list:
        actions = self._bindings(self.cache.receive(msg, arrival, now), now)
        mn_id = mobile_node_identifier(msg)
        if mn_id is not None and mn_id in self.cache.pending and mn_id not in self.held \
                and self.hold.policy.enabled and mn_id in self.cache.bindings:
            actions = self._hold_from(self.cache.bindings[mn_id], keep_tunnel=True) + actions   # before the BRI
        elif mn_id is not None:
            actions += self._settle_hold(mn_id, now)
        return self._sealed(actions, now)

    def _on_lri(self, lri: wire.LocalizedRoutingInitiation, arrival: Arrival, now: float) -> list:
        """A MAG's RO query (DESIGN §2), or a peer LMA's (scenario 2)."""
        if arrival.src in self.inter_lma.peers:
            return self.inter_lma.answer_peer(lri, arrival, self.cache.binding_for_address)
        send, outcome = answer_lri(lri, arrival, self.policy.binding_cache.address, self.cache.binding_for_address,
                                   self.policy.ro_allowed, self.cache.settling, self.policy.local_routing)
        if outcome is QueryOutcome.CN_NOT_ANCHORED:
            relayed = self.inter_lma.ask_peers(lri, arrival, now)
            if relayed is not None:
                if any(isinstance(r, Relayed) and r.outcome is RelayOutcome.PENDING_LIMIT for r in relayed):
                    return [QueryAnswered(arrival.src, RelayOutcome.PENDING_LIMIT)]
                return [QueryAnswered(arrival.src, RelayOutcome.ASKING_PEERS)] + relayed
        return self._sealed([QueryAnswered(arrival.src, outcome)] + ([send] if send else []), now)

    def _on_lra(self, lra: wire.LocalizedRoutingAck, arrival: Arrival, now: float) -> list:
        """A peer LMA's answer, which may settle a MAG's query: our LRA to it."""
        return self._sealed(self.inter_lma.on_peer_lra(lra, arrival, now), now)

    def _on_revocation(self, msg: wire.BindingRevocation, arrival: Arrival, now: float) -> list:
        """An old MAG's answer (BRA) about an MN another MAG claims."""
        actions = self._bindings(self.cache.receive_revocation(msg, arrival, now), now)
        return self._sealed(actions + self._settle_holds(now), now)

    def _on_heartbeat(self, hb: wire.Heartbeat, arrival: Arrival, now: float) -> list:
        """RFC 5847 §5: a MAG's request is answered with its sequence number
        (past the guard; with auth = "none", only a MAG serving an MN here
        gets an answer); a response counts only as the answer to ours."""
        if self.guard is None and arrival.src not in self._through_mag:
            return [SignalingRefused(MessageKind.HEARTBEAT, arrival.src, AuthFailure.UNKNOWN_PEER)]
        if hb.response:
            return self.liveness.response(arrival.src, hb.sequence, now)
        answer = wire.Heartbeat(unsolicited=False, response=True, sequence=hb.sequence)
        return self._sealed([arrival.reply(answer, self.policy.binding_cache.address)], now)

    _HANDLERS = {
        wire.Heartbeat: _on_heartbeat,
        wire.BindingRevocation: _on_revocation,
        wire.BindingUpdate: _on_pbu,
        wire.LocalizedRoutingInitiation: _on_lri,
        wire.LocalizedRoutingAck: _on_lra,
    }

    def restore(self, entries: list[BindingCacheEntry], now: float) -> tuple[list, list[BindingCacheEntry]]:
        """Rebuild the binding cache after a restart: (what to install, the
        entries that could not be restored)."""
        live = [e for e in entries if e.expires > now]
        refused = self.cache.restore(live)
        restored = [BindingUpdated(e) for e in live if e not in refused]
        return [a for a in self._bindings(restored, now) if not isinstance(a, StateChanged)], refused

    # --- timers --------------------------------------------------------------------------------
    def on_timer(self, now: float) -> list:
        actions = self._bindings(self.cache.on_timer(now), now) + self._hold_timer(now)
        return self._sealed(actions + self.inter_lma.on_timer(now) + self._heartbeats(now), now)

    def next_deadline(self) -> float | None:
        return earliest(self.cache.next_deadline(), self.inter_lma.next_deadline(), self.liveness.next_deadline(),
                        self.hold.next_deadline(), self._releases.next())

    # --- the downlink hold ------------------------------------------------------------------
    def downlink_held(self, packet: bytes, now: float) -> list:
        """An IP packet XDP handed over for an address it found marked held
        (bpf/lma.c). Held for the MN between MAGs whose address its
        destination is; one that crossed the release (the MN bound again)
        goes at once, after what was held, to that binding's MAG; anything
        else is dropped: only an MN between MAGs has packets held."""
        destination = destination_of(packet)
        if destination is None:
            return [HeldDropped(DropReason.MALFORMED, 1)]
        mn_id = self._held_index.lookup(destination)
        if mn_id is not None:
            return self.hold.hold(mn_id, packet, now)
        live = self.cache.binding_for_address(destination)
        if live is None or live.mn_id not in self._mag_of:
            return [HeldDropped(DropReason.NOT_HELD, 1)]
        held = self.hold.hold(live.mn_id, packet, now)
        if not isinstance(held[0], PacketsHeld):
            return held
        return held + self.hold.release(live.mn_id, granted(live.hnp, live.ipv4_hoa), self.mag_tunnel(live), now)

    def _hold_from(self, entry: BindingCacheEntry, keep_tunnel: bool = False) -> list:
        """The MN's old MAG let it go (or, keep_tunnel, another MAG claims it
        and the old one has not answered our BRI yet, RFC 5846): its downlink
        waits for the next binding."""
        held = self.held.get(entry.mn_id)
        if held is None:
            held = self.held[entry.mn_id] = _Held(entry.hnp, entry.ipv4_hoa)
            self._held_index.add(entry.hnp, entry.mn_id)
            if entry.ipv4_hoa is not None:
                self._held_index.add(entry.ipv4_hoa, entry.mn_id)
        held.tunnel = held.proxy_coa = held.release_at = None
        self._releases.discard(entry.mn_id)
        return [HoldBinding(entry.mn_id, entry.hnp, entry.ipv4_hoa, keep_tunnel)]

    def _unhold(self, mn_id: str) -> _Held | None:
        held = self.held.pop(mn_id, None)
        if held is not None:
            self._held_index.remove(held.hnp, mn_id)
            if held.ipv4_hoa is not None:
                self._held_index.remove(held.ipv4_hoa, mn_id)
            self._releases.discard(mn_id)
        return held

    def _hold_timer(self, now: float) -> list:
        """Aged packets go; due releases leave, then the prefix points at the
        tunnel; a hold whose move ended without a new binding settles."""
        actions = self.hold.on_timer(now)
        for mn_id in self._releases.pop_due(now):
            held = self.held.get(mn_id)
            if held is not None and held.tunnel is not None:
                actions += self._release(mn_id)
        return actions + self._settle_holds(now)

    def _release(self, mn_id: str) -> list:
        """The held packets into the tunnel, then the prefix at the tunnel."""
        held = self._unhold(mn_id)
        actions = self.hold.release(mn_id, granted(held.hnp, held.ipv4_hoa), held.tunnel, held.release_at)
        return actions + [InstallBinding(mn_id, held.hnp, held.ipv4_hoa, held.tunnel, held.proxy_coa)]

    def _settle_holds(self, now: float) -> list:
        actions = []
        for mn_id in [m for m, h in self.held.items() if h.tunnel is None]:
            actions += self._settle_hold(mn_id, now)
        return actions

    def _settle_hold(self, mn_id: str, now: float) -> list:
        """A held MN no new binding took: while its entry waits
        (MinDelayBeforeBCEDelete) or its move is pending, nothing; a live
        binding (the old MAG said the MN is still there, or the new MAG
        withdrew its claim) gets the packets at once; none drops them."""
        held = self.held.get(mn_id)
        if held is None or held.tunnel is not None or self.cache.deregistered(mn_id) or mn_id in self.cache.pending:
            return []
        live = self.cache.bindings.get(mn_id)
        if live is not None:
            held.tunnel, held.proxy_coa, held.release_at = self.mag_tunnel(live), live.proxy_coa, now
            return self._release(mn_id)
        self._unhold(mn_id)
        return self.hold.discard(mn_id, DropReason.BINDING_DELETED) + [RemoveBinding(mn_id, held.hnp, held.ipv4_hoa)]

    # --- liveness of the serving MAGs (RFC 5847) ------------------------------------------------
    def _heartbeats(self, now: float) -> list:
        """Requests due; a MAG that missed its heartbeats is only reported
        (PeerDead): its bindings stay until their lifetime ends, since the
        MAG may be cut off from us while its MNs still have their links."""
        requests, actions = self.liveness.on_timer(now)
        p = self.policy.binding_cache
        for mag, sequence in requests:
            hb = wire.Heartbeat(unsolicited=False, response=False, sequence=sequence)
            endpoint = self._mag_ipv4.get(mag)
            actions.append(Send(hb, p.address, mag) if endpoint is None else
                           Send(hb, p.address, mag, ipv4_dst=endpoint, ipv4_src=p.ipv4_address))
        return actions

    def configure_heartbeats(self, peers: HeartbeatPolicy, ro: HeartbeatPolicy, now: float) -> None:
        self.policy.heartbeat = peers
        self.liveness.configure(peers, now)
        self.liveness.sync({mag: PeerKind.MAG for mag in self._through_mag}, now)

    def liveness_rows(self, now: float) -> list[dict]:
        return self.liveness.rows(now)

    # --- the rules between the cores -------------------------------------------------------
    def _bindings(self, actions: list, now: float) -> list:
        """The binding cache's results in the data plane's terms; a binding
        that moves or ends tells the peer LMAs that asked about it."""
        out = []
        changed = False
        for action in actions:
            if isinstance(action, BindingUpdated):
                changed = True
                entry, moved = action.entry, action.previous_proxy_coa is not None
                tunnel = self.mag_tunnel(entry)
                self._mag_ipv4[entry.proxy_coa] = entry.mag_ipv4
                held = self.held.get(entry.mn_id)
                out.append(InstallBinding(entry.mn_id, entry.hnp, entry.ipv4_hoa, tunnel, entry.proxy_coa, moved,
                                          held=held is not None))
                if held is not None:      # released once the MAG had its PBA (the commit's, and a moment)
                    held.tunnel, held.proxy_coa = tunnel, entry.proxy_coa
                    held.release_at = now + self.policy.hold_release_delay
                    self._releases.set(entry.mn_id, held.release_at)
                out += self._through(entry.mn_id, entry.proxy_coa, tunnel, now)
                if moved:                                       # a handover: peers' answers are stale
                    out += self.inter_lma.binding_changed(entry.hnp, entry.ipv4_hoa, now)
            elif isinstance(action, BindingRemoved):
                changed = True
                entry = action.entry
                out += self._through(entry.mn_id, None, None, now)   # before its tunnel may go
                # deregistered (its entry waits), or so and bound again at once (a pending move went ahead)
                if self.hold.policy.enabled and (self.cache.deregistered(entry.mn_id)
                                                 or entry.mn_id in self.cache.bindings):
                    out += self._hold_from(entry)
                else:
                    if self._unhold(entry.mn_id) is not None:
                        out += self.hold.discard(entry.mn_id, DropReason.BINDING_DELETED)
                    out.append(RemoveBinding(entry.mn_id, entry.hnp, entry.ipv4_hoa))
                out += self.inter_lma.binding_changed(entry.hnp, entry.ipv4_hoa, now)
            else:
                out.append(action)
        return with_state_change(out) if changed else out

    def _through(self, mn_id: str, mag: IPv6Address | None, tunnel: Tunnel | None, now: float) -> list:
        """Keep one entry per serving MAG's proxy CoA, toward the tunnel of
        the latest binding through it; a MAG is watched (RFC 5847) from its
        first binding here to its last."""
        touched = []
        previous = self._mag_of.pop(mn_id, None)
        if previous is not None and previous != mag:
            del self._through_mag[previous][mn_id]
            touched.append(previous)
        if mag is not None:
            if mag not in self._through_mag:
                self.liveness.watch(mag, PeerKind.MAG, now)
            users = self._through_mag.setdefault(mag, {})
            users.pop(mn_id, None)
            users[mn_id] = tunnel                   # the newest last
            self._mag_of[mn_id] = mag
            touched.append(mag)
        actions = []
        for address in touched:
            users = self._through_mag.get(address)
            wanted = next(reversed(users.values())) if users else None
            if not users:
                self._through_mag.pop(address, None)
                self._mag_ipv4.pop(address, None)
                self.liveness.unwatch(address)
            if self._mag_routes.get(address) != wanted:
                actions.append(RouteMagAddress(address, wanted))
                if wanted is None:
                    del self._mag_routes[address]
                else:
                    self._mag_routes[address] = wanted
        return actions


__all__ = ["HoldBinding", "InstallBinding", "LmaNode", "LmaNodePolicy", "QueryAnswered", "RemoveBinding",
           "RouteMagAddress", "Relayed"]
