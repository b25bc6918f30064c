"""Local routing (RFC 6705) in the lab: MN1 and MN2 both at MAG3. MAG3's RO
query names MN2; the LMA answers with MAG3's own address (its consent), and
MAG3's XDP forwards MN1 ⇄ MN2 between its two access links: a capture on the
LMA's link sees none of the flow. MN2 going home ends the pair and the flow
goes MAG3 → MAG2 (the LMA path, then RO). With [lma] local_routing = false
the LMA answers 128 and everything crosses its link."""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP
from scapy.utils import rdpcap

from pmip6ctl.lab import topology as t

from .conftest import Capture, binding, counters, delta, established, metric, metrics, ping, stop_all_ro, wait_for
from .test_ro import packets_with

pytestmark = pytest.mark.root

MNS = ("mn1", "mn2")


def at(lab, mag: str, mn: str) -> bool:
    entry = binding(lab, mag, f"{mn}@lab.example")
    return bool(entry and entry["state"] == "registered")


def local_row(lab, local: str, remote: str) -> dict | None:
    row = next((r for r in lab.client("mag3").call("ro_list") if (r["local"], r["remote"]) == (local, remote)), None)
    return row if row and row.get("phase") == "local" and row.get("roles") == ["local"] else None


def local_entries(lab) -> set[tuple[str, str]]:
    return {(e["local"], e["remote"]) for e in lab.client("mag3").call("tables")["local_routes"]}


@pytest.fixture
def both_at_mag3(lab):
    """MN1 and MN2 at MAG3, each on its own access link there; afterwards
    both back home and no RO or local route left anywhere."""
    mn1, mn2 = lab.mns["mn1"]["ipv6"], lab.mns["mn2"]["ipv6"]
    stop_all_ro(lab)
    try:
        for mn in MNS:
            lab.move(mn, "mag3")
        wait_for(lambda: all(at(lab, "mag3", mn) for mn in MNS), timeout=20, what="MN1 and MN2 registered at MAG3")
        wait_for(lambda: ping(lab, "mn1", mn2, count=1) == 1, timeout=20, what="MN1 reaching MN2 from MAG3")
        yield mn1, mn2
    finally:
        stop_all_ro(lab)
        for mn in MNS:
            lab.move(mn, t.HOME_MAG[mn])
        wait_for(lambda: all(at(lab, t.HOME_MAG[mn], mn) for mn in MNS), timeout=20, what="both MNs home again")
        for mn in MNS:                  # a test may have moved the IPv4 home address along
            if lab.mns[mn].get("ipv4"):
                lab.configure_mn_ipv4(mn, lab.mns[mn]["ipv4"])
        wait_for(lambda: not local_entries(lab), what="no local route left at MAG3")


def test_mns_at_one_mag_are_routed_locally_and_the_pair_ends_when_one_leaves(lab, both_at_mag3, tmp_path):
    mn1, mn2 = both_at_mag3
    installed0 = metric(metrics(lab, "mag3"), "pmip6_local_routes_total", event="installed")
    lab.client("mag3").call("ro_settings", trigger_packets=1)
    # the echo requests trigger MN1 → MN2, the replies MN2 → MN1: each direction is its own LRI/LRA
    wait_for(lambda: ping(lab, "mn1", mn2, count=2) == 2 and local_row(lab, mn1, mn2) and local_row(lab, mn2, mn1),
             timeout=20, what="local routes both ways at MAG3")
    assert local_entries(lab) == {(mn1, mn2), (mn2, mn1)}
    assert metric(metrics(lab, "mag3"), "pmip6_local_routes_total", event="installed") >= installed0 + 2
    assert metric(metrics(lab, "mag3"), "pmip6_bindings", kind="local") == 2

    mag3_0 = counters(lab, "mag3")
    with Capture(lab, "inet", tmp_path / "lma.pcap", "ip or ip6", interface="lma") as capture:
        assert ping(lab, "mn1", mn2, count=50, interval=0.01) == 50
        capture.stop()
    mag3_1 = counters(lab, "mag3")
    assert packets_with(capture.path, mn1, mn2) == 0                 # the LMA's link saw none of the flow
    assert delta(mag3_1, mag3_0, "mag_access", "fwd_local") >= 100  # requests and replies, in XDP

    # MN2 goes home: MAG3 sees it leave and ends both directions
    removed0 = metric(metrics(lab, "mag3"), "pmip6_local_routes_total", event="removed", reason="cn_detached")
    lab.move("mn2", "mag2")
    wait_for(lambda: not local_entries(lab), timeout=15, what="MAG3's local routes removed")
    assert local_row(lab, mn1, mn2) is None and local_row(lab, mn2, mn1) is None
    text = metrics(lab, "mag3")
    assert metric(text, "pmip6_local_routes_total", event="removed", reason="cn_detached") == removed0 + 1
    assert metric(text, "pmip6_local_routes_total", event="removed", reason="mn_detached") >= 1
    assert metric(text, "pmip6_bindings", kind="local") == 0
    wait_for(lambda: at(lab, "mag2", "mn2"), timeout=20, what="MN2 registered at MAG2 again")
    # the flow goes on, and MAG3's trigger optimizes it toward MN2's new MAG
    wait_for(lambda: ping(lab, "mn1", mn2, count=2) == 2 and established(lab, "mag3", mn1, mn2), timeout=30,
             what="MN1 → MN2 optimized from MAG3 to MAG2")
    assert established(lab, "mag3", mn1, mn2)["peer"] == t.address6("mag2")
    mag3_2 = counters(lab, "mag3")
    assert ping(lab, "mn1", mn2, count=20, interval=0.01) == 20
    assert delta(counters(lab, "mag3"), mag3_2, "mag_access", "fwd_local") == 0


@pytest.fixture
def lma_forbids_local_routing(lab):
    path = lab.lab_dir / "lma.toml"
    original = path.read_text()
    assert "\n[lma]\n" in original
    path.write_text(original.replace("\n[lma]\n", "\n[lma]\nlocal_routing = false\n", 1))
    try:
        assert "lma.local_routing" in lab.client("lma").call("reload")["applied"]
        yield
    finally:
        path.write_text(original)
        lab.client("lma").call("reload")


def test_with_the_lma_policy_forbidding_it_the_flow_stays_on_the_lma_path(lab, lma_forbids_local_routing,
                                                                          both_at_mag3, tmp_path):
    mn1, mn2 = both_at_mag3
    refused0 = lab_lra_refusals(lab)
    lab.client("mag3").call("ro_settings", trigger_packets=1)

    def refused():
        ping(lab, "mn1", mn2, count=1)
        row = next((r for r in lab.client("mag3").call("ro_list") if (r["local"], r["remote"]) == (mn1, mn2)), None)
        return row and row.get("phase") == "backoff" and "localized_routing_not_allowed" in (row["last_failure"] or "")
    wait_for(refused, timeout=20, what="MAG3's attempt refused by the LMA (LRA 128)")
    assert lab_lra_refusals(lab) > refused0

    mag3_0 = counters(lab, "mag3")
    with Capture(lab, "inet", tmp_path / "lma.pcap", "ip or ip6", interface="lma") as capture:
        assert ping(lab, "mn1", mn2, count=20, interval=0.01) == 20
        capture.stop()
    assert packets_with(capture.path, mn1, mn2) >= 40                # both directions, through the LMA
    assert not local_entries(lab)
    assert delta(counters(lab, "mag3"), mag3_0, "mag_access", "fwd_local") == 0


def lab_lra_refusals(lab) -> int:
    return sum(r["count"] for r in lab.client("lma").call("signaling")
               if r["type"] == "lra" and r["direction"] == "out" and r["result"] == "localized_routing_not_allowed")


def ipv4_packets_with(pcap, *addrs: str) -> int:
    """Packets in pcap with any of addrs in any IPv4 header (outer or inner)."""
    wanted = set(addrs)
    return sum(any(isinstance(layer, IP) and (layer.src in wanted or layer.dst in wanted)
                   for layer in packet.iterpayloads()) for packet in rdpcap(str(pcap)))


def test_ipv4_mns_at_one_mag_are_routed_locally(lab, both_at_mag3, tmp_path):
    hoa1, hoa2 = lab.mns["mn1"]["ipv4"], lab.mns["mn2"]["ipv4"]
    if not (hoa1 and hoa2):
        pytest.skip("the lab's LMA gave no IPv4 home addresses")
    for mn in MNS:                      # the HoA on the link the MN is on now (as DHCP would, RFC 5844)
        lab.configure_mn_ipv4(mn, lab.mns[mn]["ipv4"])
    wait_for(lambda: ping(lab, "mn1", hoa2, count=1) == 1, timeout=20, what="MN1 reaching MN2 over IPv4")
    # the control: before local routing the same capture sees the flow cross the LMA's link
    with Capture(lab, "inet", tmp_path / "before.pcap", "ip or ip6", interface="lma") as control:
        assert ping(lab, "mn1", hoa2, count=5, interval=0.01) == 5
        control.stop()
    assert ipv4_packets_with(control.path, hoa1, hoa2) >= 20          # 5 × (in + out) × 2 directions
    lab.client("mag3").call("ro_settings", trigger_packets=1)
    wait_for(lambda: ping(lab, "mn1", hoa2, count=2) == 2 and local_row(lab, hoa1, hoa2) and local_row(lab, hoa2, hoa1),
             timeout=20, what="IPv4 local routes both ways at MAG3")
    assert {(hoa1, hoa2), (hoa2, hoa1)} <= local_entries(lab)

    mag3_0 = counters(lab, "mag3")
    with Capture(lab, "inet", tmp_path / "lma.pcap", "ip or ip6", interface="lma") as capture:
        assert ping(lab, "mn1", hoa2, count=30, interval=0.01) == 30
        capture.stop()
    assert ipv4_packets_with(capture.path, hoa1, hoa2) == 0
    assert delta(counters(lab, "mag3"), mag3_0, "mag_access", "fwd_local") >= 60
