"""Router Solicitations in, Router Advertisements out (RFC 4861), on the
MAG's access links: an RS names a new MN (RFC 5213 §6.9.1.1 attach
detection), and the RA carries its home network prefix for SLAAC and an MTU
that leaves room for the tunnel header (XDP cannot fragment)."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network

from ..transport import mac_text

ICMP6_RS, ICMP6_RA = 133, 134
ND_OPT_SOURCE_LINKADDR, ND_OPT_PREFIX_INFORMATION, ND_OPT_MTU = 1, 3, 5
ICMP6_FILTER = 1
IPV6_RECVPKTINFO, IPV6_PKTINFO = 49, 50
IPV6_RECVHOPLIMIT, IPV6_HOPLIMIT = 51, 52
ALL_NODES = IPv6Address("ff02::1")


@dataclass(frozen=True)
class RouterSolicitation:
    source: IPv6Address
    ifindex: int
    mac: str | None       # from the Source Link-Layer Address option


def parse_router_solicitation(data: bytes, source: IPv6Address, ifindex: int,
                              hop_limit: int | None) -> RouterSolicitation | None:
    """An RS per RFC 4861 §6.1.1, or None when it must be ignored."""
    if len(data) < 8 or data[0] != ICMP6_RS or data[1] != 0:
        return None
    if hop_limit is not None and hop_limit != 255:
        return None
    mac = None
    offset = 8
    while offset + 2 <= len(data):
        kind, length = data[offset], data[offset + 1] * 8
        if length == 0 or offset + length > len(data):
            return None
        if kind == ND_OPT_SOURCE_LINKADDR and length >= 8:
            mac = mac_text(data[offset + 2: offset + 8])
        offset += length
    if source == IPv6Address("::") and mac is not None:
        return None           # RFC 4861 §6.1.1: no SLLA from the unspecified address
    return RouterSolicitation(source, ifindex, mac)


def build_router_advertisement(prefixes: list[IPv6Network], mtu: int, *, router_lifetime: int = 1800,
                               valid_lifetime: int = 86400, preferred_lifetime: int = 14400,
                               mac: str | None = None) -> bytes:
    """An RA with a Prefix Information option per prefix (on-link,
    autonomous), an MTU option and our link-layer address. The kernel fills
    in the ICMPv6 checksum of a raw ICMPv6 socket."""
    ra = struct.pack("!BBHBBHII", ICMP6_RA, 0, 0, 64, 0, router_lifetime, 0, 0)
    for prefix in prefixes:
        ra += struct.pack("!BBBBIII16s", ND_OPT_PREFIX_INFORMATION, 4, prefix.prefixlen, 0xC0,
                          valid_lifetime, preferred_lifetime, 0, prefix.network_address.packed)
    ra += struct.pack("!BBHI", ND_OPT_MTU, 1, 0, mtu)
    if mac:
        ra += struct.pack("!BB6s", ND_OPT_SOURCE_LINKADDR, 1, bytes.fromhex(mac.replace(":", "")))
    return ra


class NdpSocket:
    """One raw ICMPv6 socket for all access links: RS in, RA out."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        # ICMP6_FILTER: a bitmap of types to BLOCK; block all but RS.
        blocked = [0xFFFFFFFF] * 8
        blocked[ICMP6_RS >> 5] &= ~(1 << (ICMP6_RS & 31))
        self.sock.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, struct.pack("=8I", *blocked))
        self.sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
        self.sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1)
        self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
        self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
        self.sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def receive(self) -> RouterSolicitation | None:
        try:
            data, ancdata, _flags, addr = self.sock.recvmsg(2048, 256)
        except BlockingIOError:
            return None
        ifindex, hop_limit = 0, None
        for level, kind, value in ancdata:
            if level == socket.IPPROTO_IPV6 and kind == IPV6_PKTINFO and len(value) >= 20:
                ifindex = struct.unpack_from("=I", value, 16)[0]
            elif level == socket.IPPROTO_IPV6 and kind == IPV6_HOPLIMIT and len(value) >= 4:
                hop_limit = struct.unpack_from("=i", value)[0]
        source = IPv6Address(addr[0].split("%")[0])
        return parse_router_solicitation(data, source, ifindex, hop_limit)

    def send_advertisement(self, ra: bytes, ifindex: int, destination: IPv6Address = ALL_NODES) -> None:
        self.sock.sendto(ra, (str(destination), 0, 0, ifindex))

    def close(self) -> None:
        self.sock.close()
