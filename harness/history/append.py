"""Adding one run to the history: a machine, a run, its benchmark rows and its check records.

The caller hands in records already read and validated (:mod:`reports.load` for files);
what this module checks again is what the database needs: positive, finite medians, texts
that fit their columns. A run is keyed by a hash of its results files' bytes, so importing
the same files twice adds nothing, and two runs written at once are two runs. Everything of
one run goes in one transaction, with the rows of each table in one bulk insert.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from harness.history.schema import benchmarks, checks, machines, runs
from harness.history.store import HistoryError, describe_failure

CLOCKS = ("wall", "cpu")
DEFAULT_CLOCK = "wall"
RAN = ("passed", "failed", "error", "xfailed", "xpassed")


@dataclass
class Machine:
    node: str
    arch: str
    cpu_count: int
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        """What makes two runs' timings comparable: the same host, architecture and CPU count."""
        text = "\0".join((self.node, self.arch, str(self.cpu_count)))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class RunInput:
    key: str
    """A hash of the run's results files: the same files are the same run."""
    machine: Machine
    time: float
    commit: str
    dirty: bool | None
    branch: str
    seed: int | None
    device: str
    versions: dict[str, str]
    partial: bool
    source: str
    report: str = ""
    """The run's report.html, absolute, or ''."""
    benchmarks: list[dict[str, Any]] = field(default_factory=list)
    """pytest-benchmark entries (``extra_info`` and ``stats``)."""
    checks: list[dict[str, Any]] = field(default_factory=list)
    """Conformance ``check`` records."""


def content_key(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()


def append_run(engine: Engine, run: RunInput, url: str) -> bool:
    """Add ``run``; False when it is already there. One-line :class:`HistoryError` on any failure."""
    bench_rows = [row for entry in run.benchmarks if (row := benchmark_row(run, entry)) is not None]
    check_rows = [check_row(run, record) for record in run.checks]
    for attempt in range(3):
        try:
            with engine.begin() as connection:
                if connection.execute(select(runs.c.id).where(runs.c.run_key == run.key)).first():
                    return False
                machine_id = _machine_id(connection, run.machine)
                run_id = _inserted_id(connection.execute(insert(runs).values(**run_row(run, machine_id))))
                if bench_rows:
                    connection.execute(insert(benchmarks), [{**row, "run_id": run_id} for row in bench_rows])
                if check_rows:
                    connection.execute(insert(checks), [{**row, "run_id": run_id} for row in check_rows])
            return True
        except IntegrityError:
            # Another writer added the same machine (or run) between our select and insert: look again.
            if attempt == 2:
                raise HistoryError(f"history write of {run.source} kept colliding with another writer") from None
        except SQLAlchemyError as exc:
            raise HistoryError(describe_failure(url, exc)) from None
    return False


def _machine_id(connection: Connection, machine: Machine) -> int:
    found = connection.execute(select(machines.c.id).where(machines.c.fingerprint == machine.fingerprint)).first()
    if found:
        return int(found[0])
    row = {
        "fingerprint": machine.fingerprint,
        "node": _text(machine.node, 255, "machine node"),
        "arch": _text(machine.arch, 64, "machine architecture"),
        "cpu_count": machine.cpu_count,
        "info": json.dumps(machine.info, default=str),
    }
    return _inserted_id(connection.execute(insert(machines).values(**row)))


def _inserted_id(result: Any) -> int:
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def run_row(run: RunInput, machine_id: int) -> dict[str, Any]:
    return {
        "run_key": run.key,
        "machine_id": machine_id,
        "time": run.time,
        "commit": _text(run.commit, 64, "commit"),
        "dirty": run.dirty,
        "branch": _text(run.branch, 255, "branch"),
        "seed": run.seed,
        "device": _text(run.device, 32, "device"),
        "versions": json.dumps(run.versions, default=str),
        "partial": run.partial,
        "source": run.source,
        "report": run.report,
    }


def benchmark_row(run: RunInput, entry: dict[str, Any]) -> dict[str, Any] | None:
    """The row of one netharness benchmark (None for a benchmark that is not one of ours)."""
    extra, stats = entry.get("extra_info") or {}, entry.get("stats") or {}
    if "backend" not in extra:
        return None
    name = str(entry.get("name", "?"))
    median = stats.get("median")
    if not (_number(median) and math.isfinite(median) and median > 0):
        raise HistoryError(f"{run.source}: benchmark {name!r} has median {median!r}; expected positive seconds")
    clock = str(extra.get("clock") or DEFAULT_CLOCK)
    if clock not in CLOCKS:
        raise HistoryError(f"{run.source}: benchmark {name!r} has clock {clock!r}; expected one of {', '.join(CLOCKS)}")
    timings = [float(t) for t in stats.get("data") or [] if _number(t) and math.isfinite(t)]
    threads = extra.get("threads")
    row = {
        "backend": _text(extra["backend"], 128, "backend"),
        "phase": _text(extra["phase"], 32, "phase"),
        "batch": int(extra["batch"]),
        "dtype": _text(extra["dtype"], 32, "dtype"),
        "device": _text(extra["device"], 32, "device"),
        "clock": clock,
        "threads": int(threads) if _number(threads) else None,
        "median_s": float(median),
        "q1_s": _finite(stats.get("q1")),
        "q3_s": _finite(stats.get("q3")),
        "rounds": int(stats["rounds"]) if _number(stats.get("rounds")) else len(timings),
        "timings": json.dumps(timings),
    }
    row["series"] = benchmark_series(row)
    return row


def check_row(run: RunInput, record: dict[str, Any]) -> dict[str, Any]:
    headroom = record.get("headroom")
    row = {
        "backend": _text(record["backend"], 128, "backend"),
        "check_name": _text(record["check"], 128, "check"),
        "config": _text(record["config"], 255, "config"),
        "dtype": _text(record.get("dtype", ""), 32, "dtype"),
        "device": _text(record.get("device", ""), 32, "device"),
        "outcome": _text(record["outcome"], 16, "outcome"),
        "max_abs_error": _finite(record.get("max_abs_error")),
        "max_rel_error": _finite(record.get("max_rel_error")),
        # Infinity is an exact match: kept, as the report keeps it.
        "headroom": float(headroom) if _number(headroom) and not math.isnan(headroom) else None,
        "test_id": str(record.get("test_id", "")),
    }
    row["series"] = check_series(row, run.seed)
    return row


def benchmark_series(row: dict[str, Any]) -> str:
    """One benchmark configuration, as text: comparable numbers share it (and a machine)."""
    return "|".join(str(row[k]) for k in ("backend", "phase", "batch", "dtype", "device", "clock", "threads"))


def check_series(row: dict[str, Any], seed: int | None) -> str:
    return "|".join([*(str(row[k]) for k in ("backend", "check_name", "config", "dtype", "device")), str(seed)])


def _text(value: Any, limit: int, what: str) -> str:
    text = str(value)
    if len(text) > limit:
        raise HistoryError(f"a {what} of {len(text)} characters ({text[:40]!r}...) is longer than the {limit} kept")
    return text


def _number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _finite(value: Any) -> float | None:
    return float(value) if _number(value) and math.isfinite(value) else None
