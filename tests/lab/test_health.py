"""/healthz of real daemons over the lab's management link, and systemd's
notify protocol from a real daemon: READY=1 once it serves, WATCHDOG=1 from
its loop. A program taken off an interface behind the daemon's back fails
/healthz, naming it; a restart attaches it again."""

from __future__ import annotations

import json
import os
import re
import socket
import urllib.error
import urllib.request

import pytest

from pmip6ctl.lab import topology as t

from .conftest import metric, metrics, wait_for

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
    page = metrics(lab, node)
    assert f'pmip6_event_loop_tick_age_seconds{{node="{node}"}}' in page
    assert 0 <= metric(page, "pmip6_event_loop_tick_age_seconds") <= 5
    assert not [line for line in page.splitlines() if line.split("{")[0].split(" ")[0].endswith("_created")]


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


def test_a_daemon_runs_under_the_units_system_call_filter(lab):
    """The units' SystemCallFilter= (@system-service bpf perf_event_open),
    put in force with libseccomp as systemd would: the daemon compiles,
    loads and attaches its programs, opens the perf buffer and serves."""
    pytest.importorskip("seccomp", reason="python3-seccomp (Debian) is needed to apply the filter")
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from pmip6ctl import netns

    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is needed to expand the filter's groups")
    root = Path(__file__).resolve().parents[2]
    unit = root / "deploy" / "systemd" / "pmip6ctl-mag@.service"
    wrapper = [sys.executable, str(Path(__file__).with_name("syscall_filter.py")), str(unit), "--"]
    # the filter bites: chroot(2) is outside it
    probe = subprocess.run([*wrapper, sys.executable, "-c", "import os; os.chroot('/')"],
                           capture_output=True, text=True, timeout=60)
    assert probe.returncode != 0 and "Operation not permitted" in probe.stderr, probe.stderr
    node = "mag3"
    programs = wanted(lab, node)
    lab.stop_daemon(node)
    log_path = lab.lab_dir / "logs" / f"{node}.log"
    before = log_path.stat().st_size if log_path.exists() else 0
    argv = [*netns.nsenter_prefix(lab.ns(node)), *wrapper, sys.executable, "-m", "pmip6ctl",
            t.DAEMONS[node], "run", "-c", str(lab.lab_dir / f"{node}.toml")]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    (lab.lab_dir / f"{node}.pid").write_text(str(proc.pid))
    try:
        lab.wait_ready(node)
        filtered = Path(f"/proc/{lab.pid(node)}/status").read_text()
        assert re.search(r"^Seccomp:\s+2$", filtered, re.M), "the daemon is not under the filter"
        status, body = healthz(lab, node)
        assert status == 200, body
        assert body["dataplane"]["programs"] == programs
        said = log_path.read_bytes()[before:].decode(errors="replace")
        assert "Operation not permitted" not in said and "Traceback" not in said, said[-3000:]
    finally:
        lab.stop_daemon(node)
        lab.start_daemon(node)
        lab.wait_ready(node)


def test_a_mag_refuses_metrics_on_its_access_side_unless_exposed(lab):
    """An address on interfaces.access is the MN side: without metrics.expose
    the MAG stops before it loads or binds anything, saying why in one line."""
    import subprocess
    import sys

    from pmip6ctl import netns

    node = "mag3"
    access = next(a["interface"] for a in lab.client(node).call("status")["attached"]
                  if a["program"] == "xdp_mag_access")
    address = "fd00:99::1"
    config = lab.lab_dir / f"{node}-access-metrics.toml"
    text = (lab.lab_dir / f"{node}.toml").read_text()
    text, n = re.subn(r'(?m)^listen = ".*"$', f'listen = "[{address}]:19436"', text)
    assert n == 1
    config.write_text(text)
    lab.sh(node, "ip", "-6", "addr", "add", f"{address}/64", "dev", access, "nodad")
    try:
        run = subprocess.run([*netns.nsenter_prefix(lab.ns(node)), sys.executable, "-m", "pmip6ctl", "mag", "run",
                              "-c", str(config)], capture_output=True, text=True, timeout=120)
        assert run.returncode != 0
        assert (f"metrics.listen: {address} is on access interface {access} (the MN side): give a loopback or "
                "management address, or set metrics.expose = true") in run.stderr, run.stderr[-2000:]
        assert "Traceback" not in run.stderr
    finally:
        lab.sh(node, "ip", "-6", "addr", "del", f"{address}/64", "dev", access)
        config.unlink()
    # the running MAG never noticed
    status, body = healthz(lab, node)
    assert status == 200, body
