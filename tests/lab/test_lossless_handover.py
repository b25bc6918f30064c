"""Issue 16, item 2: handover without loss. MN1 has one radio (its air,
lab/topology.py): a move turns its frames from MAG1 to MAG3 and it sends on
at once, through the same default router (every MAG has the access
link-layer address [mag] access_mac). MAG3 holds what MN1 sends while its
PBU is in flight and releases it on the PBA (docs/operations.md, "Handover
buffer"). No timing is asserted: what was held was released, and the pings
sent across the move came back, but for a few at the radio's switch."""

from __future__ import annotations

import sys
import time

import pytest

from pmip6ctl.lab import topology as t
from pmip6ctl.lab.probe import SteadyPing

from .conftest import binding, established, metric, metrics, ping, wait_for
from .test_ro import clean_ro  # noqa: F401  (a fixture)

pytestmark = pytest.mark.root

BAD = ("full", "aged", "wrong_source", "registration_failed", "send_failed")


def buffered(lab, node: str) -> dict:
    return lab.client(node).call("buffer_settings")


def runs(missing: set[int]) -> list[int]:
    """Lengths of the runs of consecutive sequence numbers in missing."""
    lengths, previous = [], None
    for sequence in sorted(missing):
        if previous is not None and sequence == previous + 1:
            lengths[-1] += 1
        else:
            lengths.append(1)
        previous = sequence
    return lengths


def what_went(before: dict, after: dict, bad: tuple[str, ...]) -> tuple[int, int, dict[str, int]]:
    """Held, released and the drops for each of `bad`, between two counts of a
    buffer or hold (`buffer_settings` / `hold_settings`)."""
    return (after["held"] - before["held"], after["released"] - before["released"],
            {r: after["dropped"].get(r, 0) - before["dropped"].get(r, 0) for r in bad})


def move_during_pings(lab, to: str) -> tuple[SteadyPing, dict, dict]:
    """MN1 moves to `to` half-way through 1,000 pings to MN2, 2 ms apart;
    the new MAG's buffer counts before and after."""
    before = buffered(lab, to)
    pinger = SteadyPing(lab.ns("mn1"), lab.mns["mn2"]["ipv6"], count=1000, interval=0.002, linger=3.0).start()
    time.sleep(1.0)
    lab.move("mn1", to)
    pinger.result()
    # the released packets' replies are counted within the linger; the counts settle with them
    return pinger, before, buffered(lab, to)


@pytest.mark.parametrize("optimized", [False, True], ids=["LMA path", "RO active"])
def test_what_mn1_sends_during_the_pbu_is_held_and_released_and_its_pings_come_back(
        lab, clean_ro, triggers, optimized):
    mn1, mn2 = lab.mns["mn1"]["ipv6"], lab.mns["mn2"]["ipv6"]
    assert lab.where("mn1") == "mag1"
    if optimized:
        assert ping(lab, "mn1", mn2, count=5) == 5
        wait_for(lambda: established(lab, "mag1", mn1, mn2), what="RO MAG1 ⇄ MAG2 before the move")
    else:
        for node in ("mag1", "mag3"):
            lab.client(node).call("ro_settings", trigger_packets=0)
    page0 = metrics(lab, "mag3")
    try:
        pinger, before, after = move_during_pings(lab, t.AWAY_MAG)
        assert lab.where("mn1") == t.AWAY_MAG
        assert binding(lab, "lma", "mn1@lab.example")["mag"] == t.address6(t.AWAY_MAG)
        held, released, drops = what_went(before, after, BAD)
        missing = set(range(pinger.sent)) - pinger.replies
        print(f"\nmove to MAG3 ({'RO' if optimized else 'LMA path'}): {held} held, {released} released, "
              f"{len(missing)} of {pinger.sent} pings lost {sorted(missing)}")
        # MN1 kept sending through the attach: MAG3 held those packets and let every one go
        assert held >= 1 and released == held and drops == dict.fromkeys(BAD, 0)
        # the metrics say the same
        page = metrics(lab, "mag3")
        assert metric(page, "pmip6_handover_released_total") - metric(page0, "pmip6_handover_released_total") \
            == released
        assert metric(page, "pmip6_table_capacity", table="handover_buffer") == after["packets_total"]
        # ... so the pings sent while the PBU was in flight came back: what is lost is a
        # packet or two at the radio's switch, never the run of the whole attach (the
        # baseline, buffer off, loses one per 2 ms of it: bench/handover.py)
        # (the bench's worst of 20 RO moves lost 4 at 1 ms pace; the bound leaves room for a
        # loaded machine, while held == released above already fails without the buffer)
        assert len(missing) <= 10 and all(length <= 5 for length in runs(missing)), sorted(missing)
        if optimized:
            wait_for(lambda: established(lab, t.AWAY_MAG, mn1, mn2), what="RO again, from MAG3")
    finally:
        lab.move("mn1", "mag1")
        wait_for(lambda: (b := binding(lab, "lma", "mn1@lab.example")) and b["mag"] == t.address6("mag1"),
                 what="MN1 back at MAG1")
    assert ping(lab, "mn1", mn2, count=5) == 5


def test_a_stranger_on_an_access_link_is_neither_held_nor_attached(lab):
    """MN3's MAC (mn1's eth1) is in MAG3's MN-ID table, but only on acc3: its
    frames on MN1's link (acc1), from a source no MN holds, attach nobody
    and are dropped as not attaching: punted, never held."""
    from scapy.layers.inet import UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    before = buffered(lab, "mag3")
    lab.move("mn1", t.AWAY_MAG)
    try:
        wait_for(lambda: binding(lab, "mag3", "mn1@lab.example"), what="MN1 at MAG3 (its RS)")
        frame = Ether(src=t.SECOND_MACS["mn1"], dst=t.ACCESS_MAC) / IPv6(
            src="2001:db8:100:ff::99", dst=t.CN6) / UDP(dport=9)
        lab.sh("air1", sys.executable, "-c", "import socket,sys; s=socket.socket(socket.AF_PACKET, socket.SOCK_RAW);"
               f"s.bind(('{t.AWAY_MAG}', 0)); [s.send(bytes.fromhex(sys.argv[1])) for _ in range(5)]",
               bytes(frame).hex())
        after = wait_for(lambda: (a := buffered(lab, "mag3"))["dropped"].get("not_attaching", 0)
                         >= before["dropped"].get("not_attaching", 0) + 5 and a, what="the drops counted")
        assert after["held"] == before["held"]
        assert binding(lab, "mag3", t.SECOND_NAIS["mn1"]) is None
    finally:
        lab.move("mn1", "mag1")
        wait_for(lambda: (b := binding(lab, "lma", "mn1@lab.example")) and b["mag"] == t.address6("mag1"),
                 what="MN1 back at MAG1")


DOWNLINK_BAD = ("full", "aged", "binding_deleted", "wrong_destination", "send_failed")


def test_what_reaches_the_lma_for_mn1_between_mags_is_held_and_released_to_the_new_mag(lab):
    """The downlink (docs/operations.md, "Downlink hold"): MN2 pings MN1
    while MN1 moves. From MAG1's deregistration to MAG3's binding, the LMA
    holds what arrives for MN1's prefix and releases it to MAG3 after the
    PBA: every held packet is released, and the pings come back but for a
    few (those in flight to MAG1 when MN1's radio left it)."""
    mn1 = lab.mns["mn1"]["ipv6"]
    assert lab.where("mn1") == "mag1"
    for node in ("mag1", "mag2", "mag3"):
        lab.client(node).call("ro_settings", trigger_packets=0)
    page0 = metrics(lab, "lma")
    before = lab.client("lma").call("hold_settings")
    assert before["enabled"]
    try:
        pinger = SteadyPing(lab.ns("mn2"), mn1, count=1000, interval=0.002, linger=3.0).start()
        time.sleep(1.0)
        lab.move("mn1", t.AWAY_MAG)
        pinger.result()
        assert binding(lab, "lma", "mn1@lab.example")["mag"] == t.address6(t.AWAY_MAG)
        after = wait_for(lambda: (a := lab.client("lma").call("hold_settings"))["holding"] == 0
                         and not a["between_mags"] and a, what="the hold emptied")
        held, released, drops = what_went(before, after, DOWNLINK_BAD)
        missing = set(range(pinger.sent)) - pinger.replies
        print(f"\nMN2 → MN1 across the move: {held} held by the LMA, {released} released, "
              f"{len(missing)} of {pinger.sent} pings lost {sorted(missing)}")
        assert held >= 1 and released == held and drops == dict.fromkeys(DOWNLINK_BAD, 0)
        page = metrics(lab, "lma")
        assert metric(page, "pmip6_downlink_released_total") - metric(page0, "pmip6_downlink_released_total") \
            == released
        assert metric(page, "pmip6_table_capacity", table="downlink_hold") == after["packets_total"]
        # what is lost went to MAG1 before the LMA heard of the move (≈ 8 ms in the bench); the
        # bound leaves room for a loaded machine (120 ms of it)
        assert len(missing) <= 60, sorted(missing)
    finally:
        lab.move("mn1", "mag1")
        wait_for(lambda: (b := binding(lab, "lma", "mn1@lab.example")) and b["mag"] == t.address6("mag1"),
                 what="MN1 back at MAG1")
    assert ping(lab, "mn2", mn1, count=5) == 5
