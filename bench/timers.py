#!/usr/bin/env python3
"""Timer bookkeeping at scale (issue 13): the RO initiator's next_deadline()
and on_timer() with 100 attempts against 100,000, in one run.

The attempts are RO queries the LMA never answers, started evenly over a
span and retransmitted once per span, so they fall due a few at a time. Each round moves
the clock until K attempts are due and calls on_timer (which resends K
LRIs) and next_deadline. With the timer heap, the cost per call should not
grow with the attempts held (O(1) and O(K log n)); the walk the heap
replaced, timed alongside on the same attempts, grows with n.

    .venv/bin/python bench/timers.py [--small 100] [--large 100000] [--due 10] [--json]

No root, no lab: the node core alone, with a fake clock.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pmip6ctl.protocol.common import earliest  # noqa: E402
from pmip6ctl.protocol.ro import InitiatorPolicy, RoInitiator  # noqa: E402

T0 = 1_700_000_000.0
MAG1, LMA = IPv6Address("2001:db8:a1::1"), IPv6Address("2001:db8:ffff::1")
SPAN = 1000.0                 # seconds over which the attempts start


def say(line: str) -> None:
    print(f"  {line}", file=sys.stderr, flush=True)


def initiator_with(n: int) -> RoInitiator:
    policy = InitiatorPolicy(proxy_coa=MAG1, lma_address=LMA, max_attempts=n, max_attempts_per_mn=n,
                             max_transmissions=10**9,    # retransmitted for ever: the count stays n
                             initial_timeout=SPAN, max_timeout=SPAN)    # each one every SPAN s
    initiator = RoInitiator(policy, random=lambda k: bytes(k))
    mns = IPv6Network("2001:db8:100::/48")
    for i in range(n):
        mn = mns[(i % 1000) << 16 | 1]
        cn = IPv6Address(int(IPv6Address("2001:db8:200::")) + i)
        initiator.start(mn, cn, T0 + i * SPAN / n, mn_prefix=IPv6Network((mn, 64), strict=False))
        if i and i % 20_000 == 0:
            say(f"{n}: {i} attempts started")
    return initiator


def measure(n: int, due: int, rounds: int) -> dict:
    say(f"{n} attempts: starting them")
    initiator = initiator_with(n)
    assert len(initiator.attempts) == n
    step = due * SPAN / n                        # K attempts fall due per step
    now = T0 + SPAN                              # the first retransmissions
    timer_s = deadline_s = walk_s = 0.0
    sent = 0
    for r in range(rounds):
        now += step
        t = time.perf_counter()
        sent += len(initiator.on_timer(now))
        timer_s += time.perf_counter() - t
        t = time.perf_counter()
        initiator.next_deadline()
        deadline_s += time.perf_counter() - t
        if r < 20:                               # the walk the heap replaced, on a few rounds
            t = time.perf_counter()
            earliest(*(a.next_deadline for a in initiator.attempts.values()))
            walk_s += time.perf_counter() - t
    say(f"{n} attempts: {rounds} rounds, {sent / rounds:.1f} LRIs resent per on_timer")
    return {"attempts": n, "rounds": rounds, "due_per_round": sent / rounds,
            "on_timer_us": 1e6 * timer_s / rounds, "next_deadline_us": 1e6 * deadline_s / rounds,
            "walk_us": 1e6 * walk_s / min(rounds, 20), "heap_entries": initiator._timers.heap_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=10, help="attempts due per on_timer call")
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    small = measure(args.small, args.due, args.rounds)
    large = measure(args.large, args.due, args.rounds)
    result = {"small": small, "large": large,
              "on_timer_ratio": large["on_timer_us"] / small["on_timer_us"],
              "next_deadline_ratio": large["next_deadline_us"] / small["next_deadline_us"],
              "walk_ratio": large["walk_us"] / small["walk_us"]}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for r in (small, large):
        print(f"{r['attempts']:>7} attempts: on_timer {r['on_timer_us']:8.1f} µs ({r['due_per_round']:.0f} due), "
              f"next_deadline {r['next_deadline_us']:6.2f} µs, heap {r['heap_entries']} entries; "
              f"the old walk {r['walk_us']:10.1f} µs")
    print(f"{args.large} vs {args.small}: on_timer ×{result['on_timer_ratio']:.2f}, "
          f"next_deadline ×{result['next_deadline_ratio']:.2f} (the walk: ×{result['walk_ratio']:.0f})")


if __name__ == "__main__":
    main()
