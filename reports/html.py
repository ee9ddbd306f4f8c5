"""The self-contained ``report.html``: the verdicts first, then the matrix, then the numbers.

Nothing in the page refers to another file or URL except the exported models beside it
(``artifacts/...``) and, once the run is in a history, its trend page (``history/history.html``,
:func:`link_trend_page`); both relative, so the folder can be zipped or moved. A
Content-Security-Policy of ``default-src 'none'`` stops the browser fetching anything at all.
Nothing from the results is markup: the template is autoescaped, every table is plain data
rendered by one macro (:mod:`reports.htmltable`), and the figures' text is escaped by
matplotlib's SVG writer. Only the report's own CSS and figures are marked safe (``Markup``),
and the page has no script.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
from markupsafe import Markup

from reports import htmltable, plots
from reports.atomic import write_file
from reports.matrix import DEVIATION_MARK, OVERRIDE_MARK, build_matrix
from reports.model import ReportData
from reports.numbers import quantity, sig
from reports.stability import LOAD_PER_CPU_LIMIT, MIN_ROUNDS, REL_IQR_LIMIT
from reports.stats import BASELINE_BACKEND, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED
from reports.template import CSP, CSS, TEMPLATE
from reports.verdicts import VERDICT_BATCH, Verdict, causes, failures, other_skips, verdicts

MAX_FAILURES = 50
HISTORY_MARK = "<!-- netharness: the trend page's link -->"
"""Where the header gets its link to the trend page, once the run is in a history (written after the report)."""


def render_html(data: ReportData, links: dict[str, str] | None = None) -> str:
    """The page; ``links`` maps each recorded artifact path to its link inside the report folder."""
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = environment.from_string(TEMPLATE)
    return template.render(css=Markup(CSS), csp=CSP, history_mark=Markup(HISTORY_MARK), **_context(data, links or {}))


def link_trend_page(report: Path, page: Path) -> bool:
    """Give ``report``'s header a relative link to the trend ``page``; False if the report has no place for one."""
    try:
        text = report.read_text(encoding="utf-8")
    except OSError:
        return False
    if HISTORY_MARK not in text:
        return False
    href = Path(os.path.relpath(page, report.parent)).as_posix()
    link = Markup(' &middot; <a id="history-link" href="{}">trends across commits</a>').format(href)
    write_file(report, text.replace(HISTORY_MARK, str(link), 1))
    return True


def _context(data: ReportData, links: dict[str, str]) -> dict[str, Any]:
    bench, conf = data.pooled, data.conf
    found = failures(conf)
    context: dict[str, Any] = {
        "machines": data.results.machines,
        "commits": sorted({*bench["commit"], *conf["commit"]}),
        "inputs": [str(f.path) for f in data.results.benchmarks] + [str(f.path) for f in data.results.conformance],
        "partial_reasons": data.results.partial_reasons,
        "verdicts": [_verdict_row(verdict) for verdict in verdicts(data)],
        "batch": VERDICT_BATCH,
        "baseline": BASELINE_BACKEND,
        "causes": causes(conf)[:MAX_FAILURES],
        "failures": found[:MAX_FAILURES],
        "failures_total": len(found),
        "several_machines": conf["machine"].nunique() > 1,
        "other_skips": other_skips(conf),
        "matrix": build_matrix(conf) if not conf.empty else None,
        "marks": {"override": OVERRIDE_MARK, "deviation": DEVIATION_MARK},
        "headroom_svg": Markup(plots.headroom_svg(conf)) if conf["headroom"].notna().any() else "",
        "has_benchmarks": not bench.empty,
        "speedup_table": None,
        "precision_table": None,
        "speedup_note": data.speedup_note,
        "seed": BOOTSTRAP_SEED,
        "resamples": BOOTSTRAP_RESAMPLES,
        "limits": {
            "rel_iqr": sig(REL_IQR_LIMIT * 100) + "%",
            "rounds": MIN_ROUNDS,
            "load": sig(LOAD_PER_CPU_LIMIT),
        },
        "unstable": [],
        "unstable_mark": htmltable.UNSTABLE_MARK,
        "clocks": sorted(set(bench["clock"])) if not bench.empty else [],
        **_environment(data),
    }
    if not bench.empty:
        context.update(
            latency_table=htmltable.latency_table(bench),
            throughput_table=htmltable.throughput_table(bench),
            latency_svg=Markup(plots.latency_svg(bench)),
            throughput_svg=Markup(plots.throughput_svg(bench)),
            setup_table=htmltable.setup_html_table(bench, links),
            peak_table=htmltable.peak_table(bench),
            stability_table=htmltable.stability_table(bench),
            unstable=_instability_sentences(bench),
            benchmark_count=len(bench),
            peaks=_peaks(bench),
        )
        if not data.speedups.empty:
            context["speedup_table"] = htmltable.speedup_html_table(data.speedups)
        if not data.precision_speedups.empty:
            context["precision_table"] = htmltable.precision_html_table(data.precision_speedups)
    return context


def _verdict_row(verdict: Verdict) -> dict[str, Any]:
    several_devices = len({speed.device for speed in verdict.speeds}) > 1
    return {
        "label": verdict.label,
        "status": verdict.status,
        "state": verdict.state,
        "qualifiers": verdict.qualifiers,
        "stopped": verdict.stopped,
        "undeclared": verdict.undeclared_sentence,
        "baseline": verdict.baseline,
        "speeds": [
            {
                "text": speed.text(device=several_devices),
                "state": {"faster": "faster", "slower": "slower"}.get(speed.verdict, "unclear"),
                "verdict": speed.verdict if not pd.isna(speed.low) else "no interval",
                "warnings": speed.warnings(),
            }
            for speed in verdict.speeds
        ],
        "headroom": verdict.headroom_text,
    }


def _peaks(bench: pd.DataFrame) -> str:
    """'vm cpu: 87.5 GFLOP/s (best of 5 matmuls)', per machine and device."""
    frame = bench.dropna(subset=["peak_gflops_per_s"])
    found = frame.groupby(["machine", "device"], sort=True).agg(
        peak=("peak_gflops_per_s", "max"), method=("peak_method", "last")
    )
    return (
        "; ".join(
            f"{machine} {device}: {quantity(row.peak, 'GFLOP/s')}" + (f" ({row.method})" if row.method else "")
            for (machine, device), row in found.iterrows()
        )
        or "not recorded"
    )


def _instability_sentences(bench: pd.DataFrame) -> list[str]:
    frame = bench
    several = frame["machine"].nunique() > 1
    sentences = []
    for row in frame[frame["unstable"] != ""].sort_values(["machine", "backend", "phase", "batch"]).itertuples():
        where = f"{row.device}" + (f", {row.machine}" if several else "")
        sentences.append(
            f"{row.backend} {row.phase} at batch {row.batch} ({where}) is unstable: {row.unstable}. "
            "Rerun it on a quiet machine, with more rounds, before trusting it or any speedup computed from it."
        )
    return sentences


def _environment(data: ReportData) -> dict[str, Any]:
    header = ["machine", "cpu", "python", "threads", "peak", "commit", "pytest-benchmark", "date", "source"]
    rows = []
    for run in data.results.benchmarks:
        info = run.machine_info
        rows.append(
            [
                run.machine,
                (info.get("cpu") or {}).get("brand_raw") or info.get("processor") or info.get("machine", ""),
                info.get("python_version", ""),
                info.get("netharness_threads", ""),
                quantity(info.get("netharness_peak_gflops"), "GFLOP/s"),
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
    failures_ = sorted({str(f) for conf in data.results.conformance for f in conf.start.get("plugin_failures") or []})
    return {
        "machine_header": header,
        "machine_rows": rows,
        "version_rows": sorted(versions),
        "plugin_failures": failures_,
    }
