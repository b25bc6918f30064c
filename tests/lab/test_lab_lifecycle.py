"""`lab down` leaves nothing behind, also after an `up` that failed half-way
(with its own prefix, so the session's lab is not touched)."""

import subprocess
from pathlib import Path

import pytest

from pmip6ctl.lab.netlab import LabError
from pmip6ctl.lab.runner import Lab

pytestmark = pytest.mark.root


def leftovers(lab: Lab) -> list[str]:
    found = [f"namespace {n}" for n in lab.namespaces()]
    for path in (lab.lab_dir, lab.pin_root, lab.run_dir):
        if path.exists():
            found.append(str(path))
    found += [str(p) for p in lab.run_dir.glob("*.sock")]
    if subprocess.run(["ip", "link", "show", lab.mgmt_ifname], capture_output=True).returncode == 0:
        found.append(f"link {lab.mgmt_ifname}")
    return found


def test_a_failed_up_cleans_up_after_itself(monkeypatch):
    """The failure comes once the daemons run: they must be stopped too."""
    lab = Lab(prefix="pmip-y-")
    started = []

    def broken(self, node, timeout=60.0):
        started.append(self.pid(node))
        raise LabError("injected failure while waiting for the daemons")

    # (the management link's host routes would collide with the session's lab)
    monkeypatch.setattr(Lab, "build_management_link", lambda self: None)
    monkeypatch.setattr(Lab, "wait_ready", broken)
    with pytest.raises(LabError, match="injected failure"):
        lab.up()
    assert started and started[0] is not None           # a daemon was running
    assert not Path(f"/proc/{started[0]}").exists()     # and is gone
    assert leftovers(lab) == []
