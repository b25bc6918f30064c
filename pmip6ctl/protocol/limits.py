"""Rate limits on what a node sends in answer to input anyone could have
sent (issue 13): HoT and CoT to an RR test init, Binding Errors to traffic
or messages we hold nothing for. The source of such input may be forged,
so each answer could be a reflection at a victim; per destination prefix,
no more than `rate` a second (`burst` at once) go out. Sans-I/O: time is
whatever the caller passes."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Mapping
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from .. import wire

# Answers to unauthenticated input: what a forged source could draw.
ANSWERS_TO_STRANGERS = (wire.HomeTest, wire.CareofTest, wire.BindingError)
IPV6_PREFIX, IPV4_PREFIX = 64, 24         # one site: one budget


@dataclass(frozen=True)
class Bounded:
    """A table others fill, as `status` and the metrics show it (issue 13):
    what it holds next to its capacity, and what its limit did."""
    table: str                            # the metric label, e.g. ro_attempts
    setting: str                          # the config key that sizes it
    held: int
    capacity: int
    pushed_out: Mapping[str, int] = field(default_factory=dict)   # reason -> entries that went to make room
    refused: Mapping[str, int] = field(default_factory=dict)      # reason -> new entries not taken


def counts_of(counts: Mapping[tuple[str, str], int], table: str) -> dict[str, int]:
    """reason -> count, of one table's (table, reason) counts."""
    return {reason: n for (t, reason), n in counts.items() if t == table}


@dataclass
class _Bucket:
    tokens: float
    last: float


class PrefixRateLimiter:
    """A token bucket per destination prefix (/64, or /24 for IPv4), at
    most max_prefixes of them (the least recently used goes first)."""

    def __init__(self, rate: float, burst: int, max_prefixes: int = 65536):
        self.rate = rate
        self.burst = burst
        self.max_prefixes = max_prefixes
        self.refused = 0
        self.forgotten = 0                    # prefixes pushed out at max_prefixes
        self._buckets: collections.OrderedDict = collections.OrderedDict()

    def allow(self, destination: IPv6Address | IPv4Address, now: float) -> bool:
        key = (IPv6Network((destination, IPV6_PREFIX), strict=False) if destination.version == 6
               else IPv4Network((destination, IPV4_PREFIX), strict=False))
        bucket = self._buckets.pop(key, None)
        if bucket is None:
            if len(self._buckets) >= self.max_prefixes:
                self._buckets.popitem(last=False)
                self.forgotten += 1
            bucket = _Bucket(float(self.burst), now)
        bucket.tokens = min(self.burst, bucket.tokens + max(now - bucket.last, 0.0) * self.rate)
        bucket.last = now
        self._buckets[key] = bucket
        if bucket.tokens < 1:
            self.refused += 1
            return False
        bucket.tokens -= 1
        return True

    def __len__(self) -> int:
        return len(self._buckets)
