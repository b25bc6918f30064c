"""The shell entry points (./dev, .ci/run, deploy/kubernetes/monitoring/make-prometheusrule)
pass shellcheck with no finding at all, and the GitHub Actions workflow stays a
thin wrapper around them. ./dev installs shellcheck (Debian and Ubuntu both
package it): where it is missing a CI run fails, a developer's run skips."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ("dev", ".ci/run", "deploy/kubernetes/monitoring/make-prometheusrule", "deploy/container/build")
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


def shellcheck() -> str:
    tool = shutil.which("shellcheck")
    if tool is None:
        message = "shellcheck is not installed (./dev installs it: apt-get install shellcheck)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return tool


@pytest.mark.parametrize("script", SCRIPTS)
def test_shellcheck_finds_nothing(script):
    path = ROOT / script
    assert os.access(path, os.X_OK), f"{script} is not executable"
    # every severity, style included; sourced files (os-release) are not followed
    result = subprocess.run([shellcheck(), "--severity=style", "--external-sources", str(path)],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_is_not_a_no_op(tmp_path):
    bad = tmp_path / "bad"
    bad.write_text('#!/bin/sh\nrm -rf $1/*\n')
    result = subprocess.run([shellcheck(), str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "SC2086" in result.stdout


def test_dev_knows_debian_and_ubuntu_and_installs_what_the_tests_run():
    text = (ROOT / "dev").read_text()
    assert "/etc/os-release" in text
    for needle in ('distro=ubuntu', 'distro=debian', 'linux-headers-$kver', 'linux-tools-',
                   'shellcheck', 'prometheus', '[test]', 'podman', 'mmdebstrap'):
        assert needle in text, needle
    result = subprocess.run(["bash", "-n", str(ROOT / "dev")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_workflow_runs_dev_test_as_root_on_a_hosted_ubuntu_runner():
    yaml = pytest.importorskip("yaml", reason="PyYAML is a test dependency")
    workflow = yaml.safe_load(WORKFLOW.read_text())
    # PyYAML reads the bare key `on` as True (YAML 1.1)
    triggers = workflow.get("on", workflow.get(True))
    assert {"push", "pull_request"} <= set(triggers)
    [job] = workflow["jobs"].values()
    assert job["runs-on"].startswith("ubuntu-")
    runs = [step["run"] for step in job["steps"] if "run" in step]
    assert len(runs) == 1, "keep the workflow thin: ./dev does the work"
    assert runs[0].startswith("sudo ") and runs[0].endswith(".ci/run")
    ci_run = (ROOT / ".ci" / "run").read_text()
    assert "exec ./dev test" in ci_run and "CI=true" in ci_run
    assert any(step.get("uses", "").startswith("actions/checkout@") for step in job["steps"])
