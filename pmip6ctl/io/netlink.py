"""Routes, neighbours and links through pyroute2. Routes we install carry
protocol RTPROT_PMIP6 so that a restarted daemon (or `lab down`) can tell
them from anyone else's.

pyroute2's synchronous IPRoute runs its own asyncio loop, which cannot
nest in the daemon's: every call goes to one worker thread that owns the
IPRoute (same process, so the same network namespace) and the caller waits
for the answer, a few milliseconds."""

from __future__ import annotations

import functools
import ipaddress
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Address, IPv6Address

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

RTPROT_PMIP6 = 186          # an unassigned rtnetlink protocol number, ours


def _on_worker(method):
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        return self._worker.submit(method, self, *args, **kwargs).result()
    return call


class Netlink:
    def __init__(self):
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netlink")
        self.ipr = self._worker.submit(IPRoute).result()

    def close(self) -> None:
        self._worker.submit(self.ipr.close).result()
        self._worker.shutdown()

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

    def mtu(self, ifname: str) -> int:
        return self.link_attr(ifname, "IFLA_MTU")

    def mac(self, ifname: str) -> str:
        return self.link_attr(ifname, "IFLA_ADDRESS")

    def ifindexes(self) -> list[int]:
        return [index for index, _ in socket.if_nameindex()]

    @_on_worker
    def local_addresses(self) -> list[IPv4Address | IPv6Address]:
        return [ipaddress.ip_address(a.get_attr("IFA_ADDRESS")) for a in self.ipr.get_addr()]

    # --- routes ------------------------------------------------------------------
    @_on_worker
    def replace_route(self, destination, *, ifname: str | None = None, gateway=None) -> None:
        net = ipaddress.ip_network(destination)
        spec = {"dst": str(net), "proto": RTPROT_PMIP6,
                "family": socket.AF_INET6 if net.version == 6 else socket.AF_INET}
        if ifname:
            spec["oif"] = self.ifindex(ifname)
        if gateway is not None:
            spec["gateway"] = str(gateway)
        self.ipr.route("replace", **spec)

    @_on_worker
    def delete_route(self, destination) -> None:
        net = ipaddress.ip_network(destination)
        try:
            self.ipr.route("del", dst=str(net), proto=RTPROT_PMIP6,
                           family=socket.AF_INET6 if net.version == 6 else socket.AF_INET)
        except NetlinkError as exc:
            if exc.code != 3:              # ESRCH: already gone
                raise

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
        """Calls callback(ifname, up) from a thread of its own whenever a
        link's carrier comes or goes (an MN leaving its access link)."""
        def watch():
            ipr = IPRoute()
            ipr.bind()
            known: dict[str, bool] = {}
            while True:
                for msg in ipr.get():
                    if msg.get("event") != "RTM_NEWLINK":
                        continue
                    ifname = msg.get_attr("IFLA_IFNAME")
                    up = msg.get_attr("IFLA_OPERSTATE") == "UP" and bool(msg.get_attr("IFLA_CARRIER"))
                    if known.get(ifname) != up:
                        known[ifname] = up
                        callback(ifname, up)

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
