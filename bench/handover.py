#!/usr/bin/env python3
"""Handover benchmark: MN1 moves between MAG1 and MAG3 while it pings MN2
every millisecond, N times: first with route optimization off (the LMA path
only: the baseline), then with RO by return routability, then in quick
mode, all in the same run.

Per move it reports the pings lost and, with RO, when the flow is on the
optimized path again. The echo requests leave at a fixed pace, whatever
comes back (pmip6ctl.lab.probe: iputils ping slows to one per 10 ms while
replies are missing). Every time is a kernel packet timestamp (one clock):
on MN1's side of its new link, its Router Solicitation, the MAG's Router
Advertisement and MN1's first echo request after it; at the router's end of
the new MAG's transport link, the first MN1→MN2 echo request tunnelled
straight to MAG2. So the time back splits into the PMIPv6 attach (RS → RA,
the same without RO), the MN's own step (RA → its first packet: it
configures its address and resolves the router) and route optimization
(first packet → optimized path).
Targets: ≤ 3 packets lost (p50), optimized path back within 20 ms (p50).

    .venv/bin/python bench/handover.py [--moves 50] [--json]

Needs root; brings the lab up if it is down (and leaves it up).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scapy.layers.inet import IP  # noqa: E402
from scapy.layers.inet6 import ICMPv6EchoRequest, ICMPv6ND_RA, ICMPv6ND_RS, IPv6  # noqa: E402
from scapy.utils import rdpcap  # noqa: E402

from pmip6ctl.lab import topology as t  # noqa: E402
from pmip6ctl.lab.demo import attach_mobile_nodes  # noqa: E402
from pmip6ctl.lab.probe import SteadyPing  # noqa: E402
from pmip6ctl.lab.runner import Lab, poll  # noqa: E402

MAGS = ("mag1", "mag2", "mag3")


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] if ordered else None


def summary(values) -> dict:
    return {"p50": statistics.median(values) if values else None, "p90": percentile(values, 90),
            "max": max(values) if values else None, "n": len(values)}


def capture(namespace: str, interface: str, pcap: Path, expression: str) -> subprocess.Popen:
    return subprocess.Popen(["nsenter", f"--net=/run/netns/{namespace}", "tcpdump", "-Z", "root", "-i",
                             interface, "-U", "-w", str(pcap), expression],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def access_timeline(pcap: Path, mn1: str, mn2: str, after: float) -> dict:
    """RS, RA and MN1's first echo request after the RA, on MN1's side."""
    found = {}
    for packet in rdpcap(str(pcap)):
        when = float(packet.time)
        if when < after:
            continue
        if "rs" not in found and packet.haslayer(ICMPv6ND_RS):
            found["rs"] = when
        elif "rs" in found and "ra" not in found and packet.haslayer(ICMPv6ND_RA):
            found["ra"] = when
        elif "ra" in found and packet.haslayer(ICMPv6EchoRequest) and \
                (packet[IPv6].src, packet[IPv6].dst) == (mn1, mn2):
            found["first_packet"] = when
            break
    return found


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


def run_moves(lab: Lab, moves: int, mode: str | None) -> dict:
    """mode: None for the LMA path only, else "rr" or "quick"."""
    mn1, mn2 = lab.mns["mn1"]["ipv6"], lab.mns["mn2"]["ipv6"]
    for node in MAGS:
        lab.client(node).call("ro_settings", trigger_packets=1 if mode else 0, mode=mode or "rr")
    lost, attach, pause, optimize, back = [], [], [], [], []
    for move in range(1, moves + 1):
        target = "mag3" if lab.where("mn1") == "mag1" else "mag1"
        if mode:      # settle: the flow optimized before the move
            lab.net.sh_ok("mn1", "ping", "-c", "3", "-i", "0.01", mn2)
            poll(lambda: lab.client(lab.where("mn1")).call("tables")["ro_entries"], interval=0.01)
        workdir = Path(tempfile.mkdtemp())
        transport_pcap, access_pcap = workdir / "transport.pcap", workdir / "access.pcap"
        captures = [capture(lab.ns("inet"), target, transport_pcap, "ip6 or ip"),
                    capture(lab.ns("mn1"), "any", access_pcap, "icmp6")]
        time.sleep(0.5)
        pinger = SteadyPing(lab.ns("mn1"), mn2, count=800, interval=0.001).start()
        time.sleep(0.2)
        moved_at = time.time()
        lab.move("mn1", target)
        sent, received = pinger.result()
        for running in captures:
            running.send_signal(2)
            running.wait(timeout=10)
        lost.append(sent - received)
        seen = access_timeline(access_pcap, mn1, mn2, moved_at)
        came_back = ""
        if "ra" in seen:
            attach.append((seen["ra"] - seen["rs"]) * 1000)
        if mode and "first_packet" in seen:
            pause.append((seen["first_packet"] - seen["ra"]) * 1000)
            optimized = first_optimized(transport_pcap, target, mn1, mn2, moved_at)
            if optimized is not None:
                optimize.append((optimized - seen["first_packet"]) * 1000)
                back.append((optimized - seen["rs"]) * 1000)
                came_back = f", optimized {back[-1]:.1f} ms after the RS"
        print(f"  [{mode or 'lma path'}] move {move}/{moves} to {target}: {lost[-1]} lost{came_back}",
              file=sys.stderr)
        # the flow must stop for a second so that the data plane triggers again
        time.sleep(1.1)
    return {"moves": moves, "lost": summary(lost), "rs_to_ra_ms": summary(attach),
            "ra_to_first_packet_ms": summary(pause), "first_packet_to_optimized_ms": summary(optimize),
            "rs_to_optimized_ms": summary(back)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--moves", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    lab = Lab(progress=lambda line: print(f"  [lab] {line}", file=sys.stderr))
    if not lab.namespaces():
        lab.up()
    lab.move("mn1", "mag1")
    if not any(b["state"] == "registered" for b in lab.client("mag1").call("bindings")):
        lab.mns = attach_mobile_nodes(lab)
    else:
        lab.mns = {mn: {"ipv6": lab.mn_addresses(mn)[0]} for mn in ("mn1", "mn2")}
    runs = {"LMA path only": None, "RO, return routability": "rr", "RO, quick mode": "quick"}
    try:
        results = {name: run_moves(lab, args.moves, mode) for name, mode in runs.items()}
    finally:
        lab.move("mn1", "mag1")
        for node in MAGS:
            lab.client(node).call("ro_settings", trigger_packets=0, mode="rr")
    if args.json:
        print(json.dumps(results, indent=2))
        return
    rows = [("pings lost per move, p50 (target <= 3)", "lost", "p50", "{:.0f}"),
            ("pings lost per move, p90", "lost", "p90", "{:.0f}"),
            ("RS → RA (PMIPv6 attach at the new MAG), p50 ms", "rs_to_ra_ms", "p50", "{:.1f}"),
            ("RA → MN1's first packet (address, router's MAC), p50 ms", "ra_to_first_packet_ms", "p50", "{:.1f}"),
            ("first packet → optimized path (RO), p50 ms", "first_packet_to_optimized_ms", "p50", "{:.1f}"),
            ("first packet → optimized path (RO), p90 ms", "first_packet_to_optimized_ms", "p90", "{:.1f}"),
            ("RS → optimized path, p50 ms (target <= 20)", "rs_to_optimized_ms", "p50", "{:.1f}"),
            ("RS → optimized path, p90 ms", "rs_to_optimized_ms", "p90", "{:.1f}"),
            ("moves where the optimized path came back", "rs_to_optimized_ms", "n", "{}")]
    print(f"{'over ' + str(args.moves) + ' moves MAG1 ⇄ MAG3, 1 ms ping':<56}" + "".join(f"{n:>24}" for n in runs))
    for label, key, stat, fmt in rows:
        cells = [results[name][key][stat] for name in runs]
        print(f"{label:<56}" + "".join(f"{'-' if c is None else fmt.format(c):>24}" for c in cells))


if __name__ == "__main__":
    main()
