"""/healthz: answered by the event loop itself, so a stalled loop fails it.

The loop notes a tick every second (call_later), and, under systemd with
WatchdogSec=, sends WATCHDOG=1 from that same tick: a loop that stops
turning stops both. A /healthz request (on the metrics listener's thread)
hands a callback to the loop and waits ANSWER_TIMEOUT for it; no answer is
a 503 that says how old the last tick is. The answer also names each XDP
attachment the role wants and whether the kernel still has a program
there (someone's `ip link set dev X xdp off` makes it fail too)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Callable

from ..io.sdnotify import Notifier

log = logging.getLogger("pmip6ctl.health")

TICK_SECONDS = 1.0
ANSWER_TIMEOUT = 1.0       # the loop must run a callback within this
STALE_AFTER = 5.0          # a tick older than this fails /healthz even if the loop answered


class LoopHealth:
    def __init__(self, probe: Callable[[], list[tuple[str, str]]],
                 xdp_attached: Callable[[str], bool] | None = None, notifier: Notifier | None = None,
                 answer_timeout: float = ANSWER_TIMEOUT, stale_after: float = STALE_AFTER):
        """probe() runs on the loop and names the (program, interface) pairs
        the node wants attached; xdp_attached(ifname) asks the kernel (on
        the HTTP thread, so it does not hold the loop)."""
        self.probe = probe
        self.xdp_attached = xdp_attached
        self.notifier = notifier
        self.answer_timeout = answer_timeout
        self.stale_after = stale_after
        self.loop: asyncio.AbstractEventLoop | None = None
        self.last_tick: float | None = None
        self.interval = TICK_SECONDS
        if notifier is not None and notifier.watchdog_seconds:
            self.interval = min(TICK_SECONDS, notifier.watchdog_seconds / 2)
        self._handle: asyncio.TimerHandle | None = None

    # --- on the loop -------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._tick()

    def _tick(self) -> None:
        self.last_tick = time.monotonic()
        if self.notifier is not None and self.notifier.watchdog_seconds:
            self.notifier.watchdog()
        self._handle = self.loop.call_later(self.interval, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    # --- on the HTTP thread --------------------------------------------------------
    def tick_age(self) -> float | None:
        last = self.last_tick
        return None if last is None else round(time.monotonic() - last, 3)

    def check(self) -> tuple[bool, dict]:
        """(ok, the JSON body) for one /healthz request."""
        answered = threading.Event()
        found: dict = {}

        def on_loop():
            try:
                found["attachments"] = list(self.probe())
            except Exception as exc:             # said in the answer, and the check fails
                found["error"] = f"{type(exc).__name__}: {exc}"
            answered.set()

        if self.loop is None or self.loop.is_closed():
            return False, {"ok": False, "loop": {"answered": False, "tick_age_seconds": self.tick_age(),
                                                  "error": "the event loop is not running"}}
        try:
            self.loop.call_soon_threadsafe(on_loop)
        except RuntimeError as exc:              # closed between the test and the call
            return False, {"ok": False, "loop": {"answered": False, "tick_age_seconds": self.tick_age(),
                                                  "error": str(exc)}}
        in_time = answered.wait(self.answer_timeout)
        age = self.tick_age()
        loop = {"answered": in_time, "tick_age_seconds": age}
        if not in_time:
            loop["error"] = f"the event loop did not answer within {self.answer_timeout:g} s"
        elif "error" in found:
            loop["error"] = found["error"]
        elif age is None or age > self.stale_after:
            loop["error"] = f"the loop's last tick is older than {self.stale_after:g} s"
        loop_ok = in_time and "error" not in loop
        programs = []
        for program, ifname in found.get("attachments", []):
            attached = self._attached(ifname)
            programs.append({"program": program, "interface": ifname, "attached": attached})
        dataplane_ok = bool(found.get("attachments") is not None) and all(p["attached"] for p in programs)
        ok = loop_ok and dataplane_ok
        return ok, {"ok": ok, "loop": loop, "dataplane": {"attached": dataplane_ok if in_time else None,
                                                          "programs": programs}}

    def _attached(self, ifname: str) -> bool:
        if self.xdp_attached is None:
            return True
        try:
            return bool(self.xdp_attached(ifname))
        except Exception as exc:
            log.debug("XDP attach state of %s unknown: %s", ifname, exc)
            return False
