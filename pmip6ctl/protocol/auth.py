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
from .common import Stamper
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


@dataclass
class SignalingGuard:
    peers: Mapping[IPv6Address, SignalingPeer]
    window: float = 7.0                  # TimestampValidityWindow (RFC 5213 §9.3), seconds
    stamper: Stamper = field(default_factory=Stamper)
    _newest: dict[IPv6Address, int] = field(default_factory=dict)   # newest request Timestamp per peer

    def is_peer(self, address: IPv6Address) -> bool:
        return address in self.peers

    # --- inbound ------------------------------------------------------------------------------
    def check(self, msg: wire.Message, arrival: Arrival, now: float, request: bool) -> AuthFailure | None:
        """Why msg may not be believed, or None. request: a PBU, LRI,
        Heartbeat or unsolicited LRA (answers are tied to their request by
        the core that sent it)."""
        peer = self.peers.get(arrival.src)
        if peer is None:
            return AuthFailure.UNKNOWN_PEER
        if arrival.over_ipv4 and not peer.behind_nat and peer.ipv4 is not None \
                and arrival.ipv4_src.address != peer.ipv4:
            return AuthFailure.WRONG_OUTER_SOURCE
        last = msg.options[-1] if msg.options else None
        if not isinstance(last, wire.MobilityMessageAuthentication) or last.subtype != security.MMA_SUBTYPE:
            return AuthFailure.UNAUTHENTICATED
        if last.spi != peer.key.spi:
            return AuthFailure.WRONG_SPI
        if not peer.key.verify(msg, arrival.src, arrival.dst):
            return AuthFailure.BAD_AUTHENTICATOR
        stamp = wire.find_option(msg, wire.Timestamp)
        if stamp is None:
            return AuthFailure.NO_TIMESTAMP
        if not request:
            return None
        if abs(stamp.to_unix() - now) > self.window:
            return AuthFailure.STALE_TIMESTAMP
        if stamp.timestamp <= self._newest.get(arrival.src, -1):
            return AuthFailure.REPLAYED
        self._newest[arrival.src] = stamp.timestamp
        return None

    # --- outbound ------------------------------------------------------------------------------
    def seal(self, send: Send, now: float) -> Send:
        """A message to a signaling peer, signed with its key, a request
        stamped first when it carries no Timestamp yet."""
        peer = self.peers.get(send.dst)
        last = send.message.options[-1] if send.message.options else None
        if peer is None or message_kind(send.message) not in GUARDED \
                or isinstance(last, wire.MobilityMessageAuthentication):
            return send                     # not ours to sign, or signed already (inter-LMA)
        message = send.message
        if wire.find_option(message, wire.Timestamp) is None:
            message = copy.copy(message)
            message.options = [*send.message.options, self.stamper.stamp(now)]
        return dataclasses.replace(send, message=peer.key.sign(message, send.src, send.dst))


def guarded(msg: wire.Message) -> bool:
    return message_kind(msg) in GUARDED
