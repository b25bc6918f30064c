"""Issue 13, item 8: fuzzing against the running daemons. Mutated Mobility
Header messages (pmip6ctl/lab/fuzz.py: every MH type and option, truncated,
extended, bit-flipped, with lying lengths, unknown types and options,
authenticated-shape ones; most with the right Checksum) go from pmip-inet to
the LMA, MAG1 and the CN agent, over IPv6, IPv4/UDP 5436 and IPv4 proto 41,
paced by the daemons so that they reach the parsers, and to MN1 along the
home path (the LMA's tunnel, punted by MAG1's XDP). Afterwards every daemon
answers, no log holds a traceback, every binding is where it was, and route
optimization still sets up.

The quick run (5,000 mutants) is part of the suite; the long one (100,000,
`-m fuzz`) is not:

    pytest -m fuzz tests/attacks/test_fuzz.py -s       (PMIP6_FUZZ_SEED, PMIP6_FUZZ_LAB_COUNT to change)
"""

from __future__ import annotations

import os

import pytest

from pmip6ctl.lab import topology as t
from pmip6ctl.lab.fuzz import TARGETS, TRANSPORTS, fuzz_lab

from ..lab.conftest import ping
from ..lab.test_ro import clean_ro, start_ro  # noqa: F401  (clean_ro is a fixture)

pytestmark = pytest.mark.root

SEED = int(os.environ.get("PMIP6_FUZZ_SEED", "20261130"))


def bindings(lab) -> dict[str, list[dict]]:
    """Every daemon's bindings (binding cache, binding update list, RO
    responder bindings), without the seconds left, which pass."""
    return {node: [{k: v for k, v in row.items() if k != "expires_in"} for row in lab.client(node).call("bindings")]
            for node in t.DAEMONS}


def log_sizes(lab) -> dict[str, int]:
    return {node: (lab.lab_dir / "logs" / f"{node}.log").stat().st_size for node in t.DAEMONS}


def logged_since(lab, sizes: dict[str, int]) -> dict[str, str]:
    out = {}
    for node, size in sizes.items():
        with open(lab.lab_dir / "logs" / f"{node}.log", "rb") as f:
            f.seek(size)
            out[node] = f.read().decode(errors="replace")
    return out


def fuzz_and_check(lab, count: int) -> None:
    before, sizes = bindings(lab), log_sizes(lab)
    report = fuzz_lab(lab, count, SEED, progress=lambda line: print(f"[fuzz] {line}", flush=True))
    print("\n" + "\n".join(report.lines()))

    # every daemon answers
    for node in t.DAEMONS:
        assert lab.client(node, timeout=30).call("status")["node"] == node
    # no log holds a traceback; no message made a core raise
    logs = logged_since(lab, sizes)
    assert {node: text for node, text in logs.items() if "Traceback" in text} == {}
    for target in TARGETS:
        assert not [k for k in report.received[target] if k[1] == "internal_error"], report.received[target]
    # the mutants reached the parsers: every transport to each target passes its
    # data plane (signaling for the node itself, IPv4-wrapped too, goes to its socket)
    for target, share in (("lma", 0.9), ("mag1", 0.9), ("cn", 0.9)):
        sent = sum(report.sent.get((target, tr), 0) for tr in TRANSPORTS)
        assert report.reached(target) >= share * sent, (target, report.reached(target), sent)
        results = {result for _, result in report.received[target]}
        assert {"ok", "malformed", "bad_checksum", "unknown_type"} <= results, (target, results)
    # along the home path, MAG1's XDP punted them all (under its budget) to the daemon
    home_path = report.sent[("mag1", "home_path")]
    assert home_path >= count // 20 and report.xdp["mag1"].get("mag_transport punt_mh", 0) >= 0.9 * home_path
    # a signaling peer's spoofed source reached the guard, which refused
    assert any(result in ("bad_authenticator", "wrong_spi", "unauthenticated", "stale_timestamp")
               for _, result in report.received["lma"])
    # and nothing moved: every binding where it was, the MNs' traffic flows
    assert bindings(lab) == before
    assert ping(lab, "mn1", lab.mns["mn2"]["ipv6"], count=5) == 5


def test_5000_mutated_messages_leave_every_daemon_working(lab, clean_ro):
    fuzz_and_check(lab, 5000)
    # route optimization still sets up, between MAGs and with the CN agent
    mn1, mn2 = lab.mns["mn1"]["ipv6"], lab.mns["mn2"]["ipv6"]
    start_ro(lab, mn1, mn2)
    start_ro(lab, mn1, t.CN6)
    assert ping(lab, "mn1", mn2, count=5) == 5
    assert ping(lab, "mn1", t.CN6, count=5) == 5


@pytest.mark.fuzz
def test_100000_mutated_messages_leave_every_daemon_working(lab, clean_ro):
    fuzz_and_check(lab, int(os.environ.get("PMIP6_FUZZ_LAB_COUNT", "100000")))
    mn1, mn2 = lab.mns["mn1"]["ipv6"], lab.mns["mn2"]["ipv6"]
    start_ro(lab, mn1, mn2)
    start_ro(lab, mn1, t.CN6)
    assert ping(lab, "mn1", mn2, count=5) == 5
    assert ping(lab, "mn1", t.CN6, count=5) == 5
