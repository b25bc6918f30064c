"""The mobile access gateway's binding update list (RFC 5213 §6; IPv4, RFC 5844).
One of the cores MagNode (protocol/mag.py) combines.

Sans-I/O: ``attach`` and ``detach`` (from the access links or the operator),
``receive`` (a decoded Proxy Binding Acknowledgement) and ``on_timer`` return
what to do: PBUs to send and the MN's routes to install or remove.

Sequence numbers come from one counter for the whole MAG, so a mobile node
that detaches and attaches again never reuses one the LMA still remembers.
"""

from __future__ import annotations

import copy
import enum
import os
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from typing import Callable

from ..wire import (AccessTechnologyType, AccessTechnologyTypeValue, BAFlags, BindingAck, BindingUpdate, BUFlags,
                    HandoffIndicator, HandoffIndicatorValue, HomeNetworkPrefix, IPv4CareofAddress,
                    IPv4HomeAddressReply, IPv4HomeAddressRequest, Message, MobileNodeIdentifier, NATDetection,
                    Status, Timestamp, find_option)
from ..actions import Command, Notification
from ..transport import PMIP6_UDP_PORT, Arrival, Send, UdpEndpoint
from .common import Deadlines, Retransmission, Stamper, earliest, sequence_greater
from .index import Groups

ALL_ZERO_PREFIX = IPv6Network("::/0")  # HNP option asking the LMA to assign (RFC 5213 §6.9.1.1)
ALL_ZERO_IPV4 = IPv4Address(0)  # IPv4 HoA Request asking the LMA to assign (RFC 5844 §3.3.1)
MAX_LIFETIME_UNITS = 0xFFFF  # the Lifetime field, 4-second units
DEREGISTRATION_ATTEMPTS = 3
# PBAs answer one of the last few transmissions of a request; older ones are stale.
OUTSTANDING_TRANSMISSIONS = 8


@dataclass(kw_only=True)
class MagPolicy:
    proxy_coa: IPv6Address
    ipv4_proxy_coa: IPv4Address | None = None
    lma_address: IPv6Address
    lma_ipv4: IPv4Address | None = None
    ipv4_transport: bool = False  # PBUs over IPv4/UDP 5436 (RFC 5844 §4)
    lifetime: int = 3600  # requested, seconds
    refresh_fraction: float = 0.8  # refresh when this share of the granted lifetime has passed
    initial_bindack_timeout: float = 1.0  # RFC 6275 §13 InitialBindackTimeoutFirstReg
    max_bindack_timeout: float = 32.0  # RFC 6275 §13 MAX_BINDACK_TIMEOUT
    access_technology_type: int = AccessTechnologyTypeValue.IEEE_802_3
    request_ipv4: bool = True
    hnp_lengths: tuple[int, ...] = (64,)  # prefix lengths we install (SLAAC needs /64)
    # What must never become an MN's route: our own networks, our peers' addresses.
    infrastructure: tuple = ()
    # A refused registration is tried again after this long while the MN stays on its
    # link, doubling up to 16x (0: never). The LMA's refusal may be passing: another
    # MAG that claimed the MN (RFC 5846, docs/security.md) may let it go.
    retry_after_rejection: float = 30.0

    def __post_init__(self):
        if self.ipv4_transport and (self.lma_ipv4 is None or self.ipv4_proxy_coa is None):
            raise ValueError("IPv4 transport needs lma_ipv4 and ipv4_proxy_coa")


@dataclass
class Transmission:
    """One PBU of a request: RFC 6275 §11.8 gives each retransmission a new
    sequence number, and the PBA may answer any of them. The PBA carries
    the PBU's Timestamp back (RFC 5213 §5.3.6): an old PBA names an old
    PBU even when the 16-bit sequence number has come round."""

    sequence: int
    sent: float
    timestamp: int = 0  # the PBU's Timestamp option, raw


class BindingState(enum.StrEnum):
    REGISTERING = "registering"  # no binding yet (or it ran out): PBUs outstanding
    REGISTERED = "registered"  # the MN's routes are up; refreshed before expiry
    DEREGISTERING = "deregistering"  # detached: a deregistration PBU outstanding
    FAILED = "failed"  # the LMA refused; tried again later (retry_after_rejection), or when the MN attaches again


@dataclass
class BindingUpdateListEntry:
    """RFC 5213 §6.1, one mobile node attached to this MAG."""

    mn_id: str  # NAI
    link: str  # access interface
    mac: str | None = None
    state: BindingState = BindingState.REGISTERING
    hnp: IPv6Network | None = None
    ipv4_hoa: IPv4Address | None = None
    sequence: int = 0  # of the last PBU sent
    lifetime: int = 0  # granted, seconds
    expires: float | None = None
    refresh_at: float | None = None
    registered: float | None = None  # first successful registration
    retransmission: Retransmission = field(default_factory=Retransmission)
    last_status: int | None = None
    nat_detected: bool = False
    nat_refresh: int | None = None  # seconds, from the NAT Detection option
    handoff_indicator: int = HandoffIndicatorValue.NEW_INTERFACE  # of the attachment (RFC 5213 §8.4)
    # The PBUs of the request awaiting its PBA, oldest first.
    outstanding: list[Transmission] = field(default_factory=list)
    rejections: int = 0  # in a row, for the retry backoff
    retry_at: float | None = None  # FAILED: when to ask the LMA again
    restamped: bool = False  # sent again at once after a 157 (once per registration)
    ipv6_only: bool = False  # the LMA has no IPv4 service for the MN (170): no IPv4 HoA Request


@dataclass(frozen=True)
class MobileNodeRegistered(Command):
    """Install the MN's routes (its HNP and IPv4 HoA, through the LMA tunnel)."""

    entry: BindingUpdateListEntry


@dataclass(frozen=True)
class MobileNodeDeregistered(Command):
    """Remove the MN's routes for entry's HNP and IPv4 HoA."""

    entry: BindingUpdateListEntry


@dataclass(frozen=True)
class IPv4ServiceDeclined(Notification):
    """The LMA gives the MN no IPv4 home address service (PBA status 170,
    RFC 5844 §3.1.2); the MAG asks again for IPv6 alone (docs/protocol.md §4)."""

    entry: BindingUpdateListEntry
    status: int


@dataclass(frozen=True)
class RegistrationRejected(Notification):
    entry: BindingUpdateListEntry
    status: int
    reason: str = ""  # set when we refused what the LMA granted (the status said yes)


class BindingUpdateList:
    def __init__(self, policy: MagPolicy, random: Callable[[int], bytes] = os.urandom,
                 stamper: Stamper | None = None):
        self.policy = policy
        self.entries: dict[str, BindingUpdateListEntry] = {}
        # each entry's next deadline in a heap (issue 13); a method that changes
        # an entry notes its MN (_touched) and reschedules it on the way out
        self._timers = Deadlines()
        self._touched: set[str] = set()
        # What MagNode asks per event, without a walk (issue 14), kept on the same
        # way out (_reindex): the MNs on each link, those registered, and the NAT
        # refresh times of those registered behind a NAT (time -> how many).
        self._indexed: dict[str, tuple[str, bool, int | None]] = {}   # mn_id -> (link, registered, refresh)
        self._on_link: Groups[str, str] = Groups()
        self._registered_on: Groups[str, str] = Groups()
        self._registered_count = 0
        self._nat_refreshes: dict[int, int] = {}
        # MNs changed since the store last took them (daemon/persist.py)
        self.changed: set[str] = set()
        # random after every start: a restarted MAG never replays old numbers in order
        self._sequence = int.from_bytes(random(2), "big")
        self.stamper = stamper or Stamper()

    # --- Events -------------------------------------------------------------

    def attach(self, mn_id: str, link: str, now: float, mac: str | None = None, handoff: bool = False) -> list:
        """The MN appeared on an access link: register it (RFC 5213 §6.9.1.1)."""
        self._touched.add(mn_id)
        return self._rescheduled(self._attach(mn_id, link, now, mac, handoff))

    def _attach(self, mn_id: str, link: str, now: float, mac: str | None, handoff: bool) -> list:
        entry = self.entries.get(mn_id)
        active = (BindingState.REGISTERING, BindingState.REGISTERED)
        if entry is not None and entry.link == link and entry.state in active:
            return []
        actions = []
        if entry is not None and entry.state is BindingState.REGISTERED:
            actions.append(MobileNodeDeregistered(_snapshot(entry)))  # its routes on the old link
        if entry is not None and entry.state in active:
            indicator = HandoffIndicatorValue.HANDOFF_BETWEEN_INTERFACES
        elif handoff:
            indicator = HandoffIndicatorValue.HANDOFF_BETWEEN_MAGS
        else:
            indicator = HandoffIndicatorValue.NEW_INTERFACE
        entry = BindingUpdateListEntry(
            mn_id, link, mac, handoff_indicator=indicator,
            retransmission=Retransmission(self.policy.initial_bindack_timeout, self.policy.max_bindack_timeout))
        self.entries[mn_id] = entry
        return actions + self._request(entry, now)

    def detach(self, mn_id: str, now: float) -> list:
        """The MN left: its routes go now, the LMA is told (RFC 5213 §6.9.1.3)."""
        entry = self.entries.get(mn_id)
        if entry is None or entry.state is BindingState.DEREGISTERING:
            return []
        self._touched.add(mn_id)
        actions = [MobileNodeDeregistered(_snapshot(entry))] if entry.state is BindingState.REGISTERED else []
        entry.state = BindingState.DEREGISTERING
        entry.refresh_at = entry.expires = None
        return self._rescheduled(actions + self._request(entry, now))

    def revoke(self, mn_id: str) -> list:
        """The LMA revoked the binding (RFC 5846): the MN is gone from here,
        and nothing is sent (the LMA asked)."""
        entry = self.entries.pop(mn_id, None)
        self._timers.discard(mn_id)
        self.changed.add(mn_id)
        self._reindex(mn_id)
        if entry is None or entry.state is not BindingState.REGISTERED:
            return []
        return [MobileNodeDeregistered(_snapshot(entry))]

    def receive(self, msg: Message, arrival: Arrival, now: float) -> list:
        """A PBA for the request outstanding for its MN; anything else is ignored."""
        return self._rescheduled(self._receive(msg, arrival, now))

    def _receive(self, msg: Message, arrival: Arrival, now: float) -> list:
        if not isinstance(msg, BindingAck) or not msg.flags & BAFlags.P or arrival.src != self.policy.lma_address:
            return []
        entry = self.entries.get(mn_id_of(find_option(msg, MobileNodeIdentifier)))
        if entry is None or not entry.outstanding:
            return []
        self._touched.add(entry.mn_id)
        if msg.status == Status.SEQUENCE_OUT_OF_WINDOW:
            # RFC 6275 §11.7.3: carry on from the LMA's last accepted number
            # (which is what this PBA carries), and send again at once.
            if sequence_greater(msg.sequence, self._sequence):
                self._sequence = msg.sequence
            return self._request(entry, now)
        stamp = find_option(msg, Timestamp)
        sent = next((t.sent for t in entry.outstanding if t.sequence == msg.sequence
                     and stamp is not None and t.timestamp == stamp.timestamp), None)
        if sent is None:
            return []  # no PBU of ours with that number and Timestamp: stale, or forged
        if entry.state is BindingState.DEREGISTERING:
            del self.entries[entry.mn_id]
            return []
        if msg.status == Status.TIMESTAMP_LOWER_THAN_PREV_ACCEPTED and not entry.restamped:
            # A handover race (docs/protocol.md): the old MAG's deregistration,
            # stamped a moment after our PBU, reached the LMA first. The LMA
            # keeps the newest Timestamp of the MN whichever MAG sent it, so a
            # PBU stamped now is newer: send it at once, instead of leaving the
            # MN without service until its next Router Solicitation. Once: a
            # clock behind the LMA's view does not turn this into a loop.
            entry.restamped = True
            return self._request(entry, now)
        if msg.status == Status.NOT_AUTHORIZED_FOR_IPV4_MOBILITY_SERVICE and not entry.ipv6_only:
            # RFC 5844 §3.1.2: the LMA refused the whole PBU for its IPv4 HoA
            # Request alone. The MN keeps its IPv6 service: ask again at once
            # without the request, for as long as this attachment lasts (a new
            # attachment asks for IPv4 again: the LMA's policy may have changed).
            # A refresh of a binding that held an IPv4 HoA keeps its routes until
            # the PBA, which drops the IPv4 HoA's (_registered sees it change).
            entry.ipv6_only = True
            return [IPv4ServiceDeclined(_snapshot(entry), msg.status)] + self._request(entry, now)
        if msg.status >= 128:
            return self._rejected(entry, msg.status, now=now)
        return self._registered(entry, msg, sent, now)

    def on_timer(self, now: float) -> list:
        """What is due at now: O(k log n) for k due of n entries."""
        actions = []
        for mn_id in self._timers.pop_due(now):
            entry = self.entries.get(mn_id)
            if entry is None:
                continue                          # forgotten behind our back (a test's lost state)
            self._touched.add(mn_id)
            actions += self._expire(entry, now)
            if entry.state is BindingState.FAILED and entry.retry_at is not None and entry.retry_at <= now:
                entry.state, entry.retry_at = BindingState.REGISTERING, None
                actions += self._request(entry, now)
            elif entry.refresh_at is not None and entry.refresh_at <= now:
                # RFC 5213 §6.9.1.2: extend the binding before it runs out.
                entry.refresh_at = None
                actions += self._request(entry, now)
            elif entry.retransmission.due is not None and entry.retransmission.due <= now:
                actions += self._retransmit(entry, now)
        return self._rescheduled(actions)

    def next_deadline(self) -> float | None:
        """O(1) amortised, whatever the number of MNs."""
        return self._timers.next()

    def _rescheduled(self, actions: list) -> list:
        """actions, once every entry the call changed is due at its new deadline."""
        for mn_id in self._touched:
            entry = self.entries.get(mn_id)
            self._timers.set(mn_id, None if entry is None else earliest(
                entry.retransmission.due, entry.refresh_at, entry.expires, entry.retry_at))
            self._reindex(mn_id)
        self.changed |= self._touched
        self._touched.clear()
        return actions

    # --- What MagNode asks, without a walk (issue 14) -----------------------------
    def on_link(self, link: str) -> list[str]:
        """The MNs attached on link (any state), in the order they came there."""
        return self._on_link.get(link)

    def registered_on(self, link: str, besides: str | None = None) -> int:
        """How many MNs are registered on link (besides that one)."""
        return self._registered_on.count(link) - self._registered_on.holds(link, besides)

    @property
    def any_registered(self) -> bool:
        return self._registered_count > 0

    def nat_refresh(self) -> int | None:
        """The shortest NAT refresh time (RFC 5555) of an MN registered behind a NAT."""
        return min(self._nat_refreshes, default=None)

    def _reindex(self, mn_id: str) -> None:
        entry = self.entries.get(mn_id)
        if entry is None:
            view = None
        else:
            registered = entry.state is BindingState.REGISTERED
            view = (entry.link, registered,
                    entry.nat_refresh if registered and entry.nat_detected and entry.nat_refresh else None)
        old = self._indexed.get(mn_id)
        if old == view:
            return
        if old is not None:
            link, registered, refresh = old
            if view is None or view[0] != link:
                self._on_link.discard(link, mn_id)        # (else it keeps its place on the link)
            if registered:
                self._registered_on.discard(link, mn_id)
                self._registered_count -= 1
            if refresh is not None:
                self._nat_refreshes[refresh] -= 1
                if not self._nat_refreshes[refresh]:
                    del self._nat_refreshes[refresh]
            del self._indexed[mn_id]
        if view is not None:
            link, registered, refresh = view
            self._on_link.add(link, mn_id)
            if registered:
                self._registered_on.add(link, mn_id)
                self._registered_count += 1
            if refresh is not None:
                self._nat_refreshes[refresh] = self._nat_refreshes.get(refresh, 0) + 1
            self._indexed[mn_id] = view

    def restore(self, entries: list[BindingUpdateListEntry]) -> None:
        """Take over the binding update list after a restart."""
        for entry in entries:
            self.entries[entry.mn_id] = entry
            self._touched.add(entry.mn_id)
            if sequence_greater(entry.sequence, self._sequence):
                self._sequence = entry.sequence  # the next PBU is newer than any restored one
        self._rescheduled([])

    # --- Binding update list --------------------------------------------------

    def _registered(self, entry: BindingUpdateListEntry, msg: BindingAck, sent: float, now: float) -> list:
        option = find_option(msg, HomeNetworkPrefix)
        hnp = _prefix(option)
        # The lifetime counts from when the PBU left (RFC 6275 §11.7.3), so
        # this view of the binding never outlives the LMA's.
        expires = sent + msg.lifetime_seconds
        if hnp is None or expires <= now:
            return []  # no usable prefix, or a binding already over: keep asking
        reply = find_option(msg, IPv4HomeAddressReply)
        ipv4_hoa = reply.address if reply is not None and reply.status == 0 else None
        unusable = self._unusable(hnp, ipv4_hoa)
        if unusable:
            return self._rejected(entry, msg.status, unusable, now=now)
        actions = []
        was_registered = entry.state is BindingState.REGISTERED
        changed = (hnp, ipv4_hoa) != (entry.hnp, entry.ipv4_hoa)
        if was_registered and changed:
            actions.append(MobileNodeDeregistered(_snapshot(entry)))  # routes of the old prefix
        nat = find_option(msg, NATDetection)
        entry.retransmission.stop()
        entry.outstanding.clear()
        entry.restamped = False
        entry.state, entry.rejections, entry.retry_at = BindingState.REGISTERED, 0, None
        entry.last_status = msg.status
        entry.hnp, entry.ipv4_hoa = hnp, ipv4_hoa
        entry.lifetime = msg.lifetime_seconds
        entry.expires = expires
        entry.refresh_at = sent + self.policy.refresh_fraction * msg.lifetime_seconds
        entry.registered = entry.registered or now
        entry.nat_detected = nat is not None
        entry.nat_refresh = nat.refresh_time if nat else None
        if not was_registered or changed:
            actions.append(MobileNodeRegistered(_snapshot(entry)))
        return actions

    def _unusable(self, hnp: IPv6Network, ipv4_hoa: IPv4Address | None) -> str:
        """Why the MAG will not install what the LMA granted, or "": a route
        for it must not swallow the MAG's own networks or its peers."""
        if hnp.prefixlen not in self.policy.hnp_lengths:
            return f"a /{hnp.prefixlen} home network prefix (mag.hnp_lengths allows {self.policy.hnp_lengths})"
        for net in self.policy.infrastructure:
            if net.version == 6 and hnp.overlaps(net):
                return f"home network prefix {hnp} overlaps {net}, an infrastructure network"
            if ipv4_hoa is not None and net.version == 4 and ipv4_hoa in net:
                return f"IPv4 home address {ipv4_hoa} lies in {net}, an infrastructure network"
        return ""

    def _rejected(self, entry: BindingUpdateListEntry, status: int, reason: str = "", *, now: float) -> list:
        routes_up = entry.state is BindingState.REGISTERED
        entry.retransmission.stop()
        entry.outstanding.clear()
        entry.state = BindingState.FAILED
        retry = self.policy.retry_after_rejection
        entry.retry_at = now + retry * 2 ** min(entry.rejections, 4) if retry else None
        entry.rejections += 1
        entry.last_status = status
        entry.refresh_at = entry.expires = None
        actions = [RegistrationRejected(_snapshot(entry), status, reason)]
        if routes_up:
            actions.append(MobileNodeDeregistered(_snapshot(entry)))
        return actions

    def _expire(self, entry: BindingUpdateListEntry, now: float) -> list:
        """A binding whose refreshes went unanswered: its routes go, and the
        MAG keeps trying to register the MN, which is still on its link."""
        if entry.state is not BindingState.REGISTERED or entry.expires > now:
            return []
        actions = [MobileNodeDeregistered(_snapshot(entry))]
        entry.state = BindingState.REGISTERING
        entry.hnp = entry.ipv4_hoa = None
        entry.expires = entry.refresh_at = None
        if entry.retransmission.due is None:
            actions += self._request(entry, now)
        return actions

    # --- Proxy Binding Updates ----------------------------------------------

    def _request(self, entry: BindingUpdateListEntry, now: float) -> list:
        """Start a new request: the first PBU and its retransmission timer."""
        entry.outstanding.clear()
        entry.retransmission.start(now)
        return [self._proxy_binding_update(entry, now)]

    def _retransmit(self, entry: BindingUpdateListEntry, now: float) -> list:
        """RFC 6275 §11.8: again, with a new sequence number, waiting twice as
        long each time up to the cap, and then at the cap for as long as it
        takes; a deregistration is given up after a few attempts."""
        if entry.state is BindingState.DEREGISTERING and entry.retransmission.attempts >= DEREGISTRATION_ATTEMPTS:
            del self.entries[entry.mn_id]
            return []
        entry.retransmission.backoff(now)
        return [self._proxy_binding_update(entry, now)]

    def _proxy_binding_update(self, entry: BindingUpdateListEntry, now: float) -> Send:
        """RFC 5213 §6.9.1.1-3, RFC 5844 §3.2: what the PBU carries follows
        from the entry's state."""
        lifetime = 0 if entry.state is BindingState.DEREGISTERING else self.policy.lifetime
        # A refresh or the deregistration: the MN has not moved (RFC 5213 §8.4).
        indicator = (entry.handoff_indicator if entry.state is BindingState.REGISTERING
                     else HandoffIndicatorValue.HANDOFF_STATE_NOT_CHANGED)
        hnp = entry.hnp or ALL_ZERO_PREFIX
        options = [
            MobileNodeIdentifier.from_nai(entry.mn_id),
            HomeNetworkPrefix(hnp.prefixlen, hnp.network_address),
            HandoffIndicator(indicator),
            AccessTechnologyType(self.policy.access_technology_type),
            self.stamper.stamp(now),
        ]
        if entry.ipv6_only:
            pass
        elif entry.ipv4_hoa is not None:
            options.append(IPv4HomeAddressRequest(entry.ipv4_hoa))
        elif self.policy.request_ipv4:
            options.append(IPv4HomeAddressRequest(ALL_ZERO_IPV4, prefix_length=0))
        if self.policy.ipv4_proxy_coa is not None:
            # Over IPv6 transport too: the LMA then knows our IPv4 proxy CoA and
            # names it in its RO answers (option 32 in the LRA, DESIGN §2).
            options.append(IPv4CareofAddress(self.policy.ipv4_proxy_coa))
        self._sequence = (self._sequence + 1) % 0x10000
        entry.sequence = self._sequence
        entry.outstanding.append(Transmission(entry.sequence, now, options[4].timestamp))
        del entry.outstanding[:-OUTSTANDING_TRANSMISSIONS]
        pbu = BindingUpdate(entry.sequence, BUFlags.A | BUFlags.H | BUFlags.P,
                            min(lifetime // 4, MAX_LIFETIME_UNITS), options)
        if not self.policy.ipv4_transport:
            return Send(pbu, self.policy.proxy_coa, self.policy.lma_address)
        return Send(pbu, self.policy.proxy_coa, self.policy.lma_address,
                    ipv4_dst=UdpEndpoint(self.policy.lma_ipv4, PMIP6_UDP_PORT), ipv4_src=self.policy.ipv4_proxy_coa)


def mn_id_of(option: MobileNodeIdentifier | None) -> str | None:
    """The NAI of an MN-ID option; None when there is none, or it is no UTF-8."""
    try:
        return option.nai if option is not None else None
    except UnicodeDecodeError:
        return None


def _prefix(option: HomeNetworkPrefix | None) -> IPv6Network | None:
    """The prefix the LMA assigned; None when it is missing, all zero or malformed."""
    if option is None or option.prefix.packed == bytes(16):
        return None
    try:
        return IPv6Network((option.prefix, option.prefix_length), strict=False)
    except ValueError:
        return None


def _snapshot(entry: BindingUpdateListEntry) -> BindingUpdateListEntry:
    """The entry as it is now, for an action (the list entry itself changes on)."""
    return copy.deepcopy(entry)
