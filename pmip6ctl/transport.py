"""How mobility messages and tunnelled packets travel: endpoints, how a
message arrived (Arrival), what to send and how (Send, SendHomePath), and
the tunnels the data plane pushes (Tunnel, Encap).

Neutral ground between the layers: protocol/ decides what to send, io/
moves the bytes, dataplane/ writes tunnels into maps; each imports this
module and none imports another through it. The numbers C and Python share
(the UDP port, the MH protocol, the outer header sizes) come from
bpf/constants.h through defs.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from . import defs
from .actions import Command
from .wire import Message

IPAddress = IPv4Address | IPv6Address

PMIP6_UDP_PORT = defs.constants()["PMIP6_UDP_PORT"]     # RFC 5844 IPv4 transport, RFC 5555 NAT traversal
IPPROTO_MH = defs.constants()["IPPROTO_MH"]             # RFC 6275 §6.1


class Encap(enum.IntEnum):
    """A tunnel's outer headers (struct tunnel.type)."""
    IP6 = defs.constants()["ENCAP_IP6"]
    IP4 = defs.constants()["ENCAP_IP4"]
    UDP4 = defs.constants()["ENCAP_UDP4"]

    @property
    def outer_len(self) -> int:
        """Octets the outer headers take (OUTER_*_LEN)."""
        return defs.constants()[{Encap.IP6: "OUTER_IP6_LEN", Encap.IP4: "OUTER_IP4_LEN",
                                 Encap.UDP4: "OUTER_UDP4_LEN"}[self]]


@dataclass(frozen=True)
class Tunnel:
    """Outer headers toward one peer. For UDP4, sport/dport are host-order
    ports (dport is the peer's, or its NAT mapping's)."""
    encap: Encap
    local: IPAddress
    remote: IPAddress
    sport: int = 0
    dport: int = 0

    def __post_init__(self):
        local, remote = _address(self.local), _address(self.remote)
        object.__setattr__(self, "local", local)
        object.__setattr__(self, "remote", remote)
        want = 6 if self.encap == Encap.IP6 else 4
        if local.version != want or remote.version != want:
            raise ValueError(f"{self.encap.name} tunnel needs IPv{want} endpoints, got {local} -> {remote}")


def mac_text(octets: bytes) -> str:
    """A link-layer address as the kernel and our configs write it: 02:00:00:00:01:10."""
    return ":".join(f"{b:02x}" for b in octets[:6])


def _address(value) -> IPAddress:
    return value if isinstance(value, (IPv4Address, IPv6Address)) else ipaddress.ip_address(value)


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
    tunnel_src: IPAddress | None = None  # the outer source of the tunnel it came in

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
class Send(Command):
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


@dataclass(frozen=True)
class SendHomePath(Command):
    """Send message from src to dst along the home path: inside the tunnel
    to the LMA that anchors `anchor` (default: src), DESIGN §3. The HoTI and
    HoT go this way so that RFC 6275's home-address test keeps its meaning.
    The RO cores name the anchor; the node core, which knows the MN's
    binding, fills in the tunnel before the daemon sees it."""
    message: Message
    src: IPv6Address
    dst: IPv6Address
    anchor: IPAddress | None = None
    # fig. 2: IPv4 (MN → CN) / IPv6 (src → dst, the proxy CoAs) / MH
    wrap_ipv4: tuple[IPv4Address, IPv4Address] | None = None
    tunnel: Tunnel | None = None

    @property
    def anchored(self) -> IPAddress:
        """The address whose LMA tunnel carries it."""
        if self.anchor is not None:
            return self.anchor
        return self.src.ipv4_mapped or self.src
