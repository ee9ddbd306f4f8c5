"""``netharness mutants``: run the conformance suite against planted bugs and tabulate the kill rate.

One pytest run, in a child process, over ``eager`` and every mutant of :mod:`backends.mutants`.
The mutants plugin is registered for that run only, through a throw-away ``dist-info``
directory on ``PYTHONPATH`` (the same entry-point discovery as an installed plugin); nothing
is installed. Each mutant must fail at least one check (it is *caught*); ``eager`` must fail
none, or the run says nothing about the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from backends.mutants import MUTANTS, Mutant
from harness import results
from harness.conformance.locations import suites_dir
from harness.contract.manager import BUILTIN_PLUGINS
from harness.errors import HarnessError, UsageError

BASELINE = "eager"
ROOT = Path(__file__).resolve().parents[2]
PRECISIONS = ("float32", "float64")
"""Both full precisions: a defect that float32's wider tolerances hide shows as caught in float64 only."""
# Without the two slowest checks: no mutant needs them (checked by tests/test_mutants.py, which
# asserts every mutant is still caught by this selection, in the precisions it declares).
SLOW_CHECKS = "not converges and not finite_differences"
DEFAULT_SELECTION = f"(float32 or float64) and {SLOW_CHECKS}"
CHILD_PROCESS_CHECKS = ("init_reproducible_across_processes",)
"""Checks that start a Python process per test: run on eager and on the mutants that declare them only
(every other mutant inherits eager's init unchanged, and a child costs seconds)."""


def precision_selection(mutants: Sequence[type[Mutant]] = MUTANTS) -> str:
    """Both full precisions; a reduced one only for the mutants whose defect is there, and eager on their checks."""
    extra = []
    for precision in sorted({p for m in mutants for p in m.affects if p not in PRECISIONS}):
        there = [m for m in mutants if precision in m.affects]
        checks = " or ".join(f"test_{check}" for check in sorted({m.caught_by for m in there}))
        runs = " or ".join([f"({BASELINE} and ({checks}))", *(f"mutant-{m.defect}" for m in there)])
        extra.append(f"({precision} and ({runs}))")
    return f"({' or '.join([*PRECISIONS, *extra])})"


def full_selection(mutants: Sequence[type[Mutant]] = MUTANTS) -> str:
    """The default run: every check but the slowest two, and the child-process ones where they can catch something."""
    runs = " or ".join([BASELINE, *(f"mutant-{m.defect}" for m in mutants if m.caught_by in CHILD_PROCESS_CHECKS)])
    children = " or ".join(f"test_{check}" for check in CHILD_PROCESS_CHECKS)
    return f"{precision_selection(mutants)} and {SLOW_CHECKS} and (not ({children}) or {runs})"


CAUGHT_OUTCOMES = ("failed", "error")
EXIT_SURVIVORS, EXIT_BASELINE_BROKEN = 1, 2


def quick_selection(mutants: Sequence[type[Mutant]] = MUTANTS) -> str:
    """Each mutant on the check it declares and eager on all of them, in both precisions.

    No batch 64 and no finite differences. ``-k`` matches substrings of a test's id and
    module, so a mutant also meets checks whose names contain its own; it never misses its own.
    """
    checks = " or ".join(f"test_{check}" for check in sorted({m.caught_by for m in mutants}))
    each = " or ".join(f"(mutant-{m.defect} and test_{m.caught_by})" for m in mutants)
    runs = f"({BASELINE} and ({checks})) or {each}"
    return f"{precision_selection(mutants)} and not batch64 and not finite_differences and ({runs})"


@dataclass(frozen=True)
class MutantOutcome:
    """What the suite did to one mutant: the checks that failed on it, in the order they ran."""

    name: str
    description: str
    expected: str
    caught_by: tuple[str, ...]
    ran: int
    caught_in: tuple[str, ...] = ()
    """The precisions in which some check failed on it, in :data:`PRECISIONS` order."""
    affects: tuple[str, ...] = PRECISIONS
    """The precisions the defect is in (see :attr:`backends.mutants.Mutant.affects`)."""
    float32_hides: str = ""
    """The mutant's own account of why float32 cannot catch it (empty if it claims float32 does)."""

    @property
    def caught(self) -> bool:
        return bool(self.caught_by)

    @property
    def first(self) -> str:
        return self.caught_by[0] if self.caught_by else ""

    @property
    def caught_as_declared(self) -> bool:
        return self.expected in self.caught_by

    @property
    def hidden_in(self) -> tuple[str, ...]:
        """The precisions the defect is in that caught nothing."""
        return tuple(p for p in self.affects if p not in self.caught_in)

    @property
    def precisions_as_declared(self) -> bool:
        """Caught in every precision the defect is in, but float32 exactly when it says float32 hides it."""
        expected_hidden = ("float32",) if self.float32_hides else ()
        return self.hidden_in == expected_hidden and set(self.caught_in) <= set(self.affects)


@dataclass
class MutationReport:
    mutants: list[MutantOutcome]
    baseline_failures: list[dict[str, Any]] = field(default_factory=list)
    baseline_ran: int = 0
    seconds: float = 0.0
    quick: bool = False
    """Each mutant ran its declared check only, so its precisions say what that check sees."""

    @property
    def killed(self) -> int:
        return sum(m.caught for m in self.mutants)

    @property
    def survivors(self) -> list[MutantOutcome]:
        return [m for m in self.mutants if not m.caught]

    @property
    def baseline_broken(self) -> bool:
        return bool(self.baseline_failures) or self.baseline_ran == 0

    @property
    def undeclared_precisions(self) -> list[MutantOutcome]:
        """Caught mutants whose precisions differ from what they declare (a full run only)."""
        return [] if self.quick else [m for m in self.mutants if m.caught and not m.precisions_as_declared]

    def exit_status(self) -> int:
        if self.baseline_broken:
            return EXIT_BASELINE_BROKEN
        return EXIT_SURVIVORS if self.survivors or self.undeclared_precisions else 0


def summarize(records: Iterable[dict[str, Any]], mutants: Sequence[type[Mutant]] = MUTANTS) -> MutationReport:
    """Group check records (in file order) by backend: which checks failed on each mutant."""
    failing: dict[str, list[str]] = {}
    precisions: dict[str, set[str]] = {}
    ran: dict[str, int] = {}
    baseline_failures = []
    for record in records:
        backend = record.get("backend")
        if backend is None or record.get("kind", "check") != "check":  # run_start, started, run_end lines
            continue
        ran[backend] = ran.get(backend, 0) + 1
        if record.get("outcome") in CAUGHT_OUTCOMES:
            if backend == BASELINE:
                baseline_failures.append(record)
            checks = failing.setdefault(backend, [])
            if record["check"] not in checks:
                checks.append(record["check"])
            precisions.setdefault(backend, set()).add(str(record.get("dtype", "")))
    outcomes = [
        MutantOutcome(
            name=f"mutant-{m.defect}",
            description=m.description(),
            expected=m.caught_by,
            caught_by=tuple(failing.get(f"mutant-{m.defect}", ())),
            ran=ran.get(f"mutant-{m.defect}", 0),
            caught_in=tuple(
                p for p in dict.fromkeys((*PRECISIONS, *m.affects)) if p in precisions.get(f"mutant-{m.defect}", set())
            ),
            affects=m.affects,
            float32_hides=m.float32_hides,
        )
        for m in mutants
    ]
    return MutationReport(outcomes, baseline_failures, ran.get(BASELINE, 0))


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every record of the results file but the ``started`` marks."""
    return [record for record in results.read_records(path) if record.get("kind") != "started"]


def render(report: MutationReport) -> str:
    """The table, one row per mutant, and the kill rate; under it, each defect float32 hides, and why."""
    header = ("mutant", "defect", "expected check", "caught", "in", "first caught by")
    rows = [
        (
            m.name,
            m.description,
            m.expected,
            ("yes" if m.caught_as_declared else "yes*") if m.caught else "NO",
            ",".join(p.removeprefix("float") for p in m.caught_in) or "-",
            m.first or ("-" if m.ran else "(did not run)"),
        )
        for m in report.mutants
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    n = len(report.mutants)
    rate = report.killed / n if n else 0.0
    lines.append("")
    lines.append(f"caught {report.killed}/{n} (kill rate {rate:.0%}) in {report.seconds:.0f} s")
    if any(m.caught and not m.caught_as_declared for m in report.mutants):
        lines.append("yes*: caught, but not by the check it declares; the suite has moved, update the mutant")
    lines.append("in: the precisions (32: float32, 64: float64) in which some check failed on the mutant")
    if report.quick:
        lines.append("quick: each mutant ran its declared check only; run without --quick for every precision")
    for m in report.mutants if not report.quick else ():
        for precision in m.hidden_in if m.caught else ():
            why = (m.float32_hides if precision == "float32" else "") or "UNDECLARED: say why, or tighten the check"
            lines.append(f"{precision} hides {m.name} ({m.description}): {why}")
        if m.float32_hides and "float32" in m.caught_in:
            lines.append(f"float32 catches {m.name} after all: drop its float32_hides ({m.float32_hides})")
        if set(m.caught_in) - set(m.affects):
            lines.append(f"{m.name} was caught in {', '.join(m.caught_in)}, beyond the precisions it affects")
    for m in report.survivors:
        lines.append(f"SURVIVED: {m.name} ({m.description}): no check failed; {m.expected} should have")
    if report.baseline_broken:
        if report.baseline_ran == 0:
            lines.append(f"baseline broken: {BASELINE} ran no checks; the kill rate means nothing")
        for record in report.baseline_failures:
            lines.append(f"baseline broken: {BASELINE} failed {record.get('test_id')}: {record.get('reason')}")
    return "\n".join(lines)


# -- the child pytest run ----------------------------------------------------------------------


def plugin_site(directory: Path) -> Path:
    """A directory that, on PYTHONPATH, makes ``backends.mutants`` a ``netharness.backends`` plugin."""
    info = directory / "netharness_mutants-0.1.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: netharness-mutants\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[netharness.backends]\nmutants = backends.mutants\n")
    return directory


def child_environment(site: Path) -> dict[str, str]:
    """Only eager and the mutants, on one thread: the other built-ins are disabled, whatever else is asked.

    The child runs in a temporary directory, so every path it is given is absolute (a
    relative ``PYTHONPATH`` entry would otherwise name a directory inside that one).
    """
    env = dict(os.environ)
    disabled = {n.strip() for n in env.get("NETHARNESS_DISABLE_PLUGINS", "").split(",") if n.strip()}
    disabled = (disabled | set(BUILTIN_PLUGINS)) - {BASELINE, "mutants"}
    env["NETHARNESS_DISABLE_PLUGINS"] = ",".join(sorted(disabled))
    inherited = [str(Path(p).resolve()) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([str(site.resolve()), str(ROOT), *inherited])
    env["PYTHONUNBUFFERED"] = "1"
    # Catching, not timing: one torch thread gives the same verdicts, and on a busy machine
    # torch's spinning worker threads make each small call up to 100x slower.
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def pytest_command(results: Path, *, seed: int, selection: str) -> list[str]:
    """The child's command line; ``results`` is resolved here, since the child runs in another directory."""
    results = results.resolve()
    suites = suites_dir()
    backends = ",".join([BASELINE, *(f"mutant-{m.defect}" for m in MUTANTS)])
    return [
        sys.executable, "-m", "pytest", str(suites), f"--ignore={suites / 'bench_net.py'}",
        "-p", "no:cacheprovider", "-q", "--tb=no", "-rN", "--no-header",
        f"--backend={backends}", f"--seed={seed}", f"--conformance-results={results}", "-k", selection,
    ]  # fmt: skip


class ProgressPrinter:
    """Reads the results file as pytest writes it, and says when each mutant is first caught."""

    def __init__(self, results: Path, out: TextIO) -> None:
        self.results, self.out = results, out
        self.offset = 0
        self.caught: set[str] = set()
        self.mutants = {f"mutant-{m.defect}" for m in MUTANTS}

    def poll(self, progress: str) -> None:
        records, self.offset = results.read_new_records(self.results, self.offset)
        for record in records:
            backend, outcome = record.get("backend"), record.get("outcome")
            if outcome not in CAUGHT_OUTCOMES:
                continue
            if backend == BASELINE:
                print(f"  {progress} BASELINE {BASELINE} failed {record['test_id']}", file=self.out, flush=True)
            elif backend in self.mutants and backend not in self.caught:
                self.caught.add(backend)
                count = f"{len(self.caught)}/{len(self.mutants)}"
                print(f"  {progress} caught {count}: {backend} by {record['check']}", file=self.out, flush=True)


def run_suite(results: Path, *, seed: int, selection: str, out: TextIO) -> None:
    """Run the suite in a child pytest, printing each mutant as it is caught."""
    with tempfile.TemporaryDirectory(prefix="netharness-mutants-") as tmp:
        site = plugin_site(Path(tmp) / "site")
        command = pytest_command(results, seed=seed, selection=selection)
        process = subprocess.Popen(
            command,
            cwd=tmp,
            env=child_environment(site),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        printer = ProgressPrinter(results, out)
        tail: list[str] = []
        try:
            assert process.stdout is not None
            for line in process.stdout:
                line = line.rstrip("\n")
                progress = line[line.rfind("[") :] if line.endswith("%]") else "[    ]"
                printer.poll(progress)
                if not line.endswith("%]"):
                    tail = [*tail[-40:], line]
            code = process.wait()
        except KeyboardInterrupt:
            process.terminate()
            process.wait()
            raise
        printer.poll("[100%]")
    if code not in (0, 1):  # 0: all passed, 1: some failed; anything else means it did not run
        print("\n".join(tail), file=out)
        raise HarnessError(f"the conformance suite did not run (pytest exit status {code}); see its output above")
    summary = next((line for line in reversed(tail) if line.strip()), "")
    print(f"  pytest: {summary.strip('= ')}", file=out, flush=True)


def run_mutants(*, seed: int = 0, quick: bool = False, results: Path | None = None, out: TextIO | None = None) -> int:
    """Run the suite over eager and every mutant, print the table; return the exit status.

    0: every mutant caught and eager clean; 1: a mutant survived, or (without ``quick``) a
    precision its defect is in caught nothing and the mutant does not say why; 2: eager failed.
    ``results`` keeps the JSON-lines results file (default: a temporary file, removed).
    """
    stream = out if out is not None else sys.stdout
    selection = quick_selection() if quick else full_selection()
    with tempfile.TemporaryDirectory(prefix="netharness-mutants-results-") as tmp:
        # Resolved against our working directory now: the child pytest runs in a temporary one.
        path = (results if results is not None else Path(tmp) / "conformance.jsonl").resolve()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.unlink(missing_ok=True)
            path.touch()
        except OSError as exc:
            raise UsageError(f"cannot write the results file {path}: {exc.strerror or exc}") from None
        print(
            f"netharness mutants: the conformance suite on {BASELINE} and {len(MUTANTS)} mutants"
            f" (seed {seed}, -k {selection!r})",
            file=stream,
            flush=True,
        )
        start = time.perf_counter()
        run_suite(path, seed=seed, selection=selection, out=stream)
        report = summarize(read_records(path))
    report.seconds, report.quick = time.perf_counter() - start, quick
    print(file=stream)
    print(render(report), file=stream, flush=True)
    return report.exit_status()
