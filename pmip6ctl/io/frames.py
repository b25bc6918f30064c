"""Frames the data plane punts to the daemon, and the packets the daemon
sends into tunnels itself (the HoTI and HoT travel the home path, inside
the LMA tunnel: DESIGN §3). Pure functions on bytes."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from ..transport import IPPROTO_MH, Arrival
from ..wire.checksum import internet_checksum
from .signaling import ipv6_packet, parse_ipv6_packet, split_ipv4

ETH_P_IP, ETH_P_IPV6 = 0x0800, 0x86DD
IPPROTO_IPIP, IPPROTO_IPV6, IPPROTO_UDP = 4, 41, 17


@dataclass(frozen=True)
class PuntedMessage:
    """A mobility message found inside a tunnelled frame."""
    mh: bytes
    src: IPv6Address            # the IPv6 header around the MH
    dst: IPv6Address
    outer_src: IPv6Address | IPv4Address
    outer_port: int | None      # UDP source port when the tunnel was IPv4/UDP
    ipv4_wrapper: tuple[IPv4Address, IPv4Address] | None = None   # fig. 2/3: (src, dst) of the IPv4 header inside


def parse_punted_frame(frame: bytes) -> PuntedMessage:
    """Ethernet / outer IPv6 or IPv4 [/ UDP 5436] / [IPv4 /] IPv6 / MH.
    Raises ValueError for anything else."""
    if len(frame) < 14:
        raise ValueError("frame shorter than an Ethernet header")
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    packet = frame[14:]
    port = None
    if ethertype == ETH_P_IPV6:
        outer_src, _dst, proto, inner = parse_ipv6_packet(packet)
    elif ethertype == ETH_P_IP:
        outer_src, _dst, proto, inner = split_ipv4(packet)
        if proto == IPPROTO_UDP:
            if len(inner) < 8:
                raise ValueError("truncated UDP header")
            port = struct.unpack_from("!H", inner, 0)[0]
            inner = inner[8:]
            proto = IPPROTO_IPV6 if inner[:1] and inner[0] >> 4 == 6 else IPPROTO_IPIP
    else:
        raise ValueError(f"ethertype 0x{ethertype:04x} is not IP")
    wrapper = None
    if proto == IPPROTO_IPIP:
        v4_src, v4_dst, v4_proto, inner = split_ipv4(inner)
        if v4_proto != IPPROTO_IPV6:
            raise ValueError("IPv4 inside the tunnel carries no IPv6")
        wrapper = (v4_src, v4_dst)
    elif proto != IPPROTO_IPV6:
        raise ValueError(f"outer protocol {proto} is no tunnel")
    src, dst, next_header, mh = parse_ipv6_packet(inner)
    if next_header != IPPROTO_MH:
        raise ValueError(f"inner next header {next_header} is no Mobility Header")
    return PuntedMessage(mh, src, dst, outer_src, port, wrapper)


def punted_arrival(frame: bytes) -> tuple[bytes, Arrival]:
    """The MH octets of a punted frame and how they arrived: along the home
    path. For the fig. 2/3 layering the IPv4 header names MN and CN (as
    IPv4-mapped src/dst), the IPv6 header the proxy CoAs."""
    punted = parse_punted_frame(frame)
    if punted.ipv4_wrapper is not None:
        src4, dst4 = punted.ipv4_wrapper
        return punted.mh, Arrival(src=IPv6Address(f"::ffff:{src4}"), dst=IPv6Address(f"::ffff:{dst4}"),
                                  proxy_src=punted.src, proxy_dst=punted.dst, home_path=True,
                                  tunnel_src=punted.outer_src)
    return punted.mh, Arrival(src=punted.src, dst=punted.dst, home_path=True, tunnel_src=punted.outer_src)


def inner_ipv6(src: IPv6Address, dst: IPv6Address, mh: bytes) -> bytes:
    return ipv6_packet(src, dst, mh)


def home_path_packet(src: IPv6Address, dst: IPv6Address, mh: bytes,
                     wrap_ipv4: tuple[IPv4Address, IPv4Address] | None = None) -> bytes:
    """What goes into the LMA tunnel for a home-path message: IPv6/MH, or
    the draft's fig. 2 IPv4 / IPv6 / MH."""
    packet = inner_ipv6(src, dst, mh)
    if wrap_ipv4 is not None:
        src4, dst4 = wrap_ipv4
        packet = ipv4_header(src4, dst4, IPPROTO_IPV6, len(packet)) + packet
    return packet


def ipv4_header(src: IPv4Address, dst: IPv4Address, proto: int, payload_len: int, ttl: int = 64) -> bytes:
    """An IPv4 header with its checksum (for the draft's fig. 2-3 wrapping)."""
    header = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + payload_len, 0, 0x4000, ttl, proto, 0,
                                   src.packed, dst.packed))
    struct.pack_into("!H", header, 10, internet_checksum(bytes(header)))
    return bytes(header)


__all__ = ["PuntedMessage", "home_path_packet", "inner_ipv6", "ipv4_header", "parse_punted_frame", "punted_arrival",
           "split_ipv4", "ip_packet_of"]


def ip_packet_of(frame: bytes) -> bytes | None:
    """The IP packet of an Ethernet frame (its padding cut), or None."""
    ethertype = int.from_bytes(frame[12:14], "big") if len(frame) >= 14 else 0
    packet = frame[14:]
    if ethertype == ETH_P_IPV6 and len(packet) >= 40:
        return packet[:40 + int.from_bytes(packet[4:6], "big")]
    if ethertype == ETH_P_IP and len(packet) >= 20:
        return packet[:int.from_bytes(packet[2:4], "big")]
    return None
