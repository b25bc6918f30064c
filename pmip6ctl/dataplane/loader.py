"""Compile, load and attach the XDP programs of one node through bcc.

Maps are pinned under <pin_root>/<node>/ (bpf/maps.h): a restarted daemon
compiles the same programs against the same pinned maps and replaces the
attached programs atomically (one netlink call per interface), so the data
plane never stops forwarding. bcc never detaches on exit, so the data plane
also keeps forwarding while no daemon runs at all.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import ipaddress
import logging
import os
import re
import shutil
import socket
import struct
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .. import defs
from ..transport import mac_text
from . import testrun
from .tables import Tables, unpack_address

log = logging.getLogger("pmip6ctl.dataplane")

XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2


class DataplaneError(RuntimeError):
    """A data-plane failure explained in one line (plus the verifier log)."""


@dataclass
class DataplaneSettings:
    node: str
    role: str                                  # mag, lma or cn
    pin_root: Path = Path("/sys/fs/bpf/pmip6")
    generic_mode: bool = False                 # XDP in SKB mode: slow, for NICs without native XDP
    max_mn_entries: int = 65536
    max_ro_entries: int = 65536
    max_tunnels: int = 4096
    max_peers: int = 4096
    max_flows: int = 65536
    ro_trigger_packets: int = 10
    event_interval_ms: int = 1000
    hop_limit: int = 64
    punt_rate: int = 500                       # per CPU and second (0: no limit); bpf/events.h
    punt_burst: int = 64
    icmp_rate: int = 1000                      # ICMP errors per CPU and second (0: no limit); bpf/icmp.h
    icmp_burst: int = 50
    handover: bool = False                  # MAG: frames of unknown sources to the handover buffer
    extra_cflags: list[str] = field(default_factory=list)

    @property
    def pin_dir(self) -> Path:
        return self.pin_root / self.node


@dataclass(frozen=True)
class FlowEvent:
    """An RO trigger (kind 'flow_trigger') or tunnelled traffic for a vanished
    RO binding (kind 'no_ro_binding', with peer = the tunnel's outer source)."""
    kind: str
    program: str
    ifindex: int
    src: ipaddress.IPv4Address | ipaddress.IPv6Address
    dst: ipaddress.IPv4Address | ipaddress.IPv6Address
    packets: int
    peer: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    mac: str | None = None                     # kind 'unknown_source': the frame's source MAC


@dataclass(frozen=True)
class PuntEvent:
    """A whole Ethernet frame from XDP: a mobility message it intercepted
    (kind 'punt'), or an unknown source's frame for the MAG's handover
    buffer (kind 'held', bpf/handover.h)."""
    program: str
    ifindex: int
    frame: bytes
    kind: str = "punt"


_EVENT_HEADER = struct.Struct("=IIII")            # struct event_header, bpf/events.h
_FLOW_BODY = struct.Struct("=16s16s16sQ")         # the rest of struct flow_event


def check_event_layouts() -> None:
    """The record layouts here against the sizes bpf/constants.h states
    (events.h asserts the same sizes of its structs at compile time)."""
    sizes = defs.constants()
    mine = {"SIZEOF_EVENT_HEADER": _EVENT_HEADER.size, "SIZEOF_FLOW_EVENT": _EVENT_HEADER.size + _FLOW_BODY.size}
    wrong = {name: (size, sizes[name]) for name, size in mine.items() if size != sizes[name]}
    if wrong:
        raise DataplaneError("event record layouts out of step with bpf/constants.h: " + ", ".join(
            f"{name} is {size} here, {theirs} there" for name, (size, theirs) in wrong.items()))


check_event_layouts()


def decode_event(raw: bytes) -> FlowEvent | PuntEvent:
    """Turns a perf-buffer record from bpf/events.h into an event object."""
    if len(raw) < _EVENT_HEADER.size:
        raise ValueError(f"event of {len(raw)} octets is shorter than its header")
    kind_id, prog_id, ifindex, frame_len = _EVENT_HEADER.unpack_from(raw)
    kind = defs.event_kinds().get(kind_id, f"unknown_{kind_id}")
    program = defs.programs().get(prog_id, f"prog_{prog_id}")
    body = raw[_EVENT_HEADER.size:]
    if kind in ("punt", "held"):
        return PuntEvent(program, ifindex, bytes(body[:frame_len]), kind)
    src, dst, peer, packets = _FLOW_BODY.unpack_from(body)
    if kind == "unknown_source":
        return FlowEvent(kind, program, ifindex, unpack_address(src), unpack_address(dst), packets,
                         mac=mac_text(peer))
    return FlowEvent(kind, program, ifindex, unpack_address(src), unpack_address(dst), packets,
                     unpack_address(peer) if any(peer) else None)


def bpffs_mounted(path: Path = Path("/sys/fs/bpf")) -> bool:
    with open("/proc/self/mounts") as mounts:
        return any(
            line.split()[1] == str(path) and line.split()[2] == "bpf"
            for line in mounts
        )


def check_prerequisites(settings: DataplaneSettings) -> None:
    """Fails early, in one line each, on what bcc would report obscurely."""
    if not bpffs_mounted(Path("/sys/fs/bpf")):
        raise DataplaneError("bpffs is not mounted at /sys/fs/bpf: run `mount -t bpf bpf /sys/fs/bpf` (./dev setup does)")
    release = os.uname().release
    build = Path("/lib/modules") / release / "build"
    # bcc takes $BCC_KERNEL_SOURCE instead when it is set (the container image's generic headers)
    if source := os.environ.get("BCC_KERNEL_SOURCE"):
        if not (Path(source) / "include/linux").is_dir():
            raise DataplaneError(f"BCC_KERNEL_SOURCE={source} holds no kernel headers (no include/linux)")
    elif not (build / "include").exists() and not Path("/sys/kernel/kheaders.tar.xz").exists():
        raise DataplaneError(
            f"no kernel headers for {release}: bcc needs {build} "
            "(install linux-headers-amd64 and link it there; ./dev setup does)"
        )
    if settings.role not in defs.ROLE_PROGRAMS:
        raise DataplaneError(f"unknown role {settings.role!r}: expected one of {', '.join(defs.ROLE_PROGRAMS)}")


@contextlib.contextmanager
def _captured_stderr():
    """libbcc prints compiler errors and the verifier log on fd 2 from C;
    capture them to put the tail into our own error."""
    captured = {"text": ""}
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            captured["text"] = tmp.read().decode(errors="replace")


_LOCAL_INCLUDE = re.compile(r'^\s*#include\s+"([^"]+)"\s*$')


def _amalgamate(directory: Path, name: str, seen: set[str]) -> str:
    """Inlines name's local #include "..." files, each once."""
    if name in seen:
        return ""
    seen.add(name)
    path = directory / name
    out = [f'#line 1 "{path}"\n']
    for number, line in enumerate(path.read_text().splitlines(keepends=True), start=1):
        match = _LOCAL_INCLUDE.match(line)
        if match:
            out.append(_amalgamate(directory, match.group(1), seen))
            out.append(f'#line {number + 1} "{path}"\n')
        else:
            out.append(line)
    return "".join(out)


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


class Dataplane:
    """The XDP programs and pinned maps of one node."""

    def __init__(self, settings: DataplaneSettings):
        self.settings = settings
        self._bpf = None
        self._functions: dict[str, object] = {}
        self.tables: Tables | None = None
        self.compile_seconds = 0.0
        self.source_digest = ""

    # --- build -------------------------------------------------------------
    def source(self) -> str:
        """The role's program files with our headers spliced in: bcc only
        rewrites map calls (stats.lookup() ...) and makes programs in its main
        file. #line directives keep compiler messages pointing at bpf/."""
        files = dict.fromkeys(src for src, _ in defs.ROLE_PROGRAMS[self.settings.role])
        seen: set[str] = set()
        return "".join(_amalgamate(defs.bpf_dir(), name, seen) for name in files)

    def cflags(self) -> list[str]:
        s = self.settings
        return [
            f"-I{defs.bpf_dir()}",
            f'-DPIN_DIR="{s.pin_dir}"',
            f"-DMAX_MN_ENTRIES={s.max_mn_entries}",
            f"-DMAX_RO_ENTRIES={s.max_ro_entries}",
            f"-DMAX_TUNNELS={s.max_tunnels}",
            f"-DMAX_PEERS={s.max_peers}",
            f"-DMAX_FLOWS={s.max_flows}",
            "-Wno-unused-function",
            *s.extra_cflags,
        ]

    def _digest(self) -> str:
        h = hashlib.sha256()
        for path in sorted(defs.bpf_dir().glob("*.[ch]")):
            h.update(path.name.encode())
            h.update(path.read_bytes())
        h.update(" ".join(self.cflags()).encode())
        return h.hexdigest()[:16]

    def load(self) -> Tables:
        """Compiles and loads the role's programs; creates or reopens the
        pinned maps. Nothing is attached yet."""
        from bcc import BPF  # imported late: unit tests run without bcc

        s = self.settings
        check_prerequisites(s)
        s.pin_dir.mkdir(parents=True, exist_ok=True)
        create_devmap_hash(s.pin_dir / "tx_ports", defs.constants()["MAX_PORTS"])
        (s.pin_dir / "config").unlink(missing_ok=True)    # derived (maps.h), and its layout may change
        started = time.monotonic()
        failure = None
        with _captured_stderr() as err:
            try:
                self._bpf = BPF(text=self.source(), cflags=self.cflags())
            except Exception as exc:
                failure = exc
        if failure:
            raise DataplaneError(f"bcc could not compile the {s.role} programs ({failure}):\n{_tail(err['text'])}")
        self.compile_seconds = time.monotonic() - started
        for _, function in defs.ROLE_PROGRAMS[s.role]:
            with _captured_stderr() as err:
                try:
                    self._functions[function] = self._bpf.load_func(function, BPF.XDP)
                except Exception as exc:
                    failure = exc
            if failure:
                raise DataplaneError(f"the verifier rejected {function} ({failure}); log tail:\n{_tail(err['text'])}")
        self.source_digest = self._digest()
        self.tables = Tables(self._bpf)
        self.tables.set_config(
            ro_trigger_packets=s.ro_trigger_packets,
            event_interval_ms=s.event_interval_ms,
            hop_limit=s.hop_limit,
            punt_rate=s.punt_rate,
            punt_burst=s.punt_burst,
            icmp_rate=s.icmp_rate,
            icmp_burst=s.icmp_burst,
            handover=s.handover,
        )
        log.info("loaded %s programs for %s in %.1f s (maps in %s)",
                 s.role, s.node, self.compile_seconds, s.pin_dir)
        return self.tables

    def program_fd(self, function: str) -> int:
        return self._functions[function].fd

    # --- attach ------------------------------------------------------------
    def attach(self, function: str, ifname: str) -> None:
        """Attaches (or atomically replaces) the program on ifname, in native
        mode unless the settings ask for generic mode."""
        from bcc import BPF

        try:
            socket.if_nametoindex(ifname)
        except OSError:
            raise DataplaneError(f"interface {ifname!r} does not exist in this network namespace") from None
        if self.settings.generic_mode:
            log.warning("ATTACHING %s TO %s IN GENERIC (SKB) MODE: slow, and redirects into "
                        "veths need the peer to run NAPI; use native mode in production", function, ifname)
            flags = XDP_FLAGS_SKB_MODE
        else:
            flags = XDP_FLAGS_DRV_MODE
        failure = None
        with _captured_stderr() as err:
            try:
                BPF.attach_xdp(ifname, self._functions[function], flags)
            except Exception as exc:
                failure = exc
        if failure:
            raise DataplaneError(f"cannot attach {function} to {ifname} ({failure}): {_tail(err['text'], 3)}")
        log.info("attached %s to %s (%s mode)", function, ifname,
                 "generic" if self.settings.generic_mode else "native")

    @staticmethod
    def detach(ifname: str, generic_mode: bool = False) -> None:
        from bcc import BPF

        with contextlib.suppress(Exception):
            BPF.remove_xdp(ifname, XDP_FLAGS_SKB_MODE if generic_mode else XDP_FLAGS_DRV_MODE)

    # --- events --------------------------------------------------------------
    def open_events(self, on_event: Callable[[FlowEvent | PuntEvent], None], page_count: int = 64,
                    on_lost: Callable[[int], None] | None = None) -> None:
        """on_event(event) for each event, on the thread that polls; on_lost(n)
        when the kernel could not write n of them (the buffer was full)."""
        def callback(cpu, data, size):
            raw = ctypes.string_at(data, size)
            try:
                event = decode_event(raw)
            except (ValueError, struct.error) as exc:
                log.warning("undecodable data-plane event (%d octets): %s", size, exc)
                return
            on_event(event)

        self._bpf["events"].open_perf_buffer(callback, page_cnt=page_count,
                                             lost_cb=(lambda lost: on_lost(lost)) if on_lost else None)

    def poll_events(self, timeout_ms: int = 100) -> None:
        self._bpf.perf_buffer_poll(timeout=timeout_ms)

    def close(self) -> None:
        """Releases our handles; programs stay attached and maps stay pinned."""
        if self._bpf is not None:
            self._bpf.cleanup()
            self._bpf = None


BPF_MAP_TYPE_DEVMAP_HASH = 25


def create_devmap_hash(path: Path, max_entries: int) -> None:
    """tx_ports, made anew at every load (bpf/maps.h: bcc 0.26 cannot make a
    devmap_hash, but reopens a pinned one). Programs still attached keep the
    map they hold until they are replaced."""
    lib = _libbpf()
    path.unlink(missing_ok=True)
    fd = lib.bpf_map_create(BPF_MAP_TYPE_DEVMAP_HASH, b"tx_ports", 4, 4, max_entries, None)
    if fd < 0:
        err = ctypes.get_errno() or -fd
        raise DataplaneError(f"cannot create the devmap {path}: {os.strerror(err)}")
    try:
        if lib.bpf_obj_pin(fd, str(path).encode()) != 0:
            err = ctypes.get_errno()
            raise DataplaneError(f"cannot pin the devmap at {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


def _libbpf():
    lib = testrun._lib()
    lib.bpf_map_create.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32, ctypes.c_uint32,
                                   ctypes.c_uint32, ctypes.c_void_p]
    lib.bpf_map_create.restype = ctypes.c_int
    lib.bpf_obj_pin.argtypes = [ctypes.c_int, ctypes.c_char_p]
    lib.bpf_obj_pin.restype = ctypes.c_int
    return lib


def remove_pins(node: str, pin_root: Path = Path("/sys/fs/bpf/pmip6")) -> None:
    """Forgets a node's pinned maps (after its programs are detached)."""
    shutil.rmtree(pin_root / node, ignore_errors=True)
