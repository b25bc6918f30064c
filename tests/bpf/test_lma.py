"""LMA: decapsulation from MAGs, re-encapsulation toward the serving MAG."""

import pytest

from pmip6ctl.dataplane import Encap, PeerKind, Tunnel

from .conftest import CN6, LOCAL4, LOCAL6, MN4, MN6, MN_PREFIX, PEER4, PEER6
from .packets import from_next_hop, hop, outer4, outer6, ping4, ping6, tcp6, toward_next_hop

pytestmark = pytest.mark.root
LMA = "xdp_lma"
MAG1_6, MAG2_6 = PEER6, "2001:db8:ffff:4::1"
MN2_6, MN2_PREFIX = "2001:db8:100:2::20", "2001:db8:100:2::/64"


def bind(node, prefix, tunnel_id, tunnel: Tunnel, port=0):
    node.tables.set_tunnel(tunnel_id, tunnel)
    node.tables.set_peer(tunnel.remote, tunnel_id, PeerKind.MAG, port=port)
    node.tables.set_mn(prefix, tunnel_id)


def test_mn_to_mn_is_decapsulated_and_reencapsulated_toward_the_other_mag(lma):
    bind(lma, MN_PREFIX, 1, Tunnel(Encap.IP6, LOCAL6, MAG1_6))
    bind(lma, MN2_PREFIX, 2, Tunnel(Encap.IP6, LOCAL6, MAG2_6))
    inner = tcp6(MN6, MN2_6)

    result = lma.run(LMA, from_next_hop(outer6(MAG1_6, LOCAL6, inner)), "out0")

    assert result.action == "redirect"
    assert result.packet == toward_next_hop(lma.mac("out0"), outer6(LOCAL6, MAG2_6, hop(inner)))
    assert lma.counter("lma", "fwd_reencap") >= 1


def test_mn_to_the_internet_is_decapsulated_and_forwarded(lma):
    bind(lma, MN_PREFIX, 1, Tunnel(Encap.IP6, LOCAL6, MAG1_6))
    inner = ping6(MN6, CN6)
    result = lma.run(LMA, from_next_hop(outer6(MAG1_6, LOCAL6, inner)), "out0")
    assert result.action == "redirect"
    assert result.packet == toward_next_hop(lma.mac("out0"), hop(inner))


@pytest.mark.parametrize("encap", [Encap.IP6, Encap.IP4, Encap.UDP4])
def test_internet_to_mn_is_encapsulated_toward_the_serving_mag(lma, encap):
    remote, local = (MAG1_6, LOCAL6) if encap == Encap.IP6 else (PEER4, LOCAL4)
    bind(lma, f"{MN4}/32", 1, Tunnel(encap, local, remote, 5436, 5436))
    inner = ping4("198.51.100.77", MN4)
    expected_outer = (outer6(local, remote, hop(inner)) if encap == Encap.IP6
                      else outer4(local, remote, hop(inner), (5436, 5436) if encap == Encap.UDP4 else None))

    result = lma.run(LMA, from_next_hop(inner), "out0")

    assert result.action == "redirect"
    assert result.packet == toward_next_hop(lma.mac("out0"), expected_outer)
    assert lma.counter("lma", "fwd_encap_pmip") >= 1


def test_inner_source_of_another_mag_is_dropped_as_spoofed(lma):
    bind(lma, MN_PREFIX, 1, Tunnel(Encap.IP6, LOCAL6, MAG1_6))
    bind(lma, MN2_PREFIX, 2, Tunnel(Encap.IP6, LOCAL6, MAG2_6))
    spoofed = outer6(MAG2_6, LOCAL6, ping6(MN6, CN6))      # MN1's address, from MAG2

    result = lma.run(LMA, from_next_hop(spoofed), "out0")

    assert result.action == "drop"
    assert lma.counter("lma", "drop_spoofed_inner") >= 1


def test_tunnel_from_a_mag_without_binding_is_dropped(lma):
    result = lma.run(LMA, from_next_hop(outer6(MAG1_6, LOCAL6, ping6(MN6, CN6))), "out0")
    assert result.action == "drop"
    assert lma.counter("lma", "drop_unknown_peer") >= 1


def test_tunnel_in_transit_to_someone_else_is_left_to_the_kernel(lma):
    transit = outer6(MAG1_6, MAG2_6, ping6(MN6, MN2_6))
    assert lma.run(LMA, from_next_hop(transit), "out0").action == "pass"


def test_traffic_for_no_mn_is_left_to_the_kernel(lma):
    frame = from_next_hop(ping6(CN6, "2001:db8:777::1"))
    result = lma.run(LMA, frame, "out0")
    assert (result.action, result.packet) == ("pass", frame)
