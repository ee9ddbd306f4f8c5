"""The report's tables as plain data (header rows and body rows of cells), which one Jinja2
macro renders with autoescaping: no cell is ever markup, whatever the results say.

Numbers are formatted here, by :mod:`reports.numbers`: three significant figures, with the
unit in the cell or the column header. Benchmark tables put each backend's machines side by
side, so the same benchmark on every run reads across one row.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from reports.numbers import MISSING, duration, interval, percent, sig, times
from reports.stability import load_text
from reports.stats import BASELINE_BACKEND
from reports.tables import setup_table

PHASE_LABELS = {"forward": "forward", "train_step": "train step"}

UNSTABLE_MARK = "⚠"
SPEEDUP_STATE = {"faster": "faster", "slower": "slower"}
SPEED_TABLE = "data speed"
"""The class of every speed table: its cells keep to one line (CSS), so stability is a short marker
whose reason is the cell's tooltip and the Stability section's sentence."""
THREAD_SOURCES = {
    "backend": "the backend reports this many intra-op threads",
    "torch": "torch's intra-op threads in the process; the backend reports none, so this is assumed",
}
PAIRING = {
    "paired": ("same process", "eager's prepared object timed in the same process, round by round in turns"),
    "separate": ("two processes", "eager's and the backend's timings from their own benchmark steps"),
}


@dataclass(frozen=True)
class Cell:
    text: str = ""
    cls: str = ""
    title: str = ""
    link: str = ""
    """A path relative to the report folder, already checked by :mod:`reports.artifacts`."""
    note: str = ""
    header: bool = False
    colspan: int = 1
    rowspan: int = 1


@dataclass
class Table:
    id: str
    head: list[list[Cell]]
    body: list[list[Cell]] = field(default_factory=list)
    cls: str = "data"


def head(*names: str) -> list[Cell]:
    return [Cell(name, "text", header=True) for name in names]


def text(value: Any, cls: str = "text", **kwargs: Any) -> Cell:
    """A text cell; a missing value is empty."""
    missing = value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))
    return Cell("" if missing else str(value), cls, **kwargs)


def wide_table(
    bench: pd.DataFrame, table_id: str, value: str, formatter: Callable[[Any], str], unit_note: str = ""
) -> Table:
    """``value`` per benchmark (rows) and backend, each backend's machines side by side (columns)."""
    frame = bench
    # The process's torch threads, not each backend's own: one row holds every backend of one run.
    index = ["device", "phase", "batch"] + [
        c for c in ("dtype", "clock", "process_threads") if frame[c].nunique(dropna=False) > 1
    ]
    several = frame["machine"].nunique() > 1
    columns = sorted(set(zip(frame["backend"], frame["machine"])))
    backends = list(dict.fromkeys(backend for backend, _ in columns))
    labels = {"process_threads": "torch threads"}
    top = [Cell(labels.get(name, name), "text", header=True, rowspan=2 if several else 1) for name in index]
    if several:
        top += [Cell(backend, header=True, colspan=sum(1 for b, _ in columns if b == backend)) for backend in backends]
        header = [top, [Cell(machine, header=True) for _, machine in columns]]
    else:
        header = [top + [Cell(backend, header=True) for backend in backends]]
    table = Table(table_id, header, cls=SPEED_TABLE)
    cells = {(tuple(row[c] for c in index), row["backend"], row["machine"]): row for _, row in frame.iterrows()}
    for key in sorted({tuple(row[c] for c in index) for _, row in frame.iterrows()}, key=_sortable):
        line = [text(part) for part in key]
        for backend, machine in columns:
            row = cells.get((key, backend, machine))
            if row is None:
                line.append(Cell(MISSING, "missing"))
                continue
            unstable = str(row["unstable"])
            line.append(
                Cell(
                    formatter(row[value]) + (f" {UNSTABLE_MARK}" if unstable else ""),  # the reason: the tooltip
                    "unstable" if unstable else "",
                    title=f"unstable: {unstable}" if unstable else unit_note,
                )
            )
        table.body.append(line)
    return table


def _sortable(key: Sequence[Any]) -> tuple[Any, ...]:
    return tuple((0, part) if isinstance(part, int | float) and not pd.isna(part) else (1, str(part)) for part in key)


def threads_cell(threads: Any, source: str) -> Cell:
    """The thread count, marked with where it came from (a tooltip says it in words)."""
    if threads is None or pd.isna(threads):
        return Cell(MISSING, "missing")
    label = f" ({source})" if source else ""
    return Cell(f"{int(threads)}{label}", title=THREAD_SOURCES.get(source, "intra-op threads"))


def _count(value: Any) -> str:
    return MISSING if value is None or pd.isna(value) else str(int(value))


def latency_table(bench: pd.DataFrame) -> Table:
    return wide_table(bench, "latency-table", "median_s", lambda v: sig(float(v) * 1e3), "median latency, ms")


def throughput_table(bench: pd.DataFrame) -> Table:
    return wide_table(bench, "throughput-table", "samples_per_s", sig, "samples per second")


def peak_table(bench: pd.DataFrame) -> Table:
    return wide_table(bench, "peak-table", "peak_fraction", percent, "share of the machine's peak")


def setup_html_table(bench: pd.DataFrame, links: dict[str, str]) -> Table:
    """Compile/export time, the first call and a steady call per benchmark; exported files linked."""
    table = Table(
        "setup-table",
        [
            head("machine", "device", "backend", "phase", "batch", "setup")
            + [Cell(name, header=True) for name in ("setup time", "first call", "steady call", "first / steady")]
            + head("exported file")
        ],
    )
    for row in setup_table(bench).itertuples():
        artifact = str(row.artifact)
        link = links.get(artifact, "")
        shown = link or (artifact.rsplit("/", 1)[-1] if artifact else "")
        title = "" if link or not artifact else f"not in this report's folder: {artifact}"
        table.body.append(
            [
                text(row.machine),
                text(row.device),
                text(row.backend),
                text(row.phase),
                text(row.batch),
                text(row.setup_kind),
                Cell(duration(row.setup_s)),
                Cell(duration(row.first_call_s)),
                Cell(duration(row.median_s)),
                Cell(times(row.first_call_over_median)),
                text(shown, link=link, title=title),
            ]
        )
    return table


def speedup_html_table(speedups: pd.DataFrame) -> Table:
    """Speedup against eager with its interval; coloured only when the interval excludes 1."""
    names = ["device", "dtype", "phase", "batch", "threads", "backend"]
    return _ratio_table(speedups, "speedup-table", names, BASELINE_BACKEND, "eager_median_s", "backend")


def precision_html_table(speedups: pd.DataFrame) -> Table:
    """Each reduced precision's speed against the same backend's float32, with its interval."""
    names = ["backend", "device", "phase", "batch", "threads", "dtype"]
    return _ratio_table(speedups, "precision-table", names, "float32", "float32_median_s", "dtype")


def _ratio_table(
    speedups: pd.DataFrame, table_id: str, names: list[str], baseline: str, baseline_column: str, subject: str
) -> Table:
    several = speedups["machine"].nunique() > 1
    names = (["machine"] if several else []) + names
    paired = subject == "backend"
    table = Table(
        table_id,
        [
            head(*names)
            + [Cell(f"{baseline} median", header=True), Cell(f"{subject} median", header=True)]
            + [Cell("speedup", header=True), Cell("95% interval", header=True)]
            + head("verdict", *(["timed in"] if paired else []), "stability")
        ],
        cls=SPEED_TABLE,
    )
    for row in speedups.itertuples():
        marks, reasons = [], []
        if row.baseline_unstable:
            marks.append(f"{UNSTABLE_MARK} {baseline}")
            reasons.append(f"{baseline} baseline unstable: {row.baseline_unstable}")
        if row.unstable and str(getattr(row, "pairing", "")) == "paired":
            marks.append(f"{UNSTABLE_MARK} pairs")
            reasons.append(f"the per-round ratios are unstable: {row.unstable}")
        elif row.unstable:
            marks.append(f"{UNSTABLE_MARK} {getattr(row, subject)}")
            reasons.append(f"{getattr(row, subject)} unstable: {row.unstable}")
        state = SPEEDUP_STATE.get(str(row.verdict), "")
        label = f"{PHASE_LABELS.get(str(row.phase), row.phase)} {row.dtype}"
        first = [
            threads_cell(row.threads, str(getattr(row, "threads_source", "") or ""))
            if name == "threads"
            else text(getattr(row, name))
            for name in names
        ]
        where = PAIRING.get(str(getattr(row, "pairing", "")), ("", ""))
        table.body.append(
            first
            + [Cell(duration(getattr(row, baseline_column))), Cell(duration(row.median_s))]
            + [
                Cell(times(row.speedup), state, title=f"{label}: {baseline}'s time / {getattr(row, subject)}'s time"),
                Cell(interval(row.ci_low, row.ci_high) or "no raw timings"),
            ]
            + [text(row.verdict if not pd.isna(row.ci_low) else "no interval", cls=f"text {state}".strip())]
            + ([text(where[0], title=where[1])] if paired else [])
            + [
                text(
                    " ".join(marks) or "stable",
                    cls="text unstable" if marks else "text",
                    title="; ".join(reasons),
                )
            ]
        )
    return table


def stability_table(bench: pd.DataFrame) -> Table:
    """Every benchmark's spread, rounds and load, and whether it is stable."""
    frame = bench.sort_values(["machine", "backend", "device", "phase", "batch"])
    table = Table(
        "stability-table",
        [
            head("machine", "backend", "device", "phase", "batch")
            + [Cell(name, header=True) for name in ("median", "rel. IQR", "rounds", "load start → end")]
            + head("stability")
        ],
    )
    for row in frame.itertuples():
        table.body.append(
            [text(row.machine), text(row.backend), text(row.device), text(row.phase), text(row.batch)]
            + [Cell(duration(row.median_s)), Cell(percent(row.rel_iqr)), Cell(_count(row.rounds))]
            + [Cell(load_text(row.load_start, row.load_end))]
            + [
                text(
                    f"unstable: {row.unstable}" if row.unstable else "stable",
                    cls="text unstable" if row.unstable else "text",
                )
            ]
        )
    return table
