"""Data-plane events on their way from the perf-buffer poller thread to the
event loop, through a bounded queue (issue 13: the daemon never queues
without bound, and punt handling never starves the loop).

The poller thread puts; the first event into an empty queue wakes the loop
once. The loop takes at most `batch` events per turn and then yields, so
that the control socket, /metrics and the timers get their turn between
batches during a flood. A full queue drops the newest event and counts it;
the XDP budget (bpf/events.h) keeps that rare."""

from __future__ import annotations

import collections
import logging
import threading
from typing import Callable

log = logging.getLogger("pmip6ctl.daemon")


class EventIntake:
    def __init__(self, handle: Callable[[object], None], capacity: int = 4096, batch: int = 64):
        self.handle = handle
        self.capacity = capacity
        self.batch = batch
        self.dropped = 0                   # queue full: never reached the node
        self.lost = 0                      # the perf buffer overflowed (the kernel's count)
        self.taken = 0
        self._queue: collections.deque = collections.deque()
        self._lock = threading.Lock()
        self._scheduled = False
        self._wake: Callable[[], None] | None = None

    def bind(self, call_soon_threadsafe: Callable, loop_call_soon: Callable) -> None:
        """The loop's two ways in: from the poller thread, and from itself."""
        self._wake = lambda: call_soon_threadsafe(self._drain)
        self._again = lambda: loop_call_soon(self._drain)

    @property
    def depth(self) -> int:
        return len(self._queue)

    # --- the poller thread ---------------------------------------------------------------------
    def put(self, event) -> None:
        with self._lock:
            if len(self._queue) >= self.capacity:
                self.dropped += 1
                return
            self._queue.append(event)
            if self._scheduled:
                return
            self._scheduled = True
        self._wake()

    def on_lost(self, count: int) -> None:
        with self._lock:
            self.lost += count

    # --- the event loop --------------------------------------------------------------------------
    def _drain(self) -> None:
        for _ in range(self.batch):
            try:
                event = self._queue.popleft()
            except IndexError:
                break
            self.taken += 1
            try:
                self.handle(event)
            except Exception:
                log.exception("handling data-plane event %s failed", type(event).__name__)
        with self._lock:
            if not self._queue:
                self._scheduled = False
                return
        self._again()                      # more waiting: after whatever else is ready
