"""The RO initiator at MAG1, for its MNs (draft §2.1.1, §2.2, §2.3), sans-I/O.

    LRI → LMA                          which MAG serves the CN? (DESIGN §2: RFC 6705 messages)
    LRA ← LMA                          0: MAG2's proxy CoA; 129: nobody (try the CN itself,
                                       scenario 3); 128: policy says no
    HoTI → along the home path         src MN-HoA, dst CN-HoA, through the LMA (RFC 6275 §5.2.5)
    CoTI → MAG2 / the CN               src MAG1's proxy CoA, direct
    HoT, CoT ←                         keygen tokens → Kbm
    BU → MAG2 / the CN                 P flag, HNP = MN-HoA/128, CN-HNP = CN-HoA/128, Timestamp,
                                       Nonce Indices, Binding Authorization Data (fig. 4)
    BA ←                               RO Acknowledgement, Timestamp, BAD (fig. 5)

When the LRA names our own proxy CoA, the CN is an MN attached here too:
with the LMA's consent (status 0; 128 when its policy forbids it) and our
own binding for that MN, the pair goes to local routing (RFC 6705, phase
LOCAL): XDP forwards local → remote between the access links, no tunnel, no
RR. The LRI is sent again at the refresh time of the lifetime the LRA
granted; the pair ends when either MN leaves (MagNode) or the LMA stops
consenting.

In quick mode (draft §2.2) the RR is skipped and the BU/BA carry option 9
(RFC 4285) keyed from the peer authentication database instead.

Each pair's attempt moves through the phases of one transition table
(_TRANSITIONS, after h11's _state.py); a move the table does not hold is a
bug and raises IllegalTransition. Traffic never waits for any of this: until
RoInstalled the flow keeps the LMA path, and it returns there on RoRemoved.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from typing import Callable, Mapping

from ... import security, wire
from ...security import PeerKey
from ...transport import Arrival, Send, SendHomePath, UdpEndpoint
from ..common import Deadlines, Retransmission, Stamper, earliest
from ..index import AddressGroups, Groups
from ..vocabulary import FailReason, Mode, RejectReason, Role, StopReason, status_label
from .actions import (Address, BindingErrorKey, LocalRouteInstalled, LocalRouteRemoved, RoFailed, RoInstalled, RoPair,
                      RoRejected, RoRemoved, mapped, no_binding_error, unmapped)

RO_ACCEPTED_BELOW = 128                  # BA status < 128: accepted (RFC 6275 §6.1.8)
EXPIRED_NONCE_STATUSES = {wire.Status.EXPIRED_HOME_NONCE_INDEX, wire.Status.EXPIRED_CAREOF_NONCE_INDEX,
                          wire.Status.EXPIRED_BOTH_NONCE_INDEX}
# At most one refresh per pair in this many seconds on an unsigned Binding Error
# (which ends nothing: docs/security.md), so a stream of them is no amplifier.
BE_REFRESH_INTERVAL = 10.0
# That refresh retries sooner than a routine one: the peer that lost its state
# may not know our MN's correspondent again for a moment (it learns the MN
# from its next packet), and meanwhile the flow is black-holed (issue 13).
BE_REFRESH_FIRST_TIMEOUT = 0.25


class Phase(enum.StrEnum):
    QUERY = "query"                       # LRI sent
    RETURN_ROUTABILITY = "rr"             # HoTI / CoTI sent
    BINDING = "binding"                   # BU sent
    ESTABLISHED = "established"           # the BA came; refreshed before the lifetime ends
    BACKOFF = "backoff"                   # failed; retry later
    LOCAL = "local"                       # the LMA consented: local routing installed (RFC 6705)


class Event(enum.Enum):
    """What moves an attempt from one phase to the next."""
    RR_STARTED = enum.auto()              # HoTI/CoTI sent: first time, after a refused nonce, or a refresh
    BU_SENT = enum.auto()                 # the tokens (or a quick-mode key) are there: BU sent
    BINDING_ACCEPTED = enum.auto()        # an authentic accepting BA
    REFRESH_ABANDONED = enum.auto()       # a refresh went unanswered: the entry lives until it expires
    FAILED = enum.auto()                  # back to the LMA path
    LOCAL_GRANTED = enum.auto()           # an LRA naming us as the CN's MAG: local routing
    REQUERIED = enum.auto()               # local routing's refresh: the LRI again


_TRANSITIONS: dict[Phase, dict[Event, Phase]] = {
    Phase.QUERY: {Event.RR_STARTED: Phase.RETURN_ROUTABILITY, Event.BU_SENT: Phase.BINDING,
                  Event.FAILED: Phase.BACKOFF, Event.LOCAL_GRANTED: Phase.LOCAL,
                  Event.REFRESH_ABANDONED: Phase.LOCAL},      # (a local route's refresh LRI went unanswered)
    Phase.RETURN_ROUTABILITY: {Event.BU_SENT: Phase.BINDING, Event.REFRESH_ABANDONED: Phase.ESTABLISHED,
                               Event.FAILED: Phase.BACKOFF},
    Phase.BINDING: {Event.BINDING_ACCEPTED: Phase.ESTABLISHED, Event.RR_STARTED: Phase.RETURN_ROUTABILITY,
                    Event.REFRESH_ABANDONED: Phase.ESTABLISHED, Event.FAILED: Phase.BACKOFF},
    Phase.ESTABLISHED: {Event.RR_STARTED: Phase.RETURN_ROUTABILITY, Event.BU_SENT: Phase.BINDING,
                        Event.FAILED: Phase.BACKOFF},
    Phase.BACKOFF: {},                    # a retry is a new attempt, in QUERY
    Phase.LOCAL: {Event.REQUERIED: Phase.QUERY, Event.FAILED: Phase.BACKOFF},
}


@dataclass
class SavedAttempt:
    """An established pair as the store keeps it, so that a restarted
    daemon (even after kill -9) refreshes it before it lapses."""
    pair: RoPair
    peer: Peer | None                     # None: a local route
    mode: Mode
    binding: Binding
    tokens: Tokens | None
    mn_prefix: IPv6Network | None
    triggered: float
    bu_stamp: int = 0
    local: bool = False                   # local routing (RFC 6705), no peer


class IllegalTransition(RuntimeError):
    """A phase change the transition table does not allow: a bug here."""


@dataclass(kw_only=True)
class InitiatorPolicy:
    proxy_coa: IPv6Address
    lma_address: IPv6Address
    lifetime: int = security.MAX_RR_BINDING_LIFETIME
    mode: Mode = Mode.RR                  # QUICK: quick mode with peers that have a key
    peer_keys: Mapping[IPv6Address, PeerKey] = field(default_factory=dict)
    refresh_fraction: float = 0.8
    initial_timeout: float = 1.0
    max_timeout: float = 32.0
    max_transmissions: int = 4            # per message, before the attempt fails (1+2+4+8 s)
    retry_interval: float = 30.0          # first retry after a failure, doubling up to 16×
    # Attempts held (any phase), in all and per MN (its prefix): a flow trigger
    # past either limit pushes out the oldest attempt in backoff, or starts nothing.
    max_attempts: int = 65536
    max_attempts_per_mn: int = 256
    # Pairs whose attempt ended in a failure are remembered (for a longer
    # backoff) this many at most; past it the soonest to be forgotten goes.
    max_remembered_failures: int = 65536
    lma_ipv4: UdpEndpoint | None = None   # send the LRI over IPv4 (RFC 5844 transport)
    ipv4_proxy_coa: IPv4Address | None = None
    # The MAGs reach each other over IPv4 only (draft §2.1.1.2, §2.3.2): the
    # CoTI goes through the IPv4 tunnel to the LMA, the BU/BA between the
    # IPv4 proxy CoAs inside UDP 5436 (fig. 6, 7).
    ipv4_transport: bool = False
    # Addresses of other kinds of peer (our LMA, peer LMAs, our own): never an RO peer.
    reserved: Callable[[IPv6Address], bool] = lambda address: False
    # The lengths of our MNs' home network prefixes (mag.hnp_lengths): an MN's
    # pairs are found by its prefix (pairs_of) without a walk.
    hnp_lengths: tuple[int, ...] = (64,)
    # Local routing (RFC 6705) when the LRA names us as the CN's MAG ([ro]
    # local_routing); only toward an MN our own binding update list holds
    # registered (MagNode sets serves_here), and at most max_local_routes
    # (the data plane's table, dataplane.max_ro_entries).
    local_routing: bool = True
    serves_here: Callable[[Address], bool] = lambda address: False
    max_local_routes: int = 65536

    def __post_init__(self):
        self.mode = Mode(self.mode)


@dataclass(frozen=True)
class Peer:
    """Whom the binding is with, as the LMA's answer said."""
    address: IPv6Address                  # MAG2's proxy CoA, or the CN itself (outside)
    ipv4: IPv4Address | None = None       # MAG2's IPv4 proxy CoA, when the MAGs talk over IPv4
    outside: bool = False                 # scenario 3: the peer is the CN itself

    @property
    def over_ipv4(self) -> bool:
        """BU/BA between the MAGs' IPv4 proxy CoAs (fig. 6, 7)."""
        return self.ipv4 is not None and not self.outside


@dataclass
class Tokens:
    """One return routability round (RFC 6275 §5.2): the cookies we sent and
    the keygen tokens that came back."""
    home_cookie: bytes
    careof_cookie: bytes
    home_token: bytes | None = None
    careof_token: bytes | None = None
    home_nonce_index: int = 0
    careof_nonce_index: int = 0
    complete_at: float | None = None      # when the second token came

    @property
    def kbm(self) -> bytes | None:
        if self.home_token is None or self.careof_token is None:
            return None
        return security.binding_management_key(self.home_token, self.careof_token)


@dataclass(frozen=True)
class Binding:
    """The binding the peer granted: what the installed entry runs on."""
    expires: float
    refresh_at: float | None              # None once its refresh has been tried
    nat: bool = False                     # the BA said a NAT is on the path (RFC 5555 NAT Detection)
    keepalive_interval: float | None = None
    peer_endpoint: UdpEndpoint | None = None  # where the BA came from over IPv4 (the NAT's mapping)
    # RR: the Kbm of the BU the peer granted: it signs and checks the pair's
    # Binding Errors (quick mode uses the peer's key)
    kbm: bytes | None = field(default=None, repr=False, compare=False)


@dataclass
class Attempt:
    """One pair's RO state at the initiator."""
    pair: RoPair
    started: float                        # when this attempt (or refresh) began
    triggered: float                      # when the flow asked for RO (for the set-up time)
    mn_prefix: object = None              # the MN's home network prefix (for the LRI)
    phase: Phase = Phase.QUERY
    mode: Mode = Mode.RR
    peer: Peer | None = None
    lri_sequence: int = 0
    tokens: Tokens | None = None
    lri_stamp: int = 0                    # the LRI's Timestamp, which the LRA echoes
    sequence: int = 0                     # of the outstanding BU
    bu_stamp: int = 0                     # its Timestamp, which the BA echoes
    # When the outstanding BU left: its lifetime counts from then (RFC 6275 §11.1, §11.7.3).
    bu_sent: float | None = None
    retransmission: Retransmission = field(default_factory=Retransmission)
    binding: Binding | None = None        # set while an entry is installed
    local: bool = False                   # the entry is a local route (RFC 6705), not an RO tunnel
    keepalive_at: float | None = None
    be_refresh_at: float | None = None    # the last refresh an unsigned Binding Error asked for
    failures: int = 0
    nonces_renewed: bool = False          # one RR again after an expired-nonce BA, until a BA accepts
    retry_at: float | None = None
    last_failure: str = ""
    # (time, template, arguments) of this attempt's signaling, for `ro show`
    # and the demo; formatted only when someone looks (timeline)
    notes: list[tuple[float, str, tuple]] = field(default_factory=list)

    @property
    def established(self) -> bool:
        """An entry is installed (also while a refresh is in flight)."""
        return self.binding is not None

    @property
    def expires(self) -> float | None:
        return self.binding.expires if self.binding else None

    def move(self, event: Event) -> None:
        target = _TRANSITIONS[self.phase].get(event)
        if target is None:
            raise IllegalTransition(f"{self.pair}: {event.name} in phase {self.phase.value}")
        if target in (Phase.ESTABLISHED, Phase.LOCAL) and self.binding is None:
            raise IllegalTransition(f"{self.pair}: established without a binding")
        self.phase = target

    def note(self, now: float, template: str, *args) -> None:
        if len(self.notes) < 40:
            self.notes.append((now, template, args))

    @property
    def timeline(self) -> list[tuple[float, str]]:
        """(time, what) of this attempt's signaling."""
        return [(t, template.format(*args)) for t, template, args in self.notes]

    @property
    def next_deadline(self) -> float | None:
        binding = self.binding
        return earliest(self.retransmission.due,
                        binding.refresh_at if binding and self.phase in (Phase.ESTABLISHED, Phase.LOCAL) else None,
                        binding.expires if binding else None,
                        self.retry_at if self.phase is Phase.BACKOFF else None,
                        self.keepalive_at if binding else None)


class RoInitiator:
    def __init__(self, policy: InitiatorPolicy, random: Callable[[int], bytes] = os.urandom,
                 stamper: Stamper | None = None):
        self.policy = policy
        self.random = random
        self.stamper = stamper or Stamper()
        self.attempts: dict[RoPair, Attempt] = {}
        self._per_mn: dict[object, int] = {}      # an MN's prefix (or address) -> attempts held
        # a peer's address -> the pairs of the attempts held with it (a BE from
        # anyone looks there, not through every attempt)
        self._with_peer: dict[IPv6Address, dict[RoPair, None]] = {}
        # (peer, our MN's address) -> those pairs (a BE names the MN), and
        # each attempt's pair by our MN's address (its prefix: pairs_of)
        self._with_peer_at: Groups[tuple[IPv6Address, Address], RoPair] = Groups()
        self._by_local: AddressGroups[RoPair] = AddressGroups(policy.hnp_lengths)
        # local routes (RFC 6705) installed, by the remote MN's address: its
        # detach ends them (local_pairs_to), found without a walk
        self._local_to: AddressGroups[RoPair] = AddressGroups(policy.hnp_lengths)
        self._locals: dict[RoPair, None] = {}
        # what an answer names -> the pair that asked: ("lri", sequence),
        # ("home"/"careof", cookie), ("bu", sequence); at most four per attempt
        self._asked: dict[tuple[str, object], RoPair] = {}
        self._sequence = int.from_bytes(random(2), "big")   # random after every start
        # Pairs forgotten at their retry time keep their failure count for a
        # while, so that the flow's next trigger backs off longer if it fails
        # again: pair -> (failures, when to forget).
        self._failures: dict[RoPair, tuple[int, float]] = {}
        self._failed_at: Groups[Address, RoPair] = Groups()       # their pairs by our MN's address
        # Timers (issue 13): each attempt's next deadline, and when each
        # remembered failure goes, in heaps; a method that changes an
        # attempt notes its pair (_touch) and reschedules it on the way out.
        self._timers = Deadlines()
        self._forget_at = Deadlines()
        self._touched: set[RoPair] = set()
        # pairs changed since the store last took them (daemon/persist.py)
        self.changed: set[RoPair] = set()
        # attempts in backoff by when they started, in all and per MN: the
        # oldest makes room at a limit (_make_room), found without a walk
        self._idle = Deadlines()
        self._idle_per_mn: dict[object, Deadlines] = {}
        # (table, reason) -> entries pushed out at a limit, and new ones refused there
        self.pushed_out: dict[tuple[str, str], int] = {}
        self.refused: dict[tuple[str, str], int] = {}
        # deregistration BUs sent on stop: (peer, sequence) -> (Timestamp, forget at); their BA is
        # expected, not an old or forged one
        self._deregistered: dict[tuple, tuple[int, float]] = {}

    # --- across a restart ---------------------------------------------------------
    def snapshot(self) -> list[SavedAttempt]:
        return [self.saved(pair) for pair, a in self.attempts.items() if a.established]

    def saved(self, pair: RoPair) -> SavedAttempt | None:
        """The pair as the store keeps it: established pairs only."""
        a = self.attempts.get(pair)
        if a is None or not a.established:
            return None
        return SavedAttempt(a.pair, a.peer, a.mode, a.binding, a.tokens, a.mn_prefix, a.triggered, a.bu_stamp,
                            local=a.local)

    def restore(self, saved: list[SavedAttempt], now: float) -> list:
        """Take the established pairs back: their entries go in again (which
        keeps their tunnels), and each is refreshed when it was due, or at
        once if that time passed while we were down."""
        actions = []
        for s in saved:
            if s.binding.expires <= now or s.pair in self.attempts:
                continue
            refresh_at = s.binding.refresh_at if s.binding.refresh_at is not None else s.binding.expires
            binding = replace(s.binding, refresh_at=max(refresh_at, now))
            attempt = Attempt(pair=s.pair, started=now, triggered=s.triggered, mn_prefix=s.mn_prefix,
                              phase=Phase.LOCAL if s.local else Phase.ESTABLISHED, mode=s.mode, peer=s.peer,
                              tokens=s.tokens, bu_stamp=s.bu_stamp, binding=binding)
            if binding.keepalive_interval:
                attempt.keepalive_at = now + binding.keepalive_interval
            attempt.note(now, "restored from the store, established until {}", round(binding.expires - now))
            self._hold(attempt)
            if s.local:
                self._set_local(attempt, True)
                actions.append(LocalRouteInstalled(s.pair, binding.expires, round(binding.expires - now)))
                continue
            actions.append(RoInstalled(s.pair, s.peer.address, binding.peer_endpoint, binding.expires,
                                       round(binding.expires - now), s.mode, Role.INITIATOR, nat=binding.nat))
        return self._rescheduled(actions)

    # --- inputs ------------------------------------------------------------------
    def start(self, local: Address, remote: Address, now: float, mn_prefix=None, operator: bool = False) -> list:
        """Begin RO for a flow local → remote (a data-plane trigger, or the
        operator's `ro start`, which also cuts a backoff short)."""
        return self._rescheduled(self._start(RoPair(local, remote), now, mn_prefix, operator))

    def _start(self, pair: RoPair, now: float, mn_prefix, operator: bool) -> list:
        attempt = self.attempts.get(pair)
        limited = []
        if attempt is not None:
            if attempt.phase is not Phase.BACKOFF or (not operator and now < attempt.retry_at):
                return []
        else:
            limited, room = self._make_room(pair, mn_prefix, now)
            if not room:
                return limited
        remembered = self._forget_failure(pair)
        if attempt is not None:
            self._forget_asked(attempt)
            self._release(attempt)
        attempt = Attempt(pair, started=now, triggered=now, mn_prefix=mn_prefix,
                          failures=attempt.failures if attempt else remembered)
        self._hold(attempt)
        return limited + self._query(attempt, now)

    # --- bounded state (issue 13) ----------------------------------------------------
    def _hold(self, attempt: Attempt) -> None:
        self._touched.add(attempt.pair)
        self.attempts[attempt.pair] = attempt
        key = _mn_key(attempt.pair.local, attempt.mn_prefix)
        self._per_mn[key] = self._per_mn.get(key, 0) + 1
        self._by_local.add(attempt.pair.local, attempt.pair)
        if attempt.peer is not None:
            self._with_peer.setdefault(attempt.peer.address, {})[attempt.pair] = None
            self._with_peer_at.add((attempt.peer.address, attempt.pair.local), attempt.pair)

    def _release(self, attempt: Attempt) -> None:
        self._touched.add(attempt.pair)
        if attempt.local and self.attempts.get(attempt.pair) is attempt:
            self._set_local(attempt, False)
        if self.attempts.get(attempt.pair) is attempt:
            del self.attempts[attempt.pair]
        key = _mn_key(attempt.pair.local, attempt.mn_prefix)
        _count_in(self._per_mn, key, -1)
        if self._idle.get(attempt.pair) is not None and self.attempts.get(attempt.pair) is None:
            self._idle.discard(attempt.pair)
            idle = self._idle_per_mn[key]
            idle.discard(attempt.pair)
            if not len(idle):
                del self._idle_per_mn[key]
        if self.attempts.get(attempt.pair) is None:
            self._by_local.discard(attempt.pair.local, attempt.pair)
        pairs = self._with_peer.get(attempt.peer.address) if attempt.peer is not None else None
        if pairs is not None and self.attempts.get(attempt.pair) is None:
            pairs.pop(attempt.pair, None)
            self._with_peer_at.discard((attempt.peer.address, attempt.pair.local), attempt.pair)
            if not pairs:
                del self._with_peer[attempt.peer.address]

    def held_by(self, local: Address, mn_prefix=None) -> int:
        return self._per_mn.get(_mn_key(local, mn_prefix), 0)

    def knows_peer(self, address: IPv6Address) -> bool:
        """Some attempt is with this peer (O(1): a check on what anyone may send)."""
        return address in self._with_peer

    def _make_room(self, pair: RoPair, mn_prefix, now: float) -> tuple[list, bool]:
        """Room for one more attempt, and what making it took: none needed;
        else the oldest attempt in backoff (of this MN, at its limit) is
        forgotten; with none to forget, no room (a RoFailed for pair)."""
        p = self.policy
        key = _mn_key(pair.local, mn_prefix)
        if self._per_mn.get(key, 0) >= p.max_attempts_per_mn:
            reason, mine = FailReason.ATTEMPT_LIMIT_PER_MN, True
        elif len(self.attempts) >= p.max_attempts:
            reason, mine = FailReason.ATTEMPT_LIMIT, False
        else:
            return [], True
        idle = (self._idle_per_mn.get(key) if mine else self._idle) or Deadlines()
        first = idle.first()
        if first is None:
            self._count("ro_attempts", reason.value, refused=True)
            return [RoFailed(pair, reason, now + p.retry_interval, p.mode)], False
        oldest = self.attempts[first[1]]
        self._forget_asked(oldest)
        self._release(oldest)
        self._count("ro_attempts", reason.value)
        return [RoFailed(oldest.pair, FailReason.PUSHED_OUT, now, oldest.mode, reason.text)], True

    def stop(self, pair: RoPair, now: float, reason: StopReason = StopReason.STOPPED) -> list:
        """Tear the binding down (operator, MN detach): a deregistration BU
        when the peer still holds state we can authenticate, then remove."""
        return self._rescheduled(self._stop(pair, now, reason))

    def _stop(self, pair: RoPair, now: float, reason: StopReason) -> list:
        attempt = self.attempts.get(pair)
        self._forget_failure(pair)
        if attempt is None:
            return []
        local = attempt.local
        self._release(attempt)
        self._forget_asked(attempt)
        if not attempt.established:
            return []
        if local:                             # no peer to tell: the LMA path (or a new MAG's RO) from now on
            attempt.note(now, "local route removed: {}", reason.text)
            return [LocalRouteRemoved(pair, reason)]
        if self._can_sign_deregistration(attempt, now):
            attempt.sequence = self._next_sequence()
            message = self._binding_update(attempt, now, lifetime=0)
            self._forget_deregistrations(now)
            self._deregistered.pop((attempt.peer.address, attempt.sequence), None)      # the newest last
            self._deregistered[(attempt.peer.address, attempt.sequence)] = (attempt.bu_stamp, now + 10.0)
        else:
            # No fresh token to sign a deregistration with: a Binding Error
            # tells the peer all the same (RFC 6275 §9.3.3), so that it stops
            # sending toward us at once; signed with the Kbm it knows.
            message = self._to_peer(attempt, self._sign_be(attempt, no_binding_error(pair.local)))
        # Our traffic leaves the tunnel before the peer hears: once it has
        # heard, it lets in nothing more of ours.
        return [RoRemoved(pair, attempt.peer.address, Role.INITIATOR, reason), message]

    def _forget_deregistrations(self, now: float) -> None:
        """The deregistrations older than 10 s, from the oldest (the dict is
        in the order they were sent): O(1) amortised, not a rebuild per stop."""
        table = self._deregistered
        while table:
            key, (_, until) = next(iter(table.items()))
            if until > now:
                return
            del table[key]

    def peer_dead(self, peer: IPv6Address, now: float) -> list:
        """The peer missed its heartbeats (RFC 5847, ro/heartbeat.py): each
        pair established with it falls back to the LMA path, and retries
        after the backoff, as after any failure."""
        dead = [self.attempts[pair] for pair in self._with_peer.get(peer, {}) if pair in self.attempts]
        return self._rescheduled([action for attempt in dead if attempt.established
                                  for action in self._fail(self._touch(attempt), now, FailReason.PEER_DEAD)])

    def mn_detached(self, local: Address, now: float) -> list:
        actions = []
        for pair in [*self._by_local.at(local), *(p for p in self._failed_at.get(local) if p not in self.attempts)]:
            actions += self.stop(pair, now, StopReason.MN_DETACHED)
        return actions

    def pairs_of(self, hnp: IPv6Network | None, ipv4_hoa: IPv4Address | None) -> list[RoPair]:
        """The pairs of the attempts held for an MN: our address in its home
        network prefix, or its IPv4 home address (O(its pairs), issue 14)."""
        within = self._by_local.within(hnp) if hnp is not None else []
        if within is None:                     # a prefix of a length not grouped (hnp_lengths changed)
            within = [p for p in self.attempts if isinstance(p.local, IPv6Address) and p.local in hnp]
        return within + (self._by_local.at(ipv4_hoa) if ipv4_hoa is not None else [])

    def local_pairs_to(self, hnp: IPv6Network | None, ipv4_hoa: IPv4Address | None) -> list[RoPair]:
        """The local routes (RFC 6705) toward an MN: its detach ends them too."""
        within = self._local_to.within(hnp) if hnp is not None else []
        if within is None:
            within = [p for p in self._locals if isinstance(p.remote, IPv6Address) and p.remote in hnp]
        return within + (self._local_to.at(ipv4_hoa) if ipv4_hoa is not None else [])

    @property
    def local_routes(self) -> int:
        return len(self._locals)

    def _set_local(self, attempt: Attempt, on: bool) -> None:
        """Mark the attempt's entry a local route (or no longer one), in the indexes too."""
        if on and not attempt.local:
            self._local_to.add(attempt.pair.remote, attempt.pair)
            self._locals[attempt.pair] = None
        elif not on and attempt.local:
            self._local_to.discard(attempt.pair.remote, attempt.pair)
            self._locals.pop(attempt.pair, None)
        attempt.local = on

    def receive(self, msg: wire.Message, arrival: Arrival, now: float) -> list:
        handler = self._HANDLERS.get(type(msg))
        return self._rescheduled(handler(self, msg, arrival, now) if handler else [])

    def on_timer(self, now: float) -> list:
        """What is due at now: O(k log n) for k due of n held."""
        actions = []
        for pair in self._timers.pop_due(now):
            attempt = self.attempts.get(pair)
            if attempt is None:
                continue                          # forgotten behind our back (a test's lost state)
            self._touched.add(pair)
            binding = attempt.binding
            if binding is not None and now >= binding.expires:
                actions += self._fail(attempt, now, FailReason.LIFETIME_EXPIRED)   # the binding is gone: LMA path
            elif attempt.retransmission.due is not None and now >= attempt.retransmission.due:
                actions += self._retransmit(attempt, now)
            elif (attempt.phase is Phase.ESTABLISHED and binding.refresh_at is not None
                  and now >= binding.refresh_at):
                actions += self._refresh(attempt, now)
            elif attempt.phase is Phase.LOCAL and binding.refresh_at is not None and now >= binding.refresh_at:
                actions += self._requery(attempt, now)
            elif binding is not None and attempt.keepalive_at is not None and now >= attempt.keepalive_at:
                attempt.keepalive_at = now + binding.keepalive_interval
                actions.append(self._to_peer(attempt, wire.Heartbeat(unsolicited=False, response=False,
                                                                     sequence=self._next_sequence())))
            elif attempt.phase is Phase.BACKOFF and now >= attempt.retry_at:
                # retry only when the flow asks again (start); forget idle pairs,
                # but remember their failures as long as the longest backoff
                self._release(attempt)
                self._forget_asked(attempt)
                self._remember_failure(attempt.pair, attempt.failures, now + self.policy.retry_interval * 16)
        for pair in self._forget_at.pop_due(now):
            del self._failures[pair]
            self._failed_at.discard(pair.local, pair)
        return self._rescheduled(actions)

    def next_deadline(self) -> float | None:
        """O(1) amortised, whatever the number of attempts."""
        return earliest(self._timers.next(), self._forget_at.next())

    def _touch(self, attempt: Attempt) -> Attempt:
        self._touched.add(attempt.pair)
        return attempt

    def _rescheduled(self, actions: list) -> list:
        """actions, once every attempt the call changed is due at its new deadline."""
        for pair in self._touched:
            attempt = self.attempts.get(pair)
            self._timers.set(pair, attempt.next_deadline if attempt is not None else None)
        self.changed |= self._touched
        self._touched.clear()
        return actions

    # --- failures remembered past an attempt (bounded: ro.max_remembered_failures) ----------------
    def _remember_failure(self, pair: RoPair, failures: int, until: float) -> None:
        if pair not in self._failures and len(self._failures) >= self.policy.max_remembered_failures:
            first = self._forget_at.first()
            if first is not None:                # the one due to be forgotten soonest goes now
                self._forget_failure(first[1])
                self._count("remembered_failures", "soonest_forgotten")
        self._failures[pair] = (failures, until)
        self._failed_at.add(pair.local, pair)
        self._forget_at.set(pair, until)

    def _forget_failure(self, pair: RoPair) -> int:
        """Forget pair's failures; how many there were."""
        self._forget_at.discard(pair)
        self._failed_at.discard(pair.local, pair)
        failures, _ = self._failures.pop(pair, (0, None))
        return failures

    def _count(self, table: str, reason: str, refused: bool = False) -> None:
        counts = self.refused if refused else self.pushed_out
        counts[(table, reason)] = counts.get((table, reason), 0) + 1

    # --- the query (LRI/LRA) -------------------------------------------------------
    def _query(self, attempt: Attempt, now: float) -> list:
        self._ask(attempt, "lri", self._next_sequence())
        attempt.retransmission = self._retransmission(now)
        attempt.note(now, "LRI → LMA (which MAG serves the CN?)")
        return [self._lri(attempt, now)]

    def _lri(self, attempt: Attempt, now: float) -> Send:
        local, remote = attempt.pair.local, attempt.pair.remote
        options = []
        if isinstance(local, IPv4Address):
            options.append(wire.IPv4HomeAddress(local))
        elif attempt.mn_prefix is not None:
            options.append(wire.HomeNetworkPrefix(attempt.mn_prefix.prefixlen, attempt.mn_prefix.network_address))
        else:
            options.append(wire.HomeNetworkPrefix(128, local))
        options.append(wire.CNIPv4Address(remote) if isinstance(remote, IPv4Address) else wire.CNAddress(remote))
        stamp = self.stamper.stamp(now)
        attempt.lri_stamp = stamp.timestamp
        options.append(stamp)
        lri = wire.LocalizedRoutingInitiation(sequence=attempt.lri_sequence, lifetime=self.policy.lifetime,
                                              options=options)
        p = self.policy
        return Send(lri, p.proxy_coa, p.lma_address, ipv4_dst=p.lma_ipv4,
                    ipv4_src=p.ipv4_proxy_coa if p.lma_ipv4 else None)

    def _on_lra(self, lra: wire.LocalizedRoutingAck, arrival: Arrival, now: float) -> list:
        if arrival.src != self.policy.lma_address:
            return []                     # only our LMA answers the query (it names the peer we trust)
        attempt = self._asking("lri", lra.sequence)
        stamp = wire.find_option(lra, wire.Timestamp)
        if attempt is None or attempt.phase is not Phase.QUERY or stamp is None \
                or stamp.timestamp != attempt.lri_stamp:
            return []                     # not the answer to the LRI outstanding: stale or forged
        attempt.retransmission.stop()
        attempt.note(now, "LRA ← LMA: {}", status_label(lra.status, wire.LRAStatus))
        p = self.policy
        if lra.status == wire.LRAStatus.SUCCESS:
            mag = wire.find_option(lra, wire.MAGIPv6Address)
            if mag is None:
                return self._fail(attempt, now, FailReason.NO_MAG_ADDRESS)
            if mag.address == p.proxy_coa:
                return self._grant_local(attempt, lra, now)
            if attempt.local:                 # a local route's refresh: the CN is at another MAG now
                return self._fail(attempt, now, FailReason.CN_LEFT, penalize=False)
            ipv4 = wire.find_option(lra, wire.IPv4CareofAddress)
            peer = Peer(mag.address, ipv4.address if ipv4 and p.ipv4_transport else None)
            if p.ipv4_transport and peer.ipv4 is None:
                return self._fail(attempt, now, FailReason.PEER_WITHOUT_IPV4_COA, long=True)
        elif lra.status == wire.LRAStatus.MN_NOT_ATTACHED:
            if attempt.local:
                return self._fail(attempt, now, FailReason.CN_LEFT, penalize=False)
            # No LMA anchors the CN: try it as an RO-capable correspondent (scenario 3).
            if isinstance(attempt.pair.remote, IPv4Address):
                return self._fail(attempt, now, FailReason.IPV4_CN_OUTSIDE, long=True)
            peer = Peer(attempt.pair.remote, outside=True)
            attempt.note(now, "no LMA anchors the CN: RR with the CN itself (scenario 3)")
        else:
            return self._fail(attempt, now, FailReason.LMA_REFUSED, long=True,
                              detail=status_label(lra.status, wire.LRAStatus))
        if isinstance(attempt.pair.local, IPv4Address) and p.ipv4_proxy_coa is None:
            return self._fail(attempt, now, FailReason.NO_IPV4_PROXY_COA, long=True)
        if p.reserved(peer.address):
            return self._fail(attempt, now, FailReason.RESERVED_PEER, long=True, detail=str(peer.address))
        attempt.peer = peer
        self._with_peer.setdefault(peer.address, {})[attempt.pair] = None
        self._with_peer_at.add((peer.address, attempt.pair.local), attempt.pair)
        quick = p.mode is Mode.QUICK and peer.address in p.peer_keys
        attempt.mode = Mode.QUICK if quick else Mode.RR
        if quick:
            return self._bind(attempt, now)
        return self._return_routability(attempt, now)

    def _grant_local(self, attempt: Attempt, lra: wire.LocalizedRoutingAck, now: float) -> list:
        """The LMA's answer names us as the CN's MAG (RFC 6705: both MNs at
        one MAG) and consents (status 0): local routing, if ours allows it
        and our own binding update list holds both MNs registered here: an
        LRA alone never points our data plane at an access link."""
        p = self.policy
        if not p.local_routing:
            return self._fail(attempt, now, FailReason.LOCAL_ROUTING_OFF, long=True)
        if not (p.serves_here(attempt.pair.remote) and p.serves_here(attempt.pair.local)):
            return self._fail(attempt, now, FailReason.CN_NOT_BOUND_HERE)
        if not attempt.local and len(self._locals) >= p.max_local_routes:
            self._count("local_routes", FailReason.LOCAL_ROUTE_LIMIT.value, refused=True)
            return self._fail(attempt, now, FailReason.LOCAL_ROUTE_LIMIT, long=True)
        granted = min(lra.lifetime, p.lifetime)
        if granted <= 0:
            return self._fail(attempt, now, FailReason.LMA_REFUSED, long=True, detail="lifetime 0")
        first = not attempt.established
        attempt.binding = Binding(expires=now + granted, refresh_at=now + granted * p.refresh_fraction)
        self._set_local(attempt, True)
        attempt.move(Event.LOCAL_GRANTED)
        attempt.failures = 0
        attempt.note(now, "local routing for {} s: both MNs are attached here (RFC 6705)", granted)
        return [LocalRouteInstalled(attempt.pair, attempt.binding.expires, granted,
                                    setup_seconds=now - attempt.triggered if first else None)]

    def _requery(self, attempt: Attempt, now: float) -> list:
        """A local route's refresh: the LRI again, while the route keeps forwarding."""
        attempt.started = now
        attempt.binding = replace(attempt.binding, refresh_at=None)
        attempt.notes = [(now, "refresh", ())]
        attempt.move(Event.REQUERIED)
        return self._query(attempt, now)

    # --- return routability (HoTI/HoT, CoTI/CoT) ------------------------------------------
    def _return_routability(self, attempt: Attempt, now: float) -> list:
        attempt.move(Event.RR_STARTED)
        # Draft §3: a different cookie for each MN and each attempt.
        self._ask(attempt, "tokens", Tokens(self.random(8), self.random(8)))
        attempt.retransmission = self._retransmission(now)
        if self.policy.ipv4_transport or isinstance(attempt.pair.local, IPv4Address):
            attempt.note(now, "HoTI → home path via the LMA, CoTI through the LMA")
        else:
            attempt.note(now, "HoTI → home path via the LMA, CoTI → {}", attempt.peer.address)
        return self._rr_messages(attempt)

    def _rr_messages(self, attempt: Attempt) -> list:
        local, remote = attempt.pair.local, attempt.pair.remote
        tokens, peer = attempt.tokens, attempt.peer.address
        p = self.policy
        actions = []
        if isinstance(local, IPv4Address):
            # Fig. 2 and 3: IPv4 (MN or MAG1 → CN) / IPv6 (MAG1 pCoA → MAG2 pCoA) / MH,
            # with the IPv4 addresses in options as well. The HoTI takes the IPv4
            # MN's tunnel to the LMA; the CoTI is routed to the CN's address,
            # which the LMA anchors, so it reaches MAG2 the same way.
            if tokens.home_token is None:
                hoti = wire.HomeTestInit(home_init_cookie=tokens.home_cookie,
                                         options=[wire.IPv4HomeAddress(local), wire.CNIPv4Address(remote)])
                actions.append(SendHomePath(hoti, src=p.proxy_coa, dst=peer, anchor=local,
                                            wrap_ipv4=(local, remote)))
            if tokens.careof_token is None:
                coti = wire.CareofTestInit(careof_init_cookie=tokens.careof_cookie,
                                           options=[wire.IPv4CareofAddress(p.ipv4_proxy_coa),
                                                    wire.CNIPv4Address(remote)])
                actions.append(Send(coti, p.proxy_coa, peer, wrap_ipv4=(p.ipv4_proxy_coa, remote)))
            return actions
        if tokens.home_token is None:
            actions.append(SendHomePath(wire.HomeTestInit(home_init_cookie=tokens.home_cookie),
                                        src=local, dst=remote))
        if tokens.careof_token is None:
            coti = wire.CareofTestInit(careof_init_cookie=tokens.careof_cookie)
            if p.ipv4_transport:
                # §2.1.1.2: into the IPv4 tunnel to the LMA, which routes it by
                # its destination, the CN's address, to the CN's MAG
                actions.append(SendHomePath(coti, src=p.proxy_coa, dst=remote, anchor=local))
            else:
                actions.append(Send(coti, p.proxy_coa, peer))
        return actions

    def _on_home_test(self, msg: wire.HomeTest, arrival: Arrival, now: float) -> list:
        attempt = self._asking("home", msg.home_init_cookie)
        if attempt is None or attempt.phase is not Phase.RETURN_ROUTABILITY:
            return []                     # stale, or a forged cookie: RFC 6275 §11.6.2
        attempt.tokens.home_token, attempt.tokens.home_nonce_index = msg.home_keygen_token, msg.home_nonce_index
        attempt.note(now, "HoT ← home path")
        return self._tokens_arrived(attempt, now)

    def _on_careof_test(self, msg: wire.CareofTest, arrival: Arrival, now: float) -> list:
        attempt = self._asking("careof", msg.careof_init_cookie)
        if attempt is None or attempt.phase is not Phase.RETURN_ROUTABILITY:
            return []
        attempt.tokens.careof_token, attempt.tokens.careof_nonce_index = (msg.careof_keygen_token,
                                                                          msg.careof_nonce_index)
        attempt.note(now, "CoT ← {}", attempt.peer.address)
        return self._tokens_arrived(attempt, now)

    def _tokens_arrived(self, attempt: Attempt, now: float) -> list:
        if attempt.tokens.kbm is None:
            return []
        attempt.tokens.complete_at = now
        return self._bind(attempt, now)

    # --- the binding (BU/BA) -----------------------------------------------------------------
    def _bind(self, attempt: Attempt, now: float) -> list:
        attempt.move(Event.BU_SENT)
        self._ask(attempt, "bu", self._next_sequence())
        attempt.retransmission = self._retransmission(now)
        auth = "option 9, quick mode" if attempt.mode is Mode.QUICK else "BAD from Kbm"
        attempt.note(now, "BU → {} ({})", attempt.peer.address, auth)
        return [self._binding_update(attempt, now, lifetime=self.policy.lifetime)]

    def _binding_update(self, attempt: Attempt, now: float, lifetime: int) -> Send:
        local, remote = attempt.pair.local, attempt.pair.remote
        options = [
            wire.IPv4HomeAddress(local) if isinstance(local, IPv4Address) else wire.HomeNetworkPrefix(128, local),
            wire.CNIPv4HomeAddress(32, remote) if isinstance(remote, IPv4Address)
            else wire.CNHomeNetworkPrefix(128, remote),
            self.stamper.stamp(now),
        ]
        attempt.bu_stamp = options[-1].timestamp
        p = self.policy
        peer = attempt.peer.address
        if attempt.peer.over_ipv4:
            # the peer compares it with the source it sees: a NAT if they differ
            options.insert(2, wire.IPv4CareofAddress(p.ipv4_proxy_coa))
        bu = wire.BindingUpdate(sequence=attempt.sequence, flags=wire.BUFlags.A | wire.BUFlags.P,
                                lifetime=lifetime // 4, options=options)
        attempt.bu_sent = now
        if attempt.mode is Mode.QUICK:
            bu = p.peer_keys[peer].sign(bu, p.proxy_coa, peer)
        else:
            tokens = attempt.tokens
            bu.options.append(wire.NonceIndices(tokens.home_nonce_index, tokens.careof_nonce_index))
            # RFC 6275 §5.2.5: deleting a binding is keyed by the home keygen token alone
            kbm = security.binding_management_key(tokens.home_token) if lifetime == 0 else tokens.kbm
            # and its Authenticator covers the home address, not the proxy CoA (§6.2.7)
            bu = security.sign_binding_update(bu, kbm, security.authorized_careof(p.proxy_coa, local, lifetime),
                                              peer)
        return self._to_peer(attempt, bu)

    def _to_peer(self, attempt: Attempt, message: wire.Message) -> Send:
        """Directly to the peer: IPv6, or IPv6/MH in UDP 5436 between the IPv4
        proxy CoAs when the MAGs talk over IPv4 (fig. 6)."""
        p, peer = self.policy, attempt.peer
        if peer.over_ipv4:
            return Send(message, p.proxy_coa, peer.address, ipv4_dst=UdpEndpoint(peer.ipv4),
                        ipv4_src=p.ipv4_proxy_coa)
        return Send(message, p.proxy_coa, peer.address)

    def _on_ba(self, ba: wire.BindingAck, arrival: Arrival, now: float) -> list:
        ack = wire.find_option(ba, wire.ROAcknowledgement) or wire.find_option(ba, wire.IPv4ROAcknowledgement)
        if ack is None:
            return []
        attempt = self._asking("bu", ba.sequence)
        stamp = wire.find_option(ba, wire.Timestamp)
        dereg = self._deregistered.get((arrival.src, ba.sequence))
        if attempt is None and dereg is not None and stamp is not None and stamp.timestamp == dereg[0]:
            del self._deregistered[(arrival.src, ba.sequence)]
            return []                      # the answer to a deregistration we sent on stop
        if attempt is None or attempt.phase is not Phase.BINDING or attempt.peer.address != arrival.src \
                or stamp is None or stamp.timestamp != attempt.bu_stamp:
            # not the answer to the BU outstanding: an old BA names an old BU's
            # Timestamp, even once the 16-bit sequence number has come round
            return [RoRejected(attempt.pair if attempt else None, arrival.src, RejectReason.UNMATCHED_BA,
                               f"sequence {ba.sequence}")]
        refused = ba.status >= RO_ACCEPTED_BELOW or ack.status >= RO_ACCEPTED_BELOW
        status = ba.status if ba.status >= RO_ACCEPTED_BELOW else ack.status
        attempt.note(now, "BA ← {}: {}", attempt.peer.address, status_label(status))
        if refused and status in EXPIRED_NONCE_STATUSES and attempt.mode is Mode.RR:
            # Without its nonces the peer has no Kbm, so this BA alone comes
            # without a BAD (RFC 6275 §9.5.4); redo the RR (§11.7.3), once. If
            # fresh nonces expire too, the home test is answered by someone
            # else than the peer (the CN moved on): a retry starts from the
            # query, after a backoff, and never loops at the speed of the path.
            if attempt.nonces_renewed:
                return self._fail(attempt, now, FailReason.NONCES_EXPIRED_AGAIN, detail=status_label(status))
            attempt.nonces_renewed = True
            return self._return_routability(attempt, now)
        if not self._authentic(ba, attempt):   # RFC 6275 §11.7.3: ignored (no answer); the BU will be resent
            return [RoRejected(attempt.pair, arrival.src, RejectReason.BAD_QUICK_MODE_AUTHENTICATOR
                               if attempt.mode is Mode.QUICK else RejectReason.BAD_AUTHORIZATION, "binding ack")]
        if refused:
            return self._fail(attempt, now, FailReason.PEER_REFUSED, detail=status_label(status))
        granted = min(ack.lifetime * 4, self.policy.lifetime)
        # Counted from when the BU left, as MAG2 counts from when it arrived:
        # our entry never outlives MAG2's binding (which alone lets our
        # tunnelled packets in there, DESIGN §4).
        sent = attempt.bu_sent if attempt.bu_sent is not None else now
        if sent + granted <= now:
            return []                      # over before it arrived: as good as lost
        attempt.retransmission.stop()
        first = not attempt.established
        nat = wire.find_option(ba, wire.NATDetection)
        # RFC 5555 §4.1: keep the NAT's mapping alive at the refresh time it gave
        keepalive = max(float(nat.refresh_time), 1.0) if nat is not None else None
        attempt.binding = Binding(expires=sent + granted, refresh_at=sent + granted * self.policy.refresh_fraction,
                                  nat=nat is not None, keepalive_interval=keepalive, peer_endpoint=arrival.ipv4_src,
                                  kbm=attempt.tokens.kbm if attempt.mode is Mode.RR and attempt.tokens else None)
        attempt.keepalive_at = now + keepalive if keepalive else None
        attempt.move(Event.BINDING_ACCEPTED)
        attempt.failures = 0
        attempt.nonces_renewed = False
        if nat is not None:
            attempt.note(now, "NAT on the path: UDP encapsulation, keepalive every {} s", nat.refresh_time)
        attempt.note(now, "RO entry installed for {} s", granted)
        return [RoInstalled(attempt.pair, attempt.peer.address, arrival.ipv4_src, attempt.binding.expires, granted,
                            attempt.mode, Role.INITIATOR, setup_seconds=now - attempt.triggered if first else None,
                            nat=attempt.binding.nat)]

    def _authentic(self, ba: wire.BindingAck, attempt: Attempt) -> bool:
        p, peer = self.policy, attempt.peer.address
        if attempt.mode is Mode.QUICK:
            return p.peer_keys[peer].verify(ba, peer, p.proxy_coa)
        return security.verify_binding_authorization(ba, attempt.tokens.kbm, p.proxy_coa, peer)

    def _on_be(self, be: wire.BindingError, arrival: Arrival, now: float) -> list:
        """The peer has no binding for our MN (RFC 6275 §9.3.3). Signed with
        the pair's key: fall back at once. Unsigned (a peer that lost its
        state, or anyone using its address): it ends nothing, but a binding
        in place is refreshed now, which mends a peer that forgot it."""
        actions = []
        home = be.home_address                 # our MN's: IPv6, or IPv4 as IPv4-mapped
        named = [home] if unmapped(home) == home else [home, unmapped(home)]
        pairs = [pair for local in named for pair in self._with_peer_at.get((arrival.src, local))]
        for attempt in [a for a in map(self.attempts.get, pairs)
                        if a is not None and a.phase is not Phase.BACKOFF and mapped(a.pair.local) == home]:
            self._touch(attempt)
            if self._be_authentic(attempt, be):
                # The peer lost the pair (its CN moved or left): no fault of the
                # attempt, so no backoff: the flow's next trigger starts afresh
                # (handover with RO active, toward the CN's new MAG).
                actions += self._fail(attempt, now, FailReason.BINDING_ERROR, penalize=False)
                continue
            actions.append(RoRejected(attempt.pair, arrival.src, RejectReason.UNAUTHENTICATED_BE))
            if attempt.phase is Phase.ESTABLISHED and (attempt.be_refresh_at is None
                                                       or now - attempt.be_refresh_at >= BE_REFRESH_INTERVAL):
                attempt.be_refresh_at = now
                attempt.note(now, "unsigned BE from {}: refreshing now", arrival.src)
                actions += self._refresh(attempt, now)
                attempt.retransmission = self._retransmission(now, initial=BE_REFRESH_FIRST_TIMEOUT)
        return actions

    def _be_key(self, attempt: Attempt) -> BindingErrorKey:
        p, peer = self.policy, attempt.peer.address
        return BindingErrorKey(quick=p.peer_keys.get(peer) if attempt.mode is Mode.QUICK else None,
                               kbm=attempt.binding.kbm if attempt.binding is not None else None,
                               careof=p.proxy_coa, correspondent=peer)

    def _sign_be(self, attempt: Attempt, be: wire.BindingError) -> wire.BindingError:
        return self._be_key(attempt).sign(be, self.policy.proxy_coa, attempt.peer.address)

    def _be_authentic(self, attempt: Attempt, be: wire.BindingError) -> bool:
        return self._be_key(attempt).verify(be, attempt.peer.address, self.policy.proxy_coa)

    # --- refresh, retransmission, failure --------------------------------------------------------
    def _refresh(self, attempt: Attempt, now: float) -> list:
        """Before the lifetime ends: a fresh RR (tokens last 210 s, RFC 6275
        §5.2.7) and BU, while the installed entry keeps forwarding."""
        attempt.started = now
        attempt.binding = replace(attempt.binding, refresh_at=None)
        attempt.notes = [(now, "refresh", ())]
        if attempt.mode is Mode.QUICK:
            return self._bind(attempt, now)
        return self._return_routability(attempt, now)

    def _retransmit(self, attempt: Attempt, now: float) -> list:
        if attempt.retransmission.attempts >= self.policy.max_transmissions:
            if attempt.established:
                # A failed refresh: keep the entry until it expires, then fall back.
                attempt.last_failure = f"refresh unanswered in phase {attempt.phase.value}"
                attempt.retransmission.stop()
                attempt.move(Event.REFRESH_ABANDONED)
                return []
            return self._fail(attempt, now, FailReason.NO_ANSWER, detail=f"in phase {attempt.phase.value}")
        attempt.retransmission.backoff(now)
        attempt.note(now, "no answer: retransmission {} ({})", attempt.retransmission.attempts, attempt.phase.value)
        if attempt.phase is Phase.QUERY:
            return [self._lri(attempt, now)]
        if attempt.phase is Phase.RETURN_ROUTABILITY:
            # RFC 6275 §5.2.3, §11.6.1: each HoTI and CoTI sent carries a new
            # cookie, a retransmission too; only the newest one's test counts
            # (§11.6.2). A token that came already is kept: its test is not resent.
            tokens = attempt.tokens
            self._ask(attempt, "tokens", replace(
                tokens, home_cookie=tokens.home_cookie if tokens.home_token else self.random(8),
                careof_cookie=tokens.careof_cookie if tokens.careof_token else self.random(8)))
            return self._rr_messages(attempt)
        # Phase.BINDING. RFC 6275 §11.8: a retransmitted BU carries a new sequence number
        self._ask(attempt, "bu", self._next_sequence())
        return [self._binding_update(attempt, now, lifetime=self.policy.lifetime)]

    def _fail(self, attempt: Attempt, now: float, reason: FailReason, long: bool = False, penalize: bool = True,
              detail: str = "") -> list:
        """Back to the LMA path; retry after a backoff that doubles with each
        failure (penalize=False: no failure of ours, retry at once)."""
        attempt.retransmission.stop()
        actions = []
        if attempt.established and attempt.local:
            actions.append(LocalRouteRemoved(attempt.pair, reason, detail))
            self._set_local(attempt, False)
        elif attempt.established:
            actions.append(RoRemoved(attempt.pair, attempt.peer.address, Role.INITIATOR, reason, detail))
        attempt.move(Event.FAILED)
        self._idle.set(attempt.pair, attempt.started)
        self._idle_per_mn.setdefault(_mn_key(attempt.pair.local, attempt.mn_prefix), Deadlines()).set(
            attempt.pair, attempt.started)
        attempt.binding = None
        attempt.keepalive_at = None
        if penalize:
            attempt.failures += 1
            factor = 16 if long else 2 ** min(attempt.failures - 1, 4)
            attempt.retry_at = now + self.policy.retry_interval * factor
        else:
            attempt.retry_at = now
        failed = RoFailed(attempt.pair, reason, attempt.retry_at, attempt.mode, detail)
        attempt.last_failure = failed.text
        attempt.note(now, "failed: {}", failed.text)
        actions.append(failed)
        return actions

    def _can_sign_deregistration(self, attempt: Attempt, now: float) -> bool:
        """A home keygen token still fresh (RFC 6275 §5.2.7); a refresh's RR
        that has not yet had its HoT back has none."""
        if attempt.mode is Mode.QUICK:
            return True
        tokens = attempt.tokens
        return (tokens is not None and tokens.home_token is not None and tokens.complete_at is not None
                and now - tokens.complete_at < security.MAX_TOKEN_LIFETIME)

    def _retransmission(self, now: float, initial: float | None = None) -> Retransmission:
        r = Retransmission(initial=self.policy.initial_timeout if initial is None else initial,
                           maximum=self.policy.max_timeout)
        r.start(now)
        return r

    # --- what the answers name -----------------------------------------------------------------
    def _ask(self, attempt: Attempt, what: str, value) -> None:
        """Give the attempt a new LRI sequence number, RR cookies (what =
        "tokens") or BU sequence number, findable by the answer."""
        if what == "lri":
            self._asked.pop(("lri", attempt.lri_sequence), None)
            attempt.lri_sequence = value
        elif what == "bu":
            self._asked.pop(("bu", attempt.sequence), None)
            attempt.sequence = value
        else:
            if attempt.tokens is not None:
                self._asked.pop(("home", attempt.tokens.home_cookie), None)
                self._asked.pop(("careof", attempt.tokens.careof_cookie), None)
            attempt.tokens = value
            self._asked[("home", value.home_cookie)] = attempt.pair
            self._asked[("careof", value.careof_cookie)] = attempt.pair
            return
        self._asked[(what, value)] = attempt.pair

    def _asking(self, what: str, value) -> Attempt | None:
        """The attempt whose current question an answer names (RFC 6275
        §11.6.2: a stale or forged cookie finds nothing)."""
        pair = self._asked.get((what, value))
        attempt = self.attempts.get(pair) if pair is not None else None
        if attempt is None:
            return None
        current = {"lri": attempt.lri_sequence, "bu": attempt.sequence,
                   "home": attempt.tokens.home_cookie if attempt.tokens else None,
                   "careof": attempt.tokens.careof_cookie if attempt.tokens else None}[what]
        return self._touch(attempt) if current == value else None

    def _forget_asked(self, attempt: Attempt) -> None:
        for key in (("lri", attempt.lri_sequence), ("bu", attempt.sequence),
                    *((("home", attempt.tokens.home_cookie), ("careof", attempt.tokens.careof_cookie))
                      if attempt.tokens else ())):
            if self._asked.get(key) == attempt.pair:
                del self._asked[key]

    def _next_sequence(self) -> int:
        self._sequence = (self._sequence + 1) & 0xFFFF
        return self._sequence

    _HANDLERS = {
        wire.LocalizedRoutingAck: _on_lra,
        wire.HomeTest: _on_home_test,
        wire.CareofTest: _on_careof_test,
        wire.BindingAck: _on_ba,
        wire.BindingError: _on_be,
    }


def _count_in(counts: dict, key, step: int) -> None:
    left = counts.get(key, 0) + step
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)


def _mn_key(local: Address, mn_prefix) -> object:
    """What the per-MN limit counts by: the MN's prefix, else its address."""
    return mn_prefix if mn_prefix is not None else local
