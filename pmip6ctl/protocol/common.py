"""Timer helpers every protocol core shares.

The cores take a decoded message with its Arrival (pmip6ctl.transport), or
a timer tick with the current time, and return actions. Times are
wall-clock seconds (time.time() in the daemons, any float in tests): the
Timestamp option (RFC 5213 §5.5) needs wall-clock time, and the cores never
read a clock themselves.
"""

from __future__ import annotations

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
