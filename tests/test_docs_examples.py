"""The backend guide's examples work as the guide says.

``docs/example-eager-variant/`` ("eager with one change") is pip-installed into a fresh
folder, the way a user installs their plugin, and the conformance suite runs on it from a
directory outside the checkout with ``pytest --pyargs netharness_suites``. A copy with a
planted bug in the same extension point fails the fast-path check as well as
``forward_values``: the inherited ``prepare()`` runs the changed network. The guide shows
the example verbatim, and its "your own tests" snippet runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT, builtins_but, install_plugin

GUIDE = ROOT / "docs" / "writing-a-backend.md"
EXAMPLE = ROOT / "docs" / "example-eager-variant"
MODULE = "netharness_example_eager_variant"
BACKEND = "eager-handpool"
# Forward values (default spec and variants), the fast path, and the gradients (pool ties
# included); finite differences are left out to save time.
SUITE = (
    "netharness_suites.test_forward_values",
    "netharness_suites.test_fast_path",
    "netharness_suites.test_gradients",
)

PLANTED_BUG = f"""
from harness import hookimpl
from {MODULE} import HandPoolBackend, HandPoolNet


class OffPoolNet(HandPoolNet):
    def pool(self, x, window):
        return super().pool(x, window) * 1.5  # the planted bug: pooled values 50% too large


class OffPoolBackend(HandPoolBackend):
    name = "eager-offpool"
    net_class = OffPoolNet


@hookimpl
def harness_backends():
    return [OffPoolBackend()]
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example, pip-installed into its own folder (built from a copy: pip leaves build/ beside the sources)."""
    work = tmp_path_factory.mktemp("eager-variant")
    source = work / "source"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = work / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", "install", "--no-deps"]
    subprocess.run([*pip, "--target", str(target), str(source)], check=True, timeout=600)
    return target


def run_suite(
    cwd: Path, sites: list[Path], *args: str
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    """pytest on the installed suite from ``cwd``, as a user runs it; returns the process and its check records."""
    results = cwd / "conformance.jsonl"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([*map(str, sites), os.environ.get("PYTHONPATH", "")]),
        "NETHARNESS_DISABLE_PLUGINS": builtins_but("eager"),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--pyargs", *SUITE]
    done = subprocess.run(
        [*command, f"--conformance-results={results}", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    records = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
    return done, [r for r in records if r.get("kind") == "check"]


def test_the_eager_variant_example_conforms(installed: Path, tmp_path: Path) -> None:
    done, checks = run_suite(tmp_path, [installed], f"--backend={BACKEND}", "--strict-backends", "-k", "not finite")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert {r["backend"] for r in checks} == {BACKEND}
    assert [r for r in checks if r["outcome"] != "passed"] == []
    ran = {r["check"] for r in checks}
    assert {"forward_values", "intermediate_values", "prepared_forward", "prepared_train_step"} <= ran
    assert {"gradients", "maxpool_tie_subgradient", "relu_subgradient_at_zero"} <= ran


def test_the_inherited_fast_path_runs_the_changed_network(installed: Path, fake_site: Path, tmp_path: Path) -> None:
    """A bug in the overridden ``pool`` fails ``prepared_forward`` too: what is timed is what changed.

    Were the fast path the unmodified Net, ``prepared_forward`` would pass while
    ``forward_values`` failed.
    """
    install_plugin(fake_site, "eager-offpool", "eager_offpool", PLANTED_BUG, "eager-offpool")
    done, checks = run_suite(
        tmp_path,
        [fake_site, installed],
        "--backend=eager-offpool",
        "-k",
        "forward_values and batch7 or prepared_forward",
    )
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    outcomes = {(r["check"], r["config"]): r["outcome"] for r in checks}
    assert outcomes, done.stdout[-3000:]
    assert {check for check, _ in outcomes} == {"forward_values", "prepared_forward"}
    assert set(outcomes.values()) == {"failed"}, outcomes


def test_the_guide_shows_the_example_as_it_is() -> None:
    guide = GUIDE.read_text()
    assert (EXAMPLE / f"{MODULE}.py").read_text() in guide
    entry = f'[project.entry-points."netharness.backends"]\n{BACKEND} = "{MODULE}"'
    assert entry in (EXAMPLE / "pyproject.toml").read_text()
    assert entry in guide


def test_the_guides_own_test_snippet_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The guide's "NetSpec in your own tests" example, with the eager backend standing in for yours."""
    pytest.importorskip("torch")
    from backends.eager import EagerBackend

    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.DOTALL)
    (snippet,) = [block for block in blocks if "from my_backend import MyBackend" in block]
    stand_in = types.ModuleType("my_backend")
    stand_in.MyBackend = EagerBackend  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "my_backend", stand_in)
    namespace: dict[str, Any] = {"__name__": "guide_snippet"}
    exec(compile(snippet, f"{GUIDE}:snippet", "exec"), namespace)
    tests = [fn for name, fn in namespace.items() if name.startswith("test_") and callable(fn)]
    assert tests
    for test in tests:
        test()
