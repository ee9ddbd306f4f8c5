"""``netharness history``: import results into the history, find regressions, write the trend page.

Also :func:`append_after_run`, which ``netharness run`` calls once its files are written.
Results files are read and validated by :mod:`reports.load` (they are untrusted: a bad one is
a one-line error), grouped by folder (a run's ``conformance.jsonl`` and ``benchmarks.json``
are one run), and handed to :mod:`harness.history.append`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.commands.argtypes import positive_number, probability
from harness.errors import UsageError
from harness.history.settings import ALPHA, DEFAULT_MIN_CHANGE, DEFAULT_MIN_HEADROOM_CHANGE, HISTORY_ENV

if TYPE_CHECKING:
    from harness.history.append import RunInput
    from harness.history.series import Analysed

HISTORY_HELP = (
    f"the history database: a SQLAlchemy URL (postgresql+psycopg://user@host/db), a SQLite file path, or 'off'"
    f" (default: ${HISTORY_ENV}, else .netharness/history.sqlite)"
)


def add_history_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--history", default=None, metavar="URL", help=HISTORY_HELP)


def add_history_command(subparsers: Any) -> None:
    history = subparsers.add_parser(
        "history", help="the run history: import results, find regressions, write the trend page"
    )
    sub = history.add_subparsers(dest="history_command", metavar="ACTION", parser_class=type(history))
    sub.required = True

    imported = sub.add_parser("import", help="add results files (benchmarks.json, conformance.jsonl) to the history")
    imported.add_argument("results", nargs="+", metavar="RESULTS", help="results files, or folders holding them")
    add_history_option(imported)
    imported.set_defaults(func=cmd_import)

    regressions = sub.add_parser(
        "regressions",
        help="find the steps in every benchmark's and check's series; exit 1 if the newest commit starts a regression",
        description="Find the steps (change points) in each benchmark's median and each check's headroom, per"
        " machine and configuration, and name the commit of each with its size, 95%% interval and p-value."
        " Exit 1 when the newest commit of a series starts a regression, else 0; 2 on an error.",
    )
    add_history_option(regressions)
    add_detector_options(regressions)
    regressions.set_defaults(func=cmd_regressions)

    report = sub.add_parser("report", help="write the trend page: one plot per benchmark and per check")
    report.add_argument("--out", default="netharness-history", metavar="DIR", help="(default: netharness-history)")
    report.add_argument(
        "--force", action="store_true", help="replace a history.html in DIR that is not a trend page (default: refuse)"
    )
    add_history_option(report)
    add_detector_options(report)
    report.set_defaults(func=cmd_report)


def add_detector_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--alpha", type=probability, default=ALPHA, metavar="P", help=f"significance of a step (default: {ALPHA})"
    )
    parser.add_argument(
        "--min-change",
        type=positive_number,
        default=DEFAULT_MIN_CHANGE,
        metavar="FRACTION",
        help=f"smallest timing step reported, as a fraction (default: {DEFAULT_MIN_CHANGE})",
    )
    parser.add_argument(
        "--min-headroom-change",
        type=positive_number,
        default=DEFAULT_MIN_HEADROOM_CHANGE,
        metavar="FRACTION",
        help=f"smallest headroom step reported (default: {DEFAULT_MIN_HEADROOM_CHANGE}: a factor of 2)",
    )


def _url(args: argparse.Namespace) -> str:
    from harness.history.store import resolve_history

    url = resolve_history(args.history)
    if url is None:
        raise UsageError("the history is off (--history off or NETHARNESS_HISTORY=off); name a database with --history")
    return url


def cmd_import(args: argparse.Namespace) -> int:
    from harness.history.append import append_run
    from harness.history.store import open_history, shown

    url = _url(args)
    found = runs_from_results([Path(p) for p in args.results])
    engine = open_history(url)
    try:
        added = sum(append_run(engine, run, url) for run in found)
    finally:
        engine.dispose()
    print(f"netharness: history {shown(url)}: {added} run(s) added, {len(found) - added} already there")
    return 0


def analysed_history(args: argparse.Namespace) -> list[Analysed]:
    return analysed_series(_url(args), args.alpha, args.min_change, args.min_headroom_change)


def analysed_series(
    url: str,
    alpha: float = ALPHA,
    min_change: float = DEFAULT_MIN_CHANGE,
    min_headroom_change: float = DEFAULT_MIN_HEADROOM_CHANGE,
) -> list[Analysed]:
    """Every series in the history at ``url``, with its steps."""
    from harness.history.series import analyse, load_series
    from harness.history.store import open_history

    engine = open_history(url)
    try:
        series = load_series(engine, url)
    finally:
        engine.dispose()
    return analyse(series, alpha=alpha, min_change=min_change, min_headroom_change=min_headroom_change)


def cmd_regressions(args: argparse.Namespace) -> int:
    analysed = analysed_history(args)
    newest = [a for a in analysed if a.newest_commit_regressed]
    stepped = [a for a in analysed if a.steps]
    print(f"netharness: {len(analysed)} series, {sum(len(a.steps) for a in analysed)} steps")
    for one in stepped:
        for step in one.steps:
            print(describe_step(one, step))
    if newest:
        commits = sorted({a.series.commits[-1] for a in newest})
        print(
            f"netharness: FAILED: the newest commit ({', '.join(commits)}) starts a regression in {len(newest)} series"
        )
        return 1
    return 0


def describe_step(one: Analysed, step: Any) -> str:
    series = one.series
    what = "REGRESSION" if step.regression else "improvement"
    where = f"{series.node} [{series.fingerprint[:8]}]"
    if series.kind == "benchmark":
        size = f"{_percent(step.ratio)} [{_percent(step.low)}, {_percent(step.high)}]"
        level = f"{step.before * 1e3:.4g} -> {step.after * 1e3:.4g} ms"
    else:
        size = f"x{step.ratio:.3g} [{step.low:.3g}, {step.high:.3g}]"
        level = f"headroom {step.before:.3g} -> {step.after:.3g}"
    return f"  {what}: {series.label} on {where}: {size} at commit {step.commit} ({level}, p = {step.p_value:.2g})"


def _percent(ratio: float) -> str:
    return f"{(ratio - 1) * 100:+.1f}%"


def cmd_report(args: argparse.Namespace) -> int:
    from harness.history.store import shown
    from reports.trend import write_trend_page

    analysed = analysed_history(args)
    out = Path(args.out).absolute()
    page = write_trend_page(analysed, out, source=shown(_url(args)), force=args.force)
    print(f"netharness: {page}")
    return 0


def runs_from_results(paths: list[Path]) -> list[RunInput]:
    """One run per folder, machine and commit (a run folder's conformance and benchmark files are one run)."""
    from reports.load import BenchmarkFile, load_results

    loaded = load_results(paths)
    groups: dict[tuple[Path, str, str], list[Any]] = defaultdict(list)
    items: list[Any] = [*loaded.benchmarks, *loaded.conformance]
    for item in items:
        # Short and long spellings of one commit are one commit (git rev-parse --short gives 7+).
        groups[(item.path.parent, item.machine, item.commit[:7])].append(item)
    found = []
    for (folder, _, _), files in sorted(groups.items()):
        bench = [f for f in files if isinstance(f, BenchmarkFile)]
        conformance = [f for f in files if not isinstance(f, BenchmarkFile)]
        found.append(run_from_files(bench, conformance, folder))
    return found


def run_from_files(bench: list[Any], conformance: list[Any], folder: Path, report: str = "") -> RunInput:
    """A :class:`RunInput` from loaded :mod:`reports.load` files of one run."""
    from harness.history.append import Machine, RunInput, content_key

    start = conformance[0].start if conformance else {}
    first = bench[0] if bench else None
    machine_info = start.get("machine") or {}
    bench_machine = first.machine_info if first else {}
    cpu: dict[str, Any] = bench_machine["cpu"] if isinstance(bench_machine.get("cpu"), dict) else {}
    machine = Machine(
        node=str(machine_info.get("node") or bench_machine.get("node") or "unknown"),
        arch=str(machine_info.get("machine") or bench_machine.get("machine") or "unknown"),
        cpu_count=_int(machine_info.get("cpu_count") or cpu.get("count")) or 0,
        info={"conformance": machine_info, "benchmarks": {k: v for k, v in bench_machine.items() if k != "cpu"}},
    )
    commit_info = first.commit_info if first else {}
    commit = str(start.get("commit") or (first.commit if first else "unknown"))
    versions = {name: str((d or {}).get("version", "")) for name, d in (start.get("backends") or {}).items()}
    if bench_machine.get("python_version"):
        versions["python"] = str(bench_machine["python_version"])
    sources = [f.path for f in [*conformance, *bench]]
    checks = [r for f in conformance for r in f.checks if r.get("check") != "benchmark"]
    seed = start.get("seed")
    if not (isinstance(seed, int) and not isinstance(seed, bool)):
        seed = _bench_seed(bench)
    devices = {str(start.get("device") or "")} | {
        str(b.get("extra_info", {}).get("device", "")) for f in bench for b in f.benchmarks
    }
    return RunInput(
        key=content_key(*(p.read_bytes() for p in sorted(sources))),
        machine=machine,
        time=_time(start, first),
        commit=commit[:64],
        dirty=commit_info.get("dirty") if isinstance(commit_info.get("dirty"), bool) else None,
        branch=str(commit_info.get("branch") or ""),
        seed=seed,
        device=",".join(sorted(d for d in devices if d)) or "unknown",
        versions=versions,
        partial=any(f.partial for f in conformance),
        source=str(folder),
        report=report,
        benchmarks=[b for f in bench for b in f.benchmarks],
        checks=checks,
    )


def _bench_seed(bench: list[Any]) -> int | None:
    seeds = {b.get("extra_info", {}).get("seed") for f in bench for b in f.benchmarks}
    seed = seeds.pop() if len(seeds) == 1 else None
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def _time(start: dict[str, Any], first: Any) -> float:
    if isinstance(start.get("time"), int | float):
        return float(start["time"])
    if first is not None and first.datetime:
        try:
            return dt.datetime.fromisoformat(first.datetime).timestamp()
        except ValueError:
            pass
    return 0.0


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def append_after_run(history: str | None, out: Path) -> int:
    """Add the run in ``out`` to the history; 0, or 2 with one line when the history could not be written.

    The run's files are already written: a history that fails loses none of them.
    """
    from harness.history.append import append_run
    from harness.history.store import HistoryError, open_history, resolve_history, shown
    from reports.load import BenchmarkFile, ConformanceFile, load_file

    url = resolve_history(history)
    if url is None:
        return 0

    try:
        files = [load_file(p) for p in (out / "conformance.jsonl", out / "benchmarks.json") if p.exists()]
        bench = [f for f in files if isinstance(f, BenchmarkFile)]
        conformance = [f for f in files if isinstance(f, ConformanceFile)]
        run = run_from_files(bench, conformance, out, report=str(out / "report.html"))
        if run.dirty is None or not run.branch:
            run.dirty, run.branch = _git_state(run.dirty, run.branch)
        engine = open_history(url)
        try:
            append_run(engine, run, url)
        finally:
            engine.dispose()
    except (HistoryError, UsageError) as exc:
        print(f"netharness: error: history not written ({exc}); the run's files are in {out}", file=sys.stderr)
        return 2
    print(f"netharness: history: {shown(url)}", flush=True)
    return trend_page_after_run(url, out)


TREND_FOLDER = "history"
"""In a run's output folder: the trend page of the history the run was added to."""


def trend_page_after_run(url: str, out: Path) -> int:
    """Write the history's trend page into the run's folder and link it from the run's report.

    0, or 2 with one line when it could not be made (the run and its history entry stand).
    """
    from harness.history.store import HistoryError, shown
    from reports.html import link_trend_page
    from reports.trend import write_trend_page

    try:
        report = out / "report.html"
        page = write_trend_page(
            analysed_series(url), out / TREND_FOLDER, source=shown(url), run_report=report if report.exists() else None
        )
    except (HistoryError, UsageError, OSError) as exc:
        print(f"netharness: error: trend page not written ({exc}); the run is in the history", file=sys.stderr)
        return 2
    link_trend_page(report, page)
    print(f"netharness: trends across commits: {page}", flush=True)
    return 0


def _git_state(dirty: bool | None, branch: str) -> tuple[bool | None, str]:
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    if dirty is None:
        status = git("status", "--porcelain", "--untracked-files=no")
        dirty = None if status is None else bool(status.strip())
    if not branch:
        branch = (git("rev-parse", "--abbrev-ref", "HEAD") or "").strip()
    return dirty, branch
