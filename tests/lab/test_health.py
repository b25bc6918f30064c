"""/healthz of real daemons over the lab's management link, and systemd's
notify protocol from a real daemon: READY=1 once it serves, WATCHDOG=1 from
its loop. A program taken off an interface behind the daemon's back fails
/healthz, naming it; a restart attaches it again."""

from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.request

import pytest

from pmip6ctl.lab import topology as t

from .conftest import wait_for

pytestmark = pytest.mark.root


def healthz(lab, node: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://{lab.metrics_targets()[node]}/healthz", timeout=10) as reply:
            return reply.status, json.load(reply)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def wanted(lab, node: str) -> list[dict]:
    return [{"program": a["program"], "interface": a["interface"], "attached": True}
            for a in lab.client(node).call("status")["attached"]]


@pytest.mark.parametrize("node", sorted(t.DAEMONS))
def test_healthz_of_every_daemon_is_ok_and_names_its_programs(lab, node):
    status, body = healthz(lab, node)
    assert status == 200, body
    assert body["ok"] is True and body["loop"]["answered"] is True
    assert 0 <= body["loop"]["tick_age_seconds"] <= 5
    assert body["dataplane"]["attached"] is True
    assert body["dataplane"]["programs"] == wanted(lab, node) and body["dataplane"]["programs"]


def test_a_program_taken_off_fails_healthz_and_a_restart_under_notify_puts_it_back(lab, tmp_path):
    node = "mag3"
    programs = wanted(lab, node)
    access = next(p for p in programs if p["program"] == "xdp_mag_access")["interface"]
    lab.sh(node, "ip", "link", "set", "dev", access, "xdp", "off")
    try:
        def failed():
            status, body = healthz(lab, node)
            return (status, body) if status == 503 else None
        status, body = wait_for(failed, timeout=30, what=f"/healthz of {node} failing")
        assert body["ok"] is False and body["loop"]["answered"] is True
        assert body["dataplane"]["attached"] is False
        assert {p["interface"]: p["attached"] for p in body["dataplane"]["programs"]} == \
            {p["interface"]: p["interface"] != access for p in programs}
    finally:
        # a restart, as systemd would start it: NOTIFY_SOCKET and WATCHDOG_USEC in its environment
        systemd = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        path = str(tmp_path / "notify")
        systemd.bind(path)
        systemd.settimeout(120)
        lab.stop_daemon(node)
        saved = {k: os.environ.get(k) for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
        os.environ.update(NOTIFY_SOCKET=path, WATCHDOG_USEC="2000000")
        try:
            lab.start_daemon(node)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        try:
            messages = []
            while b"READY=1" not in b"\n".join(messages):
                messages.append(systemd.recv(4096))
            # READY comes after the programs are attached and /healthz serves
            status, body = healthz(lab, node)
            assert status == 200, body
            assert body["dataplane"]["programs"] == programs
            assert systemd.recv(4096) == b"WATCHDOG=1"
        finally:
            systemd.close()
        lab.wait_ready(node)
