"""Liveness (RFC 5847, issue 13 item 5) in the lab: the MAG and its LMA
watch each other with signed heartbeats; with RO up, a MAG2 whose daemon
dies and whose data plane stops forwarding is declared dead by MAG1, whose
MN1 → MN2 traffic then takes the LMA path again; forged heartbeats change
nothing and are counted by their refusal.

The lab runs with [heartbeat]'s defaults (60 s and 10 s between RO peers);
these tests reload LMA, MAG1 and MAG2 with 0.5 s × 3 and put the files back
after. Assertions wait on conditions, never on the detection time."""

from __future__ import annotations

import ipaddress
import random
import signal
import threading

import pytest
from scapy.layers.inet6 import IPv6
from scapy.packet import Raw

from pmip6ctl import wire
from pmip6ctl.daemon.ro_entries import DRAIN_SECONDS
from pmip6ctl.lab import topology as t

from .conftest import counters, delta, metric, metrics, mh, ping, ro_row, send_ipv6, signaling, wait_for
from . import test_ro
from .test_ro import addresses, lma_forwarded, start_ro

clean_ro = test_ro.clean_ro               # the fixture: no RO anywhere before and after

pytestmark = pytest.mark.root

FAST = """
[heartbeat]
interval = 0.5
missed = 3
ro_interval = 0.5
ro_missed = 3
"""
NODES = ("lma", "mag1", "mag2")


@pytest.fixture
def fast_heartbeats(lab):
    """LMA, MAG1 and MAG2 reloaded with 0.5 s heartbeats; put back after
    (MAG2 restarted if a test left it down)."""
    saved = {node: (lab.lab_dir / f"{node}.toml").read_text() for node in NODES}
    for node in NODES:
        (lab.lab_dir / f"{node}.toml").write_text(saved[node] + FAST)
        assert "heartbeat.interval" in lab.client(node).call("reload")["applied"]
    yield
    for node in NODES:
        (lab.lab_dir / f"{node}.toml").write_text(saved[node])
        if node == "mag2" and lab.pid("mag2") is None:
            lab.restart_daemon("mag2")
        lab.client(node).call("reload")


def liveness(lab, node: str, peer: str) -> dict | None:
    return next((r for r in lab.client(node).call("status")["liveness"] if r["peer"] == peer), None)


def answered(lab, node: str, peer: str, at_least: int):
    row = liveness(lab, node, peer)
    return row if row and row["state"] == "alive" and row["answers"] >= at_least else None


def test_mag_and_lma_exchange_heartbeats(lab, fast_heartbeats):
    mag1, lma = t.address6("mag1"), t.address6("lma")
    before = {node: signaling(lab, node) for node in ("mag1", "lma")}
    # (waited for, not sampled once: on a loaded machine one answer may come after the next request)
    row = wait_for(lambda: (r := answered(lab, "mag1", lma, 4)) and r["missed"] <= 1 and r, timeout=20,
                   what="MAG1's LMA answering heartbeats")
    assert row["kind"] == "lma" and row["missed"] <= 1
    row = wait_for(lambda: answered(lab, "lma", mag1, 4), timeout=20, what="the LMA's MAG1 answering")
    assert row["kind"] == "mag"
    for node in ("mag1", "lma"):
        now = signaling(lab, node)
        for direction in ("in", "out"):
            key = ("heartbeat", direction, "ok")
            assert now.get(key, 0) - before[node].get(key, 0) >= 8, (node, direction)
        refused = {k: v - before[node].get(k, 0) for k, v in now.items() if k[0] == "heartbeat" and k[2] != "ok"}
        assert not any(refused.values()), (node, refused)
    text = metrics(lab, "mag1")
    assert metric(text, "pmip6_heartbeat_peers", kind="lma", state="alive") == 1


def forged_ro_responses(lab, stop: threading.Event, mn1: str, mn2: str) -> None:
    """What an attacker on the path sends MAG1 in MAG2's name while MAG2 is
    dead: answers with every sequence number it guesses, unsigned and with
    a made-up authenticator."""
    src, dst = t.address6("mag2"), t.address6("mag1")
    rng = random.Random(5847)
    while not stop.is_set():
        options = [wire.HomeNetworkPrefix(128, ipaddress.IPv6Address(mn1)),
                   wire.CNHomeNetworkPrefix(128, ipaddress.IPv6Address(mn2)), wire.Timestamp.from_unix(0)]
        for signed in (False, True):
            extra = [wire.BindingAuthorizationData(rng.randbytes(12))] if signed else []
            hb = wire.Heartbeat(False, True, rng.getrandbits(32), [*options, *extra])
            send_ipv6(lab, "inet", IPv6(src=src, dst=dst, nh=135, hlim=64) / Raw(mh(hb, src, dst)))
        stop.wait(0.05)


@pytest.mark.usefixtures("clean_ro")
def test_a_dead_ro_peer_is_detected_and_the_flow_goes_back_via_the_lma(lab, fast_heartbeats):
    mn1, mn2 = addresses(lab)
    mag2 = t.address6("mag2")
    start_ro(lab, mn1, mn2)
    wait_for(lambda: answered(lab, "mag1", mag2, 3), timeout=20, what="MAG2 answering MAG1's RO heartbeats")
    assert liveness(lab, "mag1", mag2)["kind"] == "ro_peer"
    assert ping(lab, "mn1", mn2, count=5) == 5
    text = metrics(lab, "mag1")
    removed0 = metric(text, "pmip6_ro_removed_total", role="initiator", reason="peer_dead")
    dead0 = metric(text, "pmip6_heartbeat_peer_events_total", kind="ro_peer", event="dead")
    said0 = signaling(lab, "mag1")

    # MAG2 dies: its daemon, and its data plane with it (kill -9 alone leaves
    # the pinned XDP programs forwarding, which is a feature)
    lab.stop_daemon("mag2", sig=signal.SIGKILL)
    lab.net.ip("mag2", "link set dev tr0 xdp off", "link set dev acc1 xdp off")
    stop = threading.Event()
    attacker = threading.Thread(target=forged_ro_responses, args=(lab, stop, mn1, mn2))
    attacker.start()
    try:
        row = wait_for(lambda: (r := ro_row(lab, "mag1", mn1, mn2)) and r.get("phase") == "backoff" and r,
                       timeout=30, what="MAG1 to declare MAG2 dead and end the pair")
        assert "heartbeat" in row["last_failure"]
    finally:
        stop.set()
        attacker.join()
    wait_for(lambda: lab.client("mag1").call("tables")["ro_entries"] == [], timeout=DRAIN_SECONDS + 10,
             what="MAG1's RO entry drained and gone")
    assert liveness(lab, "mag1", mag2) is None                      # no pair with it: not watched any more
    text = metrics(lab, "mag1")
    assert metric(text, "pmip6_ro_removed_total", role="initiator", reason="peer_dead") == removed0 + 1
    assert metric(text, "pmip6_heartbeat_peer_events_total", kind="ro_peer", event="dead") == dead0 + 1
    said = signaling(lab, "mag1")
    # the forged answers were heard, and refused by name
    assert said.get(("heartbeat", "in", "unauthenticated"), 0) > said0.get(("heartbeat", "in", "unauthenticated"), 0)
    assert said.get(("heartbeat", "in", "bad_authenticator"), 0) > said0.get(("heartbeat", "in", "bad_authenticator"), 0)

    # MN1's traffic takes MAG1's tunnel to the LMA now, not the RO tunnel
    before, lma0 = counters(lab, "mag1"), lma_forwarded(lab)
    ping(lab, "mn1", mn2, count=10)                                 # MAG2 is dead: no replies
    after = counters(lab, "mag1")
    assert delta(after, before, "mag_access", "fwd_encap_ro") == 0
    assert delta(after, before, "mag_access", "fwd_encap_pmip") >= 10
    assert lma_forwarded(lab) - lma0 >= 10

    # MAG2 back (its XDP attached again): MN1 ⇄ MN2 through the LMA, end to end
    lab.restart_daemon("mag2")
    wait_for(lambda: ping(lab, "mn1", mn2, count=3, interval=0.2) == 3, timeout=30, what="MN1 ⇄ MN2 via the LMA")
    lma0 = lma_forwarded(lab)
    assert ping(lab, "mn1", mn2, count=10) == 10
    assert lma_forwarded(lab) - lma0 >= 20                            # both directions through the LMA
    assert lab.client("mag1").call("tables")["ro_entries"] == []


def test_forged_heartbeats_to_the_lma_get_no_answer(lab, fast_heartbeats):
    """A request in MAG1's name without its key: refused and counted; the
    answer it asks for is never sent (no reflection)."""
    lma, mag1 = t.address6("lma"), t.address6("mag1")
    before = signaling(lab, "lma")
    for sequence in range(20):
        hb = wire.Heartbeat(False, False, sequence, [wire.Timestamp.from_unix(0)])
        send_ipv6(lab, "inet", IPv6(src=mag1, dst=lma, nh=135, hlim=64) / Raw(mh(hb, mag1, lma)))
    wait_for(lambda: signaling(lab, "lma").get(("heartbeat", "in", "unauthenticated"), 0)
             - before.get(("heartbeat", "in", "unauthenticated"), 0) >= 20, what="the LMA's refusals counted")
    # the LMA still answers MAG1 itself
    row = liveness(lab, "mag1", lma)
    assert row is not None
    wait_for(lambda: answered(lab, "mag1", lma, row["answers"] + 2), timeout=20, what="MAG1's own heartbeats answered")
