"""The loader's errors: one clear line (plus the verifier's log tail), never
a bcc traceback."""

import os
import shutil
from collections import namedtuple
from pathlib import Path

import pytest

from pmip6ctl.dataplane import Dataplane, DataplaneError, DataplaneSettings
from pmip6ctl.dataplane import loader

PIN_ROOT = Path("/sys/fs/bpf/pmip6-errtest")


@pytest.fixture
def settings():
    yield DataplaneSettings(node="err", role="lma", pin_root=PIN_ROOT)
    shutil.rmtree(PIN_ROOT, ignore_errors=True)


def test_missing_bpffs_is_named(monkeypatch, settings):
    monkeypatch.setattr(loader, "bpffs_mounted", lambda path=None: False)
    with pytest.raises(DataplaneError, match=r"bpffs is not mounted at /sys/fs/bpf: run `mount -t bpf"):
        loader.check_prerequisites(settings)


def test_missing_kernel_headers_are_named(monkeypatch, settings):
    monkeypatch.setattr(loader, "bpffs_mounted", lambda path=None: True)
    monkeypatch.delenv("BCC_KERNEL_SOURCE", raising=False)
    fake = namedtuple("uname", "sysname nodename release version machine")("Linux", "x", "0.0.0-none", "", "x86_64")
    monkeypatch.setattr(os, "uname", lambda: fake)
    with pytest.raises(DataplaneError, match=r"no kernel headers for 0\.0\.0-none: bcc needs /lib/modules/0\.0\.0-none/build"):
        loader.check_prerequisites(settings)


def test_bcc_kernel_source_replaces_lib_modules_and_must_hold_headers(monkeypatch, settings, tmp_path):
    monkeypatch.setattr(loader, "bpffs_mounted", lambda path=None: True)
    fake = namedtuple("uname", "sysname nodename release version machine")("Linux", "x", "0.0.0-none", "", "x86_64")
    monkeypatch.setattr(os, "uname", lambda: fake)
    monkeypatch.setenv("BCC_KERNEL_SOURCE", str(tmp_path))
    with pytest.raises(DataplaneError, match=rf"BCC_KERNEL_SOURCE={tmp_path} holds no kernel headers"):
        loader.check_prerequisites(settings)
    (tmp_path / "include/linux").mkdir(parents=True)
    loader.check_prerequisites(settings)                # /lib/modules/0.0.0-none is not needed then


def test_unknown_role_is_named(settings):
    settings.role = "hub"
    with pytest.raises(DataplaneError, match="unknown role 'hub'"):
        loader.check_prerequisites(settings)


@pytest.mark.root
def test_compiler_errors_come_with_the_compiler_message(settings):
    settings.extra_cflags = ["-include", "/nonexistent/pmip6.h"]
    with pytest.raises(DataplaneError) as failure:
        Dataplane(settings).load()
    assert "bcc could not compile the lma programs" in str(failure.value)
    assert "/nonexistent/pmip6.h" in str(failure.value)


@pytest.mark.root
def test_verifier_rejection_shows_the_verifier_log_tail(settings, monkeypatch):
    unchecked = "#include <uapi/linux/bpf.h>\nint xdp_lma(struct xdp_md *ctx) { return *(char *)(long)ctx->data; }\n"
    monkeypatch.setattr(Dataplane, "source", lambda self: unchecked)
    with pytest.raises(DataplaneError) as failure:
        Dataplane(settings).load()
    message = str(failure.value)
    assert message.startswith("the verifier rejected xdp_lma")
    assert "invalid access to packet" in message


@pytest.mark.root
def test_attaching_to_a_missing_interface_is_named(settings):
    dp = Dataplane(settings)
    dp.load()
    try:
        with pytest.raises(DataplaneError, match="interface 'pmip6-nope0' does not exist in this network namespace"):
            dp.attach("xdp_lma", "pmip6-nope0")
    finally:
        dp.close()
