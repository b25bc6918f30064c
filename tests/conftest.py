"""Shared test policy: tests marked `root` skip with a reason on a machine
without root, but fail in CI (CI=true), where a skip would hide that nothing
ran."""

import os

import pytest


def pytest_runtest_setup(item):
    if item.get_closest_marker("root") and os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("this test needs root, and CI must run as root")
        pytest.skip("needs root (CAP_BPF, CAP_NET_ADMIN)")
