"""The layering of harness/ is checked, not hoped for: the import contracts hold and no import cycle exists.

The contracts live in pyproject.toml (``[tool.importlinter]``) and ``make lint`` runs them;
this test runs them too, so ``make test`` alone also notices an arrow that runs back up.
import-linter's sibling-cycle contract cannot see a module that imports its own package's
``__init__`` while that imports it back, so the cycle check here walks every module.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

grimp = pytest.importorskip("grimp")


def test_the_import_contracts_hold() -> None:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    done = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of size > 1 (the import cycles)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def harness_imports() -> dict[str, set[str]]:
    graph = grimp.build_graph("harness", cache_dir=None)
    modules = {m for m in graph.modules if m.startswith("harness")}
    return {m: {t for t in graph.find_modules_directly_imported_by(m) if t in modules} for m in modules}


def test_no_module_of_harness_is_in_an_import_cycle() -> None:
    assert strongly_connected(harness_imports()) == []


def test_the_cycle_check_finds_a_cycle_through_a_package_init() -> None:
    graph = harness_imports()
    graph["harness.pytest_plugin.recorder"] = {*graph["harness.pytest_plugin.recorder"], "harness.pytest_plugin"}
    cycles = strongly_connected(graph)
    assert any({"harness.pytest_plugin", "harness.pytest_plugin.recorder"} <= set(c) for c in cycles), cycles
