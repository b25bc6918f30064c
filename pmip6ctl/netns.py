"""Entering network namespaces the way the data plane needs it.

`ip netns exec` remounts /sys, which hides the bpffs pins (DESIGN §4), so we
switch namespaces with setns(2) only: per thread, no mount namespace change.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
from pathlib import Path

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def entered(name: str | None):
    """Runs the body with this thread in network namespace `name` (None:
    stay where we are)."""
    if name is None:
        yield
        return
    path = NETNS_DIR / name
    if not path.exists():
        raise FileNotFoundError(f"network namespace {name!r} does not exist ({path})")
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(path, os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(target)
        os.close(own)


def enter(name: str) -> None:
    """Moves this thread for good (daemons do it once, before anything else)."""
    fd = os.open(NETNS_DIR / name, os.O_RDONLY)
    try:
        _setns(fd)
    finally:
        os.close(fd)


def nsenter_prefix(name: str | None) -> list[str]:
    """argv prefix that runs a command in `name` without remounting /sys."""
    if name is None:
        return []
    return ["nsenter", f"--net={NETNS_DIR / name}"]


def run(name: str | None, *argv: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*nsenter_prefix(name), *argv],
        check=check,
        text=True,
        capture_output=capture,
    )
