"""The RO responder, sans-I/O: at MAG2 for its attached CNs, and in the CN
agent for the CN itself (draft §4). A stateless RR responder with its own
Kcn and nonce table (RFC 6275 §5.2), and the RO binding cache that the
initiators' BUs fill (the draft's entry: MN's HoA, MAG1's proxy CoA, CN's
HoA, MAG2's proxy CoA).
"""

from __future__ import annotations

import math

import os
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from typing import Callable, Mapping

from ... import security, wire
from ...security import PeerKey
from ...transport import Arrival, Send, SendHomePath, UdpEndpoint
from ..common import Deadlines, earliest
from ..index import AddressGroups, Groups
from ..vocabulary import Mode, RejectReason, Role, StopReason, status_label
from .actions import (Address, BindingErrorKey, RoInstalled, RoPair, RoRejected, RoRemoved, RoSendOnlyOnceHeard,
                      mapped, no_binding_error, unmapped)
from .initiator import BE_REFRESH_INTERVAL, RO_ACCEPTED_BELOW


@dataclass(kw_only=True)
class ResponderPolicy:
    address: IPv6Address                  # our proxy CoA (MAG2) or the CN's address (CN agent)
    serves: Callable[[Address], bool]     # is this CN address ours to answer for?
    home_path: bool = True                # MAG2: the HoT goes into the LMA tunnel; CN agent: plain
    max_lifetime: int = security.MAX_RR_BINDING_LIFETIME
    timestamp_window: float = 7.0         # RFC 5213 TimestampValidityWindow, for the RO BU too
    peer_keys: Mapping[IPv6Address, PeerKey] = field(default_factory=dict)
    nonce_rotation: float = 30.0
    nat_keepalive: int = 20               # refresh time in our NAT Detection option (RFC 5555)
    # Addresses that are another kind of peer (our LMA, peer LMAs, our own): never an RO care-of
    # address, or an RO tunnel would take over theirs.
    reserved: Callable[[IPv6Address], bool] = lambda address: False
    # The RO policy of the config ([[ro.policy]]): may (MN, CN) be optimized?
    allowed: Callable[[Address, Address], bool] = lambda mn, cn: True
    # Room for one more pair with this peer in the RO table and the tunnels (else BA 130).
    has_room: Callable[[RoPair, IPv6Address], bool] = lambda pair, peer: True
    # The newest BU Timestamp per pair, kept for the Timestamp window (replay
    # protection): at most this many; past it the oldest goes (a pair that
    # holds a binding is still protected by the binding's own Timestamp).
    max_replay_entries: int = 65536
    # The lengths of the served CNs' home network prefixes (mag.hnp_lengths):
    # a CN's pairs are found by its prefix (pairs_of) without a walk.
    hnp_lengths: tuple[int, ...] = (64,)


@dataclass(frozen=True)
class ResponderBinding:
    pair: RoPair                          # local = the CN, remote = the MN
    peer: IPv6Address                     # MAG1's proxy CoA
    peer_ipv4: UdpEndpoint | None
    expires: float
    lifetime: int
    timestamp: float
    mode: Mode
    # RR: the Kbm of the BU it was granted for, which signs and checks the pair's
    # Binding Errors (docs/security.md); quick mode uses the peer's key
    kbm: bytes | None = field(default=None, repr=False, compare=False)
    nat: bool = False                     # a NAT on the IPv4 path: the tunnel is UDP to peer_ipv4


@dataclass
class SavedReplay:
    """The newest BU Timestamp accepted for a pair (replay protection)."""
    pair: RoPair
    timestamp: float


@dataclass
class SavedResponder:
    bindings: list[ResponderBinding]
    replay: list[SavedReplay]


class RoResponder:
    def __init__(self, policy: ResponderPolicy, kcn: bytes | None = None,
                 random: Callable[[int], bytes] = os.urandom):
        self.policy = policy
        self.kcn = kcn or security.new_kcn()
        self.nonces = security.NonceTable(rotation=policy.nonce_rotation, random=random)
        self.bindings: dict[RoPair, ResponderBinding] = {}
        self._expiry = Deadlines()                # pair -> when its binding expires (issue 13: a heap)
        # a peer's address -> the pairs bound with it (a BE from anyone looks
        # there, not through every binding)
        self._with_peer: dict[IPv6Address, dict[RoPair, None]] = {}
        # (peer, its MN) -> those pairs (a BE names the MN), and the pairs by our CN
        self._with_peer_for: Groups[tuple[IPv6Address, Address], RoPair] = Groups()
        self._by_local: AddressGroups[RoPair] = AddressGroups(policy.hnp_lengths)
        self._last_timestamp: dict[RoPair, float] = {}
        # bindings and replay Timestamps changed since the store last took them (daemon/persist.py)
        self.changed: set[RoPair] = set()
        self.replay_changed: set[RoPair] = set()
        # pair -> when an unsigned BE last sent it back to "send only once heard"
        # (at most one per BE_REFRESH_INTERVAL, as the initiator's refresh)
        self._reconfirmed: dict[RoPair, float] = {}
        # (table, reason) -> entries pushed out at a limit, and new ones refused there
        self.pushed_out: dict[tuple[str, str], int] = {}
        self.refused: dict[tuple[str, str], int] = {}

    def receive(self, msg: wire.Message, arrival: Arrival, now: float) -> list:
        handler = self._HANDLERS.get(type(msg))
        return handler(self, msg, arrival, now) if handler else []

    def on_timer(self, now: float) -> list:
        self._forget_timestamps(now)
        expired = []
        for pair in self._expiry.pop_due(now):
            binding = self.bindings.get(pair)
            if binding is None:
                continue                     # dropped behind our back (a test's lost state)
            if now >= binding.expires:
                expired.append(self._drop(pair))
            else:
                self._expiry.set(pair, binding.expires)
        return [RoRemoved(b.pair, b.peer, Role.RESPONDER, StopReason.LIFETIME_EXPIRED) for b in expired]

    def next_deadline(self) -> float | None:
        """The next binding to expire, or the oldest replay Timestamp to
        leave the window (the dict is in time order: O(1))."""
        oldest = next(iter(self._last_timestamp.values()), None)
        leaves = None if oldest is None else math.nextafter(oldest + self.policy.timestamp_window, math.inf)
        return earliest(self._expiry.next(), leaves)

    def _hold(self, binding: ResponderBinding) -> None:
        self._unindex(binding.pair)           # a refresh: the pair's BE throttle carries over
        self.bindings[binding.pair] = binding
        self.changed.add(binding.pair)
        self._with_peer.setdefault(binding.peer, {})[binding.pair] = None
        self._with_peer_for.add((binding.peer, binding.pair.remote), binding.pair)
        self._by_local.add(binding.pair.local, binding.pair)
        self._expiry.set(binding.pair, binding.expires)

    def _drop(self, pair: RoPair) -> ResponderBinding | None:
        self._reconfirmed.pop(pair, None)
        return self._unindex(pair)

    def _unindex(self, pair: RoPair) -> ResponderBinding | None:
        self._expiry.discard(pair)
        binding = self.bindings.pop(pair, None)
        self.changed.add(pair)
        if binding is not None:
            self._with_peer_for.discard((binding.peer, pair.remote), pair)
            self._by_local.discard(pair.local, pair)
        pairs = self._with_peer.get(binding.peer) if binding is not None else None
        if pairs is not None:
            pairs.pop(pair, None)
            if not pairs:
                del self._with_peer[binding.peer]
        return binding

    @property
    def replay_entries(self) -> int:
        return len(self._last_timestamp)

    @property
    def peers_bound(self) -> int:
        return len(self._with_peer)

    def knows_peer(self, address: IPv6Address) -> bool:
        """We hold a binding with this peer (O(1): a check on what anyone may send)."""
        return address in self._with_peer

    def saved_replay(self, pair: RoPair) -> SavedReplay | None:
        stamp = self._last_timestamp.get(pair)
        return None if stamp is None else SavedReplay(pair, stamp)

    def snapshot(self) -> SavedResponder:
        return SavedResponder(list(self.bindings.values()),
                              [SavedReplay(pair, stamp) for pair, stamp in self._last_timestamp.items()])

    def restore(self, saved: SavedResponder, now: float) -> list:
        """Take the bindings back after a restart (those still live, for CNs
        we serve), and the replay Timestamps with them."""
        for replay in saved.replay:
            self._last_timestamp.setdefault(replay.pair, replay.timestamp)
        actions = []
        for b in saved.bindings:
            if b.expires <= now or b.pair in self.bindings or not self.policy.serves(b.pair.local):
                continue
            self._hold(b)
            actions.append(RoInstalled(b.pair, b.peer, b.peer_ipv4, b.expires, round(b.expires - now), b.mode,
                                       Role.RESPONDER, nat=b.nat))
        return actions

    def cn_detached(self, local: Address) -> list:
        """Our CN left (detach, handover): drop its bindings and tell each
        peer with a Binding Error, so it falls back at once."""
        actions = []
        for binding in [b for b in map(self.bindings.get, self._by_local.at(local)) if b is not None]:
            self._drop(binding.pair)
            actions.append(RoRemoved(binding.pair, binding.peer, Role.RESPONDER, StopReason.CN_DETACHED))
            actions.append(self.binding_error(binding.pair.remote, binding.peer, binding))
        return actions

    def pairs_of(self, hnp: IPv6Network | None, ipv4_hoa: IPv4Address | None) -> list[RoPair]:
        """The pairs bound for one of our CNs: its address in its home network
        prefix, or its IPv4 home address (O(its pairs), issue 14)."""
        within = self._by_local.within(hnp) if hnp is not None else []
        if within is None:                     # a prefix of a length not grouped (hnp_lengths changed)
            within = [p for p in self.bindings if isinstance(p.local, IPv6Address) and p.local in hnp]
        found = within + (self._by_local.at(ipv4_hoa) if ipv4_hoa is not None else [])
        return [pair for pair in found if pair in self.bindings]

    def remove(self, pair: RoPair, reason: StopReason) -> list:
        binding = self._drop(pair)
        return [RoRemoved(pair, binding.peer, Role.RESPONDER, reason)] if binding else []

    def peer_dead(self, peer: IPv6Address) -> list:
        """The initiator missed its heartbeats (RFC 5847, ro/heartbeat.py):
        its pairs end here; nothing is sent to a dead peer."""
        return [action for pair in list(self._with_peer.get(peer, {}))
                for action in self.remove(pair, StopReason.PEER_DEAD)]

    def binding_error(self, mn_address: Address, peer: IPv6Address, binding: ResponderBinding | None = None) -> Send:
        """RFC 6275 §9.3.3's BE; signed with the pair's key when we held a
        binding for it (the initiator believes only a signed one)."""
        be = no_binding_error(mn_address)
        if binding is not None:
            be = self._sign_be(be, binding)
        return Send(be, self.policy.address, peer)

    def _be_key(self, binding: ResponderBinding) -> BindingErrorKey:
        return BindingErrorKey(quick=self.policy.peer_keys.get(binding.peer) if binding.mode is Mode.QUICK else None,
                               kbm=binding.kbm, careof=binding.peer, correspondent=self.policy.address)

    def _sign_be(self, be: wire.BindingError, binding: ResponderBinding) -> wire.BindingError:
        return self._be_key(binding).sign(be, self.policy.address, binding.peer)

    def _be_authentic(self, be: wire.BindingError, binding: ResponderBinding, arrival: Arrival) -> bool:
        return self._be_key(binding).verify(be, binding.peer, arrival.dst)

    # --- return routability (RFC 6275 §9.4) ------------------------------------------
    def _on_hoti(self, hoti: wire.HomeTestInit, arrival: Arrival, now: float) -> list:
        cn, mn = _ipv4_named(hoti, arrival)
        if not self.policy.serves(cn):
            return [RoRejected(RoPair(cn, mn), arrival.src, RejectReason.CN_NOT_SERVED, "hoti")]
        index, nonce = self.nonces.current(now)
        # docs/protocol.md §6: the MN's home address; for an IPv4 MN its 4 octets
        token = security.home_keygen_token(self.kcn, mn, nonce)
        hot = wire.HomeTest(home_nonce_index=index, home_init_cookie=hoti.home_init_cookie, home_keygen_token=token)
        if arrival.proxy_src is not None:
            if not self.policy.home_path:
                # fig. 2 is between MAGs: a CN agent has no LMA tunnel to answer in kind
                return [RoRejected(RoPair(cn, mn), arrival.src, RejectReason.NOT_HOME_PATH, "hoti in ipv4")]
            # Fig. 2 answered in kind: IPv4 (CN → MN) / IPv6 (MAG2 → MAG1) / MH,
            # into the CN's tunnel to the LMA
            return [SendHomePath(hot, src=arrival.proxy_dst, dst=arrival.proxy_src, anchor=cn, wrap_ipv4=(cn, mn))]
        if self.policy.home_path:
            return [SendHomePath(hot, src=arrival.dst, dst=arrival.src)]
        return [Send(hot, arrival.dst, arrival.src)]

    def _on_coti(self, coti: wire.CareofTestInit, arrival: Arrival, now: float) -> list:
        # The care-of address is the proxy CoA in the IPv6 header (for fig. 3
        # the one inside the IPv4 wrapper): the RO BU comes from it.
        careof = arrival.proxy_src or arrival.src
        if arrival.over_ipv4:
            # No exchange of ours sends a CoTI in UDP (fig. 6 runs it through the
            # LMA); answering would hand the care-of token to whoever sent the
            # datagram, not to the address it tests.
            return [RoRejected(None, careof, RejectReason.COTI_IN_UDP)]
        if self.policy.reserved(careof):
            return [RoRejected(None, careof, RejectReason.RESERVED_CAREOF, "coti")]
        index, nonce = self.nonces.current(now)
        token = security.careof_keygen_token(self.kcn, careof, nonce)
        cot = wire.CareofTest(careof_nonce_index=index, careof_init_cookie=coti.careof_init_cookie,
                              careof_keygen_token=token)
        if arrival.proxy_src is None and arrival.home_path and self.policy.home_path:
            # §2.1.1.2: it came through the LMA over IPv4 transport; so goes the
            # CoT, through the CN's tunnel to the LMA, to MAG1's proxy CoA
            return [SendHomePath(cot, src=self.policy.address, dst=careof, anchor=unmapped(arrival.dst))]
        return [arrival.reply(cot, self.policy.address, careof)]

    # --- the RO binding update (draft §2.3, RFC 6275 §9.5) ------------------------------
    def _on_bu(self, bu: wire.BindingUpdate, arrival: Arrival, now: float) -> list:
        pair = _pair_of(bu)
        if pair is None or not bu.flags & wire.BUFlags.P:
            return []                      # not an RO BU: not ours
        peer = arrival.src
        stamp = wire.find_option(bu, wire.Timestamp)
        mma = wire.find_option(bu, wire.MobilityMessageAuthentication)
        kbm = None
        if self.policy.reserved(peer):
            return [RoRejected(pair, peer, RejectReason.RESERVED_CAREOF)]
        if mma is not None:
            key = self.policy.peer_keys.get(peer)
            if key is None:
                return [RoRejected(pair, peer, RejectReason.NO_KEY_FOR_PEER)]
            if not key.verify(bu, peer, arrival.dst):
                return [RoRejected(pair, peer, RejectReason.BAD_QUICK_MODE_AUTHENTICATOR)]
            if not key.covers(pair.remote):
                return [RoRejected(pair, peer, RejectReason.KEY_NOT_FOR_THIS_MN),
                        self._ba(bu, pair, stamp, arrival, wire.Status.ADMIN_PROHIBITED, 0, None, now, Mode.QUICK)]
            mode = Mode.QUICK
        else:
            indices = wire.find_option(bu, wire.NonceIndices)
            if indices is None or not isinstance(bu.options[-1], wire.BindingAuthorizationData):
                return [RoRejected(pair, peer, RejectReason.UNAUTHENTICATED)]
            # RFC 6275 §6.2.6: deleting a binding ignores the care-of nonce index,
            # and its Kbm is made of the home keygen token alone (§5.2.5).
            deleting = bu.lifetime == 0
            home_nonce = self.nonces.lookup(indices.home_nonce_index, now)
            careof_nonce = None if deleting else self.nonces.lookup(indices.careof_nonce_index, now)
            home_expired, careof_expired = home_nonce is None, careof_nonce is None and not deleting
            if home_expired or careof_expired:
                status = (wire.Status.EXPIRED_BOTH_NONCE_INDEX if home_expired and careof_expired
                          else wire.Status.EXPIRED_HOME_NONCE_INDEX if home_expired
                          else wire.Status.EXPIRED_CAREOF_NONCE_INDEX)
                return [RoRejected(pair, peer, RejectReason.EXPIRED_NONCE, status_label(status)),
                        self._ba(bu, pair, stamp, arrival, status, 0, None, now)]
            kbm = security.binding_management_key(
                security.home_keygen_token(self.kcn, pair.remote, home_nonce),
                None if deleting else security.careof_keygen_token(self.kcn, peer, careof_nonce))
            careof = security.authorized_careof(peer, pair.remote, bu.lifetime)   # the HoA when deleting
            if not security.verify_binding_authorization(bu, kbm, careof, arrival.dst):
                # RFC 6275 §9.5.1: silently drop
                return [RoRejected(pair, peer, RejectReason.BAD_AUTHORIZATION)]
            mode = Mode.RR
        if not self.policy.serves(pair.local):
            return [RoRejected(pair, peer, RejectReason.CN_NOT_SERVED, "binding update"),
                    self._ba(bu, pair, stamp, arrival, wire.Status.ADMIN_PROHIBITED, 0, kbm, now, mode)]
        if not self.policy.allowed(pair.remote, pair.local):
            return [RoRejected(pair, peer, RejectReason.DENIED_BY_POLICY),
                    self._ba(bu, pair, stamp, arrival, wire.Status.ADMIN_PROHIBITED, 0, kbm, now, mode)]
        if stamp is None or abs(stamp.to_unix() - now) > self.policy.timestamp_window:
            return [RoRejected(pair, peer, RejectReason.TIMESTAMP_MISMATCH),
                    self._ba(bu, pair, stamp, arrival, wire.Status.TIMESTAMP_MISMATCH, 0, kbm, now, mode)]
        held = self.bindings.get(pair)
        if stamp.to_unix() <= max(self._last_timestamp.get(pair, float("-inf")),
                                  held.timestamp if held is not None else float("-inf")):
            return [RoRejected(pair, peer, RejectReason.REPLAYED),
                    self._ba(bu, pair, stamp, arrival, wire.Status.TIMESTAMP_LOWER_THAN_PREV_ACCEPTED, 0, kbm, now,
                             mode)]
        self._forget_timestamps(now)
        self._last_timestamp.pop(pair, None)          # to the end: the dict stays in time order
        if len(self._last_timestamp) >= self.policy.max_replay_entries:
            # bounded (issue 13): the oldest goes, the soonest to leave the window anyway
            oldest = next(iter(self._last_timestamp))
            del self._last_timestamp[oldest]
            self.replay_changed.add(oldest)
            self.pushed_out[("ro_replay", "oldest")] = self.pushed_out.get(("ro_replay", "oldest"), 0) + 1
        self._last_timestamp[pair] = stamp.to_unix()
        self.replay_changed.add(pair)
        lifetime = min(bu.lifetime * 4, self.policy.max_lifetime)
        # RFC 5555 §4.1 style NAT detection: the IPv4 CoA the initiator put in
        # the BU is not the source we see
        coa = wire.find_option(bu, wire.IPv4CareofAddress)
        nat = arrival.over_ipv4 and coa is not None and coa.address != arrival.ipv4_src.address
        actions = []
        if lifetime == 0:
            actions += self.remove(pair, StopReason.DEREGISTERED_BY_PEER)
        elif pair not in self.bindings and not self.policy.has_room(pair, peer):
            # RFC 6275 §9.5.1 status 130: better than accepting and black-holing the flow
            self.refused[("ro_bindings", "no_room")] = self.refused.get(("ro_bindings", "no_room"), 0) + 1
            return [RoRejected(pair, peer, RejectReason.NO_ROOM),
                    self._ba(bu, pair, stamp, arrival, wire.Status.INSUFFICIENT_RESOURCES, 0, kbm, now, mode)]
        else:
            binding = ResponderBinding(pair, peer, arrival.ipv4_src, now + lifetime, lifetime, stamp.to_unix(), mode,
                                       kbm=kbm, nat=nat)
            self._hold(binding)
            # installed before the BA leaves: MAG1's first optimized packet finds it
            actions.append(RoInstalled(pair, peer, arrival.ipv4_src, binding.expires, lifetime, mode, Role.RESPONDER,
                                       nat=nat))
        actions.append(self._ba(bu, pair, stamp, arrival, wire.Status.ACCEPTED, lifetime, kbm, now, mode, nat=nat))
        return actions

    def _forget_timestamps(self, now: float) -> None:
        """A Timestamp older than the window needs no remembering: a BU that
        old fails the window check (156) anyway."""
        oldest = now - self.policy.timestamp_window
        while self._last_timestamp:
            pair, stamp = next(iter(self._last_timestamp.items()))
            if stamp >= oldest:
                return
            del self._last_timestamp[pair]
            self.replay_changed.add(pair)

    def _ba(self, bu: wire.BindingUpdate, pair: RoPair, stamp: wire.Timestamp | None, arrival: Arrival, status: int,
            lifetime: int, kbm: bytes | None, now: float, mode: Mode | None = None, nat: bool = False) -> Send:
        ack_cls = wire.IPv4ROAcknowledgement if isinstance(pair.local, IPv4Address) else wire.ROAcknowledgement
        options = [ack_cls(status=0 if status < RO_ACCEPTED_BELOW else status, lifetime=lifetime // 4),
                   stamp if stamp is not None else wire.Timestamp.from_unix(now)]
        if nat:
            options.append(wire.NATDetection(refresh_time=self.policy.nat_keepalive))
        ba = wire.BindingAck(status=status, flags=wire.BAFlags.P, sequence=bu.sequence, lifetime=lifetime // 4,
                             options=options)
        peer = arrival.src
        key = self.policy.peer_keys.get(peer)
        if mode is Mode.QUICK and key is not None:
            ba = key.answering(bu, peer, arrival.dst).sign(ba, arrival.dst, peer)   # the BU's key, mid rotation
        elif kbm is not None:
            ba = security.sign_binding_update(ba, kbm, security.authorized_careof(peer, pair.remote, bu.lifetime),
                                              arrival.dst)
        return arrival.reply(ba, arrival.dst, peer)

    def _on_be(self, be: wire.BindingError, arrival: Arrival, now: float) -> list:
        """MAG1 has no binding for that MN any more: drop ours, if MAG1 says
        so under the pair's key. An unsigned BE ends nothing (anyone can send
        one with MAG1's address), but MAG1 may have lost its state: our side
        sends by the LMA path until MAG1's next tunnelled packet, at most once
        per pair and BE_REFRESH_INTERVAL (a stream of forged ones costs no
        more than that)."""
        actions = []
        home = be.home_address                 # the peer's MN: IPv6, or IPv4 as IPv4-mapped
        named = [home] if unmapped(home) == home else [home, unmapped(home)]
        pairs = [pair for mn in named for pair in self._with_peer_for.get((arrival.src, mn))]
        for binding in [b for b in map(self.bindings.get, pairs)
                        if b is not None and b.peer == arrival.src and mapped(b.pair.remote) == home]:
            if self._be_authentic(be, binding, arrival):
                actions += self.remove(binding.pair, StopReason.BINDING_ERROR)
            else:
                actions.append(RoRejected(binding.pair, arrival.src, RejectReason.UNAUTHENTICATED_BE))
                last = self._reconfirmed.get(binding.pair)
                if last is None or now - last >= BE_REFRESH_INTERVAL:
                    self._reconfirmed[binding.pair] = now
                    actions.append(RoSendOnlyOnceHeard(binding.pair, binding.peer))
        return actions

    _HANDLERS = {
        wire.HomeTestInit: _on_hoti,
        wire.CareofTestInit: _on_coti,
        wire.BindingUpdate: _on_bu,
        wire.BindingError: _on_be,
    }


def _ipv4_named(hoti: wire.HomeTestInit, arrival: Arrival) -> tuple[Address, Address]:
    """(CN, MN) of a HoTI. For fig. 2 the MAG "replaces the source and
    destination address ... with IPv4 addresses in mobility option" (draft
    §2.1.1.1); the IPv4 header around it says the same."""
    if arrival.proxy_src is not None:
        hoa = wire.find_option(hoti, wire.IPv4HomeAddress)
        cn = wire.find_option(hoti, wire.CNIPv4Address)
        return (cn.address if cn else unmapped(arrival.dst)), (hoa.address if hoa else unmapped(arrival.src))
    return unmapped(arrival.dst), unmapped(arrival.src)


def _pair_of(bu: wire.BindingUpdate) -> RoPair | None:
    """(CN, MN) named by an RO BU's options, or None if it names no CN."""
    cn6 = wire.find_option(bu, wire.CNHomeNetworkPrefix)
    cn4 = wire.find_option(bu, wire.CNIPv4HomeAddress)
    mn6 = wire.find_option(bu, wire.HomeNetworkPrefix)
    mn4 = wire.find_option(bu, wire.IPv4HomeAddress)
    cn = cn6.prefix if cn6 else cn4.address if cn4 else None
    mn = mn4.address if (cn4 and mn4) else mn6.prefix if mn6 else mn4.address if mn4 else None
    if cn is None or mn is None:
        return None
    return RoPair(local=cn, remote=mn)
