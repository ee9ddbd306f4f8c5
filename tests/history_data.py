"""Synthetic results files for the history's tests: runs over commits, with steps planted where a test says.

Each run folder holds a ``conformance.jsonl`` and a ``benchmarks.json`` in the formats
:mod:`harness.results` and pytest-benchmark write. Timings are a backend's base median times
a seeded lognormal noise of ``noise`` (relative), times a planted factor from the commit on.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

BASE = {"eager": 0.0005, "numpy": 0.0010}


def write_run(
    folder: Path,
    commit: str,
    time: float,
    *,
    rng: np.random.Generator,
    slow: dict[str, float] | None = None,
    headroom: float = 50.0,
    noise: float = 0.02,
    node: str = "vm1",
    rounds: int = 9,
) -> Path:
    """One run's files in ``folder``; ``slow`` multiplies a backend's timings (the planted slowdown)."""
    folder.mkdir(parents=True, exist_ok=True)
    machine = {
        "node": node,
        "machine": "x86_64",
        "processor": "",
        "cpu_count": 2,
        "system": "Linux 6",
        "python": "3.11",
    }
    start = {
        "kind": "run_start",
        "schema": "netharness.conformance/1",
        "time": time,
        "machine": machine,
        "seed": 0,
        "device": "cpu",
        "backends": {name: {"version": f"{name} 1.0"} for name in BASE},
        "commit": commit,
    }
    lines = [start]
    for backend in BASE:
        lines.append(
            {
                "kind": "check",
                "backend": backend,
                "check": "forward",
                "config": "float32-batch64",
                "dtype": "float32",
                "device": "cpu",
                "outcome": "passed",
                "test_id": f"suites/test_forward.py::test_forward[{backend}-float32-batch64]",
                "seed": 0,
                "headroom": headroom if backend == "numpy" else 20.0,
                "max_abs_error": 1e-7,
                "max_rel_error": 1e-6,
            }
        )
    lines.append({"kind": "run_end", "time": time + 60, "exitstatus": 0, "interrupted": False})
    (folder / "conformance.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    entries = []
    for backend, base in BASE.items():
        median = base * (slow or {}).get(backend, 1.0) * float(np.exp(rng.normal(0, noise)))
        data = sorted(median * (1 + 0.01 * x) for x in np.linspace(-1, 1, rounds))
        entries.append(
            {
                "name": f"test_bench[{backend}-forward-float32-batch64]",
                "extra_info": {"backend": backend, "phase": "forward", "batch": 64, "dtype": "float32",
                               "device": "cpu", "threads": 2},
                "stats": {"median": median, "q1": data[rounds // 4], "q3": data[3 * rounds // 4], "rounds": rounds,
                          "data": data},
            }
        )  # fmt: skip
    document = {
        "machine_info": {"node": node, "machine": "x86_64", "cpu": {"count": 2}, "netharness_commit": commit},
        "commit_info": {"id": commit, "dirty": False, "branch": "main"},
        "datetime": "2026-01-01T00:00:00",
        "version": "5.1.0",
        "benchmarks": entries,
    }
    (folder / "benchmarks.json").write_text(json.dumps(document))
    return folder


def write_history(
    root: Path, commits: int, *, slow_from: int | None = None, factor: float = 1.3, seed: int = 0, **kw: object
) -> list[Path]:
    """``commits`` runs, one per commit ``c00``, ``c01``...; numpy ``factor`` times slower from ``slow_from`` on."""
    rng = np.random.default_rng(seed)
    folders = []
    for i in range(commits):
        slow = {"numpy": factor} if slow_from is not None and i >= slow_from else None
        folders.append(write_run(root / f"run{i:02d}", f"c{i:02d}", 1_767_000_000 + 3600 * i, rng=rng, slow=slow, **kw))  # type: ignore[arg-type]
    return folders
