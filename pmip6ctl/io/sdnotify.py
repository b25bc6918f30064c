"""systemd's notify protocol (sd_notify(3)), without libsystemd: one
datagram of "KEY=value" lines to the AF_UNIX socket in $NOTIFY_SOCKET
(a name starting with '@' is in the abstract namespace).

Without $NOTIFY_SOCKET (not started by systemd, or Type= is not notify)
every call does nothing. A send that fails is logged once and ignored:
systemd's watchdog then restarts us, which is what it is for."""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("pmip6ctl.sdnotify")


class Notifier:
    def __init__(self, environ=None):
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self._socket: socket.socket | None = None
        self._warned = False
        self.watchdog_seconds = watchdog_seconds(env)

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, *lines: str) -> bool:
        """Send the lines as one message; True when it went out."""
        if not self.address:
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.sendto("\n".join(lines).encode(), self.address)
        except OSError as exc:
            if not self._warned:
                log.warning("cannot notify systemd at %s: %s", self.address.replace("\0", "@"), exc)
                self._warned = True
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def watchdog_seconds(env) -> float | None:
    """$WATCHDOG_USEC in seconds when it is meant for this process
    ($WATCHDOG_PID unset or ours), else None."""
    usec, pid = env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1e6 if value > 0 else None
