"""Imports point down only: a module may import only from its own layer or lower ones."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "blpdemand"
LAYER = {"errors": 0, "_types": 0, "_checks": 0, "_compiled": 0, "data": 1, "instruments": 1, "integration": 1,
         "model": 2, "solve": 3, "results": 4, "cli": 5, "__main__": 5, "__init__": 5}


def _layer(parts: list[str]) -> int:
    return LAYER[parts[0]]


def _imports(path: Path) -> list[list[str]]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("blpdemand."):
            found.append(node.module.split(".")[1:])
        elif isinstance(node, ast.Import):
            found += [a.name.split(".")[1:] for a in node.names if a.name.startswith("blpdemand.")]
    return found


MODULES = sorted(p for p in SRC.rglob("*.py"))
PYPROJECT = tomllib.loads((SRC.parents[1] / "pyproject.toml").read_text())
LINE_LENGTH = PYPROJECT["tool"]["ruff"]["line-length"]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_point_down(path: Path) -> None:
    own = path.relative_to(SRC).with_suffix("").parts
    own_layer = _layer(list(own))
    for target in _imports(path):
        assert target, f"{path}: bare 'import blpdemand' inside the package"
        assert _layer(target) <= own_layer, (
            f"{'/'.join(own)} (layer {own_layer}) imports blpdemand.{'.'.join(target)} "
            f"(layer {_layer(target)})")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_modules_stay_small(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= 500, f"{path.name} has {lines} lines; split it by concept"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_lines_fit_the_ruff_line_length(path: Path) -> None:
    """Every line is at most pyproject's ``[tool.ruff] line-length`` characters (E501)."""
    long = [(n, len(line)) for n, line in enumerate(path.read_text().splitlines(), start=1)
            if len(line) > LINE_LENGTH]
    assert not long, (f"{path.relative_to(SRC)}: lines over the ruff line-length {LINE_LENGTH}: "
                      + ", ".join(f"line {n} has {k} characters" for n, k in long))


def _module(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(["blpdemand", *(parts[:-1] if parts[-1] == "__init__" else parts)])


def _runtime_imports(path: Path, modules: set[str]) -> set[str]:
    """Modules of the package that ``path`` imports when it runs: module-level and
    function-level imports alike (``if TYPE_CHECKING:`` blocks are annotations, not imports)."""
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
                   for n in ast.walk(node)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("blpdemand"):
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("blpdemand")]
        for name in names:
            if name in modules:
                found.add(name)
                break
    found.discard(_module(path))
    return found


def test_no_import_cycles() -> None:
    # an import cycle, even one hidden in a function-level import, means two modules that can
    # only be understood together: each concept's module must sit above what it uses
    modules = {_module(p): p for p in MODULES}
    graph = {m: _runtime_imports(p, set(modules)) - {"blpdemand"} for m, p in modules.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_package_root_is_not_imported_from_inside() -> None:
    # blpdemand/__init__.py is the public door: modules inside import what they use directly
    for path in MODULES:
        if path.name in ("__init__.py", "__main__.py"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "blpdemand":
                names = {a.name for a in node.names}
                assert names <= {"__version__"}, f"{path}: from blpdemand import {names}"
            if isinstance(node, ast.Import):
                assert all(a.name != "blpdemand" for a in node.names), f"{path}: import blpdemand"
