"""One lab (DESIGN §5) per test session, shared by the lab tests: building
it and compiling four daemons' programs is the slow part. Each test leaves
MN1 and MN2 attached as it found them."""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from pmip6ctl.lab import topology as t
from pmip6ctl.lab.demo import attach_mobile_nodes
from pmip6ctl.lab.runner import Lab, poll


@pytest.fixture(scope="session")
def lab():
    lab = Lab(progress=lambda line: print(f"[lab] {line}"))
    lab.down(quiet=True)
    lab.up()
    try:
        lab.mns = attach_mobile_nodes(lab)
        yield lab
    finally:
        lab.down()
        # `lab down` must leave nothing behind
        left = [*lab.namespaces(), *[str(p) for p in (lab.lab_dir, lab.pin_root) if p.exists()],
                *[str(lab.socket(n)) for n in ("lma", "mag1", "mag2", "mag3", "cn") if lab.socket(n).exists()]]
        if subprocess.run(["ip", "link", "show", lab.mgmt_ifname], capture_output=True).returncode == 0:
            left.append(lab.mgmt_ifname)
        assert left == [], f"lab down left {left}"


def ping(lab, src: str, dst: str, count: int = 10, interval: float = 0.02, source: str | None = None) -> int:
    """Replies received."""
    argv = ["ping", "-c", str(count), "-i", str(interval), "-W", "1", dst]
    if source:
        argv[1:1] = ["-I", source]
    out = lab.net.sh_ok(src, *argv)
    match = re.search(r"(\d+) received", out)
    return int(match.group(1)) if match else 0


def counters(lab, node: str) -> dict[tuple[str, str], int]:
    return {(c["program"], c["reason"]): c["packets"] for c in lab.client(node).call("counters")}


def delta(after: dict, before: dict, program: str, reason: str) -> int:
    return after.get((program, reason), 0) - before.get((program, reason), 0)


def iperf(lab, client_ns: str, server_ns: str, target: str, seconds: float = 2, bind: str | None = None) -> dict:
    """A TCP transfer with iperf3; returns its JSON result."""
    return lab.tcp_transfer(client_ns, server_ns, target, seconds, bind)


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.1, what: str = "condition"):
    value = poll(predicate, timeout, interval)
    if not value:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")
    return value


def binding(lab, node: str, mn_id: str) -> dict | None:
    return next((b for b in lab.client(node).call("bindings") if b["mn_id"] == mn_id), None)


MN3_ID = t.SECOND_NAIS["mn1"]


class Capture:
    """tcpdump inside a lab namespace, written to a pcap, stopped cleanly
    (after a pause, so that what the kernel holds reaches the file)."""

    def __init__(self, lab, node: str, path, expression: str, interface: str = "any"):
        self.path = path
        self.proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{lab.ns(node)}", "tcpdump", "-Z", "root", "-i", interface, "-U",
             "-w", str(path), expression], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)

    def stop(self):
        time.sleep(1.0)
        self.proc.send_signal(2)
        self.proc.wait(timeout=10)
        return self.path

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.stop()


def ro_row(lab, node: str, local: str, remote: str) -> dict | None:
    return next((r for r in lab.client(node).call("ro_list") if (r["local"], r["remote"]) == (local, remote)), None)


def established(lab, node: str, local: str, remote: str) -> dict | None:
    row = ro_row(lab, node, local, remote)
    return row if row and row.get("phase") == "established" and row.get("roles") else None
