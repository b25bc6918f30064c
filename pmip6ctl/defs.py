"""What the XDP programs and Python share, read from the C headers in bpf/.

The constants, drop/forward reasons and program ids have one definition, in
bpf/constants.h and bpf/reasons.h; this module parses them so that the two
sides cannot drift apart.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import tempfile
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path


_SOURCE_TREE = Path(__file__).resolve().parents[1]


@cache
def bpf_dir() -> Path:
    """The directory of the BPF sources (bpf/*.c, *.h), a real one: bcc reads
    the programs' headers through -I.

    $PMIP6_BPF_DIR first (an operator's patched copy), then the source tree
    this module was imported from (a checkout run with PYTHONPATH, or an
    editable install), then the package data of pmip6ctl.bpf (a wheel, a
    `pip install --user`, the container image)."""
    override = os.environ.get("PMIP6_BPF_DIR")
    if override:
        if not (Path(override) / "constants.h").is_file():
            raise FileNotFoundError(f"PMIP6_BPF_DIR={override} has no constants.h")
        return Path(override)
    if (_SOURCE_TREE / "pyproject.toml").is_file() and (_SOURCE_TREE / "bpf/constants.h").is_file():
        return _SOURCE_TREE / "bpf"
    return _packaged_bpf_dir()


def _packaged_bpf_dir() -> Path:
    try:
        root = resources.files("pmip6ctl.bpf")
    except ModuleNotFoundError:
        raise FileNotFoundError(
            "cannot find the BPF sources: pmip6ctl.bpf is not installed (set PMIP6_BPF_DIR)") from None
    if isinstance(root, Path) and (root / "constants.h").is_file():
        return root
    if (root / "constants.h").is_file():
        # a zip import: bcc needs files on disk, so extract them for the life of the process
        directory = Path(_extracted.enter_context(tempfile.TemporaryDirectory(prefix="pmip6ctl-bpf-")))
        for entry in root.iterdir():
            if entry.name.endswith((".c", ".h")):
                (directory / entry.name).write_bytes(entry.read_bytes())
        return directory
    raise FileNotFoundError(f"the pmip6ctl.bpf package ({root}) has no constants.h: a broken install")


_extracted = contextlib.ExitStack()
atexit.register(_extracted.close)


_DEFINE = re.compile(r"^\s*#define\s+([A-Z][A-Z0-9_]*)\s+(\d+)\b", re.M)
_REASON = re.compile(r'^\s*X\((\w+),\s*(\w+),\s*"([^"]*)"\)', re.M)


@cache
def constants() -> dict[str, int]:
    text = (bpf_dir() / "constants.h").read_text()
    return {name: int(value) for name, value in _DEFINE.findall(text)}


@dataclass(frozen=True)
class Reason:
    index: int
    name: str          # e.g. "drop_unknown_peer"
    verdict: str       # redirect, pass, drop or punt
    help: str


@cache
def reasons() -> tuple[Reason, ...]:
    text = (bpf_dir() / "reasons.h").read_text()
    return tuple(
        Reason(i, name.lower(), verdict, help)
        for i, (name, verdict, help) in enumerate(_REASON.findall(text))
    )


def reason(name: str) -> Reason:
    for r in reasons():
        if r.name == name:
            return r
    raise KeyError(name)


@cache
def programs() -> dict[int, str]:
    """PROG_* id -> program name (mag_access, mag_transport, lma, cn, cn_egress)."""
    return {
        value: name[len("PROG_"):].lower()
        for name, value in constants().items()
        if name.startswith("PROG_") and name != "PROG_COUNT"
    }


@cache
def event_kinds() -> dict[int, str]:
    return {
        value: name[len("EVENT_"):].lower()
        for name, value in constants().items()
        if name.startswith("EVENT_") and name != "EVENT_KIND_COUNT"
    }


# The programs each role loads, as (source file, function) pairs. The files
# are compiled together into one object so that they share the role's maps.
ROLE_PROGRAMS: dict[str, tuple[tuple[str, str], ...]] = {
    "mag": (("mag_access.c", "xdp_mag_access"), ("mag_transport.c", "xdp_mag_transport")),
    "lma": (("lma.c", "xdp_lma"),),
    "cn": (("cn.c", "xdp_cn"), ("cn.c", "xdp_cn_egress")),
}


def stats_key(prog_id: int, reason_index: int) -> int:
    """The key of the per-CPU counter of (program, reason) in the `stats`
    map: the layout STATS_KEY() in bpf/stats.h writes."""
    return prog_id * len(reasons()) + reason_index


def event_stats_key(prog_id: int, kind_id: int) -> int:
    """The key of (program, event kind) in `event_stats` (EVENT_STATS_KEY())."""
    return prog_id * constants()["EVENT_KIND_COUNT"] + kind_id
