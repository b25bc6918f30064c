"""Who may speak: authentication of the signaling between MAGs and LMAs and
between LMAs (RFC 5213 §4 asks for it; this kernel has no IPv6 ESP, so it
is ours), sans-I/O. docs/security.md explains the threat model.

Every PBU, PBA, LRI, LRA and Heartbeat between signaling peers ends with a
Mobility Message Authentication option (RFC 4285 option 9, subtype 255:
HMAC-SHA256 under the peer's SPI and key, security.py) and carries a
Timestamp (RFC 5213 §8.8). Replay is closed two ways:

- a request (PBU, LRI, a Heartbeat, an unsolicited LRA) must be inside the
  Timestamp window and newer than every earlier request from that peer;
  the sender stamps its requests strictly increasing (Stamper);
- an answer (PBA, LRA) carries the Timestamp of the request it answers,
  and is accepted only for an outstanding request with that Timestamp
  (the cores holding the request check it): an old answer names an old
  request, whatever its sequence number says.

With `auth = "none"` a node signs nothing and checks nothing; nothing here
is consulted.

Keys rotate by a config reload (`rekey`): the key a reload replaced is still
believed until that peer is seen using the new one, or until the grace
period (per peer) ends, whichever comes first. Meanwhile a request goes out
twice, under the new key and then under the old one, so that the peer
believes one of them whether it has reloaded or not (the other copy is
refused there, as bad_authenticator or replayed); an answer is signed with
the key its request came with.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from ipaddress import IPv6Address
from typing import Mapping

from .. import security, wire
from ..actions import Notification
from ..security import PeerKey
from ..transport import Arrival, Send
from .common import Deadlines, Stamper
from .vocabulary import MessageKind, _Described, message_kind

# Messages authenticated between signaling peers; the rest (RR, RO BU/BA,
# BE) have their own protection or none to have.
GUARDED = frozenset({MessageKind.PBU, MessageKind.PBA, MessageKind.LRI, MessageKind.LRA, MessageKind.HEARTBEAT,
                     MessageKind.BRI, MessageKind.BRA})


class AuthFailure(_Described):
    """Why a signaling message was refused before any core saw it."""
    UNKNOWN_PEER = "unknown_peer"
    UNAUTHENTICATED = "unauthenticated"
    WRONG_SPI = "wrong_spi"
    BAD_AUTHENTICATOR = "bad_authenticator"
    NO_TIMESTAMP = "no_timestamp"
    STALE_TIMESTAMP = "stale_timestamp"
    REPLAYED = "replayed"
    WRONG_OUTER_SOURCE = "wrong_outer_source"


AuthFailure._TEXT = {
    AuthFailure.UNKNOWN_PEER: "from no signaling peer of ours",
    AuthFailure.UNAUTHENTICATED: "without an authentication option",
    AuthFailure.WRONG_SPI: "with the SPI of another key",
    AuthFailure.BAD_AUTHENTICATOR: "with a bad authenticator",
    AuthFailure.NO_TIMESTAMP: "without a Timestamp",
    AuthFailure.STALE_TIMESTAMP: "with a Timestamp outside the window",
    AuthFailure.REPLAYED: "with a Timestamp no newer than the peer's last",
    AuthFailure.WRONG_OUTER_SOURCE: "in IPv4 from an address that is not the peer's",
}


@dataclass(frozen=True)
class SignalingRefused(Notification):
    """A message refused by the guard, silently: no answer goes back to a
    sender we cannot believe. Counted as signaling result <reason>."""
    kind: MessageKind
    src: IPv6Address
    reason: AuthFailure
    detail: str = ""


@dataclass(frozen=True)
class SignalingPeer:
    """A [[peers]] entry a node exchanges PBU/PBA, LRI/LRA or Heartbeats with."""
    address: IPv6Address
    key: PeerKey
    ipv4: object = None                  # IPv4Address: where its IPv4 signaling comes from
    behind_nat: bool = False             # it may reach us through a NAT (any outer source)


_REQUESTS = frozenset({MessageKind.PBU, MessageKind.LRI, MessageKind.HEARTBEAT, MessageKind.BRI})


def is_request(msg: wire.Message, kind: MessageKind | None = None) -> bool:
    """A guarded message that asks (its Timestamp is checked for freshness)
    rather than answers (its Timestamp echoes the request's). kind: its
    message_kind, when known already."""
    kind = kind or message_kind(msg)
    return kind in _REQUESTS or (kind is MessageKind.LRA and msg.unsolicited)


@dataclass(frozen=True)
class KeyChanges:
    """What a reload did to the keys, by peer address."""
    added: frozenset = frozenset()
    removed: frozenset = frozenset()
    rotated: frozenset = frozenset()

    def __or__(self, other: KeyChanges) -> KeyChanges:
        return KeyChanges(self.added | other.added, self.removed | other.removed, self.rotated | other.rotated)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.rotated)


def rekeyed(old: Mapping, new: Mapping, key=lambda entry: entry) -> tuple[dict, KeyChanges]:
    """new, each changed key remembering the one it replaces (PeerKey.previous).
    key: how to find the PeerKey in an entry; entries are PeerKeys or SignalingPeers."""
    result = {}
    for address, entry in new.items():
        if address in old:
            replaced = key(old[address]).replaced_by(key(entry))
            entry = replaced if isinstance(entry, PeerKey) else dataclasses.replace(entry, key=replaced)
        result[address] = entry
    rotated = frozenset(a for a in new.keys() & old.keys() if not key(old[a]).same_secret(key(new[a])))
    return result, KeyChanges(frozenset(new.keys() - old.keys()), frozenset(old.keys() - new.keys()), rotated)


@dataclass(frozen=True)
class NodeKeys:
    """A node's keys, from its [[peers]]: what a config reload hands in."""
    signaling: Mapping[IPv6Address, SignalingPeer] = field(default_factory=dict)   # the guard's peers
    quick_mode: Mapping[IPv6Address, PeerKey] = field(default_factory=dict)        # RO peers (draft §2.2)
    inter_lma: Mapping[IPv6Address, PeerKey] = field(default_factory=dict)         # peer LMAs (scenario 2)


@dataclass
class SignalingGuard:
    peers: Mapping[IPv6Address, SignalingPeer]
    window: float = 7.0                  # TimestampValidityWindow (RFC 5213 §9.1), seconds: docs/protocol.md §4
    stamper: Stamper = field(default_factory=Stamper)
    _newest: dict[IPv6Address, int] = field(default_factory=dict)   # newest request Timestamp per peer
    _answer_with: dict[IPv6Address, PeerKey] = field(default_factory=dict)   # the key of its last request
    # when each replaced key stops counting, in a heap: a message mid rotation costs no walk
    _retire_at: Deadlines = field(default_factory=Deadlines)

    def __post_init__(self):
        self.peers = dict(self.peers)     # ours: a peer's switch of key changes it in place, O(1)

    def is_peer(self, address: IPv6Address) -> bool:
        return address in self.peers

    @property
    def retire_at(self) -> float | None:
        """When the next replaced key stops being believed (None: no rotation under way)."""
        return self._retire_at.next()

    # --- replay state across a restart -----------------------------------------------------------
    def replay_state(self) -> dict[str, int]:
        """The newest request Timestamp per peer, for the node's store:
        without it a request captured just before a restart would be fresh
        again after it."""
        return {str(address): stamp for address, stamp in self._newest.items()}

    def restore_replay(self, saved: Mapping[str, int]) -> None:
        for address, stamp in saved.items():
            peer = IPv6Address(address)
            if peer in self.peers:
                self._newest[peer] = max(int(stamp), self._newest.get(peer, -1))

    # --- key rotation -------------------------------------------------------------------------
    def rekey(self, peers: Mapping[IPv6Address, SignalingPeer], now: float, grace: float) -> KeyChanges:
        """The reloaded [[peers]]; replay state of the peers that stay is kept."""
        self.retire(now)
        self.peers, changes = rekeyed(self.peers, peers, key=lambda p: p.key)
        for address in changes.removed:
            self._newest.pop(address, None)
            self._answer_with.pop(address, None)
            self._retire_at.discard(address)
        for address in changes.rotated:
            self._retire_at.set(address, now + grace)
        return changes

    def retire(self, now: float) -> None:
        """Each peer whose grace period is over: only its current key counts."""
        for address in self._retire_at.pop_due(now):
            self._switched(self.peers[address])

    def _switched(self, peer: SignalingPeer) -> None:
        """The peer signs with its new key (or its grace is over): the old one is done with."""
        self.peers[peer.address] = dataclasses.replace(peer, key=peer.key.retired())
        self._retire_at.discard(peer.address)
        self._answer_with.pop(peer.address, None)

    # --- inbound ------------------------------------------------------------------------------
    def check(self, msg: wire.Message, arrival: Arrival, now: float, request: bool) -> AuthFailure | None:
        """Why msg may not be believed, or None. request: a PBU, LRI,
        Heartbeat or unsolicited LRA (answers are tied to their request by
        the core that sent it)."""
        self.retire(now)
        peer = self.peers.get(arrival.src)
        if peer is None:
            return AuthFailure.UNKNOWN_PEER
        if arrival.over_ipv4 and not peer.behind_nat and peer.ipv4 is not None \
                and arrival.ipv4_src.address != peer.ipv4:
            return AuthFailure.WRONG_OUTER_SOURCE
        last = msg.options[-1] if msg.options else None
        if not isinstance(last, wire.MobilityMessageAuthentication) or last.subtype != security.MMA_SUBTYPE:
            return AuthFailure.UNAUTHENTICATED
        if last.spi not in peer.key.spis:
            return AuthFailure.WRONG_SPI
        used = peer.key.verifying_key(msg, arrival.src, arrival.dst)
        if used is None:
            return AuthFailure.BAD_AUTHENTICATOR
        stamp = wire.find_option(msg, wire.Timestamp)
        if stamp is None:
            return AuthFailure.NO_TIMESTAMP
        if request:
            if abs(stamp.to_unix() - now) > self.window:
                return AuthFailure.STALE_TIMESTAMP
            if stamp.timestamp <= self._newest.get(arrival.src, -1):
                return AuthFailure.REPLAYED
            self._newest[arrival.src] = stamp.timestamp
            self._answer_with[arrival.src] = used
        if used is peer.key and peer.key.previous is not None:
            self._switched(peer)
        return None

    # --- outbound ------------------------------------------------------------------------------
    def seal(self, send: Send, now: float) -> list[Send]:
        """A message to a signaling peer, signed with its key, a request
        stamped first when it carries no Timestamp yet. Mid rotation, a
        request is sent twice: under the new key, then the old one."""
        peer = self.peers.get(send.dst)
        last = send.message.options[-1] if send.message.options else None
        kind = message_kind(send.message) if peer is not None else None
        if kind not in GUARDED or isinstance(last, wire.MobilityMessageAuthentication):
            return [send]                   # not ours to sign, or signed already (inter-LMA)
        self.retire(now)
        peer = self.peers[send.dst]
        message = send.message
        if wire.find_option(message, wire.Timestamp) is None:
            message = copy.copy(message)
            message.options = [*send.message.options, self.stamper.stamp(now)]
        key, previous, asked_with = peer.key, peer.key.previous, self._answer_with.get(send.dst)
        if is_request(message, kind):
            keys = [key] if previous is None else [key, previous]      # whichever the peer has now
        elif previous is not None and asked_with is not None and previous.same_secret(asked_with):
            keys = [previous]                # the peer asked with its old key: it has not reloaded yet
        else:
            keys = [key]
        return [Send(k.sign(message, send.src, send.dst), send.src, send.dst, send.ipv4_dst, send.ipv4_src,
                     send.wrap_ipv4) for k in keys]


def guarded(msg: wire.Message) -> bool:
    return message_kind(msg) in GUARDED
