"""`lab down` leaves nothing behind, also after an `up` that failed half-way
(with its own prefix, so the session's lab is not touched)."""

import contextlib
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from pmip6ctl.lab.configs import lab_configs
from pmip6ctl.lab.netlab import LabError
from pmip6ctl.lab.runner import Lab, socket_is_live

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


def failing_once_started(monkeypatch) -> tuple[Lab, list]:
    """A lab whose up() fails once its daemons run, and the pid of the first
    daemon it waited for (filled in by up())."""
    lab = Lab(prefix="pmip-y-")
    started = []

    def after_the_daemons_started(self, node, timeout=60.0):
        started.append(self.pid(node))
        raise LabError("injected failure while waiting for the daemons")

    # (the management link's host routes would collide with the session's lab)
    monkeypatch.setattr(Lab, "build_management_link", lambda self: None)
    monkeypatch.setattr(Lab, "wait_ready", after_the_daemons_started)
    return lab, started


def test_a_failed_up_cleans_up_after_itself(monkeypatch):
    """The failure comes once the daemons run: they must be stopped too."""
    lab, started = failing_once_started(monkeypatch)
    with pytest.raises(LabError, match="injected failure"):
        lab.up()
    assert started and started[0] is not None           # a daemon was running
    assert not Path(f"/proc/{started[0]}").exists()     # and is gone
    assert leftovers(lab) == []


# --- the lab never touches a production daemon's paths ------------------------------------
@contextlib.contextmanager
def listener(path: Path):
    """Something that is not the lab answering on path, as a daemon's control socket would."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(8)
    try:
        yield path
    finally:
        sock.close()
        path.unlink(missing_ok=True)


def test_the_default_lab_has_its_own_paths():
    lab = Lab()
    assert lab.run_dir == Path("/run/pmip6ctl/lab") and lab.lab_dir == lab.run_dir
    for node in ("lma", "mag1", "cn"):
        assert lab.socket(node) == Path(f"/run/pmip6ctl/lab/{node}.sock")
        assert lab.store(node) == Path(f"/run/pmip6ctl/lab/{node}.db")
    text = lab_configs(str(lab.run_dir), str(lab.pin_root))["mag1"]
    assert 'socket = "/run/pmip6ctl/lab/mag1.sock"' in text and 'path = "/run/pmip6ctl/lab/mag1.db"' in text


def test_up_refuses_when_a_daemon_that_is_not_the_labs_holds_its_socket():
    lab = Lab(prefix="pmip-y-")
    lab.down(quiet=True)
    with listener(lab.socket("mag1")) as held:
        (lab.run_dir / "someone-elses.db").write_text("production data")
        with pytest.raises(LabError, match=f"refusing to start: .* {held} "):
            lab.up()
        assert lab.namespaces() == [] and not lab.pin_root.exists()     # nothing was changed
        assert socket_is_live(held)
        lab.down(quiet=True)                                             # and down leaves it alone
        assert socket_is_live(held) and held.exists()
    shutil.rmtree(lab.run_dir, ignore_errors=True)
    assert leftovers(lab) == []


def test_a_production_daemons_socket_and_store_survive_lab_up_and_down(monkeypatch):
    """A daemon named as a lab node outside the lab (mag1: its socket
    /run/pmip6ctl/mag1.sock, its store /var/lib/pmip6ctl/mag1.db): the lab's
    daemons start, the lab goes down, and both are as they were."""
    free = [n for n in ("mag1", "mag2", "mag3", "lma", "lma2", "cn")
            if not Path(f"/run/pmip6ctl/{n}.sock").exists() and not Path(f"/var/lib/pmip6ctl/{n}.db").exists()]
    if not free:
        pytest.skip("every lab node's name has a production socket or store here: not touching them")
    sock, db = Path(f"/run/pmip6ctl/{free[0]}.sock"), Path(f"/var/lib/pmip6ctl/{free[0]}.db")
    lab, started = failing_once_started(monkeypatch)
    db.parent.mkdir(parents=True, exist_ok=True)
    try:
        with listener(sock):
            for path in (db, Path(f"{db}-wal")):
                path.write_bytes(b"production store " + path.name.encode())
            with pytest.raises(LabError, match="injected failure"):
                lab.up()
            assert started and started[0] is not None
            lab.down(quiet=True)
            assert socket_is_live(sock)
            assert db.read_bytes() == f"production store {db.name}".encode()
            assert Path(f"{db}-wal").read_bytes() == f"production store {db.name}-wal".encode()
    finally:
        for path in (db, Path(f"{db}-wal")):
            path.unlink(missing_ok=True)
    assert leftovers(lab) == []
