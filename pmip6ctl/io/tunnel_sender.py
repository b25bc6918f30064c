"""Sending a packet the daemon built into one of the data plane's tunnels.

The HoTI and HoT travel the home path (DESIGN §3): the MAG puts them into
the same tunnel toward the LMA that XDP uses for the MN's traffic. The
kernel builds the outer IPv6/IPv4 header of a raw socket whose protocol is
41 (IPv6 inside) or 4 (IPv4 inside); UDP tunnels reuse the signaling
socket. These sockets only send: a socket filter that accepts nothing keeps
tunnelled traffic from piling up in their receive queues."""

from __future__ import annotations

import ctypes
import socket
import struct

from ..transport import Encap, Tunnel
from .signaling import IN6_PKTINFO, IP_PKTINFO, IPV6_PKTINFO, UdpSignalingSocket

SO_ATTACH_FILTER = 26
# classic BPF, one instruction: ret #0 (accept nothing)
_DROP_ALL = (ctypes.c_ubyte * 8).from_buffer_copy(struct.pack("HBBI", 0x06, 0, 0, 0))


def _send_only(family: int, proto: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_RAW, proto)
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, struct.pack("HL", 1, ctypes.addressof(_DROP_ALL)))
    return sock


class TunnelSender:
    def __init__(self, udp: UdpSignalingSocket | None = None):
        self.udp = udp
        self._raw: dict[tuple[int, int], socket.socket] = {}

    def _socket(self, family: int, proto: int) -> socket.socket:
        key = (family, proto)
        if key not in self._raw:
            self._raw[key] = _send_only(family, proto)
        return self._raw[key]

    def send(self, tunnel: Tunnel, inner: bytes) -> None:
        proto = 41 if inner[0] >> 4 == 6 else 4
        if tunnel.encap == Encap.IP6:
            pktinfo = IN6_PKTINFO.pack(tunnel.local.packed, 0)
            self._socket(socket.AF_INET6, proto).sendmsg(
                [inner], [(socket.IPPROTO_IPV6, IPV6_PKTINFO, pktinfo)], 0, (str(tunnel.remote), 0))
        elif tunnel.encap == Encap.IP4:
            pktinfo = struct.pack("=I4s4s", 0, tunnel.local.packed, b"\0" * 4)
            self._socket(socket.AF_INET, proto).sendmsg(
                [inner], [(socket.IPPROTO_IP, IP_PKTINFO, pktinfo)], 0, (str(tunnel.remote), 0))
        else:
            if self.udp is None:
                raise OSError("no UDP socket for an IPv4/UDP tunnel")
            self.udp.sock.sendto(inner, (str(tunnel.remote), tunnel.dport))

    def close(self) -> None:
        for sock in self._raw.values():
            sock.close()
        self._raw.clear()
