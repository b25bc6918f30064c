"""The new MAG's handover buffer, sans-I/O (RFC 5949 §4: the new MAG
buffers what the MN sends until the binding is up; here without the
Fast Handover signaling: the MN, whose link never went down, sends on at
once and the new MAG holds its packets while its PBU is in flight).

The rule:

- an uplink packet from an MN whose PBU is in flight at this MAG (state
  registering, on the link it attached on) is held, oldest first, within a
  per-MN and an overall limit and for at most `max_age` seconds;
- the PBA that registers the MN releases them in order into the MN's
  tunnel, but only those whose source the PBA granted (its home network
  prefix or IPv4 home address): anti-spoofing as in XDP, so nothing held
  for one MN leaves with another's, or an unbound, source;
- a rejected, abandoned or withdrawn registration drops them; anything that
  does not fit, waited too long, or came from no attaching MN is dropped.

Every drop is a `HeldDropped` whose reason is the metric label. The node
(mag.py) decides who is attaching; this module only keeps the packets.

The LMA keeps the same kind of buffer for the other direction (lma.py's
downlink hold: what arrives for an MN between two MAGs waits for the next
binding): `HoldBuffer(direction="downlink")` matches a packet's destination
instead of its source and counts under its own table and settings.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from ..actions import Command, Notification
from ..transport import IPPROTO_MH, Tunnel
from .common import Deadlines
from .limits import Bounded


class DropReason(enum.StrEnum):
    """Why a held (or punted) packet was dropped: the metric label."""
    FULL = "full"                              # the MN's share, or the whole buffer, is full
    AGED = "aged"                              # held longer than mag.buffer_seconds
    REGISTRATION_FAILED = "registration_failed"  # the LMA refused, or the MN left, before a PBA
    NOT_ATTACHING = "not_attaching"            # no PBU in flight for the sender here (unknown MAC, other link)
    WRONG_SOURCE = "wrong_source"              # its source is not in what the PBA granted
    MN_SIGNALING = "mn_signaling"              # a Mobility Header from an MN: never forwarded (as XDP)
    MALFORMED = "malformed"                    # not an IPv4 or IPv6 packet
    DISABLED = "disabled"                      # mag.buffer_uplink (lma.hold_downlink) is off
    # the LMA's downlink hold
    BINDING_DELETED = "binding_deleted"        # no MAG registered the MN before its entry was deleted
    WRONG_DESTINATION = "wrong_destination"    # its destination is not in what the new binding holds
    NOT_HELD = "not_held"                      # punted for an address no held or bound MN has

    @property
    def text(self) -> str:
        return self.value.replace("_", " ")


@dataclass(frozen=True)
class ReleaseHeld(Command):
    """Send these IP packets, oldest first, into the MN's tunnel (the MAG's
    toward the LMA; the LMA's toward the MN's new MAG)."""
    mn_id: str
    packets: tuple[bytes, ...]
    tunnel: Tunnel


@dataclass(frozen=True)
class PacketsHeld(Notification):
    """Packets taken into the buffer (counted: pmip6_handover_held_total)."""
    mn_id: str
    count: int = 1


@dataclass(frozen=True)
class HeldDropped(Notification):
    reason: DropReason
    count: int
    mn_id: str | None = None


@dataclass
class BufferPolicy:
    enabled: bool = True
    per_mn: int = 256              # packets held for one MN (mag.buffer_packets)
    total: int = 4096              # packets held for all MNs (mag.buffer_total)
    max_age: float = 2.0           # seconds a packet may wait (mag.buffer_seconds)

    def settings(self) -> dict:
        """What `pmip6ctl mn buffer` / `mn hold` show and the *_setting gauges export."""
        return {"enabled": self.enabled, "packets_per_mn": self.per_mn, "packets_total": self.total,
                "seconds": self.max_age}


def _address_at(packet: bytes, v6: int, v4: int) -> IPv6Address | IPv4Address | None:
    """The address at octet v6 of an IPv6 header or v4 of an IPv4 header."""
    if len(packet) >= 40 and packet[0] >> 4 == 6:
        return IPv6Address(packet[v6:v6 + 16])
    if len(packet) >= 20 and packet[0] >> 4 == 4:
        return IPv4Address(packet[v4:v4 + 4])
    return None


def source_of(packet: bytes) -> IPv6Address | IPv4Address | None:
    """The IP source of a packet, or None when it is neither IPv6 nor IPv4."""
    return _address_at(packet, 8, 12)


def destination_of(packet: bytes) -> IPv6Address | IPv4Address | None:
    """The IP destination of a packet, or None when it is neither IPv6 nor IPv4."""
    return _address_at(packet, 24, 16)


def granted(hnp: IPv6Network, ipv4_hoa: IPv4Address | None) -> list[IPv6Network | IPv4Network]:
    """What a binding gives an MN: its home network prefix, and its IPv4
    home address if it has one (what `release` lets through)."""
    return [hnp] + ([IPv4Network(ipv4_hoa)] if ipv4_hoa is not None else [])


def _within(address, granted) -> bool:
    return address is not None and any(address.version == net.version and address in net for net in granted)


def is_mobility_header(packet: bytes) -> bool:
    return len(packet) >= 40 and packet[0] >> 4 == 6 and packet[6] == IPPROTO_MH


@dataclass
class HoldBuffer:
    """Packets of MNs between two states, per MN, oldest first. direction
    "uplink" (the MAG's) matches sources and never forwards an MN's own
    mobility signaling; "downlink" (the LMA's) matches destinations."""
    policy: BufferPolicy = field(default_factory=BufferPolicy)
    direction: str = "uplink"
    table: str = "handover_buffer"
    setting: str = "mag.buffer_total"

    def __post_init__(self):
        if self.direction not in ("uplink", "downlink"):
            raise ValueError(f"direction {self.direction!r}")
        self._address_of = source_of if self.direction == "uplink" else destination_of
        self._wrong = DropReason.WRONG_SOURCE if self.direction == "uplink" else DropReason.WRONG_DESTINATION
        self.held: dict[str, deque[tuple[float, bytes]]] = {}
        self.count = 0
        self.refused: dict[tuple[str, str], int] = {}          # (table, reason) -> packets not taken
        self._ages = Deadlines()                                # MN -> when its oldest packet ages out

    def hold(self, mn_id: str, packet: bytes, now: float) -> list:
        if not self.policy.enabled:
            return [HeldDropped(DropReason.DISABLED, 1, mn_id)]
        if self._address_of(packet) is None:
            return [HeldDropped(DropReason.MALFORMED, 1, mn_id)]
        if self.direction == "uplink" and is_mobility_header(packet):
            return [HeldDropped(DropReason.MN_SIGNALING, 1, mn_id)]
        queue = self.held.get(mn_id)
        if self.count >= self.policy.total or (queue is not None and len(queue) >= self.policy.per_mn):
            key = (self.table, DropReason.FULL.value)
            self.refused[key] = self.refused.get(key, 0) + 1
            return [HeldDropped(DropReason.FULL, 1, mn_id)]
        if queue is None:
            queue = self.held[mn_id] = deque()
            self._ages.set(mn_id, now + self.policy.max_age)
        queue.append((now, packet))
        self.count += 1
        return [PacketsHeld(mn_id)]

    def release(self, mn_id: str, granted: list[IPv6Network | IPv4Network], tunnel: Tunnel, now: float) -> list:
        """The binding is up: the MN's packets whose source (downlink:
        destination) is in granted go, in order."""
        queue = self._take(mn_id)
        if not queue:
            return []
        fresh = [p for t, p in queue if now - t <= self.policy.max_age]
        good = [p for p in fresh if _within(self._address_of(p), granted)]
        actions: list = [ReleaseHeld(mn_id, tuple(good), tunnel)] if good else []
        if len(queue) - len(fresh):
            actions.append(HeldDropped(DropReason.AGED, len(queue) - len(fresh), mn_id))
        if len(fresh) - len(good):
            actions.append(HeldDropped(self._wrong, len(fresh) - len(good), mn_id))
        return actions

    def discard(self, mn_id: str, reason: DropReason = DropReason.REGISTRATION_FAILED) -> list:
        queue = self._take(mn_id)
        return [HeldDropped(reason, len(queue), mn_id)] if queue else []

    def on_timer(self, now: float) -> list:
        """Packets older than max_age go; an MN's queue is next due at its new oldest."""
        actions = []
        for mn_id in self._ages.pop_due(now):
            queue = self.held.get(mn_id)
            if not queue:
                continue
            aged = 0
            while queue and now - queue[0][0] >= self.policy.max_age:
                queue.popleft()
                aged += 1
            self.count -= aged
            if queue:
                self._ages.set(mn_id, queue[0][0] + self.policy.max_age)
            else:
                del self.held[mn_id]
            if aged:
                actions.append(HeldDropped(DropReason.AGED, aged, mn_id))
        return actions

    def next_deadline(self) -> float | None:
        return self._ages.next()

    def held_for(self, mn_id: str) -> int:
        return len(self.held.get(mn_id, ()))

    def bounded(self) -> Bounded:
        return Bounded(self.table, self.setting, self.count, self.policy.total,
                       refused={reason: n for (_, reason), n in self.refused.items()})

    def _take(self, mn_id: str) -> deque:
        queue = self.held.pop(mn_id, deque())
        self._ages.discard(mn_id)
        self.count -= len(queue)
        return queue


def UplinkBuffer(policy: BufferPolicy | None = None) -> HoldBuffer:
    """The MAG's handover buffer (uplink, matched by source)."""
    return HoldBuffer(policy or BufferPolicy())


def DownlinkHold(policy: BufferPolicy | None = None) -> HoldBuffer:
    """The LMA's downlink hold (matched by destination)."""
    return HoldBuffer(policy or BufferPolicy(), "downlink", "downlink_hold", "lma.hold_total")
