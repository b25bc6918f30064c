"""scapy builders for the fixture tests: what goes in, what must come out."""

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


def outer6(src, dst, inner):
    nh = 41 if inner.version == 6 else 4
    return IPv6(src=src, dst=dst, nh=nh, hlim=64, tc=0, fl=0) / inner


def outer4(src, dst, inner, udp_ports=None):
    if udp_ports:
        return (IP(src=src, dst=dst, ttl=64, id=0, flags="DF", proto=17)
                / UDP(sport=udp_ports[0], dport=udp_ports[1], chksum=0) / inner)
    proto = 41 if inner.version == 6 else 4
    return IP(src=src, dst=dst, ttl=64, id=0, flags="DF", proto=proto) / inner


def toward_next_hop(src_mac, packet) -> bytes:
    return bytes(Ether(src=src_mac, dst=NEXT_HOP_MAC) / packet)


def from_next_hop(packet, dst_mac="02:00:00:00:bb:01") -> bytes:
    return bytes(Ether(src=NEXT_HOP_MAC, dst=dst_mac) / packet)
