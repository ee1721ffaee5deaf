"""The package layout is the architecture: imports only go downward, modules stay readable,
and every subpackage says what lives in it and ships in the wheel."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "poller"

# Lower layers first; a module may import its own subpackage and any layer below its own.
LAYERS: dict[str, int] = {
    "errors": 0,
    "redaction": 0,  # imports nothing of the poller
    "yamlfile": 0,  # imports nothing of the poller
    "batch": 0,  # Position, Batch: plain data; imports nothing of the poller
    "config": 1,
    "avro": 2,
    "source": 3,
    "kafka": 4,
    "ops": 5,
    "pipeline": 6,
    "verify": 7,
    "fleet": 7,
    "demo": 8,
    "cli": 9,
    "__main__": 10,
}
# No exception: config reads the entities' fields through its own catalog (plain JSON), and
# poller.avro names them from there.
ALLOWED_UPWARD: set[tuple[str, str]] = set()
MAX_LINES = 500
LONGER: dict[str, int] = {}  # no module is allowed more


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imports_of(path: Path, name: str) -> set[str]:
    """Every poller module imported anywhere in the file (also inside functions)."""
    found: set[str] = set()
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("poller")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                base = ".".join(pkg[: len(pkg) - node.level + 1] + ([base] if base else []))
            if base.startswith("poller"):
                found.add(base)
                found |= {f"{base}.{a.name}" for a in node.names}
    known = modules()
    return {m for m in found if m in known}


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "poller"


def test_every_subpackage_has_a_layer() -> None:
    unknown = sorted({layer(m) for m in modules()} - set(LAYERS) - {"poller"})
    assert not unknown, f"give these subpackages a layer in LAYERS: {unknown}"


def test_imports_only_go_downward() -> None:
    wrong = []
    for name, path in modules().items():
        own = layer(name)
        if own == "poller":
            continue
        for dep in imports_of(path, name):
            other = layer(dep)
            if other in ("poller", own) or (name, dep) in ALLOWED_UPWARD:
                continue
            if LAYERS[other] >= LAYERS[own]:
                wrong.append(f"{name} imports {dep} ({own} may not import {other})")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles_between_modules() -> None:
    graph = {name: imports_of(path, name) - {name} for name, path in modules().items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for d in sorted(graph.get(n, ())):
            if d.startswith(f"{n}.") or n.startswith(f"{d}."):
                continue  # a package and its own modules
            if state.get(d) == 1:
                pytest.fail("import cycle: " + " -> ".join([*stack[stack.index(d) :], d]))
            if d not in state:
                visit(d)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)


def test_modules_are_small_enough_to_read_in_one_sitting() -> None:
    big = {
        str(p.relative_to(ROOT)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines()))
        > LONGER.get(str(p.relative_to(ROOT)), MAX_LINES)
    }
    assert not big, f"split these by concern (over {MAX_LINES} lines): {big}"


def test_each_subpackage_says_what_lives_there_and_what_it_may_import() -> None:
    missing = []
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        if "import" not in doc.lower() or len(doc.splitlines()) < 2:
            missing.append(str(init.relative_to(ROOT)))
    assert not missing, f"docstring with what lives here and what it may import: {missing}"


def test_the_wheel_lists_every_subpackage() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(pyproject["tool"]["setuptools"]["packages"])
    present = {".".join(p.parent.relative_to(ROOT).parts) for p in PACKAGE.rglob("__init__.py")}
    assert present <= listed, f"add to [tool.setuptools] packages: {sorted(present - listed)}"
    assert "poller.schemas" in listed


def test_the_ground_floor_imports_nothing_heavy() -> None:
    """Position and Batch are plain data every layer uses: importing them loads no SQLAlchemy,
    no Kafka client, no pydantic, nothing else of the poller."""
    code = (
        "import sys, poller.batch; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('poller', 'sqlalchemy', 'confluent_kafka', 'pydantic', 'fastavro')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "['poller', 'poller.batch']", out.stdout
