"""MagNode: the whole mobile access gateway, sans-I/O.

It combines the binding update list (binding_update_list.py: PBU/PBA with
the LMA), the RO initiator for the MNs attached here and the RO responder
for the CNs attached here (ro/), and holds the rules that join them:

- which core a message goes to (a table keyed by message type);
- who an MN is (its Router Solicitation's link-layer address, through the
  configured MN-ID table) and when an RS is an attach or asks for an RA;
- that an MN that leaves (detach, carrier loss, a failed refresh) takes its
  RO pairs along on both sides: a deregistration BU or a Binding Error, so
  that each peer falls back to the LMA path at once;
- which flows start RO (a registered MN, unicast, not optimized yet);
- local routing (RFC 6705) only between MNs registered here, and an MN
  that leaves ends the local routes toward it as well as its own;
- the answer to RO traffic for a pair we do not hold (Binding Errors);
- which tunnel carries an MN's traffic and its home-path signaling (RFC
  5844 §4: IPv4/UDP when the LMA saw a NAT), and the NAT keepalive toward
  the LMA (RFC 5555 §4.1).

The daemon (daemon/mag.py) applies what it returns: routes, map entries,
Router Advertisements, sockets.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from typing import Callable, Mapping

from .. import wire
from ..actions import Command, Notification
from ..security import MAX_RR_BINDING_LIFETIME
from ..transport import PMIP6_UDP_PORT, Arrival, Encap, Send, SendHomePath, Tunnel, UdpEndpoint
from .binding_update_list import (BindingState, BindingUpdateList, BindingUpdateListEntry, MagPolicy,
                                  MobileNodeDeregistered, MobileNodeRegistered, mn_id_of)
from .auth import SignalingGuard
from .common import Stamper, earliest
from .handover import BufferPolicy, DropReason, HeldDropped, PacketsHeld, UplinkBuffer, granted
from .heartbeat import OFF, HeartbeatPolicy, Liveness, PeerKind
from .index import PrefixIndex
from .limits import Bounded, counts_of
from .node import Node, NodeError, NotSent, saved_on_ro_change, with_state_change
from .ro import (Address, InitiatorPolicy, LocalRouteInstalled, ResponderPolicy, RoInitiator, RoPair, RoRejected,
                 RoResponder, no_binding_error)
from .ro.heartbeat import RoHeartbeats
from .vocabulary import Mode, RejectReason, StopReason, acknowledges_route_optimization, message_kind


# --- what the MAG asks its daemon to do ---------------------------------------------------

@dataclass(frozen=True)
class InstallMobileNode(Command):
    """Point the MN's prefix and IPv4 home address at its tunnel to the LMA,
    and route them onto its access link."""
    mn_id: str
    link: str
    hnp: IPv6Network
    ipv4_hoa: IPv4Address | None
    tunnel: Tunnel


@dataclass(frozen=True)
class RemoveMobileNode(Command):
    """Take the MN's prefix and IPv4 home address out of the data plane and
    the routes; release its tunnel."""
    mn_id: str
    link: str
    hnp: IPv6Network | None
    ipv4_hoa: IPv4Address | None


@dataclass(frozen=True)
class Advertise(Command):
    """A Router Advertisement on an access link with the MN's home network
    prefix (RFC 5213 §6.9.1.1). withdraw: valid lifetime 0 (RFC 4862
    §5.5.3); last_router: no other registered MN shares the link, so the
    router lifetime goes to 0 as well."""
    link: str
    prefix: IPv6Network
    withdraw: bool = False
    last_router: bool = False


@dataclass(frozen=True)
class MobileNodeAttaching(Notification):
    """A Router Solicitation (or, after a restart without state, the MN's
    traffic) named an MN that is not registered on that link."""
    mn_id: str
    link: str
    mac: str | None
    by: str = "router solicitation"


@dataclass(frozen=True)
class RouterSolicitationRefused(Notification):
    """An RS that names no MN allowed on that link, or an MN still attached
    on another link: an RS is not an identity (docs/security.md)."""
    link: str
    mac: str | None
    reason: str                   # metric label: unknown_mn, not_on_this_link, attached_elsewhere
    mn_id: str | None = None


@dataclass(frozen=True)
class MnIdentity:
    """An MN-ID table entry: the NAI behind a link-layer address, and the
    access links it may appear on (empty: any of this MAG's)."""
    nai: str
    links: tuple[str, ...] = ()


@dataclass(frozen=True)
class MobileNodeLeft(Notification):
    """The MN's access link lost its carrier (RFC 5213 §6.9.1.2 detach detection)."""
    mn_id: str
    link: str


# --- the node --------------------------------------------------------------------------------

def _serves_nothing(address: Address) -> bool:
    return False


def identities(table: Mapping | None) -> dict[str, MnIdentity]:
    """An MN-ID table from a config's: NAIs, or objects with .nai and .links."""
    out = {}
    for mac, who in (table or {}).items():
        out[mac.lower()] = MnIdentity(who) if isinstance(who, str) else MnIdentity(who.nai, tuple(who.links))
    return out


@dataclass(kw_only=True)
class MagNodePolicy:
    name: str                                              # this MAG's node name
    registration: MagPolicy
    initiator: InitiatorPolicy
    responder: ResponderPolicy                             # its `serves` is the node's own
    ro_enabled: bool = True
    # Link-layer address (lower case) -> who it is and where it may appear; nobody
    # else attaches by Router Solicitation.
    mn_ids: Mapping[str, MnIdentity] = field(default_factory=dict)
    # The RO policy ([[ro.policy]]): may (MN, CN) be optimized? Binds both roles.
    ro_allowed: Callable[[Address, Address], bool] = lambda mn, cn: True
    # Addresses of other kinds of peer (peer LMAs; our LMA and our own are added):
    # never an RO peer, or an RO tunnel would take theirs over.
    reserved: frozenset = frozenset()
    # RO table and tunnel room (dataplane.max_ro_entries, max_tunnels): past it, BA 130.
    max_ro_pairs: int = 65536
    max_ro_peers: int = 4094
    # Liveness (RFC 5847): toward the LMA, and toward each RO peer ([heartbeat]).
    heartbeat: HeartbeatPolicy = OFF
    ro_heartbeat: HeartbeatPolicy = OFF
    # The handover buffer ([mag] buffer_*): uplink packets held while the PBU is in flight.
    buffer: BufferPolicy = field(default_factory=BufferPolicy)

    def __post_init__(self):
        self.mn_ids = identities(self.mn_ids)

    @classmethod
    def build(cls, *, name: str, proxy_coa: IPv6Address, lma: IPv6Address, ipv4_proxy_coa: IPv4Address | None = None,
              lma_ipv4: IPv4Address | None = None, ipv4_transport: bool = False, lifetime: int = 3600,
              refresh_fraction: float = 0.8, initial_bindack_timeout: float = 1.0,
              max_bindack_timeout: float = 32.0, request_ipv4: bool = True, ro_enabled: bool = True,
              ro_mode: Mode = Mode.RR, ro_lifetime: int = MAX_RR_BINDING_LIFETIME, ro_retry_interval: float = 30.0,
              peer_keys: Mapping | None = None, nat_keepalive: int = 20,
              mn_ids: Mapping[str, str] | None = None, ro_allowed: Callable | None = None,
              reserved=(), max_ro_pairs: int = 65536, max_ro_peers: int = 4094, hnp_lengths=(64,),
              infrastructure=(), retry_after_rejection: float = 30.0, ro_max_attempts: int = 65536,
              ro_max_attempts_per_mn: int = 256, ro_max_remembered_failures: int = 65536,
              ro_max_replay_entries: int = 65536, heartbeat: HeartbeatPolicy = OFF,
              ro_heartbeat: HeartbeatPolicy = OFF, local_routing: bool = True,
              buffer: BufferPolicy | None = None) -> MagNodePolicy:
        """One policy from the flat settings a config file gives."""
        keys = dict(peer_keys or {})
        return cls(
            name=name, ro_enabled=ro_enabled, mn_ids=identities(mn_ids), reserved=frozenset(reserved),
            ro_allowed=ro_allowed or (lambda mn, cn: True), max_ro_pairs=max_ro_pairs, max_ro_peers=max_ro_peers,
            heartbeat=heartbeat, ro_heartbeat=ro_heartbeat, buffer=buffer or BufferPolicy(),
            registration=MagPolicy(
                proxy_coa=proxy_coa, ipv4_proxy_coa=ipv4_proxy_coa, lma_address=lma, lma_ipv4=lma_ipv4,
                ipv4_transport=ipv4_transport, lifetime=lifetime, refresh_fraction=refresh_fraction,
                initial_bindack_timeout=initial_bindack_timeout, max_bindack_timeout=max_bindack_timeout,
                request_ipv4=request_ipv4, hnp_lengths=tuple(hnp_lengths), infrastructure=tuple(infrastructure),
                retry_after_rejection=retry_after_rejection),
            initiator=InitiatorPolicy(
                proxy_coa=proxy_coa, lma_address=lma, lifetime=ro_lifetime, mode=Mode(ro_mode), peer_keys=keys,
                refresh_fraction=refresh_fraction, initial_timeout=initial_bindack_timeout,
                max_timeout=max_bindack_timeout, retry_interval=ro_retry_interval,
                max_attempts=ro_max_attempts, max_attempts_per_mn=ro_max_attempts_per_mn,
                max_remembered_failures=ro_max_remembered_failures,
                lma_ipv4=UdpEndpoint(lma_ipv4) if ipv4_transport else None, ipv4_proxy_coa=ipv4_proxy_coa,
                ipv4_transport=ipv4_transport, local_routing=local_routing, max_local_routes=max_ro_pairs),
            responder=ResponderPolicy(address=proxy_coa, serves=_serves_nothing, max_lifetime=ro_lifetime,
                                      peer_keys=keys, nat_keepalive=nat_keepalive,
                                      max_replay_entries=ro_max_replay_entries))


class MagNode(Node):
    role = "mag"

    def __init__(self, policy: MagNodePolicy, random: Callable[[int], bytes] = os.urandom,
                 responder_random: Callable[[int], bytes] | None = None, kcn: bytes | None = None,
                 guard: SignalingGuard | None = None):
        self.policy = policy
        self.guard = guard
        # one clock for every request to the LMA: it takes only ever-newer ones
        self.stamper = guard.stamper if guard else Stamper()
        self.bul = BindingUpdateList(policy.registration, random=random, stamper=self.stamper)
        p = policy.registration
        self.reserved = frozenset({*policy.reserved, p.proxy_coa, p.lma_address,
                                   *(IPv6Address(f"::ffff:{a}") for a in (p.lma_ipv4, p.ipv4_proxy_coa) if a)})
        self.initiator = RoInitiator(dataclasses.replace(policy.initiator, reserved=self.reserved.__contains__,
                                                         hnp_lengths=p.hnp_lengths, serves_here=self.serves),
                                     random=random, stamper=self.stamper)
        self.responder = RoResponder(dataclasses.replace(
            policy.responder, serves=self.serves, reserved=self.reserved.__contains__, allowed=policy.ro_allowed,
            has_room=self._has_room, hnp_lengths=p.hnp_lengths), kcn=kcn, random=responder_random or random)
        self.lma_keepalive_at: float | None = None
        self.lma_liveness = Liveness(policy.heartbeat, random)
        self.ro_heartbeats = RoHeartbeats(p.proxy_coa, self.responder, self.initiator, p.ipv4_proxy_coa,
                                          policy.ro_heartbeat, policy.responder.timestamp_window, random,
                                          self.stamper)
        self._by_address: PrefixIndex[str] = PrefixIndex()      # registered MNs' HNPs and IPv4 HoAs -> MN-ID
        self.carrier: dict[str, bool] = {}                       # access link -> carrier up (unknown: up)
        self.buffer = UplinkBuffer(policy.buffer)                # uplink packets of MNs whose PBU is in flight

    # --- who is attached here ----------------------------------------------------------
    def key_tables(self) -> list[tuple[str, dict]]:
        tables = {id(t): t for t in (self.initiator.policy.peer_keys, self.responder.policy.peer_keys)}
        return [("quick_mode", t) for t in tables.values()]        # one dict, when built from a config

    def mn_id_for(self, mac: str | None, link: str) -> str | None:
        """The NAI of the MN behind a Router Solicitation on link: from the
        MN-ID table only, and only on a link the table allows it."""
        who = self.policy.mn_ids.get(mac.lower()) if mac else None
        if who is None or (who.links and link not in who.links):
            return None
        return who.nai

    def entry_for(self, address: Address) -> BindingUpdateListEntry | None:
        """The registered MN that address belongs to (its HNP or IPv4 HoA)."""
        if isinstance(address, IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        entry = self.bul.entries.get(self._by_address.lookup(address))
        return entry if entry is not None and entry.state is BindingState.REGISTERED else None

    def serves(self, address: Address) -> bool:
        """The RO responder answers for MNs registered here, and no one else."""
        return self.entry_for(address) is not None

    def bounded(self) -> list[Bounded]:
        i, r = self.initiator, self.responder
        return super().bounded() + [
            Bounded("ro_attempts", "ro.max_attempts", len(i.attempts), i.policy.max_attempts,
                    counts_of(i.pushed_out, "ro_attempts"), counts_of(i.refused, "ro_attempts")),
            Bounded("ro_remembered_failures", "ro.max_remembered_failures", len(i._failures),
                    i.policy.max_remembered_failures, counts_of(i.pushed_out, "remembered_failures")),
            Bounded("ro_replay", "ro.max_replay_entries", r.replay_entries, r.policy.max_replay_entries,
                    counts_of(r.pushed_out, "ro_replay")),
            Bounded("local_routes", "dataplane.max_ro_entries", i.local_routes, i.policy.max_local_routes, {},
                    counts_of(i.refused, "local_routes")),
            self.buffer.bounded()]

    def _has_room(self, pair: RoPair, peer: IPv6Address) -> bool:
        """Room for one more RO pair (and, for a new peer, one more tunnel):
        the pairs installed in either role and their peers, as counted from
        what the RO cores did (ro_heartbeats.track), not by a walk."""
        installed, peers = self.ro_heartbeats.installed, self.ro_heartbeats.pairs
        return len(installed) < self.policy.max_ro_pairs and (peer in peers or len(peers) < self.policy.max_ro_peers)

    def lma_tunnel(self, entry: BindingUpdateListEntry) -> Tunnel:
        """The tunnel toward the LMA for this MN: IPv6-in-IPv6, or over IPv4
        transport IPv4 (RFC 5844), in UDP when the LMA saw a NAT (§4)."""
        p = self.policy.registration
        if not p.ipv4_transport:
            return Tunnel(Encap.IP6, p.proxy_coa, p.lma_address)
        if entry.nat_detected:
            return Tunnel(Encap.UDP4, p.ipv4_proxy_coa, p.lma_ipv4, PMIP6_UDP_PORT, PMIP6_UDP_PORT)
        return Tunnel(Encap.IP4, p.ipv4_proxy_coa, p.lma_ipv4)

    # --- inputs: signaling -------------------------------------------------------------------
    def _on_binding_ack(self, ba: wire.BindingAck, arrival: Arrival, now: float) -> list:
        if acknowledges_route_optimization(ba):
            return self._ro(self.initiator.receive(ba, arrival, now), now)
        return self._registration(self.bul.receive(ba, arrival, now), now, changed=True)

    def _to_initiator(self, msg, arrival: Arrival, now: float) -> list:
        return self._ro(self.initiator.receive(msg, arrival, now), now)

    def _to_responder(self, msg, arrival: Arrival, now: float) -> list:
        return self._ro(self.responder.receive(msg, arrival, now), now)

    def _on_binding_error(self, be: wire.BindingError, arrival: Arrival, now: float) -> list:
        """A BE may concern a pair we initiated or one we answered for."""
        return self._ro(self.initiator.receive(be, arrival, now) + self.responder.receive(be, arrival, now), now)

    def receive(self, msg: wire.Message, arrival: Arrival, now: float) -> list:
        if arrival.home_path and arrival.tunnel_src is not None and not self._from_our_lma(arrival.tunnel_src):
            # XDP punts what any known tunnel peer sends; the home path is the LMA's alone
            return [RoRejected(None, arrival.src, RejectReason.NOT_HOME_PATH, str(arrival.tunnel_src))]
        return super().receive(msg, arrival, now)

    def unknown_message(self, mh_type: int, arrival: Arrival, now: float) -> list:
        """RFC 6275 §9.2's Binding Error, to our LMA and our RO peers only: to
        anyone else it would be a reflection at a spoofed source."""
        if self.guard is not None and not self._knows(arrival.src):
            return []
        return super().unknown_message(mh_type, arrival, now)

    def _knows(self, address) -> bool:
        return (address == self.policy.registration.lma_address or self.initiator.knows_peer(address)
                or self.responder.knows_peer(address))

    def _from_our_lma(self, address) -> bool:
        p = self.policy.registration
        return address in (p.lma_address, p.lma_ipv4)

    def _on_revocation(self, bri: wire.BindingRevocation, arrival: Arrival, now: float) -> list:
        """The LMA asks whether an MN left us, because another MAG claims it
        (RFC 5846). Gone (its carrier went, or it is leaving): let it go.
        Still on a link whose carrier is up: say so (132), and it stays."""
        p = self.policy.registration
        if not bri.is_indication or arrival.src != p.lma_address:
            return []
        option = wire.find_option(bri, wire.MobileNodeIdentifier)
        mn_id = mn_id_of(option)             # an NAI that is no UTF-8 names no MN (it raised: test_fuzz.py)
        entry = self.bul.entries.get(mn_id)
        actions = []
        if entry is None:
            status = wire.RevocationStatus.BINDING_DOES_NOT_EXIST
        elif entry.state in (BindingState.REGISTERED, BindingState.REGISTERING) and self.carrier.get(entry.link, True):
            status = wire.RevocationStatus.REVOCATION_FAILED_MN_IS_ATTACHED
        else:
            status = wire.RevocationStatus.SUCCESS
            actions = self._registration(self.bul.revoke(mn_id), now, changed=True)
        options = [o for o in (option, wire.find_option(bri, wire.Timestamp)) if o is not None]
        bra = wire.BindingRevocation.acknowledgement(bri.sequence, status, options, flags=bri.flags)
        return actions + self._sealed([arrival.reply(bra, p.proxy_coa)], now)

    def _refused(self, msg: wire.Message, arrival: Arrival, now: float):
        """A Heartbeat from anyone but our LMA is an RO peer's: ro/heartbeat.py
        checks it under the pair's key, as the guard checks the LMA's."""
        if isinstance(msg, wire.Heartbeat) and arrival.src != self.policy.registration.lma_address:
            return None
        return super()._refused(msg, arrival, now)

    def _on_heartbeat(self, hb: wire.Heartbeat, arrival: Arrival, now: float) -> list:
        """RFC 5847 §5: a request is answered with its sequence number; a
        response counts only as the answer to our request outstanding."""
        p = self.policy.registration
        if arrival.src != p.lma_address:
            return self.ro_heartbeats.receive(hb, arrival, now)
        if hb.response:
            return self.lma_liveness.response(arrival.src, hb.sequence, now)
        return self._sealed([arrival.reply(wire.Heartbeat(unsolicited=False, response=True, sequence=hb.sequence),
                                           p.proxy_coa)], now)

    _HANDLERS = {
        wire.Heartbeat: _on_heartbeat,
        wire.BindingRevocation: _on_revocation,
        wire.BindingAck: _on_binding_ack,
        wire.LocalizedRoutingAck: _to_initiator,
        wire.HomeTest: _to_initiator,
        wire.CareofTest: _to_initiator,
        wire.HomeTestInit: _to_responder,
        wire.CareofTestInit: _to_responder,
        wire.BindingUpdate: _to_responder,     # an RO BU; a PBU has no business here
        wire.BindingError: _on_binding_error,
    }

    # --- inputs: access links and the operator ------------------------------------------------
    def router_solicitation(self, link: str, mac: str | None, now: float) -> list:
        """An RS on an access link: a solicited RA for an MN registered on
        that link, else the MN attaches (RFC 5213 §6.9.1.1). An RS is not an
        identity: the MN must be in the MN-ID table for this link, and not
        attached on another link whose carrier is still up."""
        mn_id = self.mn_id_for(mac, link)
        if mn_id is None:
            known = mac and mac.lower() in self.policy.mn_ids
            return [RouterSolicitationRefused(link, mac, "not_on_this_link" if known else "unknown_mn")]
        entry = self.bul.entries.get(mn_id)
        if entry is not None and entry.link == link and entry.state is BindingState.REGISTERED:
            return [Advertise(link, entry.hnp)]
        if entry is not None and entry.link != link and entry.state in (BindingState.REGISTERED,
                                                                       BindingState.REGISTERING) \
                and self.carrier.get(entry.link, True):
            return [RouterSolicitationRefused(link, mac, "attached_elsewhere", mn_id)]
        return [MobileNodeAttaching(mn_id, link, mac)] + self.attach(mn_id, link, now, mac=mac)

    def attach(self, mn_id: str, link: str, now: float, mac: str | None = None) -> list:
        return self._registration(self.bul.attach(mn_id, link, now, mac=mac), now, changed=True)

    def detach(self, mn_id: str, now: float) -> list:
        if mn_id not in self.bul.entries:
            raise NodeError(f"{mn_id} is not attached here")
        return self.buffer.discard(mn_id) + self._registration(self.bul.detach(mn_id, now), now, changed=True)

    def link_up(self, link: str, now: float) -> list:
        self.carrier[link] = True
        return []

    def link_down(self, link: str, now: float) -> list:
        """An access link lost its carrier: the MNs on it left."""
        self.carrier[link] = False
        actions = []
        for mn_id in self.bul.on_link(link):
            actions.append(MobileNodeLeft(mn_id, link))
            actions += self.buffer.discard(mn_id)
            actions += self._registration(self.bul.detach(mn_id, now), now, changed=True)
        return actions

    def restore(self, entries: list[BindingUpdateListEntry], now: float) -> list:
        """Take over the binding update list after a restart; the registered
        MNs' routes and entries go back in."""
        self.bul.restore(entries)
        actions = []
        for entry in entries:
            if entry.state is BindingState.REGISTERED and entry.hnp:
                self._index(entry)
                actions += [self._install(entry), Advertise(entry.link, entry.hnp)]
        self._schedule_lma_keepalive(now)
        self._watch_lma(now)
        return actions

    def restore_ro(self, saved: dict, now: float) -> list:
        """After restore(): the RO pairs of MNs registered here, with their
        refresh timers (a pair whose MN is gone is left to lapse)."""
        initiated = [s for s in saved.get("initiator", []) if self.entry_for(s.pair.local) is not None
                     and (not s.local or self.entry_for(s.pair.remote) is not None)]
        actions = self._linked(self.initiator.restore(initiated, now))
        if saved.get("responder") is not None:
            actions += self.responder.restore(saved["responder"], now)
        return self.ro_heartbeats.track(actions, now)

    # --- inputs: the data plane ------------------------------------------------------------------
    def flow_seen(self, src: Address, dst: Address, now: float) -> list:
        """The data plane saw an MN→destination flow pass the trigger threshold."""
        entry = self.entry_for(src)
        if entry is None or not self.policy.ro_enabled or dst.is_multicast or dst.is_link_local \
                or not self.policy.ro_allowed(src, dst):
            return []
        if RoPair(src, dst) in self.responder.bindings:
            return []                      # optimized already, as the responder
        return self._ro(self.initiator.start(src, dst, now, mn_prefix=entry.hnp), now)

    def unknown_source(self, link: str, mac: str, now: float) -> list:
        """Traffic on an access link from a source no attached MN holds. An
        MN this MAG forgot (it restarted without its state) attaches again,
        as by its Router Solicitation, if the MN-ID table names its MAC on
        that link; anyone else, and an MN attached already, gets nothing
        (XDP counted the drop)."""
        identity = self.policy.mn_ids.get(mac.lower())
        if identity is None or identity.nai in self.bul.entries or self.mn_id_for(mac, link) is None:
            return []
        return [dataclasses.replace(a, by="traffic") if isinstance(a, MobileNodeAttaching) else a
                for a in self.router_solicitation(link, mac, now)]

    def uplink_held(self, link: str, mac: str, packet: bytes, now: float) -> list:
        """An IP packet from a source no attached MN holds, which XDP handed
        over for the handover buffer (bpf/handover.h). The MN's first
        packet attaches it as an RS would (unknown_source); while its PBU is
        in flight its packets wait for the PBA (handover.py). A packet that
        was on its way as the PBA came goes at once (if its source is the
        MN's); anyone else's is dropped: who attaches, and on which link, is
        the MN-ID table's word, never the packet's."""
        actions = self.unknown_source(link, mac, now)
        mn_id = self.mn_id_for(mac, link)
        entry = self.bul.entries.get(mn_id) if mn_id is not None else None
        if entry is None or entry.link != link:
            return actions + [HeldDropped(DropReason.NOT_ATTACHING, 1, mn_id)]
        if entry.state is BindingState.REGISTERING:
            return actions + self.buffer.hold(mn_id, packet, now)
        if entry.state is BindingState.REGISTERED:      # punted before its entry was in the map
            held = self.buffer.hold(mn_id, packet, now)
            return actions + held + (self._release_held(entry, now) if isinstance(held[0], PacketsHeld) else [])
        return actions + [HeldDropped(DropReason.NOT_ATTACHING, 1, mn_id)]

    def _release_held(self, entry: BindingUpdateListEntry, now: float) -> list:
        return self.buffer.release(entry.mn_id, granted(entry.hnp, entry.ipv4_hoa), self.lma_tunnel(entry), now)

    def _settle_held(self, mn_ids, now: float) -> list:
        """After the registration's results: an MN now registered takes its
        held packets along; one that failed or left drops them."""
        actions = []
        for mn_id in mn_ids:
            if not self.buffer.held_for(mn_id):
                continue
            entry = self.bul.entries.get(mn_id)
            if entry is not None and entry.state is BindingState.REGISTERED:
                actions += self._release_held(entry, now)
            elif entry is None or entry.state is not BindingState.REGISTERING:
                actions += self.buffer.discard(mn_id)
        return actions

    def missing_binding(self, src: Address, dst: Address, peer: IPv6Address, now: float) -> list:
        """RO-tunnelled traffic from peer for a pair we hold no entry for.
        RFC 6275 §9.3.3: tell the peer we hold no binding. A BE names the
        initiating side's MN, which is the inner destination when the peer
        was the responder and the inner source when it was the initiator:
        with no state left to tell, name both (the peer ignores the other)."""
        address = self.policy.registration.proxy_coa
        if not isinstance(peer, IPv6Address):
            # an IPv4 tunnel source: the BE would go as IPv6/MH in UDP to the
            # peer's IPv6 proxy CoA, which only a binding with it could name
            return [NotSent(message_kind(no_binding_error(dst)), "no_ipv6_address_for_peer", str(peer))]
        return self.limited([Send(no_binding_error(dst), address, peer), Send(no_binding_error(src), address, peer)],
                            now)

    # --- operator requests on route optimization --------------------------------------------------
    def start_ro(self, local: Address, remote: Address, now: float) -> list:
        entry = self.entry_for(local)
        if entry is None:
            raise NodeError(f"{local} belongs to no MN registered here")
        if not self.policy.ro_allowed(local, remote):
            raise NodeError(f"the RO policy ([[ro.policy]]) denies {local} ⇄ {remote}")
        return self._ro(self.initiator.start(local, remote, now, mn_prefix=entry.hnp, operator=True), now)

    def stop_ro(self, pair: RoPair, now: float) -> list:
        """Both roles' binding for the pair end: a deregistration (or BE) to the peer."""
        return self._ro(self.initiator.stop(pair, now, StopReason.STOPPED)
                        + self.responder.remove(pair, StopReason.STOPPED), now)

    def configure_ro(self, mode: str | None = None, lifetime: int | None = None) -> None:
        if mode is not None:
            try:
                self.initiator.policy.mode = Mode(mode)
            except ValueError:
                raise NodeError("mode is rr or quick") from None
        if lifetime is not None:
            if not 4 <= lifetime <= MAX_RR_BINDING_LIFETIME:
                raise NodeError(f"an RO lifetime is 4 to {MAX_RR_BINDING_LIFETIME} s (MAX_RR_BINDING_LIFETIME)")
            self.initiator.policy.lifetime = lifetime

    # --- timers ------------------------------------------------------------------------------------
    def on_timer(self, now: float) -> list:
        actions = self.buffer.on_timer(now) + self._registration(self.bul.on_timer(now), now)
        actions += self._ro(self.initiator.on_timer(now) + self.responder.on_timer(now), now)
        return actions + self._lma_keepalive(now) + self._heartbeats(now)

    def next_deadline(self) -> float | None:
        return earliest(self.buffer.next_deadline(), self.bul.next_deadline(), self.initiator.next_deadline(),
                        self.responder.next_deadline(), self.lma_keepalive_at, self.lma_liveness.next_deadline(),
                        self.ro_heartbeats.next_deadline())

    # --- the rules between the cores -------------------------------------------------------------
    def _registration(self, actions: list, now: float, changed: bool = False) -> list:
        """The binding update list's results, turned into the data plane's
        and the access link's terms. An MN whose routes go takes its RO
        bindings along."""
        out, after, touched = [], [], {}
        for action in actions:
            entry = getattr(action, "entry", None)
            if isinstance(entry, BindingUpdateListEntry):
                touched[entry.mn_id] = None
            if isinstance(action, MobileNodeRegistered):
                self._index(action.entry)
                out += [self._install(action.entry), Advertise(action.entry.link, action.entry.hnp)]
            elif isinstance(action, MobileNodeDeregistered):
                self._index(action.entry, remove=True)
                after += self._uninstall(action.entry, now)
            else:
                out.append(action)
        # The deregistration leaves before the RO peers hear that the MN left:
        # a peer that asks the LMA again at once finds the MN gone, not here.
        out += self._settle_held(touched, now) if self.buffer.count else []
        out += after
        if actions:
            self._schedule_lma_keepalive(now)
            self._watch_lma(now)
        out = self._sealed(out, now)
        return with_state_change(out) if actions or changed else out

    def _index(self, entry: BindingUpdateListEntry, remove: bool = False) -> None:
        for prefix in (entry.hnp, entry.ipv4_hoa):
            if prefix is not None:
                if remove:
                    self._by_address.remove(prefix, entry.mn_id)
                else:
                    self._by_address.add(prefix, entry.mn_id)

    def _install(self, entry: BindingUpdateListEntry) -> InstallMobileNode:
        return InstallMobileNode(entry.mn_id, entry.link, entry.hnp, entry.ipv4_hoa, self.lma_tunnel(entry))

    def _uninstall(self, entry: BindingUpdateListEntry, now: float) -> list:
        actions = self._ro(self._end_route_optimization(entry, now), now)
        actions.append(RemoveMobileNode(entry.mn_id, entry.link, entry.hnp, entry.ipv4_hoa))
        if entry.hnp:
            others = self.bul.registered_on(entry.link, besides=entry.mn_id)
            actions.append(Advertise(entry.link, entry.hnp, withdraw=True, last_router=not others))
        return actions

    def _end_route_optimization(self, entry: BindingUpdateListEntry, now: float) -> list:
        """An MN that leaves takes its RO bindings along, on both sides (its
        pairs found by its prefix and address: O(its pairs), issue 14)."""
        actions = []
        mine = (entry.hnp, entry.ipv4_hoa)
        for pair in dict.fromkeys([*self.initiator.pairs_of(*mine), *self.responder.pairs_of(*mine)]):
            actions += self.initiator.stop(pair, now, StopReason.MN_DETACHED)
            actions += self.responder.cn_detached(pair.local)
        # and the local routes of other MNs here toward it (RFC 6705): their
        # flows go back to the LMA path, and their next trigger asks the LMA
        # again, which names the MN's new MAG (RO) if it has one
        for pair in self.initiator.local_pairs_to(*mine):
            actions += self.initiator.stop(pair, now, StopReason.CN_DETACHED)
        return actions

    def _ro(self, actions: list, now: float) -> list:
        """The RO cores' results, with each home-path message given the
        tunnel of the MN it is anchored at."""
        out = []
        for action in actions:
            if isinstance(action, SendHomePath):
                entry = self.entry_for(action.anchored)
                if entry is None:
                    out.append(NotSent(message_kind(action.message), "no_home_tunnel", str(action.anchored)))
                    continue
                action = dataclasses.replace(action, tunnel=self.lma_tunnel(entry))
            out.append(action)
        return self._sealed(saved_on_ro_change(self.ro_heartbeats.track(self._linked(out), now)), now)

    def _linked(self, actions: list) -> list:
        """Each local route given the access link its remote MN is registered
        on (the initiator checked that it is: serves_here)."""
        out = []
        for action in actions:
            if isinstance(action, LocalRouteInstalled):
                entry = self.entry_for(action.pair.remote)
                if entry is None:
                    continue
                action = dataclasses.replace(action, link=entry.link)
            out.append(action)
        return out

    # --- NAT keepalive toward the LMA --------------------------------------------------------------
    def _nat_refresh(self) -> int | None:
        return self.bul.nat_refresh()

    def _schedule_lma_keepalive(self, now: float) -> None:
        refresh = self._nat_refresh()
        if refresh is None:
            self.lma_keepalive_at = None
        elif self.lma_keepalive_at is None:
            self.lma_keepalive_at = now + refresh

    def _lma_keepalive(self, now: float) -> list:
        """Behind a NAT toward the LMA (its PBA carried NAT Detection): a
        Heartbeat in UDP at the refresh time keeps the NAT's mapping, and so
        the LMA's downlink tunnel, alive while no MN sends (RFC 5844 §4.1,
        RFC 5555 §4.1, RFC 5847)."""
        if self.lma_keepalive_at is not None and now < self.lma_keepalive_at:
            return []                     # (every change reschedules: _schedule_lma_keepalive)
        refresh = self._nat_refresh()
        if refresh is None:
            self.lma_keepalive_at = None
            return []
        if self.lma_keepalive_at is None:
            self.lma_keepalive_at = now + refresh
            return []
        if now < self.lma_keepalive_at:
            return []
        self.lma_keepalive_at = now + refresh
        p = self.policy.registration
        # the liveness request outstanding, again: its answer counts (heartbeat.py)
        sequence = self.lma_liveness.outstanding(p.lma_address)
        if sequence is None:
            sequence = int(now) & 0xFFFFFFFF
        return self._sealed([Send(wire.Heartbeat(unsolicited=False, response=False, sequence=sequence),
                                  p.proxy_coa, p.lma_address, ipv4_dst=UdpEndpoint(p.lma_ipv4),
                                  ipv4_src=p.ipv4_proxy_coa)], now)


    # --- liveness (RFC 5847) -----------------------------------------------------------------------
    def _watch_lma(self, now: float) -> None:
        """The LMA is watched while it holds a binding of ours."""
        lma = self.policy.registration.lma_address
        if self.bul.any_registered:
            self.lma_liveness.watch(lma, PeerKind.LMA, now)
        else:
            self.lma_liveness.unwatch(lma)

    def _heartbeats(self, now: float) -> list:
        """Requests due to the LMA and the RO peers; an RO peer that missed
        its heartbeats takes its pairs along (both roles): LMA path."""
        p = self.policy.registration
        requests, actions = self.lma_liveness.on_timer(now)
        over_ipv4 = p.ipv4_transport and p.lma_ipv4 is not None
        sends = [Send(wire.Heartbeat(unsolicited=False, response=False, sequence=sequence), p.proxy_coa, lma,
                      ipv4_dst=UdpEndpoint(p.lma_ipv4) if over_ipv4 else None,
                      ipv4_src=p.ipv4_proxy_coa if over_ipv4 else None) for lma, sequence in requests]
        actions += self._sealed(sends, now)
        ro_actions, dead = self.ro_heartbeats.on_timer(now)
        actions += ro_actions
        for peer in dead:
            actions += self._ro(self.initiator.peer_dead(peer, now) + self.responder.peer_dead(peer), now)
        return actions

    def configure_heartbeats(self, peers: HeartbeatPolicy, ro: HeartbeatPolicy, now: float) -> None:
        self.policy.heartbeat, self.policy.ro_heartbeat = peers, ro
        self.lma_liveness.configure(peers, now)
        self._watch_lma(now)
        self.ro_heartbeats.configure(ro, now)

    def liveness_rows(self, now: float) -> list[dict]:
        return self.lma_liveness.rows(now) + self.ro_heartbeats.rows(now)


__all__ = ["Advertise", "InstallMobileNode", "MagNode", "MagNodePolicy", "MnIdentity", "MobileNodeAttaching",
           "MobileNodeLeft", "RemoveMobileNode", "RouterSolicitationRefused"]
