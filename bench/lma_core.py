#!/usr/bin/env python3
"""The LMA core at operator scale (issue 14): PBUs per second through
LmaNode alone, with 1,000, 10,000 and 100,000 bindings, in one run.

Each PBU is what the daemon hands the core: octets off the wire, decoded
with the checksum verified, past the signaling guard (HMAC-SHA256 and the
Timestamp of its Mobility Message Authentication option), through the
binding cache, and its PBA sealed (stamped, signed) and encoded. The MAGs'
side (building and signing the PBUs) happens before the clock runs. One
MAG serves every 100 MNs, so the serving MAGs grow with the bindings.

Four kinds of PBU, each timed on its own, over the same bindings:

- refresh: the serving MAG extends a binding (RFC 5213 §5.3.3);
- churn: an MN deregisters (lifetime 0) and a new MN registers with an
  all-zero HNP and IPv4 HoA request, so the pools allocate after releases;
- handover: a new MAG claims an MN (RFC 5846: the LMA sends the old MAG a
  BRI); the old MAG's BRA lets it go, and the PBA follows. Both the PBU and
  the BRA are timed (one handover = one PBU);
- query: a serving MAG's RO query (LRI) about a CN anchored here, answered
  with an LRA (a longest-prefix match of the CN onto the anchored prefixes).

The figures that matter are the ratios against the 1,000-binding run: with
every lookup indexed they stay near 1.

    .venv/bin/python bench/lma_core.py [--sizes 1000,10000,100000] [--count 5000] [--json]
    .venv/bin/python bench/lma_core.py --profile refresh --sizes 100000   # cProfile of one kind

No root, no lab: the node core alone, with a fake clock, pinned to one CPU.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import sys
import time
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pmip6ctl import wire  # noqa: E402
from pmip6ctl.protocol.auth import SignalingGuard, SignalingPeer  # noqa: E402
from pmip6ctl.protocol.binding_cache import BindingCacheEntry, LmaPolicy  # noqa: E402
from pmip6ctl.protocol.common import Stamper  # noqa: E402
from pmip6ctl.protocol.lma import LmaNode, LmaNodePolicy  # noqa: E402
from pmip6ctl.protocol.pools import AddressPool, PrefixPool  # noqa: E402
from pmip6ctl.security import PeerKey  # noqa: E402
from pmip6ctl.transport import Arrival, Send  # noqa: E402

T0 = 1_700_000_000.0
LMA = IPv6Address("2001:db8:ffff::1")
MAGS = IPv6Network("2001:db8:aa00::/40")
HNP_POOL = IPv6Network("2001:db8:4000::/34")
IPV4_POOL = IPv4Network("10.64.0.0/12")
MNS_PER_MAG = 100
KINDS = ("refresh", "churn", "handover", "query")


def say(line: str) -> None:
    print(f"  {line}", file=sys.stderr, flush=True)


class Setup:
    """An LmaNode holding n bindings, and the MAGs that serve them."""

    def __init__(self, n: int):
        self.n = n
        self.now = T0
        mags = max(2, n // MNS_PER_MAG)
        self.mags = [MAGS[(i + 1) << 16 | 1] for i in range(mags)]
        self.keys = {mag: PeerKey(0x1000 + i, i.to_bytes(4, "big") * 8) for i, mag in enumerate(self.mags)}
        self.stampers = {mag: Stamper() for mag in self.mags}
        guard = SignalingGuard({mag: SignalingPeer(mag, key) for mag, key in self.keys.items()})
        self.node = LmaNode(LmaNodePolicy(binding_cache=LmaPolicy(
            address=LMA, hnp_pool=PrefixPool(HNP_POOL), ipv4_pool=AddressPool(IPV4_POOL))), guard=guard)
        pool = self.node.policy.binding_cache.hnp_pool
        entries = [BindingCacheEntry(
            mn_id=f"mn{i}@example.net", hnp=pool._item(i), ipv4_hoa=IPV4_POOL[i + 1], proxy_coa=self.mag_of(i),
            lifetime=3600, expires=T0 + 3600 + i % 600, sequence=1, access_technology_type=3,
            handoff_indicator=1, registered=T0 - 100) for i in range(n)]
        started = time.process_time()
        _, refused = self.node.restore(entries, self.now)
        assert not refused, refused[:3]
        say(f"{n} bindings restored through {mags} MAGs in {time.process_time() - started:.1f} s")
        self.next_mn = n                          # new MNs (churn) take ids from here
        self.serving = {f"mn{i}@example.net": self.mag_of(i) for i in range(n)}
        self.held = list(self.serving)            # the MNs bound now, in no order
        self._position = {mn_id: i for i, mn_id in enumerate(self.held)}
        self._round = 0

    def mag_of(self, i: int) -> IPv6Address:
        return self.mags[i // MNS_PER_MAG % len(self.mags)]

    # --- what the MAGs send (built and signed before the clock runs) -----------------------------
    def pbu(self, mag: IPv6Address, mn_id: str, hnp: IPv6Network | None, hoa: IPv4Address | None,
            lifetime: int = 3600, indicator: int = wire.HandoffIndicatorValue.HANDOFF_STATE_NOT_CHANGED) -> bytes:
        prefix = hnp or IPv6Network("::/0")
        options = [wire.MobileNodeIdentifier.from_nai(mn_id), wire.HomeNetworkPrefix(prefix.prefixlen,
                                                                                      prefix.network_address),
                   wire.HandoffIndicator(indicator), wire.AccessTechnologyType(3),
                   self.stampers[mag].stamp(self.now),
                   wire.IPv4HomeAddressRequest(hoa or IPv4Address(0), prefix_length=32 if hoa else 0)]
        msg = wire.BindingUpdate(7, wire.BUFlags.A | wire.BUFlags.H | wire.BUFlags.P, lifetime // 4, options)
        return wire.encode(self.keys[mag].sign(msg, mag, LMA), mag, LMA)

    def lri(self, mag: IPv6Address, hnp: IPv6Network, cn: IPv6Address) -> bytes:
        options = [wire.HomeNetworkPrefix(hnp.prefixlen, hnp.network_address), wire.CNAddress(cn),
                   self.stampers[mag].stamp(self.now)]
        msg = wire.LocalizedRoutingInitiation(sequence=9, lifetime=420, options=options)
        return wire.encode(self.keys[mag].sign(msg, mag, LMA), mag, LMA)

    def bra(self, bri: wire.BindingRevocation, mag: IPv6Address) -> bytes:
        options = [o for o in (wire.find_option(bri, wire.MobileNodeIdentifier),
                               wire.find_option(bri, wire.Timestamp)) if o is not None]
        bra = wire.BindingRevocation.acknowledgement(bri.sequence, wire.RevocationStatus.SUCCESS, options)
        return wire.encode(self.keys[mag].sign(bra, mag, LMA), mag, LMA)

    # --- what the daemon does with them ---------------------------------------------------------
    def feed(self, data: bytes, src: IPv6Address) -> list:
        """Decode (checksum verified), receive, encode what goes out."""
        msg = wire.decode(data, src, LMA)
        actions = self.node.receive(msg, Arrival(src, LMA), self.now)
        for action in actions:
            if isinstance(action, Send):
                wire.encode(action.message, action.src, action.dst)
        return actions

    def mn(self, k: int) -> str:
        """The k-th MN of a round, spread over the bindings held."""
        return self.held[(k * 7919 + self._round * 104729) % len(self.held)]

    def next_round(self) -> None:
        self._round += 1
        self.now += 1.0                           # the next round's stamps are newer

    def replace(self, gone: str, new: str, mag: IPv6Address) -> None:
        i = self._position.pop(gone)
        self.held[i] = new
        self._position[new] = i
        del self.serving[gone]
        self.serving[new] = mag


class Clock:
    """CPU seconds spent inside `with clock:` blocks (the machine is shared:
    wall time would count other sessions' work), under cProfile when asked."""

    def __init__(self):
        self.seconds = 0.0
        self.profiler: cProfile.Profile | None = None

    def __enter__(self):
        if self.profiler is not None:
            self.profiler.enable()
        self._started = time.process_time()

    def __exit__(self, *exc):
        self.seconds += time.process_time() - self._started
        if self.profiler is not None:
            self.profiler.disable()

    def take(self) -> float:
        seconds, self.seconds = self.seconds, 0.0
        return seconds


CLOCK = Clock()


def run_refresh(s: Setup, count: int) -> tuple[float, int]:
    work = []
    for mn_id in {s.mn(k): None for k in range(count)}:
        entry = s.node.bindings[mn_id]
        work.append((s.pbu(s.serving[mn_id], mn_id, entry.hnp, entry.ipv4_hoa), s.serving[mn_id], mn_id))
    with CLOCK:
        for data, mag, _ in work:
            s.feed(data, mag)
    return CLOCK.take(), sum(s.node.bindings[mn_id].timestamp >= s.now - 1 for _, _, mn_id in work)


def run_churn(s: Setup, count: int) -> tuple[float, int]:
    """count/2 deregistrations of MNs held, count/2 registrations of new MNs."""
    work, gone, came = [], [], []
    for mn_id in list({s.mn(k): None for k in range(count // 2)}):
        entry = s.node.bindings[mn_id]
        mag = s.serving[mn_id]
        work.append((s.pbu(mag, mn_id, entry.hnp, entry.ipv4_hoa, lifetime=0), mag))
        new = f"mn{s.next_mn}@example.net"
        s.next_mn += 1
        s.replace(mn_id, new, mag)
        gone.append(mn_id)
        came.append(new)
        work.append((s.pbu(mag, new, None, None, indicator=wire.HandoffIndicatorValue.NEW_INTERFACE), mag))
    with CLOCK:
        for data, mag in work:
            s.feed(data, mag)
    return CLOCK.take(), sum(m not in s.node.bindings for m in gone) + sum(m in s.node.bindings for m in came)


def run_handover(s: Setup, count: int) -> tuple[float, int]:
    """count MNs move to the next MAG: PBU (→ BRI), BRA (→ PBA)."""
    moved = 0
    for mn_id in {s.mn(k): None for k in range(count)}:
        entry = s.node.bindings[mn_id]
        old = entry.proxy_coa
        new = s.mags[(s.mags.index(old) + 1) % len(s.mags)]
        pbu = s.pbu(new, mn_id, entry.hnp, entry.ipv4_hoa, indicator=wire.HandoffIndicatorValue.HANDOFF_BETWEEN_MAGS)
        with CLOCK:
            actions = s.feed(pbu, new)
        bri = next(a.message for a in actions if isinstance(a, Send)
                   and isinstance(a.message, wire.BindingRevocation))
        bra = s.bra(wire.decode(wire.encode(bri)), old)
        with CLOCK:
            s.feed(bra, old)
        if s.node.bindings[mn_id].proxy_coa == new:
            s.serving[mn_id] = new
            moved += 1
    return CLOCK.take(), moved


def run_query(s: Setup, count: int) -> tuple[float, int]:
    work = []
    for k in range(count):
        mn_id = s.mn(k)
        entry, cn = s.node.bindings[mn_id], s.node.bindings[s.mn(k + 11)]
        mag = s.serving[mn_id]
        work.append((s.lri(mag, entry.hnp, cn.hnp[0x1234]), mag))
    answers = []
    with CLOCK:
        for data, mag in work:
            answers.append(s.feed(data, mag))
    return CLOCK.take(), sum(any(isinstance(a, Send) and isinstance(a.message, wire.LocalizedRoutingAck)
                                 and a.message.status == wire.LRAStatus.SUCCESS for a in actions)
                             for actions in answers)


RUNS = {"refresh": run_refresh, "churn": run_churn, "handover": run_handover, "query": run_query}


def measure(n: int, count: int, rounds: int, kinds=KINDS) -> dict:
    s = Setup(n)
    result = {"bindings": n, "mags": len(s.mags)}
    count = min(count, n // 2)                    # each MN at most once a round
    for kind in kinds:
        per = []
        for _ in range(rounds):
            elapsed, done = RUNS[kind](s, count)
            assert done >= count * 0.9, (kind, done, count)
            per.append(elapsed / done)
            s.next_round()
        result[f"{kind}_us"] = 1e6 * min(per)
        say(f"{n} bindings: {kind} {1e6 * min(per):.1f} µs each (best of {rounds}, "
            f"median {1e6 * statistics.median(per):.1f})")
    assert len(s.node.bindings) == n, (len(s.node.bindings), n)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--count", type=int, default=4000, help="messages of each kind per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", choices=KINDS, help="cProfile one kind at the largest size instead")
    parser.add_argument("--sort", default="tottime", help="cProfile order (tottime, cumulative)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    sizes = [int(x) for x in args.sizes.split(",")]
    if args.profile:
        s = Setup(sizes[-1])
        RUNS[args.profile](s, 200)                # warm
        s.next_round()
        CLOCK.profiler = cProfile.Profile()
        RUNS[args.profile](s, min(args.count, s.n // 2))
        pstats.Stats(CLOCK.profiler).sort_stats(args.sort).print_stats(35)
        return
    warm = Setup(1000)                            # the first run in a process pays for warming up: not the 1k one
    for kind in KINDS:
        RUNS[kind](warm, 200)
        warm.next_round()
    results = [measure(n, args.count, args.rounds) for n in sizes]
    base = results[0]
    for r in results:
        for kind in KINDS:
            r[f"{kind}_ratio"] = r[f"{kind}_us"] / base[f"{kind}_us"]
            r[f"{kind}_per_second"] = 1e6 / r[f"{kind}_us"]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'bindings':>9} {'MAGs':>5}  " + "  ".join(f"{kind + ' µs (×1k)':>20}" for kind in KINDS))
    for r in results:
        print(f"{r['bindings']:>9} {r['mags']:>5}  " + "  ".join(
            f"{r[kind + '_us']:>11.1f} ({r[kind + '_ratio']:4.2f}×)" for kind in KINDS))
    print(f"{'per second':>16}  " + "  ".join(f"{r_:>20,.0f}" for r_ in
                                              (results[-1][kind + '_per_second'] for kind in KINDS))
          + f"   (at {results[-1]['bindings']:,} bindings)")


if __name__ == "__main__":
    main()
