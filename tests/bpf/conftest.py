"""Fixtures for packet tests through BPF_PROG_TEST_RUN.

One network namespace, pmip-t-bpf, gives the programs a realistic FIB:
  in0  (access side, toward the MN)       MN 2001:db8:100:1::10, 198.51.100.10
  out0 (transport side, toward the peers) 2001:db8:ffff:1::1/64, 192.0.2.1/24,
       default routes via 2001:db8:ffff:1::2 / 192.0.2.2
Neighbours are permanent, so FIB lookups succeed without traffic. The three
roles' programs are compiled once per session against pins in a scratch
directory that is removed afterwards.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pmip6ctl import netns
from pmip6ctl.dataplane import Dataplane, DataplaneSettings
from pmip6ctl.dataplane.testrun import RunResult, run_xdp

NS = "pmip-t-bpf"
PIN_ROOT = Path("/sys/fs/bpf/pmip6-test")

NEXT_HOP_MAC = "02:00:00:00:00:02"
MN_MAC = "02:00:00:00:00:10"
MN6 = "2001:db8:100:1::10"
MN4 = "198.51.100.10"
MN_PREFIX = "2001:db8:100:1::/64"
LOCAL6, LOCAL4 = "2001:db8:ffff:1::1", "192.0.2.1"
LMA6, LMA4 = "2001:db8:ffff:2::1", "203.0.113.1"
PEER6, PEER4 = "2001:db8:ffff:3::1", "203.0.113.3"
CN6, CN4 = "2001:db8:200:1::20", "198.51.100.20"


def _sh(*commands: str) -> None:
    for command in commands:
        subprocess.run(["ip", "-n", NS, *command.split()], check=True)


@dataclass
class Node:
    """One role's data plane with its interfaces, for fixture tests."""
    dataplane: Dataplane
    ifindex: dict[str, int]
    events: list = field(default_factory=list)

    def drain_events(self) -> list:
        self.dataplane.poll_events(timeout_ms=50)
        drained, self.events[:] = list(self.events), []
        return drained

    def counter(self, program: str, reason: str) -> int:
        return next(c.packets for c in self.tables.counters()
                    if c.program == program and c.reason == reason)

    @property
    def tables(self):
        return self.dataplane.tables

    def run(self, function: str, frame: bytes, ingress: str) -> RunResult:
        with netns.entered(NS):
            return run_xdp(self.dataplane.program_fd(function), frame,
                           ingress_ifindex=self.ifindex[ingress])

    def mac(self, ifname: str) -> str:
        out = subprocess.run(["ip", "-n", NS, "-br", "link", "show", ifname],
                             check=True, capture_output=True, text=True).stdout
        return out.split()[2]

    def reset(self) -> None:
        t = self.tables
        for table in (t.mn_table, t.ro_table, t.peers, t.flows, t.budgets):
            table.clear()
        if t.local_routes is not None:
            t.local_routes.clear()
        t.clear_tunnels()
        t.set_local_addresses([LOCAL6, LOCAL4])
        t.recount()                          # the maps were cleared behind the typed writers
        self.drain_events()


@pytest.fixture(scope="session")
def bpf_netns():
    subprocess.run(["ip", "netns", "del", NS], capture_output=True)
    subprocess.run(["ip", "netns", "add", NS], check=True)
    try:
        _sh(
            "link add in0 type veth peer name in0p",
            "link add out0 type veth peer name out0p",
            "link set lo up", "link set in0 up", "link set in0p up",
            "link set out0 up", "link set out0p up",
            f"addr add {LOCAL6}/64 dev out0 nodad",
            f"addr add {LOCAL4}/24 dev out0",
            f"-6 neigh add 2001:db8:ffff:1::2 lladdr {NEXT_HOP_MAC} dev out0 nud permanent",
            f"-4 neigh add 192.0.2.2 lladdr {NEXT_HOP_MAC} dev out0 nud permanent",
            "-6 route add default via 2001:db8:ffff:1::2 dev out0",
            "-4 route add default via 192.0.2.2 dev out0",
            f"-6 route add {MN_PREFIX} dev in0",
            f"-4 route add {MN4}/32 dev in0",
            f"-6 neigh add {MN6} lladdr {MN_MAC} dev in0 nud permanent",
            f"-4 neigh add {MN4} lladdr {MN_MAC} dev in0 nud permanent",
        )
        for sysctl in ("net.ipv6.conf.all.forwarding=1", "net.ipv4.conf.all.forwarding=1"):
            netns.run(NS, "sysctl", "-qw", sysctl)
        yield NS
    finally:
        subprocess.run(["ip", "netns", "del", NS], capture_output=True)


def _ifindexes() -> dict[str, int]:
    import socket
    with netns.entered(NS):
        return {name: socket.if_nametoindex(name) for name in ("in0", "out0")}


@pytest.fixture(scope="session")
def loaded_roles(bpf_netns):
    nodes = {}
    try:
        for role in ("mag", "lma", "cn"):
            dp = Dataplane(DataplaneSettings(node=f"t-{role}", role=role, pin_root=PIN_ROOT,
                                             ro_trigger_packets=3, event_interval_ms=60000))
            dp.load()
            with netns.entered(NS):
                import socket
                dp.tables.set_tx_ports([socket.if_nametoindex("in0"), socket.if_nametoindex("out0")])
            nodes[role] = Node(dp, _ifindexes())
            dp.open_events(nodes[role].events.append)
        yield nodes
    finally:
        for node in nodes.values():
            node.dataplane.close()
        shutil.rmtree(PIN_ROOT, ignore_errors=True)


@pytest.fixture
def mag(loaded_roles):
    node = loaded_roles["mag"]
    node.reset()
    return node


@pytest.fixture
def lma(loaded_roles):
    node = loaded_roles["lma"]
    node.reset()
    return node


@pytest.fixture
def cn(loaded_roles):
    node = loaded_roles["cn"]
    node.reset()
    return node
