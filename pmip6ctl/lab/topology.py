"""The lab of DESIGN §5: every node, link and address in one place.

                        pmip-cn (2001:db8:cc::2, 203.0.113.2)
                           |
   pmip-mag1 ── pmip-inet (core router, IPv6 + IPv4) ── pmip-lma
      |            |    \\
   pmip-air1 ── pmip-mag3  pmip-nat ── pmip-mag2 ── pmip-air2 ── pmip-mn2
      |     (the air: MN1's one radio link, whose far end moves MAG1 ⇄ MAG3)
   pmip-mn1

Each MN has one interface, eth0, into a bridge in its "air" namespace; the
air holds one port per MAG access link the MN may reach, and only the port
of the MAG the MN is attached to is up (Lab.move flips them). Every MAG
answers on its access links with the same link-local and link-layer address
(RFC 5213 §6.9.3), so the MN keeps its addresses, routes and neighbour entry
across a move, and sends on at once, as a real single-radio MN does. MN1's
eth1 (and MN2's) is a second identity, MN3 (MN4), wired to MAG3 directly.

The MAGs reach each other and the LMA through pmip-inet, so a
route-optimized MAG1⇄MAG2 path never touches the LMA's links. pmip-nat
routes IPv6 plainly and masquerades IPv4 when the NAT scenario turns it on.
Only documentation address space is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network


@dataclass(frozen=True)
class Link:
    a: str
    a_if: str
    b: str
    b_if: str
    v6: str | None = None       # /64 with a = ::1, b = ::2
    v4: str | None = None       # /29 with a = .1, b = .2 (relative to the network)

    def addr6(self, side: str) -> str:
        net = IPv6Network(self.v6)
        return str(net.network_address + (1 if side == "a" else 2))

    def addr4(self, side: str) -> str:
        net = IPv4Network(self.v4)
        return str(net.network_address + (1 if side == "a" else 2))


NODES = ("inet", "lma", "lma2", "mag1", "mag2", "mag3", "nat", "cn", "mn1", "mn2", "air1", "air2")
DAEMONS = {"lma": "lma", "lma2": "lma", "mag1": "mag", "mag2": "mag", "mag3": "mag", "cn": "cn"}

LINKS = (
    Link("inet", "mag1", "mag1", "tr0", "2001:db8:ffff:1::/64", "192.0.2.0/29"),
    Link("inet", "nat", "nat", "out0", "2001:db8:ffff:20::/64", "192.0.2.8/29"),
    Link("nat", "in0", "mag2", "tr0", "2001:db8:ffff:2::/64", "198.51.100.128/29"),
    Link("inet", "lma", "lma", "tr0", "2001:db8:ffff:3::/64", "192.0.2.16/29"),
    Link("inet", "mag3", "mag3", "tr0", "2001:db8:ffff:4::/64", "192.0.2.24/29"),
    Link("inet", "cn", "cn", "eth0", "2001:db8:cc::/64", "203.0.113.0/29"),
    Link("inet", "lma2", "lma2", "tr0", "2001:db8:ffff:5::/64", "192.0.2.32/29"),
)
AIR = {"mn1": "air1", "mn2": "air2"}   # each MN's air: a bridge, one port per MAG it may reach
AIR_BRIDGE, AIR_MN_PORT = "br0", "mn"   # in the air: the bridge, and the port toward the MN's eth0
# a = the air namespace, a_if = its port (named after the MAG), b/b_if = the MAG's access link
ACCESS_LINKS = (
    Link("air1", "mag1", "mag1", "acc1"),
    Link("air2", "mag2", "mag2", "acc1"),
    Link("air1", "mag3", "mag3", "acc1"),     # down until MN1 moves there (handover)
    Link("air2", "mag3", "mag3", "acc2"),     # down until MN2 moves there
)
# The MNs' second interfaces, straight to MAG3: the second identities (MN3, MN4).
SECOND_LINKS = (
    Link("mn1", "eth1", "mag3", "acc3"),
    Link("mn2", "eth1", "mag3", "acc4"),
)
HOME_MAG = {"mn1": "mag1", "mn2": "mag2"}
AWAY_MAG = "mag3"


def mn_of_air(air: str) -> str:
    return next(mn for mn, name in AIR.items() if name == air)

HNP_POOL = "2001:db8:100::/48"
IPV4_HOA_POOL = "198.51.100.0/26"
# The second LMA (scenario 2, `lab anchor mag2 lma2`) has pools of its own.
POOLS = {"lma": (HNP_POOL, IPV4_HOA_POOL), "lma2": ("2001:db8:200::/48", "198.51.100.64/27")}
ACCESS_GATEWAY6 = "fe80::1"              # every MAG's link-local address on its access links
ACCESS_GATEWAY4 = "198.51.100.126"       # every MAG's IPv4 default-router address for MNs
ACCESS_MTU = 1500
# Every MAG's link-layer address on its access links (RFC 5213 §6.9.3; [mag] access_mac).
ACCESS_MAC = "02:50:4d:49:50:36"
MN_MACS = {"mn1": "02:00:00:00:01:10", "mn2": "02:00:00:00:02:10"}
# The MNs' second interfaces (toward MAG3) have MACs of their own: mn1's is
# a third MN, "MN3", registered over IPv4 transport.
SECOND_MACS = {"mn1": "02:00:00:00:01:11", "mn2": "02:00:00:00:02:11"}
SECOND_MAC = SECOND_MACS["mn1"]
SECOND_NAIS = {"mn1": "mn3@lab.example", "mn2": "mn4@lab.example"}   # who the second interfaces are
IPV4_TRANSPORT_MAGS = frozenset({"mag3"})

# The NAT scenario (`lab nat on`): pmip-nat masquerades MAG2's IPv4 side, and
# MAG2 moves to IPv4 transport. The NAT forgets an idle UDP mapping after
# NAT_UDP_TIMEOUT s; keepalives (the NAT Detection refresh time) come sooner.
NAT_INSIDE = "198.51.100.128/29"
NAT_UDP_TIMEOUT = 6
NAT_KEEPALIVE = 2


def link_of(node: str) -> tuple[Link, str]:
    """The transport link of node (and which side it is)."""
    for link in LINKS:
        if link.b == node:
            return link, "b"
    raise KeyError(node)


def address6(node: str) -> str:
    return link_of(node)[0].addr6("b")


def address4(node: str) -> str:
    return link_of(node)[0].addr4("b")


def gateway6(node: str) -> str:
    return link_of(node)[0].addr6("a")


def gateway4(node: str) -> str:
    return link_of(node)[0].addr4("a")


LMA6, LMA4 = address6("lma"), address4("lma")
LMAS = ("lma", "lma2")
DENIED_CN = "2001:db8:cc::99"            # the LMA's RO policy denies optimizing toward it

# The management link: the host (root namespace) ⇄ pmip-inet, IPv6 only, so
# that Prometheus on the host scrapes the daemons as it would real nodes.
MGMT_HOST, MGMT_INET, MGMT_NET = "2001:db8:eeee::1", "2001:db8:eeee::2", "2001:db8:eeee::/64"
MGMT_ROUTES = ("2001:db8:ffff::/48", "2001:db8:cc::/64")
METRICS_PORT = 9436


def metrics_address(node: str) -> str:
    return f"[{address6(node)}]:{METRICS_PORT}"
CN6, CN4 = address6("cn"), address4("cn")
