#!/usr/bin/env python3
"""Handover benchmark: MN1 moves between MAG1 and MAG3 while it pings MN2
every millisecond, N times, with route optimization active, and the same
moves with route optimization off (the LMA path only) as the baseline, in
the same run.

Per move it reports the pings lost and, with RO, the time from the MN's
Router Solicitation on the new access link (the moment the network can know
about the move) to the first MN1→MN2 packet on the optimized path again.
Both are packet timestamps taken by the kernel (one clock): the RS at the
new MAG's access link, the tunnelled echo at the router's end of the new
MAG's transport link.
Targets: ≤ 3 packets lost (p50), optimized path back within 20 ms (p50).

    .venv/bin/python bench/handover.py [--moves 50] [--json]

Needs root; brings the lab up if it is down (and leaves it up).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scapy.layers.inet import IP  # noqa: E402
from scapy.layers.inet6 import ICMPv6EchoRequest, ICMPv6ND_RS, IPv6  # noqa: E402
from scapy.utils import rdpcap  # noqa: E402

from pmip6ctl.lab import topology as t  # noqa: E402
from pmip6ctl.lab.demo import attach_mobile_nodes  # noqa: E402
from pmip6ctl.lab.runner import Lab  # noqa: E402

PEERS = {"mag1": "mag2", "mag3": "mag2"}


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] if ordered else None


def ro_entries(lab, node):
    return lab.client(node).call("tables")["ro_entries"]


def wait(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def first_router_solicitation(pcap: Path, after: float) -> float | None:
    for packet in rdpcap(str(pcap)):
        if float(packet.time) >= after and packet.haslayer(ICMPv6ND_RS):
            return float(packet.time)
    return None


def capture(namespace: str, interface: str, pcap: Path, expression: str) -> subprocess.Popen:
    return subprocess.Popen(["nsenter", f"--net=/run/netns/{namespace}", "tcpdump", "-Z", "root", "-i",
                             interface, "-U", "-w", str(pcap), expression],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def first_optimized(pcap: Path, mag: str, mn1: str, mn2: str, after: float) -> float | None:
    """Time of the first echo request MN1→MN2 tunnelled from `mag` to MAG2."""
    mag6, mag4, peer6, peer4 = t.address6(mag), t.address4(mag), t.address6("mag2"), t.address4("mag2")
    for packet in rdpcap(str(pcap)):
        when = float(packet.time)
        if when < after:
            continue
        outer6 = packet.getlayer(IPv6)
        outer4 = packet.getlayer(IP)
        direct = ((outer4 is not None and (outer4.src, outer4.dst) == (mag4, peer4))
                  or (outer6 is not None and (outer6.src, outer6.dst) == (mag6, peer6)))
        inner = packet.getlayer(IPv6, nb=2) if outer4 is None else packet.getlayer(IPv6)
        if direct and inner is not None and inner.haslayer(ICMPv6EchoRequest) and (inner.src, inner.dst) == (mn1, mn2):
            return when
    return None


def run_moves(lab: Lab, moves: int, optimize: bool) -> dict:
    mn1, mn2 = lab.mns["mn1"]["ipv6"], lab.mns["mn2"]["ipv6"]
    for node in ("mag1", "mag2", "mag3"):
        lab.client(node).call("ro_settings", trigger_packets=1 if optimize else 0)
    lost, back = [], []
    for i in range(moves):
        target = "mag3" if lab.where("mn1") == "mag1" else "mag1"
        # settle: RO in place (or not) before the move
        if optimize:
            lab.net.sh_ok("mn1", "ping", "-c", "3", "-i", "0.01", mn2)
            wait(lambda: ro_entries(lab, lab.where("mn1")))
        workdir = Path(tempfile.mkdtemp())
        transport_pcap, access_pcap = workdir / "transport.pcap", workdir / "access.pcap"
        access_link = "acc1"   # MN1's link at MAG1 and at MAG3 alike
        captures = [capture(lab.ns("inet"), target, transport_pcap, "ip6 or ip"),
                    capture(lab.ns(target), access_link, access_pcap, "icmp6")]
        time.sleep(0.5)
        result = {}

        def pinger():
            out = lab.net.sh_ok("mn1", "ping", "-c", "800", "-i", "0.001", "-W", "1", mn2)
            result["ping"] = tuple(map(int, re.search(r"(\d+) packets transmitted, (\d+) received", out).groups()))

        thread = threading.Thread(target=pinger)
        thread.start()
        time.sleep(0.2)
        moved_at = time.time()
        lab.move("mn1", target)
        thread.join(timeout=30)
        time.sleep(0.5)
        for running in captures:
            running.send_signal(2)
            running.wait(timeout=10)
        sent, received = result["ping"]
        lost.append(sent - received)
        if optimize:
            solicited = first_router_solicitation(access_pcap, moved_at)
            when = first_optimized(transport_pcap, target, mn1, mn2, moved_at)
            if solicited is not None and when is not None:
                back.append((when - solicited) * 1000)
        # the flow must stop for a second so that the data plane triggers again
        time.sleep(1.1)
    return {"moves": moves, "lost_p50": statistics.median(lost), "lost_p90": percentile(lost, 90),
            "lost_max": max(lost), "back_p50_ms": statistics.median(back) if back else None,
            "back_p90_ms": percentile(back, 90), "measured_back": len(back)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--moves", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    lab = Lab(progress=lambda line: print(f"  [lab] {line}", file=sys.stderr))
    if not lab.namespaces():
        lab.up()
    if not any(b["state"] == "registered" for b in lab.client("mag1").call("bindings")):
        lab.mns = attach_mobile_nodes(lab)
    else:
        lab.mns = {mn: {"ipv6": lab.mn_addresses(mn)[0]} for mn in ("mn1", "mn2")}
    lab.move("mn1", "mag1")
    results = {"lma_path_only": run_moves(lab, args.moves, optimize=False),
               "route_optimized": run_moves(lab, args.moves, optimize=True)}
    lab.move("mn1", "mag1")
    for node in ("mag1", "mag2", "mag3"):
        lab.client(node).call("ro_settings", trigger_packets=0)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    base, ro = results["lma_path_only"], results["route_optimized"]
    print(f"{'measure, over ' + str(args.moves) + ' moves MAG1 ⇄ MAG3, 1 ms ping':<58}{'LMA path only':>15}{'with RO':>10}  target")
    print(f"{'pings lost per move, p50':<58}{base['lost_p50']:>15}{ro['lost_p50']:>10}  <= 3")
    print(f"{'pings lost per move, p90':<58}{base['lost_p90']:>15}{ro['lost_p90']:>10}")
    print(f"{'RS on the new link → optimized path again, p50 ms':<58}{'-':>15}{ro['back_p50_ms'] or 0:>10.1f}  <= 20")
    print(f"{'RS on the new link → optimized path again, p90 ms':<58}{'-':>15}{ro['back_p90_ms'] or 0:>10.1f}")
    print(f"{'moves where the optimized path came back':<58}{'-':>15}{ro['measured_back']:>10}")


if __name__ == "__main__":
    main()
