"""Builders for the protocol core tests: policies in documentation address
space, a PBU builder, and a "network" that passes every message through
wire.encode and wire.decode (checksum included) on its way between cores."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from pmip6ctl.protocol.common import Arrival, Send, UdpEndpoint
from pmip6ctl.protocol.lma import LmaPolicy, LocalMobilityAnchor
from pmip6ctl.protocol.mag import MagPolicy, MobileAccessGateway
from pmip6ctl.protocol.pools import AddressPool, PrefixPool
from pmip6ctl.wire import (AccessTechnologyType, BindingUpdate, BUFlags, HandoffIndicator, HomeNetworkPrefix,
                           IPv4HomeAddressRequest, MobileNodeIdentifier, Timestamp, decode, encode)

T0 = 1_700_000_000.0  # the fake clock starts here (wall-clock seconds)

LMA = IPv6Address("2001:db8:ffff::1")
LMA4 = IPv4Address("192.0.2.1")
MAG1 = IPv6Address("2001:db8:a1::1")
MAG1_4 = IPv4Address("198.51.100.1")
MAG2 = IPv6Address("2001:db8:a2::1")
MAG2_4 = IPv4Address("198.51.100.2")
NAT = UdpEndpoint(IPv4Address("203.0.113.7"), 40001)  # MAG1 as the LMA sees it behind a NAT
HNP_POOL = IPv6Network("2001:db8:100::/56")
IPV4_POOL = IPv4Network("192.0.2.128/25")
FIRST_HNP = IPv6Network("2001:db8:100::/64")
SECOND_HNP = IPv6Network("2001:db8:100:1::/64")
FIRST_HOA = IPv4Address("192.0.2.129")
MN1 = "mn1@example.org"
MN2 = "mn2@example.org"


def lma_policy(**changes) -> LmaPolicy:
    fields = dict(address=LMA, ipv4_address=LMA4, hnp_pool=PrefixPool(HNP_POOL),
                  ipv4_pool=AddressPool(IPV4_POOL))
    return LmaPolicy(**(fields | changes))


def make_lma(**changes) -> LocalMobilityAnchor:
    return LocalMobilityAnchor(lma_policy(**changes))


def mag_policy(proxy_coa: IPv6Address = MAG1, ipv4_proxy_coa: IPv4Address = MAG1_4, **changes) -> MagPolicy:
    fields = dict(proxy_coa=proxy_coa, ipv4_proxy_coa=ipv4_proxy_coa, lma_address=LMA, lma_ipv4=LMA4)
    return MagPolicy(**(fields | changes))


def make_mag(proxy_coa: IPv6Address = MAG1, ipv4_proxy_coa: IPv4Address = MAG1_4, **changes) -> MobileAccessGateway:
    return MobileAccessGateway(mag_policy(proxy_coa, ipv4_proxy_coa, **changes))


def pbu(mn_id: str | None = MN1, now: float = T0, *, sequence: int = 1, lifetime: int = 3600,
        hnp: IPv6Network = IPv6Network("::/0"), hi: int = 1, att: int = 3, timestamp: float | None = None,
        ipv4: IPv4Address | None = None, flags: BUFlags = BUFlags.A | BUFlags.H | BUFlags.P,
        omit: tuple[type, ...] = (), extra: tuple = ()) -> BindingUpdate:
    """A PBU as RFC 5213 §6.9.1.1 builds it; `omit` drops options by class,
    `extra` adds some at the end, `timestamp` defaults to `now`."""
    options = [
        MobileNodeIdentifier.from_nai(mn_id) if mn_id is not None else None,
        HomeNetworkPrefix(hnp.prefixlen, hnp.network_address),
        HandoffIndicator(hi),
        AccessTechnologyType(att),
        Timestamp.from_unix(now if timestamp is None else timestamp),
        IPv4HomeAddressRequest(ipv4) if ipv4 is not None else None,
    ]
    options = [o for o in options if o is not None and not isinstance(o, omit)] + list(extra)
    return BindingUpdate(sequence, flags, lifetime // 4, options)


def carry(send: Send, nat: UdpEndpoint | None = None):
    """What the receiver of `send` gets: the message encoded and decoded with
    its checksum, and its Arrival (over IPv4 from `nat` when given)."""
    message = decode(encode(send.message, send.src, send.dst), send.src, send.dst)
    if send.ipv4_dst is None:
        return message, Arrival(send.src, send.dst)
    return message, Arrival(send.src, send.dst, ipv4_src=nat or UdpEndpoint(send.ipv4_src),
                            ipv4_dst=send.ipv4_dst.address)


def to_lma(lma: LocalMobilityAnchor, message, now: float = T0, src: IPv6Address = MAG1, **arrival) -> list:
    """Hand a message built in the test to the LMA, as if MAG `src` sent it."""
    return lma.receive(*carry(Send(message, src, LMA, **arrival)), now)


def sends(actions) -> list[Send]:
    return [a for a in actions if isinstance(a, Send)]


def of_type(actions, cls) -> list:
    return [a for a in actions if isinstance(a, cls)]


def only_send(actions) -> Send:
    (send,) = sends(actions)
    return send


def exchange(mag: MobileAccessGateway, lma: LocalMobilityAnchor, actions, now: float = T0,
             nat: UdpEndpoint | None = None) -> tuple[list, list]:
    """Deliver the MAG's PBUs in `actions` to the LMA and its answers back.
    Returns (the LMA's actions, the MAG's actions)."""
    at_lma, at_mag = [], []
    for send in sends(actions):
        answer = lma.receive(*carry(send, nat), now)
        at_lma += answer
        for reply in sends(answer):
            at_mag += mag.receive(*carry(reply), now)
    return at_lma, at_mag


def run_until(cores, until: float) -> list:
    """Fire every timer of `cores` up to `until`, in order, as a daemon would.
    Returns (time, core, actions) for each firing that did something."""
    fired = []
    for _ in range(100_000):  # a deadline that never moves is a bug, not a hang
        due = [(d, i) for i, core in enumerate(cores) if (d := core.next_deadline()) is not None and d <= until]
        if not due:
            return fired
        deadline, i = min(due)
        actions = cores[i].on_timer(deadline)
        if actions:
            fired.append((deadline, cores[i], actions))
    raise AssertionError("timers keep firing without time passing")
