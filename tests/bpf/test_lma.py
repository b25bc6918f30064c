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


def test_for_an_mn_between_mags_the_downlink_goes_whole_to_the_daemons_hold(lma):
    """bpf/lma.c: an entry marked LMA_MN_HELD (its old MAG deregistered it)
    hands each packet for the MN to the daemon (EVENT_HELD), within the punt
    budget; nothing is tunnelled, and a neighbour's traffic is untouched."""
    from pmip6ctl.dataplane.tables import LMA_MN_HELD
    lma.tables.set_mn(MN_PREFIX, 0, LMA_MN_HELD)
    bind(lma, MN2_PREFIX, 2, Tunnel(Encap.IP6, LOCAL6, MAG2_6))
    saved = lma.tables.get_config()
    lma.tables.set_config(**(saved | {"punt_rate": 1, "punt_burst": 2}))
    try:
        before = lma.counter("lma", "punt_held_downlink")
        frame = from_next_hop(ping6(CN6, MN6))
        results = [lma.run(LMA, frame, "out0").action for _ in range(3)]
        assert results == ["drop", "drop", "drop"]                  # handed over (or not), never tunnelled
        assert lma.counter("lma", "punt_held_downlink") == before + 2
        assert lma.counter("lma", "drop_punt_limit") >= 1           # the third: over the budget
        held = lma.drain_events()
        assert [(e.kind, e.frame) for e in held] == [("held", frame)] * 2
        # another MN's downlink is tunnelled as ever, and is no held packet
        other = lma.run(LMA, from_next_hop(ping6(CN6, MN2_6)), "out0")
        assert other.action == "redirect" and not lma.drain_events()
    finally:
        lma.tables.set_config(**saved)


def test_mn_to_mn_traffic_for_a_held_mn_is_decapsulated_then_held(lma):
    """MN2 (at MAG2) pings MN1 between MAGs: the inner packet, decapsulated,
    is what the daemon gets (the hold re-tunnels it to MN1's next MAG)."""
    from pmip6ctl.dataplane.tables import LMA_MN_HELD
    lma.tables.set_mn(MN_PREFIX, 0, LMA_MN_HELD)
    bind(lma, MN2_PREFIX, 2, Tunnel(Encap.IP6, LOCAL6, MAG2_6))
    inner = ping6(MN2_6, MN6)
    result = lma.run(LMA, from_next_hop(outer6(MAG2_6, LOCAL6, inner)), "out0")
    assert result.action == "drop"
    held = lma.drain_events()
    assert len(held) == 1 and held[0].kind == "held" and held[0].frame[14:] == bytes(inner)


def test_a_held_mns_new_mag_may_send_its_uplink_before_the_release(lma):
    """Between the new binding and the release, the mark names the new MAG's
    tunnel: the MN's uplink through it passes (the MAG releases its own
    buffer on the PBA); its downlink is still held; any other MAG's is spoofed."""
    from pmip6ctl.dataplane.tables import LMA_MN_HELD
    bind(lma, MN2_PREFIX, 2, Tunnel(Encap.IP6, LOCAL6, MAG2_6))
    lma.tables.set_tunnel(1, Tunnel(Encap.IP6, LOCAL6, MAG1_6))
    lma.tables.set_peer(MAG1_6, 1, PeerKind.MAG)
    lma.tables.set_mn(MN_PREFIX, 1, LMA_MN_HELD)
    up = lma.run(LMA, from_next_hop(outer6(MAG1_6, LOCAL6, ping6(MN6, CN6))), "out0")
    assert up.action == "redirect"
    assert lma.run(LMA, from_next_hop(outer6(MAG2_6, LOCAL6, ping6(MN6, CN6))), "out0").action == "drop"
    assert lma.run(LMA, from_next_hop(ping6(CN6, MN6)), "out0").action == "drop"
    assert [e.kind for e in lma.drain_events()] == ["held"]
