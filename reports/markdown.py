"""``summary.md``: a short Markdown summary that fits a CI job summary (at most ~60 lines).

One table row per backend (outcome counts, passes under a widened tolerance, speed against
eager at batch 64 with its interval and any stability warning, worst headroom, verdict), the
backends the crash budget stopped and why, the capabilities each backend does not declare in
one line, the overrides, the unstable benchmarks, then the failures with the command that
reproduces each.

Every string from the results (backends, machines, commits, checks, reasons, paths) goes
through :func:`~reports.escaping.markdown_text`: nothing in a results file becomes a link,
raw HTML, a table column or a new line here.
"""

from __future__ import annotations

import pandas as pd

from reports.escaping import markdown_code, markdown_command, markdown_text
from reports.model import ReportData
from reports.numbers import interval, times
from reports.stats import BASELINE_BACKEND
from reports.tables import outcome_counts
from reports.verdicts import PHASE_NAMES, VERDICT_BATCH, Verdict, causes, failures, outcome_label, verdicts

SUMMARY_BATCH = VERDICT_BATCH
MAX_FAILURES = 15
MAX_REASON = 120
MAX_PARTIAL_LINES = 3
MAX_NOTES = 5
SPEED_COLUMNS = (
    ("forward", f"forward speedup vs eager @{SUMMARY_BATCH}"),
    ("train_step", f"train step speedup vs eager @{SUMMARY_BATCH}"),
)
UNSTABLE = "⚠"


def render_summary(data: ReportData) -> str:
    lines = ["# netharness report", ""]
    reasons = data.results.partial_reasons
    if reasons:
        lines.append("> **PARTIAL RUN**: a conformance run did not finish; the counts cover only what it recorded.")
        lines.extend(f"> - {markdown_text(reason)}" for reason in reasons[:MAX_PARTIAL_LINES])
        if len(reasons) > MAX_PARTIAL_LINES:
            lines.append(f"> - … and {len(reasons) - MAX_PARTIAL_LINES} more partial files")
        lines.append("")
    machines = ", ".join(map(markdown_text, data.results.machines)) or "none"
    commits = ", ".join(map(markdown_text, sorted({*data.bench["commit"], *data.conf["commit"]}))) or "unknown"
    clocks = ", ".join(map(markdown_text, sorted(set(data.bench["clock"])))) if not data.bench.empty else ""
    lines.append(
        f"Machines: {machines} · commit {commits}" + (f" · benchmarks timed on the {clocks} clock" if clocks else "")
    )
    lines.append("")
    found = verdicts(data)
    lines.extend(_backend_table(data, found))
    lines.append("")
    if data.conf.empty:
        lines.append("No conformance results.")
    if data.bench.empty:
        lines.append("No benchmark results.")
    elif data.speedup_note:
        lines.append(f"No speedups: {data.speedup_note}.")
    else:
        lines.append(
            f"Speedup = eager's time / the backend's time at batch {SUMMARY_BATCH} (above 1: faster), each cell"
            f" naming its phase and precision, with a 95% bootstrap interval; {UNSTABLE} marks an unstable timing."
        )
    lines.extend(_notes(data, found))
    lines.extend(_causes(data.conf))
    lines.extend(_failures(data.conf))
    return "\n".join(lines).rstrip() + "\n"


def _backend_table(data: ReportData, found: list[Verdict]) -> list[str]:
    counts = outcome_counts(data.conf) if not data.conf.empty else pd.DataFrame()
    outcomes = ["passed", "failed", "error", "skipped", "xfailed"]
    outcomes += [rare for rare in ("crashed", "not_run", "xpassed") if not counts.empty and counts[rare].sum()]
    backends = sorted({*data.bench["backend"], *data.conf["backend"]})
    by_backend: dict[str, list[Verdict]] = {}
    for verdict in found:
        by_backend.setdefault(verdict.backend, []).append(verdict)
    header = [
        "backend",
        *map(outcome_label, outcomes),
        "under override",
        *(title for _, title in SPEED_COLUMNS),
        "worst headroom",
        "verdict",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for backend in backends:
        if backend in counts.index:
            cells = [str(counts.at[backend, outcome]) for outcome in outcomes]
        else:
            cells = ["—"] * len(outcomes)
        mine = by_backend.get(backend, [])
        cells.append(str(sum(verdict.overrides for verdict in mine)))
        cells += [_speed(data, backend, phase) for phase, _ in SPEED_COLUMNS]
        cells.append(_headroom(mine))
        cells.append("; ".join(_status(verdict) for verdict in mine) or "—")
        lines.append("| " + " | ".join([markdown_text(backend), *cells]) + " |")
    return lines


def _status(verdict: Verdict) -> str:
    where = f"{markdown_text(verdict.machine)}: " if verdict.machine else ""
    qualifiers = f" ({verdict.qualifiers})" if verdict.qualifiers else ""
    return f"{where}{verdict.status}{qualifiers}"


def _headroom(mine: list[Verdict]) -> str:
    measured = [verdict for verdict in mine if verdict.headroom_text]
    if not measured:
        return "—"
    worst = min(measured, key=lambda verdict: verdict.worst_headroom)
    return markdown_text(worst.headroom_text)


def _speed(data: ReportData, backend: str, phase: str) -> str:
    if data.bench.empty:
        return "—"
    if backend == BASELINE_BACKEND:
        return "1 (baseline)" if not data.speedup_note else "—"
    rows = data.speedups[
        (data.speedups["backend"] == backend)
        & (data.speedups["phase"] == phase)
        & (data.speedups["batch"] == SUMMARY_BATCH)
    ]
    if rows.empty:
        return "—"
    several = rows["machine"].nunique() > 1 or rows["device"].nunique() > 1
    parts = []
    for row in rows.itertuples():
        bounds = interval(row.ci_low, row.ci_high)
        where = f"{markdown_text(row.machine)}/{markdown_text(row.device)}: " if several else ""
        flags = []
        if row.baseline_unstable:
            flags.append(f"{UNSTABLE} eager unstable")
        if row.unstable:
            flags.append(f"{UNSTABLE} unstable")
        label = f"{PHASE_NAMES.get(str(row.phase), str(row.phase))} {markdown_text(row.dtype)}"
        parts.append(
            f"{where}{label} {times(row.speedup)}" + (f" {bounds}" if bounds else "") + "".join(f" {f}" for f in flags)
        )
    return "; ".join(parts)


def _notes(data: ReportData, found: list[Verdict]) -> list[str]:
    """One line each: backends stopped, capabilities not declared, passes under an override, unstable timings."""
    lines = []
    stopped = [f"{markdown_text(v.label)}: {markdown_text(v.stopped)}" for v in found if v.stopped]
    if stopped:
        lines += ["", "Stopped by the crash budget (their remaining tests not run): " + "; ".join(stopped) + "."]
    undeclared = [
        f"{markdown_text(verdict.label)}: {', '.join(map(markdown_text, verdict.undeclared))} "
        f"({verdict.capability_skips} check{'s' if verdict.capability_skips != 1 else ''} skipped)"
        for verdict in found
        if verdict.undeclared
    ]
    if undeclared:
        lines += [
            "",
            "Capabilities not declared (their checks are skipped, not failed): " + "; ".join(undeclared) + ".",
        ]
    conf = data.conf
    if not conf.empty:
        overridden = conf[(conf["outcome"] == "passed") & (conf["tolerance_source"] == "override")]
        notes = []
        for (backend, check, reason), group in overridden.groupby(["backend", "check", "tolerance_reason"]):
            factor = group["tolerance_factor"].max()
            widened = f"{times(factor)} the default" if not pd.isna(factor) else "widened"
            notes.append(
                f"{markdown_text(backend)} {markdown_code(check)} ({len(group)} configs, {widened}: "
                f"{markdown_text(reason)})"
            )
        if notes:
            shown = notes[:MAX_NOTES] + ([f"… and {len(notes) - MAX_NOTES} more"] if len(notes) > MAX_NOTES else [])
            lines += ["", "Passed only under a widened tolerance (override): " + "; ".join(shown) + "."]
    if not data.bench.empty:
        frame = data.pooled
        unstable = frame[frame["unstable"] != ""]
        if not unstable.empty:
            named = [
                f"{markdown_text(r.backend)} {markdown_text(r.phase)} batch {r.batch} ({markdown_text(r.unstable)})"
                for r in unstable.head(MAX_NOTES).itertuples()
            ]
            more = f"; … and {len(unstable) - MAX_NOTES} more" if len(unstable) > MAX_NOTES else ""
            lines += ["", f"{UNSTABLE} {len(unstable)} unstable benchmark timing(s): " + "; ".join(named) + more + "."]
    return lines


def _causes(conf: pd.DataFrame) -> list[str]:
    """The failures grouped by root cause, each backend's numbered in the order to fix them."""
    found = causes(conf)
    if not found:
        return []
    lines = ["", f"## Root causes ({len(found)}), in the order to fix them", ""]
    number, backend = 0, None
    for cause in found[:MAX_FAILURES]:
        number, backend = (number + 1 if cause.backend == backend else 1), cause.backend
        text = " ".join(cause.line().split())
        if len(text) > MAX_REASON:
            text = text[: MAX_REASON - 1] + "…"
        lines.append(f"{number}. **{markdown_text(cause.backend)}**: {markdown_text(text)}")
        if cause.reproduce:
            lines.append(f"  - reproduce: {markdown_command(cause.reproduce)}")
    if len(found) > MAX_FAILURES:
        lines.append(f"- … and {len(found) - MAX_FAILURES} more: see report.html")
    return lines


def _failures(conf: pd.DataFrame) -> list[str]:
    if conf.empty:
        return []
    found = failures(conf)
    if not found:
        return []
    lines = ["", f"## Failures ({len(found)})", ""]
    for failure in found[:MAX_FAILURES]:
        where = f" on {markdown_text(failure.machine)}" if failure.machine else ""
        reason = " ".join(failure.message.split())
        if len(reason) > MAX_REASON:  # cut before escaping, so no escape or entity is cut in two
            reason = reason[: MAX_REASON - 1] + "…"
        lines.append(
            f"- **{markdown_text(failure.backend)}** {markdown_code(failure.check)} {markdown_code(failure.config)}"
            f"{where} ({markdown_text(failure.outcome)}): {markdown_text(reason)}"
        )
        if failure.reproduce:
            lines.append(f"  - reproduce: {markdown_command(failure.reproduce)}")
    if len(found) > MAX_FAILURES:
        lines.append(f"- … and {len(found) - MAX_FAILURES} more: see conformance.csv and report.html")
    return lines
