"""Routes, neighbours and links through pyroute2, in the calling thread's
network namespace. Routes we install carry protocol RTPROT_PMIP6 so that a
restarted daemon (or `lab down`) can tell them from anyone else's."""

from __future__ import annotations

import ipaddress
import socket
from ipaddress import IPv4Address, IPv6Address

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

RTPROT_PMIP6 = 186          # an unassigned rtnetlink protocol number, ours


class Netlink:
    def __init__(self):
        self.ipr = IPRoute()

    def close(self) -> None:
        self.ipr.close()

    # --- links ---------------------------------------------------------------
    def ifindex(self, ifname: str) -> int:
        found = self.ipr.link_lookup(ifname=ifname)
        if not found:
            raise LookupError(f"interface {ifname!r} does not exist")
        return found[0]

    def link_attr(self, ifname: str, attr: str):
        return self.ipr.get_links(self.ifindex(ifname))[0].get_attr(attr)

    def mtu(self, ifname: str) -> int:
        return self.link_attr(ifname, "IFLA_MTU")

    def mac(self, ifname: str) -> str:
        return self.link_attr(ifname, "IFLA_ADDRESS")

    def ifindexes(self) -> list[int]:
        return [index for index, _ in socket.if_nameindex()]

    def local_addresses(self) -> list[IPv4Address | IPv6Address]:
        return [ipaddress.ip_address(a.get_attr("IFA_ADDRESS")) for a in self.ipr.get_addr()]

    # --- routes ------------------------------------------------------------------
    def replace_route(self, destination, *, ifname: str | None = None, gateway=None) -> None:
        net = ipaddress.ip_network(destination)
        spec = {"dst": str(net), "proto": RTPROT_PMIP6,
                "family": socket.AF_INET6 if net.version == 6 else socket.AF_INET}
        if ifname:
            spec["oif"] = self.ifindex(ifname)
        if gateway is not None:
            spec["gateway"] = str(gateway)
        self.ipr.route("replace", **spec)

    def delete_route(self, destination) -> None:
        net = ipaddress.ip_network(destination)
        try:
            self.ipr.route("del", dst=str(net), proto=RTPROT_PMIP6,
                           family=socket.AF_INET6 if net.version == 6 else socket.AF_INET)
        except NetlinkError as exc:
            if exc.code != 3:              # ESRCH: already gone
                raise

    def our_routes(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        found = []
        for family in (socket.AF_INET, socket.AF_INET6):
            for route in self.ipr.get_routes(family=family, proto=RTPROT_PMIP6):
                dst = route.get_attr("RTA_DST")
                if dst:
                    found.append(ipaddress.ip_network(f"{dst}/{route['dst_len']}"))
        return found

    # --- neighbours --------------------------------------------------------------
    def replace_neighbour(self, address, mac: str, ifname: str) -> None:
        addr = ipaddress.ip_address(address)
        self.ipr.neigh("replace", dst=str(addr), lladdr=mac, ifindex=self.ifindex(ifname),
                       state=0x80,  # NUD_PERMANENT
                       family=socket.AF_INET6 if addr.version == 6 else socket.AF_INET)

    # --- veths (the CN agent's egress pair) ----------------------------------------
    def ensure_veth(self, name: str, peer: str) -> None:
        if not self.ipr.link_lookup(ifname=name):
            self.ipr.link("add", ifname=name, kind="veth", peer=peer)
        for ifname in (name, peer):
            self.ipr.link("set", index=self.ifindex(ifname), state="up")
