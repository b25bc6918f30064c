#!/usr/bin/env python3
"""Handover benchmark: MN1 moves between MAG1 and MAG3 while it pings MN2
every millisecond, N times per mode: the LMA path only, RO by return
routability and RO in quick mode, each with the new MAG's handover buffer
off (the baseline: what the MN sends before the PBA is lost) and on, all in
the same run; and the downlink (MN2 pings MN1 as it moves) with the LMA's
downlink hold off and on (docs/operations.md, "Downlink hold").

The MN has one radio (lab/topology.py, the air): a move takes the old MAG's
port of its air down and the new one's up; the MN keeps its link, addresses
and neighbour entry and sends on at once. Its first packet at the new MAG
attaches it (by its MAC); with the buffer on, that packet and the ones after
it wait at the new MAG for the PBA and then leave in order (docs/operations.md,
"Handover buffer").

Per move it reports the pings lost (fixed pace, pmip6ctl.lab.probe: iputils
ping slows to one per 10 ms while replies are missing), the time from the
move to the new MAG's Router Advertisement on MN1's link (the PMIPv6 attach:
carrier, first packet, PBU, PBA, routes; a kernel packet timestamp), the
packets the new MAG held and released, and with RO, the time from the move
to the first MN1→MN2 echo request tunnelled straight to MAG2.
Target: ≤ 1 packet lost per move (p50), with and without RO.

    .venv/bin/python bench/handover.py [--moves 20] [--json]

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
from scapy.layers.inet6 import ICMPv6EchoRequest, ICMPv6ND_RA, IPv6  # noqa: E402
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


def advertised(pcap: Path, after: float) -> float | None:
    """Time of the first Router Advertisement on MN1's side after `after`."""
    for packet in rdpcap(str(pcap)):
        if float(packet.time) >= after and packet.haslayer(ICMPv6ND_RA):
            return float(packet.time)
    return None


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


def buffered(lab: Lab, mag: str) -> dict:
    return lab.client(mag).call("buffer_settings")


def run_moves(lab: Lab, moves: int, mode: str | None, buffering: bool, downlink: bool = False) -> dict:
    """mode: None for the LMA path only, else "rr" or "quick". downlink: MN2
    pings MN1 (the requests reach the moving MN through the LMA)."""
    mn1, mn2 = lab.mns["mn1"]["ipv6"], lab.mns["mn2"]["ipv6"]
    for node in MAGS:
        lab.client(node).call("ro_settings", trigger_packets=1 if mode else 0, mode=mode or "rr")
        lab.client(node).call("buffer_settings", enabled=buffering)
    lab.client("lma").call("hold_settings", enabled=buffering)      # the LMA's downlink hold
    label = f"{mode or 'lma path'}{', downlink' if downlink else ''}, buffer {'on' if buffering else 'off'}"
    lost, attach, back, held, released, lma_held, lma_released = [], [], [], [], [], [], []
    for move in range(1, moves + 1):
        target = "mag3" if lab.where("mn1") == "mag1" else "mag1"
        if mode:      # settle: the flow optimized before the move
            lab.net.sh_ok("mn1", "ping", "-c", "3", "-i", "0.01", mn2)
            poll(lambda: lab.client(lab.where("mn1")).call("tables")["ro_entries"], interval=0.01)
        workdir = Path(tempfile.mkdtemp())
        transport_pcap, access_pcap = workdir / "transport.pcap", workdir / "access.pcap"
        captures = [capture(lab.ns("inet"), target, transport_pcap, "ip6 or ip"),
                    capture(lab.ns("mn1"), "eth0", access_pcap, "icmp6")]
        before, lma_before = buffered(lab, target), lab.client("lma").call("hold_settings")
        time.sleep(0.5)
        pinger = (SteadyPing(lab.ns("mn2"), mn1, count=800, interval=0.001) if downlink else
                  SteadyPing(lab.ns("mn1"), mn2, count=800, interval=0.001)).start()
        time.sleep(0.2)
        moved_at = time.time()
        lab.move("mn1", target)
        sent, received = pinger.result()
        for running in captures:
            running.send_signal(2)
            running.wait(timeout=10)
        after, lma_after = buffered(lab, target), lab.client("lma").call("hold_settings")
        lma_held.append(lma_after["held"] - lma_before["held"])
        lma_released.append(lma_after["released"] - lma_before["released"])
        lost.append(sent - received)
        held.append(after["held"] - before["held"])
        released.append(after["released"] - before["released"])
        ra = advertised(access_pcap, moved_at)
        came_back = ""
        if ra is not None:
            attach.append((ra - moved_at) * 1000)
        if mode:
            optimized = first_optimized(transport_pcap, target, mn1, mn2, moved_at)
            if optimized is not None:
                back.append((optimized - moved_at) * 1000)
                came_back = f", optimized {back[-1]:.1f} ms after the move"
        print(f"  [{label}] move {move}/{moves} to {target}: {lost[-1]} lost, {held[-1]} held, "
              f"{released[-1]} released{came_back}; LMA {lma_held[-1]} held, {lma_released[-1]} released",
              file=sys.stderr)
        # the flow must stop for a second so that the data plane triggers again
        time.sleep(1.1)
    return {"moves": moves, "lost": summary(lost), "move_to_ra_ms": summary(attach), "held": summary(held),
            "released": summary(released), "move_to_optimized_ms": summary(back),
            "lma_held": summary(lma_held), "lma_released": summary(lma_released)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--moves", type=int, default=20)
    parser.add_argument("--modes", default="lma,rr,quick,down",
                        help="comma-separated: lma, rr, quick; down: LMA path, MN2 pings the moving MN1")
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
    names = {"lma": ("LMA path", None), "rr": ("RO rr", "rr"), "quick": ("RO quick", "quick"),
             "down": ("MN2→MN1", None)}
    runs = {f"{names[m][0]}, {'buffer' if on else 'baseline'}": (names[m][1], on, m == "down")
            for m in args.modes.split(",") for on in (False, True)}
    try:
        results = {name: run_moves(lab, args.moves, mode, on, down) for name, (mode, on, down) in runs.items()}
    finally:
        lab.move("mn1", "mag1")
        for node in MAGS:
            lab.client(node).call("ro_settings", trigger_packets=0, mode="rr")
            lab.client(node).call("buffer_settings", enabled=True)
        lab.client("lma").call("hold_settings", enabled=True)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    rows = [("pings lost per move, p50 (target <= 1)", "lost", "p50", "{:.0f}"),
            ("pings lost per move, p90", "lost", "p90", "{:.0f}"),
            ("pings lost per move, max", "lost", "max", "{:.0f}"),
            ("held by the new MAG, p50", "held", "p50", "{:.0f}"),
            ("released on the PBA, p50", "released", "p50", "{:.0f}"),
            ("held by the LMA (downlink), p50", "lma_held", "p50", "{:.0f}"),
            ("held by the LMA (downlink), max", "lma_held", "max", "{:.0f}"),
            ("released by the LMA, p50", "lma_released", "p50", "{:.0f}"),
            ("move → new MAG's RA at the MN, p50 ms", "move_to_ra_ms", "p50", "{:.1f}"),
            ("move → new MAG's RA at the MN, p90 ms", "move_to_ra_ms", "p90", "{:.1f}"),
            ("move → optimized path (RO), p50 ms", "move_to_optimized_ms", "p50", "{:.1f}"),
            ("move → optimized path (RO), p90 ms", "move_to_optimized_ms", "p90", "{:.1f}")]
    width = max(len(n) for n in runs) + 2
    print(f"{'over ' + str(args.moves) + ' moves MAG1 ⇄ MAG3, 1 ms ping':<44}" + "".join(f"{n:>{width}}" for n in runs))
    for label, key, stat, fmt in rows:
        cells = [results[name][key][stat] for name in runs]
        print(f"{label:<44}" + "".join(f"{'-' if c is None else fmt.format(c):>{width}}" for c in cells))


if __name__ == "__main__":
    main()
