"""Under ``pytest -n N --dist loadgroup``, each backend's tests run on one worker, ids unchanged."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from harness.scheduling import backend_of
from tests.conftest import ROOT, builtins_but


@pytest.mark.parametrize(
    ("nodeid", "expected"),
    [
        ("suites/t.py::test_a[compile-float32-batch1]", "compile"),
        ("suites/t.py::test_a[compile-cudagraphs-float32]", "compile-cudagraphs"),
        ("suites/t.py::test_a[eager]", "eager"),
        ("suites/t.py::test_a[eagerly-float32]", None),
        ("suites/t.py::test_a[float32-eager]", None),
        ("suites/t.py::test_a", None),
        ("suites/t.py::test_a[eager-float32]@mine", None),
    ],
)
def test_backend_of_reads_the_first_parameter_and_prefers_the_longest_name(nodeid: str, expected: str | None) -> None:
    assert backend_of(nodeid, ["eager", "compile", "compile-cudagraphs"]) == expected


def test_loadgroup_runs_each_backend_on_one_worker(tmp_path: Path) -> None:
    pytest.importorskip("xdist")
    command = [
        sys.executable,
        "-m",
        "pytest",
        str(ROOT / "suites" / "test_forward_shapes.py"),
        "--backend=eager,numpy",
        "-k",
        "test_output_shape or test_rejects_bad_input",
        "-n",
        "2",
        "--dist",
        "loadgroup",
        "-v",
        "-p",
        "no:cacheprovider",
        f"--conformance-results={tmp_path / 'r.jsonl'}",
    ]
    env = {**os.environ, "NETHARNESS_DISABLE_PLUGINS": builtins_but("eager", "numpy"), "OMP_NUM_THREADS": "1"}
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    workers: dict[str, set[str]] = defaultdict(set)
    ran = 0
    for worker, nodeid in re.findall(r"^\[(gw\d+)\] \[\s*\d+%\] PASSED (\S+)", run.stdout, re.MULTILINE):
        assert "@" not in nodeid, nodeid  # an xdist_group mark would have renamed it
        workers[backend_of(nodeid, ["eager", "numpy"]) or nodeid].add(worker)
        ran += 1
    assert ran > 20 and set(workers) == {"eager", "numpy"}, run.stdout
    assert all(len(used) == 1 for used in workers.values()), dict(workers)
    assert workers["eager"] != workers["numpy"], "two groups on two workers should not share one"
