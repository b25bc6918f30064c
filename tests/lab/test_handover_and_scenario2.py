"""Beyond the draft (issue 7): scenario 2, the MN and the CN anchored at
different LMAs, and handover of either end while its flow is optimized."""

from __future__ import annotations

import threading
import time

import pytest

from pmip6ctl.daemon.ro_entries import DRAIN_SECONDS
from pmip6ctl.lab import topology as t
from pmip6ctl.lab.probe import SteadyPing

from .conftest import binding, counters, established, iperf, ping, wait_for
from .test_ro import clean_ro, packets_with  # noqa: F401  (clean_ro is a fixture)
from .conftest import Capture

pytestmark = pytest.mark.root


def lmas_forwarded(lab) -> int:
    return sum(c["packets"] for node in t.LMAS for c in lab.client(node).call("counters") if c["verdict"] == "redirect")


@pytest.fixture
def scenario2(lab):
    assert lab_cli("anchor", "lma2").output == "MAG2 registers with lma2\n"
    wait_for(lambda: binding(lab, "lma2", "mn2@lab.example"), what="MN2 anchored at LMA2")
    address = wait_for(lambda: lab.mn_current_address("mn2"), what="MN2's address from LMA2's pool")
    try:
        yield address
    finally:
        lab.set_anchor("lma")
        wait_for(lambda: binding(lab, "lma", "mn2@lab.example"), what="MN2 back at LMA1")
        lab.configure_mn_ipv4("mn2", binding(lab, "mag2", "mn2@lab.example")["ipv4_hoa"])


def test_scenario_2_the_lmas_ask_each_other_and_traffic_bypasses_both(lab, clean_ro, scenario2, tmp_path):
    mn1, mn2 = lab.mns["mn1"]["ipv6"], scenario2
    assert binding(lab, "lma", "mn2@lab.example") is None          # MN2 is LMA2's now
    assert ping(lab, "mn1", mn2, count=5) == 5                      # LMA1 → Internet → LMA2 meanwhile

    lab.client("mag1").call("ro_start", mn=mn1, cn=mn2)
    row = wait_for(lambda: established(lab, "mag1", mn1, mn2), what="RO across two LMAs")
    assert row["peer"] == t.address6("mag2")
    relayed = {(r["type"], r["direction"], r["result"]): r["count"] for r in lab.client("lma").call("signaling")}
    assert relayed.get(("lri", "relay", "answered_by_peer"), 0) >= 1
    answered = {(r["type"], r["direction"], r["result"]): r["count"] for r in lab.client("lma2").call("signaling")}
    assert answered.get(("lri", "relay", "answered_peer"), 0) >= 1

    before = lmas_forwarded(lab)
    with Capture(lab, "inet", tmp_path / "lmas.pcap", "ip6", interface="lma") as lma1_link, \
            Capture(lab, "inet", tmp_path / "lma2.pcap", "ip6", interface="lma2") as lma2_link:
        result = iperf(lab, "mn1", "mn2", mn2, seconds=2)
        lma1_link.stop()
        lma2_link.stop()
    assert result["end"]["sum_received"]["bytes"] > 1_000_000
    assert lmas_forwarded(lab) == before                            # neither LMA forwarded any of it
    assert packets_with(lma1_link.path, mn1, mn2) == 0 and packets_with(lma2_link.path, mn1, mn2) == 0

    # MN2 leaves: LMA2 tells LMA1, which forgets the answer it cached
    lab.client("mag2").call("detach", mn_id="mn2@lab.example")
    wait_for(lambda: ("lri", "relay", "cache_invalidated_by_peer") in
             {(r["type"], r["direction"], r["result"]) for r in lab.client("lma").call("signaling")},
             what="LMA2's notice at LMA1")


def all_ro_entries(lab) -> dict[str, list]:
    return {node: lab.client(node).call("tables")["ro_entries"] for node in ("mag1", "mag2", "mag3")}


def transfer_while(lab, src: str, dst: str, target: str, action, seconds: float = 6) -> tuple[dict, tuple[int, int]]:
    """A TCP transfer and a fixed-pace ping every 5 ms, both from src to
    target, with action() in the middle; returns iperf's result and (pings
    sent, replies)."""
    results = {}
    transfer = threading.Thread(target=lambda: results.update(iperf=iperf(lab, src, dst, target, seconds=seconds)))
    transfer.start()
    pinger = SteadyPing(lab.ns(src), target, count=int(seconds * 150), interval=0.005).start()
    time.sleep(1.5)
    action()
    pings = pinger.result()
    transfer.join(timeout=seconds + 30)
    return results["iperf"], pings


def lab_cli(*args: str):
    """`pmip6ctl lab ...`, as an operator runs it."""
    from click.testing import CliRunner

    from pmip6ctl.cli import main
    return CliRunner().invoke(main, ["lab", *args])


def test_lab_move_names_the_links_an_mn_can_take(lab):
    refused = lab_cli("move", "mn1", "mag2")
    assert refused.exit_code == 1 and "mn1 can move between mag1 and mag3, not to mag2" in refused.output
    assert lab_cli("move", "mn1", "mag1").output == "mn1 is at mag1\n"     # already there: nothing to do


@pytest.mark.parametrize("mover", ["mn1", "mn2"], ids=["the MN moves", "the CN moves"])
def test_handover_with_ro_active_keeps_tcp_going_and_leaves_no_stale_entry(lab, clean_ro, triggers, mover):
    mn1, mn2 = lab.mns["mn1"]["ipv6"], lab.mns["mn2"]["ipv6"]
    stayer = "mn2" if mover == "mn1" else "mn1"
    assert ping(lab, "mn1", mn2, count=5) == 5                      # the trigger optimizes the flow
    wait_for(lambda: established(lab, "mag1", mn1, mn2), what="RO MAG1 ⇄ MAG2 before the move")
    home = t.HOME_MAG[mover]

    try:
        result, (sent, received) = transfer_while(lab, "mn1", "mn2", mn2, lambda: lab_cli("move", mover, t.AWAY_MAG))
        print(f"\n{mover} moved during the transfer: {sent - received} of {sent} pings (5 ms apart) lost")
        assert result["end"]["sum_received"]["bytes"] > 1_000_000 and "error" not in result
        # optimized again, now with MAG3
        mover_addr = mn1 if mover == "mn1" else mn2
        other_addr = mn2 if mover == "mn1" else mn1
        other_mag = t.HOME_MAG[stayer]
        wait_for(lambda: established(lab, t.AWAY_MAG, mover_addr, other_addr), what="RO with MAG3")
        # the other MAG may still be finishing its own attempt toward MAG3 (its flow triggers too)
        row = wait_for(lambda: established(lab, other_mag, other_addr, mover_addr), what="RO at the other end")
        assert row["peer"] == t.address6(t.AWAY_MAG)
        # both MAGs optimized the pair (MAG3 over IPv4, the other over IPv6):
        # each accepts the other's tunnel, and nothing is lost or refused
        before = {node: counters(lab, node) for node in ("mag1", "mag2", "mag3")}
        assert ping(lab, "mn1", mn2, count=20) == 20
        refused = {node: {reason: n for (program, reason), n in counters(lab, node).items()
                          if (reason.startswith("drop") or reason == "pass_no_egress")
                          and n != before[node].get((program, reason), 0)}
                   for node in before}
        assert refused == {"mag1": {}, "mag2": {}, "mag3": {}}
        # no stale entry anywhere: the old MAG holds nothing for the pair, nobody points at it
        # (once the removed entries have drained: DRAIN_SECONDS)
        def tunnels_toward_home():
            return [x for node in (t.AWAY_MAG, t.HOME_MAG[stayer]) for x in lab.client(node).call("tables")["tunnels"]
                    if x["remote"] in (t.address6(home), t.address4(home))]
        wait_for(lambda: all_ro_entries(lab)[home] == [] and tunnels_toward_home() == [], timeout=DRAIN_SECONDS + 5,
                 what="the old MAG's entries drained")
        entries = all_ro_entries(lab)
        assert all(e["remote"] != mover_addr or node != home for node, rows in entries.items() for e in rows)
        assert lab.client(home).call("tables")["mobile_nodes"] == []      # the old MAG forgot the MN
        assert binding(lab, "lma", f"{mover}@lab.example")["mag"] == t.address6(t.AWAY_MAG)
    finally:
        assert lab_cli("move", mover, home).exit_code == 0
        wait_for(lambda: (b := binding(lab, "lma", f"{mover}@lab.example")) and b["mag"] == t.address6(home),
                 what=f"{mover} back home")
        lab.configure_mn_ipv4(mover, lab.mns[mover]["ipv4"])
