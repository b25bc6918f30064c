"""Route optimization for PMIPv6 (draft-jeong-netlmm-ro-support-for-pmip6-00), sans-I/O.

RoInitiator runs at MAG1 for its MNs (draft §2.1.1, §2.2, §2.3):
    LRI → LMA                          which MAG serves the CN? (DESIGN §2: RFC 6705 messages)
    LRA ← LMA                          0: MAG2's proxy CoA; 129: nobody (try the CN itself,
                                       scenario 3); 128: policy says no
    HoTI → along the home path         src MN-HoA, dst CN-HoA, through the LMA (RFC 6275 §5.2.5)
    CoTI → MAG2 / the CN               src MAG1's proxy CoA, direct
    HoT, CoT ←                         keygen tokens → Kbm
    BU → MAG2 / the CN                 P flag, HNP = MN-HoA/128, CN-HNP = CN-HoA/128, Timestamp,
                                       Nonce Indices, Binding Authorization Data (fig. 4)
    BA ←                               RO Acknowledgement, Timestamp, BAD (fig. 5)
In quick mode (draft §2.2) the RR is skipped and the BU/BA carry option 9
(RFC 4285) keyed from the peer authentication database instead.

RoResponder runs at MAG2 for its attached CNs, and in the CN agent for the
CN itself (draft §4): a stateless RR responder with its own Kcn and nonce
table (RFC 6275 §5.2), and the RO binding cache the BUs fill.

An RO binding is per address pair, as the draft's cache entry (MN's HoA,
MAG1's proxy CoA, CN's HoA, MAG2's proxy CoA). Both cores say what to do as
actions: messages to send (Send, or SendHomePath for the HoTI/HoT that must
travel inside the LMA tunnel) and RoInstalled / RoRemoved / RoFailed for the
data plane and the operator. Traffic never waits for any of this: until
RoInstalled the flow keeps the LMA path, and it returns there on RoRemoved.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv6Address
from typing import Callable, Mapping

from .. import security, wire
from .common import Arrival, Retransmission, Send, UdpEndpoint, earliest

Address = IPv6Address | IPv4Address

RO_ACCEPTED_BELOW = 128                  # BA status < 128: accepted (RFC 6275 §6.1.8)
EXPIRED_NONCE_STATUSES = {wire.Status.EXPIRED_HOME_NONCE_INDEX, wire.Status.EXPIRED_CAREOF_NONCE_INDEX,
                          wire.Status.EXPIRED_BOTH_NONCE_INDEX}


def mapped(address: Address) -> IPv6Address:
    """IPv4 addresses as IPv4-mapped IPv6, where an IPv6 address field must hold them."""
    return IPv6Address(f"::ffff:{address}") if isinstance(address, IPv4Address) else address


def no_binding_error(mn_address: Address) -> wire.BindingError:
    """RFC 6275 §9.3.3: no binding for this home address (status 1)."""
    return wire.BindingError(status=wire.BindingErrorStatus.UNKNOWN_BINDING_FOR_HOME_ADDRESS_DESTINATION_OPTION,
                             home_address=mapped(mn_address))


@dataclass(frozen=True)
class RoPair:
    """A route-optimized pair seen from one node: local is the address served
    here (the MN at MAG1, the CN at MAG2 or the CN agent), remote the other."""
    local: Address
    remote: Address

    def __str__(self) -> str:
        return f"{self.local} ⇄ {self.remote}"


@dataclass(frozen=True)
class SendHomePath:
    """Send message from src to dst along the home path: inside the tunnel
    to the LMA that anchors src (DESIGN §3). The HoTI and HoT go this way so
    that RFC 6275's home-address test keeps its meaning."""
    message: wire.Message
    src: IPv6Address
    dst: IPv6Address
    anchor: Address | None = None         # whose LMA tunnel (default: src's)
    # fig. 2: IPv4 (MN → CN) / IPv6 (src → dst, the proxy CoAs) / MH
    wrap_ipv4: tuple[IPv4Address, IPv4Address] | None = None


@dataclass(frozen=True)
class RoInstalled:
    """Install (or refresh) the RO entry: pair → tunnel to peer."""
    pair: RoPair
    peer: IPv6Address                     # MAG2's (MAG1's) proxy CoA, or the CN's address
    peer_ipv4: UdpEndpoint | None         # set when the exchange ran over IPv4
    expires: float
    lifetime: int
    mode: str                             # "rr" or "quick"
    role: str                             # "initiator" or "responder"
    setup_seconds: float | None = None    # initiator: from the trigger to now (first install only)
    nat: bool = False                     # a NAT sits on the IPv4 path: tunnel in UDP to peer_ipv4


@dataclass(frozen=True)
class RoRemoved:
    pair: RoPair
    peer: IPv6Address
    role: str
    reason: str


@dataclass(frozen=True)
class RoFailed:
    """An attempt gave up; the flow stays on the LMA path until retry_at."""
    pair: RoPair
    reason: str
    retry_at: float


@dataclass(frozen=True)
class RoRejected:
    """A message the responder refused (counted by reason; nothing installed)."""
    pair: RoPair | None
    peer: IPv6Address
    reason: str


@dataclass(frozen=True)
class PeerKey:
    """A peer authentication database entry (draft §2.2, RFC 4285)."""
    spi: int
    key: bytes


# ---------------------------------------------------------------------------
# Initiator (MAG1)
# ---------------------------------------------------------------------------

class Phase(enum.Enum):
    QUERY = "query"                       # LRI sent
    RETURN_ROUTABILITY = "rr"             # HoTI / CoTI sent
    BINDING = "binding"                   # BU sent
    ESTABLISHED = "established"
    BACKOFF = "backoff"                   # failed; retry later


@dataclass
class InitiatorPolicy:
    proxy_coa: IPv6Address
    lma_address: IPv6Address
    lifetime: int = security.MAX_RR_BINDING_LIFETIME
    mode: str = "rr"                      # "quick": quick mode with peers that have a key
    peer_keys: Mapping[IPv6Address, PeerKey] = field(default_factory=dict)
    refresh_fraction: float = 0.8
    initial_timeout: float = 1.0
    max_timeout: float = 32.0
    max_transmissions: int = 4            # per message, before the attempt fails (1+2+4+8 s)
    retry_interval: float = 30.0          # first retry after a failure, doubling up to 16×
    lma_ipv4: UdpEndpoint | None = None   # send the LRI over IPv4 (RFC 5844 transport)
    ipv4_proxy_coa: IPv4Address | None = None
    # The MAGs reach each other over IPv4 only (draft §2.1.1.2, §2.3.2): the
    # CoTI goes through the IPv4 tunnel to the LMA, the BU/BA between the
    # IPv4 proxy CoAs inside UDP 5436 (fig. 6, 7).
    ipv4_transport: bool = False


@dataclass
class Attempt:
    """One pair's RO state at the initiator."""
    pair: RoPair
    phase: Phase
    started: float                        # when this attempt (or refresh) began
    triggered: float                      # when the flow asked for RO (for the set-up time)
    mn_prefix: object = None              # the MN's home network prefix (for the LRI)
    peer: IPv6Address | None = None
    peer_ipv4: IPv4Address | None = None
    outside: bool = False                 # scenario 3: the peer is the CN itself
    mode: str = "rr"
    lri_sequence: int = 0
    home_cookie: bytes = b""
    careof_cookie: bytes = b""
    home_token: bytes | None = None
    careof_token: bytes | None = None
    home_nonce_index: int = 0
    careof_nonce_index: int = 0
    tokens_at: float = 0.0
    sequence: int = 0
    kbm: bytes | None = None
    retransmission: Retransmission = field(default_factory=Retransmission)
    established: bool = False             # an entry is installed (first install done)
    expires: float | None = None
    refresh_at: float | None = None
    failures: int = 0
    retry_at: float | None = None
    last_failure: str = ""
    # When the outstanding BU left: its lifetime counts from then (RFC 6275 §11.1, §11.7.3).
    bu_sent: float | None = field(default=None, init=False)
    nat: bool = False                     # the BA said a NAT is on the path (RFC 5555 NAT Detection)
    keepalive_interval: float | None = None
    keepalive_at: float | None = None
    # (time, what) of this attempt's signaling, for `ro show` and the demo
    timeline: list[tuple[float, str]] = field(default_factory=list, init=False)

    def note(self, now: float, what: str) -> None:
        if len(self.timeline) < 40:
            self.timeline.append((now, what))

    @property
    def next_deadline(self) -> float | None:
        return earliest(self.retransmission.due, self.refresh_at if self.phase == Phase.ESTABLISHED else None,
                        self.expires, self.retry_at if self.phase == Phase.BACKOFF else None,
                        self.keepalive_at if self.established else None)

    @property
    def over_ipv4(self) -> bool:
        """BU/BA between the MAGs' IPv4 proxy CoAs (fig. 6, 7)."""
        return self.peer_ipv4 is not None and not self.outside


class RoInitiator:
    def __init__(self, policy: InitiatorPolicy, random: Callable[[int], bytes] = os.urandom):
        self.policy = policy
        self.random = random
        self.attempts: dict[RoPair, Attempt] = {}
        self._sequence = random(1)[0]
        # Pairs forgotten at their retry time keep their failure count for a
        # while, so that the flow's next trigger backs off longer if it fails
        # again: pair -> (failures, when to forget).
        self._failures: dict[RoPair, tuple[int, float]] = {}

    # --- inputs ------------------------------------------------------------------
    def start(self, local: Address, remote: Address, now: float, mn_prefix=None, operator: bool = False) -> list:
        """Begin RO for a flow local → remote (a data-plane trigger, or the
        operator's `ro start`, which also cuts a backoff short)."""
        pair = RoPair(local, remote)
        attempt = self.attempts.get(pair)
        if attempt is not None:
            if attempt.phase != Phase.BACKOFF or (not operator and now < attempt.retry_at):
                return []
        remembered, _ = self._failures.pop(pair, (0, None))
        attempt = Attempt(pair, Phase.QUERY, started=now, triggered=now, mn_prefix=mn_prefix,
                          failures=attempt.failures if attempt else remembered)
        self.attempts[pair] = attempt
        return self._query(attempt, now)

    def stop(self, pair: RoPair, now: float, reason: str = "stopped") -> list:
        """Tear the binding down (operator, MN detach): a deregistration BU
        when the peer still holds state we can authenticate, then remove."""
        attempt = self.attempts.pop(pair, None)
        self._failures.pop(pair, None)
        if attempt is None:
            return []
        actions = []
        if attempt.established and attempt.peer is not None:
            if self._can_sign_deregistration(attempt, now):
                attempt.sequence = self._next_sequence()
                actions.append(self._binding_update(attempt, now, lifetime=0))
            else:
                # No fresh token to sign a deregistration with: a Binding
                # Error tells the peer all the same (RFC 6275 §9.3.3), so that
                # it stops sending toward us at once.
                actions.append(self._to_peer(attempt, no_binding_error(pair.local)))
        if attempt.established:
            actions.append(RoRemoved(pair, attempt.peer, "initiator", reason))
        return actions

    def mn_detached(self, local: Address, now: float) -> list:
        actions = []
        for pair in [p for p in [*self.attempts, *self._failures] if p.local == local]:
            actions += self.stop(pair, now, reason="mn detached")
        return actions

    def receive(self, msg: wire.Message, arrival: Arrival, now: float) -> list:
        if isinstance(msg, wire.LocalizedRoutingAck):
            return self._on_lra(msg, arrival, now)
        if isinstance(msg, wire.HomeTest):
            return self._on_test(msg, "home", now)
        if isinstance(msg, wire.CareofTest):
            return self._on_test(msg, "careof", now)
        if isinstance(msg, wire.BindingAck):
            return self._on_ba(msg, arrival, now)
        if isinstance(msg, wire.BindingError):
            return self._on_be(msg, arrival, now)
        return []

    def on_timer(self, now: float) -> list:
        actions = []
        for attempt in list(self.attempts.values()):
            if attempt.expires is not None and now >= attempt.expires:
                actions += self._fail(attempt, now, "lifetime expired")    # the binding is gone: LMA path
            elif attempt.retransmission.due is not None and now >= attempt.retransmission.due:
                actions += self._retransmit(attempt, now)
            elif attempt.phase == Phase.ESTABLISHED and attempt.refresh_at is not None and now >= attempt.refresh_at:
                actions += self._refresh(attempt, now)
            elif attempt.established and attempt.keepalive_at is not None and now >= attempt.keepalive_at:
                attempt.keepalive_at = now + attempt.keepalive_interval
                actions.append(self._to_peer(attempt, wire.Heartbeat(unsolicited=False, response=False,
                                                                     sequence=self._next_sequence())))
            elif attempt.phase == Phase.BACKOFF and attempt.retry_at is not None and now >= attempt.retry_at:
                # retry only when the flow asks again (start); forget idle pairs,
                # but remember their failures as long as the longest backoff
                del self.attempts[attempt.pair]
                self._failures[attempt.pair] = (attempt.failures, now + self.policy.retry_interval * 16)
        for pair, (_, forget) in list(self._failures.items()):
            if now >= forget:
                del self._failures[pair]
        return actions

    def next_deadline(self) -> float | None:
        return earliest(*(a.next_deadline for a in self.attempts.values()),
                        *(forget for _, forget in self._failures.values()))

    # --- phases --------------------------------------------------------------------
    def _query(self, attempt: Attempt, now: float) -> list:
        attempt.phase = Phase.QUERY
        attempt.lri_sequence = self._next_sequence()
        attempt.retransmission = self._retransmission(now)
        attempt.note(now, "LRI → LMA (which MAG serves the CN?)")
        return [self._lri(attempt)]

    def _lri(self, attempt: Attempt) -> Send:
        local, remote = attempt.pair.local, attempt.pair.remote
        options = []
        if isinstance(local, IPv4Address):
            options.append(wire.IPv4HomeAddress(local))
        elif attempt.mn_prefix is not None:
            options.append(wire.HomeNetworkPrefix(attempt.mn_prefix.prefixlen, attempt.mn_prefix.network_address))
        else:
            options.append(wire.HomeNetworkPrefix(128, local))
        options.append(wire.CNIPv4Address(remote) if isinstance(remote, IPv4Address) else wire.CNAddress(remote))
        lri = wire.LocalizedRoutingInitiation(sequence=attempt.lri_sequence, lifetime=self.policy.lifetime,
                                              options=options)
        p = self.policy
        return Send(lri, p.proxy_coa, p.lma_address, ipv4_dst=p.lma_ipv4,
                    ipv4_src=p.ipv4_proxy_coa if p.lma_ipv4 else None)

    def _on_lra(self, lra: wire.LocalizedRoutingAck, arrival: Arrival, now: float) -> list:
        if arrival.src != self.policy.lma_address:
            return []                     # only our LMA answers the query (it names the peer we trust)
        attempt = next((a for a in self.attempts.values()
                        if a.phase == Phase.QUERY and a.lri_sequence == lra.sequence), None)
        if attempt is None:
            return []
        attempt.retransmission.stop()
        attempt.note(now, f"LRA ← LMA: {_lra_status_name(lra.status)}")
        if lra.status == wire.LRAStatus.SUCCESS:
            mag = wire.find_option(lra, wire.MAGIPv6Address)
            if mag is None:
                return self._fail(attempt, now, "LRA without the serving MAG's address")
            if mag.address == self.policy.proxy_coa:
                return self._fail(attempt, now, "the CN is attached here: local routing, no RO", long=True)
            ipv4 = wire.find_option(lra, wire.IPv4CareofAddress)
            attempt.peer, attempt.peer_ipv4, attempt.outside = mag.address, ipv4.address if ipv4 else None, False
        elif lra.status == wire.LRAStatus.MN_NOT_ATTACHED:
            # No LMA anchors the CN: try it as an RO-capable correspondent (scenario 3).
            if isinstance(attempt.pair.remote, IPv4Address):
                return self._fail(attempt, now, "the IPv4 CN is outside the domain", long=True)
            attempt.peer, attempt.outside = attempt.pair.remote, True
            attempt.note(now, "no LMA anchors the CN: RR with the CN itself (scenario 3)")
        else:
            return self._fail(attempt, now, f"the LMA refused RO ({wire.LRAStatus(lra.status).name.lower()})"
                              if lra.status in wire.LRAStatus._value2member_map_ else f"LRA status {lra.status}",
                              long=True)
        if not self.policy.ipv4_transport:
            attempt.peer_ipv4 = None          # IPv6 between the MAGs: no need for it
        elif not attempt.outside and attempt.peer_ipv4 is None:
            return self._fail(attempt, now, "over IPv4 transport, but the peer MAG has no IPv4 proxy CoA", long=True)
        if isinstance(attempt.pair.local, IPv4Address) and self.policy.ipv4_proxy_coa is None:
            return self._fail(attempt, now, "RO for an IPv4 MN needs our IPv4 proxy CoA (fig. 3)", long=True)
        key = self.policy.peer_keys.get(attempt.peer)
        attempt.mode = "quick" if self.policy.mode == "quick" and key is not None else "rr"
        if attempt.mode == "quick":
            return self._bind(attempt, now)
        return self._return_routability(attempt, now)

    def _return_routability(self, attempt: Attempt, now: float) -> list:
        attempt.phase = Phase.RETURN_ROUTABILITY
        # Draft §3: a different cookie for each MN and each attempt.
        attempt.home_cookie, attempt.careof_cookie = self.random(8), self.random(8)
        attempt.home_token = attempt.careof_token = None
        attempt.retransmission = self._retransmission(now)
        coti_path = ("through the LMA" if self.policy.ipv4_transport or isinstance(attempt.pair.local, IPv4Address)
                     else f"→ {attempt.peer}")
        attempt.note(now, f"HoTI → home path via the LMA, CoTI {coti_path}")
        return self._rr_messages(attempt)

    def _rr_messages(self, attempt: Attempt) -> list:
        local, remote = attempt.pair.local, attempt.pair.remote
        p = self.policy
        actions = []
        if isinstance(local, IPv4Address):
            # Fig. 2 and 3: IPv4 (MN or MAG1 → CN) / IPv6 (MAG1 pCoA → MAG2 pCoA) / MH,
            # with the IPv4 addresses in options as well. The HoTI takes the IPv4
            # MN's tunnel to the LMA; the CoTI is routed to the CN's address,
            # which the LMA anchors, so it reaches MAG2 the same way.
            if attempt.home_token is None:
                hoti = wire.HomeTestInit(home_init_cookie=attempt.home_cookie,
                                         options=[wire.IPv4HomeAddress(local), wire.CNIPv4Address(remote)])
                actions.append(SendHomePath(hoti, src=p.proxy_coa, dst=attempt.peer, anchor=local,
                                            wrap_ipv4=(local, remote)))
            if attempt.careof_token is None:
                coti = wire.CareofTestInit(careof_init_cookie=attempt.careof_cookie,
                                           options=[wire.IPv4CareofAddress(p.ipv4_proxy_coa),
                                                    wire.CNIPv4Address(remote)])
                actions.append(Send(coti, p.proxy_coa, attempt.peer, wrap_ipv4=(p.ipv4_proxy_coa, remote)))
            return actions
        if attempt.home_token is None:
            actions.append(SendHomePath(wire.HomeTestInit(home_init_cookie=attempt.home_cookie),
                                        src=local, dst=remote))
        if attempt.careof_token is None:
            coti = wire.CareofTestInit(careof_init_cookie=attempt.careof_cookie)
            if p.ipv4_transport:
                # §2.1.1.2: into the IPv4 tunnel to the LMA, which routes it by
                # its destination, the CN's address, to the CN's MAG
                actions.append(SendHomePath(coti, src=p.proxy_coa, dst=remote, anchor=local))
            else:
                actions.append(Send(coti, p.proxy_coa, attempt.peer))
        return actions

    def _on_test(self, msg, which: str, now: float) -> list:
        cookie_field = "home_cookie" if which == "home" else "careof_cookie"
        cookie = msg.home_init_cookie if which == "home" else msg.careof_init_cookie
        attempt = next((a for a in self.attempts.values() if a.phase == Phase.RETURN_ROUTABILITY
                        and getattr(a, cookie_field) == cookie), None)
        if attempt is None:
            return []                     # stale, or a forged cookie: RFC 6275 §11.6.2
        if which == "home":
            attempt.home_token, attempt.home_nonce_index = msg.home_keygen_token, msg.home_nonce_index
            attempt.note(now, "HoT ← home path")
        else:
            attempt.careof_token, attempt.careof_nonce_index = msg.careof_keygen_token, msg.careof_nonce_index
            attempt.note(now, f"CoT ← {attempt.peer}")
        if attempt.home_token is None or attempt.careof_token is None:
            return []
        attempt.tokens_at = now
        attempt.kbm = security.binding_management_key(attempt.home_token, attempt.careof_token)
        return self._bind(attempt, now)

    def _bind(self, attempt: Attempt, now: float) -> list:
        attempt.phase = Phase.BINDING
        attempt.sequence = self._next_sequence()
        attempt.retransmission = self._retransmission(now)
        auth = "option 9, quick mode" if attempt.mode == "quick" else "BAD from Kbm"
        attempt.note(now, f"BU → {attempt.peer} ({auth})")
        return [self._binding_update(attempt, now, lifetime=self.policy.lifetime)]

    def _binding_update(self, attempt: Attempt, now: float, lifetime: int) -> Send:
        local, remote = attempt.pair.local, attempt.pair.remote
        options = [
            wire.IPv4HomeAddress(local) if isinstance(local, IPv4Address) else wire.HomeNetworkPrefix(128, local),
            wire.CNIPv4HomeAddress(32, remote) if isinstance(remote, IPv4Address)
            else wire.CNHomeNetworkPrefix(128, remote),
            wire.Timestamp.from_unix(now),
        ]
        p = self.policy
        if attempt.over_ipv4:
            # the peer compares it with the source it sees: a NAT if they differ
            options.insert(2, wire.IPv4CareofAddress(p.ipv4_proxy_coa))
        bu = wire.BindingUpdate(sequence=attempt.sequence, flags=wire.BUFlags.A | wire.BUFlags.P,
                                lifetime=lifetime // 4, options=options)
        attempt.bu_sent = now
        if attempt.mode == "quick":
            key = p.peer_keys[attempt.peer]
            bu = security.sign_mma(bu, key.spi, key.key, p.proxy_coa, attempt.peer)
        else:
            bu.options.append(wire.NonceIndices(attempt.home_nonce_index, attempt.careof_nonce_index))
            # RFC 6275 §5.2.5: deleting a binding is keyed by the home keygen token alone
            kbm = security.binding_management_key(attempt.home_token) if lifetime == 0 else attempt.kbm
            bu = security.sign_binding_update(bu, kbm, p.proxy_coa, attempt.peer)
        return self._to_peer(attempt, bu)

    def _to_peer(self, attempt: Attempt, message: wire.Message) -> Send:
        """Directly to the peer: IPv6, or IPv6/MH in UDP 5436 between the IPv4
        proxy CoAs when the MAGs talk over IPv4 (fig. 6)."""
        p = self.policy
        if attempt.over_ipv4:
            return Send(message, p.proxy_coa, attempt.peer, ipv4_dst=UdpEndpoint(attempt.peer_ipv4),
                        ipv4_src=p.ipv4_proxy_coa)
        return Send(message, p.proxy_coa, attempt.peer)

    def _on_ba(self, ba: wire.BindingAck, arrival: Arrival, now: float) -> list:
        ack = wire.find_option(ba, wire.ROAcknowledgement) or wire.find_option(ba, wire.IPv4ROAcknowledgement)
        if ack is None:
            return []
        attempt = next((a for a in self.attempts.values() if a.phase == Phase.BINDING
                        and a.sequence == ba.sequence and a.peer == arrival.src), None)
        if attempt is None:
            return []
        refused = ba.status >= RO_ACCEPTED_BELOW or ack.status >= RO_ACCEPTED_BELOW
        status = ba.status if ba.status >= RO_ACCEPTED_BELOW else ack.status
        attempt.note(now, f"BA ← {attempt.peer}: {_status_name(status)}")
        if refused and status in EXPIRED_NONCE_STATUSES and attempt.mode == "rr":
            # Without its nonces the peer has no Kbm, so this BA alone comes
            # without a BAD (RFC 6275 §9.5.4); redo the RR (§11.7.3).
            return self._return_routability(attempt, now)
        if not self._authentic(ba, attempt):
            return []                      # RFC 6275 §11.7.3: silently ignore; the BU will be resent
        if refused:
            return self._fail(attempt, now, f"the peer refused the binding: {_status_name(status)}")
        granted = min(ack.lifetime * 4, self.policy.lifetime)
        # Counted from when the BU left, as MAG2 counts from when it arrived:
        # our entry never outlives MAG2's binding (which alone lets our
        # tunnelled packets in there, DESIGN §4).
        sent = attempt.bu_sent if attempt.bu_sent is not None else now
        if sent + granted <= now:
            return []                      # over before it arrived: as good as lost
        attempt.retransmission.stop()
        first = not attempt.established
        attempt.phase, attempt.established, attempt.failures = Phase.ESTABLISHED, True, 0
        attempt.expires = sent + granted
        attempt.refresh_at = sent + granted * self.policy.refresh_fraction
        nat = wire.find_option(ba, wire.NATDetection)
        attempt.nat = nat is not None
        if nat is not None:
            # RFC 5555 §4.1: keep the NAT's mapping alive at the refresh time it gave
            attempt.keepalive_interval = max(float(nat.refresh_time), 1.0)
            attempt.keepalive_at = now + attempt.keepalive_interval
            attempt.note(now, f"NAT on the path: UDP encapsulation, keepalive every {nat.refresh_time} s")
        attempt.note(now, f"RO entry installed for {granted} s")
        return [RoInstalled(attempt.pair, attempt.peer, arrival.ipv4_src, attempt.expires, granted, attempt.mode,
                            "initiator", setup_seconds=now - attempt.triggered if first else None,
                            nat=attempt.nat)]

    def _authentic(self, ba: wire.BindingAck, attempt: Attempt) -> bool:
        p = self.policy
        if attempt.mode == "quick":
            key = p.peer_keys[attempt.peer]
            return security.verify_mma(ba, {key.spi: key.key}, attempt.peer, p.proxy_coa)
        return security.verify_binding_authorization(ba, attempt.kbm, p.proxy_coa, attempt.peer)

    def _on_be(self, be: wire.BindingError, arrival: Arrival, now: float) -> list:
        """The peer has no binding for our MN (RFC 6275 §9.3.3): fall back."""
        actions = []
        for attempt in [a for a in self.attempts.values() if a.phase != Phase.BACKOFF
                        and a.peer == arrival.src and mapped(a.pair.local) == be.home_address]:
            # The peer lost the pair (its CN moved or left): no fault of the
            # attempt, so no backoff: the flow's next trigger starts afresh
            # (handover with RO active, toward the CN's new MAG).
            actions += self._fail(attempt, now, "binding error from the peer", penalize=False)
        return actions

    def _refresh(self, attempt: Attempt, now: float) -> list:
        """Before the lifetime ends: a fresh RR (tokens last 210 s, RFC 6275
        §5.2.7) and BU, while the installed entry keeps forwarding."""
        attempt.started = now
        attempt.refresh_at = None
        attempt.timeline = [(now, "refresh")]
        if attempt.mode == "quick":
            return self._bind(attempt, now)
        return self._return_routability(attempt, now)

    def _retransmit(self, attempt: Attempt, now: float) -> list:
        if attempt.retransmission.attempts >= self.policy.max_transmissions:
            if attempt.established:
                # A failed refresh: keep the entry until it expires, then fall back.
                attempt.last_failure = f"refresh unanswered in phase {attempt.phase.value}"
                attempt.retransmission.stop()
                attempt.phase = Phase.ESTABLISHED
                return []
            return self._fail(attempt, now, f"no answer in phase {attempt.phase.value}")
        attempt.retransmission.backoff(now)
        attempt.note(now, f"no answer: retransmission {attempt.retransmission.attempts} ({attempt.phase.value})")
        if attempt.phase == Phase.QUERY:
            return [self._lri(attempt)]
        if attempt.phase == Phase.RETURN_ROUTABILITY:
            return self._rr_messages(attempt)
        if attempt.phase == Phase.BINDING:
            # RFC 6275 §11.8: a retransmitted BU carries a new sequence number
            attempt.sequence = self._next_sequence()
            return [self._binding_update(attempt, now, lifetime=self.policy.lifetime)]
        attempt.retransmission.stop()
        return []

    def _fail(self, attempt: Attempt, now: float, reason: str, long: bool = False, penalize: bool = True) -> list:
        """Back to the LMA path; retry after a backoff that doubles with each
        failure (penalize=False: no failure of ours, retry at once)."""
        attempt.retransmission.stop()
        actions = []
        if attempt.established:
            actions.append(RoRemoved(attempt.pair, attempt.peer, "initiator", reason))
        attempt.phase, attempt.established = Phase.BACKOFF, False
        attempt.expires = attempt.refresh_at = None
        if penalize:
            attempt.failures += 1
            factor = 16 if long else 2 ** min(attempt.failures - 1, 4)
            attempt.retry_at = now + self.policy.retry_interval * factor
        else:
            attempt.retry_at = now
        attempt.last_failure = reason
        attempt.note(now, f"failed: {reason}")
        actions.append(RoFailed(attempt.pair, reason, attempt.retry_at))
        return actions

    def _can_sign_deregistration(self, attempt: Attempt, now: float) -> bool:
        """A home keygen token still fresh (RFC 6275 §5.2.7); a refresh's RR
        that has not yet had its HoT back has none."""
        if attempt.mode == "quick":
            return True
        return attempt.home_token is not None and now - attempt.tokens_at < security.MAX_TOKEN_LIFETIME

    def _retransmission(self, now: float) -> Retransmission:
        r = Retransmission(initial=self.policy.initial_timeout, maximum=self.policy.max_timeout)
        r.start(now)
        return r

    def _next_sequence(self) -> int:
        self._sequence = (self._sequence + 1) & 0xFFFF
        return self._sequence


# ---------------------------------------------------------------------------
# Responder (MAG2, CN agent)
# ---------------------------------------------------------------------------

@dataclass
class ResponderPolicy:
    address: IPv6Address                  # our proxy CoA (MAG2) or the CN's address (CN agent)
    serves: Callable[[Address], bool]     # is this CN address ours to answer for?
    home_path: bool = True                # MAG2: the HoT goes into the LMA tunnel; CN agent: plain
    max_lifetime: int = security.MAX_RR_BINDING_LIFETIME
    timestamp_window: float = 7.0         # RFC 5213 TimestampValidityWindow, for the RO BU too
    peer_keys: Mapping[IPv6Address, PeerKey] = field(default_factory=dict)
    nonce_rotation: float = 30.0
    nat_keepalive: int = 20               # refresh time in our NAT Detection option (RFC 5555)


@dataclass(frozen=True)
class ResponderBinding:
    pair: RoPair                          # local = the CN, remote = the MN
    peer: IPv6Address                     # MAG1's proxy CoA
    peer_ipv4: UdpEndpoint | None
    expires: float
    lifetime: int
    timestamp: float
    mode: str


class RoResponder:
    def __init__(self, policy: ResponderPolicy, kcn: bytes | None = None,
                 random: Callable[[int], bytes] = os.urandom):
        self.policy = policy
        self.kcn = kcn or security.new_kcn()
        self.nonces = security.NonceTable(rotation=policy.nonce_rotation, random=random)
        self.bindings: dict[RoPair, ResponderBinding] = {}
        self._last_timestamp: dict[RoPair, float] = {}

    def receive(self, msg: wire.Message, arrival: Arrival, now: float) -> list:
        if isinstance(msg, wire.HomeTestInit):
            return self._on_hoti(msg, arrival, now)
        if isinstance(msg, wire.CareofTestInit):
            return self._on_coti(msg, arrival, now)
        if isinstance(msg, wire.BindingUpdate):
            return self._on_bu(msg, arrival, now)
        if isinstance(msg, wire.BindingError):
            return self._on_be(msg, arrival)
        return []

    def on_timer(self, now: float) -> list:
        self._forget_timestamps(now)
        expired = [b for b in self.bindings.values() if now >= b.expires]
        for binding in expired:
            del self.bindings[binding.pair]
        return [RoRemoved(b.pair, b.peer, "responder", "lifetime expired") for b in expired]

    def next_deadline(self) -> float | None:
        return earliest(*(b.expires for b in self.bindings.values()))

    def cn_detached(self, local: Address) -> list:
        """Our CN left (detach, handover): drop its bindings and tell each
        peer with a Binding Error, so it falls back at once."""
        actions = []
        for binding in [b for b in self.bindings.values() if b.pair.local == local]:
            del self.bindings[binding.pair]
            actions.append(RoRemoved(binding.pair, binding.peer, "responder", "cn detached"))
            actions.append(self.binding_error(binding.pair.remote, binding.peer))
        return actions

    def remove(self, pair: RoPair, reason: str) -> list:
        binding = self.bindings.pop(pair, None)
        return [RoRemoved(pair, binding.peer, "responder", reason)] if binding else []

    def binding_error(self, mn_address: Address, peer: IPv6Address) -> Send:
        return Send(no_binding_error(mn_address), self.policy.address, peer)

    # --- return routability (RFC 6275 §9.4) ------------------------------------------
    def _on_hoti(self, hoti: wire.HomeTestInit, arrival: Arrival, now: float) -> list:
        cn, mn = _ipv4_named(hoti, arrival)
        if not self.policy.serves(cn):
            return [RoRejected(RoPair(cn, mn), arrival.src, "hoti for a cn not served here")]
        index, nonce = self.nonces.current(now)
        # docs/protocol.md §6: the MN's home address; for an IPv4 MN its 4 octets
        token = security.home_keygen_token(self.kcn, mn, nonce)
        hot = wire.HomeTest(home_nonce_index=index, home_init_cookie=hoti.home_init_cookie, home_keygen_token=token)
        if arrival.proxy_src is not None:
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
        index, nonce = self.nonces.current(now)
        token = security.careof_keygen_token(self.kcn, careof, nonce)
        cot = wire.CareofTest(careof_nonce_index=index, careof_init_cookie=coti.careof_init_cookie,
                              careof_keygen_token=token)
        if arrival.proxy_src is None and arrival.home_path:
            # §2.1.1.2: it came through the LMA over IPv4 transport; so goes the
            # CoT, through the CN's tunnel to the LMA, to MAG1's proxy CoA
            return [SendHomePath(cot, src=self.policy.address, dst=careof, anchor=_unmapped(arrival.dst))]
        return [arrival.reply(cot, self.policy.address, careof)]

    # --- the RO binding update (draft §2.3, RFC 6275 §9.5) ------------------------------
    def _on_bu(self, bu: wire.BindingUpdate, arrival: Arrival, now: float) -> list:
        pair = _pair_of(bu)
        if pair is None or not bu.flags & wire.BUFlags.P:
            return []                      # not an RO BU: not ours
        peer = arrival.src
        mma = wire.find_option(bu, wire.MobilityMessageAuthentication)
        kbm = None
        if mma is not None:
            key = self.policy.peer_keys.get(peer)
            keys = {key.spi: key.key} if key else {}
            if not security.verify_mma(bu, keys, peer, arrival.dst):
                return [RoRejected(pair, peer, "bad quick-mode authenticator" if key else "no key for this peer")]
            mode = "quick"
        else:
            indices = wire.find_option(bu, wire.NonceIndices)
            if indices is None or not isinstance(bu.options[-1], wire.BindingAuthorizationData):
                return [RoRejected(pair, peer, "unauthenticated binding update")]
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
                return [RoRejected(pair, peer, _status_name(status)), self._ba(bu, arrival, status, 0, None, now)]
            kbm = security.binding_management_key(
                security.home_keygen_token(self.kcn, pair.remote, home_nonce),
                None if deleting else security.careof_keygen_token(self.kcn, peer, careof_nonce))
            if not security.verify_binding_authorization(bu, kbm, peer, arrival.dst):
                return [RoRejected(pair, peer, "bad binding authorization data")]    # RFC 6275 §9.5.1: silently drop
            mode = "rr"
        if not self.policy.serves(pair.local):
            return [RoRejected(pair, peer, "cn not served here"),
                    self._ba(bu, arrival, wire.Status.ADMIN_PROHIBITED, 0, kbm, now, mode)]
        stamp = wire.find_option(bu, wire.Timestamp)
        if stamp is None or abs(stamp.to_unix() - now) > self.policy.timestamp_window:
            return [RoRejected(pair, peer, "timestamp mismatch"),
                    self._ba(bu, arrival, wire.Status.TIMESTAMP_MISMATCH, 0, kbm, now, mode)]
        if stamp.to_unix() <= self._last_timestamp.get(pair, float("-inf")):
            return [RoRejected(pair, peer, "replayed or reordered binding update"),
                    self._ba(bu, arrival, wire.Status.TIMESTAMP_LOWER_THAN_PREV_ACCEPTED, 0, kbm, now, mode)]
        self._forget_timestamps(now)
        self._last_timestamp[pair] = stamp.to_unix()
        lifetime = min(bu.lifetime * 4, self.policy.max_lifetime)
        # RFC 5555 §4.1 style NAT detection: the IPv4 CoA the initiator put in
        # the BU is not the source we see
        coa = wire.find_option(bu, wire.IPv4CareofAddress)
        nat = arrival.over_ipv4 and coa is not None and coa.address != arrival.ipv4_src.address
        actions = []
        if lifetime == 0:
            actions += self.remove(pair, "deregistered by the peer")
        else:
            binding = ResponderBinding(pair, peer, arrival.ipv4_src, now + lifetime, lifetime, stamp.to_unix(), mode)
            self.bindings[pair] = binding
            # installed before the BA leaves: MAG1's first optimized packet finds it
            actions.append(RoInstalled(pair, peer, arrival.ipv4_src, binding.expires, lifetime, mode, "responder",
                                       nat=nat))
        actions.append(self._ba(bu, arrival, wire.Status.ACCEPTED, lifetime, kbm, now, mode, nat=nat))
        return actions

    def _forget_timestamps(self, now: float) -> None:
        """A Timestamp older than the window needs no remembering: a BU that
        old fails the window check (156) anyway."""
        for pair in [p for p, t in self._last_timestamp.items() if t < now - self.policy.timestamp_window]:
            del self._last_timestamp[pair]

    def _ba(self, bu: wire.BindingUpdate, arrival: Arrival, status: int, lifetime: int, kbm: bytes | None,
            now: float, mode: str | None = None, nat: bool = False) -> Send:
        pair = _pair_of(bu)
        ack_cls = wire.IPv4ROAcknowledgement if isinstance(pair.local, IPv4Address) else wire.ROAcknowledgement
        options = [ack_cls(status=0 if status < RO_ACCEPTED_BELOW else status, lifetime=lifetime // 4)]
        stamp = wire.find_option(bu, wire.Timestamp)
        options.append(stamp if stamp is not None else wire.Timestamp.from_unix(now))
        if nat:
            options.append(wire.NATDetection(refresh_time=self.policy.nat_keepalive))
        ba = wire.BindingAck(status=status, flags=wire.BAFlags.P, sequence=bu.sequence, lifetime=lifetime // 4,
                             options=options)
        peer = arrival.src
        key = self.policy.peer_keys.get(peer)
        if mode == "quick" and key is not None:
            ba = security.sign_mma(ba, key.spi, key.key, arrival.dst, peer)
        elif kbm is not None:
            ba = security.sign_binding_update(ba, kbm, peer, arrival.dst)
        return arrival.reply(ba, arrival.dst, peer)

    def _on_be(self, be: wire.BindingError, arrival: Arrival) -> list:
        """MAG1 has no binding for that MN any more: drop ours."""
        actions = []
        for binding in [b for b in self.bindings.values()
                        if b.peer == arrival.src and mapped(b.pair.remote) == be.home_address]:
            actions += self.remove(binding.pair, "binding error from the peer")
        return actions


def _unmapped(address: IPv6Address) -> Address:
    return address.ipv4_mapped or address


def _ipv4_named(hoti: wire.HomeTestInit, arrival: Arrival) -> tuple[Address, Address]:
    """(CN, MN) of a HoTI. For fig. 2 the MAG "replaces the source and
    destination address ... with IPv4 addresses in mobility option" (draft
    §2.1.1.1); the IPv4 header around it says the same."""
    if arrival.proxy_src is not None:
        hoa = wire.find_option(hoti, wire.IPv4HomeAddress)
        cn = wire.find_option(hoti, wire.CNIPv4Address)
        return (cn.address if cn else _unmapped(arrival.dst)), (hoa.address if hoa else _unmapped(arrival.src))
    return _unmapped(arrival.dst), _unmapped(arrival.src)


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


def _lra_status_name(status: int) -> str:
    try:
        return wire.LRAStatus(status).name.lower()
    except ValueError:
        return f"status {status}"


def _status_name(status: int) -> str:
    try:
        return wire.Status(status).name.lower()
    except ValueError:
        return f"status {status}"
