"""Imports point down only: a module may import only from its own layer or lower ones."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "blpdemand"
LAYER = {"errors": 0, "_types": 0, "_checks": 0, "data": 1, "instruments": 1, "integration": 1,
         "model": 2, "solve": 3, "results": 4, "cli": 5, "__main__": 5, "__init__": 5,
         "cli_bootstrap": 5,
         "cli_spec": 5, "cli_report": 5, "cli_run": 5, "cli_post": 5, "demo": 5}


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
