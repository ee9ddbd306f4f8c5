"""The self-contained ``report.html``: tables from pandas Styler, figures as inline SVG.

Nothing in the page refers to another file or URL, so it opens offline exactly as written.
Nothing from the results is markup: the template is autoescaped, every pandas table is
rendered with its cells and headers HTML-escaped (:func:`_table_html`), and the figures'
text is escaped by matplotlib's SVG writer. Only the report's own CSS, tables and figures
are marked safe (``Markup``), and the page has no link and no script.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import jinja2
import pandas as pd
from markupsafe import Markup
from pandas.io.formats.style import Styler

from reports import plots
from reports.model import ReportData
from reports.stats import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED
from reports.tables import setup_table, wide
from reports.template import CSS, TEMPLATE

MAX_TOOLTIP_LINES = 20
CELL_STATE = {
    "failed": "failed",
    "error": "failed",
    "crashed": "failed",
    "xfailed": "xfailed",
    "xpassed": "xfailed",
    "passed": "passed",
    "skipped": "skipped",
}
_STATE_RANK = ("failed", "xfailed", "passed", "skipped")


@dataclass(frozen=True)
class Cell:
    state: str
    text: str
    title: str
    headroom: str


def render_html(data: ReportData) -> str:
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = environment.from_string(TEMPLATE)
    return template.render(css=Markup(CSS), **_context(data))


def _context(data: ReportData) -> dict[str, Any]:
    bench, conf = data.bench, data.conf
    context: dict[str, Any] = {
        "machines": data.results.machines,
        "commits": sorted({*bench["commit"], *conf["commit"]}),
        "inputs": [str(f.path) for f in data.results.benchmarks] + [str(f.path) for f in data.results.conformance],
        "partial_reasons": data.results.partial_reasons,
        "matrix": _matrix(conf) if not conf.empty else None,
        "issues": _issues(conf),
        "headroom_svg": Markup(plots.headroom_svg(conf)) if conf["headroom"].notna().any() else "",
        "latency_html": "",
        "speedup_html": "",
        "speedup_note": data.speedup_note,
        "seed": BOOTSTRAP_SEED,
        "resamples": BOOTSTRAP_RESAMPLES,
        **_environment(data),
    }
    if not bench.empty:
        context.update(
            latency_html=_styled(wide(bench, "median_s", 1e3), "latency", "{:.3f}"),
            throughput_html=_styled(wide(bench, "samples_per_s"), "throughput", "{:,.0f}"),
            latency_svg=Markup(plots.latency_svg(bench)),
            throughput_svg=Markup(plots.throughput_svg(bench)),
            setup_html=_styled(_setup_display(bench), "setup", "{:.4g}", index=False),
            peak_html=_styled(wide(bench, "peak_fraction", 100.0), "peak", "{:.2f}%"),
            peaks=", ".join(
                f"{f.machine} {f.machine_info.get('netharness_peak_gflops', 'unknown')} GFLOP/s"
                for f in data.results.benchmarks
            ),
        )
        if not data.speedups.empty:
            context["speedup_html"] = _speedup_html(data.speedups)
    return context


def _matrix(conf: pd.DataFrame) -> dict[str, Any]:
    several = conf["machine"].nunique() > 1
    checks = sorted(conf["check"].unique())
    rows = []
    keys = ["backend", "machine"] if several else ["backend"]
    for key, group in conf.groupby(keys, sort=True):
        values = key if isinstance(key, tuple) else (key,)
        label = f"{values[0]} ({values[1]})" if several else str(values[0])
        by_check = dict(tuple(group.groupby("check")))
        rows.append({"label": label, "cells": [_cell(by_check.get(check)) for check in checks]})
    return {"checks": checks, "rows": rows}


def _cell(records: pd.DataFrame | None) -> Cell:
    if records is None or records.empty:
        return Cell("none", "—", "not run", "")
    counts = records["outcome"].value_counts()
    states = {CELL_STATE.get(outcome, "failed") for outcome in counts.index}
    state = next(s for s in _STATE_RANK if s in states)
    text = ", ".join(f"{count} {outcome}" for outcome, count in counts.sort_index().items())
    lines = [
        f"{r.config}: {r.outcome}" + (f" — {r.reason}" if r.reason else "")
        for r in records.sort_values("config").itertuples()
        if r.outcome != "passed"
    ]
    if len(lines) > MAX_TOOLTIP_LINES:
        lines = [*lines[:MAX_TOOLTIP_LINES], f"… and {len(lines) - MAX_TOOLTIP_LINES} more"]
    headroom = records["headroom"].min()
    shown = "" if pd.isna(headroom) else ("exact" if math.isinf(headroom) else f"{headroom:.3g}")
    return Cell(state, text, "\n".join(lines) or "all passed", shown)


def _issues(conf: pd.DataFrame) -> list[dict[str, str]]:
    bad = conf[conf["outcome"] != "passed"].sort_values(["backend", "check", "config", "machine"])
    return [
        {
            "machine": r.machine,
            "backend": r.backend,
            "check": r.check,
            "config": r.config,
            "outcome": r.outcome,
            "state": CELL_STATE.get(str(r.outcome), "failed"),
            "reason": str(r.reason),
        }
        for r in bad.itertuples()
    ]


def _styled(frame: pd.DataFrame, name: str, number_format: str, index: bool = True) -> Markup:
    # One format call per column set: a later .format() would replace an earlier one's formatter.
    numbers = list(frame.select_dtypes("number").columns)
    others = [column for column in frame.columns if column not in numbers]
    styler = frame.style.format(number_format, subset=numbers, na_rep="—")
    if others:
        styler = styler.format(na_rep="—", subset=others, escape="html")
    if not index:
        styler = styler.hide(axis="index")
    return _table_html(styler, name)


def _table_html(styler: Styler, name: str) -> Markup:
    """The table as HTML, with every header and index label escaped (data cells: in their own format call).

    Styler escapes nothing by default, and the headers are backend, machine and device names.
    """
    styler = styler.format_index(escape="html", axis="index").format_index(escape="html", axis="columns")
    styler = styler.set_table_attributes(f'class="data {name}-table"')
    return Markup(styler.to_html(table_uuid=name))


def _setup_display(bench: pd.DataFrame) -> pd.DataFrame:
    table = setup_table(bench)
    return table.rename(
        columns={
            "setup_kind": "setup",
            "setup_s": "setup (s)",
            "first_call_s": "first call (s)",
            "median_s": "steady call (s)",
            "first_call_over_median": "first / steady",
            "artifact": "exported file",
        }
    )


def _speedup_html(speedups: pd.DataFrame) -> Markup:
    display = pd.DataFrame(
        {
            "machine": speedups["machine"],
            "device": speedups["device"],
            "phase": speedups["phase"],
            "batch": speedups["batch"],
            "threads": speedups["threads"],
            "backend": speedups["backend"],
            "eager median (ms)": speedups["eager_median_s"] * 1e3,
            "backend median (ms)": speedups["median_s"] * 1e3,
            "speedup": speedups["speedup"],
            "95% interval": [_interval(lo, hi) for lo, hi in zip(speedups["ci_low"], speedups["ci_high"])],
        }
    )

    def colour(value: float) -> str:
        return "" if pd.isna(value) else ("background: #d6f5d6" if value >= 1 else "background: #f8c9c9")

    numbers = ["eager median (ms)", "backend median (ms)", "speedup"]
    styler = (
        display.style.format(escape="html", subset=[column for column in display.columns if column not in numbers])
        .format("{:.3f}", subset=numbers[:2])
        .format("{:.2f}×", subset=["speedup"])
        .map(colour, subset=["speedup"])
        .hide(axis="index")
    )
    return _table_html(styler, "speedup")


def _interval(low: float, high: float) -> str:
    return "no raw timings" if pd.isna(low) else f"[{low:.2f}, {high:.2f}]"


def _environment(data: ReportData) -> dict[str, Any]:
    header = ["machine", "cpu", "python", "threads", "peak GFLOP/s", "commit", "pytest-benchmark", "date", "source"]
    rows = []
    for run in data.results.benchmarks:
        info = run.machine_info
        rows.append(
            [
                run.machine,
                (info.get("cpu") or {}).get("brand_raw") or info.get("processor") or info.get("machine", ""),
                info.get("python_version", ""),
                info.get("netharness_threads", ""),
                info.get("netharness_peak_gflops", ""),
                run.commit,
                run.version,
                run.datetime,
                str(run.path),
            ]
        )
    for conf in data.results.conformance:
        machine = conf.start.get("machine") or {}
        rows.append(
            [
                conf.machine,
                ", ".join(
                    str(part)
                    for part in (machine.get("machine"), machine.get("processor"), f"{machine.get('cpu_count')} cpus")
                    if part
                ),
                machine.get("python", ""),
                "",
                "",
                conf.commit,
                "",
                f"seed {conf.start.get('seed', '?')}, device {conf.start.get('device', '?')}",
                str(conf.path),
            ]
        )
    versions = {
        (conf.machine, name, str(info.get("version", "")), ", ".join(info.get("capabilities", [])))
        for conf in data.results.conformance
        for name, info in (conf.start.get("backends") or {}).items()
    }
    described = {(machine, name, version) for machine, name, version, _ in versions}
    for run in data.results.benchmarks:  # benchmarks record the version they ran, not the capabilities
        for bench in run.benchmarks:
            extra = bench.get("extra_info") or {}
            if extra.get("backend") and extra.get("version"):
                key = (run.machine, str(extra["backend"]), str(extra["version"]))
                if key not in described:
                    described.add(key)
                    versions.add((*key, ""))
    failures = sorted({str(f) for conf in data.results.conformance for f in conf.start.get("plugin_failures") or []})
    return {
        "machine_header": header,
        "machine_rows": rows,
        "version_rows": sorted(versions),
        "plugin_failures": failures,
    }
