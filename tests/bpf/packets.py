"""scapy builders for the fixture tests: what goes in, what must come out."""

import struct

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import Ether

from .conftest import MN_MAC, NEXT_HOP_MAC

ACCESS_MAC = "02:00:00:00:aa:01"   # what the MN believes is the MAG


def from_mn(inner) -> bytes:
    return bytes(Ether(src=MN_MAC, dst=ACCESS_MAC) / inner)


def ping6(src, dst, hlim=64):
    return IPv6(src=src, dst=dst, hlim=hlim) / ICMPv6EchoRequest(id=7, seq=1, data=b"pmip6" * 4)


def ping4(src, dst, ttl=64):
    return IP(src=src, dst=dst, ttl=ttl) / ICMP(id=7, seq=1) / (b"pmip6" * 4)


def tcp6(src, dst):
    return IPv6(src=src, dst=dst) / TCP(sport=40000, dport=5201, flags="S")


def hop(inner):
    """The inner packet after one router hop (hop limit / TTL minus one)."""
    copy = inner.copy()
    if copy.haslayer(IPv6) and copy.version == 6:
        copy.hlim -= 1
    else:
        copy.ttl -= 1
        del copy.chksum
    return IPv6(bytes(copy)) if copy.version == 6 else IP(bytes(copy))


def _word(raw: bytes, at: int = 0) -> int:
    """Four octets as the BPF program loads them (little-endian host)."""
    return struct.unpack_from("<I", raw, at)[0]


def flow_label(inner) -> int:
    """RFC 6438 as bpf/encap.h pmip_flow_label() documents it: a hash of the
    inner addresses, protocol, ports and (IPv6) flow label; never 0."""
    raw = bytes(inner)
    if inner.version == 6:
        proto, src, dst, l4 = raw[6], raw[8:24], raw[24:40], 40
        h = proto ^ (_word(raw) & _word(bytes.fromhex("000fffff")))
        later_fragment = False
    else:
        proto, src, dst, l4 = raw[9], b"\0" * 10 + b"\xff\xff" + raw[12:16], b"\0" * 10 + b"\xff\xff" + raw[16:20], \
            (raw[0] & 15) * 4
        h = proto
        later_fragment = struct.unpack_from("!H", raw, 6)[0] & 0x1FFF != 0
    ports = _word(raw, l4) if proto in (6, 17, 132) and not later_fragment else 0
    s = d = 0
    for i in range(0, 16, 4):
        s, d = s ^ _word(src, i), d ^ _word(dst, i)
    m = 0xFFFFFFFF
    h = ((h ^ s) * 0x9E3779B1) & m
    h = ((h ^ (h >> 15) ^ d) * 0x85EBCA6B) & m
    h = ((h ^ (h >> 13) ^ ports) * 0xC2B2AE35) & m
    h = (h ^ (h >> 16)) & 0xFFFFF
    return h or 1


def traffic_class(inner) -> int:
    return inner.tc if inner.version == 6 else inner.tos


def outer6(src, dst, inner):
    """The outer IPv6 header: DSCP and ECN copied (RFC 6040 normal mode),
    the flow label from the inner flow (RFC 6438)."""
    nh = 41 if inner.version == 6 else 4
    return IPv6(src=src, dst=dst, nh=nh, hlim=64, tc=traffic_class(inner), fl=flow_label(inner)) / inner


def outer4(src, dst, inner, udp_ports=None):
    tos = traffic_class(inner)
    if udp_ports:
        return (IP(src=src, dst=dst, ttl=64, id=0, flags="DF", proto=17, tos=tos)
                / UDP(sport=udp_ports[0], dport=udp_ports[1], chksum=0) / inner)
    proto = 41 if inner.version == 6 else 4
    return IP(src=src, dst=dst, ttl=64, id=0, flags="DF", proto=proto, tos=tos) / inner


def toward_next_hop(src_mac, packet) -> bytes:
    return bytes(Ether(src=src_mac, dst=NEXT_HOP_MAC) / packet)


def from_next_hop(packet, dst_mac="02:00:00:00:bb:01") -> bytes:
    return bytes(Ether(src=NEXT_HOP_MAC, dst=dst_mac) / packet)
