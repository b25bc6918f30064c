"""Run a command under the system-call filter of a systemd unit, without
systemd: the unit's SystemCallFilter= allow list, expanded by
`systemd-analyze syscall-filter`, installed with libseccomp (Debian's
python3-seccomp), every other call failing with SystemCallErrorNumber=
(EPERM), as systemd does it. Then exec.

    python syscall_filter.py UNIT_FILE -- COMMAND...

tests/lab/test_health.py runs a daemon this way."""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys


def unit_filter(unit_text: str) -> tuple[list[str], int]:
    """(the allow list's entries, the errno) of a unit's [Service]."""
    names = re.search(r"^SystemCallFilter=(.+)$", unit_text, re.M)[1].split()
    number = re.search(r"^SystemCallErrorNumber=(\w+)$", unit_text, re.M)
    if any(name.startswith("~") for name in names):
        raise ValueError("a deny list: only allow lists are expanded here")
    return names, getattr(errno, number[1]) if number else None


def expand(entries: list[str]) -> set[str]:
    """System call names, groups (@name) expanded by systemd-analyze."""
    calls: set[str] = set()
    seen: set[str] = set()
    todo = list(entries)
    while todo:
        entry = todo.pop()
        if not entry.startswith("@"):
            calls.add(entry)
            continue
        if entry in seen:
            continue
        seen.add(entry)
        out = subprocess.run(["systemd-analyze", "syscall-filter", entry], capture_output=True, text=True,
                             check=True).stdout
        for line in out.splitlines()[1:]:
            line = line.strip()
            if line and not line.startswith("#"):
                todo.append(line)
    return calls


def install(calls: set[str], error: int) -> int:
    """The filter, on this process and what it execs; how many calls it allows."""
    import seccomp

    f = seccomp.SyscallFilter(defaction=seccomp.ERRNO(error))
    allowed = 0
    for name in sorted(calls):
        try:
            f.add_rule(seccomp.ALLOW, name)
        except (RuntimeError, ValueError, OSError):
            continue                   # unknown on this architecture: systemd skips it too
        allowed += 1
    f.load()
    return allowed


def main(argv: list[str]) -> None:
    unit, separator, *command = argv
    assert separator == "--" and command, __doc__
    with open(unit) as file:
        entries, error = unit_filter(file.read())
    install(expand(entries), error or errno.EPERM)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
