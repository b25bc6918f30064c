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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed lab test reports what the daemons said and hold: CI keeps
    nothing else once the lab is down."""
    outcome = yield
    report = outcome.get_result()
    lab = item.funcargs.get("lab") if hasattr(item, "funcargs") else None
    if report.when != "call" or not report.failed or lab is None:
        return
    from pmip6ctl.lab.topology import DAEMONS
    if keep := os.environ.get("PMIP6_LAB_FAILURE_LOGS"):      # whole logs, for a run that keeps failing
        import shutil
        shutil.copytree(lab.lab_dir / "logs", os.path.join(keep, item.name), dirs_exist_ok=True)
    for node in DAEMONS:
        report.sections.append((f"lab {node}: last lines of its log", lab.log_tail(node, lines=40)))
        try:
            tables = lab.client(node, timeout=2).call("tables")
            ro = tables.get("ro_entries", [])
            report.sections.append((f"lab {node}: ro entries and tunnels",
                                    "\n".join(map(str, ro + tables.get("tunnels", []))) or "(none)"))
            refusals = [f"{c['program']} {c['reason']} {c['packets']}" for c in lab.client(node, timeout=2).call("counters")
                        if c["packets"] and not c["reason"].startswith(("fwd_", "pass_local", "pass_not_"))]
            report.sections.append((f"lab {node}: data-plane counters (since start, without forwarded)",
                                    "\n".join(refusals) or "(none)"))
        except Exception as e:                               # noqa: BLE001  (a report must not fail)
            report.sections.append((f"lab {node}: tables", f"unavailable: {e}"))
