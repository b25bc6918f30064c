"""`pmip6ctl debuginfo`: one support bundle for a node.

A tar.gz with the versions of what runs (pmip6ctl, Python, kernel, bcc,
clang), the node's config file with anything that looks like key material
removed (key_file paths stay; key files are never read), what its control
socket says (status, bindings, peers, counters, signaling, the XDP maps, RO
pairs), its metrics page, and the last lines of its log: the lab's log file,
or journald's lines for the daemon's pid. What cannot be had is named in
errors.txt instead; the bundle is written anyway."""

from __future__ import annotations

import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

from . import __version__
from .io.control import CommandError, ControlClient

# What the control socket is asked, and the file each answer goes to.
COMMANDS = ("status", "bindings", "peers", "counters", "signaling", "tables", "ro_list")

# A line that assigns a key-like value: its value is replaced. pmip6ctl's configs
# hold key_file paths only, but an operator's file may carry more.
_SECRET = re.compile(r'^(\s*"?(?:key|psk|secret|password|token|\w+_key|\w+_secret)"?\s*=\s*).*$', re.I | re.M)
_HEX_KEY = re.compile(r"\b[0-9a-fA-F]{32,}\b")


def redact_config(text: str) -> str:
    """The config without key material: key-like assignments and long hex strings go."""
    text = _SECRET.sub(lambda m: m.group(1) + '"(removed by debuginfo)"', text)
    return _HEX_KEY.sub("(removed by debuginfo)", text)


def _first_line(argv: list[str]) -> str | None:
    if not shutil.which(argv[0]):
        return None
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr).strip() else None


def versions() -> dict:
    try:
        import bcc                                   # noqa: F401  (only its version)
        bcc_version = getattr(bcc, "__version__", "unknown")
    except ImportError:
        bcc_version = None
    return {"pmip6ctl": __version__, "python": sys.version.split()[0], "executable": sys.executable,
            "kernel": platform.release(), "kernel_version": platform.version(), "machine": platform.machine(),
            "bcc": bcc_version, "clang": _first_line(["clang", "--version"]),
            "iproute2": _first_line(["ip", "-V"])}


def log_tail(status: dict | None, lines: int, log_file: Path | None) -> tuple[str | None, str]:
    """(the last lines of the node's log, where they came from or why there are none)."""
    if log_file is not None:
        try:
            return "\n".join(log_file.read_text(errors="replace").splitlines()[-lines:]) + "\n", str(log_file)
        except OSError as exc:
            return None, f"{log_file}: {exc.strerror or exc}"
    if not status or "pid" not in status:
        return None, "no log: the daemon did not answer, so its pid is unknown"
    if not shutil.which("journalctl"):
        return None, "no log: journalctl is not installed (give the log with --log FILE)"
    try:
        out = subprocess.run(["journalctl", "--no-pager", "-o", "short-iso", "-n", str(lines), f"_PID={status['pid']}"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"no log: journalctl failed ({exc})"
    if out.returncode != 0 or not out.stdout.strip() or out.stdout.startswith("-- No entries --"):
        return None, f"no log: journald has no lines for pid {status['pid']} (give the log with --log FILE)"
    return out.stdout, f"journalctl _PID={status['pid']}"


def collect(socket_path: Path, *, log_lines: int = 500, log_file: Path | None = None,
            config: Path | None = None, timeout: float = 10.0) -> dict[str, bytes]:
    """Every file of the bundle: name -> content."""
    files: dict[str, bytes] = {}
    errors: list[str] = []

    def put_json(name: str, data) -> None:
        files[name] = (json.dumps(data, indent=2, default=str) + "\n").encode()

    put_json("versions.json", versions())
    client = ControlClient(socket_path, timeout=timeout)
    answers: dict[str, object] = {}
    for command in COMMANDS:
        try:
            answers[command] = client.call(command)
        except (ConnectionError, OSError, CommandError, ValueError) as exc:
            errors.append(f"{command}: {exc}")
            continue
        put_json(f"{command}.json", answers[command])
    status = answers.get("status") if isinstance(answers.get("status"), dict) else None
    if config is None and status and status.get("config"):
        config = Path(status["config"])
    if config is not None:
        try:
            files["config.toml"] = redact_config(config.read_text(errors="replace")).encode()
        except OSError as exc:
            errors.append(f"config {config}: {exc.strerror or exc}")
    else:
        errors.append("config: unknown (the daemon did not answer status; give it with --config)")
    if status and status.get("metrics"):
        try:
            with urllib.request.urlopen(f"http://{status['metrics']}/metrics", timeout=5) as reply:
                files["metrics.txt"] = reply.read()
        except (OSError, ValueError) as exc:
            errors.append(f"metrics http://{status['metrics']}/metrics: {exc} (in another network namespace?)")
    tail, source = log_tail(status, log_lines, log_file)
    if tail is None:
        errors.append(source)
    else:
        files["log.txt"] = tail.encode()
    put_json("bundle.json", {"socket": str(socket_path), "made_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                             "log": source if tail is not None else None, "files": sorted(files) + ["errors.txt"]})
    files["errors.txt"] = ("\n".join(errors) + "\n" if errors else "(none)\n").encode()
    return files


def write_bundle(files: dict[str, bytes], target: Path, top: str) -> Path:
    """A tar.gz at target (mode 0600), every file under top/."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
        now = time.time()
        for name, content in files.items():
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.mtime, info.mode = len(content), now, 0o600
            tar.addfile(info, io.BytesIO(content))
    return target
