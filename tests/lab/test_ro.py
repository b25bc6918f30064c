"""Route optimization in the lab (the draft): scenario 1 (MN1 ⇄ MN2 through
MAG1 ⇄ MAG2) and scenario 3 (MN1 ⇄ the outside CN agent), in RR and quick
mode, proven by the LMA's counters staying flat and by captures."""

from __future__ import annotations

import ipaddress
import re
import signal
import socket
import threading
import shutil
import time

import pytest
from scapy.layers.inet6 import IPv6
from scapy.utils import rdpcap

from pmip6ctl import netns, wire
from pmip6ctl.daemon.ro_entries import DRAIN_SECONDS
from pmip6ctl.lab import topology as t

from ..tshark_check import TSHARK, dissect
from .conftest import (Capture, binding, counters, delta, established, iperf, ping, ro_row, signaling, stop_all_ro,
                       wait_for)

pytestmark = pytest.mark.root


def addresses(lab):
    return lab.mns["mn1"]["ipv6"], lab.mns["mn2"]["ipv6"]


@pytest.fixture
def clean_ro(lab):
    """Each test starts and ends with no RO anywhere, RR mode, no trigger."""
    def reset():
        stop_all_ro(lab, mode="rr", lifetime=420)
        for row in lab.client("cn").call("ro_list"):
            lab.client("cn").call("ro_stop", mn=row["remote"], cn=row["local"])
        wait_for(lambda: all(not lab.client(n).call("ro_list") for n in ("mag1", "mag2", "cn")),
                 what="no RO left")
        # and no entry draining (DRAIN_SECONDS after a stop) in any data plane
        wait_for(lambda: all(not lab.client(n).call("tables")["ro_entries"] for n in ("mag1", "mag2", "mag3", "cn")),
                 timeout=DRAIN_SECONDS + 10, what="the RO entries drained")
    reset()
    yield
    reset()


def lma_forwarded(lab) -> int:
    return sum(c["packets"] for c in lab.client("lma").call("counters") if c["verdict"] == "redirect")


def start_ro(lab, mn: str, cn: str, node: str = "mag1") -> dict:
    lab.client(node).call("ro_start", mn=mn, cn=cn)
    return wait_for(lambda: established(lab, node, mn, cn), timeout=10, what=f"RO {mn} ⇄ {cn}")


def packets_with(pcap, *addrs: str) -> int:
    """Data packets in pcap with any of addrs in any IPv6 header (outer or
    inner). Mobility messages do not count: RR travels the home path through
    the LMA by design (a refresh may pass while we capture)."""
    wanted = set(addrs)
    count = 0
    for packet in rdpcap(str(pcap)):
        layer, seen = packet.getlayer(IPv6), False
        while layer is not None:
            seen |= layer.src in wanted or layer.dst in wanted
            inner = layer.payload.getlayer(IPv6) if layer.payload else None
            if inner is None:
                count += seen and layer.nh != 135
            layer = inner
    return count


@pytest.mark.parametrize("mode", ["rr", "quick"])
def test_scenario_1_traffic_bypasses_the_lma(lab, clean_ro, mode, tmp_path):
    mn1, mn2 = addresses(lab)
    lab.client("mag1").call("ro_settings", mode=mode)
    # the control: before RO, the same capture sees the flow on the LMA's link
    with Capture(lab, "inet", tmp_path / "before.pcap", "ip6", interface="lma") as control:
        assert ping(lab, "mn1", mn2, count=5, interval=0.01) == 5
        control.stop()
    assert packets_with(control.path, mn1, mn2) >= 20                 # 5 × (in + out) × 2 directions
    row = start_ro(lab, mn1, mn2)
    assert row["mode"] == mode and row["peer"] == t.address6("mag2")
    assert established(lab, "mag2", mn2, mn1)["roles"] == ["responder"]
    lma0, mag1_0, mag2_0 = lma_forwarded(lab), counters(lab, "mag1"), counters(lab, "mag2")

    # captured at the router's end of the LMA's link: frames the LMA's XDP
    # redirected never reach tcpdump on the LMA itself
    with Capture(lab, "inet", tmp_path / "lma.pcap", "ip6", interface="lma") as capture:
        assert ping(lab, "mn1", mn2, count=50, interval=0.01) == 50
        result = iperf(lab, "mn1", "mn2", mn2, seconds=2)
        capture.stop()

    mag1_1, mag2_1 = counters(lab, "mag1"), counters(lab, "mag2")
    assert result["end"]["sum_received"]["bytes"] > 1_000_000
    assert lma_forwarded(lab) == lma0                                 # the LMA's data plane: flat
    assert packets_with(capture.path, mn1, mn2) == 0                 # and its link saw none of it
    assert delta(mag1_1, mag1_0, "mag_access", "fwd_encap_ro") > 500
    assert delta(mag2_1, mag2_0, "mag_transport", "fwd_decap") > 500
    assert delta(mag2_1, mag2_0, "mag_access", "fwd_encap_ro") > 50     # both directions
    assert delta(mag1_1, mag1_0, "mag_access", "fwd_encap_pmip") == 0


def test_quick_mode_skips_return_routability(lab, clean_ro):
    mn1, mn2 = addresses(lab)
    lab.client("mag1").call("ro_settings", mode="quick")
    before = {(r["type"], r["direction"]): r["count"] for r in lab.client("mag1").call("signaling")}
    start_ro(lab, mn1, mn2)
    after = {(r["type"], r["direction"]): r["count"] for r in lab.client("mag1").call("signaling")}
    sent = {kind: after.get((kind, "out"), 0) - before.get((kind, "out"), 0) for kind in ("hoti", "coti", "ro_bu", "lri")}
    assert sent == {"hoti": 0, "coti": 0, "ro_bu": 1, "lri": 1}


def test_ping_in_both_directions_loses_nothing_while_ro_sets_up_and_stops(lab, clean_ro):
    mn1, mn2 = addresses(lab)
    results = {}

    def pinger(src, dst, key):
        out = lab.net.sh_ok(src, "ping", "-c", "250", "-i", "0.01", "-W", "2", dst)
        results[key] = re.search(r"(\d+) packets transmitted, (\d+) received", out).groups()

    threads = [threading.Thread(target=pinger, args=("mn1", mn2, "forth")),
               threading.Thread(target=pinger, args=("mn2", mn1, "back"))]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    start_ro(lab, mn1, mn2)
    time.sleep(0.8)
    lab.client("mag1").call("ro_stop", mn=mn1, cn=mn2)          # and back to the LMA path
    for thread in threads:
        thread.join(timeout=30)

    assert results == {"forth": ("250", "250"), "back": ("250", "250")}
    assert established(lab, "mag2", mn2, mn1) is None               # the dereg BU reached MAG2


def test_scenario_3_with_the_outside_cn_agent(lab, clean_ro, tmp_path):
    mn1, _ = addresses(lab)
    row = start_ro(lab, mn1, t.CN6)
    assert row["peer"] == t.CN6 and row["scenario"] == "outside"
    lma0, cn0 = lma_forwarded(lab), counters(lab, "cn")

    with Capture(lab, "inet", tmp_path / "lma.pcap", "ip6", interface="lma") as capture:
        result = iperf(lab, "mn1", "cn", t.CN6, seconds=2)
        capture.stop()

    cn1 = counters(lab, "cn")
    assert result["end"]["sum_received"]["bytes"] > 1_000_000
    assert lma_forwarded(lab) == lma0
    assert packets_with(capture.path, mn1) == 0
    assert delta(cn1, cn0, "cn", "pass_decap_local") > 500
    assert delta(cn1, cn0, "cn_egress", "fwd_encap_ro") > 100


def test_flow_trigger_starts_ro_by_itself(lab, clean_ro):
    mn1, mn2 = addresses(lab)
    lab.client("mag1").call("ro_settings", trigger_packets=5)
    assert ping(lab, "mn1", mn2, count=10, interval=0.05) == 10
    row = wait_for(lambda: established(lab, "mag1", mn1, mn2), what="the triggered RO")
    assert row["roles"] == ["initiator"]


def test_ro_query_for_a_denied_pair_leaves_the_flow_on_the_lma_path(lab, clean_ro):
    mn1, _ = addresses(lab)
    lab.client("mag1").call("ro_start", mn=mn1, cn=t.DENIED_CN)
    row = wait_for(lambda: (r := ro_row(lab, "mag1", mn1, t.DENIED_CN)) and r.get("phase") == "backoff" and r,
                   what="the denied attempt")
    assert "localized_routing_not_allowed" in row["last_failure"]
    assert lab.client("mag1").call("tables")["ro_entries"] == []


def test_lost_peer_daemon_and_lapsed_lifetime_bring_the_flow_back_via_the_lma(lab, clean_ro):
    mn1, mn2 = addresses(lab)
    lab.client("mag1").call("ro_settings", lifetime=8)
    row = start_ro(lab, mn1, mn2)
    assert row["expires_in"] <= 8
    lab.stop_daemon("mag2", sig=signal.SIGKILL)
    try:
        # MAG1's refresh goes unanswered; at the lifetime's end it removes the entry
        wait_for(lambda: lab.client("mag1").call("tables")["ro_entries"] == [],
                 timeout=20, what="MAG1 to give the binding up")
        assert ro_row(lab, "mag1", mn1, mn2)["phase"] == "backoff"
        time.sleep(1.0)               # MAG2's own XDP entry lapses too, with no daemon there
        lma0 = lma_forwarded(lab)
        assert ping(lab, "mn1", mn2, count=20) == 20
        assert lma_forwarded(lab) - lma0 >= 40                           # both directions via the LMA again
    finally:
        lab.restart_daemon("mag2")


def test_a_mag_killed_and_restarted_resumes_its_ro_pairs_and_the_flow_loses_nothing(lab, clean_ro):
    """Issue 13, item 7: kill -9 of MAG1 with RO up. XDP forwards alone
    meanwhile (pinned maps); the new daemon takes the pair back from its
    state file, keeps the RO tunnel the entry points at (it deleted it once:
    drop_no_tunnel until the entry lapsed), and refreshes it later."""
    mn1, mn2 = addresses(lab)
    start_ro(lab, mn1, mn2)
    before = counters(lab, "mag1")
    result = {}
    thread = threading.Thread(target=lambda: result.update(out=lab.net.sh_ok(
        "mn1", "ping", "-c", "600", "-i", "0.02", "-W", "2", mn2)))
    thread.start()
    time.sleep(0.5)
    lab.stop_daemon("mag1", sig=signal.SIGKILL)
    lab.start_daemon("mag1")
    lab.wait_ready("mag1")
    thread.join(timeout=60)

    assert "600 packets transmitted, 600 received" in result["out"]
    row = established(lab, "mag1", mn1, mn2)
    assert row and row["peer"] == t.address6("mag2")                  # taken back, not set up anew
    after = counters(lab, "mag1")
    assert delta(after, before, "mag_access", "drop_no_tunnel") == 0
    assert delta(after, before, "mag_access", "fwd_encap_ro") >= 500    # optimized all along
    assert ping(lab, "mn1", mn2, count=5) == 5


def test_a_peer_that_comes_back_without_its_state_is_told_and_ro_resumes(lab, clean_ro):
    """Issue 13, items 6 and 7: MAG2 reboots (its daemon killed, its pins and
    state gone). It learns MN2 again from MN2's next packet. MAG1's tunnelled
    packets meet a MAG2 that knows no such peer: it answers with a Binding
    Error (unsigned: it has no key for the pair), MAG1 refreshes at once, and
    the flow is optimized again, not black-holed for the rest of the RO
    lifetime."""
    mn1, mn2 = addresses(lab)
    start_ro(lab, mn1, mn2)
    lab.stop_daemon("mag2", sig=signal.SIGKILL)
    shutil.rmtree(lab.pin_root / "mag2")
    lab.forget_state("mag2")
    lab.start_daemon("mag2")
    lab.wait_ready("mag2")
    # MN2 sends no RS (its link never went down): MAG2 learns it from its next
    # packet, which XDP reports (issue 13, item 7)
    wait_for(lambda: ping(lab, "mn2", mn1, count=2, interval=0.2) == 2, timeout=20, what="MN2 → MN1 again")
    assert binding(lab, "mag2", "mn2@lab.example")["state"] == "registered"
    # (XDP dropped its first packets and told MAG2, or, with the handover buffer on, handed them over)
    assert sum(counters(lab, "mag2").get(("mag_access", reason), 0) for reason in ("drop_unknown_source", "punt_held")) >= 1
    assert established(lab, "mag1", mn1, mn2)          # MAG1 still believes in the pair

    wait_for(lambda: ping(lab, "mn1", mn2, count=3, interval=0.2) == 3, timeout=20, what="MN1 → MN2 again")
    told = sum(n for (kind, direction, result), n in signaling(lab, "mag2").items()
               if kind == "be" and direction == "out" and result != "rate_limited")
    assert told >= 1
    assert counters(lab, "mag2").get(("mag_transport", "drop_unknown_peer"), 0) >= 1
    # refreshed with the new MAG2, which holds the pair again
    wait_for(lambda: established(lab, "mag2", mn2, mn1), what="MAG2's new binding")
    assert established(lab, "mag1", mn1, mn2)["peer"] == t.address6("mag2")
    assert ping(lab, "mn1", mn2, count=10) == 10


# --- rejected input --------------------------------------------------------------------------

def captured_bu(lab, tmp_path) -> tuple[bytes, ipaddress.IPv6Address, ipaddress.IPv6Address]:
    """A real RO BU from MAG1 to MAG2, captured on the way."""
    mn1, mn2 = addresses(lab)
    with Capture(lab, "inet", tmp_path / "bu.pcap", "ip6 proto 135") as capture:
        start_ro(lab, mn1, mn2)
        capture.stop()
    for packet in rdpcap(str(capture.path)):
        ip = packet.getlayer(IPv6)
        mh = bytes(ip.payload)
        if ip.nh == 135 and mh[2] == 5:
            return mh, ipaddress.IPv6Address(ip.src), ipaddress.IPv6Address(ip.dst)
    raise AssertionError("no BU captured")


def resend(lab, mh: bytes, src, dst, node: str = "mag1") -> None:
    with netns.entered(lab.ns(node)):
        sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, 135)
        sock.setsockopt(socket.IPPROTO_IPV6, 7, -1)
        sock.bind((str(src), 0))
        try:
            sock.sendto(mh, (str(dst), 0))
        finally:
            sock.close()


def with_checksum(mh: bytearray, src, dst) -> bytes:
    mh[4:6] = b"\0\0"
    mh[4:6] = wire.mh_checksum(src, dst, bytes(mh)).to_bytes(2, "big")
    return bytes(mh)


def mag2_signaling(lab) -> dict:
    return {(r["type"], r["direction"], r["result"]): r["count"] for r in lab.client("mag2").call("signaling")}


def test_replayed_forged_and_stale_nonce_bus_are_rejected(lab, clean_ro, tmp_path):
    mh, src, dst = captured_bu(lab, tmp_path)
    mn1, mn2 = addresses(lab)
    lab.client("mag1").call("ro_stop", mn=mn1, cn=mn2)
    wait_for(lambda: established(lab, "mag2", mn2, mn1) is None, what="the dereg")
    before = mag2_signaling(lab)

    resend(lab, mh, src, dst)                                         # a replay
    forged = bytearray(mh)
    forged[-1] ^= 0x01                                                # last authenticator bit
    resend(lab, with_checksum(forged, src, dst), src, dst)
    msg = wire.decode(mh)
    indices = wire.find_option(msg, wire.NonceIndices)
    stale = bytearray(mh)
    where = mh.index(bytes([4, 4]) + indices.home_nonce_index.to_bytes(2, "big"))
    stale[where + 2:where + 6] = (0xFFF0).to_bytes(2, "big") + (0xFFF1).to_bytes(2, "big")
    resend(lab, with_checksum(stale, src, dst), src, dst)

    after = wait_for(lambda: (s := mag2_signaling(lab)).get(("ro_ba", "out", "expired_both_nonce_index"), 0)
                     > before.get(("ro_ba", "out", "expired_both_nonce_index"), 0) and s, what="the nonce reject")

    def grew(key):
        return after.get(key, 0) - before.get(key, 0)

    assert grew(("ro_ba", "out", "timestamp_lower_than_prev_accepted")) == 1      # replay: 157
    assert grew(("ro", "in", "bad_binding_authorization_data")) == 1             # forged: dropped
    assert grew(("ro_ba", "out", "expired_both_nonce_index")) == 1               # stale nonces: 138
    assert [e for e in lab.client("mag2").call("tables")["ro_entries"]             # nothing installed
            if e["state"] != "draining"] == []                                       # (the stopped pair drains)


def test_spoofed_tunnel_packets_from_a_non_peer_are_dropped(lab, clean_ro):
    _, mn2 = addresses(lab)
    before = counters(lab, "mag2")
    inner = bytes(IPv6(src="2001:db8:bad::1", dst=mn2, nh=59))
    with netns.entered(lab.ns("inet")):
        sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, 41)
        try:
            for _ in range(5):
                sock.sendto(inner, (t.address6("mag2"), 0))
        finally:
            sock.close()
    after = wait_for(lambda: (c := counters(lab, "mag2")) and delta(c, before, "mag_transport", "drop_unknown_peer") >= 5 and c,
                     what="the drops")
    assert delta(after, before, "mag_transport", "drop_unknown_peer") == 5
    assert delta(after, before, "mag_transport", "fwd_decap") == 0


@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")
def test_every_ro_message_decodes_in_wireshark(lab, clean_ro, tmp_path):
    mn1, mn2 = addresses(lab)
    with Capture(lab, "inet", tmp_path / "ro.pcap", "ip6") as capture:
        start_ro(lab, mn1, mn2)
        capture.stop()
    messages = dissect(capture.path)
    seen = {m.mh_type for m in messages}
    assert {"1", "2", "3", "4", "5", "6", "17", "18"} <= seen, f"MH types seen: {sorted(seen)}"
    problems = {m.number: (m.mh_type, m.problems()) for m in messages if m.problems()}
    assert problems == {}
