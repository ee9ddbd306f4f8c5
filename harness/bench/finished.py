"""Each finished benchmark's timings on disk as soon as it finishes, so a later crash loses none of them.

pytest-benchmark writes its JSON (``--benchmark-json``) once, at the end of the session: a
benchmark step whose process dies in one benchmark (a segfault, the watchdog's kill) would
lose the timings of every benchmark that finished before it in that process. The keeper
appends each finished benchmark, as pytest-benchmark writes it, to
``<json>`` + :data:`FINISHED_SUFFIX`, one JSON line each; ``netharness run`` takes from there
the benchmarks that no step's JSON holds (:func:`harness.commands.run.merge_benchmarks`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

FINISHED_SUFFIX = ".finished.jsonl"


class BenchmarkKeeper:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.kept = 0
        """How many of pytest-benchmark's benchmarks are already on disk."""

    def path(self) -> Path | None:
        target: Any = getattr(self.config.option, "benchmark_json", None)
        name = getattr(target, "name", None)
        return Path(name + FINISHED_SUFFIX) if isinstance(name, str) else None

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "teardown":  # the benchmark fixture has finished its rounds by then
            return
        session: Any = getattr(self.config, "_benchmarksession", None)
        path = self.path()
        if session is None or path is None:
            return
        finished = session.benchmarks[self.kept :]
        self.kept = len(session.benchmarks)
        lines = [json.dumps(b.as_dict(include_data=True), default=str) + "\n" for b in finished if not b.has_error]
        if not lines:
            return
        with path.open("a", encoding="utf-8") as file:
            file.write("".join(lines))
            file.flush()
            os.fsync(file.fileno())


def finished_benchmarks(json_path: Path) -> list[dict[str, Any]]:
    """The benchmarks the keeper wrote beside ``json_path`` (none if it wrote none); a torn last line is left out."""
    path = Path(str(json_path) + FINISHED_SUFFIX)
    if not path.exists():
        return []
    kept = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            benchmark = json.loads(line)
        except ValueError:
            continue
        if isinstance(benchmark, dict) and isinstance(benchmark.get("fullname"), str):
            kept.append(benchmark)
    return kept
