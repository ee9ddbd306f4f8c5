"""Reading results files: pytest-benchmark JSON and netharness conformance JSON lines.

The two kinds are told apart by content, not by name: a JSON object with ``benchmarks`` and
``machine_info`` is a pytest-benchmark file; JSON lines whose first record has
``kind == "run_start"`` are a conformance file. Anything else is an error that names the file.
A conformance file without its ``run_end`` line, or with ``interrupted: true``, is a partial
run: every record it holds is still used, and readers are told it is partial. A run_end may
name, in ``stopped_backends``, the backends whose crash budget was spent (see
:mod:`harness.budget`) and why; their tests not run are records with the outcome ``not_run``.
A record that
lacks a field the readers need (a check without its outcome, a benchmark without a numeric
median) is an error that names the file and the line or benchmark, never a traceback later.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.results import RUN_FOLDER_MARKS, SET_ASIDE

CONFORMANCE_SCHEMA = "netharness.conformance/1"
RESULT_SUFFIXES = (".json", ".jsonl")
OUTCOMES = ("passed", "failed", "error", "crashed", "not_run", "skipped", "xfailed", "xpassed")
"""Every outcome a check record may hold (``crashed``: the process running it died; ``not_run``:
its backend had crashed or timed out as often as the crash budget allows, so it was not run)."""
CHECK_FIELDS = ("backend", "check", "config", "outcome")
"""What names a check record and what happened to it: each must be a non-empty string."""
CHECK_TEXT_FIELDS = ("dtype", "device")
"""Strings, possibly empty (a crashed test's dtype may not be known)."""


class ResultsFileError(UsageError):
    """A results file that is missing, unreadable, malformed or of an unknown kind."""


@dataclass(frozen=True)
class BenchmarkFile:
    """One pytest-benchmark JSON file (one machine, one run)."""

    path: Path
    machine_info: dict[str, Any]
    commit_info: dict[str, Any]
    benchmarks: list[dict[str, Any]]
    datetime: str
    version: str

    @property
    def machine(self) -> str:
        return str(self.machine_info.get("node") or "unknown")

    @property
    def commit(self) -> str:
        ours = self.machine_info.get("netharness_commit")
        if ours:
            return str(ours)
        return str(self.commit_info.get("id") or "unknown")[:12]


@dataclass(frozen=True)
class ConformanceFile:
    """One conformance JSON-lines file: its run_start, its checks and its run_end, if any."""

    path: Path
    start: dict[str, Any]
    checks: list[dict[str, Any]]
    end: dict[str, Any] | None
    dropped_last_line: bool = False
    """True when the last line was cut off mid-write (the run was killed) and was skipped."""

    @property
    def machine(self) -> str:
        return str((self.start.get("machine") or {}).get("node") or "unknown")

    @property
    def commit(self) -> str:
        return str(self.start.get("commit") or "unknown")

    @property
    def stopped(self) -> dict[str, str]:
        """The backends whose crash budget was spent, and why (from the run_end record)."""
        return dict((self.end or {}).get("stopped_backends") or {})

    @property
    def partial(self) -> bool:
        return self.end is None or bool(self.end.get("interrupted"))

    @property
    def partial_reason(self) -> str:
        if self.end is None:
            cut = "; its last line was cut off" if self.dropped_last_line else ""
            return f"{self.path} has no run_end record (the run did not finish{cut}); {len(self.checks)} checks present"
        if self.end.get("interrupted"):
            return f"{self.path} records an interrupted run; {len(self.checks)} checks present"
        return ""


@dataclass
class Results:
    """Every results file given, split by kind."""

    benchmarks: list[BenchmarkFile] = field(default_factory=list)
    conformance: list[ConformanceFile] = field(default_factory=list)

    @property
    def partial_reasons(self) -> list[str]:
        return [f.partial_reason for f in self.conformance if f.partial]

    @property
    def machines(self) -> list[str]:
        return sorted({f.machine for f in self.benchmarks} | {f.machine for f in self.conformance})


def load_results(paths: Sequence[str | Path]) -> Results:
    """Load files, and every results file under each directory given."""
    results = Results()
    for given in paths:
        path = Path(given)
        if path.is_dir():
            loaded = _load_directory(path)
        else:
            loaded = [load_file(path)]
        for item in loaded:
            if isinstance(item, BenchmarkFile):
                results.benchmarks.append(item)
            else:
                results.conformance.append(item)
    return results


def load_file(path: Path) -> BenchmarkFile | ConformanceFile:
    """Read one results file; raise :class:`ResultsFileError` with one line if it is not one."""
    if not path.exists():
        raise ResultsFileError(f"results file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ResultsFileError(f"results file {path} is not UTF-8 text") from None
    except OSError as exc:
        raise ResultsFileError(f"cannot read results file {path}: {exc.strerror or exc}") from None
    if not text.strip():
        raise ResultsFileError(f"results file {path} is empty")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        first = _first_line_as_json(text)
        if isinstance(first, dict) and first.get("kind") == "run_start":
            return _conformance_lines(path, text)
        if first is not None:  # JSON lines, but not ours
            raise _foreign(path) from None
        raise ResultsFileError(
            f"results file {path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    if isinstance(document, dict) and "benchmarks" in document and "machine_info" in document:
        return _benchmark_file(path, document)
    if isinstance(document, dict) and document.get("kind") == "run_start":
        return _conformance_lines(path, text)
    raise _foreign(path)


def _first_line_as_json(text: str) -> Any:
    """The first line parsed as JSON, or None when it is not valid JSON on its own."""
    try:
        return json.loads(text.lstrip().split("\n", 1)[0])
    except json.JSONDecodeError:
        return None


def _load_directory(directory: Path) -> list[BenchmarkFile | ConformanceFile]:
    """Every results file under ``directory``; other JSON files there are skipped with a note.

    A run folder's ``previous/`` (an older run kept aside) and its scratch are not this
    run's results, and are left out: a report reads what it is given.
    """
    found: list[BenchmarkFile | ConformanceFile] = []
    given = sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix in RESULT_SUFFIXES)
    for path in (p for p in given if not _set_aside(p, directory)):
        try:
            found.append(load_file(path))
        except ResultsFileError as exc:
            print(f"netharness: skipping {exc}", file=sys.stderr)
    if not found:
        raise ResultsFileError(
            f"results directory {directory} holds no pytest-benchmark JSON or netharness conformance file"
        )
    return found


def _set_aside(path: Path, top: Path) -> bool:
    """Whether ``path`` lies in a run folder's ``previous/`` or scratch (:data:`harness.results.SET_ASIDE`)."""
    for folder in path.relative_to(top).parents:
        if folder.name in SET_ASIDE and any((top / folder.parent / mark).exists() for mark in RUN_FOLDER_MARKS):
            return True
    return False


def _foreign(path: Path) -> ResultsFileError:
    return ResultsFileError(f"results file {path} is not a pytest-benchmark JSON or a netharness conformance file")


def _benchmark_file(path: Path, document: dict[str, Any]) -> BenchmarkFile:
    benchmarks = document["benchmarks"]
    machine_info = document["machine_info"]
    if not isinstance(benchmarks, list) or not isinstance(machine_info, dict):
        raise _foreign(path)
    for index, bench in enumerate(benchmarks):
        _check_benchmark(path, index, bench)
    return BenchmarkFile(
        path=path,
        machine_info=machine_info,
        commit_info=document.get("commit_info") or {},
        benchmarks=benchmarks,
        datetime=str(document.get("datetime") or ""),
        version=str(document.get("version") or ""),
    )


def _conformance_lines(path: Path, text: str) -> ConformanceFile:
    lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    records: list[tuple[int, dict[str, Any]]] = []
    dropped = False
    for position, (number, line) in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            # A run killed mid-write leaves a cut-off last line; anything else is a broken file.
            if records and position == len(lines) - 1:
                dropped = True
                break
            raise ResultsFileError(f"results file {path} is not valid JSON: {exc.msg} at line {number}") from None
        if not isinstance(record, dict):
            raise _foreign(path) if position == 0 else _bad_record(path, number, "is not a JSON object")
        records.append((number, record))
    (_, start), rest = records[0], records[1:]
    if start.get("kind") != "run_start":
        raise _foreign(path)
    schema = str(start.get("schema", ""))
    if schema.split("/")[0] != CONFORMANCE_SCHEMA.split("/")[0]:
        raise _foreign(path)
    if schema != CONFORMANCE_SCHEMA:
        raise ResultsFileError(f"results file {path} has schema {schema!r}; this netharness reads {CONFORMANCE_SCHEMA}")
    for key in ("machine", "backends"):
        if not isinstance(start.get(key, {}), dict):
            raise _bad_record(path, records[0][0], f"(run_start) has a {key} that is not a JSON object")
    for name, described in (start.get("backends") or {}).items():
        if not isinstance(described, dict):
            raise _bad_record(
                path, records[0][0], f"(run_start) describes backend {name!r} by {described!r:.40}, not an object"
            )
    checks: list[dict[str, Any]] = []
    end: dict[str, Any] | None = None
    for number, record in rest:
        kind = record.get("kind")
        if kind == "check":
            _check_check(path, number, record)
            checks.append(record)
        elif kind == "run_end":
            _check_stopped(path, number, record.get("stopped_backends") or {})
            end = record
        elif not isinstance(kind, str):
            raise _bad_record(path, number, "has no kind (check, run_end)")
    return ConformanceFile(path=path, start=start, checks=checks, end=end, dropped_last_line=dropped)


def _bad_record(path: Path, number: int, what: str) -> ResultsFileError:
    return ResultsFileError(f"results file {path}: line {number} {what}")


def _check_check(path: Path, number: int, record: dict[str, Any]) -> None:
    for name in (*CHECK_FIELDS, *CHECK_TEXT_FIELDS):
        value = record.get(name)
        if not isinstance(value, str) or (not value and name in CHECK_FIELDS):
            what = f"no {name}" if value is None else f"{name} {value!r}"
            kind = "a non-empty string" if name in CHECK_FIELDS else "a string"
            raise _bad_record(path, number, f"(a check) has {what}; expected {kind}")
    if record["outcome"] not in OUTCOMES:
        raise _bad_record(
            path, number, f"(a check) has outcome {record['outcome']!r}; expected one of {', '.join(OUTCOMES)}"
        )
    headroom = record.get("headroom")
    if headroom is not None and not (_is_number(headroom) and headroom >= 0):
        raise _bad_record(path, number, f"(a check) has headroom {headroom!r}; expected a number >= 0 (or null)")


def _check_stopped(path: Path, number: int, stopped: Any) -> None:
    if not (isinstance(stopped, dict) and all(isinstance(v, str) for v in stopped.values())):
        raise _bad_record(path, number, "(run_end) has stopped_backends that is not a JSON object of strings")


def _check_benchmark(path: Path, index: int, bench: Any) -> None:
    name = f"benchmark {index}" + (f" ({bench['name']!r})" if isinstance(bench, dict) and bench.get("name") else "")
    stats = bench.get("stats") if isinstance(bench, dict) else None
    if not isinstance(stats, dict) or "median" not in stats:
        raise ResultsFileError(f"results file {path}: {name} has no stats.median")
    if not _is_number(stats["median"]):
        raise ResultsFileError(f"results file {path}: {name} has stats.median {stats['median']!r}; expected a number")
    data = stats.get("data")
    if data is not None and not (isinstance(data, list) and all(_is_number(value) for value in data)):
        raise ResultsFileError(f"results file {path}: {name} has stats.data that is not a list of numbers")
    extra = bench.get("extra_info") or {}
    if not isinstance(extra, dict):
        raise ResultsFileError(f"results file {path}: {name} has an extra_info that is not a JSON object")
    if "backend" in extra:  # a netharness benchmark: what names it must be there
        for key in ("phase", "batch", "dtype", "device"):
            if key not in extra:
                raise ResultsFileError(f"results file {path}: {name} has no extra_info.{key}")
        if not (isinstance(extra["batch"], int) and not isinstance(extra["batch"], bool) and extra["batch"] > 0):
            raise ResultsFileError(
                f"results file {path}: {name} has extra_info.batch {extra['batch']!r}; expected a positive integer"
            )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def iter_benchmarks(results: Results) -> Iterable[tuple[BenchmarkFile, dict[str, Any]]]:
    for run in results.benchmarks:
        for bench in run.benchmarks:
            yield run, bench
