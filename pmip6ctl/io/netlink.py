"""Routes, neighbours and links through pyroute2. Routes we install carry
protocol RTPROT_PMIP6 so that a restarted daemon (or `lab down`) can tell
them from anyone else's.

pyroute2's synchronous IPRoute runs its own asyncio loop, which cannot
nest in the daemon's: every call goes to one worker thread that owns the
IPRoute (same process, so the same network namespace) and the caller waits
for the answer, a few milliseconds.

Routes are the exception: a MAG installs two before it may send an MN its
Router Advertisement, so that path is on the handover's clock. We encode
them with pyroute2's rtmsg and send them on a plain rtnetlink socket of our
own, and wait for the kernel's acknowledgement: ~0.1 ms instead of 1-8 ms
through the worker under load."""

from __future__ import annotations

import functools
import ipaddress
import os
import socket
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from pyroute2 import IPRoute
from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST, NLMSG_ERROR
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_DELROUTE, RTM_NEWROUTE
from pyroute2.netlink.rtnl.rtmsg import rtmsg

RTPROT_PMIP6 = 186          # an unassigned rtnetlink protocol number, ours
RT_TABLE_MAIN, RTN_UNICAST, RT_SCOPE_UNIVERSE, RT_SCOPE_NOWHERE = 254, 1, 0, 255   # NOWHERE: any, to delete
ESRCH = 3


@dataclass(frozen=True)
class LinkEvent:
    """A link appeared, went (deleted), or its carrier changed (up)."""
    ifname: str
    ifindex: int
    up: bool
    mac: str | None
    deleted: bool = False


def _on_worker(method):
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        return self._worker.submit(method, self, *args, **kwargs).result()
    return call


class Netlink:
    def __init__(self):
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netlink")
        self.ipr = self._worker.submit(IPRoute).result()
        self._routes = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self._routes.bind((0, 0))
        self._routes_lock = threading.Lock()
        self._sequence = 0

    def close(self) -> None:
        self._worker.submit(self.ipr.close).result()
        self._worker.shutdown()
        self._routes.close()

    # --- links ---------------------------------------------------------------
    @staticmethod
    def ifindex(ifname: str) -> int:
        try:
            return socket.if_nametoindex(ifname)
        except OSError:
            raise LookupError(f"interface {ifname!r} does not exist") from None

    @_on_worker
    def link_attr(self, ifname: str, attr: str):
        return self.ipr.get_links(self.ifindex(ifname))[0].get_attr(attr)

    @_on_worker
    def xdp_attached(self, ifname: str) -> bool:
        """The kernel has an XDP program on ifname (any mode)."""
        xdp = self.ipr.get_links(self.ifindex(ifname))[0].get_attr("IFLA_XDP")
        return bool(xdp and xdp.get_attr("IFLA_XDP_ATTACHED"))

    def carrier(self, ifname: str) -> bool:
        """The link is up and has its carrier (an MN is on the other end)."""
        return self.link_attr(ifname, "IFLA_OPERSTATE") == "UP" and bool(self.link_attr(ifname, "IFLA_CARRIER"))

    def mtu(self, ifname: str) -> int:
        return self.link_attr(ifname, "IFLA_MTU")

    def mac(self, ifname: str) -> str:
        return self.link_attr(ifname, "IFLA_ADDRESS")

    @_on_worker
    def set_mac(self, ifname: str, mac: str) -> None:
        """Give ifname the link-layer address mac (unless it has it already)."""
        index = self.ifindex(ifname)
        if self.ipr.get_links(index)[0].get_attr("IFLA_ADDRESS") != mac.lower():
            self.ipr.link("set", index=index, address=mac)

    def ifindexes(self) -> list[int]:
        return [index for index, _ in socket.if_nameindex()]

    @_on_worker
    def local_addresses(self) -> list[IPv4Address | IPv6Address]:
        return [ipaddress.ip_address(a.get_attr("IFA_ADDRESS")) for a in self.ipr.get_addr()]

    @_on_worker
    def addresses_on(self, ifname: str) -> list[IPv4Address | IPv6Address]:
        """The addresses configured on one interface."""
        return [ipaddress.ip_address(a.get_attr("IFA_ADDRESS")) for a in self.ipr.get_addr(index=self.ifindex(ifname))]

    @_on_worker
    def local_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """The networks of this node's own addresses (address/prefix length)."""
        return [ipaddress.ip_network(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}", strict=False)
                for a in self.ipr.get_addr()]

    # --- routes ------------------------------------------------------------------
    def replace_route(self, destination, *, ifname: str | None = None, gateway=None) -> None:
        attrs = [("RTA_OIF", self.ifindex(ifname))] if ifname else []
        if gateway is not None:
            attrs.append(("RTA_GATEWAY", str(gateway)))
        self._route_request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, destination, attrs)

    def delete_route(self, destination) -> None:
        try:
            self._route_request(RTM_DELROUTE, 0, destination, [], scope=RT_SCOPE_NOWHERE)
        except NetlinkError as exc:
            if exc.code != ESRCH:              # already gone
                raise

    def _route_request(self, kind: int, flags: int, destination, attrs: list, scope=RT_SCOPE_UNIVERSE) -> None:
        net = ipaddress.ip_network(destination)
        msg = rtmsg()
        msg["family"] = socket.AF_INET6 if net.version == 6 else socket.AF_INET
        msg["dst_len"], msg["table"], msg["proto"] = net.prefixlen, RT_TABLE_MAIN, RTPROT_PMIP6
        msg["scope"], msg["type"] = scope, RTN_UNICAST
        msg["attrs"] = [("RTA_DST", str(net.network_address)), *attrs]
        with self._routes_lock:
            self._sequence += 1
            msg["header"].update(type=kind, flags=NLM_F_REQUEST | NLM_F_ACK | flags,
                                 sequence_number=self._sequence)
            msg.encode()
            self._routes.send(msg.data)
            while True:                        # the acknowledgement: an NLMSG_ERROR, error 0 on success
                reply = self._routes.recv(65536)
                _, kind_of_reply, _, sequence = struct.unpack_from("=IHHI", reply)
                if kind_of_reply == NLMSG_ERROR and sequence == self._sequence:
                    error = -struct.unpack_from("=i", reply, 16)[0]
                    if error:
                        raise NetlinkError(error, f"{os.strerror(error)}: route {net}")
                    return

    @_on_worker
    def our_routes(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        found = []
        for family in (socket.AF_INET, socket.AF_INET6):
            for route in self.ipr.get_routes(family=family, proto=RTPROT_PMIP6):
                dst = route.get_attr("RTA_DST")
                if dst:
                    found.append(ipaddress.ip_network(f"{dst}/{route['dst_len']}"))
        return found

    # --- neighbours --------------------------------------------------------------
    @_on_worker
    def replace_neighbour(self, address, mac: str, ifname: str) -> None:
        addr = ipaddress.ip_address(address)
        self.ipr.neigh("replace", dst=str(addr), lladdr=mac, ifindex=self.ifindex(ifname),
                       state=0x80,  # NUD_PERMANENT
                       family=socket.AF_INET6 if addr.version == 6 else socket.AF_INET)

    # --- link state ----------------------------------------------------------------------
    @staticmethod
    def watch_links(callback) -> threading.Thread:
        """Calls callback(LinkEvent) from a thread of its own whenever a link
        appears, goes, or its carrier comes or goes (an MN leaving its access
        link), with the link's MAC address as the same message tells it."""
        def watch():
            ipr = IPRoute()
            ipr.bind()
            known: dict[int, bool] = {}
            while True:
                for msg in ipr.get():
                    event = msg.get("event")
                    if event not in ("RTM_NEWLINK", "RTM_DELLINK"):
                        continue
                    ifindex, ifname = msg["index"], msg.get_attr("IFLA_IFNAME")
                    if event == "RTM_DELLINK":
                        known.pop(ifindex, None)
                        callback(LinkEvent(ifname, ifindex, False, None, deleted=True))
                        continue
                    up = msg.get_attr("IFLA_OPERSTATE") == "UP" and bool(msg.get_attr("IFLA_CARRIER"))
                    if known.get(ifindex) != up:
                        known[ifindex] = up
                        callback(LinkEvent(ifname, ifindex, up, msg.get_attr("IFLA_ADDRESS")))

        thread = threading.Thread(target=watch, name="link-watch", daemon=True)
        thread.start()
        return thread

    # --- veths (the CN agent's egress pair) ----------------------------------------
    @_on_worker
    def ensure_veth(self, name: str, peer: str) -> None:
        if not self.ipr.link_lookup(ifname=name):
            self.ipr.link("add", ifname=name, kind="veth", peer=peer)
        for ifname in (name, peer):
            self.ipr.link("set", index=self.ifindex(ifname), state="up")
