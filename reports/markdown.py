"""``summary.md``: a short Markdown summary that fits a CI job summary (at most ~60 lines).

Every string from the results (backends, machines, commits, checks, reasons, paths) goes
through :func:`~reports.escaping.markdown_text`: nothing in a results file becomes a link,
raw HTML, a table column or a new line here.
"""

from __future__ import annotations

import pandas as pd

from reports.escaping import markdown_code, markdown_text
from reports.model import ReportData
from reports.stats import BASELINE_BACKEND
from reports.tables import outcome_counts

SUMMARY_BATCH = 64
MAX_FAILURES = 25
MAX_REASON = 120
MAX_PARTIAL_LINES = 3
PHASES = (("forward", f"forward vs eager @{SUMMARY_BATCH}"), ("train_step", f"train step vs eager @{SUMMARY_BATCH}"))


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
    lines.append(f"Machines: {machines} · commit {commits}")
    lines.append("")
    lines.extend(_backend_table(data))
    lines.append("")
    if data.conf.empty:
        lines.append("No conformance results.")
    if data.bench.empty:
        lines.append("No benchmark results.")
    elif data.speedup_note:
        lines.append(f"No speedups: {data.speedup_note}.")
    else:
        lines.append(
            f"Speed is median eager time / median backend time at batch {SUMMARY_BATCH} (above 1: faster), "
            "with a 95% bootstrap interval."
        )
    lines.extend(_failures(data.conf))
    return "\n".join(lines).rstrip() + "\n"


def _backend_table(data: ReportData) -> list[str]:
    counts = outcome_counts(data.conf) if not data.conf.empty else pd.DataFrame()
    outcomes = ["passed", "failed", "error", "skipped", "xfailed"]
    outcomes += [rare for rare in ("crashed", "xpassed") if not counts.empty and counts[rare].sum()]
    backends = sorted({*data.bench["backend"], *data.conf["backend"]})
    header = ["backend", *outcomes, *(title for _, title in PHASES)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for backend in backends:
        if backend in counts.index:
            cells = [str(counts.at[backend, outcome]) for outcome in outcomes]
        else:
            cells = ["—"] * len(outcomes)
        cells += [_speed(data, backend, phase) for phase, _ in PHASES]
        lines.append("| " + " | ".join([markdown_text(backend), *cells]) + " |")
    return lines


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
        interval = "" if pd.isna(row.ci_low) else f" [{row.ci_low:.2f}, {row.ci_high:.2f}]"
        where = f"{markdown_text(row.machine)}/{markdown_text(row.device)}: " if several else ""
        parts.append(f"{where}{row.speedup:.2f}×{interval}")
    return "; ".join(parts)


def _failures(conf: pd.DataFrame) -> list[str]:
    if conf.empty:
        return []
    failed = conf[conf["outcome"].isin(["failed", "error", "crashed"])].sort_values(
        ["backend", "check", "config", "machine"]
    )
    if failed.empty:
        return []
    several = conf["machine"].nunique() > 1
    lines = ["", f"## Failures ({len(failed)})", ""]
    for row in failed.head(MAX_FAILURES).itertuples():
        where = f" on {markdown_text(row.machine)}" if several else ""
        reason = " ".join(str(row.reason).split()) or "(no reason recorded)"
        if len(reason) > MAX_REASON:  # cut before escaping, so no escape or entity is cut in two
            reason = reason[: MAX_REASON - 1] + "…"
        lines.append(
            f"- **{markdown_text(row.backend)}** {markdown_code(row.check)} {markdown_code(row.config)}{where} "
            f"({markdown_text(row.outcome)}): {markdown_text(reason)}"
        )
    if len(failed) > MAX_FAILURES:
        lines.append(f"- … and {len(failed) - MAX_FAILURES} more: see conformance.csv and report.html")
    return lines
