"""Reading a node's pinned maps without compiling anything.

The loader needs bcc and two seconds of LLVM; operators and tests that only
want the counters open the pins with libbpf's bpf_obj_get and look values up
directly. Layouts are those of bpf/maps.h.
"""

from __future__ import annotations

import ctypes
import os
import struct
from pathlib import Path

from .. import defs
from .tables import Counter, sum_counters
from .testrun import _lib

_COUNTER = struct.Struct("=QQ")     # struct counter


def _setup():
    lib = _lib()
    if not getattr(lib, "_pmip6_pins", False):
        lib.bpf_obj_get.argtypes = [ctypes.c_char_p]
        lib.bpf_obj_get.restype = ctypes.c_int
        lib.bpf_map_lookup_elem.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        lib.bpf_map_lookup_elem.restype = ctypes.c_int
        lib.libbpf_num_possible_cpus.restype = ctypes.c_int
        lib._pmip6_pins = True
    return lib


def _open(path: Path) -> int:
    fd = _setup().bpf_obj_get(str(path).encode())
    if fd < 0:
        err = ctypes.get_errno() or -fd
        raise FileNotFoundError(err, f"cannot open pinned map {path}: {os.strerror(err)}")
    return fd


def read_percpu(path: Path, key: int, value_size: int) -> list[bytes]:
    """The per-CPU values of one u32 key of a pinned per-CPU array."""
    lib = _setup()
    ncpu = lib.libbpf_num_possible_cpus()
    stride = (value_size + 7) // 8 * 8
    fd = _open(path)
    try:
        k = ctypes.c_uint32(key)
        buf = ctypes.create_string_buffer(stride * ncpu)
        if lib.bpf_map_lookup_elem(fd, ctypes.byref(k), buf) != 0:
            raise OSError(ctypes.get_errno(), f"lookup of key {key} in {path} failed")
        return [buf.raw[i * stride: i * stride + value_size] for i in range(ncpu)]
    finally:
        os.close(fd)


def read_counters(pin_dir: Path) -> list[Counter]:
    """The node's packet/byte counters, summed over CPUs, from its pins."""
    reasons = defs.reasons()
    programs = defs.programs()
    lib = _setup()
    ncpu = lib.libbpf_num_possible_cpus()
    fd = _open(pin_dir / "stats")
    try:
        keys, rows = [], []
        buf = ctypes.create_string_buffer(_COUNTER.size * ncpu)
        for prog_id in sorted(programs):
            for reason in reasons:
                k = ctypes.c_uint32(defs.stats_key(prog_id, reason.index))
                if lib.bpf_map_lookup_elem(fd, ctypes.byref(k), buf) != 0:
                    raise OSError(ctypes.get_errno(), f"cannot read {pin_dir / 'stats'}")
                rows.append([_COUNTER.unpack_from(buf.raw, i * _COUNTER.size) for i in range(ncpu)])
                keys.append((programs[prog_id], reason))
    finally:
        os.close(fd)
    return [
        Counter(program, reason.verdict, reason.name, packets, nbytes)
        for (program, reason), (packets, nbytes) in zip(keys, sum_counters(rows))
    ]
