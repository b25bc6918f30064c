"""Two pieces on a handover's clock, in a namespace of their own: the MAG's
routes through our rtnetlink socket, and the fixed-pace echo sender the
handover benchmark and demo count losses with."""

import subprocess

import pytest
from pyroute2.netlink.exceptions import NetlinkError

from pmip6ctl import netns
from pmip6ctl.io.netlink import Netlink
from pmip6ctl.lab.probe import SteadyPing

pytestmark = pytest.mark.root

NS = "pmip-t-netlink"


def ip(*args: str) -> str:
    return subprocess.run(["ip", "-n", NS, *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def namespace():
    subprocess.run(["ip", "netns", "del", NS], capture_output=True)
    subprocess.run(["ip", "netns", "add", NS], check=True)
    ip("link", "add", "acc0", "type", "veth", "peer", "name", "far0")
    ip("link", "set", "acc0", "up")
    ip("link", "set", "far0", "up")
    ip("link", "set", "lo", "up")
    ip("-6", "addr", "add", "2001:db8:1::1/64", "dev", "acc0", "nodad")
    yield NS
    subprocess.run(["ip", "netns", "del", NS], capture_output=True)


@pytest.fixture
def netlink(namespace):
    """The test runs in the namespace, as a daemon does (interface names
    resolve there)."""
    with netns.entered(namespace):
        link = Netlink()
        yield link
        link.close()


def test_routes_are_ours_replaced_and_deleted_without_touching_anyone_elses(namespace, netlink):
    ip("route", "add", "203.0.113.0/24", "dev", "far0", "proto", "static")
    netlink.replace_route("2001:db8:100::/64", ifname="acc0")
    netlink.replace_route("198.51.100.1/32", ifname="acc0")
    netlink.replace_route("198.51.100.1/32", ifname="far0")                 # replaced, not added twice
    netlink.replace_route("2001:db8:cc::2/128", ifname="acc0", gateway="fe80::1")

    assert sorted(map(str, netlink.our_routes())) == ["198.51.100.1/32", "2001:db8:100::/64", "2001:db8:cc::2/128"]
    assert ip("-4", "route", "show", "198.51.100.1").split()[:3] == ["198.51.100.1", "dev", "far0"]
    assert "via fe80::1 dev acc0" in ip("-6", "route", "show", "2001:db8:cc::2")

    netlink.delete_route("198.51.100.1/32")
    netlink.delete_route("198.51.100.1/32")              # gone already: not an error
    netlink.delete_route("203.0.113.0/24")               # someone else's (proto static): left alone
    assert sorted(map(str, netlink.our_routes())) == ["2001:db8:100::/64", "2001:db8:cc::2/128"]
    assert "203.0.113.0/24 dev far0 proto static" in ip("-4", "route")


def test_a_route_the_kernel_refuses_raises_with_its_reason(netlink):
    with pytest.raises(NetlinkError, match="2001:db8:200::/64"):
        netlink.replace_route("2001:db8:200::/64", ifname="acc0", gateway="2001:db8:99::1")   # not on-link


def test_steady_ping_keeps_its_pace_and_counts_what_comes_back(namespace):
    answered = SteadyPing(namespace, "2001:db8:1::1", count=200, interval=0.001, linger=0.3).start().result()
    into_nowhere = SteadyPing(namespace, "2001:db8:77::1", count=50, interval=0.001, linger=0.3).start().result()
    assert answered == (200, 200)
    assert into_nowhere == (50, 0)                       # no route: every send fails, none is skipped
