"""The CLI against the lab's real daemons: --node finds the lab's sockets in
/run/pmip6ctl/lab/ (as NAME when no production daemon has that name, always
as lab-NAME), -j, and `debuginfo` bundles what a lab daemon says, its log,
and its config without a key."""

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from pmip6ctl.lab.configs import lab_keys

pytestmark = pytest.mark.root


def pmip6ctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pmip6ctl", *args], capture_output=True, text=True, timeout=60)


def test_node_reaches_the_labs_daemons(lab):
    assert lab.socket("mag1") == Path("/run/pmip6ctl/lab/mag1.sock")
    for name in ("lab-mag1", *(["mag1"] if not Path("/run/pmip6ctl/mag1.sock").exists() else [])):
        out = pmip6ctl("--node", name, "-j", "status")
        assert out.returncode == 0, out.stderr
        status = json.loads(out.stdout)
        assert status["node"] == "mag1" and status["config"] == str(lab.lab_dir / "mag1.toml")
    counters = pmip6ctl("--node", "lab-lma", "--raw", "-j", "counters")
    assert counters.returncode == 0 and isinstance(json.loads(counters.stdout), list)


def test_debuginfo_of_a_lab_daemon(lab, tmp_path):
    out = tmp_path / "mag1.tar.gz"
    result = pmip6ctl("--node", "lab-mag1", "debuginfo", "-o", str(out), "--log-lines", "50")
    assert result.returncode == 0, result.stderr
    with tarfile.open(out) as tar:
        files = {Path(m.name).name: tar.extractfile(m).read().decode() for m in tar.getmembers()}
    assert {"versions.json", "status.json", "bindings.json", "peers.json", "counters.json", "signaling.json",
            "tables.json", "ro_list.json", "config.toml", "log.txt"} <= set(files)
    assert json.loads(files["status.json"])["node"] == "mag1"
    assert lab.mns["mn1"]["mn_id"] in {b["mn_id"] for b in json.loads(files["bindings.json"])}
    assert {"mobile_nodes", "ro_entries", "tunnels"} <= set(json.loads(files["tables.json"]))
    assert 'key_file = "' in files["config.toml"]
    assert not any(key in text for key in lab_keys().values() for text in files.values())
    assert 0 < len(files["log.txt"].splitlines()) <= 50
    assert files["log.txt"].splitlines()[-1] in (lab.lab_dir / "logs" / "mag1.log").read_text()
