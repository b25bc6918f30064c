"""Helpers of the lab tests. The session's one lab (the `lab` fixture) lives
in tests/conftest.py, shared with tests/attacks."""

from __future__ import annotations

import ipaddress
import re
import subprocess
import time
import urllib.request

import pytest

from scapy.layers.inet6 import IPv6

from pmip6ctl import wire
from pmip6ctl.lab import topology as t
from pmip6ctl.lab.probe import RawSender
from pmip6ctl.lab.runner import poll


def ping(lab, src: str, dst: str, count: int = 10, interval: float = 0.02, source: str | None = None) -> int:
    """Replies received."""
    argv = ["ping", "-c", str(count), "-i", str(interval), "-W", "1", dst]
    if source:
        argv[1:1] = ["-I", source]
    out = lab.net.sh_ok(src, *argv)
    match = re.search(r"(\d+) received", out)
    return int(match.group(1)) if match else 0


def metrics(lab, node: str) -> str:
    """The node's /metrics page."""
    with urllib.request.urlopen(f"http://{lab.metrics_targets()[node]}/metrics", timeout=10) as reply:
        return reply.read().decode()


def metric(text: str, name: str, **labels) -> float:
    """One sample of a /metrics page whose labels include labels (0 if none)."""
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


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


def signaling(lab, node: str) -> dict[tuple[str, str, str], int]:
    return {(r["type"], r["direction"], r["result"]): r["count"] for r in lab.client(node).call("signaling")}




def send_ipv6(lab, ns: str, packet) -> None:
    """A whole IPv6 packet, its source whatever the attacker wrote."""
    with RawSender(lab.ns(ns)) as sender:
        sender.send(bytes(packet), packet[IPv6].dst)


def mh(message, src: str, dst: str) -> bytes:
    return wire.encode(message, ipaddress.IPv6Address(src), ipaddress.IPv6Address(dst))


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


def stop_all_ro(lab, **settings) -> None:
    """Every MAG's RO trigger off (and `settings` applied), and every pair
    it holds stopped: a test's clean slate."""
    for node in ("mag1", "mag2", "mag3"):
        lab.client(node).call("ro_settings", trigger_packets=0, **settings)
        for row in lab.client(node).call("ro_list"):
            if row.get("roles") or row.get("phase") not in (None, "-"):
                try:
                    lab.client(node).call("ro_stop", mn=row["local"], cn=row["remote"])
                except Exception:
                    pass


@pytest.fixture
def triggers(lab):
    """Every MAG triggers RO on the first packet of a flow, for this test."""
    for node in ("mag1", "mag2", "mag3"):
        lab.client(node).call("ro_settings", trigger_packets=1)
    yield
    for node in ("mag1", "mag2", "mag3"):
        lab.client(node).call("ro_settings", trigger_packets=0)
