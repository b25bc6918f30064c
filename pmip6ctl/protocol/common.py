"""Timer helpers every protocol core shares.

The cores take a decoded message with its Arrival (pmip6ctl.transport), or
a timer tick with the current time, and return actions. Times are
wall-clock seconds (time.time() in the daemons, any float in tests): the
Timestamp option (RFC 5213 §5.5) needs wall-clock time, and the cores never
read a clock themselves.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from ..wire import Timestamp


@dataclass
class Retransmission:
    """RFC 6275 §11.8 retransmission: first timeout, then doubling up to a
    cap (InitialBindackTimeoutFirstReg 1 s ... MAX_BINDACK_TIMEOUT 32 s).
    `due` is when to send again; None when nothing is outstanding."""
    initial: float = 1.0
    maximum: float = 32.0
    timeout: float = 0.0
    due: float | None = None
    attempts: int = 0

    def start(self, now: float) -> None:
        self.timeout = self.initial
        self.attempts = 1
        self.due = now + self.timeout

    def backoff(self, now: float) -> None:
        """After a retransmission: wait twice as long, up to the cap."""
        self.timeout = min(self.timeout * 2, self.maximum)
        self.attempts += 1
        self.due = now + self.timeout

    def stop(self) -> None:
        self.due = None


def earliest(*deadlines: float | None) -> float | None:
    """The soonest of some optional deadlines."""
    present = [d for d in deadlines if d is not None]
    return min(present) if present else None


def sequence_greater(sequence: int, last: int) -> bool:
    """RFC 6275 §9.5.1: a 16-bit Sequence # is greater than ``last`` when it is
    less than 2**15 ahead of it, modulo 2**16."""
    return 0 < (sequence - last) % 0x10000 < 0x8000


class Stamper:
    """Timestamps for our requests, strictly increasing even when many are
    made at the same `now` (a timer that refreshes a thousand MNs at once):
    the receiver takes only ever-newer requests from one peer."""

    def __init__(self):
        self._last = 0

    def stamp(self, now: float) -> Timestamp:
        value = max(round(now * 65536), self._last + 1)
        self._last = value
        return Timestamp(value)


class Deadlines:
    """When each key is next due, in a heap with lazy deletion (aioquic's
    and asyncio's timer heaps): `set` pushes a new entry and leaves the one
    it replaces in place, marked stale by the key's current (deadline,
    serial); stale tops are dropped when met. `next()` is O(1) amortised,
    taking what is due `O(k log n)`. Stale entries are compacted away once
    they outnumber the live ones, so churn never grows the heap beyond
    twice the keys held (issue 13: bounded state)."""

    COMPACT_ABOVE = 64                    # a heap this small is never worth rebuilding

    def __init__(self):
        self._heap: list[tuple[float, int, object]] = []
        self._live: dict[object, tuple[float, int]] = {}    # key -> its current (deadline, serial)
        self._serial = 0

    def set(self, key, deadline: float | None) -> None:
        """key is next due at deadline (None: not at all)."""
        current = self._live.get(key)
        if deadline is None:
            if current is not None:
                del self._live[key]
                self._compact()
            return
        if current is not None and current[0] == deadline:
            return
        self._serial += 1
        self._live[key] = (deadline, self._serial)
        heapq.heappush(self._heap, (deadline, self._serial, key))
        self._compact()

    def discard(self, key) -> None:
        self.set(key, None)

    def get(self, key) -> float | None:
        current = self._live.get(key)
        return current[0] if current is not None else None

    def next(self) -> float | None:
        """The soonest deadline held, or None."""
        top = self.first()
        return top[0] if top is not None else None

    def first(self) -> tuple[float, object] | None:
        """(deadline, key) of the soonest, or None."""
        heap, live = self._heap, self._live
        while heap:
            deadline, serial, key = heap[0]
            if live.get(key) == (deadline, serial):
                return deadline, key
            heapq.heappop(heap)
        return None

    def pop_due(self, now: float) -> list:
        """The keys due at now, soonest first; each is no longer due until set again."""
        due = []
        heap, live = self._heap, self._live
        while heap and heap[0][0] <= now:
            deadline, serial, key = heapq.heappop(heap)
            if live.get(key) == (deadline, serial):
                del live[key]
                due.append(key)
        return due

    def _compact(self) -> None:
        heap = self._heap
        if len(heap) > self.COMPACT_ABOVE and len(heap) > 2 * len(self._live):
            self._heap = [(d, s, k) for k, (d, s) in self._live.items()]
            heapq.heapify(self._heap)

    def __len__(self) -> int:
        return len(self._live)

    @property
    def heap_size(self) -> int:
        """Entries in the heap, stale ones included (for tests and bench)."""
        return len(self._heap)
