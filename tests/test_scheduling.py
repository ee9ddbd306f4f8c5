"""Under ``pytest -n N --dist loadgroup``, each backend's tests on one network run on one worker, ids unchanged."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from harness.pytest_plugin.scheduling import backend_of, group_of, network_of, scheduling_rank
from tests.helpers import ROOT, builtins_but


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


@pytest.mark.parametrize(
    ("nodeid", "expected"),
    [
        ("suites/t.py::test_a[compile-float32-3stage]", "3stage"),
        ("suites/t.py::test_a[eager-float64-1stage-sse]", "1stage"),
        ("suites/t.py::test_a[eager-float32-seed]", None),
        ("suites/t.py::test_a[eager-float32-31stage]", None),
        ("suites/t.py::test_a[x-1stage-float32]", None),
        ("suites/t.py::test_a[x-1stage-float32-3stage]", "3stage"),
        ("suites/t.py::test_a[float32-3stage]", None),
        ("suites/t.py::test_a", None),
    ],
)
def test_network_of_finds_an_every_field_network_among_the_parameters(nodeid: str, expected: str | None) -> None:
    assert network_of(nodeid, ["eager", "compile", "x-1stage"]) == expected


def test_a_backends_tests_on_an_every_field_network_are_a_group_of_their_own() -> None:
    backends = ["eager", "numpy"]
    seed = {
        group_of(f"suites/{f}::test_a[eager-float32{p}]", backends) for f in ("a.py", "b.py") for p in ("", "-seed")
    }
    networks = [group_of(f"suites/{f}::test_b[eager-float64-3stage]", backends) for f in ("a.py", "b.py")]
    assert len(seed) == 1 and networks[0] == networks[1], "one group per backend and network, across files"
    assert networks[0] not in seed and networks[0] != group_of("suites/a.py::test_b[eager-float64-1stage]", backends)
    assert networks[0] != group_of("suites/a.py::test_b[numpy-float64-3stage]", backends)
    assert group_of("suites/a.py::test_c[float64]", backends) is None


def test_the_every_field_networks_go_last_more_layers_first() -> None:
    assert scheduling_rank(None) < scheduling_rank("3stage") < scheduling_rank("1stage")


def test_loadgroup_runs_each_backend_on_each_network_on_one_worker(tmp_path: Path) -> None:
    pytest.importorskip("xdist")
    command = [
        sys.executable,
        "-m",
        "pytest",
        str(ROOT / "suites" / "test_forward_shapes.py"),
        "--backend=eager,numpy",
        "-k",
        "test_output_shape or test_rejects_bad_input or test_intermediate_shapes",
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
    workers: dict[tuple[str, str | None], set[str]] = defaultdict(set)
    sequences: dict[str, list[int]] = defaultdict(list)
    ran = 0
    for worker, nodeid in re.findall(r"^\[(gw\d+)\] \[\s*\d+%\] PASSED (\S+)", run.stdout, re.MULTILINE):
        assert "@" not in nodeid, nodeid  # an xdist_group mark would have renamed it
        network = network_of(nodeid, ["eager", "numpy"])
        workers[(backend_of(nodeid, ["eager", "numpy"]) or nodeid, network)].add(worker)
        sequences[worker].append({None: 0, "3stage": 1, "1stage": 2}[network])
        ran += 1
    groups = {(backend, network) for backend in ("eager", "numpy") for network in (None, "1stage", "3stage")}
    assert ran > 20 and set(workers) == groups, run.stdout
    assert all(len(used) == 1 for used in workers.values()), dict(workers)
    assert len(set().union(*workers.values())) == 2, "six groups on two workers should use both"
    assert all(order == sorted(order) for order in sequences.values()), "each worker: other tests, 3stage, 1stage"
