"""Liveness (RFC 5847), sans-I/O: is a peer still there?

A node sends a Heartbeat request (MH type 13, R = 0) to each peer it
watches every `interval` seconds (HEARTBEAT_INTERVAL), each with the next
32-bit sequence number; the peer answers with a response (R = 1) that
carries the same number. A request still unanswered when the next one is
due is a missed heartbeat; `missed` (MISSING_HEARTBEATS_ALLOWED) of them in
a row and the peer is declared dead (PeerDead). An answer to the current
request makes it alive again (PeerAlive) and clears the count.

Only the answer to our own outstanding request counts: a request the peer
sends us, or an answer to an older request, proves nothing (it may be a
replay), so a forged or replayed message cannot keep a dead peer alive.
Whether a message may be believed at all (its authenticator, its
Timestamp) is decided before it gets here: the signaling guard between MAG
and LMA (auth.py), ro/heartbeat.py between RO peers.

What a node does with a dead peer is its own rule (RFC 5847 §3 leaves it
to policy): the MAG falls back from an RO peer to the LMA path; between
MAG and LMA, an event and a metric (docs/operations.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from ipaddress import IPv6Address
from typing import Callable

from ..actions import Notification
from .common import Deadlines
from .vocabulary import _Described


@dataclass(frozen=True)
class HeartbeatPolicy:
    interval: float = 60.0                # HEARTBEAT_INTERVAL (RFC 5847 §5); 0: no heartbeats
    missed: int = 3                       # MISSING_HEARTBEATS_ALLOWED

    @property
    def enabled(self) -> bool:
        return self.interval > 0

    @property
    def detection_time(self) -> float:
        """At most this long from a peer's last answer to PeerDead (plus one interval)."""
        return self.interval * self.missed


# What a node core does without settings: nothing (the daemons pass [heartbeat]).
OFF = HeartbeatPolicy(0.0, 3)


class PeerKind(_Described):
    """Whom a node watches: its metric label."""
    LMA = "lma"                           # a MAG's LMA
    MAG = "mag"                           # an LMA's serving MAG
    RO_PEER = "ro_peer"                   # the other end of an RO binding


PeerKind._TEXT = {PeerKind.LMA: "LMA", PeerKind.MAG: "MAG", PeerKind.RO_PEER: "RO peer"}


class Ignored(_Described):
    """Why a Heartbeat that passed authentication changed nothing (counted)."""
    UNMATCHED_RESPONSE = "unmatched_response"         # answers no request outstanding: old, replayed, or late
    UNAUTHENTICATED_KEEPALIVE = "unauthenticated_keepalive"  # an RO NAT keepalive (RFC 5555): no proof of life


Ignored._TEXT = {
    Ignored.UNMATCHED_RESPONSE: "a response to no request outstanding (old, replayed or late): it proves nothing",
    Ignored.UNAUTHENTICATED_KEEPALIVE: "an unsigned NAT keepalive from an RO peer: it proves nothing",
}


@dataclass(frozen=True)
class PeerDead(Notification):
    """A peer missed `missed` heartbeats in a row (RFC 5847 §5)."""
    peer: IPv6Address
    kind: PeerKind
    missed: int
    last_heard: float | None              # when its last answer came (None: never)


@dataclass(frozen=True)
class PeerAlive(Notification):
    """A peer declared dead answered again."""
    peer: IPv6Address
    kind: PeerKind
    dead_since: float


@dataclass(frozen=True)
class HeartbeatIgnored(Notification):
    """A Heartbeat that changed nothing; counted as heartbeat in <reason>."""
    src: IPv6Address
    reason: Ignored
    detail: str = ""


@dataclass
class PeerState:
    address: IPv6Address
    kind: PeerKind
    since: float                          # watched since, or alive/dead since the last change
    next_at: float                        # the next request
    sequence: int | None = None           # of the request outstanding
    answered: bool = True
    missed: int = 0
    alive: bool = True
    last_heard: float | None = None
    requests: int = 0
    answers: int = 0


@dataclass
class Liveness:
    """The peers one node watches, each with its own schedule."""
    policy: HeartbeatPolicy = field(default_factory=HeartbeatPolicy)
    random: Callable[[int], bytes] = os.urandom
    peers: dict[IPv6Address, PeerState] = field(default_factory=dict)

    def __post_init__(self):
        self._sequence = int.from_bytes(self.random(4), "big")
        self._due = Deadlines()           # peer -> its next_at: timers cost O(k log n), not a walk

    def configure(self, policy: HeartbeatPolicy, now: float) -> None:
        """New settings (a reload): each peer's next request within the new interval."""
        self.policy = policy
        for peer in self.peers.values():
            self._schedule(peer, min(peer.next_at, now + policy.interval))
            peer.missed = min(peer.missed, policy.missed)
        if not policy.enabled:
            self.peers.clear()
            self._due = Deadlines()

    def _schedule(self, peer: PeerState, at: float) -> None:
        peer.next_at = at
        self._due.set(peer.address, at)

    # --- whom to watch ------------------------------------------------------------------------
    def watch(self, address: IPv6Address, kind: PeerKind, now: float) -> None:
        """Start watching (a no-op for a peer watched already). Its first
        request goes out one interval from now: it was just heard from."""
        if self.policy.enabled and address not in self.peers:
            peer = self.peers[address] = PeerState(address, kind, since=now, next_at=now)
            self._schedule(peer, now + self.policy.interval)

    def unwatch(self, address: IPv6Address) -> None:
        self.peers.pop(address, None)
        self._due.discard(address)

    def sync(self, wanted: dict[IPv6Address, PeerKind], now: float) -> None:
        """Watch exactly these peers (after a reload; changes in between go
        through watch and unwatch)."""
        for address in [a for a in self.peers if a not in wanted]:
            self.unwatch(address)
        for address, kind in wanted.items():
            self.watch(address, kind, now)

    def outstanding(self, address: IPv6Address) -> int | None:
        peer = self.peers.get(address)
        return peer.sequence if peer is not None else None

    # --- inputs -------------------------------------------------------------------------------
    def on_timer(self, now: float) -> tuple[list[tuple[IPv6Address, int]], list]:
        """(peer, sequence) of each request due now, and what changed."""
        requests, notes = [], []
        for address in self._due.pop_due(now):
            peer = self.peers[address]
            if not peer.answered:
                peer.missed += 1
                if peer.alive and peer.missed >= self.policy.missed:
                    peer.alive = False
                    peer.since = now
                    notes.append(PeerDead(peer.address, peer.kind, peer.missed, peer.last_heard))
            self._sequence = (self._sequence + 1) & 0xFFFFFFFF
            peer.sequence, peer.answered = self._sequence, False
            peer.requests += 1
            self._schedule(peer, max(peer.next_at + self.policy.interval, now + self.policy.interval / 2))
            requests.append((peer.address, peer.sequence))
        return requests, notes

    def response(self, address: IPv6Address, sequence: int, now: float) -> list:
        """An authentic response from address: alive, if it answers our
        request outstanding (RFC 5847 §5: the response carries the request's
        sequence number); else it changes nothing."""
        peer = self.peers.get(address)
        if peer is None or peer.sequence != sequence:
            return [HeartbeatIgnored(address, Ignored.UNMATCHED_RESPONSE, f"sequence {sequence}")]
        if peer.answered:
            return []                     # a duplicate (a key rotation sends requests twice)
        peer.answered, peer.missed, peer.last_heard = True, 0, now
        peer.answers += 1
        if not peer.alive:
            dead_since, peer.alive, peer.since = peer.since, True, now
            return [PeerAlive(peer.address, peer.kind, dead_since)]
        return []

    def next_deadline(self) -> float | None:
        return self._due.next()

    def rows(self, now: float) -> list[dict]:
        """Each peer watched, as `status` shows it."""
        return [{"peer": str(p.address), "kind": p.kind.value, "state": "alive" if p.alive else "dead",
                 "missed": p.missed, "requests": p.requests, "answers": p.answers,
                 "last_heard_ago": None if p.last_heard is None else round(now - p.last_heard, 1),
                 "since": round(now - p.since, 1)} for p in self.peers.values()]


__all__ = ["OFF", "HeartbeatIgnored", "HeartbeatPolicy", "Ignored", "Liveness", "PeerAlive", "PeerDead", "PeerKind"]
