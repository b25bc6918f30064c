"""MAG transport ingress: tunnels from the LMA and RO peers, through BPF_PROG_TEST_RUN."""

import os
import time

import pytest
from scapy.layers.inet import IP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from pmip6ctl.dataplane import Encap, PeerKind, Tunnel

from .conftest import CN4, CN6, LMA4, LMA6, LOCAL4, LOCAL6, MN4, MN6, MN_MAC, MN_PREFIX, PEER6
from .packets import from_next_hop, hop, outer4, outer6, ping4, ping6, tcp6

pytestmark = pytest.mark.root
TRANSPORT = "xdp_mag_transport"
LMA_TUNNEL, RO_TUNNEL = 1, 2

# A HoTI as MAG1 sends it for MN (RFC 6275 §6.1.3): MH type 1, cookie, no options.
HOTI = Raw(bytes([59, 1, 1, 0, 0, 0, 0, 0]) + bytes(range(8)))


def serve_mn(node, lma_tunnel: Tunnel, peer_port=0):
    t = node.tables
    t.set_tunnel(LMA_TUNNEL, lma_tunnel)
    t.set_peer(lma_tunnel.remote, LMA_TUNNEL, PeerKind.LMA, port=peer_port)
    t.set_mn(MN_PREFIX, LMA_TUNNEL)
    t.set_mn(f"{MN4}/32", LMA_TUNNEL)


def to_mn(node, packet) -> bytes:
    return bytes(Ether(src=node.mac("in0"), dst=MN_MAC) / packet)


@pytest.mark.parametrize("encap, inner, outer", [
    (Encap.IP6, ping6(CN6, MN6), lambda i: outer6(LMA6, LOCAL6, i)),
    (Encap.IP6, ping4(CN4, MN4), lambda i: outer6(LMA6, LOCAL6, i)),
    (Encap.IP4, ping6(CN6, MN6), lambda i: outer4(LMA4, LOCAL4, i)),
    (Encap.IP4, ping4(CN4, MN4), lambda i: outer4(LMA4, LOCAL4, i)),
    (Encap.UDP4, ping6(CN6, MN6), lambda i: outer4(LMA4, LOCAL4, i, (5436, 5436))),
    (Encap.UDP4, ping4(CN4, MN4), lambda i: outer4(LMA4, LOCAL4, i, (5436, 5436))),
], ids=["6in6", "4in6", "6in4", "4in4", "6inudp4", "4inudp4"])
def test_tunnel_from_the_lma_is_decapsulated_toward_the_mn(mag, encap, inner, outer):
    local, remote = (LOCAL6, LMA6) if encap == Encap.IP6 else (LOCAL4, LMA4)
    port = 5436 if encap == Encap.UDP4 else 0
    serve_mn(mag, Tunnel(encap, local, remote, 5436, 5436), peer_port=port)
    before = mag.counter("mag_transport", "fwd_decap")

    result = mag.run(TRANSPORT, from_next_hop(outer(inner)), "out0")

    assert result.action == "redirect"
    assert result.packet == to_mn(mag, hop(inner))
    assert mag.counter("mag_transport", "fwd_decap") == before + 1


def test_tunnel_from_an_unknown_source_is_dropped_and_reported_once_per_flow(mag):
    """An RO peer we lost the binding with (we restarted without state), or a
    forgery: dropped, and the daemon hears of it to answer with a BE."""
    serve_mn(mag, Tunnel(Encap.IP6, LOCAL6, LMA6))
    forged = outer6("2001:db8:bad::1", LOCAL6, ping6(CN6, MN6))
    over_ipv4 = outer4(LMA4, LOCAL4, ping6(CN6, MN6))
    before = mag.counter("mag_transport", "drop_unknown_peer")

    results = [mag.run(TRANSPORT, from_next_hop(forged), "out0") for _ in range(3)]
    ipv4 = mag.run(TRANSPORT, from_next_hop(over_ipv4), "out0")
    events = mag.drain_events()

    assert [r.action for r in results] == ["drop"] * 3 and ipv4.action == "drop"
    assert mag.counter("mag_transport", "drop_unknown_peer") == before + 4
    # one notice per flow and interval; none for an IPv4 source (no IPv6 address to answer)
    assert [(e.kind, str(e.src), str(e.dst), str(e.peer)) for e in events] == [
        ("no_ro_binding", CN6, MN6, "2001:db8:bad::1")]


def test_udp_tunnel_from_an_unexpected_port_is_dropped(mag):
    serve_mn(mag, Tunnel(Encap.UDP4, LOCAL4, LMA4, 5436, 5436), peer_port=5436)
    forged = outer4(LMA4, LOCAL4, ping6(CN6, MN6), (40000, 5436))
    assert mag.run(TRANSPORT, from_next_hop(forged), "out0").action == "drop"


def test_tunnel_for_a_detached_mn_is_dropped(mag):
    serve_mn(mag, Tunnel(Encap.IP6, LOCAL6, LMA6))
    stray = outer6(LMA6, LOCAL6, ping6(CN6, "2001:db8:100:2::10"))
    result = mag.run(TRANSPORT, from_next_hop(stray), "out0")
    assert result.action == "drop"
    assert mag.counter("mag_transport", "drop_not_attached") >= 1


def test_ro_peer_traffic_needs_a_matching_ro_entry(mag):
    serve_mn(mag, Tunnel(Encap.IP6, LOCAL6, LMA6))
    mag.tables.set_tunnel(RO_TUNNEL, Tunnel(Encap.IP6, LOCAL6, PEER6))
    mag.tables.set_peer(PEER6, RO_TUNNEL, PeerKind.RO)
    inner = tcp6(CN6, MN6)
    frame = from_next_hop(outer6(PEER6, LOCAL6, inner))

    without = mag.run(TRANSPORT, frame, "out0")
    (notice,) = mag.drain_events()
    mag.tables.set_ro(MN6, CN6, RO_TUNNEL)
    with_entry = mag.run(TRANSPORT, frame, "out0")

    assert without.action == "drop"
    assert (notice.kind, str(notice.src), str(notice.dst), str(notice.peer)) == ("no_ro_binding", CN6, MN6, PEER6)
    assert with_entry.action == "redirect"
    assert with_entry.packet == to_mn(mag, hop(inner))


@pytest.mark.parametrize("tunnelled", [
    IPv6(src=MN6.replace("::10", "::99"), dst=MN6, nh=135) / HOTI,
    # the draft's fig. 2: IPv4 (MN HoA -> CN) / IPv6 (pCoA -> pCoA) / MH
    IP(src=CN4, dst=MN4, proto=41) / IPv6(src=PEER6, dst=LOCAL6, nh=135) / HOTI,
], ids=["ipv6", "ipv4-wrapped"])
def test_mobility_message_for_an_attached_mn_is_punted_whole(mag, tunnelled):
    serve_mn(mag, Tunnel(Encap.IP6, LOCAL6, LMA6))
    frame = from_next_hop(outer6(LMA6, LOCAL6, tunnelled))

    result = mag.run(TRANSPORT, frame, "out0")
    events = mag.drain_events()

    assert result.action == "drop"
    assert [(e.kind if hasattr(e, "kind") else "punt", e.frame) for e in events] == [("punt", frame)]
    assert mag.counter("mag_transport", "punt_mh") >= 1


def test_punts_over_the_daemons_budget_are_dropped_and_counted(mag):
    """A per-CPU budget (GCRA: punt_burst at once, punt_rate a second) keeps
    a flood of mobility messages from the daemon; the excess is counted."""
    serve_mn(mag, Tunnel(Encap.IP6, LOCAL6, LMA6))
    frame = from_next_hop(outer6(LMA6, LOCAL6, IPv6(src=CN6, dst=MN6, nh=135) / HOTI))
    saved = mag.tables.get_config()
    cpus = os.sched_getaffinity(0)
    before = (mag.counter("mag_transport", "punt_mh"), mag.counter("mag_transport", "drop_punt_limit"),
              mag.tables.event_counts()[("mag_transport", "over_budget")])
    mag.tables.set_config(**(saved | {"punt_rate": 1, "punt_burst": 3}))     # 3 at once, then 1 a second
    os.sched_setaffinity(0, {min(cpus)})                                     # the budget is per CPU
    try:
        started = time.monotonic()
        verdicts = [mag.run(TRANSPORT, frame, "out0").action for _ in range(5)]
        refilled = int(time.monotonic() - started)        # a stalled machine: one more a second
    finally:
        os.sched_setaffinity(0, cpus)
        mag.tables.set_config(**saved)
    events = mag.drain_events()

    allowed = min(3 + refilled, 5)
    assert verdicts == ["drop"] * 5 and len(events) == allowed
    after = (mag.counter("mag_transport", "punt_mh"), mag.counter("mag_transport", "drop_punt_limit"),
             mag.tables.event_counts()[("mag_transport", "over_budget")])
    assert [a - b for a, b in zip(after, before)] == [allowed, 5 - allowed, 5 - allowed]
    assert mag.tables.get_config()["punt_rate"] == saved["punt_rate"] == 500


def test_signaling_for_the_mag_itself_in_udp_goes_to_the_stack(mag):
    # RFC 5844: a PBA arrives as IPv4/UDP/IPv6/MH; it must reach the daemon's
    # socket even before the LMA is a known peer.
    pba = outer4(LMA4, LOCAL4, IPv6(src=LMA6, dst=LOCAL6, nh=135) / HOTI, (5436, 5436))
    assert mag.run(TRANSPORT, from_next_hop(pba), "out0").action == "pass"


def test_plain_traffic_for_the_mag_goes_to_the_stack(mag):
    frame = from_next_hop(ping6(LMA6, LOCAL6))
    result = mag.run(TRANSPORT, frame, "out0")
    assert (result.action, result.packet) == ("pass", frame)


def test_outer_ipv4_fragment_is_handed_to_the_kernel(mag):
    serve_mn(mag, Tunnel(Encap.IP4, LOCAL4, LMA4))
    fragment = IP(src=LMA4, dst=LOCAL4, proto=41, flags="MF", id=5) / bytes(ping6(CN6, MN6))[:48]
    assert mag.run(TRANSPORT, from_next_hop(fragment), "out0").action == "pass"
    assert mag.counter("mag_transport", "pass_fragment") >= 1


def test_decapsulated_packet_with_expiring_hop_limit_goes_to_the_kernel(mag):
    serve_mn(mag, Tunnel(Encap.IP6, LOCAL6, LMA6))
    inner = ping6(CN6, MN6, hlim=1)
    result = mag.run(TRANSPORT, from_next_hop(outer6(LMA6, LOCAL6, inner)), "out0")
    assert result.action == "pass"
    assert result.packet == bytes(Ether(src="02:00:00:00:00:02", dst="02:00:00:00:bb:01") / inner)


def test_truncated_inner_header_is_dropped_as_malformed(mag):
    serve_mn(mag, Tunnel(Encap.IP6, LOCAL6, LMA6))
    frame = from_next_hop(IPv6(src=LMA6, dst=LOCAL6, nh=41) / bytes(ping6(CN6, MN6))[:20])
    assert mag.run(TRANSPORT, frame, "out0").action == "drop"
    assert mag.counter("mag_transport", "drop_malformed") >= 1


def test_a_responders_entry_sends_only_once_the_initiator_has_spoken(mag):
    """RO_RX_ONLY: installed before the BA reaches the initiator, the entry
    accepts the peer's tunnel at once but sends into it only after the
    peer's first packet proves the peer holds the pair as well."""
    from .packets import from_mn, toward_next_hop
    serve_mn(mag, Tunnel(Encap.IP6, LOCAL6, LMA6))
    mag.tables.set_tunnel(RO_TUNNEL, Tunnel(Encap.IP6, LOCAL6, PEER6))
    mag.tables.set_peer(PEER6, RO_TUNNEL, PeerKind.RO)
    mag.tables.set_ro(MN6, CN6, RO_TUNNEL, rx_only=True)
    reply = tcp6(MN6, CN6)

    before = mag.run("xdp_mag_access", from_mn(reply), "in0")
    first = mag.run(TRANSPORT, from_next_hop(outer6(PEER6, LOCAL6, tcp6(CN6, MN6))), "out0")
    after = mag.run("xdp_mag_access", from_mn(reply), "in0")

    assert before.packet == toward_next_hop(mag.mac("out0"), outer6(LOCAL6, LMA6, hop(reply)))   # LMA path
    assert first.action == "redirect"                                                            # accepted
    assert after.packet == toward_next_hop(mag.mac("out0"), outer6(LOCAL6, PEER6, hop(reply)))   # RO now
    assert mag.tables.ro_flags(MN6, CN6) == 0


def test_a_pair_both_mags_optimized_over_different_transports_accepts_both_tunnels(mag):
    """MAG2 reached us over IPv6 while our own exchange ran over IPv4 (we
    are an IPv4-transport MAG): the pair keeps both roles' tunnels, takes
    the initiator's for our traffic, accepts the peer's through either, and
    falls back to the other one when a role ends (sending into it once the
    peer has used it, as any responder's entry)."""
    from ipaddress import IPv4Address, IPv6Address

    from pmip6ctl.daemon.ro_entries import RoEntries
    from pmip6ctl.daemon.tunnels import TunnelRegistry
    from pmip6ctl.transport import UdpEndpoint
    from pmip6ctl.protocol.ro import RoInstalled, RoPair

    from .conftest import PEER4
    from .packets import from_mn, toward_next_hop
    serve_mn(mag, Tunnel(Encap.IP6, LOCAL6, LMA6))
    entries = RoEntries(mag.tables, TunnelRegistry(mag.tables), IPv6Address(LOCAL6), IPv4Address(LOCAL4))
    pair = RoPair(IPv6Address(MN6), IPv6Address(CN6))

    def installed(role, peer_ipv4):
        return RoInstalled(pair, IPv6Address(PEER6), peer_ipv4, expires=2e9, lifetime=400, mode="rr", role=role)

    entries.install(installed("initiator", UdpEndpoint(IPv4Address(PEER4), 0)))
    entries.install(installed("responder", None))
    from_peer6 = from_next_hop(outer6(PEER6, LOCAL6, tcp6(CN6, MN6)))
    from_peer4 = from_next_hop(outer4(PEER4, LOCAL4, tcp6(CN6, MN6)))
    reply = tcp6(MN6, CN6)

    accepted = [mag.run(TRANSPORT, frame, "out0").action for frame in (from_peer6, from_peer4)]
    sent_with_both = mag.run("xdp_mag_access", from_mn(reply), "in0").packet
    entries.remove(pair, "initiator", "test")
    accepted_after = [mag.run(TRANSPORT, frame, "out0").action for frame in (from_peer6, from_peer4)]
    sent_as_responder = mag.run("xdp_mag_access", from_mn(reply), "in0").packet

    assert accepted == ["redirect", "redirect"]
    assert sent_with_both == toward_next_hop(mag.mac("out0"), outer4(LOCAL4, PEER4, hop(reply)))
    assert sent_as_responder == toward_next_hop(mag.mac("out0"), outer6(LOCAL6, PEER6, hop(reply)))
    assert accepted_after == ["redirect", "drop"]
    assert {str(p.address) for p in mag.tables.list_peers()} == {LMA6, PEER6}


def test_an_ro_peer_never_takes_over_the_lma_tunnel(mag):
    """Issue 12, attack 5, at the last line: whatever a node core let
    through, the registry refuses an RO tunnel toward the LMA's address, and
    the LMA stays an LMA peer in the data plane."""
    from pmip6ctl.daemon.tunnels import TunnelConflict, TunnelRegistry

    registry = TunnelRegistry(mag.tables)
    lma = registry.acquire(Tunnel(Encap.IP6, LOCAL6, LMA6), "mn1", PeerKind.LMA)
    with pytest.raises(TunnelConflict, match=f"{LMA6} is in use as a LMA peer"):
        registry.acquire(Tunnel(Encap.IP6, LOCAL6, LMA6), "pair", PeerKind.RO)
    assert [(str(p.address), p.kind, p.tunnel_id) for p in mag.tables.list_peers()] == [(LMA6, PeerKind.LMA, lma)]
    registry.release(lma, "mn1")                  # once nobody uses it, the end is free for another kind
    ro = registry.acquire(Tunnel(Encap.IP6, LOCAL6, LMA6), "pair", PeerKind.RO)
    assert [(p.kind, p.tunnel_id) for p in mag.tables.list_peers()] == [(PeerKind.RO, ro)]


def test_a_stopped_pair_drains_its_peers_packets_in_flight(mag):
    """RO_DRAINING: after `ro stop` our traffic takes the LMA path at once,
    the peer's packets sent before our deregistration reached it still get
    in, and one of them does not turn sending back on (as RO_RX_ONLY would)."""
    from ipaddress import IPv6Address

    from pmip6ctl.daemon.ro_entries import RoEntries
    from pmip6ctl.daemon.tunnels import TunnelRegistry
    from pmip6ctl.protocol.ro import RoInstalled, RoPair

    from .packets import from_mn, toward_next_hop
    serve_mn(mag, Tunnel(Encap.IP6, LOCAL6, LMA6))
    later = []
    entries = RoEntries(mag.tables, TunnelRegistry(mag.tables), IPv6Address(LOCAL6),
                        later=lambda seconds, callback: later.append((seconds, callback)))
    pair = RoPair(IPv6Address(MN6), IPv6Address(CN6))
    entries.install(RoInstalled(pair, IPv6Address(PEER6), None, expires=2e9, lifetime=400, mode="rr",
                                role="initiator"))
    entries.remove(pair, "initiator", "stopped")
    reply, from_peer = tcp6(MN6, CN6), from_next_hop(outer6(PEER6, LOCAL6, tcp6(CN6, MN6)))

    in_flight = mag.run(TRANSPORT, from_peer, "out0").action
    ours = mag.run("xdp_mag_access", from_mn(reply), "in0").packet
    (seconds, drained), = later
    drained()
    after = mag.run(TRANSPORT, from_peer, "out0").action

    assert in_flight == "redirect"                                                            # let in
    assert ours == toward_next_hop(mag.mac("out0"), outer6(LOCAL6, LMA6, hop(reply)))        # LMA path
    assert seconds == 2.0 and after == "drop"                                                 # then gone
    assert {str(p.address) for p in mag.tables.list_peers()} == {LMA6}
    # ended by the peer (its deregistration): drained all the same, its last
    # packets and its BU may arrive in either order
    entries.install(RoInstalled(pair, IPv6Address(PEER6), None, expires=2e9, lifetime=400, mode="rr",
                                role="initiator"))
    entries.remove(pair, "initiator", "deregistered_by_peer")
    assert mag.run(TRANSPORT, from_peer, "out0").action == "redirect"
    assert len(later) == 2
    later[1][1]()
    assert mag.tables.list_ro() == []


def test_a_responder_entry_told_the_peer_may_be_gone_sends_by_the_lma_until_the_peer_is_heard(mag):
    """An unsigned Binding Error (RoSendOnlyOnceHeard): the entry goes back to
    RO_RX_ONLY. Our packets take the LMA path; the peer's next tunnelled
    packet turns sending back on. Nothing is removed."""
    from ipaddress import IPv6Address

    from pmip6ctl.daemon.ro_entries import RoEntries
    from pmip6ctl.daemon.tunnels import TunnelRegistry
    from pmip6ctl.protocol.ro import RoInstalled, RoPair

    from .packets import from_mn, toward_next_hop
    serve_mn(mag, Tunnel(Encap.IP6, LOCAL6, LMA6))
    entries = RoEntries(mag.tables, TunnelRegistry(mag.tables), IPv6Address(LOCAL6))
    pair = RoPair(IPv6Address(MN6), IPv6Address(CN6))
    entries.install(RoInstalled(pair, IPv6Address(PEER6), None, expires=2e9, lifetime=400, mode="rr",
                                role="responder"))
    reply, from_peer = tcp6(MN6, CN6), from_next_hop(outer6(PEER6, LOCAL6, tcp6(CN6, MN6)))
    by_lma = toward_next_hop(mag.mac("out0"), outer6(LOCAL6, LMA6, hop(reply)))
    by_ro = toward_next_hop(mag.mac("out0"), outer6(LOCAL6, PEER6, hop(reply)))

    assert mag.run(TRANSPORT, from_peer, "out0").action == "redirect"            # heard: RX_ONLY cleared
    assert mag.run("xdp_mag_access", from_mn(reply), "in0").packet == by_ro
    assert entries.send_only_once_heard(pair)
    assert mag.run("xdp_mag_access", from_mn(reply), "in0").packet == by_lma      # not heard since
    assert mag.run(TRANSPORT, from_peer, "out0").action == "redirect"
    assert mag.run("xdp_mag_access", from_mn(reply), "in0").packet == by_ro       # heard again
    assert len(mag.tables.list_ro()) == 1


def test_an_ro_peers_packets_for_an_mn_that_left_go_to_its_anchor(mag):
    """bpf/handover.h, the old MAG's side: the MN left (its entry gone), the
    pair still drains here, and the peer has not heard yet. With the handover
    aids on, its packets are decapsulated and handed to the kernel, which
    routes them toward the MN's prefix (the LMA, which tunnels them to the
    new MAG); off, or from the LMA itself (they would come straight back),
    or for a pair we do not hold, they are dropped."""
    from ipaddress import IPv6Address

    from pmip6ctl.daemon.ro_entries import RoEntries
    from pmip6ctl.daemon.tunnels import TunnelRegistry
    from pmip6ctl.protocol.ro import RoInstalled, RoPair

    serve_mn(mag, Tunnel(Encap.IP6, LOCAL6, LMA6))
    entries = RoEntries(mag.tables, TunnelRegistry(mag.tables), IPv6Address(LOCAL6), later=lambda *args: None)
    pair = RoPair(IPv6Address(MN6), IPv6Address(CN6))
    entries.install(RoInstalled(pair, IPv6Address(PEER6), None, expires=2e9, lifetime=400, mode="quick",
                                role="responder"))
    entries.remove(pair, "responder", "mn_detached")                 # the MN left: draining
    mag.tables.remove_mn(MN_PREFIX)
    inner = tcp6(CN6, MN6)
    from_peer = from_next_hop(outer6(PEER6, LOCAL6, inner))
    from_lma = from_next_hop(outer6(LMA6, LOCAL6, inner))
    stranger = from_next_hop(outer6(PEER6, LOCAL6, tcp6("2001:db8:200::99", MN6)))
    saved = mag.tables.get_config()
    try:
        mag.tables.set_config(**(saved | {"handover": False}))
        assert mag.run(TRANSPORT, from_peer, "out0").action == "drop"
        mag.tables.set_config(**(saved | {"handover": True}))
        before = mag.counter("mag_transport", "pass_departed")
        handed = mag.run(TRANSPORT, from_peer, "out0")
        assert handed.action == "pass" and bytes(handed.packet)[14:] == bytes(inner)    # decapsulated, as it was
        assert mag.counter("mag_transport", "pass_departed") == before + 1
        assert mag.run(TRANSPORT, from_lma, "out0").action == "drop"
        assert mag.run(TRANSPORT, stranger, "out0").action == "drop"                   # a pair we do not hold
        assert mag.counter("mag_transport", "pass_departed") == before + 1
    finally:
        mag.tables.set_config(**saved)
