"""Packaging: the BPF sources are package data (pmip6ctl.bpf, mapped onto the
top-level bpf/) read through importlib.resources, in a wheel install, a
`pip install --user` and an editable install.

Each test builds from a copy of the tree (pip builds in place and would leave
build/ and *.egg-info behind), offline: --no-build-isolation uses the
interpreter's own setuptools, --no-deps leaves click, pyroute2 and
prometheus-client to the interpreter's site-packages.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"

# What a program run from outside the tree prints: where the sources are, that
# importlib.resources sees them, and that the loader's source and -I resolve.
PROBE = """
import pathlib, sys
from importlib import resources
from pmip6ctl import defs
from pmip6ctl.dataplane.loader import Dataplane, DataplaneSettings
here = pathlib.Path(defs.bpf_dir())
assert (here / "constants.h").is_file(), here
assert defs.constants()["MAX_PORTS"] > 0 and defs.reasons()
assert (resources.files("pmip6ctl.bpf") / "lma.c").is_file()
dataplane = Dataplane(DataplaneSettings(node="mag1", role="mag"))
assert "xdp_mag_access" in dataplane.source() or "mag_access" in dataplane.source()
assert f"-I{here}" in dataplane.cflags() and dataplane._digest()
print(here)
print(pathlib.Path(__import__("pmip6ctl").__file__).parent)
"""


def _copy_tree(destination: Path) -> Path:
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, destination / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "pmip6ctl", destination / "pmip6ctl", ignore=ignore)
    shutil.copytree(ROOT / "bpf", destination / "bpf", ignore=ignore)
    return destination


def _run(*argv, cwd: Path, env: dict | None = None) -> str:
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PMIP6_BPF_DIR")}
    environment.update(env or {})
    result = subprocess.run([str(a) for a in argv], cwd=cwd, env=environment,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{argv}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    source = _copy_tree(tmp_path_factory.mktemp("src"))
    out = tmp_path_factory.mktemp("wheel")
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", out, source, cwd=out)
    (built,) = out.glob("pmip6ctl-*.whl")
    return built


def test_the_wheel_carries_every_bpf_source_as_package_data_and_no_data_files(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    sources = sorted(p.name for p in (ROOT / "bpf").iterdir() if p.suffix in (".c", ".h"))
    assert sorted(n.split("/")[-1] for n in names if n.startswith("pmip6ctl/bpf/")) == sorted(sources + ["__init__.py"])
    assert not [n for n in names if ".data/" in n], "deprecated data-files are back"


def test_every_package_in_the_tree_is_in_the_explicit_list():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "pmip6ctl").rglob("__init__.py")}
    assert found | {"pmip6ctl.bpf"} == listed


def test_a_wheel_install_in_a_fresh_venv_finds_the_bpf_sources(wheel, tmp_path):
    venv = tmp_path / "venv"
    _run(SYSTEM_PYTHON, "-m", "venv", "--system-site-packages", "--without-pip", venv, cwd=tmp_path)
    # installed with this interpreter's pip into the venv's site-packages
    site = next((venv / "lib").glob("python3*/site-packages"))
    _run(sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", site, wheel, cwd=tmp_path)
    bpf, package = _run(venv / "bin" / "python", "-c", PROBE, cwd=tmp_path).split()
    assert Path(bpf) == site / "pmip6ctl" / "bpf"
    assert Path(package) == site / "pmip6ctl"


def test_a_user_install_finds_the_bpf_sources_and_runs_its_console_script(wheel, tmp_path):
    base = tmp_path / "userbase"
    env = {"PYTHONUSERBASE": str(base), "HOME": str(tmp_path)}
    # Debian marks its interpreter externally managed (PEP 668): --user needs the override there.
    _run(SYSTEM_PYTHON, "-m", "pip", "install", "-q", "--user", "--no-deps", "--break-system-packages",
         wheel, cwd=tmp_path, env=env)
    bpf, _ = _run(SYSTEM_PYTHON, "-c", PROBE, cwd=tmp_path, env=env).split()
    assert Path(bpf).is_relative_to(base)
    # (click and the rest from the system: --no-deps, and this machine has no index)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p.endswith("site-packages") and "/usr/" not in p)
    assert "mag" in _run(base / "bin" / "pmip6ctl", "--help", cwd=tmp_path, env=env)


def test_an_editable_install_finds_the_sources_of_its_tree(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    _copy_tree(source)
    venv = tmp_path / "venv"
    _run(SYSTEM_PYTHON, "-m", "venv", "--system-site-packages", venv, cwd=tmp_path)
    _run(venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "-e", source, cwd=tmp_path)
    bpf, package = _run(venv / "bin" / "python", "-c", PROBE, cwd=tmp_path).split()
    assert Path(bpf) == source / "bpf"
    assert Path(package) == source / "pmip6ctl"


def test_pmip6_bpf_dir_overrides_and_must_hold_the_sources(tmp_path, monkeypatch):
    from pmip6ctl import defs
    monkeypatch.setenv("PMIP6_BPF_DIR", str(tmp_path))
    defs.bpf_dir.cache_clear()
    try:
        with pytest.raises(FileNotFoundError, match="no constants.h"):
            defs.bpf_dir()
        (tmp_path / "constants.h").write_text("#define X 1\n")
        assert defs.bpf_dir() == tmp_path
    finally:
        monkeypatch.delenv("PMIP6_BPF_DIR")
        defs.bpf_dir.cache_clear()
