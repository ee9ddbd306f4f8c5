"""The answer first: one verdict per backend, and the failures, for the page's first screen,
``summary.md`` and the end of ``netharness run``.

A backend *conforms* when at least one of its checks ran and none failed (``failed``,
``error``, ``crashed``, or a known deviation that now passes) or was not run (``not_run``: its
crash budget was spent, see :mod:`harness.budget`). A backend whose crash budget was spent is
*partial*, with the reason (the run_end record's, else its not-run records'). Its verdict
also says which capabilities it does not declare (from its capability skips, in one
sentence), its speed against eager at batch ``VERDICT_BATCH`` with the 95% interval, and its
worst headroom. With several machines there is one verdict per backend and machine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from harness.budget import NOT_RUN
from harness.conformance.causes import Cause, cause_lines, root_causes
from reports.model import ReportData
from reports.numbers import interval, sig, times
from reports.records import FAILING, failure_summary, not_run_reason, reproduce_from_record, skipped_capability
from reports.stats import BASELINE_BACKEND

VERDICT_BATCH = 64
COUNT_ORDER = ("passed", "failed", "error", "crashed", NOT_RUN, "xfailed", "xpassed", "skipped")
KNOWN_DEVIATION_OUTCOMES = ("xfailed", "xpassed")
"""Outcomes of checks the backend declared a known deviation (pytest's strict xfail)."""
PHASE_NAMES = {"forward": "forward", "train_step": "train step"}


@dataclass(frozen=True)
class Speed:
    """One backend's speed against eager at one phase and device, batch ``VERDICT_BATCH``."""

    phase: str
    device: str
    speedup: float
    low: float
    high: float
    verdict: str
    unstable: str
    baseline_unstable: str
    dtype: str = "float32"
    """Both sides' precision: eager is timed at the backend's own (openvino's bfloat16 against eager's)."""

    def text(self, *, device: bool = False) -> str:
        where = f" {self.dtype}" + (f" on {self.device}" if device else "")  # every ratio names its precision
        bounds = interval(self.low, self.high)
        return f"{PHASE_NAMES.get(self.phase, self.phase)}{where} {times(self.speedup)}" + (
            f" {bounds}" if bounds else ""
        )

    def warnings(self) -> list[tuple[str, str]]:
        """(flag, why) for an unstable baseline and an unstable backend timing."""
        found = []
        if self.baseline_unstable:
            found.append((f"{BASELINE_BACKEND} baseline unstable", self.baseline_unstable))
        if self.unstable:
            found.append(("unstable", self.unstable))
        return found


@dataclass(frozen=True)
class Verdict:
    backend: str
    machine: str
    """The machine, when the report holds several; '' otherwise."""
    counts: dict[str, int]
    undeclared: list[str]
    capability_skips: int
    overrides: int
    known_deviations: int
    speeds: list[Speed] = field(default_factory=list)
    baseline: bool = False
    """This backend is the baseline the speeds are measured against."""
    worst_headroom: float = math.nan
    worst_where: str = ""
    stopped: str = ""
    """Why the backend's remaining tests were not run (its crash budget was spent); '' if they all ran."""

    @property
    def label(self) -> str:
        return f"{self.backend} ({self.machine})" if self.machine else self.backend

    @property
    def failing(self) -> int:
        return sum(self.counts.get(outcome, 0) for outcome in FAILING)

    @property
    def not_run(self) -> int:
        return self.counts.get(NOT_RUN, 0)

    @property
    def ran(self) -> int:
        return sum(count for outcome, count in self.counts.items() if outcome not in ("skipped", NOT_RUN))

    @property
    def status(self) -> str:
        """'conforms', 'N failures', 'N not run', 'ran no check' or 'no conformance results';
        'partial: ...' when the crash budget stopped the backend."""
        parts = []
        if self.failing:
            parts.append(f"{self.failing} failure{'s' if self.failing != 1 else ''}")
        if self.not_run:
            parts.append(f"{self.not_run} not run")
        if parts:
            status = ", ".join(parts)
        elif not self.counts:
            status = "no conformance results"
        else:
            status = "conforms" if self.ran else "ran no check"
        if self.stopped and status == "conforms":  # a partial run never says it conforms
            return f"partial: {self.ran} ran, no failure so far"
        return f"partial: {status}" if self.stopped else status

    @property
    def state(self) -> str:
        """passed, failed or none: the colour of the verdict."""
        if self.failing or self.not_run or self.stopped:
            return "failed"
        return "passed" if self.ran else "none"

    @property
    def qualifiers(self) -> str:
        """'2 under a widened tolerance, 1 known deviation', or ''."""
        parts = []
        if self.overrides:
            parts.append(f"{self.overrides} under a widened tolerance")
        if self.known_deviations:
            parts.append(f"{self.known_deviations} known deviation{'s' if self.known_deviations != 1 else ''}")
        return ", ".join(parts)

    @property
    def undeclared_sentence(self) -> str:
        """'Does not declare backward or losses (12 checks skipped).', or ''."""
        if not self.undeclared:
            return ""
        names = self.undeclared
        listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
        skipped = self.capability_skips
        return f"Does not declare {listed} ({skipped} check{'s' if skipped != 1 else ''} skipped)."

    @property
    def headroom_text(self) -> str:
        if math.isnan(self.worst_headroom):
            return ""
        value = "exact" if math.isinf(self.worst_headroom) else sig(self.worst_headroom)
        return f"{value} ({self.worst_where})" if self.worst_where else value


@dataclass(frozen=True)
class Failure:
    backend: str
    machine: str
    check: str
    config: str
    outcome: str
    message: str
    reproduce: str


def verdicts(data: ReportData) -> list[Verdict]:
    """One verdict per backend (per backend and machine when there are several machines)."""
    conf, bench = data.conf, data.bench
    several = len(set(conf["machine"]) | set(bench["machine"])) > 1
    pairs = sorted(set(zip(conf["backend"], conf["machine"])) | set(zip(bench["backend"], bench["machine"])))
    if not several:
        pairs = sorted({(backend, "") for backend, _ in pairs})
    found = []
    for backend, machine in pairs:
        records = conf[(conf["backend"] == backend) & ((conf["machine"] == machine) if machine else True)]
        found.append(_verdict(data, backend, machine, records))
    return found


def _verdict(data: ReportData, backend: str, machine: str, records: pd.DataFrame) -> Verdict:
    counts = {str(k): int(v) for k, v in records["outcome"].value_counts().items()}
    capabilities = [skipped_capability(str(o), str(r)) for o, r in zip(records["outcome"], records["reason"])]
    undeclared = sorted({c for c in capabilities if c})
    passed = records["outcome"] == "passed"
    overrides = int((passed & (records["tolerance_source"] == "override")).sum())
    deviations = int((records["outcome"] == "xfailed").sum())
    worst, where = math.nan, ""
    # A known deviation's margin says nothing about the checks that decide the verdict; its
    # count is reported apart (qualifiers).
    measured = records[~records["outcome"].isin(KNOWN_DEVIATION_OUTCOMES)].dropna(subset=["headroom"])
    if not measured.empty:
        row = measured.loc[measured["headroom"].idxmin()]
        worst, where = float(row["headroom"]), f"{row['check']} {row['config']}"
    return Verdict(
        backend=backend,
        machine=machine,
        counts=counts,
        undeclared=undeclared,
        capability_skips=sum(1 for c in capabilities if c),
        overrides=overrides,
        known_deviations=deviations,
        speeds=_speeds(data, backend, machine),
        baseline=backend == BASELINE_BACKEND and not data.speedup_note,
        worst_headroom=worst,
        worst_where=where,
        stopped=_stopped(data, backend, machine, records),
    )


def _stopped(data: ReportData, backend: str, machine: str, records: pd.DataFrame) -> str:
    """Why ``backend``'s results are partial: the crash budget stopped it (its run's run_end says),
    its run did not finish or was interrupted, or it has not-run records; '' when they are complete."""
    for run in data.results.conformance:
        if backend in run.stopped and (not machine or run.machine == machine):
            return run.stopped[backend]
    for run in data.results.conformance:
        mine = any(check.get("backend") == backend for check in run.checks)
        if mine and run.partial and (not machine or run.machine == machine):
            return "the run did not finish" if run.end is None else "the run was interrupted"
    not_run = records[records["outcome"] == NOT_RUN]
    return not_run_reason(str(not_run["reason"].iloc[0])) if not not_run.empty else ""


def _speeds(data: ReportData, backend: str, machine: str) -> list[Speed]:
    rows = data.speedups
    if rows.empty:
        return []
    rows = rows[(rows["backend"] == backend) & (rows["batch"] == VERDICT_BATCH)]
    if machine:
        rows = rows[rows["machine"] == machine]
    order = {phase: index for index, phase in enumerate(PHASE_NAMES)}
    rows = rows.assign(_order=rows["phase"].map(order).fillna(len(order))).sort_values(["_order", "device", "dtype"])
    return [
        Speed(
            str(r.phase),
            str(r.device),
            float(r.speedup),
            float(r.ci_low),
            float(r.ci_high),
            str(r.verdict),
            str(r.unstable),
            str(r.baseline_unstable),
            str(r.dtype),
        )
        for r in rows.itertuples()
    ]


def failures(conf: pd.DataFrame) -> list[Failure]:
    """Every failing record, with the first line of its message and the command that reproduces it."""
    bad = conf[conf["outcome"].isin(FAILING)].sort_values(["backend", "check", "config", "machine"])
    several = conf["machine"].nunique() > 1
    found = []
    for r in bad.itertuples():
        reason = str(r.reason)
        message = failure_summary(reason)
        if r.outcome == "xpassed":
            message = f"passed, but the backend declares it a known deviation (strict xfail): {message}".rstrip(": ")
        found.append(
            Failure(
                backend=str(r.backend),
                machine=str(r.machine) if several else "",
                check=str(r.check),
                config=str(r.config),
                outcome=str(r.outcome),
                message=message or "(no message recorded)",
                reproduce=reproduce_from_record(reason, str(r.test_id), str(r.backend), str(r.device), r.seed),
            )
        )
    return found


def causes(conf: pd.DataFrame) -> list[Cause]:
    """The failures grouped by root cause, each backend's in the order to fix them.

    See :mod:`harness.conformance.causes`."""
    if conf.empty:
        return []
    bad = conf[conf["outcome"].isin(FAILING)]
    several = conf["machine"].nunique() > 1
    records = []
    for row in bad.to_dict("records"):
        if several:  # one group list per backend and machine
            row["backend"] = f"{row['backend']} ({row['machine']})"
        records.append(row)
    return root_causes(
        records,
        lambda r: reproduce_from_record(
            str(r["reason"]), str(r["test_id"]), str(r["backend"]).split(" (")[0], str(r["device"]), r["seed"]
        ),
    )


def other_skips(conf: pd.DataFrame) -> list[tuple[str, str, int]]:
    """(backend, reason, count) of the skips that are not capability skips: these may hide a problem."""
    skips = conf[conf["outcome"] == "skipped"]
    skips = skips[skips["reason"].map(lambda reason: skipped_capability("skipped", str(reason)) is None).astype(bool)]
    grouped = skips.groupby(["backend", "reason"]).size()
    return [(str(backend), str(reason), int(count)) for (backend, reason), count in grouped.items()]


def verdict_line(verdict: Verdict) -> str:
    """One plain-text line: verdict; capabilities not declared; speed against eager; worst headroom."""
    counts = ", ".join(f"{verdict.counts[o]} {outcome_label(o)}" for o in COUNT_ORDER if verdict.counts.get(o))
    details = "; ".join(part for part in (counts, verdict.qualifiers) if part)
    parts = [f"{verdict.label}: {verdict.status}" + (f" ({details})" if details else "")]
    if verdict.undeclared_sentence:
        parts.append(verdict.undeclared_sentence[0].lower() + verdict.undeclared_sentence[1:-1])
    if verdict.baseline:
        parts.append(f"the speed baseline at batch {VERDICT_BATCH}")
    several_devices = len({speed.device for speed in verdict.speeds}) > 1
    clauses = []
    for speed in verdict.speeds:
        clause = speed.text(device=several_devices)
        if not math.isnan(speed.low):
            clause += f" {speed.verdict}"
        if speed.baseline_unstable:
            clause += f" ({BASELINE_BACKEND} baseline UNSTABLE)"
        if speed.unstable:
            clause += " (UNSTABLE)"
        clauses.append(clause)
    if clauses:
        parts.append(f"vs {BASELINE_BACKEND} at batch {VERDICT_BATCH}: {', '.join(clauses)}")
    if verdict.headroom_text:
        parts.append(f"worst headroom {verdict.headroom_text}")
    if verdict.stopped:
        parts.append(f"stopped: {verdict.stopped}")
    return "; ".join(parts)


def outcome_label(outcome: str) -> str:
    """An outcome in words: ``not run`` for ``not_run``."""
    return outcome.replace("_", " ")


def end_of_run_lines(data: ReportData | None, backends: Sequence[str] = ()) -> list[str]:
    """The verdict lines that end ``netharness run``: one per backend, in ``backends`` order.

    ``data`` is the run's report data (None when the run left no results file). A backend in
    ``backends`` with no record at all still gets its line ('no conformance results').
    """
    found = verdicts(data) if data is not None else []
    rank = {name: index for index, name in enumerate(backends)}
    found.sort(key=lambda verdict: (rank.get(verdict.backend, len(rank)), verdict.backend, verdict.machine))
    missing = [name for name in backends if name not in {verdict.backend for verdict in found}]
    found += [Verdict(name, "", {}, [], 0, 0, 0) for name in missing]
    lines = [f"  {verdict_line(verdict)}" for verdict in found]
    if data is not None and not data.conf.empty:
        lines.append(
            "  (these count conformance checks; pytest's counts above also hold plugin_loaded, one test per"
            " installed plugin, and the benchmark step's tests, so they differ)"
        )
    grouped = causes(data.conf) if data is not None else []
    if grouped:
        grouped.sort(key=lambda cause: rank.get(cause.backend, len(rank)))  # stable: each backend's order kept
        lines.append("  failures by root cause:")
        lines += cause_lines(grouped, indent="    ")
    return lines
