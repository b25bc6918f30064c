"""Key rotation in the running lab (docs/security.md): the key MAG1 and the
LMA share is replaced in its file; the LMA reloads with `pmip6ctl reload`,
MAG1 later with SIGHUP. Registrations go on in between, no binding is
dropped, and once both use the new key the old one opens nothing."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from scapy.layers.inet6 import IPv6
from scapy.packet import Raw

from pmip6ctl import wire
from pmip6ctl.lab import topology as t
from pmip6ctl.lab.configs import pair_key
from pmip6ctl.security import PeerKey

from .conftest import binding, mh, ping, send_ipv6, signaling, wait_for

pytestmark = pytest.mark.root
NEW_KEY = "5e" * 32


def write_key(path, hex_key: str, mode: int = 0o600) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(hex_key + "\n")
    os.chmod(path, mode)


def cli(lab, node: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pmip6ctl", "--socket", str(lab.socket(node)), *args],
                          capture_output=True, text=True, timeout=30)


def registers(lab, mn_id: str) -> None:
    """A new registration from MAG1 (its PBU and the LMA's PBA both believed)."""
    lab.client("mag1").call("attach", mn_id=mn_id, link="acc1")
    try:
        wait_for(lambda: (b := binding(lab, "mag1", mn_id)) and b["state"] == "registered",
                 what=f"{mn_id} to register through MAG1")
    finally:
        lab.client("mag1").call("detach", mn_id=mn_id)


def test_rotating_the_mag1_lma_key_drops_nothing_and_retires_the_old_key(lab):
    key_file, spi, old_key = pair_key("lma", "mag1", "signaling")
    path = lab.lab_dir / key_file
    mn1 = binding(lab, "lma", "mn1@lab.example")
    reloads = lab.client("lma").call("status")["reloads"]     # other tests reload the shared lab too
    mag1_reloads = lab.client("mag1").call("status")["reloads"].get("ok", 0)
    try:
        # a key file the daemon must refuse: the reload changes nothing and says why in one line
        write_key(path, NEW_KEY, mode=0o644)
        refused = cli(lab, "lma", "reload")
        assert refused.returncode == 1
        (line,) = refused.stderr.strip().splitlines()
        assert line.startswith(f"Error: reload refused, nothing changed: {lab.lab_dir / 'lma.toml'}: peers[")
        assert line.endswith(f"].key_file: {path} is readable by group or others (mode 0644): chmod 600 it")
        # the LMA first
        write_key(path, NEW_KEY)
        done = cli(lab, "lma", "reload", "--json")
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert result["keys_rotated"] == [t.address6("mag1")] and result["needs_restart"] == []
        status = lab.client("lma").call("status")
        assert status["keys_in_grace"] == [t.address6("mag1")] and status["reloads"] == {"ok": reloads.get("ok", 0) + 1,
                                                                        "failed": reloads.get("failed", 0) + 1}
        still = binding(lab, "lma", "mn1@lab.example")
        assert {k: v for k, v in still.items() if k != "expires_in"} == {k: v for k, v in mn1.items() if k != "expires_in"}
        registers(lab, "rotation1@lab.example")          # MAG1 still signs with the old key
        # then MAG1, by SIGHUP
        pid = lab.client("mag1").call("status")["pid"]
        os.kill(pid, signal.SIGHUP)
        wait_for(lambda: lab.client("mag1").call("status")["reloads"]["ok"] == mag1_reloads + 1,
                 what="MAG1 to reload")
        registers(lab, "rotation2@lab.example")          # both on the new key
        assert lab.client("lma").call("status")["keys_in_grace"] == []     # MAG1 was seen using it
        # the old key opens nothing now: a deregistration of MN1 signed with it
        before = signaling(lab, "lma")
        hnp = ipaddress.IPv6Network(mn1["hnp"])
        forged = PeerKey(spi, bytes.fromhex(old_key)).sign(wire.BindingUpdate(
            4242, wire.BUFlags.A | wire.BUFlags.H | wire.BUFlags.P, 0, [
                wire.MobileNodeIdentifier.from_nai("mn1@lab.example"),
                wire.HomeNetworkPrefix(hnp.prefixlen, hnp.network_address), wire.HandoffIndicator(5),
                wire.AccessTechnologyType(3), wire.Timestamp.from_unix(time.time())]),
            ipaddress.IPv6Address(t.address6("mag1")), ipaddress.IPv6Address(t.LMA6))
        send_ipv6(lab, "inet", IPv6(src=t.address6("mag1"), dst=t.LMA6, nh=135)
                  / Raw(mh(forged, t.address6("mag1"), t.LMA6)))
        wait_for(lambda: signaling(lab, "lma").get(("pbu", "in", "bad_authenticator"), 0)
                 > before.get(("pbu", "in", "bad_authenticator"), 0), what="the old key to be refused")
        assert binding(lab, "lma", "mn1@lab.example")["mag"] == t.address6("mag1")
        assert ping(lab, "mn1", t.CN6, count=5) == 5
    finally:                                             # the lab's own key again, for the tests after
        write_key(path, old_key)
        cli(lab, "lma", "reload")
        cli(lab, "mag1", "reload")
