"""``netharness run``: conformance, then benchmarks, on every backend; then the report.

Each backend runs in its own supervised pytest processes (:mod:`harness.running.supervisor`), so a
backend that crashes its interpreter loses no other backend's results, and its crashed
test is named. One crash budget (:mod:`harness.budget`) spans the run: once a backend has
crashed or timed out ``--crash-budget`` times, in its conformance and benchmark steps
together, its remaining tests are recorded as not run (a step not started yet gets one
record), the run goes on with the other backends, and its ``run_end`` record names the
backend and why. One run owns its output folder (a lock); the previous run's files are moved
to ``previous/`` until the new report is complete, so a partial run never sits beside a
stale complete report.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import secrets
import shutil
import sys
from pathlib import Path

from harness.bench.finished import FINISHED_SUFFIX, finished_benchmarks
from harness.bench.settings import PEAK_ENV, PRECISIONS_ENV, SINGLE_THREAD_ENV, single_thread_environment
from harness.budget import CrashBudget, not_run_record
from harness.childprocess import RECORD_KEY_BYTES
from harness.commands import outdir
from harness.contract.devices import check_device
from harness.contract.manager import load_backends
from harness.errors import UsageError
from harness.results import (
    append_record,
    git_commit,
    machine_info,
    reject_unsealed,
    run_end_record,
    run_start_record,
)
from harness.running.supervisor import EXIT_INTERRUPTED, StepOutcome, run_step, terminate_as_interrupt

Steps = list[tuple[str, str, StepOutcome]]
"""(title, backend, outcome) of each step that ran, in order."""


def run_main_job(args: argparse.Namespace, out: Path, suites: Path) -> int:
    registry = load_backends()
    selected = registry.select([args.backend], strict=args.strict_backends)
    for failure in registry.failures:
        print(f"netharness: {failure}", file=sys.stderr, flush=True)
    if not selected:
        causes = "; ".join(str(f) for f in registry.failures)
        raise UsageError(f"no backend to run: every selected plugin failed to load: {causes}")
    check_device(args.device)
    outdir.claim(out, force=getattr(args, "force", False))
    if args.clock == "cpu":
        how = (
            "on one intra-op thread" if single_thread_environment(dict(os.environ)) else "on the threads the shell set"
        )
        print(
            f"netharness: --clock=cpu: the benchmarks run {how} (set {SINGLE_THREAD_ENV[0]} to choose): the CPU time"
            " of several threads is coarse and counts their spin-waits",
            flush=True,
        )
    with outdir.output_lock(out), terminate_as_interrupt():
        had_previous = outdir.set_aside_last_report(out)
        conformance, checks = out / "conformance.jsonl", out / "benchmark-checks.jsonl"
        describe = {n: {"version": registry.backends[n].version} for n in selected}
        key = secrets.token_bytes(RECORD_KEY_BYTES)  # seals every record of the run: nothing else stays in its files
        for path in (conformance, checks):
            append_record(
                path,
                run_start_record(
                    seed=args.seed,
                    device=args.device,
                    backends=describe,
                    plugin_failures=[str(f) for f in registry.failures],
                    commit=git_commit(),
                ),
                key,
            )
        parts = out / outdir.PARTS
        shutil.rmtree(parts, ignore_errors=True)
        parts.mkdir()
        budget = CrashBudget(args.crash_budget)
        steps, interrupted = run_steps(args, selected, suites, out, parts, budget, key)
        step_files = {p.with_name(p.name.removesuffix(FINISHED_SUFFIX)) for p in parts.glob("bench-*")}
        merge_benchmarks(sorted(step_files), out / "benchmarks.json")
        shutil.rmtree(parts, ignore_errors=True)
        problems = verdict_problems(
            steps, selected, strict=args.strict_backends, interrupted=interrupted, stopped=budget.stopped()
        )
        status = EXIT_INTERRUPTED if interrupted else (1 if problems or any(o.exit_code for *_, o in steps) else 0)
        for path in (conformance, checks):
            append_record(
                path,
                run_end_record(
                    exitstatus=status,
                    interrupted=interrupted,
                    crashed=[t for *_, o in steps for t in o.crashed],
                    crash_budget=budget.limit,
                    stopped_backends=budget.stopped(),
                    problems=problems,
                ),
                key,
            )
            reject_unsealed(path, 0, key)  # a line written from outside any step (a process a backend left running)
        total = 2 * len(selected) + 1
        print(f"netharness [{total}/{total}] report", flush=True)
        from reports.commands import report_from
        from reports.verdicts import end_of_run_lines

        inputs = [p for p in (conformance, out / "benchmarks.json") if p.exists()]
        data = report_from(inputs, out)
        print("netharness: verdict", flush=True)
        for line in end_of_run_lines(data, selected):
            print(f"  {line}", flush=True)
        outdir.finish(out, complete=not interrupted)
        if had_previous:
            if not interrupted:
                outdir.drop_previous(out)
            else:
                print(f"netharness: the last complete report is kept in {out / outdir.PREVIOUS}", flush=True)
        print(f"netharness: {out / 'summary.md'}\nnetharness: {out / 'report.html'}", flush=True)
    # After the lock is released and every file is written: a history that fails loses nothing.
    from harness.commands.history import append_after_run

    if append_after_run(getattr(args, "history", None), out) and status in (0, 1):
        return 2
    return status


def run_steps(
    args: argparse.Namespace,
    selected: list[str],
    suites: Path,
    out: Path,
    parts: Path,
    budget: CrashBudget,
    key: bytes,
) -> tuple[Steps, bool]:
    """Conformance, then benchmarks, of each selected backend, each step a supervised pytest process.

    Returns the steps and whether a stop request (SIGINT, SIGTERM) ended the run early: a
    request during a step ends that step (what finished is kept), one between steps ends
    the loop; either way the caller still writes the report. Every step counts against
    ``budget``; the step of a backend whose budget is spent is not started.
    """
    # --timeout: the checkout's pyproject sets it, a user's project may not.
    common = [f"--device={args.device}", f"--seed={args.seed}", "-p", "no:cacheprovider", "--timeout=300"]
    if args.strict_backends:
        common.append("--strict-backends")
    env = {"NETHARNESS_ARTIFACTS": str((out / "artifacts").resolve())}
    conformance, checks = out / "conformance.jsonl", out / "benchmark-checks.jsonl"
    steps: Steps = []
    total = 2 * len(selected) + 1
    number = 0
    try:
        for title in ("conformance", "benchmarks"):
            for name in selected:
                number += 1
                results = conformance if title == "conformance" else checks
                if budget.spent(name):
                    print(f"netharness [{number}/{total}] {title}: {name}: not run", flush=True)
                    tests = suites if title == "conformance" else suites / "bench_net.py"
                    record_step_not_run(title, name, results, tests, budget, args, key)
                    continue
                print(f"netharness [{number}/{total}] {title}: {name}", flush=True)
                if title == "conformance":
                    pytest_args = [str(suites), f"--ignore={suites / 'bench_net.py'}", "-q", "-rfEs"]
                    step_env = env
                else:
                    pytest_args = [
                        str(suites / "bench_net.py"),
                        "--benchmark-enable",
                        f"--benchmark-json={parts / f'bench-{name}.json'}",
                        "--benchmark-save-data",
                        "--benchmark-columns=median,iqr,rounds",
                        f"--clock={args.clock}",
                        "-q",
                        *(["-k", "not batch256"] if args.quick else []),
                    ]
                    step_env = {**env, "NETHARNESS_BENCH_SECONDS": "0.2" if args.quick else "1.0"}
                    step_env[PEAK_ENV] = peak_once()
                    if args.quick:
                        step_env[PRECISIONS_ENV] = "float32,bfloat16"
                    if args.clock == "cpu":
                        step_env.update(single_thread_environment(dict(os.environ)))
                outcome = run_step(
                    [*pytest_args, *common, f"--backend={name}"],
                    results,
                    env=step_env,
                    seed=args.seed,
                    device=args.device,
                    budget=budget,
                    key=key,
                )
                steps.append((title, name, outcome))
                if outcome.interrupted:
                    return steps, True
                if outcome.exit_code in (3, 4):  # pytest's internal and usage errors: the next step would fail alike
                    raise UsageError(f"the {title} step of {name} stopped with pytest exit code {outcome.exit_code}")
    except KeyboardInterrupt:  # the stop request landed between two steps
        return steps, True
    return steps, False


STEP_CHECKS = {"conformance": "conformance", "benchmarks": "benchmark"}
"""The check a step's single not-run record names (each benchmark test's check is ``benchmark``)."""


def record_step_not_run(
    title: str, name: str, results: Path, tests: Path, budget: CrashBudget, args: argparse.Namespace, key: bytes
) -> None:
    """One ``not_run`` record for a step not started because the backend's budget is spent (its
    tests were never collected, so they cannot be named one by one)."""
    test = {"test_id": str(tests), "backend": name, "check": STEP_CHECKS[title], "config": f"the whole {title} step"}
    reason = f"{budget.reason(name)}; the {title} step was not started"
    append_record(results, not_run_record(test, reason, seed=args.seed, device=args.device), key)
    print(f"netharness: STOPPED: {reason}", flush=True)


@functools.cache
def peak_once() -> str:
    """This machine's CPU matmul peak, measured once per run and handed to every benchmark step,
    so one run's backends share one figure (each process measuring its own gave 58-159 GFLOP/s)."""
    from harness.bench.machine import measure_peak_gflops

    return repr(measure_peak_gflops())


def verdict_problems(
    steps: Steps, selected: list[str], *, strict: bool, interrupted: bool, stopped: dict[str, str]
) -> list[str]:
    """What makes the run fail beyond a failed check: crashes, dead processes, spent crash budgets,
    backends that ran nothing."""
    problems = []
    for title, name, outcome in steps:
        problems += [f"{name}: {title} test {test} crashed the process" for test in outcome.crashed]
        if outcome.died_outside_a_test:
            problems.append(f"{name}: {title}: {outcome.died_outside_a_test}")
    problems += [f"{name}: stopped: {reason}; its remaining tests were not run" for name, reason in stopped.items()]
    if strict:
        for name in selected:
            ran = sum(o.ran.get(name, 0) for title, n, o in steps if title == "conformance" and n == name)
            if ran == 0 and not interrupted:
                problems.append(f"{name}: ran no conformance check (--strict-backends)")
    for problem in problems:
        print(f"netharness: FAILED: {problem}", flush=True)
    return problems


def merge_benchmarks(parts: list[Path], target: Path) -> None:
    """One pytest-benchmark JSON from the per-backend ones (machine and commit info from the first).

    A step's JSON holds what its last process timed; the benchmarks that an earlier process of
    the step finished before it crashed come from the lines kept beside it
    (:mod:`harness.bench.finished`).
    """
    documents = []
    benchmarks: list[dict[str, object]] = []
    for part in parts:
        try:
            document = json.loads(part.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            document = None
        timed = list(document.get("benchmarks", [])) if isinstance(document, dict) else []
        if isinstance(document, dict):
            documents.append(document)
        names = {b.get("fullname") for b in timed if isinstance(b, dict)}
        benchmarks += timed + [b for b in finished_benchmarks(part) if b["fullname"] not in names]
    if not benchmarks and not documents:
        return
    merged = dict(documents[0]) if documents else {"machine_info": machine_info(), "commit_info": {}}
    merged["benchmarks"] = benchmarks
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(merged), encoding="utf-8")
    tmp.replace(target)
