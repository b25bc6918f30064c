"""The RO query between LMAs (draft scenario 2, which the draft leaves to "a
later version"), sans-I/O. docs/protocol.md §8 describes the exchange.

An LMA asked (LRI) about a CN it does not anchor asks its peer LMAs with
the same LRI, authenticated with the Mobility Message Authentication option
(RFC 4285, keyed from the peer table, as quick mode), and relays the first
positive answer to the MAG, with the serving MAG's address (option 51, and
option 32 when known). It caches that answer for its lifetime. A peer that
answered remembers who asked, and when the CN's binding moves or ends it
sends them an unsolicited LRA (U flag) naming the CN's prefix: the asker
drops what it cached. A peer only answers from its own binding cache: a
query is never relayed twice, so there are no loops.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from typing import Callable, Mapping

from .. import wire
from ..actions import Notification
from ..security import PeerKey
from ..transport import Arrival, Send
from .common import Deadlines, Stamper, earliest
from .ro_query import echoed_timestamp, mag_address_options, named_addresses, serving_mag_options
from .vocabulary import RelayOutcome

Address = IPv6Address | IPv4Address

QUERY_TIMEOUT = 1.0        # how long the asking MAG waits for the peers, at most
MAX_PENDING = 4096         # MAG queries waiting for the peers at once; past it, a query waits for its MAG's retry
MAX_CACHED = 65536         # peers' answers cached at once; past it, the oldest goes
NOTICE_GROUP = 64          # cached IPv6 answers are grouped by the CN's /64 (an HNP is no longer)


@dataclass(frozen=True)
class CachedAnswer:
    mag: IPv6Address
    mag_ipv4: IPv4Address | None
    expires: float
    peer: IPv6Address               # the LMA that anchors the CN


@dataclass(eq=False)
class PendingQuery:
    """A MAG's LRI waiting for the peers' answers."""
    lri: wire.LocalizedRoutingInitiation
    arrival: Arrival
    cn: Address
    # of the LRIs still unanswered: sequence -> (the peer it went to, its Timestamp, which the answer echoes)
    sequences: dict[int, tuple[IPv6Address, int]]
    deadline: float


@dataclass(frozen=True)
class Relayed(Notification):
    """For the log and the counters: how a query was settled."""
    cn: Address | None
    outcome: RelayOutcome


@dataclass
class InterLmaQuery:
    address: IPv6Address
    peers: Mapping[IPv6Address, PeerKey]
    cache: dict[Address, CachedAnswer] = field(default_factory=dict)
    pending: dict[PendingQuery, None] = field(default_factory=dict)        # in arrival order
    askers: dict[IPv6Network | IPv4Address, set[IPv6Address]] = field(default_factory=dict)
    # random after every start: answers are tied to the question by it (and by the Timestamp)
    _sequence: itertools.count = field(default_factory=lambda: itertools.count(int.from_bytes(os.urandom(2), "big")))
    stamper: Stamper = field(default_factory=Stamper)
    max_pending: int = MAX_PENDING
    max_cached: int = MAX_CACHED
    # (table, reason) -> entries pushed out at a limit
    pushed_out: dict[tuple[str, str], int] = field(default_factory=dict)
    refused: dict[tuple[str, str], int] = field(default_factory=dict)
    # Timers (issue 13): when each pending query times out and each cached answer
    # expires, in heaps; the LRI each peer's answer names, by (peer, sequence).
    _deadlines: Deadlines = field(default_factory=Deadlines)
    _expiry: Deadlines = field(default_factory=Deadlines)
    _asked: dict[tuple[IPv6Address, int], PendingQuery] = field(default_factory=dict)
    # the cached answers by the peer that gave them and the CN's /64 (IPv6) or
    # address (IPv4): a peer's notice finds what it names without a walk (issue 14)
    _cached_from: dict[tuple[IPv6Address, int, int], dict[Address, None]] = field(default_factory=dict)

    # --- a MAG asked about a CN we do not anchor -------------------------------------------
    def ask_peers(self, lri: wire.LocalizedRoutingInitiation, arrival: Arrival, now: float) -> list | None:
        """What to do with a MAG's query for a foreign CN: an LRA from the
        cache, LRIs to the peers, or None when there is nobody to ask."""
        _, cn = named_addresses(lri)
        cached = self.cache.get(cn)
        if cached is not None and cached.expires > now:
            return [self._answer(lri, arrival, cached), Relayed(cn, RelayOutcome.ANSWERED_FROM_CACHE)]
        self._uncache(cn)
        if not self.peers or cn is None:
            return None
        if len(self.pending) >= self.max_pending:
            # bounded state (issue 13): no LRIs, no answer; the MAG asks again after 1 s
            self.refused[("peer_queries", "pending_limit")] = self.refused.get(("peer_queries", "pending_limit"), 0) + 1
            return [Relayed(cn, RelayOutcome.PENDING_LIMIT)]
        query = PendingQuery(lri, arrival, cn, {}, now + QUERY_TIMEOUT)
        actions = []
        for peer, key in self.peers.items():
            sequence = next(self._sequence) & 0xFFFF
            stamp = self.stamper.stamp(now)
            query.sequences[sequence] = (peer, stamp.timestamp)
            self._asked[(peer, sequence)] = query
            options = [o for o in lri.options if not isinstance(o, (wire.MobilityMessageAuthentication,
                                                                       wire.Timestamp))]
            forwarded = wire.LocalizedRoutingInitiation(sequence=sequence, lifetime=lri.lifetime,
                                                        options=options + [stamp])
            actions.append(Send(key.sign(forwarded, self.address, peer), self.address, peer))
        self.pending[query] = None
        self._deadlines.set(query, query.deadline)
        return actions

    def _settled(self, query: PendingQuery) -> None:
        del self.pending[query]
        self._deadlines.discard(query)
        for sequence, (peer, _) in query.sequences.items():
            self._asked.pop((peer, sequence), None)

    def _cache(self, cn: Address, answer: CachedAnswer) -> None:
        if cn not in self.cache and len(self.cache) >= self.max_cached:
            # bounded (issue 13): the oldest answer goes; its MAG's next query asks again
            self._uncache(next(iter(self.cache)))
            self.pushed_out[("peer_answers", "oldest")] = self.pushed_out.get(("peer_answers", "oldest"), 0) + 1
        self._uncache(cn)
        self.cache[cn] = answer                   # to the end: the newest last
        self._expiry.set(cn, answer.expires)
        self._cached_from.setdefault(_notice_key(answer.peer, cn), {})[cn] = None

    def _uncache(self, cn: Address) -> None:
        answer = self.cache.pop(cn, None)
        self._expiry.discard(cn)
        if answer is not None:
            key = _notice_key(answer.peer, cn)
            group = self._cached_from[key]
            del group[cn]
            if not group:
                del self._cached_from[key]

    # --- answers and notices from a peer LMA ------------------------------------------------
    def on_peer_lra(self, lra: wire.LocalizedRoutingAck, arrival: Arrival, now: float) -> list:
        key = self.peers.get(arrival.src)
        if key is None or not key.verify(lra, arrival.src, arrival.dst):
            return [Relayed(None, RelayOutcome.UNAUTHENTICATED_PEER_ANSWER)]
        if lra.unsolicited:
            return self._on_notice(lra, arrival.src)
        stamp = wire.find_option(lra, wire.Timestamp)
        asked = (arrival.src, stamp.timestamp if stamp else None)
        query = self._asked.get((arrival.src, lra.sequence))
        if query is None or query.sequences.get(lra.sequence) != asked:
            return []                   # no question of ours with that number and Timestamp
        del query.sequences[lra.sequence]
        del self._asked[(arrival.src, lra.sequence)]
        if lra.status == wire.LRAStatus.SUCCESS:
            mag = wire.find_option(lra, wire.MAGIPv6Address)
            if mag is not None:
                ipv4 = wire.find_option(lra, wire.IPv4CareofAddress)
                answer = CachedAnswer(mag.address, ipv4.address if ipv4 else None, now + lra.lifetime, arrival.src)
                self._cache(query.cn, answer)
                self._settled(query)
                return [self._answer(query.lri, query.arrival, answer), Relayed(query.cn, RelayOutcome.ANSWERED_BY_PEER)]
        if not query.sequences:
            self._settled(query)
            return [self._refuse(query), Relayed(query.cn, RelayOutcome.NO_PEER_ANCHORS_IT)]
        return []

    def on_timer(self, now: float) -> list:
        actions = []
        for query in self._deadlines.pop_due(now):
            self._settled(query)
            actions += [self._refuse(query), Relayed(query.cn, RelayOutcome.PEERS_DID_NOT_ANSWER)]
        for cn in self._expiry.pop_due(now):
            self._uncache(cn)
        return actions

    def next_deadline(self) -> float | None:
        return earliest(self._deadlines.next(), self._expiry.next())

    def _on_notice(self, lra: wire.LocalizedRoutingAck, peer: IPv6Address) -> list:
        """The peer's CN moved or left: forget what we cached from it."""
        prefix = wire.find_option(lra, wire.CNHomeNetworkPrefix)
        address = wire.find_option(lra, wire.CNIPv4HomeAddress)
        candidates: dict[Address, None] = {}
        if prefix is not None:
            named = IPv6Network((prefix.prefix, min(prefix.prefix_length, 128)), strict=False)
            if named.prefixlen >= NOTICE_GROUP:       # within one group: look there
                groups = [self._cached_from.get(_notice_key(peer, named.network_address))]
            else:                                     # wider than a group (rare): the peer's groups
                groups = [g for (p, version, _), g in self._cached_from.items() if p == peer and version == 6]
            candidates.update((cn, None) for group in groups if group for cn in group if cn in named)
        if address is not None:
            candidates.update((cn, None) for cn in self._cached_from.get(_notice_key(peer, address.address), ())
                              if cn == address.address)
        stale = list(candidates)
        for cn in stale:
            self._uncache(cn)
        return [Relayed(cn, RelayOutcome.CACHE_INVALIDATED_BY_PEER) for cn in stale]

    # --- a peer LMA asked us ---------------------------------------------------------------------
    def answer_peer(self, lri: wire.LocalizedRoutingInitiation, arrival: Arrival,
                    binding_for: Callable[[Address], object | None], now: float | None = None) -> list:
        """Answer a peer's query from our own binding cache only."""
        key = self.peers.get(arrival.src)
        if key is None or not key.verify(lri, arrival.src, arrival.dst):
            return [Relayed(None, RelayOutcome.UNAUTHENTICATED_PEER_QUERY)]
        _, cn = named_addresses(lri)
        serving = binding_for(cn) if cn is not None else None
        options = []
        if serving is None:
            status = wire.LRAStatus.MN_NOT_ATTACHED
        else:
            status = wire.LRAStatus.SUCCESS
            options = serving_mag_options(serving)
            self.askers.setdefault(serving.hnp, set()).add(arrival.src)
        lra = wire.LocalizedRoutingAck(sequence=lri.sequence, status=status,
                                       lifetime=lri.lifetime if serving else 0, options=options + echoed_timestamp(lri))
        signer = key.answering(lri, arrival.src, arrival.dst)      # a peer mid key rotation believes it
        return [Send(signer.sign(lra, self.address, arrival.src), self.address, arrival.src),
                Relayed(cn, RelayOutcome.ANSWERED_PEER if serving else RelayOutcome.NOT_ANCHORED_HERE)]

    def binding_changed(self, hnp: IPv6Network, ipv4_hoa: IPv4Address | None, now: float) -> list:
        """A binding some peer asked about moved or ended: notify the askers."""
        askers = self.askers.pop(hnp, set())
        actions = []
        for peer in askers:
            key = self.peers.get(peer)
            if key is None:
                continue
            options = [wire.CNHomeNetworkPrefix(hnp.prefixlen, hnp.network_address)]
            if ipv4_hoa is not None:
                options.append(wire.CNIPv4HomeAddress(32, ipv4_hoa))
            options.append(self.stamper.stamp(now))       # a request of ours: fresh, ever newer
            notice = wire.LocalizedRoutingAck(sequence=next(self._sequence) & 0xFFFF,
                                              status=wire.LRAStatus.MN_NOT_ATTACHED, lifetime=0,
                                              unsolicited=True, options=options)
            actions.append(Send(key.sign(notice, self.address, peer), self.address, peer))
        return actions

    # --- answering the MAG ---------------------------------------------------------------------------
    def _answer(self, lri, arrival: Arrival, answer: CachedAnswer) -> Send:
        lra = wire.LocalizedRoutingAck(sequence=lri.sequence, status=wire.LRAStatus.SUCCESS, lifetime=lri.lifetime,
                                       options=mag_address_options(answer.mag, answer.mag_ipv4)
                                       + echoed_timestamp(lri))
        return arrival.reply(lra, self.address)

    def _refuse(self, query: PendingQuery) -> Send:
        lra = wire.LocalizedRoutingAck(sequence=query.lri.sequence, status=wire.LRAStatus.MN_NOT_ATTACHED,
                                       lifetime=0, options=echoed_timestamp(query.lri))
        return query.arrival.reply(lra, self.address)


def _notice_key(peer: IPv6Address, cn: Address) -> tuple[IPv6Address, int, int]:
    """Where a cached answer about cn from peer is grouped: its /64, or its IPv4 address."""
    if isinstance(cn, IPv6Address):
        return peer, 6, int(cn) >> (128 - NOTICE_GROUP)
    return peer, 4, int(cn)
