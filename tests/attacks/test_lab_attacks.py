"""Issue 12's attacks against the running daemons in the lab. Each forged
packet is sent as an attacker would send it, and the test proves nothing
changed: the binding is where it was, the victim's traffic still arrives,
and a counter names the refusal."""

from __future__ import annotations

import ipaddress
import random
import socket
import time

import pytest
from scapy.layers.inet import UDP
from scapy.layers.inet6 import ICMPv6ND_RS, ICMPv6NDOptSrcLLAddr, IPv6
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap
from scapy.packet import Raw

from pmip6ctl import netns, wire
from pmip6ctl.lab import topology as t
from pmip6ctl.lab.probe import RawSender, SteadyPing
from pmip6ctl.lab.runner import poll

from ..lab.conftest import Capture, binding, counters, established, mh, ping, ro_row, send_ipv6, signaling, wait_for
from ..lab.test_ro import clean_ro, start_ro  # noqa: F401  (clean_ro is a fixture)

pytestmark = pytest.mark.root


def grew(before: dict, after: dict, key) -> int:
    return after.get(key, 0) - before.get(key, 0)


def counted(lab, node: str, before: dict, *keys, what: str) -> dict:
    """Wait until every key's count grew on node; the counts then."""
    def check():
        now = signaling(lab, node)
        return now if all(grew(before, now, key) for key in keys) else None
    return wait_for(check, what=what)


def send_udp(lab, ns: str, dst4: str, payload: bytes) -> None:
    with netns.entered(lab.ns(ns)):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.sendto(payload, (dst4, 5436))
        finally:
            sock.close()


def forged_pbu(lab, mn_id: str, lifetime: int = 3600, sequence: int = 99) -> wire.BindingUpdate:
    """A PBU as MAG1 would send it for mn_id, but without MAG1's key."""
    hnp = ipaddress.IPv6Network(binding(lab, "lma", mn_id)["hnp"])
    return wire.BindingUpdate(sequence, wire.BUFlags.A | wire.BUFlags.H | wire.BUFlags.P, lifetime // 4, [
        wire.MobileNodeIdentifier.from_nai(mn_id), wire.HomeNetworkPrefix(hnp.prefixlen, hnp.network_address),
        wire.HandoffIndicator(5), wire.AccessTechnologyType(3), wire.Timestamp.from_unix(time.time())])


def still_served(lab) -> None:
    """MN1 and MN2 keep their bindings and their traffic."""
    assert binding(lab, "lma", "mn1@lab.example")["mag"] == t.address6("mag1")
    assert binding(lab, "lma", "mn2@lab.example")["mag"] == t.address6("mag2")
    assert ping(lab, "mn2", lab.mns["mn1"]["ipv6"], count=5) == 5
    assert ping(lab, "mn1", t.CN6, count=5) == 5


def test_attack_1_a_forged_pbu_in_udp_from_the_cn_host_moves_nothing(lab):
    before = signaling(lab, "lma")
    pbu = forged_pbu(lab, "mn1@lab.example")
    inner = bytes(IPv6(src=t.address6("mag1"), dst=t.LMA6, nh=135) / Raw(mh(pbu, t.address6("mag1"), t.LMA6)))
    send_udp(lab, "cn", t.LMA4, inner)
    after = counted(lab, "lma", before, ("pbu", "in", "wrong_outer_source"), what="the LMA to refuse the forged PBU")
    assert not any(grew(before, after, key) for key in after if key[:2] == ("pba", "out"))   # no answer
    still_served(lab)


@pytest.mark.parametrize("carrier", ["ipv6", "raw ipv4"])
def test_attack_2_a_deregistration_with_a_spoofed_source_ends_nothing(lab, carrier):
    before = signaling(lab, "lma")
    pbu = forged_pbu(lab, "mn1@lab.example", lifetime=0)
    packet = IPv6(src=t.address6("mag1"), dst=t.LMA6, nh=135) / Raw(mh(pbu, t.address6("mag1"), t.LMA6))
    if carrier == "ipv6":
        send_ipv6(lab, "inet", packet)
    else:
        with netns.entered(lab.ns("inet")):
            sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, 41)
            try:
                sock.sendto(bytes(packet), (t.LMA4, 0))
            finally:
                sock.close()
    wait_for(lambda: grew(before, signaling(lab, "lma"), ("pbu", "in", "unauthenticated")),
             what="the LMA to refuse the spoofed deregistration")
    still_served(lab)


def test_attack_3_a_pbu_from_an_access_link_never_leaves_the_mag(lab):
    """MN1 signals for MN2 into the core: with its own address as source
    (MNs never signal), and with MAG2's (no MN of MAG1's link)."""
    before, lma_before = counters(lab, "mag1"), signaling(lab, "lma")

    def dropped(reason: str) -> bool:
        return counters(lab, "mag1").get(("mag_access", reason), 0) > before.get(("mag_access", reason), 0)

    def buffer_dropped() -> bool:                 # an unknown source goes to the handover buffer, which drops MH
        after = lab.client("mag1").call("buffer_settings")["dropped"].get("mn_signaling", 0)
        return after > held_before and dropped("punt_held")

    held_before = lab.client("mag1").call("buffer_settings")["dropped"].get("mn_signaling", 0)
    pbu = forged_pbu(lab, "mn2@lab.example", lifetime=0)
    for src, reason in [(lab.mns["mn1"]["ipv6"], "drop_mn_signaling"), (t.address6("mag2"), "drop_unknown_source")]:
        send_ipv6(lab, "mn1", IPv6(src=src, dst=t.LMA6, nh=135) / Raw(mh(pbu, src, t.LMA6)))
        wait_for(lambda: dropped(reason) or (reason == "drop_unknown_source" and buffer_dropped()),
                 what=f"MAG1's XDP to drop it ({reason}), or its handover buffer")
    after = signaling(lab, "lma")
    assert not any(grew(lma_before, after, key) for key in after if key[0] == "pbu")   # it never got there
    still_served(lab)


def forged_frames(kind: str) -> bytes:
    """What claims MN1 on MAG3's link (MN1's air, at MAG3): an RS naming MN1's MAC in its SLLA
    option, or (issue 13) traffic from MN1's MAC with a source MAG3 does not
    hold, which a MAG back without its state takes as the MN's return."""
    if kind == "rs":
        return bytes(Ether(src=t.SECOND_MACS["mn1"], dst="33:33:00:00:00:02")
                     / IPv6(src="fe80::6666", dst="ff02::2", hlim=255)
                     / ICMPv6ND_RS() / ICMPv6NDOptSrcLLAddr(lladdr=t.MN_MACS["mn1"]))
    return bytes(Ether(src=t.MN_MACS["mn1"], dst="ff:ff:ff:ff:ff:ff")
                 / IPv6(src="2001:db8:100::6666", dst=t.CN6) / UDP(sport=6666, dport=6666) / Raw(b"mine now"))


@pytest.mark.parametrize("kind", ["rs", "traffic"], ids=["an RS", "traffic"])
def test_attack_4_mn1s_mac_at_mag3_does_not_steal_mn1s_binding(lab, kind):
    """Someone at MAG3, on the link MN1 would use there (its air's port
    toward MAG3, which MN1's frames do not reach), claims MN1's MAC: MAG3
    may list MN1 (it moves there), so MAG3 registers it; the LMA asks MAG1
    first (RFC 5846), MAG1 still sees MN1 on a live link and says so, and
    the binding stays."""
    lma_before = signaling(lab, "lma")
    air, port = t.AIR["mn1"], t.AWAY_MAG
    lab.net.ip(air, f"link set {port} type bridge_slave flood off mcast_flood off bcast_flood off",
               f"link set {port} up")
    try:
        rs = forged_frames(kind)
        with netns.entered(lab.ns(air)):
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
            sock.bind((port, 0))
            try:
                sock.send(rs)
            finally:
                sock.close()
        wait_for(lambda: grew(lma_before, signaling(lab, "lma"), ("pbu", "in", "mn_attached_elsewhere")),
                 what="the LMA to refuse MAG3's claim")
        if kind == "traffic":              # XDP dropped it and told MAG3 (or handed it to its buffer)
            assert sum(counters(lab, "mag3").get(("mag_access", reason), 0)
                       for reason in ("drop_unknown_source", "punt_held")) >= 1
        assert all(b["mn_id"] != "mn1@lab.example" or b["state"] != "registered"
                   for b in lab.client("mag3").call("bindings"))                      # MAG3 got no binding
        still_served(lab)
    finally:
        lab.net.ip(air, f"link set {port} down")
        wait_for(lambda: all(b["mn_id"] != "mn1@lab.example" or b["state"] != "registered"
                             for b in lab.client("mag3").call("bindings")), what="MAG3 to let go")


def test_attack_5_the_rr_responder_gives_the_lma_tunnel_to_nobody(lab):
    """A CoTI in UDP whose inner source is the LMA, then a BU from the LMA's
    address: no care-of token comes back, no RO entry, the LMA path stays."""
    before = signaling(lab, "mag2")
    coti = wire.CareofTestInit(careof_init_cookie=bytes(range(8)))
    inner = bytes(IPv6(src=t.LMA6, dst=t.address6("mag2"), nh=135) / Raw(mh(coti, t.LMA6, t.address6("mag2"))))
    send_udp(lab, "cn", t.address4("mag2"), inner)
    cn2 = lab.mns["mn2"]["ipv6"]
    bu = wire.BindingUpdate(5, wire.BUFlags.A | wire.BUFlags.P, 105, [
        wire.HomeNetworkPrefix(128, ipaddress.IPv6Address(lab.mns["mn1"]["ipv6"])),
        wire.CNHomeNetworkPrefix(128, ipaddress.IPv6Address(cn2)), wire.Timestamp.from_unix(time.time()),
        wire.NonceIndices(1, 2), wire.BindingAuthorizationData(bytes(12))])
    send_ipv6(lab, "inet", IPv6(src=t.LMA6, dst=t.address6("mag2"), nh=135)
              / Raw(mh(bu, t.LMA6, t.address6("mag2"))))
    after = counted(lab, "mag2", before, ("ro", "in", "careof_test_init_in_udp"),
                    ("ro", "in", "careof_is_no_ro_peer"), what="MAG2 to refuse both")
    assert grew(before, after, ("cot", "out", "ok")) == 0
    assert lab.client("mag2").call("tables")["ro_entries"] == []
    still_served(lab)


def fuzzed_pbu(rng: random.Random, i: int) -> wire.BindingUpdate:
    """A well-formed PBU with random fields and a random choice of options,
    among them a made-up authentication option (no key to make a real one)."""
    mn_id = rng.choice([f"fuzz{i}@attacker.example", "mn1@lab.example", "mn2@lab.example"])
    pool = [wire.MobileNodeIdentifier.from_nai(mn_id),
            wire.HomeNetworkPrefix(rng.choice([0, 64, 128]), ipaddress.IPv6Address(rng.getrandbits(128))),
            wire.HandoffIndicator(rng.randrange(256)), wire.AccessTechnologyType(rng.randrange(256)),
            wire.Timestamp.from_unix(time.time() + rng.uniform(-10, 10)),
            wire.IPv4HomeAddressRequest(ipaddress.IPv4Address(0), 0)]
    options = rng.sample(pool, rng.randrange(1, len(pool) + 1))
    if rng.random() < 0.5:
        options.append(wire.MobilityMessageAuthentication(255, rng.getrandbits(32), rng.randbytes(32)))
    return wire.BindingUpdate(rng.randrange(65536), wire.BUFlags(rng.getrandbits(16) & 0xff00) | wire.BUFlags.P,
                              rng.randrange(65536), options)


def test_fuzzed_pbus_create_change_or_end_no_binding(lab):
    """The issue's fuzz run left 56 bindings from non-MAGs. 500 random PBUs,
    half from a host that is no MAG, half spoofing MAG1's address: each is
    refused by the guard, and the binding cache is what it was."""
    rng = random.Random(12)
    cache = {b["mn_id"]: (b["mag"], b["hnp"]) for b in lab.client("lma").call("bindings")}
    before = signaling(lab, "lma")
    stranger = t.link_of("lma")[0].addr6("a")
    for i in range(500):
        src = stranger if i % 2 else t.address6("mag1")
        send_ipv6(lab, "inet", IPv6(src=src, dst=t.LMA6, nh=135) / Raw(mh(fuzzed_pbu(rng, i), src, t.LMA6)))

    def refused() -> int:
        now = signaling(lab, "lma")
        return sum(grew(before, now, key) for key in now if key[0] == "pbu" and key[2] != "ok")
    poll(lambda: refused() >= 500, 10, 0.1)
    after = signaling(lab, "lma")
    assert refused() >= 500, {key: grew(before, after, key) for key in after if grew(before, after, key)}
    assert grew(before, after, ("pbu", "in", "ok")) == 0
    assert not any(grew(before, after, key) for key in after if key[0] == "pba")   # nobody is answered
    assert {b["mn_id"]: (b["mag"], b["hnp"]) for b in lab.client("lma").call("bindings")} == cache
    still_served(lab)


def test_the_lma_reflects_no_binding_acks_at_a_spoofed_victim(lab):
    """A plain BU or an unknown MH type from a host that is no MAG: RFC 5213
    and RFC 6275 would answer (BA 152, Binding Error), and the answer would
    go to whatever address the sender wrote. The LMA answers its peers only."""
    before = signaling(lab, "lma")
    victim = t.link_of("lma")[0].addr6("a")
    bu = wire.BindingUpdate(1, wire.BUFlags.A | wire.BUFlags.H, 100, [wire.Timestamp.from_unix(time.time())])
    for _ in range(20):
        send_ipv6(lab, "inet", IPv6(src=victim, dst=t.LMA6, nh=135) / Raw(mh(bu, victim, t.LMA6)))
    mh_type_99 = bytearray(mh(bu, victim, t.LMA6))
    mh_type_99[2], mh_type_99[4:6] = 99, b"\0\0"
    mh_type_99[4:6] = wire.mh_checksum(ipaddress.IPv6Address(victim), ipaddress.IPv6Address(t.LMA6),
                                       bytes(mh_type_99)).to_bytes(2, "big")
    send_ipv6(lab, "inet", IPv6(src=victim, dst=t.LMA6, nh=135) / Raw(bytes(mh_type_99)))
    after = counted(lab, "lma", before, ("bu", "in", "unknown_peer"), ("type_99", "in", "unknown_type"),
                    what="the LMA to refuse the BUs and the unknown type")
    assert grew(before, after, ("bu", "in", "unknown_peer")) == 20
    assert not any(grew(before, after, key) for key in after if key[1] == "out")


def test_attack_6_a_replayed_quick_mode_ba_installs_nothing(lab, clean_ro, tmp_path):
    """A BA MAG2 sent for an earlier quick-mode BU, replayed while MAG1's
    real BU is lost (nftables drops it at MAG2): MAG1 installs no RO entry
    and counts the refusal; MN1 ⇄ MN2 stays on the LMA path. (That the BA is
    refused even when the 16-bit sequence number has come round to it is the
    unit test's: the lab cannot wait for 65,536 BUs.)"""
    mn1, mn2 = lab.mns["mn1"]["ipv6"], lab.mns["mn2"]["ipv6"]
    lab.client("mag1").call("ro_settings", mode="quick")
    with Capture(lab, "inet", tmp_path / "ba.pcap", f"ip6 and ip6[6] == 135 and src {t.address6('mag2')}",
                 interface="mag1") as capture:
        lab.client("mag1").call("ro_start", mn=mn1, cn=mn2)
        wait_for(lambda: established(lab, "mag1", mn1, mn2), what="quick-mode RO MN1 ⇄ MN2")
    captured = [p[IPv6] for p in rdpcap(str(capture.path)) if IPv6 in p and bytes(p[IPv6].payload)[2] == 6]
    assert captured, "no BA from MAG2 captured"
    lab.client("mag1").call("ro_stop", mn=mn1, cn=mn2)
    wait_for(lambda: not lab.client("mag1").call("tables")["ro_entries"], what="the RO entry gone")
    lab.net.sh("mag2", "nft", "add table ip6 attack6")
    lab.net.sh("mag2", "nft", "add chain ip6 attack6 in { type filter hook input priority 0; }")
    lab.net.sh("mag2", "nft", f"add rule ip6 attack6 in ip6 saddr {t.address6('mag1')} meta l4proto 135 drop")
    try:
        lab.client("mag1").call("ro_start", mn=mn1, cn=mn2)
        wait_for(lambda: (ro_row(lab, "mag1", mn1, mn2) or {}).get("phase") == "binding",
                 what="MAG1 waiting for the BA to its lost BU")
        before = signaling(lab, "mag1")
        send_ipv6(lab, "inet", captured[-1])
        counted(lab, "mag1", before, ("ro", "in", "ba_answers_no_outstanding_bu"), what="MAG1 to refuse the old BA")
        assert lab.client("mag1").call("tables")["ro_entries"] == []
        assert not established(lab, "mag1", mn1, mn2)
        assert ping(lab, "mn1", mn2, count=5) == 5                 # on the LMA path
    finally:
        lab.net.sh_ok("mag2", "nft", "delete table ip6 attack6")


def test_attack_7_forged_binding_errors_end_no_ro_pair_and_cost_no_packet(lab, clean_ro):
    """Binding Errors for MN1 with MAG1's source to MAG2 (the responder) and
    with MAG2's source to MAG1 (the initiator), unsigned, 50 each while MN1
    pings MN2: anyone on the path can send them. No pair ends, every ping
    comes back, both refuse each one and count it; the responder sends by the
    LMA path once per pair and 10 s at most (the rest only counted), the
    initiator refreshes at most as often."""
    mn1, mn2 = lab.mns["mn1"]["ipv6"], lab.mns["mn2"]["ipv6"]
    mag1, mag2 = t.address6("mag1"), t.address6("mag2")
    start_ro(lab, mn1, mn2)
    wait_for(lambda: established(lab, "mag2", mn2, mn1), what="MAG2 holding the pair")
    before1, before2, mag1_0 = signaling(lab, "mag1"), signaling(lab, "mag2"), counters(lab, "mag1")
    be = wire.BindingError(1, ipaddress.IPv6Address(mn1))
    to_mag2 = bytes(IPv6(src=mag1, dst=mag2, nh=135) / Raw(mh(be, mag1, mag2)))
    to_mag1 = bytes(IPv6(src=mag2, dst=mag1, nh=135) / Raw(mh(be, mag2, mag1)))

    pinger = SteadyPing(lab.ns("mn1"), mn2, count=100, interval=0.02).start()
    with RawSender(lab.ns("inet")) as sender:
        for _ in range(50):
            sender.send(to_mag2, mag2)
            sender.send(to_mag1, mag1)
            time.sleep(0.02)
    sent, received = pinger.result()

    assert (sent, received) == (100, 100)
    reason = ("ro", "in", "unauthenticated_binding_error")
    assert grew(before2, counted(lab, "mag2", before2, reason, what="MAG2 to refuse them"), reason) >= 45
    assert grew(before1, counted(lab, "mag1", before1, reason, what="MAG1 to refuse them"), reason) >= 45
    assert established(lab, "mag1", mn1, mn2) and established(lab, "mag2", mn2, mn1)
    assert grew(mag1_0, counters(lab, "mag1"), ("mag_access", "fwd_encap_ro")) >= 90     # still optimized
