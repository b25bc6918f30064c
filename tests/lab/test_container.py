"""The container image, really built and started: deploy/container/build
makes it (the Debian 12 base from the archive with mmdebstrap, podman import,
the two-stage Containerfile), then a lab MAG runs from the image's file system
in place of the lab's own daemon, compiles its XDP programs with the image's
bcc and kernel headers, attaches them and answers `status`.

How it is started: `podman run` fails on rlimits under this VM's cgroup set-up,
so the test does what the runtime would: `podman create` and `podman mount`
give a container's root,
and the daemon runs chrooted into it, in the lab MAG's network namespace
(nsenter --net, as the lab starts its daemons), in a private mount namespace
with /proc, /sys (bpffs included), /dev and /run/pmip6ctl bound in, with the
image's environment (BCC_KERNEL_SOURCE ...) and nothing of the host's Python.

The image is tagged with a digest of what goes into it, so that a second run
of the same tree reuses it; the base tarball is cached in
/var/cache/pmip6ctl/bookworm.tar. A first build takes a few minutes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from pmip6ctl import netns
from pmip6ctl.lab.runner import poll

pytestmark = pytest.mark.root

ROOT = Path(__file__).resolve().parents[2]
NODE = "mag3"
INPUTS = ("pyproject.toml", "README.md", "pmip6ctl", "bpf", "deploy/container", "deploy/examples")


def _digest() -> str:
    h = hashlib.sha256()
    for top in INPUTS:
        path = ROOT / top
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*")
                                                     if p.is_file() and "__pycache__" not in p.parts)
        for file in files:
            h.update(str(file.relative_to(ROOT)).encode() + b"\0" + file.read_bytes())
    return h.hexdigest()[:12]


def _podman(*argv: str, timeout: float = 120) -> str:
    result = subprocess.run(["podman", "--cgroup-manager=cgroupfs", *argv],
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"podman {' '.join(argv)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout.strip()


@pytest.fixture(scope="module")
def image() -> str:
    missing = [tool for tool in ("podman", "mmdebstrap") if not shutil.which(tool)]
    if missing:
        message = f"the container test needs {' and '.join(missing)} (apt-get install podman mmdebstrap; ./dev installs them)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    tag = f"localhost/pmip6ctl:test-{_digest()}"
    if subprocess.run(["podman", "image", "exists", tag]).returncode != 0:
        build = subprocess.run([str(ROOT / "deploy/container/build"), tag],
                               capture_output=True, text=True, timeout=1800)
        assert build.returncode == 0, f"deploy/container/build failed:\n{build.stdout[-4000:]}\n{build.stderr[-4000:]}"
        # earlier test builds go (each is half a gigabyte)
        for line in _podman("images", "--format", "{{.Repository}}:{{.Tag}}", "localhost/pmip6ctl").split():
            if line.startswith("localhost/pmip6ctl:test-") and line != tag:
                subprocess.run(["podman", "rmi", "-f", line], capture_output=True)
    return tag


@pytest.fixture
def rootfs(image):
    """A container's root, writable (the image's own mount is read-only)."""
    name = f"pmip6ctl-test-{NODE}"
    subprocess.run(["podman", "rm", "-f", name], capture_output=True)
    _podman("create", "--name", name, image)
    try:
        yield Path(_podman("mount", name))
    finally:
        subprocess.run(["podman", "unmount", name], capture_output=True)
        subprocess.run(["podman", "rm", "-f", name], capture_output=True)


def _image_env(image: str) -> dict[str, str]:
    env = json.loads(_podman("image", "inspect", "--format", "{{json .Config.Env}}", image)) or []
    return dict(item.split("=", 1) for item in env)


def _in_image(lab, root: Path, image: str, *argv: str, **popen) -> subprocess.Popen:
    """argv run chrooted in the image, in the node's network namespace."""
    binds = " && ".join(
        f"mkdir -p {shlex.quote(str(root / inner.lstrip('/')))} && "
        f"mount --rbind {shlex.quote(outer)} {shlex.quote(str(root / inner.lstrip('/')))}"
        for outer, inner in (("/proc", "/proc"), ("/sys", "/sys"), ("/dev", "/dev"),
                             (str(lab.run_dir), str(lab.run_dir))))
    script = f"{binds} && exec chroot {shlex.quote(str(root))} {shlex.join(argv)}"
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **_image_env(image)}
    return subprocess.Popen([*netns.nsenter_prefix(lab.ns(NODE)), "unshare", "--mount", "--propagation", "private",
                             "sh", "-c", script], env=env, **popen)


def _xdp_program_ids(lab) -> set[int]:
    links = json.loads(lab.sh(NODE, "ip", "-d", "-j", "link", "show"))
    return {link["xdp"]["prog"]["id"] for link in links if "xdp" in link and "prog" in link.get("xdp", {})}


def test_a_mag_runs_from_the_image_attaches_and_answers_status(lab, image, rootfs):
    config = lab.lab_dir / f"{NODE}.toml"
    assert not (rootfs / "usr/bin/pip").exists() and not (rootfs / "usr/bin/pip3").exists()
    assert (rootfs / "usr/bin/pmip6ctl").is_file()
    assert (rootfs / "usr/lib/python3/dist-packages/pmip6ctl/bpf/constants.h").is_file()

    before = _xdp_program_ids(lab)
    assert before, "the lab's mag3 has no XDP programs attached"
    lab.stop_daemon(NODE)           # (its programs stay attached: the data plane outlives the daemon)
    log = open(lab.lab_dir / "logs" / f"{NODE}-container.log", "ab")
    daemon = _in_image(lab, rootfs, image, "/usr/bin/pmip6ctl", "mag", "run", "-c", str(config),
                       stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        def ready():
            assert daemon.poll() is None, "the image's mag3 exited:\n" + _log_tail(lab)
            try:
                return lab.client(NODE, timeout=2).call("status")
            except (ConnectionError, OSError):
                return None
        status = poll(ready, 180, 0.5)
        assert status, "the image's mag3 did not answer within 180 s:\n" + _log_tail(lab)

        # It is the image's daemon: its root is the image's, its Python Debian's.
        # (nsenter, unshare and chroot exec, and sh execs chroot: one process)
        assert os.readlink(f"/proc/{daemon.pid}/root") == str(rootfs)
        assert os.readlink(f"/proc/{daemon.pid}/exe").startswith(f"{rootfs}/usr/bin/python3")

        attached = {(a["program"], a["interface"]) for a in status["attached"]}
        assert {p for p, _ in attached} >= {"xdp_mag_access", "xdp_mag_transport"}, status["attached"]
        # the kernel agrees: the image's daemon compiled and attached programs of its own
        now = _xdp_program_ids(lab)
        assert len(now) >= 2 and not now & before, (before, now)

        # and the image's own CLI reads it through the control socket
        cli = _in_image(lab, rootfs, image, "/usr/bin/pmip6ctl", "--node", NODE, "status",
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out, _ = cli.communicate(timeout=60)
        assert cli.returncode == 0, out
        for program, interface in attached:
            assert f"{program} on {interface}" in out, out
    finally:
        try:
            os.killpg(daemon.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()
        log.close()
        lab.restart_daemon(NODE)
    assert lab.client(NODE).call("status")["attached"]


def _log_tail(lab, lines: int = 30) -> str:
    path = lab.lab_dir / "logs" / f"{NODE}-container.log"
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
