"""What every protocol core takes in and gives back.

Input: a decoded message with its Arrival (how it reached us), or a timer
tick with the current time. Output: a list of actions. Times are wall-clock
seconds (time.time() in the daemons, any float in tests): the Timestamp
option (RFC 5213 §5.5) needs wall-clock time, and the cores never read a
clock themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from ..wire import Message

PMIP6_UDP_PORT = 5436


@dataclass(frozen=True)
class UdpEndpoint:
    """An IPv4 address and UDP port (RFC 5844 transport, or a NAT mapping)."""
    address: IPv4Address
    port: int = PMIP6_UDP_PORT


@dataclass(frozen=True)
class Arrival:
    """How a mobility message reached this node.

    src/dst are the IPv6 header around the Mobility Header. For IPv4
    transport (RFC 5844: IPv4/UDP/IPv6/MH) ipv4_src is the UDP sender as
    seen here (a NAT's mapping, when there is a NAT) and ipv4_dst our IPv4
    address it was sent to."""
    src: IPv6Address
    dst: IPv6Address
    ipv4_src: UdpEndpoint | None = None
    ipv4_dst: IPv4Address | None = None
    # The draft's fig. 2/3 layering, IPv4 (MN → CN) / IPv6 (proxy CoA → proxy
    # CoA) / MH: src/dst above are the IPv4 addresses (IPv4-mapped) and these
    # the IPv6 header's, over which the MH checksum runs.
    proxy_src: IPv6Address | None = None
    proxy_dst: IPv6Address | None = None
    home_path: bool = False             # it came inside an LMA tunnel (punted by XDP)

    @property
    def over_ipv4(self) -> bool:
        return self.ipv4_src is not None

    @property
    def checksum_src(self) -> IPv6Address:
        return self.proxy_src or self.src

    @property
    def checksum_dst(self) -> IPv6Address:
        return self.proxy_dst or self.dst

    def reply(self, message: Message, src: IPv6Address, dst: IPv6Address | None = None) -> Send:
        """message from src back to the sender (or to dst), by the same
        transport: over IPv4/UDP to the address and port it came from."""
        return Send(message, src, dst or self.src, ipv4_dst=self.ipv4_src, ipv4_src=self.ipv4_dst)


@dataclass(frozen=True)
class Send:
    """Send message with IPv6 source src and destination dst; over IPv4
    transport when ipv4_dst is set (then ipv4_src is our IPv4 address), or
    inside an IPv4 header of its own when wrap_ipv4 is set (fig. 3)."""
    message: Message
    src: IPv6Address
    dst: IPv6Address
    ipv4_dst: UdpEndpoint | None = None
    ipv4_src: IPv4Address | None = None
    # fig. 3: send natively as IPv4 (src, dst) / IPv6 (src, dst) / MH
    wrap_ipv4: tuple[IPv4Address, IPv4Address] | None = None


@dataclass
class Retransmission:
    """RFC 6275 §11.8 retransmission: first timeout, then doubling up to a
    cap (InitialBindackTimeoutFirstReg 1 s ... MAX_BINDACK_TIMEOUT 32 s).
    `due` is when to send again; None when nothing is outstanding."""
    initial: float = 1.0
    maximum: float = 32.0
    timeout: float = 0.0
    due: float | None = None
    attempts: int = 0

    def start(self, now: float) -> None:
        self.timeout = self.initial
        self.attempts = 1
        self.due = now + self.timeout

    def backoff(self, now: float) -> None:
        """After a retransmission: wait twice as long, up to the cap."""
        self.timeout = min(self.timeout * 2, self.maximum)
        self.attempts += 1
        self.due = now + self.timeout

    def stop(self) -> None:
        self.due = None


def earliest(*deadlines: float | None) -> float | None:
    """The soonest of some optional deadlines."""
    present = [d for d in deadlines if d is not None]
    return min(present) if present else None


def sequence_greater(sequence: int, last: int) -> bool:
    """RFC 6275 §9.5.1: a 16-bit Sequence # is greater than ``last`` when it is
    less than 2**15 ahead of it, modulo 2**16."""
    return 0 < (sequence - last) % 0x10000 < 0x8000
