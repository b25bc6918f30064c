"""Local routing at the MAG (RFC 6705, bpf/local_route.h): a packet from an
MN on its own access link to another MN of the same MAG, for a pair the
daemon installed, leaves onto that MN's link with no tunnel: the Ethernet
header rewritten (our MAC on that link, the MN's as the neighbour entry has
it), the hop limit or TTL one less. Through BPF_PROG_TEST_RUN, with the
fixture namespace's FIB (tests/bpf/conftest.py): both MNs on in0."""

import time

import pytest
from scapy.layers.l2 import Ether

from pmip6ctl.dataplane import Encap, Tunnel

from .conftest import LMA6, LOCAL6, MN4, MN6, MN_MAC, MN_PREFIX
from .packets import from_mn, hop, outer6, ping4, ping6, toward_next_hop

pytestmark = pytest.mark.root
ACCESS = "xdp_mag_access"
SENDER6, SENDER_PREFIX = "2001:db8:100:2::10", "2001:db8:100:2::/64"   # the other MN, also on in0
SENDER4 = "198.51.100.11"


def attach_both(mag, sender_link="in0"):
    mag.tables.set_tunnel(1, Tunnel(Encap.IP6, LOCAL6, LMA6))
    mag.tables.set_mn(MN_PREFIX, 1, ifindex=mag.ifindex["in0"])
    mag.tables.set_mn(f"{MN4}/32", 1, ifindex=mag.ifindex["in0"])
    mag.tables.set_mn(SENDER_PREFIX, 1, ifindex=mag.ifindex[sender_link])
    mag.tables.set_mn(f"{SENDER4}/32", 1, ifindex=mag.ifindex[sender_link])


def onto_the_access_link(mag, inner) -> bytes:
    return bytes(Ether(src=mag.mac("in0"), dst=MN_MAC) / hop(inner))


@pytest.mark.parametrize("inner", [ping6(SENDER6, MN6), ping4(SENDER4, MN4)], ids=["ipv6", "ipv4"])
def test_a_local_route_forwards_onto_the_other_mns_link_without_a_tunnel(mag, inner):
    attach_both(mag)
    src, dst = inner.src, inner.dst
    mag.tables.set_local_route(src, dst, mag.ifindex["in0"])
    before = mag.counter("mag_access", "fwd_local"), mag.counter("mag_access", "fwd_encap_pmip")

    result = mag.run(ACCESS, from_mn(inner), "in0")

    assert result.action == "redirect"
    assert result.packet == onto_the_access_link(mag, inner)
    assert (mag.counter("mag_access", "fwd_local"), mag.counter("mag_access", "fwd_encap_pmip")) == \
        (before[0] + 1, before[1])
    assert mag.tables.map_pressure()["local_routes"][0] == 1


def test_without_an_entry_the_flow_takes_the_lma_tunnel(mag):
    attach_both(mag)
    inner = ping6(SENDER6, MN6)
    mag.tables.set_local_route(MN6, SENDER6, mag.ifindex["in0"])    # the other direction only

    result = mag.run(ACCESS, from_mn(inner), "in0")

    assert result.packet == toward_next_hop(mag.mac("out0"), outer6(LOCAL6, LMA6, hop(inner)))


def test_an_entry_for_an_mn_no_longer_on_that_link_forwards_nothing_locally(mag):
    attach_both(mag)
    inner = ping6(SENDER6, MN6)
    mag.tables.set_local_route(SENDER6, MN6, mag.ifindex["in0"])
    mag.tables.set_mn(MN_PREFIX, 1, ifindex=mag.ifindex["out0"])    # MN6 is bound on another link now
    before = mag.counter("mag_access", "fwd_local")

    result = mag.run(ACCESS, from_mn(inner), "in0")

    assert result.packet == toward_next_hop(mag.mac("out0"), outer6(LOCAL6, LMA6, hop(inner)))
    mag.tables.remove_mn(MN_PREFIX)                                 # or gone altogether
    assert mag.run(ACCESS, from_mn(inner), "in0").packet == result.packet
    assert mag.counter("mag_access", "fwd_local") == before


def test_a_lapsed_entry_forwards_nothing_locally(mag):
    attach_both(mag)
    inner = ping6(SENDER6, MN6)
    mag.tables.set_local_route(SENDER6, MN6, mag.ifindex["in0"], expires_ns=time.monotonic_ns() - 10**9)   # (the coarse clock lags a tick)

    result = mag.run(ACCESS, from_mn(inner), "in0")

    assert result.packet == toward_next_hop(mag.mac("out0"), outer6(LOCAL6, LMA6, hop(inner)))


def test_the_access_checks_come_first(mag):
    """An entry never lets a spoofed source, or an MN on the wrong link, through."""
    attach_both(mag, sender_link="out0")                            # the sender is bound on another link
    mag.tables.set_local_route(SENDER6, MN6, mag.ifindex["in0"])
    spoofed = "2001:db8:999::1"
    mag.tables.set_local_route(spoofed, MN6, mag.ifindex["in0"])
    before = {r: mag.counter("mag_access", r) for r in ("fwd_local", "drop_wrong_link", "drop_unknown_source")}

    assert mag.run(ACCESS, from_mn(ping6(SENDER6, MN6)), "in0").action == "drop"
    assert mag.run(ACCESS, from_mn(ping6(spoofed, MN6)), "in0").action == "drop"

    after = {r: mag.counter("mag_access", r) for r in before}
    assert after == {"fwd_local": before["fwd_local"], "drop_wrong_link": before["drop_wrong_link"] + 1,
                     "drop_unknown_source": before["drop_unknown_source"] + 1}


def test_a_packet_whose_hop_limit_ends_here_goes_to_the_kernel(mag):
    attach_both(mag)
    mag.tables.set_local_route(SENDER6, MN6, mag.ifindex["in0"])
    before = mag.counter("mag_access", "pass_hop_limit")

    assert mag.run(ACCESS, from_mn(ping6(SENDER6, MN6, hlim=1)), "in0").action == "pass"
    assert mag.counter("mag_access", "pass_hop_limit") == before + 1
