"""The conformance results file, and the one place that defines, writes and reads its records.

One JSON line per record. The kinds: ``run_start`` (the first line: seed, device, backends,
machine, commit), ``started`` (a test is about to run, on disk before it does, so a crash
names it), ``check`` (one backend x check x config, :class:`CheckRecord`), ``child_end`` (a
supervised pytest process ended cleanly) and ``run_end`` (the run is complete). Each record is
written and flushed as soon as its test finishes, so an interrupted run keeps everything that
already finished; a run that did not reach its end has no ``run_end`` line, which readers
report as partial. Every other module writes and reads through this one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import platform
import secrets
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from harness.childprocess import RECORD_KEY_BYTES, SUPERVISED_ENV

SCHEMA = "netharness.conformance/1"

BENCHMARK_FORMAT = 2
"""The benchmark records' format (``extra_info`` of pytest-benchmark's JSON, and its
``machine_info["netharness_format"]``). 2 added ``clock``, ``threads_source``, ``process_threads`` and
the paired baseline rounds (``paired_*``); a file without them is format 1, read as below."""
CLOCKS = ("wall", "cpu")
"""What a benchmark's rounds were timed with: ``wall`` (``time.perf_counter``) or ``cpu`` (the
process's CPU time, ``time.process_time``: every thread's user and system time)."""
DEFAULT_CLOCK = "wall"
"""The clock of a record that names none (format 1 and older were all timed on the wall clock)."""


def record_clock(extra_info: dict[str, Any]) -> str:
    """The clock a benchmark record was timed with (``wall`` when it does not say)."""
    clock = extra_info.get("clock")
    return str(clock) if clock else DEFAULT_CLOCK


PREVIOUS = "previous"
"""In a run's output folder: the last complete report, kept aside until a new complete one exists."""
PARTS = ".parts"
"""In a run's output folder: the benchmark steps' files before they are merged."""
SET_ASIDE = (PREVIOUS, PARTS)
"""What a report of a run folder leaves out: an older run, and scratch."""
LOCK = ".netharness.lock"
MANIFEST = ".netharness-run.json"
RUN_FOLDER_MARKS = (LOCK, MANIFEST)
"""A folder holding either is a run's output folder."""

META = "netharness"
"""The key of a test's ``user_properties`` entry that carries its backend, check, dtype and config."""
RAN = ("passed", "failed", "error", "xfailed", "xpassed", "crashed")
"""Outcomes that mean a check ran (a skip does not, nor ``not_run``: see :mod:`harness.budget`)."""


@dataclass
class Measurement:
    """One comparison inside a check: how far the backend was from the reference."""

    what: str
    max_abs_error: float
    max_rel_error: float
    rtol: float
    atol: float
    headroom: float
    """tolerance / observed error: above 1 passes; infinity for an exact match."""
    tolerance_reason: str = "default"
    mismatched: int = 0
    total: int = 0
    tolerance_source: str = "default"
    """``override`` when a backend's hook widened the tolerance of this comparison."""


@dataclass
class CheckRecord:
    backend: str
    check: str
    config: str
    dtype: str
    device: str
    outcome: str
    test_id: str
    seed: int
    reason: str = ""
    duration_s: float = 0.0
    measurements: list[Measurement] = field(default_factory=list)
    exception: str = ""
    """The type of the exception that failed the check ('' when it did not fail)."""
    location: str = ""
    """Where it was raised: the innermost frame outside the harness, the suite and the array
    libraries, as 'file.py:123 function' ('' when it did not fail)."""

    def to_json(self) -> dict[str, Any]:
        worst = min(self.measurements, key=lambda m: m.headroom, default=None)
        record = asdict(self)
        record["kind"] = "check"
        record.update(
            max_abs_error=worst.max_abs_error if worst else None,
            max_rel_error=worst.max_rel_error if worst else None,
            rtol=worst.rtol if worst else None,
            atol=worst.atol if worst else None,
            headroom=worst.headroom if worst else None,
            tolerance_reason=worst.tolerance_reason if worst else "",
            # A check passes "under an override" if any of its comparisons needed one.
            tolerance_source=(
                "override" if any(m.tolerance_source == "override" for m in self.measurements) else "default"
            ),
        )
        return record


def run_end_record(**info: Any) -> dict[str, Any]:
    """The record that closes a complete run; a file without one is read as partial."""
    return {"kind": "run_end", "time": time.time(), **info}


def run_start_record(**info: Any) -> dict[str, Any]:
    return {"kind": "run_start", "schema": SCHEMA, "time": time.time(), "machine": machine_info(), **info}


def machine_info() -> dict[str, Any]:
    return {
        "node": platform.node(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def git_commit(cwd: Path | None = None) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=cwd, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


class ResultsWriter:
    """Writes records to a JSON-lines file, flushing each one to disk, each sealed with the run's key.

    Under a supervisor (``NETHARNESS_SUPERVISED=1``) the file is appended to, since one run
    may take several processes: ``run_start`` is written only into an empty file, and the
    process ends with ``child_end``; the supervisor writes the one ``run_end`` and rejects
    every line its children wrote without ``key``'s seal (:func:`reject_unsealed`). Without
    a supervisor the writer draws its own key and rejects them itself when it finishes.
    """

    def __init__(self, path: Path, key: bytes | None = None) -> None:
        self.path = path
        self.supervised = os.environ.get(SUPERVISED_ENV) == "1"
        self.key = key if key is not None else secrets.token_bytes(RECORD_KEY_BYTES)
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.supervised:
            quarantine_torn_tail(path)
        self._file: TextIO | None = path.open("a" if self.supervised else "w", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        if self._file is None:
            return
        self._file.write(json.dumps(sealed(record, self.key), allow_nan=True) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def start(self, **info: Any) -> None:
        if self.supervised and self.path.stat().st_size > 0:
            return
        self.write(run_start_record(**info))

    def finish(self, **info: Any) -> None:
        """The process's last record: ``child_end`` under a supervisor (which writes ``run_end``), else ``run_end``."""
        if self.supervised:
            self.write({"kind": "child_end", "time": time.time(), **info})
        else:
            self.write(run_end_record(**info))
        self.close()
        if not self.supervised:
            reject_unsealed(self.path, 0, self.key)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


TORN_SUFFIX = ".torn"
REJECTED_SUFFIX = ".rejected"
QUARANTINES = (TORN_SUFFIX, REJECTED_SUFFIX)
"""Beside a results file: the lines set aside from it (cut off mid-write; not written by the recorder)."""

SEAL = "seal"
"""The key of a record's seal: an HMAC of the rest of the record under the run's key."""


def _seal_of(record: dict[str, Any], key: bytes) -> str:
    body = {k: v for k, v in record.items() if k != SEAL}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hmac.new(key, canonical.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def sealed(record: dict[str, Any], key: bytes) -> dict[str, Any]:
    """``record`` as JSON will read it back, with its seal added."""
    plain: dict[str, Any] = json.loads(json.dumps(record, default=_jsonable, allow_nan=True))
    plain.pop(SEAL, None)
    return {**plain, SEAL: _seal_of(plain, key)}


def is_sealed(record: dict[str, Any], key: bytes) -> bool:
    seal = record.get(SEAL)
    return isinstance(seal, str) and hmac.compare_digest(seal, _seal_of(record, key))


def reject_unsealed(path: Path, offset: int, key: bytes) -> int:
    """Move every line after byte ``offset`` that the recorder did not write out of the results file.

    A line counts as the recorder's when it is a whole JSON object sealed with ``key``, which
    only the harness's recorder holds: a line a backend wrote into the file (a forged
    ``child_end``, a forged outcome, half a record) is moved to ``<path>.rejected`` with a
    warning, and every sealed record stays, in its order. Returns how many lines moved.
    """
    if not path.exists():
        return 0
    with path.open("rb") as file:
        file.seek(offset)
        data = file.read()
    kept: list[bytes] = []
    rejected: list[bytes] = []
    for line in data.split(b"\n"):
        if not line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        (kept if isinstance(record, dict) and is_sealed(record, key) else rejected).append(line)
    if not rejected:
        return 0
    with path.open("rb+") as file:
        file.truncate(offset)
        file.seek(offset)
        file.write(b"".join(line + b"\n" for line in kept))
        file.flush()
        os.fsync(file.fileno())
    with open(str(path) + REJECTED_SUFFIX, "ab") as quarantine:
        quarantine.write(b"".join(line + b"\n" for line in rejected))
    print(
        f"netharness: warning: {len(rejected)} line(s) in {path} were not written by the harness's recorder"
        f" (a backend wrote into the results file, or a record was cut off); moved to {path}{REJECTED_SUFFIX}",
        file=sys.stderr,
        flush=True,
    )
    return len(rejected)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def first_line(text: str, default: str = "") -> str:
    """The first non-blank line of ``text``, stripped and at most 500 characters (``default`` if none)."""
    return next((line.strip() for line in text.splitlines() if line.strip()), default)[:500]


def read_records(path: Path, offset: int = 0) -> list[dict[str, Any]]:
    """The complete JSON lines written after byte ``offset`` (a torn last line is left out)."""
    return read_new_records(path, offset)[0]


def read_new_records(path: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    """The complete records written after byte ``offset``, and the offset after the last of them.

    A line still being written (no newline yet) is left for the next read; a line that is
    not a JSON object is skipped.
    """
    if not path.exists():
        return [], offset
    with path.open("rb") as file:
        file.seek(offset)
        data = file.read()
    complete = data[: data.rfind(b"\n") + 1]
    records = []
    for line in complete.split(b"\n")[:-1]:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records, offset + len(complete)


def append_record(path: Path, record: dict[str, Any], key: bytes | None = None) -> None:
    """Append one record as a whole line, on disk before this returns (sealed with ``key`` if given)."""
    append_records(path, [record], key)


def append_records(path: Path, records: list[dict[str, Any]], key: bytes | None = None) -> None:
    """Append records, each a whole line, on disk (one sync for them all) before this returns.

    With ``key``, each is sealed (:func:`sealed`): the run's own records, which a final
    :func:`reject_unsealed` over the whole file keeps.
    """
    if not records:
        return
    quarantine_torn_tail(path)
    if key is not None:
        records = [sealed(record, key) for record in records]
    with path.open("a", encoding="utf-8") as file:
        file.write("".join(json.dumps(record, default=_jsonable, allow_nan=True) + "\n" for record in records))
        file.flush()
        os.fsync(file.fileno())


def quarantine_torn_tail(path: Path) -> str:
    """Move a last line cut off mid-write (a process killed while writing it) out of the results file.

    Appending after it would glue the next record onto it and make that line invalid JSON,
    so the whole file unreadable. The fragment goes to ``<path>.torn`` with a warning; the
    records before it are untouched. Returns the fragment ('' when the file ends whole).
    """
    if not path.exists():
        return ""
    with path.open("rb+") as file:
        size = file.seek(0, os.SEEK_END)
        if size == 0:
            return ""
        file.seek(size - 1)
        if file.read(1) == b"\n":
            return ""
        file.seek(0)
        data = file.read()
        cut = data.rfind(b"\n") + 1
        file.truncate(cut)
        file.flush()
        os.fsync(file.fileno())
    torn = data[cut:]
    with open(str(path) + TORN_SUFFIX, "ab") as quarantine:
        quarantine.write(torn + b"\n")
    print(
        f"netharness: warning: {path} ended in a record cut off mid-write ({len(torn)} bytes); moved it to"
        f" {path}{TORN_SUFFIX}, every whole record is kept",
        file=sys.stderr,
        flush=True,
    )
    return torn.decode("utf-8", "replace")
