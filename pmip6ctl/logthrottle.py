"""Log lines at a rate a disk survives (issue 13): a flood of bad input
must not write one warning per packet.

Each kind of line (its logger and its format string, not its arguments)
has a token bucket: `burst` lines at once, then `rate` a second. Lines over
it are suppressed and counted; the next line of that kind that passes says
how many were. Errors and worse always pass."""

from __future__ import annotations

import logging
import threading
import time

MAX_KINDS = 4096      # kinds of line remembered; beyond, the quietest ones are forgotten


class LogThrottle(logging.Filter):
    def __init__(self, rate: float = 1.0, burst: int = 10, clock=time.monotonic):
        super().__init__()
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.suppressed_total = 0
        self._kinds: dict[tuple[str, object], list] = {}      # kind -> [tokens, last, suppressed]
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return True
        key = (record.name, record.msg)
        now = self.clock()
        with self._lock:
            state = self._kinds.get(key)
            if state is None:
                if len(self._kinds) >= MAX_KINDS:
                    self._kinds.pop(next(iter(self._kinds)))
                state = self._kinds[key] = [float(self.burst), now, 0]
            state[0] = min(self.burst, state[0] + (now - state[1]) * self.rate)
            state[1] = now
            if state[0] < 1:
                state[2] += 1
                self.suppressed_total += 1
                return False
            state[0] -= 1
            suppressed, state[2] = state[2], 0
        if suppressed:
            record.msg = f"{record.msg} [{suppressed} more like this suppressed]"
        return True


installed: LogThrottle | None = None        # the daemon's, for its metrics


def install(**settings) -> LogThrottle:
    """Throttle every handler of the root logger (the daemon's one stream)."""
    global installed
    installed = LogThrottle(**settings)
    for handler in logging.getLogger().handlers:
        handler.addFilter(installed)
    return installed
