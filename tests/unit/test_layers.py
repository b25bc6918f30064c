"""The layers of docs/architecture.md, held by the imports: each package
imports only from the layers below it."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "pmip6ctl"

# What each part may import of pmip6ctl (besides itself and the neutral modules).
NEUTRAL = {"wire", "defs", "actions", "transport", "security", "__init__"}
ALLOWED = {
    "wire": {"defs"},
    "protocol": NEUTRAL,
    "io": NEUTRAL,
    "dataplane": NEUTRAL,
}


def pmip6ctl_imports(path: Path) -> set[str]:
    """The top-level pmip6ctl modules and packages a file imports."""
    package = list(path.relative_to(PACKAGE).parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                target = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "pmip6ctl":
                target = node.module.split(".")[1:]
            else:
                continue
            found.update([target[0]] if target else [alias.name for alias in node.names])
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[1] for alias in node.names if alias.name.startswith("pmip6ctl."))
    return found


def test_the_import_reader_sees_what_a_daemon_imports():
    assert {"protocol", "io", "dataplane", "transport"} <= pmip6ctl_imports(PACKAGE / "daemon" / "mag.py")
    assert pmip6ctl_imports(PACKAGE / "protocol" / "ro" / "initiator.py") >= {"security", "transport", "protocol"}


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_a_layer_imports_only_what_lies_below_it(layer):
    wrong = {}
    for path in (PACKAGE / layer).rglob("*.py"):
        extra = pmip6ctl_imports(path) - ALLOWED[layer] - {layer}
        if extra:
            wrong[str(path.relative_to(PACKAGE))] = sorted(extra)
    assert wrong == {}


def test_the_neutral_modules_import_no_layer_above_them():
    for name in ("defs", "actions", "transport", "security"):
        assert pmip6ctl_imports(PACKAGE / f"{name}.py") <= NEUTRAL, name
