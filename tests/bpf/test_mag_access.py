"""MAG access ingress: packets from mobile nodes, through BPF_PROG_TEST_RUN."""

import subprocess

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop
from scapy.layers.l2 import ARP, Dot1Q, Ether

from pmip6ctl import netns
from pmip6ctl.dataplane import Encap, Tunnel

from .conftest import NS, CN4, CN6, LMA4, LMA6, LOCAL4, LOCAL6, MN4, MN6, MN_MAC as MN_MAC_, MN_PREFIX, PEER6
from .packets import ACCESS_MAC as ACCESS_MAC_, from_mn, hop, outer4, outer6, ping4, ping6, tcp6, toward_next_hop

pytestmark = pytest.mark.root
ACCESS = "xdp_mag_access"
# a PBU's Mobility Header: payload proto 59, length 1 (16 octets), type 5, checksum 0, sequence 1, A|P
MH_PBU = bytes([59, 1, 5, 0, 0, 0, 0, 1, 0x82, 0, 0, 10]) + bytes(4)


def attach_mn(node, tunnel: Tunnel, tunnel_id=1, ifindex=0):
    node.tables.set_tunnel(tunnel_id, tunnel)
    node.tables.set_mn(MN_PREFIX, tunnel_id, ifindex=ifindex)
    node.tables.set_mn(f"{MN4}/32", tunnel_id, ifindex=ifindex)


@pytest.mark.parametrize("encap, inner, outer", [
    (Encap.IP6, ping6(MN6, CN6), lambda i: outer6(LOCAL6, LMA6, i)),
    (Encap.IP6, ping4(MN4, CN4), lambda i: outer6(LOCAL6, LMA6, i)),
    (Encap.IP4, ping6(MN6, CN6), lambda i: outer4(LOCAL4, LMA4, i)),
    (Encap.IP4, ping4(MN4, CN4), lambda i: outer4(LOCAL4, LMA4, i)),
    (Encap.UDP4, ping6(MN6, CN6), lambda i: outer4(LOCAL4, LMA4, i, (5436, 5436))),
    (Encap.UDP4, ping4(MN4, CN4), lambda i: outer4(LOCAL4, LMA4, i, (5436, 5436))),
], ids=["6in6", "4in6", "6in4", "4in4", "6inudp4", "4inudp4"])
def test_registered_mn_is_encapsulated_toward_its_lma(mag, encap, inner, outer):
    local, remote = (LOCAL6, LMA6) if encap == Encap.IP6 else (LOCAL4, LMA4)
    attach_mn(mag, Tunnel(encap, local, remote, 5436, 5436))
    before = mag.counter("mag_access", "fwd_encap_pmip")

    result = mag.run(ACCESS, from_mn(inner), "in0")

    assert result.action == "redirect"
    assert result.packet == toward_next_hop(mag.mac("out0"), outer(hop(inner)))
    assert mag.counter("mag_access", "fwd_encap_pmip") == before + 1


def test_ro_entry_wins_over_the_lma_tunnel(mag):
    attach_mn(mag, Tunnel(Encap.IP6, LOCAL6, LMA6))
    mag.tables.set_tunnel(2, Tunnel(Encap.IP6, LOCAL6, PEER6))
    mag.tables.set_ro(MN6, CN6, 2)
    inner = tcp6(MN6, CN6)

    result = mag.run(ACCESS, from_mn(inner), "in0")

    assert result.action == "redirect"
    assert result.packet == toward_next_hop(mag.mac("out0"), outer6(LOCAL6, PEER6, hop(inner)))


def test_ro_entry_is_per_pair(mag):
    attach_mn(mag, Tunnel(Encap.IP6, LOCAL6, LMA6))
    mag.tables.set_tunnel(2, Tunnel(Encap.IP6, LOCAL6, PEER6))
    mag.tables.set_ro(MN6, CN6, 2)
    other = ping6(MN6, "2001:db8:200:1::99")

    result = mag.run(ACCESS, from_mn(other), "in0")

    assert result.packet == toward_next_hop(mag.mac("out0"), outer6(LOCAL6, LMA6, hop(other)))


@pytest.mark.parametrize("inner", [ping6("2001:db8:999::1", CN6), ping4("198.51.100.99", CN4)], ids=["ipv6", "ipv4"])
def test_a_source_of_no_attached_mn_is_dropped_and_counted(mag, inner):
    """An access link speaks for its own MNs only (issue 12): a spoofed or
    unregistered source never reaches the kernel's forwarding."""
    attach_mn(mag, Tunnel(Encap.IP6, LOCAL6, LMA6))
    before = mag.counter("mag_access", "drop_unknown_source")
    assert mag.run(ACCESS, from_mn(inner), "in0").action == "drop"
    assert mag.run(ACCESS, from_mn(inner), "in0").action == "drop"
    assert mag.counter("mag_access", "drop_unknown_source") == before + 2
    # the daemon hears once per flow and interval, with the sender's MAC: an MN
    # it forgot (a restart without state) attaches again (issue 13, item 7)
    (notice,) = mag.drain_events()
    assert (notice.kind, str(notice.src), notice.mac, notice.ifindex) == (
        "unknown_source", inner.src, MN_MAC_, mag.ifindex["in0"])


@pytest.mark.parametrize("inner", [ping6("2001:db8:999::1", CN6), ping4("198.51.100.99", CN4)], ids=["ipv6", "ipv4"])
def test_with_the_handover_buffer_on_an_unknown_sources_frames_go_whole_to_the_daemon(mag, inner):
    """bpf/handover.h: each frame, not a notice per flow, so that the MAG can
    hold an arriving MN's packets until its PBA; the punt budget bounds them."""
    attach_mn(mag, Tunnel(Encap.IP6, LOCAL6, LMA6))
    saved = mag.tables.get_config()
    mag.tables.set_config(**(saved | {"handover": True, "punt_rate": 1, "punt_burst": 2}))
    try:
        before = mag.counter("mag_access", "punt_held")
        frame = from_mn(inner)
        results = [mag.run(ACCESS, frame, "in0").action for _ in range(3)]
        assert results == ["drop", "drop", "drop"]                  # handed over (or not), never forwarded
        assert mag.counter("mag_access", "punt_held") == before + 2
        assert mag.counter("mag_access", "drop_punt_limit") >= 1    # the third: over the budget
        held = mag.drain_events()
        assert [(e.kind, e.ifindex, e.frame) for e in held] == [("held", mag.ifindex["in0"], frame)] * 2
    finally:
        mag.tables.set_config(**saved)


def test_an_mns_source_from_another_link_is_dropped(mag):
    """MN1's address, sent on a link MN1 is not attached on."""
    attach_mn(mag, Tunnel(Encap.IP6, LOCAL6, LMA6), ifindex=mag.ifindex["in0"])
    before = mag.counter("mag_access", "drop_wrong_link")
    assert mag.run(ACCESS, from_mn(ping6(MN6, CN6)), "out0").action == "drop"
    assert mag.counter("mag_access", "drop_wrong_link") == before + 1
    assert mag.run(ACCESS, from_mn(ping6(MN6, CN6)), "in0").action == "redirect"     # its own link: fine


@pytest.mark.parametrize("inner", [
    IPv6(src=MN6, dst=LMA6, nh=135) / bytes(MH_PBU),
    IP(src=MN4, dst=LMA4) / UDP(sport=5436, dport=5436) / IPv6(src=LOCAL6, dst=LMA6, nh=135) / bytes(MH_PBU),
    IP(src=MN4, dst=LMA4, proto=41) / IPv6(src=LOCAL6, dst=LMA6, nh=135) / bytes(MH_PBU),
    IP(src=MN4, dst=LMA4, flags="MF") / UDP(sport=5436, dport=5436) / IPv6(src=LOCAL6, dst=LMA6, nh=135)
    / bytes(MH_PBU),
    IP(src=MN4, dst=LMA4, proto=41, flags="MF") / IPv6(src=LOCAL6, dst=LMA6, nh=135) / bytes(MH_PBU),
], ids=["ipv6 mh", "ipv4 udp 5436", "ipv4 proto 41", "ipv4 udp 5436, first fragment",
        "ipv4 proto 41, first fragment"])
def test_mobility_signaling_from_an_mn_is_never_forwarded(mag, inner):
    """Attack 3 of issue 12: an MN sends a PBU with a MAG's source; it dies on the access link."""
    attach_mn(mag, Tunnel(Encap.IP6, LOCAL6, LMA6))
    before = mag.counter("mag_access", "drop_mn_signaling")
    assert mag.run(ACCESS, from_mn(inner), "in0").action == "drop"
    assert mag.counter("mag_access", "drop_mn_signaling") == before + 1


def test_a_later_ipv4_fragment_of_an_mn_is_forwarded(mag):
    """No header to check in it; without its first fragment (checked above) it
    never reassembles into a message."""
    attach_mn(mag, Tunnel(Encap.IP6, LOCAL6, LMA6))
    later = IP(src=MN4, dst=CN4, proto=17, frag=100) / bytes(64)
    assert mag.run(ACCESS, from_mn(later), "in0").action == "redirect"


@pytest.mark.parametrize("inner", [ping6(MN6, CN6, hlim=1), ping4(MN4, CN4, ttl=1)], ids=["ipv6", "ipv4"])
def test_expiring_hop_limit_goes_to_the_kernel_for_icmp(mag, inner):
    attach_mn(mag, Tunnel(Encap.IP6, LOCAL6, LMA6))
    frame = from_mn(inner)
    before = mag.counter("mag_access", "pass_hop_limit")

    result = mag.run(ACCESS, frame, "in0")

    assert (result.action, result.packet) == ("pass", frame)
    assert mag.counter("mag_access", "pass_hop_limit") == before + 1


@pytest.mark.parametrize("dst", ["ff02::2", "fe80::1"])
def test_link_scoped_traffic_stays_local(mag, dst):
    attach_mn(mag, Tunnel(Encap.IP6, LOCAL6, LMA6))
    frame = from_mn(ping6(MN6, dst))
    assert mag.run(ACCESS, frame, "in0").action == "pass"


def test_missing_tunnel_is_counted_and_dropped(mag):
    mag.tables.set_mn(MN_PREFIX, 42)
    result = mag.run(ACCESS, from_mn(ping6(MN6, CN6)), "in0")
    assert result.action == "drop"
    assert mag.counter("mag_access", "drop_no_tunnel") >= 1


def test_ipv6_extension_headers_and_fragments_are_tunnelled_whole(mag):
    attach_mn(mag, Tunnel(Encap.IP6, LOCAL6, LMA6))
    for inner in (IPv6(src=MN6, dst=CN6) / IPv6ExtHdrHopByHop() / (b"x" * 8),
                  IPv6(src=MN6, dst=CN6) / IPv6ExtHdrFragment(offset=0, m=1, id=9) / (b"y" * 16)):
        result = mag.run(ACCESS, from_mn(inner), "in0")
        assert result.packet == toward_next_hop(mag.mac("out0"), outer6(LOCAL6, LMA6, hop(inner)))


def test_ipv4_options_are_tunnelled_whole(mag):
    attach_mn(mag, Tunnel(Encap.IP6, LOCAL6, LMA6))
    inner = IP(bytes(IP(src=MN4, dst=CN4, options=[b"\x94\x04\x00\x00"]) / b"payload!"))
    result = mag.run(ACCESS, from_mn(inner), "in0")
    assert result.packet == toward_next_hop(mag.mac("out0"), outer6(LOCAL6, LMA6, hop(inner)))


MALFORMED = {
    # (BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header, as
    # no driver delivers them; the shortest we can feed is the header alone)
    "ethernet header only": (bytes(Ether(dst="02:00:00:00:aa:01", type=0x86DD)), "drop", "drop_malformed"),
    "truncated ipv6": (from_mn(ping6(MN6, CN6))[:14 + 30], "drop", "drop_malformed"),
    "ipv6 payload length past the frame": (
        bytes(Ether(dst="02:00:00:00:aa:01") / IPv6(src=MN6, dst=CN6, plen=500) / (b"z" * 20)), "drop", "drop_malformed"),
    "truncated ipv4": (from_mn(ping4(MN4, CN4))[:14 + 12], "drop", "drop_malformed"),
    "ipv4 ihl below 5": (
        bytes(Ether(dst="02:00:00:00:aa:01") / IP(src=MN4, dst=CN4, ihl=4) / (b"z" * 20)), "drop", "drop_malformed"),
    "ethertype says ipv6, version says 4": (
        bytes(Ether(dst="02:00:00:00:aa:01", type=0x86DD) / IP(src=MN4, dst=CN4) / (b"z" * 40)), "drop", "drop_malformed"),
    "vlan tagged": (bytes(Ether(dst="02:00:00:00:aa:01") / Dot1Q(vlan=5) / ping6(MN6, CN6)), "pass", "pass_not_ip"),
    "arp": (bytes(Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=MN4, pdst="198.51.100.1")), "pass", "pass_not_ip"),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_frames_get_their_own_verdict_and_reason(mag, name):
    attach_mn(mag, Tunnel(Encap.IP6, LOCAL6, LMA6))
    frame, action, reason = MALFORMED[name]
    before = mag.counter("mag_access", reason)

    result = mag.run(ACCESS, frame, "in0")

    assert result.action == action
    assert mag.counter("mag_access", reason) == before + 1


def test_unoptimized_flow_raises_one_ro_trigger_at_the_threshold(mag):
    attach_mn(mag, Tunnel(Encap.IP6, LOCAL6, LMA6))
    frame = from_mn(ping6(MN6, CN6))          # the session sets the threshold to 3

    for _ in range(2):
        mag.run(ACCESS, frame, "in0")
    assert mag.drain_events() == []
    for _ in range(5):
        mag.run(ACCESS, frame, "in0")
    events = mag.drain_events()

    assert len(events) == 1                   # rate-limited: one per interval
    (event,) = events
    assert (event.kind, str(event.src), str(event.dst), event.packets) == ("flow_trigger", MN6, CN6, 3)


def test_route_optimized_flow_raises_no_trigger(mag):
    attach_mn(mag, Tunnel(Encap.IP6, LOCAL6, LMA6))
    mag.tables.set_tunnel(2, Tunnel(Encap.IP6, LOCAL6, PEER6))
    mag.tables.set_ro(MN6, CN6, 2)
    for _ in range(5):
        mag.run(ACCESS, from_mn(ping6(MN6, CN6)), "in0")
    assert mag.drain_events() == []


def test_repointed_tunnel_takes_its_new_next_hop_at_once(mag):
    """The per-CPU next-hop cache must not outlive a tunnel change."""
    attach_mn(mag, Tunnel(Encap.IP6, LOCAL6, LMA6))
    mag.run(ACCESS, from_mn(ping6(MN6, CN6)), "in0")       # caches out0's next hop
    elsewhere = "2001:db8:100:1::77"                        # routed out in0, toward the MN side
    mag.tables.set_tunnel(1, Tunnel(Encap.IP6, LOCAL6, elsewhere))
    inner = ping6(MN6, CN6)

    result = mag.run(ACCESS, from_mn(inner), "in0")

    # in0 has no neighbour for that address: the FIB is asked again and says so
    assert result.action == "pass"
    assert mag.counter("mag_access", "pass_no_neigh") >= 1


def test_lapsed_ro_entry_falls_back_to_the_lma_tunnel(mag):
    """The data plane honours the binding lifetime even with no daemon."""
    import time
    attach_mn(mag, Tunnel(Encap.IP6, LOCAL6, LMA6))
    mag.tables.set_tunnel(2, Tunnel(Encap.IP6, LOCAL6, PEER6))
    mag.tables.set_ro(MN6, CN6, 2, expires_ns=time.monotonic_ns() - 1_000_000_000)
    inner = ping6(MN6, CN6)

    result = mag.run(ACCESS, from_mn(inner), "in0")

    assert result.packet == toward_next_hop(mag.mac("out0"), outer6(LOCAL6, LMA6, hop(inner)))


def test_an_egress_missing_from_the_devmap_goes_to_the_kernel_counted_and_not_as_forwarded(mag):
    """xdp-forward's rule: the egress is checked in the devmap before the
    redirect; a link the daemon has not heard of yet is a counted pass, not
    a silent bpf_redirect, and the packet is not counted as forwarded."""
    attach_mn(mag, Tunnel(Encap.IP6, LOCAL6, LMA6))
    inner = ping6(MN6, CN6)
    out0 = mag.ifindex["out0"]
    mag.tables.remove_tx_port(out0)
    forwarded = mag.counter("mag_access", "fwd_encap_pmip")
    passed = mag.counter("mag_access", "pass_no_egress")
    try:
        result = mag.run(ACCESS, from_mn(inner), "in0")
        assert result.action == "pass"
        # encapsulated, its MACs as they came: the kernel routes the outer packet
        assert result.packet == bytes(Ether(src=MN_MAC_, dst=ACCESS_MAC_) / outer6(LOCAL6, LMA6, hop(inner)))
        assert mag.counter("mag_access", "pass_no_egress") == passed + 1
        assert mag.counter("mag_access", "fwd_encap_pmip") == forwarded
    finally:
        with netns.entered(NS):             # the devmap takes devices of the caller's namespace
            assert mag.tables.set_tx_ports([out0]) == []
    assert mag.run(ACCESS, from_mn(inner), "in0").action == "redirect"
    assert mag.counter("mag_access", "fwd_encap_pmip") == forwarded + 1


def test_any_ifindex_fits_the_devmap(mag):
    """A devmap keyed by ifindex, not indexed by it: a link made long after
    the others (a large ifindex, as `lab move` makes them) is an egress too."""
    subprocess.run(["ip", "-n", NS, "link", "add", "big0", "index", "70000", "type", "veth", "peer", "name",
                    "big0p"], check=True)
    try:
        with netns.entered(NS):
            assert mag.tables.set_tx_ports([70000]) == []
            assert mag.tables.set_tx_ports([70001]) == [70001]       # no such device: refused, said
        assert 70000 in mag.tables.list_tx_ports()
    finally:
        mag.tables.remove_tx_port(70000)
        subprocess.run(["ip", "-n", NS, "link", "del", "big0"], check=True)
