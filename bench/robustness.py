#!/usr/bin/env python3
"""Robustness benchmark (issue 13), in the lab, each figure against a
baseline taken in the same run:

1. A flood of HoTIs toward MN2 from outside: what it offers per second, and
   what XDP hands MAG2's daemon (the punt budget) — against the offered rate.
2. MAG2's control socket during the flood — against the same calls idle.
3. MAG2's resident memory after the flood — against before it.
4. MN1 → MN2 pings (every 10 ms, RO up) lost across `kill -9` of MAG1 and its
   restart with its state file — against the same span with no restart.
5. The same across a reboot of MAG2 without its pins or state: how long MN1's
   optimized flow is black-holed once MAG2 is back (a Binding Error and a
   refresh end it; MN2's next packet attaches it again).

    .venv/bin/python bench/robustness.py [--flood-seconds 60] [--json]

Needs root; brings the lab up if it is down (and leaves it up).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import signal
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scapy.layers.inet6 import IPv6  # noqa: E402
from scapy.packet import Raw  # noqa: E402

from pmip6ctl import wire  # noqa: E402
from pmip6ctl.lab import probe  # noqa: E402
from pmip6ctl.lab.demo import attach_mobile_nodes  # noqa: E402
from pmip6ctl.lab.probe import SteadyPing  # noqa: E402
from pmip6ctl.lab.runner import Lab, poll  # noqa: E402

VICTIM = "2001:db8:66::1"


def say(line: str) -> None:
    print(f"  {line}", file=sys.stderr, flush=True)


def counters(lab: Lab, node: str) -> dict:
    return {(c["program"], c["reason"]): c["packets"] for c in lab.client(node).call("counters")}


def rss_kib(lab: Lab, node: str) -> int:
    status = Path(f"/proc/{lab.client(node).call('status')['pid']}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))


def control_latencies(lab: Lab, node: str, stop: threading.Event, into: list) -> None:
    while not stop.is_set():
        started = time.monotonic()
        lab.client(node, timeout=30).call("status")
        into.append((time.monotonic() - started) * 1000)
        time.sleep(0.05)


def flood(lab: Lab, mn2: str, seconds: float) -> int:
    hoti = wire.HomeTestInit(home_init_cookie=os.urandom(8))
    packet = bytes(IPv6(src=VICTIM, dst=mn2, nh=135) /
                   Raw(wire.encode(hoti, ipaddress.IPv6Address(VICTIM), ipaddress.IPv6Address(mn2))))
    return probe.flood(lab.ns("inet"), packet, mn2, seconds,
                       progress=lambda sent, left: say(f"flood: {sent} sent, {left:.0f} s to go"))


def punt_flood(lab: Lab, seconds: float) -> dict:
    mn2 = lab.mns["mn2"]["ipv6"]
    idle: list = []
    stop = threading.Event()
    asker = threading.Thread(target=control_latencies, args=(lab, "mag2", stop, idle))
    asker.start()
    time.sleep(2)
    stop.set()
    asker.join()
    rss_before, before = rss_kib(lab, "mag2"), counters(lab, "mag2")
    during: list = []
    stop = threading.Event()
    asker = threading.Thread(target=control_latencies, args=(lab, "mag2", stop, during))
    asker.start()
    started = time.monotonic()
    sent = flood(lab, mn2, seconds)
    elapsed = time.monotonic() - started
    stop.set()
    asker.join()
    time.sleep(1)
    after = counters(lab, "mag2")
    punted = after[("mag_transport", "punt_mh")] - before.get(("mag_transport", "punt_mh"), 0)
    return {"offered_per_s": round(sent / elapsed), "punted_per_s": round(punted / elapsed),
            "punted_share": round(punted / max(sent, 1), 5),
            "control_ms_idle": {"p50": round(statistics.median(idle), 2), "max": round(max(idle), 2)},
            "control_ms_flood": {"p50": round(statistics.median(during), 2), "max": round(max(during), 2),
                                 "n": len(during)},
            "rss_kib": {"before": rss_before, "after": rss_kib(lab, "mag2")}}


def lost_across(lab: Lab, action, seconds: float = 14.0, interval: float = 0.01) -> tuple[int, int]:
    """Pings MN1 → MN2 (and MN2 → MN1, which MAG2 needs to learn MN2 after a
    reboot) around action(); returns (sent, lost) of MN1's."""
    mn1, mn2 = lab.mns["mn1"]["ipv6"], lab.mns["mn2"]["ipv6"]
    count = int(seconds / interval)
    forth = SteadyPing(lab.ns("mn1"), mn2, count=count, interval=interval).start()
    back = SteadyPing(lab.ns("mn2"), mn1, count=count, interval=interval).start()
    time.sleep(1)
    action()
    sent, received = forth.result()
    back.result()
    return sent, sent - received


def start_ro(lab: Lab) -> None:
    mn1, mn2 = lab.mns["mn1"]["ipv6"], lab.mns["mn2"]["ipv6"]
    lab.client("mag1").call("ro_start", mn=mn1, cn=mn2)
    if not poll(lambda: any(r.get("phase") == "established" and r.get("remote") == mn2
                            for r in lab.client("mag1").call("ro_list")), 10):
        raise SystemExit("RO MN1 ⇄ MN2 did not come up")


def restarts(lab: Lab) -> dict:
    def kill_and_restart():
        lab.stop_daemon("mag1", sig=signal.SIGKILL)
        lab.start_daemon("mag1")
        lab.wait_ready("mag1")

    def reboot_without_state():
        lab.stop_daemon("mag2", sig=signal.SIGKILL)
        shutil.rmtree(lab.pin_root / "mag2", ignore_errors=True)
        lab.socket("mag2").with_suffix(".state.json").unlink(missing_ok=True)
        lab.start_daemon("mag2")
        lab.wait_ready("mag2")
        ready_at.append(time.monotonic())

    start_ro(lab)
    say("baseline: RO up, nothing restarts")
    baseline = lost_across(lab, lambda: None)
    say("kill -9 of MAG1, restart with its state file")
    killed = lost_across(lab, kill_and_restart)
    ready_at: list = []
    say("MAG2 reboots without pins or state")
    rebooted = lost_across(lab, reboot_without_state, seconds=20)
    return {"baseline": {"sent": baseline[0], "lost": baseline[1]},
            "kill_9_mag1_with_state": {"sent": killed[0], "lost": killed[1]},
            "mag2_back_without_state": {"sent": rebooted[0], "lost": rebooted[1]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flood-seconds", type=float, default=60)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    lab = Lab(progress=lambda line: say(f"[lab] {line}"))
    if not lab.namespaces():
        lab.up()
    if not any(b["state"] == "registered" for b in lab.client("mag2").call("bindings")):
        lab.mns = attach_mobile_nodes(lab)
    else:
        lab.mns = {mn: {"ipv6": lab.mn_addresses(mn)[0]} for mn in ("mn1", "mn2")}
    say(f"punt flood toward MN2 for {args.flood_seconds:.0f} s")
    result = {"flood": punt_flood(lab, args.flood_seconds), "restarts": restarts(lab)}
    if args.json:
        print(json.dumps(result, indent=1))
        return
    f, r = result["flood"], result["restarts"]
    print(f"flood: {f['offered_per_s']:,}/s offered, {f['punted_per_s']:,}/s punted "
          f"({f['punted_share']:.2%} of offered)")
    print(f"control socket: p50 {f['control_ms_flood']['p50']} ms, max {f['control_ms_flood']['max']} ms "
          f"during the flood; idle p50 {f['control_ms_idle']['p50']} ms, max {f['control_ms_idle']['max']} ms")
    print(f"MAG2 RSS: {f['rss_kib']['before']:,} KiB before, {f['rss_kib']['after']:,} KiB after")
    for name, row in r.items():
        print(f"{name}: {row['lost']} of {row['sent']} pings (10 ms apart) lost")


if __name__ == "__main__":
    main()
