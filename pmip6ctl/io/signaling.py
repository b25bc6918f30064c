"""Mobility Header transports.

MhSocket: raw IPv6 socket for protocol 135 (RFC 6275). We compute and check
the checksum ourselves (IPV6_CHECKSUM off) so that a bad one is counted by
the daemon instead of vanishing in the kernel.

UdpSignalingSocket: RFC 5844 IPv4 transport, IPv6/MH inside IPv4/UDP port
5436; the IPv6 header is ours to build and to parse.

Raw4Signaling: IPv4 protocol 41 carrying IPv6/MH addressed to this node.

Each hands the daemon (octets of the MH, Arrival); the first two take a Send.
"""

from __future__ import annotations

import functools
import socket
import struct
from ipaddress import IPv4Address, IPv6Address

from ..transport import IPPROTO_MH, PMIP6_UDP_PORT, Arrival, Send, UdpEndpoint
from ..wire import encode

IPV6_CHECKSUM = 7
IPV6_RECVPKTINFO = 49
IPV6_PKTINFO = 50
IP_PKTINFO = 8                             # Linux; the socket module lacks it
IN6_PKTINFO = struct.Struct("=16sI")          # struct in6_pktinfo
_IPV6_HEADER = struct.Struct("!IHBB16s16s")


_ANY = IPv6Address("::")


@functools.lru_cache(maxsize=4096)
def _address_of(text: str) -> IPv6Address:
    """A sender's address from recvmsg's text, parsed once per sender (the
    signaling peers are few; an LMA hears each MAG thousands of times a second)."""
    return IPv6Address(text.split("%")[0])


@functools.lru_cache(maxsize=4096)
def _text_of(address: IPv6Address) -> str:
    return str(address)


class MhSocket:
    def __init__(self):
        self.sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, IPPROTO_MH)
        self.sock.setsockopt(socket.IPPROTO_IPV6, IPV6_CHECKSUM, -1)
        self.sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
        self.sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def receive(self) -> tuple[bytes, Arrival] | None:
        try:
            data, ancdata, _flags, addr = self.sock.recvmsg(65535, socket.CMSG_SPACE(IN6_PKTINFO.size))
        except BlockingIOError:
            return None
        dst = _ANY
        for level, kind, value in ancdata:
            if level == socket.IPPROTO_IPV6 and kind == IPV6_PKTINFO and len(value) >= IN6_PKTINFO.size:
                dst = IPv6Address(IN6_PKTINFO.unpack_from(value)[0])
        return data, Arrival(src=_address_of(addr[0]), dst=dst)

    def send(self, send: Send) -> None:
        payload = encode(send.message, send.src, send.dst)
        pktinfo = IN6_PKTINFO.pack(send.src.packed, 0)
        self.sock.sendmsg([payload], [(socket.IPPROTO_IPV6, IPV6_PKTINFO, pktinfo)], 0, (_text_of(send.dst), 0))

    def close(self) -> None:
        self.sock.close()


def ipv6_packet(src: IPv6Address, dst: IPv6Address, payload: bytes, next_header: int = IPPROTO_MH,
                hop_limit: int = 64) -> bytes:
    return _IPV6_HEADER.pack(6 << 28, len(payload), next_header, hop_limit, src.packed, dst.packed) + payload


def parse_ipv6_packet(packet: bytes) -> tuple[IPv6Address, IPv6Address, int, bytes]:
    """(src, dst, next header, payload) of an IPv6 packet; ValueError if it is none."""
    if len(packet) < _IPV6_HEADER.size:
        raise ValueError(f"{len(packet)} octets cannot hold an IPv6 header")
    first, length, next_header, _hlim, src, dst = _IPV6_HEADER.unpack_from(packet)
    if first >> 28 != 6:
        raise ValueError(f"IP version {first >> 28}, expected 6")
    payload = packet[_IPV6_HEADER.size:]
    if length > len(payload):
        raise ValueError(f"IPv6 payload length {length} exceeds the {len(payload)} octets received")
    return IPv6Address(src), IPv6Address(dst), next_header, payload[:length]


class UdpSignalingSocket:
    """RFC 5844 §4: the MH travels as IPv6/MH in UDP 5436 over IPv4."""

    def __init__(self, address: IPv4Address | None = None, port: int = PMIP6_UDP_PORT):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        self.sock.bind((str(address) if address else "0.0.0.0", port))
        self.sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def receive(self) -> tuple[bytes, Arrival] | None:
        """The MH octets and their Arrival; raises ValueError when the
        datagram is not IPv6/MH (the daemon counts it)."""
        try:
            data, ancdata, _flags, (host, port) = self.sock.recvmsg(65535, socket.CMSG_SPACE(12))
        except BlockingIOError:
            return None
        local = None
        for level, kind, value in ancdata:
            if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(value) >= 12:
                local = IPv4Address(value[8:12])          # ipi_addr
        src, dst, next_header, payload = parse_ipv6_packet(data)
        if next_header != IPPROTO_MH:
            raise ValueError(f"next header {next_header} in UDP {PMIP6_UDP_PORT}, expected a Mobility Header")
        return payload, Arrival(src=src, dst=dst, ipv4_src=UdpEndpoint(IPv4Address(host), port), ipv4_dst=local)

    def send(self, send: Send) -> None:
        payload = encode(send.message, send.src, send.dst)
        packet = ipv6_packet(send.src, send.dst, payload)
        self.sock.sendto(packet, (str(send.ipv4_dst.address), send.ipv4_dst.port))

    def close(self) -> None:
        self.sock.close()


class Raw4Signaling:
    """IPv4 protocol 41 carrying IPv6/MH for this node: what the LMA's IPv4
    tunnel delivers to a MAG's own proxy CoA (a CoT over IPv4 transport,
    draft §2.1.1.2). The XDP program passes such frames to the stack, and
    a raw socket is the only way in without a sit device."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, 41)
        self.sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def receive(self) -> tuple[bytes, Arrival] | None:
        while True:
            try:
                packet = self.sock.recv(65535)
            except BlockingIOError:
                return None
            try:
                outer_src, _, _, inner = split_ipv4(packet)
                src, dst, next_header, mh = parse_ipv6_packet(inner)
            except ValueError:
                continue                  # tunnelled data the kernel was handed: not ours
            if next_header == IPPROTO_MH:
                return mh, Arrival(src=src, dst=dst, home_path=True, tunnel_src=outer_src)

    def close(self) -> None:
        self.sock.close()


def split_ipv4(packet: bytes) -> tuple[IPv4Address, IPv4Address, int, bytes]:
    """An IPv4 packet's source, destination, protocol and payload; ValueError if malformed."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        raise ValueError("not an IPv4 header")
    ihl = (packet[0] & 0x0F) * 4
    total = struct.unpack_from("!H", packet, 2)[0]
    if ihl < 20 or total < ihl or total > len(packet):
        raise ValueError("inconsistent IPv4 lengths")
    return IPv4Address(packet[12:16]), IPv4Address(packet[16:20]), packet[9], packet[ihl:total]
