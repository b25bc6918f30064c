"""BPF_PROG_TEST_RUN through libbpf's bpf_prog_test_run_opts (ctypes).

Used by the packet-fixture tests and the benchmark. Note (DESIGN §4): the
kernel does not restore the packet between repetitions, so a repeated run
sees its own output unless the program leaves the packet unchanged.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from dataclasses import dataclass

BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1
XDP_ACTIONS = {0: "aborted", 1: "drop", 2: "pass", 3: "tx", 4: "redirect"}


class _TestRunOpts(ctypes.Structure):
    # struct bpf_test_run_opts, libbpf >= 1.0
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("data_in", ctypes.c_void_p),
        ("data_out", ctypes.c_void_p),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_void_p),
        ("ctx_out", ctypes.c_void_p),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("repeat", ctypes.c_int),
        ("duration", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
    ]


class _XdpMd(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_uint32),
        ("data_end", ctypes.c_uint32),
        ("data_meta", ctypes.c_uint32),
        ("ingress_ifindex", ctypes.c_uint32),
        ("rx_queue_index", ctypes.c_uint32),
        ("egress_ifindex", ctypes.c_uint32),
    ]


_libbpf = None


def _lib():
    global _libbpf
    if _libbpf is None:
        name = ctypes.util.find_library("bpf") or "libbpf.so.1"
        _libbpf = ctypes.CDLL(name, use_errno=True)
        _libbpf.bpf_prog_test_run_opts.argtypes = [ctypes.c_int, ctypes.POINTER(_TestRunOpts)]
        _libbpf.bpf_prog_test_run_opts.restype = ctypes.c_int
    return _libbpf


@dataclass(frozen=True)
class RunResult:
    action: str          # aborted, drop, pass, tx or redirect
    packet: bytes        # the frame as the program left it
    duration_ns: int     # average per repetition


def run_xdp(prog_fd: int, frame: bytes, *, ingress_ifindex: int = 0, repeat: int = 1,
            flags: int = 0, batch_size: int = 0) -> RunResult:
    """Runs an XDP program on one frame (in the caller's network namespace,
    which is where ingress_ifindex and the FIB lookups resolve)."""
    data_in = ctypes.create_string_buffer(frame, len(frame))
    out_size = len(frame) + 256
    data_out = ctypes.create_string_buffer(out_size)
    ctx = _XdpMd(data=0, data_end=len(frame), ingress_ifindex=ingress_ifindex)
    opts = _TestRunOpts(
        sz=ctypes.sizeof(_TestRunOpts),
        data_in=ctypes.cast(data_in, ctypes.c_void_p),
        data_size_in=len(frame),
        repeat=repeat,
        flags=flags,
        batch_size=batch_size,
    )
    if not flags & BPF_F_TEST_XDP_LIVE_FRAMES:
        opts.data_out = ctypes.cast(data_out, ctypes.c_void_p)
        opts.data_size_out = out_size
    if ingress_ifindex:
        opts.ctx_in = ctypes.cast(ctypes.pointer(ctx), ctypes.c_void_p)
        opts.ctx_size_in = ctypes.sizeof(ctx)
    rc = _lib().bpf_prog_test_run_opts(prog_fd, ctypes.byref(opts))
    if rc != 0:
        err = ctypes.get_errno() or -rc
        raise OSError(err, f"BPF_PROG_TEST_RUN failed: {os.strerror(err)}")
    return RunResult(
        XDP_ACTIONS.get(opts.retval, str(opts.retval)),
        data_out.raw[: opts.data_size_out] if opts.data_out else b"",
        opts.duration,
    )
