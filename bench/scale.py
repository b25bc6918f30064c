#!/usr/bin/env python3
"""Scale benchmark (issue 14): the real LMA daemon of the lab under N mobile
nodes, registered by emulated MAGs (pmip6ctl.lab.loadgen: real sockets in
the MAGs' namespaces, the real authenticated PBU/PBA, signed with the lab's
keys). For each N (1k, 10k, 100k by default), on a fresh LMA sized for N:

1. mass attach of N MNs over the three MAG identities, at most --window
   PBUs outstanding: PBUs/s, PBA latency p50/p99, refusals by status;
2. the MAG's RO query (LRI → LRA) at N, one at a time: p50/p99;
3. LMA RSS (VmRSS) empty and at N: bytes per binding; the LMA's mn_table
   entries in the pool (each MN's HNP must be there); LMA CPU per PBU;
4. a refresh of every MN, then (optionally) --moves handovers between MAGs
   (each makes the LMA ask the old MAG by BRI first, RFC 5846);
5. kill -9 of the LMA and a start: seconds until it answers a PBU, every
   binding is back (its `bindings`) and every HNP is in its map; bindings lost;
6. deregistration of every MN: PBUs/s, and the map back to empty.

Every figure is also given as a ratio against the first size, measured in
the same run (the machine is shared and noisy). By default the LMA's
threads run on CPU 1 and the generator on CPU 0 (--no-pin: anywhere).

--ceiling N measures the generator alone: N PBUs against a sink that
answers each at once in place of the LMA.

--soak MINUTES runs the soak instead (issue 14 §5): on a fresh LMA, a
warm-up (--soak-mns attached and detached) sets the baseline, then MNs
attach, move between MAGs, detach and ask RO queries for MINUTES; when the
churn stops and every MN is gone, the LMA's and MAG1's map entries, RO
pairs, tunnels and bounded tables (`status` limits) must be back where they
were, and their RSS no more than 4 MiB over the churn's steady state (a
minute in).

Targets at 100,000 bindings, one core: >= 5,000 PBUs/s (mass attach), PBA
p99 <= 20 ms, LRI p99 <= 5 ms, RSS <= 1.5 KiB per binding over the empty
daemon, kill -9 to answering PBUs and forwarding for every binding
<= 10 s, 0 bindings lost.

    .venv/bin/python bench/scale.py [--sizes 1000,10000,100000] [--window 32] [--json]
    .venv/bin/python bench/scale.py --soak 10 [--soak-mns 1000]

Needs root. Brings the lab up if it is down; stops the lab's MAG daemons
(the generator borrows their identities) and, at the end, gives the LMA its
own config and state back and starts the MAGs again (the lab as it was).
Results go in docs/performance.md.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pmip6ctl.lab import loadgen as lg  # noqa: E402
from pmip6ctl.lab.demo import attach_mobile_nodes  # noqa: E402
from pmip6ctl.lab.runner import Lab  # noqa: E402

STARTED = time.monotonic()
ALL_CPUS = os.sched_getaffinity(0)
PROBE_MN = 999_999_999                         # scale-999999999@lab, registered after a restart


def say(line: str) -> None:
    """Progress on stderr, with the seconds since the start."""
    print(f"  [{time.monotonic() - STARTED:7.1f} s] {line}", file=sys.stderr, flush=True)


def pin_cpus(lab: Lab, enabled: bool) -> str:
    """The LMA's threads on the last CPU, ours on the first: "one core" each."""
    cpus = sorted(os.sched_getaffinity(0))
    if not enabled or len(cpus) < 2:
        return "not pinned"
    pid = lab.pid("lma")
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), {cpus[-1]})
    os.sched_setaffinity(0, {cpus[0]})
    return f"LMA on CPU {cpus[-1]}, generator on CPU {cpus[0]}"


def generator(lab: Lab, args) -> lg.LoadGenerator:
    identities = [lg.MagIdentity.of_lab(lab, mag) for mag in lg.MAGS]
    return lg.LoadGenerator(identities, window=args.window, timeout=args.timeout, lifetime=3600,
                            progress=lambda line: say("  " + line))


def map_check(lab: Lab, gen: lg.LoadGenerator, pool: str) -> dict:
    return gen.check_forwarding(lab.pin_root / "lma", pool)


def restart(lab: Lab, gen: lg.LoadGenerator, pool: str, args) -> dict:
    """kill -9, start again; until it answers a PBU, holds every binding and
    has every HNP in its map. Each check is a snapshot (a `bindings` call, a
    walk of the pinned map) that takes seconds at 100,000: the time it
    counts is when the first complete snapshot began."""
    probe = PROBE_MN                           # a new MN: a refresh could bring back a binding the LMA lost
    lg.kill_lma(lab)
    killed = time.monotonic()
    os.sched_setaffinity(0, ALL_CPUS)          # what the LMA inherits
    lab.start_daemon("lma")
    say("  LMA killed (-9) and started again; probing with a PBU every 0.2 s")
    gen.probe(probe)
    answering = time.monotonic() - killed

    def until_complete(check, incomplete) -> tuple[float, dict, float]:
        while True:
            began = time.monotonic()
            found = check()
            took = time.monotonic() - began
            if not incomplete(found) or began - killed > 120:
                return began - killed, found, took
            time.sleep(0.1)

    with concurrent.futures.ThreadPoolExecutor(2) as both:      # from the same moment: each takes seconds
        walking = both.submit(until_complete, lambda: map_check(lab, gen, pool),
                              lambda m: m["bindings_without_entry"] or m["wrong_tunnel"])
        bindings_back, held, bindings_call = until_complete(
            lambda: gen.check_bindings(lab.client("lma", timeout=120).call("bindings")), lambda h: h["missing"])
        forwarding, maps, map_walk = walking.result()
    pin_cpus(lab, args.pin)
    return {"answering_pbus_s": round(answering, 2), "every_binding_back_s": round(bindings_back, 2),
            "every_map_entry_s": round(forwarding, 2), "restart_s": round(max(answering, bindings_back, forwarding), 2),
            "bindings_call_s": round(bindings_call, 2), "map_walk_s": round(map_walk, 2),
            "bindings_after": held["held"], "bindings_lost": len(held["missing"]),
            "map_after": maps}


def run_size(lab: Lab, n: int, args) -> dict:
    pool = lg.scale_pool(n)
    say(f"N = {n:,}: a fresh LMA with hnp_pool {pool}")
    os.sched_setaffinity(0, ALL_CPUS)
    lg.restart_lma(lab, lg.scale_lma_config(lab, n), fresh=True)
    pinned = pin_cpus(lab, args.pin)
    pid = lab.pid("lma")
    time.sleep(1.0)
    result = {"n": n, "window": args.window, "cpus": pinned, "rss_empty": lg.rss_bytes(pid)}
    with generator(lab, args) as gen:
        cpu = lg.cpu_seconds(pid)
        attach = gen.attach(range(n))
        lma_cpu = lg.cpu_seconds(pid) - cpu
        result["attach"] = attach.summary()
        result["attach"]["lma_cpu_us_per_pbu"] = round(lma_cpu / max(attach.answered, 1) * 1e6, 1)
        result["attach"]["lma_cpu_share"] = round(lma_cpu / attach.seconds, 2) if attach.seconds else None
        result["bound"] = len(gen.where)
        time.sleep(0.5)
        result["rss_full"] = lg.rss_bytes(pid)
        result["rss_per_binding"] = round((result["rss_full"] - result["rss_empty"]) / max(result["bound"], 1), 1)
        result["map"] = map_check(lab, gen, pool)
        say(f"  {result['bound']:,} bound, {result['map']['entries']:,} map entries, "
            f"RSS {result['rss_empty'] / 2**20:.0f} → {result['rss_full'] / 2**20:.0f} MiB")
        say(f"  LRI → LRA, {args.lri_samples} queries")
        result["lri"] = gen.lri_latency(args.lri_samples).summary()
        result["refresh"] = gen.refresh(range(n)).summary()
        if args.moves:
            result["move"] = gen.move(range(min(args.moves, n))).summary()
        if not args.no_restart and gen.where:
            result["restart"] = restart(lab, gen, pool, args)
            say(f"  restart: {result['restart']}")
        result["detach"] = gen.detach(list(gen.where)).summary()
        result["map_after_detach"] = map_check(lab, gen, pool)["entries"]
        result["unsolicited"] = dict(gen.unsolicited)
    return result


# --- the generator's own ceiling --------------------------------------------------------------------
def sink(namespace: str, identities: list) -> None:
    """An LMA that only answers: every PBU gets a signed PBA (status 0, its
    sequence number and Timestamp, some HNP) at once. In a process of its
    own, on the LMA's CPU."""
    import hashlib
    import hmac
    import socket
    import struct

    from pmip6ctl import netns, wire
    from pmip6ctl.security import MMA_SUBTYPE
    from pmip6ctl.wire.checksum import internet_checksum
    from pmip6ctl.wire.options import iter_tlv

    with netns.entered(namespace):
        sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, 135)
    sock.setsockopt(socket.IPPROTO_IPV6, lg.IPV6_CHECKSUM, -1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((str(identities[0].lma), 0))
    templates = {}
    for ident in identities:
        data = wire.encode(wire.BindingAck(0, wire.BAFlags.P, 0, 900, [
            wire.HomeNetworkPrefix(64, lg.IPv6Address("2001:db8:100::")), wire.Timestamp(0),
            wire.MobilityMessageAuthentication(MMA_SUBTYPE, ident.spi, bytes(32))]))
        at = {kind: offset + 2 for offset, kind, _ in iter_tlv(data, 12, len(data))}
        templates[str(ident.address)] = (data, at[22] + 2, at[27], at[9] + 5, ident.key,
                                         ident.lma.packed + ident.address.packed)
    answered = 0
    while True:
        pbu, (source, *_) = sock.recvfrom(4096)
        template = templates.get(source)
        if template is None or pbu[2] != 5:
            continue
        data, at_hnp, at_stamp, at_auth, key, pseudo = template
        pba = bytearray(data)
        pba[8:10] = pbu[6:8]
        pba[at_stamp:at_stamp + 8] = next(body for _, kind, body in iter_tlv(pbu, 12, len(pbu)) if kind == 27)
        pba[at_hnp:at_hnp + 8] = (0x20010DB801000000 + (answered & 0xFFFF)).to_bytes(8, "big")
        pba[at_auth:at_auth + 32] = hmac.digest(key, pseudo + bytes(pba[:at_auth]), hashlib.sha256)
        struct.pack_into("!H", pba, 4, internet_checksum(pseudo + len(pba).to_bytes(4, "big") + b"\0\0\0\x87" + pba))
        sock.sendto(bytes(pba), (source, 0))
        answered += 1


def ceiling(lab: Lab, n: int, args) -> list[dict]:
    """The generator against the sink, at a few windows: its own limit."""
    import multiprocessing

    identities = [lg.MagIdentity.of_lab(lab, mag) for mag in lg.MAGS]
    process = multiprocessing.Process(target=sink, args=(lab.ns("lma"), identities), daemon=True)
    process.start()
    cpus = sorted(ALL_CPUS)
    if args.pin and len(cpus) > 1:
        os.sched_setaffinity(process.pid, {cpus[-1]})
        os.sched_setaffinity(0, {cpus[0]})
    try:
        results = []
        for window in (8, 32, 128):
            with lg.LoadGenerator(identities, window=window, timeout=args.timeout) as gen:
                results.append({"window": window, **gen.attach(range(n)).summary()})
            say(f"  window {window}: {results[-1]['per_second']:,.0f} PBUs/s, "
                f"{results[-1]['generator_cpu_us_per_request']} µs of generator CPU each")
        return results
    finally:
        process.kill()
        process.join()
        os.sched_setaffinity(0, ALL_CPUS)


# --- RO churn at a MAG -----------------------------------------------------------------------------
SOAK_PREFIXES = lg.IPv6Network("2001:db8:100:8000::/49")      # the upper half of the lab's pool


def lab_mn1(lab: Lab) -> lg.IPv6Address:
    """MN1's address at MAG1 (attached first if the lab has no MNs yet)."""
    address = lab.mn_current_address("mn1") if lab.where("mn1") == "mag1" else None
    if address is None:
        with contextlib.redirect_stdout(sys.stderr):
            attach_mobile_nodes(lab)
        address = lab.mn_current_address("mn1")
    return lg.IPv6Address(address)


def mag_sample(lab: Lab, mag: str = "mag1") -> dict:
    """What the real MAG holds for RO: pairs, ro_table entries, tunnels, its bounded tables, RSS."""
    client = lab.client(mag, timeout=60)
    status = client.call("status")
    return {"rss": lg.rss_bytes(lab.pid(mag)), "ro_pairs": len(client.call("ro_list")),
            "ro_table": lg.pinned_count(lab.pin_root / mag, "ro_table", lg.RO_KEY_SIZE),
            "tunnels": len(client.call("peers")),
            "tables": {name: row["held"] for name, row in status["limits"].items()}}


def ro_specs(gen: lg.LoadGenerator, cn: lg.IPv6Address, first: int, count: int) -> list[lg.RoSpec]:
    """Pairs from MNs of the first emulated MAG to MN1 at MAG1."""
    base = int(SOAK_PREFIXES.network_address) + (0x7000 << 64)
    return [lg.RoSpec(0, lg.IPv6Address(base + ((first + k) << 64) + 1), cn, lg.IPv6Address(lg.t.address6("mag1")))
            for k in range(count)]


def ro_churn(lab: Lab, args) -> dict:
    """RO set-up and teardown at the real MAG1, as the responder (quick
    mode): the emulated MAG2 sets up --ro-pairs pairs between its MNs and
    MN1, then ends them, --ro-rounds times; MAG1's RO pairs, ro_table
    entries and tunnels must come back to where they were (after the 2 s
    an ended pair's entry drains)."""
    cn = lab_mn1(lab)
    lg.borrow_mags(lab, ["mag2"])
    pid = lab.pid("mag1")
    try:
        gen = lg.LoadGenerator([lg.MagIdentity.of_lab(lab, "mag2")], window=args.window, timeout=args.timeout,
                               progress=lambda line: say("  " + line))
        with gen:
            before = mag_sample(lab)
            rounds = []
            for r in range(args.ro_rounds):
                cpu = lg.cpu_seconds(pid)
                up = gen.ro_start(ro_specs(gen, cn, r * args.ro_pairs, args.ro_pairs))
                mag_cpu = lg.cpu_seconds(pid) - cpu
                held = mag_sample(lab)
                down = gen.ro_stop(list(gen.ro_up))
                gen.serve(3)                      # the ended entries drain (DRAIN_SECONDS, 2 s)
                rounds.append({"start": up.summary(), "stop": down.summary(), "held": held,
                               "mag_cpu_us_per_bu": round(mag_cpu / max(up.answered, 1) * 1e6, 1),
                               "after": mag_sample(lab)})
                say(f"  RO round {r + 1}: {up.answered} set up ({up.rate:.0f}/s), {held['ro_table']} entries, "
                    f"{down.answered} ended ({down.rate:.0f}/s); after: {rounds[-1]['after']}")
            unsolicited = dict(gen.unsolicited)
    finally:
        lg.return_mags(lab, ["mag2"])
    after = rounds[-1]["after"] if rounds else before
    return {"pairs": args.ro_pairs, "rounds": rounds, "before": before, "unsolicited": unsolicited,
            "back": {key: after[key] == before[key] for key in ("ro_pairs", "ro_table", "tunnels", "tables")}}


# --- the soak ---------------------------------------------------------------------------------------
def lma_sample(lab: Lab, gen: lg.LoadGenerator) -> dict:
    client = lab.client("lma", timeout=60)
    status = client.call("status")
    return {"rss": lg.rss_bytes(lab.pid("lma")), "map_entries": lg.pinned_entries(lab.pin_root / "lma", SOAK_PREFIXES),
            "bindings": sum(1 for b in client.call("bindings") if gen.index_of(b["mn_id"]) is not None),
            "tables": {name: row["held"] for name, row in status["limits"].items()}}


def soak(lab: Lab, minutes: float, args) -> dict:
    """On the lab's own LMA (its config and bindings), with MAG2's and MAG3's
    identities borrowed and the real MAG1 as the RO responder: MNs attach
    (naming prefixes in the upper half of the pool, away from the lab's
    MNs), move between the two MAGs, detach, ask RO queries, and set up
    and end RO pairs with MN1 at MAG1."""
    mns = args.soak_mns
    cn = lab_mn1(lab)
    say(f"soak: the lab's LMA, {mns:,} MNs in churn for {minutes:g} min; MAG1 real (RO responder)")
    lg.borrow_mags(lab, ["mag2", "mag3"])

    def named(index: int) -> lg.IPv6Network:
        return lg.IPv6Network((int(SOAK_PREFIXES.network_address) + ((index % 0x7000) << 64), 64))

    gen = lg.LoadGenerator([lg.MagIdentity.of_lab(lab, m) for m in ("mag2", "mag3")], window=args.window,
                           timeout=args.timeout, prefix="soak", named_prefix=named,
                           progress=lambda line: say("  " + line), progress_every=30)
    try:
        with gen:
            say("  warm-up: attach and detach the population once, one RO round")
            gen.attach(range(mns))
            gen.ro_start(ro_specs(gen, cn, 0, min(mns, args.ro_pairs)))
            gen.ro_stop(list(gen.ro_up))
            gen.detach(range(mns))
            gen.serve(12)                 # MinDelayBeforeBCEDelete (10 s): deregistered entries go
            base = {"lma": lma_sample(lab, gen), "mag1": mag_sample(lab)}
            say(f"  baseline {base}")
            batch = max(10, mns // 20)
            next_index = mns
            gen.attach(range(next_index, next_index + mns))
            live = list(range(next_index, next_index + mns))
            next_index += mns
            totals = {"attach": 0, "move": 0, "detach": 0, "lri": 0, "ro_start": 0, "ro_stop": 0, "refused": 0,
                      "lost": 0}
            during, end, next_sample = [], time.monotonic() + minutes * 60, time.monotonic() + 30
            ro_first = min(mns, args.ro_pairs)
            while time.monotonic() < end:
                leaving, live = live[:batch], live[batch:]
                ending = list(gen.ro_up)
                steps = [gen.detach(leaving, "detach"), gen.attach(range(next_index, next_index + batch), "attach"),
                         gen.move(live[:batch], "move"), gen.lri_latency(10),
                         gen.ro_stop(ending, "ro_stop"), gen.ro_start(ro_specs(gen, cn, ro_first, batch), "ro_start")]
                ro_first += batch
                for result in steps:
                    totals[result.phase] += result.answered
                    totals["refused"] += result.refused
                    totals["lost"] += result.lost
                live = live[batch:] + live[:batch] + list(range(next_index, next_index + batch))
                next_index += batch
                if time.monotonic() >= next_sample:
                    next_sample += 30
                    during.append({"lma": lma_sample(lab, gen), "mag1": mag_sample(lab)})
                    say(f"  churn: {totals}; {during[-1]}")
            say("  churn over: ending every RO pair, detaching every MN")
            gen.ro_stop(list(gen.ro_up))
            gen.detach(list(gen.where))
            gen.serve(12)
            after = {"lma": lma_sample(lab, gen), "mag1": mag_sample(lab)}
            unsolicited = dict(gen.unsolicited)
    finally:
        lg.return_mags(lab, ["mag2", "mag3"])
    checks = {}
    # RSS: CPython keeps what the churn's working set took (up to 10 s of deregistered
    # entries at the LMA), so the reference is the churn's own steady state a minute in;
    # a leak is what grows on beyond it while the churn goes on.
    steady = during[1] if len(during) > 1 else during[0] if during else base
    for node in ("lma", "mag1"):
        checks[f"{node}_rss_no_growth_past_{RSS_TOLERANCE >> 20}_mib"] = \
            after[node]["rss"] <= steady[node]["rss"] + RSS_TOLERANCE
        for key in base[node]:
            if key == "tables":           # each bounded table by name
                for table_name, held in base[node][key].items():
                    checks[f"{node}_{table_name}_back"] = after[node][key].get(table_name) == held
            elif key != "rss":
                checks[f"{node}_{key}_back"] = after[node][key] == base[node][key]
    return {"minutes": minutes, "mns": mns, "totals": totals, "baseline": base, "steady": steady, "during": during,
            "after": after, "rss_tolerance_mib": RSS_TOLERANCE >> 20, "checks": checks, "unsolicited": unsolicited}


RSS_TOLERANCE = 4 << 20        # growth past the churn's steady state that is allocator noise, not a leak


# --- output -----------------------------------------------------------------------------------------
ROWS = [
    ("bindings registered", lambda r: r["bound"], "{:,}"),
    ("mass attach, PBUs/s (>= 5,000 at 100k)", lambda r: r["attach"]["per_second"], "{:,.0f}"),
    ("PBA latency p50, ms", lambda r: r["attach"]["p50_ms"], "{:.1f}"),
    ("PBA latency p99, ms (<= 20)", lambda r: r["attach"]["p99_ms"], "{:.1f}"),
    ("PBUs refused / lost", lambda r: f"{r['attach']['refused']}/{r['attach']['lost']}", "{}"),
    ("LMA CPU per PBU, µs", lambda r: r["attach"]["lma_cpu_us_per_pbu"], "{:,.0f}"),
    ("generator CPU per PBU, µs", lambda r: r["attach"]["generator_cpu_us_per_request"], "{:,.0f}"),
    ("refresh, PBUs/s", lambda r: r["refresh"]["per_second"], "{:,.0f}"),
    ("handover (BRI first), PBUs/s", lambda r: r.get("move", {}).get("per_second"), "{:,.0f}"),
    ("handover PBA p99, ms", lambda r: r.get("move", {}).get("p99_ms"), "{:.1f}"),
    ("deregistration, PBUs/s", lambda r: r["detach"]["per_second"], "{:,.0f}"),
    ("LRI → LRA p50, ms", lambda r: r["lri"]["p50_ms"], "{:.2f}"),
    ("LRI → LRA p99, ms (<= 5)", lambda r: r["lri"]["p99_ms"], "{:.2f}"),
    ("LMA RSS empty, MiB", lambda r: r["rss_empty"] / 2**20, "{:,.0f}"),
    ("LMA RSS at N, MiB", lambda r: r["rss_full"] / 2**20, "{:,.0f}"),
    ("RSS per binding, bytes (<= 1,536)", lambda r: r["rss_per_binding"], "{:,.0f}"),
    ("mn_table entries at N", lambda r: r["map"]["entries"], "{:,}"),
    ("  bindings without an entry", lambda r: r["map"]["bindings_without_entry"], "{:,}"),
    ("kill -9 → answering PBUs, s", lambda r: r.get("restart", {}).get("answering_pbus_s"), "{:.2f}"),
    ("kill -9 → every binding and entry, s (<= 10)", lambda r: r.get("restart", {}).get("restart_s"), "{:.2f}"),
    ("bindings lost across kill -9 (0)", lambda r: r.get("restart", {}).get("bindings_lost"), "{:,}"),
    ("mn_table entries after deregistration", lambda r: r["map_after_detach"], "{:,}"),
]


def table(results: list[dict]) -> str:
    sizes = [r["n"] for r in results]
    head = f"{'':<46}" + "".join(f"{f'N = {n:,}':>14}{'ratio':>8}" for n in sizes)
    lines = [head]
    for label, get, fmt in ROWS:
        cells = []
        first = None
        for i, r in enumerate(results):
            try:
                value = get(r)
            except (KeyError, TypeError):
                value = None
            if i == 0:
                first = value
            text = "-" if value is None else fmt.format(value)
            ratio = ""
            if i and isinstance(value, (int, float)) and isinstance(first, (int, float)) and first:
                ratio = f"{value / first:.2f}x"
            cells.append(f"{text:>14}{ratio:>8}")
        lines.append(f"{label:<46}" + "".join(cells))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="N, comma-separated (empty: none)")
    parser.add_argument("--window", type=int, default=32, help="PBUs outstanding at once")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds before a PBU is sent again")
    parser.add_argument("--lri-samples", type=int, default=500)
    parser.add_argument("--moves", type=int, default=1000, help="handovers per size (0: none)")
    parser.add_argument("--no-restart", action="store_true", help="skip the kill -9")
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="leave CPU placement to the kernel")
    parser.add_argument("--ro-pairs", type=int, default=1000, help="RO pairs per round at MAG1 (0: no RO churn)")
    parser.add_argument("--ro-rounds", type=int, default=3)
    parser.add_argument("--soak", type=float, nargs="?", const=10.0, default=None, metavar="MINUTES",
                        help="run the soak (default 10 min) instead of the sizes")
    parser.add_argument("--soak-mns", type=int, default=1000, help="MNs in churn during the soak")
    parser.add_argument("--ceiling", type=int, default=0, metavar="N",
                        help="only the generator's own limit: N PBUs against a sink in place of the LMA")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]

    lab = Lab(progress=lambda line: say(f"[lab] {line}"))
    if not lab.namespaces():
        lab.up()
    if args.soak is not None:
        results = soak(lab, args.soak, args)
        if args.json:
            print(json.dumps(results, indent=2, default=str))
            return
        print(f"soak: {results['minutes']:g} min, {results['mns']:,} MNs in churn; answered {results['totals']}")
        for name in ("baseline", "steady", "after"):
            for node, s in results[name].items():
                print(f"  {name:<9} {node:<5} RSS {s['rss'] / 2**20:7.1f} MiB, "
                      + ", ".join(f"{k} {v}" for k, v in s.items() if k != "rss"))
        for check, ok in results["checks"].items():
            print(f"  {check:<32} {'yes' if ok else 'NO'}")
        return

    results = {"sizes": []}
    if args.ceiling:
        say(f"the generator's ceiling: {args.ceiling:,} PBUs against a sink in place of the LMA")
        lg.borrow_mags(lab)
        saved = lg.stop_lma_saving_state(lab)
        try:
            results["ceiling"] = ceiling(lab, args.ceiling, args)
        finally:
            lg.restore_lma(lab, saved)
            lg.return_mags(lab)
        sizes, args.ro_pairs = [], 0
    if sizes:
        say("stopping the lab's MAG daemons (the generator borrows their identities) and its LMA")
        lg.borrow_mags(lab)
        saved = lg.stop_lma_saving_state(lab)
        try:
            results["sizes"] = [run_size(lab, n, args) for n in sizes]
        finally:
            say("giving the LMA its own config and state back, starting the MAGs again")
            os.sched_setaffinity(0, ALL_CPUS)      # the daemons started next inherit it
            lg.restore_lma(lab, saved)
            lg.return_mags(lab)
    if args.ro_pairs:
        say(f"RO churn at MAG1: {args.ro_pairs:,} pairs set up and ended by the emulated MAG2, {args.ro_rounds} times")
        results["ro_churn"] = ro_churn(lab, args)
    if args.json:
        print(json.dumps(results, indent=2, default=str))
        return
    for row in results.get("ceiling", []):
        print(f"generator against a sink, window {row['window']:>3}: {row['per_second']:>8,.0f} PBUs/s, "
              f"p99 {row['p99_ms']:.1f} ms, {row['generator_cpu_us_per_request']} µs of CPU per PBU")
    if results["sizes"]:
        print(table(results["sizes"]))
    if "ro_churn" in results:
        ro = results["ro_churn"]
        print(f"\nRO churn at MAG1 (responder, quick mode), {ro['pairs']:,} pairs a round:")
        print(f"  {'round':<6}{'set up/s':>10}{'BA p50 ms':>11}{'BA p99 ms':>11}{'MAG1 CPU µs/BU':>16}"
              f"{'entries':>9}{'ended/s':>10}{'entries after':>15}")
        for i, r in enumerate(ro["rounds"], 1):
            print(f"  {i:<6}{r['start']['per_second']:>10,.0f}{r['start']['p50_ms'] or 0:>11.1f}"
                  f"{r['start']['p99_ms'] or 0:>11.1f}{r['mag_cpu_us_per_bu']:>16,.0f}{r['held']['ro_table']:>9,}"
                  f"{r['stop']['per_second']:>10,.0f}{r['after']['ro_table']:>15,}")
        print(f"  before: {ro['before']}")
        print(f"  back where they were: {ro['back']}")


if __name__ == "__main__":
    main()
