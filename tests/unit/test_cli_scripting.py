"""The CLI for scripts and support: -j/--json, --raw, `config check` with
every problem, --node for the lab's sockets, and `debuginfo`, against a real
ControlServer on a Unix socket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tarfile
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from pmip6ctl import cli
from pmip6ctl.cli import main
from pmip6ctl.config import ConfigError, check_config, load_config
from pmip6ctl.io.control import ControlServer

KEY = "5f" * 32         # a key that must never appear in a bundle

BAD = """\
bogus = 1
[node]
name = "mag1"
role = "mag"
[interfaces]
access = ["acc1"]
transport = ["tr0"]
colour = "blue"
[addresses]
ipv6 = "not-an-address"
[mag]
lma = "2001:db8::1"
[timers]
initial_bindack_timeout = -5
[control]
socket = 7
"""


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


# --- config check -----------------------------------------------------------------
def test_config_check_reports_every_problem_in_a_file_each_on_its_line(tmp_path):
    path = tmp_path / "mag1.toml"
    path.write_text(BAD)
    result = run("config", "check", str(path))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{path}: bogus: unknown key",
        f"{path}: interfaces.colour: unknown key",
        f"{path}: addresses.ipv6: 'not-an-address' is not an IPv6 address",
        f"{path}: timers.initial_bindack_timeout: -5 is not > 0",
        f"{path}: control.socket: 7 is not a string",
    ]
    # a daemon still stops at the first one, with the same line
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: bogus: unknown key"


def test_config_check_reports_every_cross_rule_and_every_key_file(tmp_path):
    good = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "mag1.toml"
    path = tmp_path / "mag1.toml"
    path.write_text(good.read_text())
    _, errors = check_config(path)                  # the example's three key files do not exist here
    assert [e.field for e in errors] == ["peers[0].key_file", "peers[1].key_file", "peers[2].key_file"]
    for error in errors:
        (tmp_path / "keys").mkdir(exist_ok=True)
        Path(str(error).split(": ")[2].split(" does not exist")[0]).write_text(KEY + "\n")
    for key in (tmp_path / "keys").iterdir():
        key.chmod(0o600)
    assert check_config(path) == (load_config(path), [])
    # rules across fields, all broken at once once every field converted
    text = path.read_text().replace("max_bindack_timeout = 32.0", "max_bindack_timeout = 0.5")
    path.write_text(text + '\n[[peers]]\nname = "lma"\naddress = "2001:db8:0:1::1"\nspi = 4101\n'
                           'key_file = "keys/lma-mag1.key"\n')
    result = run("-j", "config", "check", str(path))
    assert result.exit_code == 1
    [report] = json.loads(result.stdout)
    assert [p["field"] for p in report["problems"]] == [
        "peers[3].name", "peers[3].spi", "peers[3].address", "timers.max_bindack_timeout"]
    assert all(p["line"] == f"{path}: {p['field']}: {p['why']}" for p in report["problems"])


def test_config_check_ok_and_json(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(BAD)
    result = run("config", "check", "--json", str(path))
    [report] = json.loads(result.stdout)
    assert report["ok"] is False and len(report["problems"]) == 5


# --- a real control socket --------------------------------------------------------------
@contextlib.contextmanager
def control_server(path: Path, handlers: dict):
    loop = asyncio.new_event_loop()
    server = ControlServer(path, handlers)
    ready = threading.Event()

    def serve():
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield path
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


COUNTERS = [{"program": "mag_access", "verdict": "tx", "reason": "fwd_encap_ro", "packets": 1234567,
             "bytes": 9876543210}]


def handlers(config: Path | None = None) -> dict:
    status = {"role": "mag", "name": "mag1", "pid": os.getpid(), "uptime": 12345,
              "config": str(config) if config else None, "metrics": "127.0.0.1:1"}
    return {"status": lambda args: status, "counters": lambda args: COUNTERS,
            "bindings": lambda args: [{"mn_id": "mn1@example.net", "state": "registered", "lifetime": 36000}],
            "peers": lambda args: [], "signaling": lambda args: [{"type": "pbu", "direction": "out",
                                                                  "result": "sent", "count": 100000}],
            "tables": lambda args: {"mobile_nodes": [], "ro_entries": [], "tunnels": [], "peers": [], "routes": []},
            "ro_list": lambda args: []}


def test_raw_and_json_output(tmp_path):
    with control_server(tmp_path / "n.sock", handlers()) as sock:
        table = run("--socket", str(sock), "counters")
        assert "1,234,567" in table.stdout and "9,876,543,210" in table.stdout
        raw = run("--socket", str(sock), "--raw", "counters")
        assert "1234567" in raw.stdout and "9876543210" in raw.stdout and "," not in raw.stdout
        assert "100000" in run("--socket", str(sock), "--raw", "signaling").stdout
        for args in (["-j", "counters"], ["--json", "counters"], ["counters", "--json"]):
            result = run("--socket", str(sock), *args)
            assert json.loads(result.stdout) == COUNTERS, args
        assert json.loads(run("--socket", str(sock), "-j", "status").stdout)["uptime"] == 12345
        assert json.loads(run("--socket", str(sock), "-j", "bindings").stdout)[0]["lifetime"] == 36000


def test_node_finds_production_and_lab_sockets(tmp_path, monkeypatch):
    production, lab = tmp_path / "run", tmp_path / "run" / "lab"
    lab.mkdir(parents=True)
    monkeypatch.setattr(cli, "RUN_DIR", production)
    monkeypatch.setattr(cli, "LAB_RUN_DIR", lab)
    (lab / "mag1.sock").touch()
    (lab / "lma.sock").touch()
    assert cli.socket_of("mag1") == lab / "mag1.sock"         # no production mag1: the lab's
    (production / "mag1.sock").touch()
    assert cli.socket_of("mag1") == production / "mag1.sock"  # a production mag1 wins
    assert cli.socket_of("lab-mag1") == lab / "mag1.sock"     # lab-NAME: always the lab's
    assert cli.socket_of("mag9") == production / "mag9.sock"
    assert cli.daemon_sockets() == {"mag1": production / "mag1.sock", "lab-lma": lab / "lma.sock",
                                    "lab-mag1": lab / "mag1.sock"}


# --- debuginfo ------------------------------------------------------------------------------
def test_debuginfo_bundles_what_the_daemon_says_and_never_a_key(tmp_path):
    key_file = tmp_path / "keys" / "lma-mag1.key"
    key_file.parent.mkdir()
    key_file.write_text(KEY + "\n")
    config = tmp_path / "mag1.toml"
    config.write_text(f'[node]\nname = "mag1"\n\n[[peers]]\nname = "lma"\nkey_file = "{key_file}"\n'
                      f'key = "{KEY}"\npsk = "hunter2"\n')
    log = tmp_path / "mag1.log"
    log.write_text("".join(f"line {i}\n" for i in range(1000)))
    out = tmp_path / "bundle.tar.gz"
    with control_server(tmp_path / "n.sock", handlers(config)) as sock:
        result = run("--socket", str(sock), "debuginfo", "-o", str(out), "--log", str(log), "--log-lines", "20")
    assert result.exit_code == 0, result.output
    assert (out.stat().st_mode & 0o777) == 0o600
    with tarfile.open(out) as tar:
        files = {Path(m.name).name: tar.extractfile(m).read().decode() for m in tar.getmembers()}
    assert {"versions.json", "status.json", "bindings.json", "peers.json", "counters.json", "signaling.json",
            "tables.json", "ro_list.json", "config.toml", "log.txt", "errors.txt", "bundle.json"} <= set(files)
    assert json.loads(files["counters.json"]) == COUNTERS
    assert json.loads(files["versions.json"])["pmip6ctl"]
    assert str(key_file) in files["config.toml"] and "hunter2" not in files["config.toml"]
    assert not any(KEY in text for text in files.values())
    assert files["log.txt"].splitlines() == [f"line {i}" for i in range(980, 1000)]
    assert "metrics" in files["errors.txt"]          # nothing listens on 127.0.0.1:1: named, not fatal


def test_debuginfo_with_no_daemon_writes_what_it_can_and_fails(tmp_path):
    out = tmp_path / "b.tar.gz"
    result = CliRunner().invoke(main, ["--socket", str(tmp_path / "none.sock"), "debuginfo", "-o", str(out)])
    assert result.exit_code == 1 and "did not answer" in result.stderr
    with tarfile.open(out) as tar:
        names = {Path(m.name).name for m in tar.getmembers()}
    assert names == {"versions.json", "errors.txt", "bundle.json"}
