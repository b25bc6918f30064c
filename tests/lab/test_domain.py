"""The PMIPv6 domain in the lab: attach by Router Solicitation, traffic
through the LMA, IPv4 on both levels, detach, daemon restarts, malformed
signaling, and every message checked in Wireshark."""

from __future__ import annotations

import ipaddress
import signal
import socket
import subprocess
import threading
import time

import pytest

from pmip6ctl import netns, wire
from pmip6ctl.lab import topology as t

from ..tshark_check import TSHARK, dissect
from .conftest import MN3_ID, binding, counters, delta, iperf, ping, wait_for

pytestmark = pytest.mark.root


def test_mns_get_their_home_prefix_by_router_advertisement(lab):
    for mn, mag in (("mn1", "mag1"), ("mn2", "mag2")):
        entry = binding(lab, mag, f"{mn}@lab.example")
        assert entry["state"] == "registered"
        address = ipaddress.ip_address(lab.mns[mn]["ipv6"])
        assert address in ipaddress.ip_network(entry["hnp"])
        lma_entry = binding(lab, "lma", f"{mn}@lab.example")
        assert lma_entry["hnp"] == entry["hnp"] and lma_entry["mag"] == t.address6(mag)
        # the RA's MTU option leaves room for the tunnel header
        mtu = lab.sh(mn, "cat", "/proc/sys/net/ipv6/conf/eth0/mtu").strip()
        assert int(mtu) == t.ACCESS_MTU - 40


@pytest.mark.parametrize("family", ["ipv6", "ipv4"])
def test_mn1_and_mn2_talk_through_the_lma(lab, family):
    lma0, mag1_0, mag2_0 = counters(lab, "lma"), counters(lab, "mag1"), counters(lab, "mag2")

    assert ping(lab, "mn1", lab.mns["mn2"][family], count=20) == 20

    lma1, mag1_1, mag2_1 = counters(lab, "lma"), counters(lab, "mag1"), counters(lab, "mag2")
    assert delta(lma1, lma0, "lma", "fwd_reencap") >= 40            # requests and replies
    assert delta(mag1_1, mag1_0, "mag_access", "fwd_encap_pmip") >= 20
    # (the first reply may find no neighbour entry for MN2 yet: the kernel resolves it)
    assert delta(mag2_1, mag2_0, "mag_transport", "fwd_decap") + \
        delta(mag2_1, mag2_0, "mag_transport", "pass_no_neigh") >= 20


def test_tcp_transfer_between_mns_goes_through_the_lma(lab):
    lma0 = counters(lab, "lma")
    result = iperf(lab, "mn1", "mn2", lab.mns["mn2"]["ipv6"])
    lma1 = counters(lab, "lma")

    assert result["end"]["sum_received"]["bytes"] > 1_000_000
    assert delta(lma1, lma0, "lma", "fwd_reencap") > 500


@pytest.mark.parametrize("family", ["ipv6", "ipv4"])
def test_mn1_reaches_the_outside_cn_through_the_lma(lab, family):
    target = t.CN6 if family == "ipv6" else t.CN4
    lma0 = counters(lab, "lma")

    assert ping(lab, "mn1", target, count=20) == 20
    result = iperf(lab, "mn1", "cn", target)

    lma1 = counters(lab, "lma")
    assert result["end"]["sum_received"]["bytes"] > 1_000_000
    assert delta(lma1, lma0, "lma", "fwd_decap") >= 20 + 100        # MN -> CN, out of the tunnel
    assert delta(lma1, lma0, "lma", "fwd_encap_pmip") >= 20 + 100   # CN -> MN, into it


@pytest.fixture
def mn3(lab):
    """A third MN: mn1's second interface, at MAG3, which reaches the LMA
    over IPv4 only (RFC 5844: signaling in UDP 5436, data IPv6-in-IPv4)."""
    lab.link_up("mn1", "eth1")
    entry = wait_for(lambda: binding(lab, "lma", MN3_ID), what="MN3's binding at the LMA")
    address = lab.wait_mn_address("mn1", ifname="eth1")
    # mn1 is multihomed now: traffic from MN3's prefix leaves through eth1
    lab.net.ip("mn1", f"rule add from {entry['hnp']} table 100",
               "route add ::/0 via fe80::1 dev eth1 table 100", family=6)
    yield {"binding": entry, "ipv6": address}
    lab.net.ip("mn1", f"rule del from {entry['hnp']} table 100", "route flush table 100", family=6)
    if binding(lab, "mag3", MN3_ID):
        lab.client("mag3").call("detach", mn_id=MN3_ID)
    lab.link_down("mn1", "eth1")


def test_ipv6_mn_over_ipv4_transport(lab, mn3):
    assert mn3["binding"]["transport"] == "ipv4"
    tunnels = lab.client("lma").call("tables")["tunnels"]
    assert {"encap": "IP4", "remote": t.address4("mag3")}.items() <= next(
        x for x in tunnels if x["remote"] == t.address4("mag3")).items()
    mag3_0, lma0 = counters(lab, "mag3"), counters(lab, "lma")

    assert ping(lab, "mn1", t.CN6, count=20, source=mn3["ipv6"]) == 20
    result = iperf(lab, "mn1", "cn", t.CN6, bind=mn3["ipv6"])

    mag3_1, lma1 = counters(lab, "mag3"), counters(lab, "lma")
    assert result["end"]["sum_received"]["bytes"] > 1_000_000
    assert delta(mag3_1, mag3_0, "mag_access", "fwd_encap_pmip") >= 120
    assert delta(lma1, lma0, "lma", "fwd_encap_pmip") >= 120


def test_detach_removes_every_entry_on_both_ends(lab, mn3):
    hnp = mn3["binding"]["hnp"]
    lab.client("mag3").call("detach", mn_id=MN3_ID)

    wait_for(lambda: binding(lab, "lma", MN3_ID) is None, what="the LMA to drop MN3's binding")
    mag3, lma = lab.client("mag3").call("tables"), lab.client("lma").call("tables")
    assert mag3["mobile_nodes"] == [] and mag3["tunnels"] == [] and mag3["peers"] == []
    assert mag3["routes"] == []
    # the LMA's downlink hold keeps a mark (no tunnel) while the entry waits MinDelayBeforeBCEDelete
    assert all(m["held"] and m["tunnel"] == 0 for m in lma["mobile_nodes"] if m["prefix"] == hnp)
    assert t.address4("mag3") not in [x["remote"] for x in lma["tunnels"]]
    assert binding(lab, "mag3", MN3_ID) is None
    wait_for(lambda: hnp not in [m["prefix"] for m in lab.client("lma").call("tables")["mobile_nodes"]],
             timeout=30, what="the mark to go with the deleted entry (10 s)")


def test_kill_9_and_restart_keeps_flows_forwarding_and_rebuilds_state(lab):
    before = {node: lab.client(node).call("bindings") for node in ("lma", "mag1", "mag2")}
    result = {}

    def pinger():
        out = lab.net.sh_ok("mn1", "ping", "-c", "300", "-i", "0.02", "-W", "2", lab.mns["mn2"]["ipv6"])
        result["ping"] = out

    thread = threading.Thread(target=pinger)
    thread.start()
    time.sleep(0.5)
    for node in ("lma", "mag1", "mag2"):
        lab.stop_daemon(node, sig=signal.SIGKILL)
    time.sleep(1.0)                                      # nobody home: XDP forwards alone
    for node in ("lma", "mag1", "mag2"):
        lab.start_daemon(node)
    for node in ("lma", "mag1", "mag2"):
        lab.wait_ready(node)
    thread.join(timeout=30)

    assert "300 packets transmitted, 300 received" in result["ping"]
    for node in ("lma", "mag1", "mag2"):
        after = lab.client(node).call("bindings")
        assert [(b["mn_id"], b["hnp"], b["ipv4_hoa"]) for b in after] == \
               [(b["mn_id"], b["hnp"], b["ipv4_hoa"]) for b in before[node]]
    # and the rebuilt daemons still work: a refresh round trip through both
    assert ping(lab, "mn1", lab.mns["mn2"]["ipv4"], count=5) == 5


def lpm_key(prefix: str) -> list[str]:
    """A prefix as bpftool writes an mn_table key (struct prefix_key: the
    length in host order, then 16 octets of address)."""
    net = ipaddress.ip_network(prefix)
    length = net.prefixlen + (96 if net.version == 4 else 0)
    address = net.network_address.packed.rjust(16, b"\0") if net.version == 6 else \
        bytes(12) + net.network_address.packed
    return [f"{b:02x}" for b in length.to_bytes(4, "little") + address]


def test_a_restart_reconciles_the_pinned_map_with_the_store(lab):
    """Issue 14: the store is the truth after a crash. An entry no stored
    binding explains (a binding made, but not committed, before a kill -9)
    leaves the map; a binding whose entry went missing gets it back; the
    entries that match are not written again."""
    hnp = binding(lab, "lma", "mn1@lab.example")["hnp"]
    stale = "2001:db8:dead:beef::/64"
    pin = str(lab.pin_root / "lma" / "mn_table")
    lab.stop_daemon("lma", sig=signal.SIGKILL)
    subprocess.run(["bpftool", "map", "update", "pinned", pin, "key", "hex", *lpm_key(stale),
                    "value", "hex", "01", "00", "00", "00", "00", "00", "00", "00"], check=True)
    subprocess.run(["bpftool", "map", "delete", "pinned", pin, "key", "hex", *lpm_key(hnp)], check=True)
    lab.start_daemon("lma")
    lab.wait_ready("lma")
    prefixes = [m["prefix"] for m in lab.client("lma").call("tables")["mobile_nodes"]]
    assert hnp in prefixes and stale not in prefixes
    assert "reconciled the data plane with the store: 1 entries removed (no binding), 1 written" in \
        lab.log_tail("lma", lines=200)
    assert ping(lab, "mn2", lab.mns["mn1"]["ipv6"], count=5) == 5


def send_raw_mh(lab, data: bytes, src_ns: str = "inet") -> None:
    with netns.entered(lab.ns(src_ns)):
        sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, 135)
        sock.setsockopt(socket.IPPROTO_IPV6, 7, -1)                 # we write the checksum ourselves
        try:
            sock.sendto(data, (t.LMA6, 0))
        finally:
            sock.close()


def signaling(lab, node: str) -> dict[tuple[str, str, str], int]:
    return {(r["type"], r["direction"], r["result"]): r["count"] for r in lab.client(node).call("signaling")}


def test_malformed_and_unknown_signaling_is_counted_and_the_lma_keeps_serving(lab):
    src = ipaddress.IPv6Address(t.link_of("lma")[0].addr6("a"))       # inet's address on the LMA link
    dst = ipaddress.IPv6Address(t.LMA6)
    good_pbu = wire.BindingUpdate(sequence=1, flags=wire.BUFlags.A | wire.BUFlags.H | wire.BUFlags.P,
                                  lifetime=10, options=[wire.MobileNodeIdentifier.from_nai("x@lab.example")])
    encoded = wire.encode(good_pbu, src, dst)
    bad_checksum = encoded[:4] + bytes([encoded[4] ^ 0xFF]) + encoded[5:]
    unknown_type = bytearray(wire.encode(wire.BindingRefreshRequest(), src, dst))
    unknown_type[2] = 42
    unknown_type[4:6] = wire.mh_checksum(src, dst, bytes(unknown_type[:4]) + b"\0\0" + bytes(unknown_type[6:])).to_bytes(2, "big")
    truncated_option = bytearray(encoded)
    mn_id_option = encoded.index(bytes([8, 1 + len("x@lab.example")]), 12)   # MN-ID: type 8, length
    truncated_option[mn_id_option + 1] = 200      # now runs past the end of the message
    truncated_option[4:6] = wire.mh_checksum(src, dst, bytes(truncated_option[:4]) + b"\0\0" + bytes(truncated_option[6:])).to_bytes(2, "big")
    other_proto = wire.encode(wire.BindingUpdate(sequence=2, flags=good_pbu.flags, lifetime=10,
                                                 options=good_pbu.options, payload_proto=6), src, dst)
    before = signaling(lab, "lma")

    for data in (bad_checksum, bytes(unknown_type), bytes(truncated_option), other_proto, encoded):
        send_raw_mh(lab, data)

    refused = ("pbu", "in", "unknown_peer")
    after = wait_for(lambda: (s := signaling(lab, "lma")).get(refused, 0) > before.get(refused, 0) and s,
                     what="the LMA to count the PBU")

    def grew(key):
        return after.get(key, 0) - before.get(key, 0)

    assert grew(("unknown", "in", "bad_checksum")) == 1
    assert grew(("type_42", "in", "unknown_type")) == 1
    # RFC 6275 §9.2 would answer with a BE (status 2); the sender is no peer of the LMA,
    # and a BE to any source would make the LMA a reflector (docs/security.md)
    assert grew(("be", "out", "unrecognized_mh_type")) == 0
    assert grew(("unknown", "in", "malformed")) == 1
    assert grew(("unknown", "in", "bad_payload_proto")) == 1        # RFC 6275 §9.2
    # the well-formed PBU comes from no MAG that holds a key: refused, and not answered
    # (tests/attacks has the forged PBUs from a MAG's address)
    assert grew(refused) == 1 and grew(("pbu", "in", "ok")) == 0
    assert not any(grew(key) for key in after if key[:2] == ("pba", "out"))
    assert lab.pid("lma") is not None
    assert ping(lab, "mn1", lab.mns["mn2"]["ipv6"], count=3) == 3


@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")
def test_every_signaling_message_of_an_attach_decodes_in_wireshark(lab, tmp_path):
    pcap = tmp_path / "signaling.pcap"
    capture = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{lab.ns('inet')}", "tcpdump", "-Z", "root", "-i", "any", "-U", "-w", str(pcap),
         "ip6 proto 135 or udp port 5436"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    try:
        lab.link_up("mn1", "eth1")                      # PBU/PBA over IPv4 (MAG3) ...
        wait_for(lambda: binding(lab, "lma", MN3_ID), what="MN3's binding")
        lab.client("mag3").call("detach", mn_id=MN3_ID)  # ... and the deregistration
        wait_for(lambda: binding(lab, "lma", MN3_ID) is None, what="MN3's deregistration")
        lab.client("mag2").call("attach", mn_id="probe@lab.example", link="acc1")   # over IPv6
        wait_for(lambda: (b := binding(lab, "lma", "probe@lab.example")) and b, what="the probe's binding")
        lab.client("mag2").call("detach", mn_id="probe@lab.example")
        time.sleep(1.5)                                 # let tcpdump read what the kernel holds
    finally:
        lab.link_down("mn1", "eth1")
        capture.send_signal(signal.SIGINT)
        capture.wait(timeout=10)

    # the probe shared MN2's link: its withdrawal must not take MN2's default router
    assert "default via fe80::1" in lab.sh("mn2", "ip", "-6", "route", "show", "default")
    messages = dissect(pcap)
    kinds = sorted({m.mh_type for m in messages})
    assert {"5", "6"} <= set(kinds), f"expected PBUs and PBAs, Wireshark saw MH types {kinds}"
    assert len(messages) >= 8
    problems = {m.number: m.problems() for m in messages if m.problems()}
    assert problems == {}


@pytest.mark.parametrize("node", ["mag1", "lma"])
def test_a_link_made_after_the_daemon_started_is_an_egress_at_once(lab, node):
    """The devmap follows the netlink link events: a link created now is in
    tx_ports within a moment (no silent bpf_redirect fallback, no
    pass_no_egress for it), and leaves it when deleted."""
    ns = lab.ns(node)
    subprocess.run(["ip", "-n", ns, "link", "add", "late0", "type", "veth", "peer", "name", "late0p"], check=True)
    try:
        with netns.entered(ns):
            ifindex = socket.if_nametoindex("late0")
        wait_for(lambda: ifindex in lab.client(node).call("tables")["tx_ports"], timeout=5,
                 what="the new link in the devmap")
    finally:
        subprocess.run(["ip", "-n", ns, "link", "del", "late0"], check=True)
    wait_for(lambda: ifindex not in lab.client(node).call("tables")["tx_ports"], timeout=5,
             what="the deleted link out of the devmap")
