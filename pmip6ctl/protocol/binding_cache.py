"""The local mobility anchor's binding cache (RFC 5213 §5; IPv4, RFC 5844).
One of the cores LmaNode (protocol/lma.py) combines.

Sans-I/O: ``receive`` takes a decoded Proxy Binding Update and returns what to
do: binding changes for the data plane, then the Proxy Binding
Acknowledgement. ``on_timer`` expires bindings. A bad PBU is answered with a
reject status, never an exception.

One mobility session per mobile node: the MN-ID (NAI) finds the binding cache
entry, whatever the Handoff Indicator says, and a PBU's first HNP option is
the one that counts (no multihoming, RFC 5213 §5.4).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv6Address, IPv6Network

from ..wire import (AccessTechnologyType, BAFlags, BindingAck, BindingRevocation, BindingUpdate, BUFlags,
                    HandoffIndicator, HomeNetworkPrefix, IPv4CareofAddress,
                    IPv4HomeAddressReply, IPv4HomeAddressRequest, Message, MobileNodeIdentifier, NATDetection,
                    RevocationStatus, RevocationTrigger, Status, Timestamp, find_option, find_options)
from ..actions import Command, Notification
from ..transport import Arrival, Send, UdpEndpoint
from .common import Deadlines, Stamper, earliest, sequence_greater
from .index import PrefixIndex
from .pools import AddressPool, PoolExhausted, PrefixPool
from .vocabulary import names_a_correspondent

NAI = 1  # MN-ID subtype, RFC 4283 §3
ALL_ZERO_IPV4 = IPv4Address(0)


@dataclass(kw_only=True)
class LmaPolicy:
    address: IPv6Address  # the LMA address (RFC 5213 §2.2)
    ipv4_address: IPv4Address | None = None  # for RFC 5844 IPv4 transport
    hnp_pool: PrefixPool
    ipv4_pool: AddressPool | None = None  # None: no IPv4 home address service
    max_lifetime: int = 3600  # seconds
    timestamp_window: float = 7.0  # TimestampValidityWindow, RFC 5213 §9.1 (300 ms there): docs/protocol.md §4
    min_delay_before_bce_delete: float = 10.0  # MinDelayBeforeBCEDelete, RFC 5213 §5.3.5
    allowed_mags: set[IPv6Address] | None = None  # None: any MAG may register
    nat_keepalive: int = 20  # NAT Detection refresh time, seconds (RFC 5555 §3.2.2)


@dataclass(frozen=True, kw_only=True, slots=True)
class BindingCacheEntry:
    """RFC 5213 §5.1, one mobile node. Replaced, never changed in place.
    Slotted: an LMA holds 100,000 of them (issue 14)."""

    mn_id: str  # NAI
    hnp: IPv6Network
    ipv4_hoa: IPv4Address | None = None
    proxy_coa: IPv6Address  # the serving MAG: the PBU's IPv6 source
    mag_ipv4: UdpEndpoint | None = None  # the MAG's IPv4/UDP source as seen here (a NAT's mapping)
    ipv4_proxy_coa: IPv4Address | None = None  # the MAG's own IPv4 address, option 32
    nat_detected: bool = False
    lifetime: int  # granted, seconds
    expires: float
    sequence: int  # of the last accepted PBU
    timestamp: float = 0.0  # last accepted Timestamp option, unix seconds; 0.0 before any
    access_technology_type: int
    handoff_indicator: int
    registered: float  # first registration


@dataclass(frozen=True)
class BindingUpdated(Command):
    """Install the MN's tunnel to entry's MAG. When the tunnel moved (a
    handover, or a new NAT mapping) previous_* say where it ran before;
    None for a new binding or a refresh that changed nothing."""

    entry: BindingCacheEntry
    previous_proxy_coa: IPv6Address | None = None
    previous_mag_ipv4: UdpEndpoint | None = None


@dataclass(frozen=True)
class BindingRemoved(Command):
    """Remove the MN's tunnel: deregistered or expired."""

    entry: BindingCacheEntry


@dataclass(frozen=True)
class PbuRejected(Notification):
    """A PBU answered with a reject status, for counting by reason."""

    mn_id: str | None
    status: int
    proxy_coa: IPv6Address


class _Refused(Exception):
    def __init__(self, status: Status):
        self.status = status


# RFC 5213 §5.3.1: a PBU without one of these is refused with its status.
_REQUIRED_OPTIONS = (
    (HomeNetworkPrefix, Status.MISSING_HOME_NETWORK_PREFIX_OPTION),
    (HandoffIndicator, Status.MISSING_HANDOFF_INDICATOR_OPTION),
    (AccessTechnologyType, Status.MISSING_ACCESS_TECH_TYPE_OPTION),
)


# Binding Revocation (RFC 5846) before a live binding moves to another MAG:
# the BRI is retransmitted at these delays, and then the move goes ahead (a
# MAG that cannot answer serves nobody): 3.5 s after the PBU. A BRA answering
# any of the BRIs counts, so a slow path loses no answer.
REVOCATION_RETRIES = (0.5, 1.0, 2.0)


@dataclass
class PendingMove:
    """A PBU from a new MAG for an MN whose binding is live at another: held
    until the old MAG says the MN is gone (BRA) or cannot answer."""
    pbu: BindingUpdate
    arrival: Arrival
    old: BindingCacheEntry
    sequence: int                     # of the BRI
    timestamps: set = field(default_factory=set)    # of every BRI sent; the BRA echoes one
    retries: int = 0
    due: float = 0.0


class PendingMoves(dict[str, PendingMove]):
    """MN-ID -> its pending move, also found by what the old MAG's BRA
    names (issue 14): (the old MAG, the BRI's sequence number) -> the MNs
    (one, unless 65,536 moves from one MAG wrapped the 16-bit number)."""

    def __init__(self):
        super().__init__()
        self._by_revocation: dict[tuple[IPv6Address, int], dict[str, None]] = {}

    def __setitem__(self, mn_id: str, move: PendingMove) -> None:
        self.pop(mn_id, None)
        super().__setitem__(mn_id, move)
        self._by_revocation.setdefault((move.old.proxy_coa, move.sequence), {})[mn_id] = None

    def __delitem__(self, mn_id: str) -> None:
        move = self[mn_id]
        super().__delitem__(mn_id)
        key = (move.old.proxy_coa, move.sequence)
        mn_ids = self._by_revocation[key]
        del mn_ids[mn_id]
        if not mn_ids:
            del self._by_revocation[key]

    def pop(self, mn_id: str, *default):
        if mn_id not in self:
            return default[0] if default else super().pop(mn_id)
        move = self[mn_id]
        del self[mn_id]
        return move

    def revoked(self, old_mag: IPv6Address, sequence: int, timestamp: int | None) -> PendingMove | None:
        """The move whose BRI to old_mag had this number and Timestamp."""
        for mn_id in self._by_revocation.get((old_mag, sequence), ()):
            if timestamp in self[mn_id].timestamps:
                return self[mn_id]
        return None

    def _by_item_only(self, *args, **kwargs):
        raise TypeError("PendingMoves changes by item only")

    clear = popitem = setdefault = update = __ior__ = _by_item_only


@dataclass(frozen=True)
class MoveRefused(Notification):
    """A PBU from a new MAG refused: the old MAG says the MN is still attached there."""
    mn_id: str
    proxy_coa: IPv6Address
    old_proxy_coa: IPv6Address


class BindingCache:
    def __init__(self, policy: LmaPolicy, random=os.urandom, stamper: Stamper | None = None):
        self.policy = policy
        self.stamper = stamper or Stamper()
        self._revocation_sequence = int.from_bytes(random(2), "big")
        self.pending = PendingMoves()
        self.bindings: dict[str, BindingCacheEntry] = {}
        self._by_address: PrefixIndex[str] = PrefixIndex()      # HNPs and IPv4 HoAs -> MN-ID
        # Deregistered entries wait MinDelayBeforeBCEDelete (RFC 5213 §5.3.5)
        # with their prefix held, so that the PBU from the MN's next MAG still
        # finds it; here `expires` is when the entry is deleted.
        self._deregistered: dict[str, BindingCacheEntry] = {}
        self._departed: PrefixIndex[str] = PrefixIndex()        # their HNPs and IPv4 HoAs -> MN-ID
        # each MN's next deadline (its binding's or deregistered entry's expiry,
        # its pending move's) in a heap (issue 13), set again after each input
        self._timers = Deadlines()
        # MN-IDs whose binding was made, replaced or ended since the store
        # last took them (daemon/persist.py writes those rows, and no others)
        self.changed: set[str] = set()

    # --- Events -------------------------------------------------------------

    def receive(self, msg: Message, arrival: Arrival, now: float) -> list:
        if not isinstance(msg, BindingUpdate) or names_a_correspondent(msg):
            return []  # not a PBU (an RO BU goes between MAGs)
        mn_id = mobile_node_identifier(msg)
        return self._rescheduled(self._receive(msg, arrival, mn_id, now), mn_id)

    def _receive(self, msg: BindingUpdate, arrival: Arrival, mn_id: str | None, now: float) -> list:
        known = self.bindings.get(mn_id) or self._deregistered.get(mn_id)
        status = self._refusal(msg, arrival, mn_id, known, now)
        if status is not None:
            return self._reject(msg, arrival, mn_id, known, status, now)
        if msg.lifetime == 0:
            return self._deregister(msg, arrival, mn_id, now)
        live = self.bindings.get(mn_id)
        if live is not None and live.proxy_coa != arrival.src:
            return self._revoke_first(msg, arrival, live, now)
        return self._register(msg, arrival, mn_id, known, now)

    def receive_revocation(self, bra: BindingRevocation, arrival: Arrival, now: float) -> list:
        """The old MAG's answer (BRA) to our BRI: the MN gone, or still there."""
        if bra.is_indication:
            return []
        stamp = find_option(bra, Timestamp)
        move = self.pending.revoked(arrival.src, bra.sequence, stamp.timestamp if stamp is not None else None)
        if move is None:
            return []                 # no BRI of ours with that number and Timestamp
        del self.pending[move.old.mn_id]
        if bra.code == RevocationStatus.REVOCATION_FAILED_MN_IS_ATTACHED:
            refused = MoveRefused(move.old.mn_id, move.arrival.src, move.old.proxy_coa)
            return self._rescheduled([refused] + self._reject(move.pbu, move.arrival, move.old.mn_id, move.old,
                                                              Status.ADMIN_PROHIBITED, now), move.old.mn_id)
        return self._rescheduled(self._move(move, now), move.old.mn_id)   # gone (success), or never had it (128)

    def on_timer(self, now: float) -> list:
        """What is due at now: O(k log n) for k MNs due of n."""
        due = self._timers.pop_due(now)
        for entry in self._delete_expired(self._deregistered, due, now):
            self._unindex(entry, self._departed)
        expired = self._delete_expired(self.bindings, due, now)
        for entry in expired:
            self._unindex(entry, self._by_address)
        actions = [BindingRemoved(entry) for entry in expired]
        for move in [m for m in map(self.pending.get, due) if m is not None and m.due <= now]:
            if move.retries < len(REVOCATION_RETRIES):
                actions.append(self._indication(move, now))
            else:
                # The old MAG does not answer: it serves nobody, the move goes ahead.
                del self.pending[move.old.mn_id]
                actions += self._move(move, now)
        return self._rescheduled(actions, *due)

    def next_deadline(self) -> float | None:
        """O(1) amortised, whatever the number of MNs."""
        return self._timers.next()

    def _rescheduled(self, actions: list, *mn_ids: str | None) -> list:
        """actions, once the MNs the call changed are due at their new deadlines."""
        for mn_id in mn_ids:
            binding, held, move = self.bindings.get(mn_id), self._deregistered.get(mn_id), self.pending.get(mn_id)
            self._timers.set(mn_id, earliest(binding.expires if binding else None, held.expires if held else None,
                                             move.due if move else None))
        return actions

    # --- Lookups ------------------------------------------------------------

    def binding_for_address(self, address: IPv6Address | IPv4Address) -> BindingCacheEntry | None:
        """The binding whose HNP holds this IPv6 address, or whose IPv4 home
        address it is."""
        mn_id = self._by_address.lookup(address)
        return self.bindings.get(mn_id) if mn_id is not None else None

    def deregistered(self, mn_id: str) -> bool:
        """Whether the MN's old MAG deregistered it and its entry waits
        MinDelayBeforeBCEDelete for a new MAG's PBU."""
        return mn_id in self._deregistered

    def settling(self, address: IPv6Address | IPv4Address) -> bool:
        """Whether the MN that holds this address is between two MAGs: its
        old MAG deregistered it and no new one has registered it yet
        (MinDelayBeforeBCEDelete), or a new MAG claims it and the old one
        has not answered our BRI. Where it is will be known in a moment."""
        live = self.binding_for_address(address)
        if live is not None:
            return live.mn_id in self.pending
        mn_id = self._departed.lookup(address)
        return mn_id is not None and mn_id in self._deregistered

    def restore(self, entries: list[BindingCacheEntry]) -> list[BindingCacheEntry]:
        """Rebuild the binding cache after a restart, holding each entry's
        prefix and address in the pools. Returns the entries that could not
        be restored (their prefix or address is not free in today's pools)."""
        refused = []
        for entry in entries:
            if entry.mn_id not in self.bindings and self._reserve(entry):
                self._bind(entry)
                self._rescheduled([], entry.mn_id)
            else:
                refused.append(entry)
        return refused

    # --- Processing a PBU ---------------------------------------------------

    def _refusal(self, msg: BindingUpdate, arrival: Arrival, mn_id: str | None,
                 known: BindingCacheEntry | None, now: float) -> Status | None:
        """The first reason, in RFC 5213 §5.3.1's order, to refuse the PBU."""
        if not msg.flags & BUFlags.P:
            return Status.PROXY_REG_NOT_ENABLED
        if mn_id is None:
            return Status.MISSING_MN_IDENTIFIER_OPTION
        if self.policy.allowed_mags is not None and arrival.src not in self.policy.allowed_mags:
            return Status.MAG_NOT_AUTHORIZED_FOR_PROXY_REG
        for option, missing in _REQUIRED_OPTIONS:
            if find_option(msg, option) is None:
                return missing
        timestamp = find_option(msg, Timestamp)
        if timestamp is not None:  # RFC 5213 §5.5
            if abs(now - timestamp.to_unix()) > self.policy.timestamp_window:
                return Status.TIMESTAMP_MISMATCH
            if known is not None and timestamp.to_unix() <= known.timestamp:
                return Status.TIMESTAMP_LOWER_THAN_PREV_ACCEPTED
        elif (known is not None and known.proxy_coa == arrival.src
              and not sequence_greater(msg.sequence, known.sequence)):
            # RFC 6275 §9.5.1. Sequence numbers are counted by each MAG: a new
            # MAG's first one says nothing about order (RFC 5213 §5.5).
            return Status.SEQUENCE_OUT_OF_WINDOW
        return None

    # --- A live binding moving to another MAG (RFC 5846) -------------------------
    def _revoke_first(self, msg: BindingUpdate, arrival: Arrival, live: BindingCacheEntry, now: float) -> list:
        """An RS is not an identity: before a live binding moves, its MAG must
        say the MN left (RFC 5846 Binding Revocation). A retransmitted PBU
        from the new MAG replaces the one held."""
        move = self.pending.get(live.mn_id)
        if move is not None and move.arrival.src == arrival.src:
            move.pbu, move.arrival = msg, arrival
            return []
        self._revocation_sequence = (self._revocation_sequence + 1) & 0xFFFF
        move = PendingMove(msg, arrival, live, self._revocation_sequence)
        self.pending[live.mn_id] = move
        return [self._indication(move, now)]

    def _indication(self, move: PendingMove, now: float) -> Send:
        old = move.old
        stamp = self.stamper.stamp(now)
        move.timestamps.add(stamp.timestamp)
        move.due = now + REVOCATION_RETRIES[min(move.retries, len(REVOCATION_RETRIES) - 1)]
        move.retries += 1
        options = [MobileNodeIdentifier.from_nai(old.mn_id), HomeNetworkPrefix(old.hnp.prefixlen,
                                                                                 old.hnp.network_address), stamp]
        bri = BindingRevocation.indication(move.sequence, RevocationTrigger.INTER_MAG_HANDOVER_UNKNOWN, options)
        if old.mag_ipv4 is None:
            return Send(bri, self.policy.address, old.proxy_coa)
        return Send(bri, self.policy.address, old.proxy_coa, ipv4_dst=old.mag_ipv4,
                    ipv4_src=self.policy.ipv4_address)

    def _move(self, move: PendingMove, now: float) -> list:
        """The held PBU, as if it came now: the old binding is let go."""
        mn_id = move.old.mn_id
        return self._register(move.pbu, move.arrival, mn_id, self.bindings.get(mn_id) or move.old, now)

    def _register(self, msg: BindingUpdate, arrival: Arrival, mn_id: str,
                  known: BindingCacheEntry | None, now: float) -> list:
        try:
            hnp = self._assign_prefix(mn_id, msg)
            ipv4_hoa = self._assign_ipv4_home_address(mn_id, msg, known)
        except _Refused as refused:
            if known is None:
                self._release(mn_id)  # undo what this PBU allocated
            return self._reject(msg, arrival, mn_id, known, refused.status, now)
        granted = min(msg.lifetime, self.policy.max_lifetime // 4) * 4
        careof = find_option(msg, IPv4CareofAddress)
        entry = BindingCacheEntry(
            mn_id=mn_id, hnp=hnp, ipv4_hoa=ipv4_hoa, proxy_coa=arrival.src,
            mag_ipv4=arrival.ipv4_src,
            ipv4_proxy_coa=careof.address if careof else None,
            # RFC 5844 §4: the MAG's own IPv4 address is not the source we see.
            nat_detected=(arrival.over_ipv4 and careof is not None
                          and careof.address != arrival.ipv4_src.address),
            lifetime=granted, expires=now + granted, sequence=msg.sequence,
            timestamp=_accepted_timestamp(msg, known),
            access_technology_type=find_option(msg, AccessTechnologyType).access_technology_type,
            handoff_indicator=find_option(msg, HandoffIndicator).handoff_indicator,
            registered=known.registered if known else now)
        if (held := self._deregistered.pop(mn_id, None)) is not None:
            self._unindex(held, self._departed)
        self._bind(entry)
        if known is not None and (known.proxy_coa, known.mag_ipv4) != (entry.proxy_coa, entry.mag_ipv4):
            update = BindingUpdated(entry, known.proxy_coa, known.mag_ipv4)
        else:
            update = BindingUpdated(entry)
        return [update] + self._acknowledge(msg, arrival, Status.ACCEPTED, now, granted=entry)

    def _deregister(self, msg: BindingUpdate, arrival: Arrival, mn_id: str, now: float) -> list:
        answer = self._acknowledge(msg, arrival, Status.ACCEPTED, now)
        move = self.pending.get(mn_id)
        if move is not None and move.arrival.src == arrival.src:
            del self.pending[mn_id]         # the new MAG let go of the MN before the old one answered
        entry = self.bindings.get(mn_id)
        if entry is None or entry.proxy_coa != arrival.src:
            # No binding, or the MN has moved on and this is its previous MAG
            # (RFC 5213 §5.3.5): nothing to remove. Answered all the same, so
            # that the MAG stops retransmitting.
            return answer
        del self.bindings[mn_id]
        self.changed.add(mn_id)
        self._unindex(entry, self._by_address)
        self._deregistered[mn_id] = replace(
            entry, lifetime=0, expires=now + self.policy.min_delay_before_bce_delete,
            sequence=msg.sequence, timestamp=_accepted_timestamp(msg, entry))
        self._index(entry, self._departed)
        # The tunnel goes now: RFC 5213 §5.3.5 drops the MN's traffic while waiting.
        actions = [BindingRemoved(entry)] + answer
        move = self.pending.pop(mn_id, None)
        if move is not None:                # the old MAG let the MN go: the held move goes ahead
            actions += self._move(move, now)
        return actions

    def _reject(self, msg: BindingUpdate, arrival: Arrival, mn_id: str | None,
                known: BindingCacheEntry | None, status: Status, now: float) -> list:
        # RFC 6275 §9.5.1: a sequence number refusal carries the last accepted one.
        sequence = known.sequence if status == Status.SEQUENCE_OUT_OF_WINDOW else msg.sequence
        return ([PbuRejected(mn_id, status, arrival.src)]
                + self._acknowledge(msg, arrival, status, now, sequence=sequence))

    def _assign_prefix(self, mn_id: str, msg: BindingUpdate) -> IPv6Network:
        """RFC 5213 §5.3.2: an all-zero HNP asks the LMA to pick the MN's
        prefix; a specific one must be the MN's, or free in the pool (a MAG
        that outlived an LMA restart keeps its MN's prefix)."""
        option = find_option(msg, HomeNetworkPrefix)
        refusal = Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX
        if option.prefix.packed == bytes(16):
            return _take(self.policy.hnp_pool, mn_id, None, refusal)
        try:
            wanted = IPv6Network((int(option.prefix), option.prefix_length), strict=False)   # (an int: not parsed)
        except ValueError:  # prefix length beyond 128
            raise _Refused(refusal) from None
        return _take(self.policy.hnp_pool, mn_id, wanted, refusal)

    def _assign_ipv4_home_address(self, mn_id: str, msg: BindingUpdate,
                                  known: BindingCacheEntry | None) -> IPv4Address | None:
        """RFC 5844 §3.1.2: 0.0.0.0 asks the LMA to pick; a binding keeps its
        address when a refresh does not ask again."""
        request = find_option(msg, IPv4HomeAddressRequest)
        if request is None:
            return known.ipv4_hoa if known else None
        if self.policy.ipv4_pool is None:
            raise _Refused(Status.NOT_AUTHORIZED_FOR_IPV4_MOBILITY_SERVICE)
        wanted = None if request.address == ALL_ZERO_IPV4 else request.address
        return _take(self.policy.ipv4_pool, mn_id, wanted, Status.NOT_AUTHORIZED_FOR_IPV4_HOME_ADDRESS)

    def _acknowledge(self, msg: BindingUpdate, arrival: Arrival, status: Status, now: float, *,
                     granted: BindingCacheEntry | None = None, sequence: int | None = None) -> list:
        """The PBA (RFC 5213 §5.3.6): the PBU's options mirrored, and what
        was granted when a registration is accepted."""
        if status < 128 and not msg.flags & BUFlags.A:
            return []  # RFC 6275 §9.5.1: acceptance is acknowledged only when asked
        if granted is not None:
            prefixes = [HomeNetworkPrefix(granted.hnp.prefixlen, granted.hnp.network_address)]
        else:
            prefixes = find_options(msg, HomeNetworkPrefix)
        timestamp = find_option(msg, Timestamp)
        if status == Status.TIMESTAMP_MISMATCH:
            timestamp = Timestamp.from_unix(now)  # RFC 5213 §5.5: our time, for the MAG to compare
        options = [option for option in [find_option(msg, MobileNodeIdentifier), *prefixes,
                                         find_option(msg, HandoffIndicator),
                                         find_option(msg, AccessTechnologyType), timestamp]
                   if option is not None]
        if granted is not None and granted.ipv4_hoa is not None and find_option(msg, IPv4HomeAddressRequest):
            options.append(IPv4HomeAddressReply(0, granted.ipv4_hoa, self.policy.ipv4_pool.pool.prefixlen))
        if granted is not None and granted.nat_detected:
            options.append(NATDetection(self.policy.nat_keepalive))
        flags = BAFlags.P if msg.flags & BUFlags.P else BAFlags(0)
        pba = BindingAck(status, flags, msg.sequence if sequence is None else sequence,
                         granted.lifetime // 4 if granted else 0, options)
        if not arrival.over_ipv4:
            return [Send(pba, self.policy.address, arrival.src)]
        # RFC 5844 §4: back over IPv4/UDP to where the PBU came from.
        return [Send(pba, self.policy.address, arrival.src, ipv4_dst=arrival.ipv4_src,
                     ipv4_src=self.policy.ipv4_address or arrival.ipv4_dst)]

    # --- The table and its index ----------------------------------------------
    def _bind(self, entry: BindingCacheEntry) -> None:
        known = self.bindings.get(entry.mn_id)
        self.bindings[entry.mn_id] = entry
        self.changed.add(entry.mn_id)
        if known is not None and (known.hnp, known.ipv4_hoa) == (entry.hnp, entry.ipv4_hoa):
            return                                # a refresh: indexed already
        if known is not None:
            self._unindex(known, self._by_address)
        self._index(entry, self._by_address)

    @staticmethod
    def _index(entry: BindingCacheEntry, index: PrefixIndex[str]) -> None:
        index.add(entry.hnp, entry.mn_id)
        if entry.ipv4_hoa is not None:
            index.add(entry.ipv4_hoa, entry.mn_id)

    @staticmethod
    def _unindex(entry: BindingCacheEntry, index: PrefixIndex[str]) -> None:
        index.remove(entry.hnp, entry.mn_id)
        if entry.ipv4_hoa is not None:
            index.remove(entry.ipv4_hoa, entry.mn_id)

    # --- Pools --------------------------------------------------------------

    def _reserve(self, entry: BindingCacheEntry) -> bool:
        pool = self.policy.ipv4_pool
        if self.policy.hnp_pool.reserve(entry.mn_id, entry.hnp) and (
                entry.ipv4_hoa is None or (pool is not None and pool.reserve(entry.mn_id, entry.ipv4_hoa))):
            return True
        self._release(entry.mn_id)
        return False

    def _release(self, mn_id: str) -> None:
        self.policy.hnp_pool.release(mn_id)
        if self.policy.ipv4_pool is not None:
            self.policy.ipv4_pool.release(mn_id)

    def _delete_expired(self, table: dict[str, BindingCacheEntry], due: list[str],
                        now: float) -> list[BindingCacheEntry]:
        expired = [entry for entry in map(table.get, due) if entry is not None and entry.expires <= now]
        for entry in expired:
            del table[entry.mn_id]
            if table is self.bindings:
                self.changed.add(entry.mn_id)
            self._release(entry.mn_id)
        return expired


def _take(pool: PrefixPool | AddressPool, owner: str, wanted, not_authorized: Status):
    """The owner's item from the pool: any (None), or the one wanted."""
    if wanted is None:
        try:
            return pool.allocate(owner)
        except PoolExhausted:
            raise _Refused(Status.INSUFFICIENT_RESOURCES) from None
    if not pool.reserve(owner, wanted):
        raise _Refused(not_authorized)
    return wanted


def mobile_node_identifier(msg: BindingUpdate) -> str | None:
    """The NAI in the MN-ID option; None when there is no usable one."""
    option = find_option(msg, MobileNodeIdentifier)
    if option is None or option.subtype != NAI or not option.identifier:
        return None
    try:
        return option.nai
    except UnicodeDecodeError:
        return None


def _accepted_timestamp(msg: BindingUpdate, known: BindingCacheEntry | None) -> float:
    timestamp = find_option(msg, Timestamp)
    if timestamp is not None:
        return timestamp.to_unix()
    return known.timestamp if known else 0.0
