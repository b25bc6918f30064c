"""Liveness between RO peers (RFC 5847 applied to the draft's MAG–MAG and
MAG–CN bindings), sans-I/O.

Both ends of an RO binding watch each other: one Heartbeat request per
peer (not per pair) every `interval` seconds, whatever the number of pairs
with it. No [[peers]] key need exist between RO peers, so a heartbeat is
authenticated by what the pairs themselves share, as the pair's Binding
Errors are (docs/security.md): the quick-mode key (option 9, RFC 4285), or
in RR mode the Kbm of the BU the pair runs on (Binding Authorization Data,
RFC 6275 §5.2.6, covering the initiator's proxy CoA and the responder's
address). The heartbeat names the pair whose key signs it, as an RO BU
does (Home Network Prefix: the initiator's MN; CN Home Network Prefix: the
correspondent; or their IPv4 forms), so that the receiver checks exactly
one key. A request must carry a Timestamp inside the window and newer than
the peer's last (replay); a response is believed only as the answer to the
request outstanding (heartbeat.py).

The pairs each peer holds are learned from the RoInstalled and RoRemoved
the cores return (`track`), so nothing here walks the RO tables.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import Callable

from ... import wire
from ...transport import Arrival, Send, UdpEndpoint
from ..auth import AuthFailure, SignalingRefused
from ..common import Stamper
from ..heartbeat import HeartbeatIgnored, HeartbeatPolicy, Ignored, Liveness, PeerDead, PeerKind
from ..vocabulary import MessageKind, Role
from .actions import Address, BindingErrorKey, RoInstalled, RoPair, RoRemoved
from .initiator import RoInitiator
from .responder import RoResponder, _pair_of


@dataclass(frozen=True)
class _Signer:
    """One pair's key, and the pair named in the heartbeat."""
    key: BindingErrorKey
    mn: Address                           # the initiator's MN
    cn: Address                           # the correspondent
    ipv4_dst: UdpEndpoint | None = None   # over IPv4 transport (fig. 6)


def pair_options(mn: Address, cn: Address) -> list:
    """The options that name a pair, as the RO BU names it (draft fig. 4)."""
    return [wire.IPv4HomeAddress(mn) if isinstance(mn, IPv4Address) else wire.HomeNetworkPrefix(128, mn),
            wire.CNIPv4HomeAddress(32, cn) if isinstance(cn, IPv4Address) else wire.CNHomeNetworkPrefix(128, cn)]


@dataclass
class RoHeartbeats:
    """The RO peers of one node (MAG, CN agent), each watched while we hold a pair with it."""
    address: IPv6Address                  # our proxy CoA, or the CN's address
    responder: RoResponder
    initiator: RoInitiator | None = None  # the CN agent initiates nothing
    ipv4_address: IPv4Address | None = None
    policy: HeartbeatPolicy = field(default_factory=lambda: HeartbeatPolicy(10.0, 3))
    timestamp_window: float = 7.0
    random: Callable[[int], bytes] = os.urandom
    stamper: Stamper = field(default_factory=Stamper)
    # peer -> {(role, pair): None} of the pairs installed with it, in the order they came
    pairs: dict[IPv6Address, dict] = field(default_factory=dict)
    # (role, pair) -> the peer it is installed with; pair -> how many roles hold it
    # (MagNode's room for one more, issue 14: no walk of both RO tables)
    _peer_of: dict[tuple, IPv6Address] = field(default_factory=dict)
    installed: dict[RoPair, int] = field(default_factory=dict)
    _newest: dict[IPv6Address, int] = field(default_factory=dict)     # newest request Timestamp per peer

    def __post_init__(self):
        self.liveness = Liveness(self.policy, self.random)

    def configure(self, policy: HeartbeatPolicy, now: float) -> None:
        self.policy = policy
        self.liveness.configure(policy, now)
        self._resync(now)

    # --- which peers: from what the RO cores did -------------------------------------------
    def track(self, actions: list, now: float) -> list:
        """Note the pairs installed and removed among actions (a peer is
        watched from its first pair to its last); returns them."""
        for action in actions:
            if isinstance(action, RoInstalled):
                key = (action.role, action.pair)
                held_with = self._peer_of.get(key)
                if held_with == action.peer:
                    continue                      # a refresh
                if held_with is not None:         # bound again by another peer (its MN moved)
                    self._forget(key, held_with)
                if action.peer not in self.pairs:
                    self.liveness.watch(action.peer, PeerKind.RO_PEER, now)
                self.pairs.setdefault(action.peer, {})[key] = None
                self._peer_of[key] = action.peer
                self.installed[action.pair] = self.installed.get(action.pair, 0) + 1
            elif isinstance(action, RoRemoved):
                key = (action.role, action.pair)
                if key in self._peer_of:
                    self._forget(key, self._peer_of[key])
        return actions

    def _forget(self, key: tuple, peer: IPv6Address) -> None:
        del self._peer_of[key]
        pair = key[1]
        self.installed[pair] -= 1
        if not self.installed[pair]:
            del self.installed[pair]
        held = self.pairs[peer]
        del held[key]
        if not held:
            del self.pairs[peer]
            self._newest.pop(peer, None)
            self.liveness.unwatch(peer)

    def _resync(self, now: float) -> None:
        self.liveness.sync({peer: PeerKind.RO_PEER for peer in self.pairs}, now)

    def _signer(self, peer: IPv6Address, role: Role, pair: RoPair) -> _Signer | None:
        """The key of one pair with peer, as its Binding Errors use it."""
        if role is Role.INITIATOR and self.initiator is not None:
            attempt = self.initiator.attempts.get(pair)
            if attempt is None or not attempt.established or attempt.peer.address != peer:
                return None
            ipv4 = UdpEndpoint(attempt.peer.ipv4) if attempt.peer.over_ipv4 else None
            return _Signer(self.initiator._be_key(attempt), pair.local, pair.remote, ipv4)
        if role is Role.RESPONDER:
            binding = self.responder.bindings.get(pair)
            if binding is None or binding.peer != peer:
                return None
            return _Signer(self.responder._be_key(binding), pair.remote, pair.local, binding.peer_ipv4)
        return None

    def _any_signer(self, peer: IPv6Address) -> _Signer | None:
        """The first pair with peer whose key can sign (the oldest: no sort per interval)."""
        for role, pair in self.pairs.get(peer, ()):
            signer = self._signer(peer, role, pair)
            if signer is not None:
                return signer
        return None

    def _named_signer(self, peer: IPv6Address, msg: wire.Heartbeat) -> _Signer | None:
        """The signer of the pair a heartbeat names (responder's view: CN local)."""
        named = _pair_of(msg)                   # RoPair(local=CN, remote=MN)
        if named is None:
            return None
        held = self.pairs.get(peer, ())
        for role, pair in ((Role.RESPONDER, named), (Role.INITIATOR, RoPair(named.remote, named.local))):
            if (role, pair) in held:
                return self._signer(peer, role, pair)
        return None

    # --- out -----------------------------------------------------------------------------------
    def _heartbeats(self, signer: _Signer, peer: IPv6Address, response: bool, sequence: int, now: float,
                    keys: list[BindingErrorKey] | None = None) -> list[Send]:
        """One heartbeat, signed with each of keys (default: the pair's)."""
        hb = wire.Heartbeat(unsolicited=False, response=response, sequence=sequence,
                            options=[*pair_options(signer.mn, signer.cn), self.stamper.stamp(now)])
        sends = []
        for key in keys or [signer.key]:
            signed = key.sign(hb, self.address, peer)
            if signer.ipv4_dst is not None and self.ipv4_address is not None:
                sends.append(Send(signed, self.address, peer, ipv4_dst=signer.ipv4_dst, ipv4_src=self.ipv4_address))
            else:
                sends.append(Send(signed, self.address, peer))
        return sends

    @staticmethod
    def _request_keys(signer: _Signer) -> list[BindingErrorKey]:
        """Mid rotation of a quick-mode key (a reload, docs/security.md) a
        request goes twice, under the new key and the old one, as the guard
        sends its requests: the peer believes one whether it has reloaded
        or not (the other copy is refused there, and counted)."""
        quick = signer.key.quick
        if quick is None or quick.previous is None:
            return [signer.key]
        return [signer.key, dataclasses.replace(signer.key, quick=quick.previous)]

    def on_timer(self, now: float) -> tuple[list, list[IPv6Address]]:
        """(what to send and tell, the peers declared dead now)."""
        requests, notes = self.liveness.on_timer(now)
        actions = list(notes)
        for peer, sequence in requests:
            signer = self._any_signer(peer)
            if signer is not None:
                actions += self._heartbeats(signer, peer, False, sequence, now, self._request_keys(signer))
        return actions, [n.peer for n in notes if isinstance(n, PeerDead)]

    def next_deadline(self) -> float | None:
        return self.liveness.next_deadline()

    # --- in ------------------------------------------------------------------------------------
    def receive(self, msg: wire.Heartbeat, arrival: Arrival, now: float) -> list:
        """A Heartbeat from whoever is not our LMA: believed only from a
        peer we hold a pair with, under that pair's key."""
        peer = arrival.src
        if peer not in self.pairs:
            return [SignalingRefused(MessageKind.HEARTBEAT, peer, AuthFailure.UNKNOWN_PEER)]
        last = msg.options[-1] if msg.options else None
        if not isinstance(last, (wire.MobilityMessageAuthentication, wire.BindingAuthorizationData)):
            if not msg.response and not msg.options:
                return [HeartbeatIgnored(peer, Ignored.UNAUTHENTICATED_KEEPALIVE)]
            return [SignalingRefused(MessageKind.HEARTBEAT, peer, AuthFailure.UNAUTHENTICATED)]
        signer = self._named_signer(peer, msg)
        if signer is None:
            return [SignalingRefused(MessageKind.HEARTBEAT, peer, AuthFailure.UNKNOWN_PEER, "names no pair we hold")]
        key = signer.key.verified(msg, peer, arrival.dst)     # mid rotation: the key the peer used
        if key is None:
            return [SignalingRefused(MessageKind.HEARTBEAT, peer, AuthFailure.BAD_AUTHENTICATOR)]
        if msg.response:
            return self.liveness.response(peer, msg.sequence, now)
        stamp = wire.find_option(msg, wire.Timestamp)
        if stamp is None:
            return [SignalingRefused(MessageKind.HEARTBEAT, peer, AuthFailure.NO_TIMESTAMP)]
        if abs(stamp.to_unix() - now) > self.timestamp_window:
            return [SignalingRefused(MessageKind.HEARTBEAT, peer, AuthFailure.STALE_TIMESTAMP)]
        if stamp.timestamp <= self._newest.get(peer, -1):
            return [SignalingRefused(MessageKind.HEARTBEAT, peer, AuthFailure.REPLAYED)]
        self._newest[peer] = stamp.timestamp
        (answer,) = self._heartbeats(signer, peer, True, msg.sequence, now, [key])
        return [arrival.reply(answer.message, self.address)]

    def rows(self, now: float) -> list[dict]:
        return [{**row, "pairs": len(self.pairs.get(IPv6Address(row["peer"]), ()))}
                for row in self.liveness.rows(now)]


__all__ = ["RoHeartbeats", "pair_options"]
