"""Shared test policy: tests marked `root` skip with a reason on a machine
without root, but fail in CI (CI=true), where a skip would hide that nothing
ran.

One lab (DESIGN §5) per test session, shared by tests/lab and
tests/attacks: building it and compiling four daemons' programs is the slow
part. Each test leaves MN1 and MN2 attached as it found them."""

import os
import subprocess

import pytest


def pytest_runtest_setup(item):
    if item.get_closest_marker("root") and os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("this test needs root, and CI must run as root")
        pytest.skip("needs root (CAP_BPF, CAP_NET_ADMIN)")


@pytest.fixture(scope="session")
def lab():
    from pmip6ctl.lab.demo import attach_mobile_nodes
    from pmip6ctl.lab.runner import Lab

    lab = Lab(progress=lambda line: print(f"[lab] {line}"))
    lab.down(quiet=True)
    lab.up()
    try:
        lab.mns = attach_mobile_nodes(lab)
        yield lab
    finally:
        lab.down()
        # `lab down` must leave nothing behind
        left = [*lab.namespaces(), *[str(p) for p in (lab.lab_dir, lab.pin_root) if p.exists()],
                *[str(lab.socket(n)) for n in ("lma", "mag1", "mag2", "mag3", "cn") if lab.socket(n).exists()]]
        if subprocess.run(["ip", "link", "show", lab.mgmt_ifname], capture_output=True).returncode == 0:
            left.append(lab.mgmt_ifname)
        assert left == [], f"lab down left {left}"
