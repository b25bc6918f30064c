"""Path MTU through the tunnels (issue 13, item 3): a packet too big for
its tunnel comes back as an ICMPv6 Packet Too Big (ICMP fragmentation
needed for IPv4 with DF) that XDP builds, and TCP's PMTU discovery then
carries a transfer over the LMA tunnel and over an RO tunnel, both ways."""

from __future__ import annotations

import pytest

import subprocess

from pmip6ctl import netns
from pmip6ctl.lab import topology as t

from .conftest import counters, delta, iperf
from .test_ro import clean_ro, start_ro  # noqa: F401 (a fixture)

pytestmark = pytest.mark.root


def ping_too_big(lab, node: str, *argv: str) -> str:
    """ping's whole output: it exits non-zero when nothing comes back."""
    proc = subprocess.run([*netns.nsenter_prefix(lab.ns(node)), "ping", *argv], capture_output=True, text=True)
    return proc.stdout + proc.stderr


@pytest.fixture
def full_size_mns(lab):
    """The MNs use their whole 1500-octet link, not the RA's smaller MTU,
    so that their TCP segments need PMTU discovery too; and no node
    remembers a path MTU from an earlier test."""
    def mtu(value: int) -> None:      # the lab sets the RA's MTU on the link itself (IPv4 as DHCP would)
        for mn in ("mn1", "mn2"):
            lab.sh(mn, "ip", "link", "set", "eth0", "mtu", str(value))
            lab.sh(mn, "sysctl", "-qw", f"net.ipv6.conf.eth0.mtu={value}")
    for node in ("cn", "mn1", "mn2"):
        lab.sh(node, "ip", "-6", "route", "flush", "cache")
        lab.sh(node, "ip", "-4", "route", "flush", "cache")
    mtu(t.ACCESS_MTU)
    yield
    mtu(t.ACCESS_MTU - 40)


def learned_mtu(lab, node: str, family: str, destination: str) -> int | None:
    """The path MTU node's kernel holds for destination (from a PTB), if any."""
    out = lab.sh(node, "ip", family, "route", "get", destination)
    words = out.split()
    return int(words[words.index("mtu") + 1]) if "mtu" in words else None


@pytest.mark.parametrize("family, size, mn_address", [("-6", 1452, "ipv6"), ("-4", 1472, "ipv4")])
def test_a_ping_too_big_for_the_lma_tunnel_gets_its_packet_too_big(lab, full_size_mns, family, size, mn_address):
    """1452 + 8 + 40 (or 1472 + 8 + 20) = 1500 octets: 1540 once the LMA
    encapsulates it toward MAG1. The CN's kernel takes the error as from
    any router (ICMPv6 Packet Too Big; ICMP fragmentation needed, as DF is set)."""
    target = lab.mns["mn1"][mn_address]
    before = counters(lab, "lma")

    out = ping_too_big(lab, "cn", family, "-M", "do", "-s", str(size), "-c", "3", "-i", "0.5", "-W", "1", target)

    assert delta(counters(lab, "lma"), before, "lma", "icmp_too_big") >= 1, out
    assert learned_mtu(lab, "cn", family, target) == 1460, out
    # and a ping that fits the room goes through
    assert " 0% packet loss" in ping_too_big(lab, "cn", family, "-M", "do", "-s", str(size - 40), "-c", "2",
                                             "-i", "0.2", "-W", "2", target)


@pytest.mark.parametrize("client, server", [("cn", "mn1"), ("mn1", "cn")], ids=["cn-to-mn1", "mn1-to-cn"])
def test_tcp_with_pmtu_discovery_crosses_the_lma_tunnel(lab, full_size_mns, client, server):
    target = lab.mns["mn1"]["ipv6"] if server == "mn1" else t.CN6
    sender = "lma" if client == "cn" else "mag1"            # where the big segments meet the tunnel
    program = "lma" if sender == "lma" else "mag_access"
    before = counters(lab, sender)

    result = iperf(lab, client, server, target, seconds=2)

    assert result["end"]["sum_received"]["bytes"] > 1_000_000
    assert delta(counters(lab, sender), before, program, "icmp_too_big") >= 1


def test_tcp_with_pmtu_discovery_crosses_an_ro_tunnel(lab, clean_ro, full_size_mns):
    mn1, mn2 = lab.mns["mn1"]["ipv6"], lab.mns["mn2"]["ipv6"]
    start_ro(lab, mn1, mn2)
    before = counters(lab, "mag1")

    result = iperf(lab, "mn1", "mn2", mn2, seconds=2)

    after = counters(lab, "mag1")
    assert result["end"]["sum_received"]["bytes"] > 1_000_000
    assert delta(after, before, "mag_access", "icmp_too_big") >= 1
    assert delta(after, before, "mag_access", "fwd_encap_ro") > 500
