"""What a tunnel keeps of the packets it carries (issue 13, items 3 and 4),
through BPF_PROG_TEST_RUN:
- Path MTU: a packet too big for its tunnel gets an ICMPv6 Packet Too Big
  (or ICMP fragmentation needed) back, built in XDP, within a budget;
- DSCP and ECN: copied into the outer header (RFC 6040 normal mode), and
  the outer ECN combined into the inner one at the exit (RFC 6040 §4.2);
- the outer IPv6 flow label from the inner flow (RFC 6438).
Every ICMP error is parsed back by scapy, whose checksums are the judge."""

import subprocess

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6PacketTooBig, IPv6
from scapy.layers.inet6 import in6_chksum
from scapy.layers.l2 import Ether
from scapy.utils import checksum

from pmip6ctl.dataplane import Encap, PeerKind, Tunnel

from .conftest import CN4, CN6, LMA4, LMA6, LOCAL4, LOCAL6, MN4, MN6, MN_MAC, MN_PREFIX, NS, PEER6
from .packets import ACCESS_MAC, flow_label, from_mn, from_next_hop, hop, ping4, ping6

pytestmark = pytest.mark.root
ACCESS, TRANSPORT, LMA = "xdp_mag_access", "xdp_mag_transport", "xdp_lma"
NOT_ECT, ECT1, ECT0, CE = 0, 1, 2, 3


def attach_mn(node, tunnel: Tunnel, tunnel_id=1):
    node.tables.set_tunnel(tunnel_id, tunnel)
    node.tables.set_mn(MN_PREFIX, tunnel_id)
    node.tables.set_mn(f"{MN4}/32", tunnel_id)


def checksums_hold(frame) -> bool:
    """Every checksum of the frame verifies over the octets as sent (scapy's
    checksum routines; a correct one sums to zero)."""
    ok = True
    if frame.haslayer(IP):
        ip = frame[IP]
        ok &= checksum(bytes(ip)[:ip.ihl * 4]) == 0
        if ip.proto == 1:
            ok &= checksum(bytes(ip)[ip.ihl * 4:ip.len]) == 0
    elif frame[IPv6].nh == 58:
        ip6 = frame[IPv6]
        ok &= in6_chksum(58, ip6, bytes(ip6)[40:40 + ip6.plen]) == 0
    return bool(ok)


@pytest.fixture
def config(mag):
    """Restores the data-plane config a test changes."""
    saved = mag.tables.get_config()
    yield mag.tables
    mag.tables.set_config(**saved)


# --- Path MTU ---------------------------------------------------------------

def test_ipv6_too_big_for_the_tunnel_gets_a_packet_too_big_naming_the_room_left(mag):
    attach_mn(mag, Tunnel(Encap.IP6, LOCAL6, LMA6))
    inner = IPv6(src=MN6, dst=CN6) / UDP(sport=4000, dport=5000) / (b"m" * 1432)   # 1480 + 40 > 1500
    before = mag.counter("mag_access", "icmp_too_big")

    result = mag.run(ACCESS, from_mn(inner), "in0")

    assert result.action == "redirect"
    error = Ether(result.packet)
    assert (error.src, error.dst) == (ACCESS_MAC, MN_MAC)          # back where it came from
    assert (error[IPv6].src, error[IPv6].dst, error[IPv6].nh) == (LOCAL6, MN6, 58)
    ptb = error[ICMPv6PacketTooBig]
    assert (ptb.type, ptb.code, ptb.mtu) == (2, 0, 1500 - 40)
    assert bytes(ptb.payload)[:256] == bytes(hop(inner))[:256]     # quotes the packet as it was
    assert len(bytes(ptb.payload)) == 256
    assert checksums_hold(error)
    damaged = bytearray(result.packet)
    damaged[-1] ^= 1
    assert not checksums_hold(Ether(bytes(damaged)))                 # the check can fail
    assert mag.counter("mag_access", "icmp_too_big") == before + 1


@pytest.mark.parametrize("encap, mtu", [(Encap.IP6, 1460), (Encap.IP4, 1480), (Encap.UDP4, 1472)])
def test_ipv4_with_df_too_big_for_the_tunnel_gets_fragmentation_needed(mag, encap, mtu):
    local, remote = (LOCAL6, LMA6) if encap == Encap.IP6 else (LOCAL4, LMA4)
    attach_mn(mag, Tunnel(encap, local, remote, 5436, 5436))
    inner = IP(src=MN4, dst=CN4, flags="DF") / TCP(sport=40000, dport=80) / (b"m" * (mtu + 1 - 40))

    result = mag.run(ACCESS, from_mn(inner), "in0")

    assert result.action == "redirect"
    error = Ether(result.packet)
    # its source: our end of an IPv4 tunnel; over IPv6 transport the packet's destination
    assert (error[IP].src, error[IP].dst) == (LOCAL4 if encap != Encap.IP6 else CN4, MN4)
    icmp = error[ICMP]
    assert (icmp.type, icmp.code, icmp.nexthopmtu) == (3, 4, mtu)
    assert bytes(icmp.payload)[:20] == bytes(hop(inner))[:20]
    assert checksums_hold(error)
    damaged = bytearray(result.packet)
    damaged[-1] ^= 1
    assert not checksums_hold(Ether(bytes(damaged)))


def test_ipv4_without_df_too_big_for_the_tunnel_is_dropped_and_counted(mag):
    attach_mn(mag, Tunnel(Encap.IP6, LOCAL6, LMA6))
    inner = IP(src=MN4, dst=CN4) / UDP(sport=4000, dport=5000) / (b"m" * 1460)
    before = mag.counter("mag_access", "drop_frag_needed")

    result = mag.run(ACCESS, from_mn(inner), "in0")

    assert result.action == "drop"
    assert mag.counter("mag_access", "drop_frag_needed") == before + 1


def test_a_small_path_mtu_on_the_route_to_the_peer_is_the_one_named(mag):
    """The MTU comes from the FIB's route to the tunnel's far end, not the link's."""
    attach_mn(mag, Tunnel(Encap.IP6, LOCAL6, LMA6))
    mag.tables.set_tunnel(2, Tunnel(Encap.IP6, LOCAL6, PEER6))
    mag.tables.set_ro(MN6, CN6, 2)
    route = f"{PEER6}/128 via 2001:db8:ffff:1::2 dev out0 mtu lock 1400"   # the FIB honours a locked MTU
    subprocess.run(["ip", "-n", NS, "-6", "route", "add", *route.split()], check=True)
    try:
        fits = mag.run(ACCESS, from_mn(IPv6(src=MN6, dst=CN6) / (b"m" * 1320)), "in0")     # 1360 + 40
        big = mag.run(ACCESS, from_mn(IPv6(src=MN6, dst=CN6) / (b"m" * 1321)), "in0")
    finally:
        subprocess.run(["ip", "-n", NS, "-6", "route", "del", *route.split()], check=True)

    assert fits.action == "redirect"
    assert big.action == "redirect" and Ether(big.packet)[ICMPv6PacketTooBig].mtu == 1360


def test_the_lma_tells_a_correspondent_whose_packets_are_too_big_for_the_mag_tunnel(lma):
    lma.tables.set_tunnel(1, Tunnel(Encap.IP4, LOCAL4, "203.0.113.9"))
    lma.tables.set_peer("203.0.113.9", 1, PeerKind.MAG)
    lma.tables.set_mn(MN_PREFIX, 1)
    inner = IPv6(src=CN6, dst=MN6) / UDP(sport=4000, dport=5000) / (b"c" * 1452)        # ping -M do -s 1452

    result = lma.run(LMA, from_next_hop(inner), "out0")

    assert result.action == "redirect"
    error = Ether(result.packet)
    # an IPv4 tunnel has no IPv6 end of ours: the error comes from the packet's destination
    assert (error[IPv6].src, error[IPv6].dst, error[ICMPv6PacketTooBig].mtu) == (MN6, CN6, 1480)
    assert checksums_hold(error)
    assert lma.counter("lma", "icmp_too_big") >= 1


def test_packet_too_big_answers_stay_within_the_icmp_budget(mag, config):
    attach_mn(mag, Tunnel(Encap.IP6, LOCAL6, LMA6))
    settings = config.get_config()
    config.set_config(**{**settings, "icmp_rate": 1, "icmp_burst": 3})
    big = from_mn(IPv6(src=MN6, dst=CN6) / (b"m" * 1500))
    before = mag.counter("mag_access", "drop_icmp_limit")

    actions = [mag.run(ACCESS, big, "in0").action for _ in range(10)]

    # test runs are per CPU and within one second: the burst, then nothing
    assert actions.count("redirect") <= 3 and actions.count("drop") >= 7
    assert mag.counter("mag_access", "drop_icmp_limit") >= before + 7


# --- DSCP and ECN -------------------------------------------------------------

@pytest.mark.parametrize("tclass", [0x00, 0xb8, 0xb9, 0xba, 0x2b])
def test_encapsulation_copies_dscp_and_ecn_into_the_outer_header(mag, tclass):
    attach_mn(mag, Tunnel(Encap.IP6, LOCAL6, LMA6))
    mag.tables.set_tunnel(2, Tunnel(Encap.IP4, LOCAL4, LMA4))
    mag.tables.set_mn(f"{MN4}/32", 2)
    v6 = IPv6(src=MN6, dst=CN6, tc=tclass) / UDP(sport=1, dport=2)
    v4 = IP(src=MN4, dst=CN4, tos=tclass) / UDP(sport=1, dport=2)

    over6 = Ether(mag.run(ACCESS, from_mn(v6), "in0").packet)
    over4 = Ether(mag.run(ACCESS, from_mn(v4), "in0").packet)

    assert over6[IPv6].tc == tclass
    assert over4[IP].tos == tclass and checksums_hold(over4)


# RFC 6040 §4.2, Figure 4: (inner, outer) -> what leaves the tunnel, None = drop
DECAP = {
    (NOT_ECT, NOT_ECT): NOT_ECT, (NOT_ECT, ECT0): NOT_ECT, (NOT_ECT, ECT1): NOT_ECT, (NOT_ECT, CE): None,
    (ECT0, NOT_ECT): ECT0, (ECT0, ECT0): ECT0, (ECT0, ECT1): ECT1, (ECT0, CE): CE,
    (ECT1, NOT_ECT): ECT1, (ECT1, ECT0): ECT1, (ECT1, ECT1): ECT1, (ECT1, CE): CE,
    (CE, NOT_ECT): CE, (CE, ECT0): CE, (CE, ECT1): CE, (CE, CE): CE,
}


def serve_mn(node):
    node.tables.set_tunnel(1, Tunnel(Encap.IP6, LOCAL6, LMA6))
    node.tables.set_peer(LMA6, 1, PeerKind.LMA)
    node.tables.set_mn(MN_PREFIX, 1)
    node.tables.set_mn(f"{MN4}/32", 1)


@pytest.mark.parametrize("inner_ecn, outer_ecn", sorted(DECAP), ids=lambda v: str(v))
def test_decapsulation_combines_ecn_as_rfc_6040_says(mag, inner_ecn, outer_ecn):
    serve_mn(mag)
    inner = IPv6(src=CN6, dst=MN6, tc=0x28 | inner_ecn) / UDP(sport=1, dport=2)
    frame = from_next_hop(IPv6(src=LMA6, dst=LOCAL6, nh=41, tc=outer_ecn) / inner)
    before = mag.counter("mag_transport", "drop_ecn_not_ect")

    result = mag.run(TRANSPORT, frame, "out0")

    expected = DECAP[inner_ecn, outer_ecn]
    if expected is None:
        assert result.action == "drop"
        assert mag.counter("mag_transport", "drop_ecn_not_ect") == before + 1
    else:
        assert result.action == "redirect"
        assert Ether(result.packet)[IPv6].tc == 0x28 | expected    # DSCP kept, ECN combined


@pytest.mark.parametrize("inner_ecn, outer_ecn", [(ECT0, CE), (ECT0, ECT1), (NOT_ECT, CE)])
def test_an_ipv4_inner_header_takes_the_ecn_mark_with_a_correct_checksum(mag, inner_ecn, outer_ecn):
    serve_mn(mag)
    inner = IP(src=CN4, dst=MN4, tos=0x28 | inner_ecn) / UDP(sport=1, dport=2)
    frame = from_next_hop(IPv6(src=LMA6, dst=LOCAL6, nh=4, tc=outer_ecn) / inner)

    result = mag.run(TRANSPORT, frame, "out0")

    expected = DECAP[inner_ecn, outer_ecn]
    if expected is None:
        assert result.action == "drop"
    else:
        delivered = Ether(result.packet)
        assert delivered[IP].tos == 0x28 | expected and checksums_hold(delivered)


# --- flow labels --------------------------------------------------------------

def test_the_outer_flow_label_follows_the_inner_flow(mag):
    attach_mn(mag, Tunnel(Encap.IP6, LOCAL6, LMA6))

    def label(inner):
        return Ether(mag.run(ACCESS, from_mn(inner), "in0").packet)[IPv6].fl

    flows = [IPv6(src=MN6, dst=CN6) / UDP(sport=port, dport=443) for port in range(40000, 40016)]
    labels = [label(f) for f in flows]

    assert labels == [flow_label(f) for f in flows]            # as docs/protocol.md says
    assert labels == [label(f) for f in flows]                 # stable per flow
    assert len(set(labels)) >= 14 and 0 not in labels          # flows spread, never "no label"
    assert label(ping4(MN4, CN4)) == flow_label(ping4(MN4, CN4))
    assert label(ping6(MN6, CN6)) != 0
