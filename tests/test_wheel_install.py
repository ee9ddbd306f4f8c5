"""netharness works from a regular (non-editable) install, from any directory.

The wheel is built from this checkout and installed (without dependencies, which this
environment already has) into a fresh target folder that shadows the editable install;
the quick main job then runs from an empty temporary directory on the numpy backend and a
third-party example backend, and must write its report. The run takes about a minute.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import EXAMPLE_BACKEND, ROOT, builtins_but


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(work / "dist"), str(ROOT)], check=True, timeout=600)
    (wheel,) = (work / "dist").glob("netharness-*.whl")
    target = work / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True, timeout=600)
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(target), str(EXAMPLE_BACKEND)], check=True, timeout=600
    )
    return target


WHERE = "import harness, harness.conformance.locations as h; print(harness.__file__); print(h.suites_dir())"


def test_the_quick_main_job_runs_from_any_directory_with_a_regular_install(installed: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(installed),
        # Only the two backends it runs: loading the others (jax, openvino, onnxruntime) costs seconds per process.
        "NETHARNESS_DISABLE_PLUGINS": builtins_but("numpy"),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    where = subprocess.run(
        [sys.executable, "-c", WHERE],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert all(line.startswith(str(installed)) for line in where.stdout.splitlines()), where.stdout
    run = subprocess.run(
        [sys.executable, "-m", "harness.commands.cli", "run", "--quick", "--backend=numpy,functional", "--out", "r"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for name in ("report.html", "summary.md", "conformance.jsonl", "benchmarks.json", "results.csv"):
        assert (tmp_path / "r" / name).stat().st_size > 0, name
    assert "numpy: conforms" in run.stdout and "functional: conforms" in run.stdout
