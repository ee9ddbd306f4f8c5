"""The conformance matrix: checks as rows, grouped by family, and backends as columns.

Rows follow the catalogue (:data:`harness.conformance.catalogue.CHECKS`), so the families read in the same
order in every report; a check the catalogue does not know goes under "other". Columns are
the backends, and each backend's machines beside it when the report merges several, so the
same check on each run sits side by side. A cell counts the configurations of one check and
is coloured by its worst outcome. A pass under a widened tolerance (an override) has its own
colour and a mark; so does a known deviation. Each mark points to a footnote with the reason.
Configurations not run (the backend's crash budget was spent) are counted apart and never as
passes: a cell with one is coloured "not run" unless something in it failed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd

from harness.budget import NOT_RUN
from harness.conformance.catalogue import CHECKS
from reports.numbers import sig, times
from reports.records import FAILING, not_run_reason, skipped_capability

MAX_TOOLTIP_LINES = 20
OTHER_FAMILY = "other"
OVERRIDE_MARK = "†"
DEVIATION_MARK = "‡"


@dataclass(frozen=True)
class MatrixCell:
    state: str
    """passed, override, xfailed, failed, skipped, undeclared or none: the cell's colour."""
    text: str = ""
    note: str = ""
    title: str = "not run"
    marks: tuple[str, ...] = ()


@dataclass(frozen=True)
class Footnote:
    mark: str
    text: str


@dataclass(frozen=True)
class Column:
    backend: str
    machine: str


@dataclass
class Matrix:
    columns: list[Column]
    several_machines: bool
    families: list[tuple[str, list[tuple[str, list[MatrixCell]]]]]
    footnotes: list[Footnote] = field(default_factory=list)

    @property
    def backend_spans(self) -> list[tuple[str, int]]:
        """(backend, number of columns) for the header row above the machines."""
        spans: list[tuple[str, int]] = []
        for column in self.columns:
            if spans and spans[-1][0] == column.backend:
                spans[-1] = (column.backend, spans[-1][1] + 1)
            else:
                spans.append((column.backend, 1))
        return spans


def check_order(checks: Iterable[str]) -> list[tuple[str, list[str]]]:
    """(family, checks) in catalogue order; unknown checks last, under "other"."""
    present = set(checks)
    families: dict[str, list[str]] = {}
    for name, info in CHECKS.items():
        if name in present:
            families.setdefault(info.family, []).append(name)
    unknown = sorted(present - set(CHECKS))
    if unknown:
        families.setdefault(OTHER_FAMILY, []).extend(unknown)
    return list(families.items())


def build_matrix(conf: pd.DataFrame) -> Matrix:
    several = conf["machine"].nunique() > 1
    columns = [Column(str(b), str(m) if several else "") for b, m in sorted(set(zip(conf["backend"], conf["machine"])))]
    columns = list(dict.fromkeys(columns))
    notes = _Footnotes()
    groups = {
        key: frame for key, frame in conf.groupby(["check", "backend", "machine"] if several else ["check", "backend"])
    }
    families = []
    for family, checks in check_order(conf["check"]):
        rows = []
        for check in checks:
            cells = []
            for column in columns:
                key = (check, column.backend, column.machine) if several else (check, column.backend)
                cells.append(_cell(groups.get(key), column, check, notes))
            rows.append((check, cells))
        families.append((family, rows))
    return Matrix(columns, several, families, notes.footnotes)


class _Footnotes:
    """Numbered footnotes, one per backend, machine, check and reason."""

    def __init__(self) -> None:
        self.footnotes: list[Footnote] = []
        self._marks: dict[tuple[str, ...], str] = {}

    def mark(self, symbol: str, key: tuple[str, ...], text: str) -> str:
        if key not in self._marks:
            self._marks[key] = f"{symbol}{len(self.footnotes) + 1}"
            self.footnotes.append(Footnote(self._marks[key], text))
        return self._marks[key]


def _cell(records: pd.DataFrame | None, column: Column, check: str, notes: _Footnotes) -> MatrixCell:
    if records is None or records.empty:
        return MatrixCell("none")
    records = records.sort_values("config")
    title = _tooltip(records)
    not_run = int((records["outcome"] == NOT_RUN).sum())
    ran = records[~records["outcome"].isin(("skipped", NOT_RUN))]
    skipped = len(records) - len(ran) - not_run
    if ran.empty and not_run:
        note = f"{skipped} skipped" if skipped else ""
        return MatrixCell("none", "not run", note, title)
    if ran.empty:
        undeclared = {skipped_capability("skipped", str(reason)) for reason in records["reason"]}
        if None not in undeclared:
            return MatrixCell("undeclared", "not declared", f"needs {', '.join(sorted(map(str, undeclared)))}", title)
        return MatrixCell("skipped", "skipped", "", title)
    failing = ran[ran["outcome"].isin(FAILING)]
    passed = int((ran["outcome"] == "passed").sum())
    notes_line: list[str] = []
    marks: list[str] = []
    where = f"{column.backend}" + (f" on {column.machine}" if column.machine else "") + f" · {check}"
    if not failing.empty:
        state, text = "failed", f"{len(failing)}/{len(ran) + not_run} failed"
        others = failing["outcome"].value_counts()
        notes_line += [f"{count} {outcome}" for outcome, count in others.sort_index().items() if outcome != "failed"]
        worst = failing["headroom"].min()
        if not pd.isna(worst) and worst < 1:
            notes_line.append(f"headroom {sig(worst)}")
    else:
        state, text = "passed", f"{passed}/{len(ran) + not_run} passed"
        overridden = ran[(ran["outcome"] == "passed") & (ran["tolerance_source"] == "override")]
        for reason, group in overridden.groupby("tolerance_reason", sort=True):
            state = "override"
            marks.append(notes.mark(OVERRIDE_MARK, (where, "override", str(reason)), _override_note(where, group)))
        deviations = ran[ran["outcome"] == "xfailed"]
        for reason, group in deviations.groupby("reason", sort=True):
            state = "xfailed"
            configs = ", ".join(map(str, group["config"]))
            marks.append(
                notes.mark(DEVIATION_MARK, (where, "deviation", str(reason)), f"{where} ({configs}): {reason}")
            )
        if len(deviations) and passed:
            notes_line.append(f"{len(deviations)} known deviation{'s' if len(deviations) != 1 else ''}")
        elif len(deviations):
            text = "known deviation"
        if len(overridden):
            notes_line.append("widened tolerance")
        headroom = ran["headroom"].min()
        ulps = ran.dropna(subset=["max_ulp"])
        if not ulps.empty:  # ULP checks say how many ULPs, of how many allowed
            worst = ulps.loc[ulps["max_ulp"].idxmax()]
            notes_line.append(f"{sig(worst['max_ulp'])} ulp of {sig(worst['ulp_limit'])}")
        elif not pd.isna(headroom):
            notes_line.append("exact" if math.isinf(headroom) else f"headroom {sig(headroom)}")
    if not_run:
        notes_line.append(f"{not_run} not run")
        state = "failed" if state == "failed" else "none"  # what was not run may not read as a pass
    if skipped:
        notes_line.append(f"{skipped} skipped")
    return MatrixCell(state, text, " · ".join(notes_line), title, tuple(marks))


def _override_note(where: str, group: pd.DataFrame) -> str:
    configs = ", ".join(map(str, group["config"]))
    factor = group["tolerance_factor"].max()
    row = group.loc[group["tolerance_factor"].fillna(-1).idxmax()]
    widened = f"{times(factor)} the default tolerance" if not pd.isna(factor) else "a widened tolerance"
    bounds = ", ".join(f"{name} {sig(row[name])}" for name in ("rtol", "atol") if not pd.isna(row[name]))
    bounds = f" ({bounds})" if bounds else ""
    return f"{where} ({configs}): passed under {widened}{bounds}: {group['tolerance_reason'].iloc[0]}"


def _tooltip(records: pd.DataFrame) -> str:
    lines = []
    for r in records.itertuples():
        if r.outcome == "passed" and r.tolerance_source != "override":
            continue
        detail = r.reason if r.outcome != "passed" else f"under override: {r.tolerance_reason}"
        if r.outcome == NOT_RUN:
            detail = not_run_reason(str(detail))
        lines.append(f"{r.config}: {str(r.outcome).replace('_', ' ')}" + (f" — {detail}" if detail else ""))
    if len(lines) > MAX_TOOLTIP_LINES:
        lines = [*lines[:MAX_TOOLTIP_LINES], f"… and {len(lines) - MAX_TOOLTIP_LINES} more"]
    return "\n".join(lines) or "all passed"
