"""``netharness history report``: the trend page, one self-contained HTML file under the report's CSP.

The first screen lists the open regressions (series whose last step made them worse), each
linking, relatively, to the report of the run that introduced it. Then, per backend, one plot
per benchmark (median and interquartile band against commit) and one per check (headroom
against commit, log scale), each step marked. The template is autoescaped; only the figures
(:mod:`reports.trendsvg`, which escapes its own text) and the report's CSS are marked safe.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from harness.errors import UsageError
from harness.history.series import Analysed
from reports.atomic import write_file
from reports.template import CSP, CSS
from reports.trendsvg import trend_svg

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{{ csp }}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>netharness history</title>
<style>{{ css }}
figure.trend { display: inline-block; margin: 0.4em 0.6em 0.8em 0; vertical-align: top; }
</style>
</head>
<body>
<h1>netharness history</h1>
<p class="meta">History: {{ source }} &middot; {{ series_count }} series &middot; {{ machines | join(", ") }}
{%- if run_report %} &middot; written after <a id="run-report" href="{{ run_report }}">this run's report</a>
{%- endif %}</p>
<section id="regressions">
<h2>Open regressions</h2>
{% if open %}
<table id="regressions-table"><thead><tr><th class="text">series</th><th class="text">machine</th>
<th class="text">commit</th><th>change (95% interval)</th><th>p</th><th class="text">run</th></tr></thead>
<tbody>{% for r in open %}<tr><td class="text"><a href="#{{ r.anchor }}">{{ r.label }}</a></td>
<td class="text">{{ r.machine }}</td><td class="text">{{ r.commit }}</td><td>{{ r.size }}</td><td>{{ r.p }}</td>
<td class="text">{% if r.report %}<a href="{{ r.report }}">report</a>{% endif %}</td></tr>
{% endfor %}</tbody></table>
{% else %}<p>None: no series sits at a level worse than before its last step.</p>{% endif %}
</section>
{% for backend in backends %}
<section class="backend">
<h2>{{ backend.name }}</h2>
{% for f in backend.figures %}<figure class="trend" id="{{ f.anchor }}">{{ f.svg }}
<figcaption>{{ f.label }} &middot; {{ f.machine }}</figcaption></figure>
{% endfor %}
</section>
{% endfor %}
</body>
</html>
"""


PAGE_MARK = "<title>netharness history</title>"
"""What every trend page holds: a ``history.html`` without it is not one, and is never replaced."""


def write_trend_page(
    analysed: list[Analysed], out: Path, *, source: str, run_report: Path | None = None, force: bool = False
) -> Path:
    """``out/history.html``; ``run_report``: the report of the run it was written after, linked relatively.

    An existing ``history.html`` that is not a trend page is someone else's file: refused
    unless ``force``.
    """
    page = out / "history.html"
    if not force and page.is_file() and PAGE_MARK not in page.read_text(encoding="utf-8", errors="replace")[:4096]:
        raise UsageError(f"{page} exists and is not a netharness trend page; choose another --out, or pass --force")
    out.mkdir(parents=True, exist_ok=True)
    write_file(page, render_trend_page(analysed, out, source=source, run_report=run_report))
    return page


def render_trend_page(analysed: list[Analysed], out: Path, *, source: str, run_report: Path | None = None) -> str:
    by_backend: dict[str, list[dict[str, Any]]] = defaultdict(list)
    open_rows = []
    ordered = sorted(analysed, key=lambda a: (a.series.backend, a.series.kind, a.series.label, a.series.node))
    for number, one in enumerate(ordered):
        series, anchor = one.series, f"s{number}"
        machine = f"{series.node} [{series.fingerprint[:8]}]"
        steps = [(s.index, s.commit, s.regression) for s in one.steps]
        if series.kind == "benchmark":
            svg = trend_svg(series.values, series.low, series.high, series.commits, steps,
                            ylabel="median ms per call (band: IQR)", log=False, scale=1e3)  # fmt: skip
        else:
            svg = trend_svg(series.values, series.low, series.high, series.commits, steps,
                            ylabel="headroom (log scale)", log=True)  # fmt: skip
        by_backend[series.backend].append(
            {"anchor": anchor, "svg": Markup(svg), "label": series.label, "machine": machine}
        )
        step = one.open_regression
        if step is not None:
            report = series.reports[step.index]
            if series.kind == "benchmark":
                size = f"{(step.ratio - 1) * 100:+.1f}% ({(step.low - 1) * 100:+.1f}%, {(step.high - 1) * 100:+.1f}%)"
            else:
                size = f"headroom ×{step.ratio:.3g} ({step.low:.3g}, {step.high:.3g})"
            open_rows.append(
                {
                    "anchor": anchor,
                    "label": series.label,
                    "machine": machine,
                    "commit": step.commit,
                    "size": size,
                    "p": f"{step.p_value:.2g}",
                    "report": Path(os.path.relpath(report, out)).as_posix() if report else "",
                }
            )
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return environment.from_string(PAGE).render(
        csp=CSP,
        css=Markup(CSS),
        source=source,
        run_report=Path(os.path.relpath(run_report, out)).as_posix() if run_report is not None else "",
        series_count=len(analysed),
        machines=sorted({f"{a.series.node} [{a.series.fingerprint[:8]}]" for a in analysed}),
        open=open_rows,
        backends=[{"name": name, "figures": figures} for name, figures in sorted(by_backend.items())],
    )
