"""Issue 13, item 1: a flood of mobility messages from outside toward an MN
leaves its MAG working. XDP hands the daemon no more than its per-CPU punt
budget, the daemon answers a forged source at a bounded rate, writes a
bounded number of log lines, and keeps answering its control socket and
/metrics; the MN's binding and traffic are untouched."""

from __future__ import annotations

import ipaddress
import os
import threading
import time

import pytest
from scapy.layers.inet6 import IPv6
from scapy.packet import Raw

from pmip6ctl import wire
from pmip6ctl.config import DataplaneSection, SecuritySection
from pmip6ctl.lab.probe import flood

from ..lab.conftest import binding, counters, delta, metric, metrics, ping, signaling

pytestmark = pytest.mark.root

VICTIM = "2001:db8:66::1"          # the forged source: whoever the attacker wants the answers to hit
FLOOD_SECONDS = 3.0


def test_a_hoti_flood_toward_an_mn_is_held_to_the_budget_and_the_mag_keeps_working(lab):
    mn2 = lab.mns["mn2"]["ipv6"]
    hoti = wire.HomeTestInit(home_init_cookie=os.urandom(8))
    packet = bytes(IPv6(src=VICTIM, dst=mn2, nh=135, hlim=64) /
                   Raw(wire.encode(hoti, ipaddress.IPv6Address(VICTIM), ipaddress.IPv6Address(mn2))))
    def bound():
        return {k: v for k, v in binding(lab, "lma", "mn2@lab.example").items() if k != "expires_in"}
    was = bound()
    log = lab.lab_dir / "logs" / "mag2.log"
    lines_before = len(log.read_text(errors="replace").splitlines())
    before, said_before = counters(lab, "mag2"), signaling(lab, "mag2")

    answered, failures = [], []

    def ask_while_flooding(stop: threading.Event) -> None:
        while not stop.is_set():
            start = time.monotonic()
            try:
                lab.client("mag2", timeout=10).call("status")
                metrics(lab, "mag2")
                answered.append(time.monotonic() - start)
            except Exception as exc:                   # noqa: BLE001  (reported below)
                failures.append(repr(exc))
            time.sleep(0.1)
    stop = threading.Event()
    asker = threading.Thread(target=ask_while_flooding, args=(stop,))
    asker.start()
    started = time.monotonic()
    try:
        # from outside, FLOOD_SECONDS at least, and on until the asker got its answers
        # in (a loaded machine may slow it; the flood is what it must answer through)
        sent = flood(lab.ns("inet"), packet, mn2, FLOOD_SECONDS)
        while len(answered) < 5 and time.monotonic() - started < 30 and not failures:
            sent += flood(lab.ns("inet"), packet, mn2, 0.5)
    finally:
        stop.set()
        asker.join(timeout=30)
    elapsed = time.monotonic() - started
    time.sleep(1)                                      # the queue drains
    after, said = counters(lab, "mag2"), signaling(lab, "mag2")
    print(f"\n{sent} HoTIs in {elapsed:.1f} s; control and /metrics answered {len(answered)} times, "
          f"slowest {max(answered, default=0):.2f} s")

    # the daemon answered all along
    assert failures == [] and len(answered) >= 5
    # XDP handed it no more than its budget: per CPU, the burst and then the rate
    dp, sec = DataplaneSection(), SecuritySection()
    punted = delta(after, before, "mag_transport", "punt_mh")
    limited = delta(after, before, "mag_transport", "drop_punt_limit")
    assert sent > 2 * dp.punt_rate * elapsed                 # a real flood, over the budget
    assert punted <= os.cpu_count() * (dp.punt_burst + dp.punt_rate * (elapsed + 1))
    assert limited > 0 and punted + limited <= sent
    # the forged source drew HoTs at its prefix's rate only, the rest counted
    hots = said.get(("hot", "out", "ok"), 0) - said_before.get(("hot", "out", "ok"), 0)
    held = said.get(("hot", "out", "rate_limited"), 0) - said_before.get(("hot", "out", "rate_limited"), 0)
    assert 0 < hots <= sec.answer_burst + sec.answer_rate * (elapsed + 2)
    assert hots + held <= punted
    # a bounded log: each kind of line at 10 at once, then 1 a second
    added = log.read_text(errors="replace").splitlines()[lines_before:]
    assert len(added) < 100, added[:20]
    # every refusal is in /metrics
    text = metrics(lab, "mag2")
    assert metric(text, "pmip6_dataplane_events_total", program="mag_transport", kind="over_budget") >= limited
    assert metric(text, "pmip6_dataplane_packets_total", program="mag_transport", reason="drop_punt_limit") >= limited
    assert metric(text, "pmip6_log_lines_suppressed_total") > 0
    assert metric(text, "pmip6_event_queue_capacity") == dp.event_queue
    # and nothing changed for the MN: its binding stands, its traffic flows
    assert bound() == was
    assert ping(lab, "mn1", mn2, count=10) == 10
