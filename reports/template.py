"""The report page: one Jinja2 template with its CSS inline, and nothing fetched from anywhere.

The first screen answers "does each backend conform, and how fast is it?": one verdict line per
backend, then the failures with the command that reproduces each. The conformance matrix has
the checks as rows and the backends as columns, at a fixed layout that fits the page's width
whatever the number of backends. The Content-Security-Policy forbids every fetch (styles and
images may only be inline), so a page that asked the network for anything would show it in
the browser's console.
"""

from __future__ import annotations

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.2em auto; max-width: 1400px;
       padding: 0 1em; color: #1d1d1f; line-height: 1.35; box-sizing: border-box; }
h1 { margin: 0 0 0.2em; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
.meta, .note { color: #555; font-size: 0.9em; }
.banner { padding: 0.6em 1em; border-radius: 6px; margin: 0.8em 0; }
.banner.partial { background: #fff4e5; border: 2px solid #e08a00; color: #7a4500; font-weight: 600; }
.banner.partial ul, .banner.unstable ul { margin: 0.3em 0 0 1.2em; font-weight: normal; }
.banner.unstable { background: #fff8d6; border: 2px solid #c9a100; color: #5c4a00; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.88em; max-width: 100%; }
th, td { border: 1px solid #d0d0d0; padding: 0.25em 0.5em; text-align: right; vertical-align: top;
         overflow-wrap: anywhere; }
th { background: #f3f3f5; }
td.text, th.text { text-align: left; }
.scroll { max-width: 100%; overflow-x: auto; }
#verdict-table { width: 100%; }
#verdict-table td, #verdict-table th { text-align: left; font-size: 1.02em; }
#verdict-table td.status { font-weight: 600; white-space: nowrap; }
#verdict-table td.status small.stopped { font-weight: normal; white-space: normal; }
#failures-table { width: 100%; table-layout: fixed; }
#failures-table code { font-size: 0.92em; }
table.matrix { width: 100%; table-layout: fixed; }
table.matrix col.check { width: 18em; }
table.matrix td, table.matrix thead th { text-align: center; }
table.matrix th.check { text-align: left; font-weight: normal; font-family: ui-monospace, monospace;
                        font-size: 0.92em; }
table.matrix tr.family th { text-align: left; background: #e9e9ee; text-transform: capitalize; }
table.matrix small, #verdict-table small { color: #444; display: block; }
sup.mark { font-weight: 700; margin-left: 0.15em; }
.cell-passed { background: #d6f5d6; }
.cell-override { background: repeating-linear-gradient(135deg, #d6f5d6 0 6px, #bfe3f7 6px 12px); }
.cell-failed { background: #f8c9c9; }
.cell-xfailed { background: #fde9b8; }
.cell-skipped { background: #e4e4e4; color: #555; }
.cell-undeclared { background: #f4f4f4; color: #777; }
.cell-none { background: #fff; color: #aaa; }
.legend span { display: inline-block; padding: 0.1em 0.6em; margin: 0 0.4em 0.2em 0; border-radius: 3px;
               border: 1px solid #ccc; }
ol.footnotes { font-size: 0.88em; color: #333; padding-left: 0; list-style: none; }
ol.footnotes li { margin: 0.15em 0; }
figure.plot { margin: 1em 0; }
figure.plot svg { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: 0.9em; }
.faster { background: #d6f5d6; }
.slower { background: #f8c9c9; }
.unclear { background: #f3f3f5; }
td.unstable, .warning { color: #7a5b00; }
table.speed td, table.speed th { white-space: nowrap; }
span.speed { display: table; padding: 0 0.3em; border-radius: 3px; margin: 0.1em 0; }
code { background: #f3f3f5; padding: 0 0.2em; overflow-wrap: anywhere; }
details { margin: 0.6em 0; }
"""

TEMPLATE = """<!DOCTYPE html>
{%- macro table(t) -%}
<table id="{{ t.id }}" class="{{ t.cls }}">
<thead>{% for row in t.head %}<tr>{% for c in row %}<th class="{{ c.cls }}"
{%- if c.colspan > 1 %} colspan="{{ c.colspan }}"{% endif %}{% if c.rowspan > 1 %} rowspan="{{ c.rowspan }}"{% endif %}>
{{- c.text }}</th>{% endfor %}</tr>{% endfor %}</thead>
<tbody>{% for row in t.body %}<tr>{% for c in row %}<td class="{{ c.cls }}"
{%- if c.title %} title="{{ c.title }}"{% endif %}>
{%- if c.link %}<a href="{{ c.link }}">{{ c.text }}</a>{% else %}{{ c.text }}{% endif %}
{%- if c.note %}<small>{{ c.note }}</small>{% endif %}</td>{% endfor %}</tr>
{% endfor %}</tbody></table>
{%- endmacro %}
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{{ csp }}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>netharness report</title>
<style>{{ css }}</style>
</head>
<body>
<h1>netharness report</h1>
<p class="meta">Machines: {{ machines | join(", ") or "none" }} &middot; commit{{ "s" if commits | length > 1 }}:
{{ commits | join(", ") or "unknown" }} &middot; inputs: {{ inputs | length }} file{{ "s" if inputs | length != 1 }}
{%- if clocks %} &middot; <span id="clock">benchmarks timed on the {{ clocks | join(", ") }} clock</span>{% endif %}
{{- history_mark }}</p>
{% if partial_reasons %}
<div class="banner partial" id="partial-banner" role="alert">PARTIAL RUN: at least one conformance run did not finish,
so some checks are missing. Every record present is reported.
<ul>{% for reason in partial_reasons %}<li>{{ reason }}</li>{% endfor %}</ul></div>
{% endif %}

<section id="verdict">
{% if verdicts %}
<table id="verdict-table">
<colgroup><col style="width: 11%"><col style="width: 19%"><col style="width: 26%"><col style="width: 27%">
<col style="width: 17%"></colgroup>
<thead><tr><th>backend</th><th>conformance</th><th>capabilities not declared</th>
<th>speed against {{ baseline }} at batch {{ batch }} (95% interval)</th><th>worst headroom</th></tr></thead>
<tbody>{% for v in verdicts %}<tr>
<th class="text">{{ v.label }}</th>
<td class="status cell-{{ v.state }}">{{ v.status }}
{%- if v.qualifiers %}<small>{{ v.qualifiers }}</small>{% endif %}
{%- if v.stopped %}<small class="stopped">stopped: {{ v.stopped }}</small>{% endif %}</td>
<td>{{ v.undeclared or "none" }}</td>
<td>{% if v.baseline %}the baseline{% endif %}
{%- for s in v.speeds %}<span class="speed {{ s.state }}">{{ s.text }} · {{ s.verdict }}</span>
{%- for flag, why in s.warnings %}<small class="warning" title="{{ why }}">⚠ {{ flag }}</small>{% endfor %}
{%- endfor %}
{%- if not v.speeds and not v.baseline %}—{% endif %}</td>
<td>{{ v.headroom or "—" }}</td>
</tr>{% endfor %}</tbody></table>
{% else %}
<p class="note" id="no-verdict">No results were given.</p>
{% endif %}
{% if unstable %}
<p class="banner unstable" id="unstable-banner" role="alert">⚠ {{ unstable | length }} of {{ benchmark_count }}
benchmark results are unstable, and every speedup computed from one is flagged (see
<a href="#stability">Stability</a>).</p>
{% endif %}

{% if failures %}
<h2 id="failures">Failures ({{ failures_total }})</h2>
{% if causes %}<p>By root cause, each backend's in the order to fix them:</p>
<ol id="root-causes">{% for c in causes %}<li><b>{{ c.backend }}</b>: {{ c.line() }}{% if c.reproduce %}
<br><code>{{ c.reproduce }}</code>{% endif %}</li>
{% endfor %}</ol>{% endif %}
<table id="failures-table">
<colgroup><col style="width: 8%">{% if several_machines %}<col style="width: 7%">{% endif %}<col style="width: 13%">
<col style="width: 11%"><col style="width: 7%"><col><col style="width: 30%"></colgroup>
<thead><tr><th class="text">backend</th>{% if several_machines %}<th class="text">machine</th>{% endif %}
<th class="text">check</th><th class="text">config</th><th class="text">outcome</th><th class="text">what failed</th>
<th class="text">reproduce</th></tr></thead>
<tbody>{% for f in failures %}<tr><td class="text">{{ f.backend }}</td>
{% if several_machines %}<td class="text">{{ f.machine }}</td>{% endif %}
<td class="text">{{ f.check }}</td><td class="text">{{ f.config }}</td>
<td class="text cell-failed">{{ f.outcome }}</td><td class="text">{{ f.message }}</td>
<td class="text">{% if f.reproduce %}<code>{{ f.reproduce }}</code>{% endif %}</td></tr>
{% endfor %}</tbody></table>
{% if failures_total > failures | length %}<p class="note">… and {{ failures_total - failures | length }} more: see
conformance.csv.</p>{% endif %}
{% elif matrix %}
<p id="no-failures">No check failed.</p>
{% endif %}
</section>

<h2 id="conformance">Conformance matrix</h2>
{% if matrix %}
<p class="legend"><span class="cell-passed">passed</span><span class="cell-override">passed under a widened
tolerance {{ marks.override }}</span><span class="cell-xfailed">known deviation {{ marks.deviation }}</span>
<span class="cell-failed">failed, error or crashed</span><span class="cell-undeclared">capability not declared</span>
<span class="cell-skipped">skipped</span><span class="cell-none">not run</span><br>
Each cell counts the configurations of one check; hover for the reasons. Headroom = tolerance ÷ observed error,
the smallest over the configurations: above 1 passes, "exact" means no error at all.</p>
<table id="conformance-matrix" class="matrix">
<colgroup><col class="check">{% for c in matrix.columns %}<col>{% endfor %}</colgroup>
<thead>{% if matrix.several_machines %}<tr><th class="text" rowspan="2">check</th>
{% for backend, span in matrix.backend_spans %}<th colspan="{{ span }}">{{ backend }}</th>{% endfor %}</tr>
<tr>{% for c in matrix.columns %}<th>{{ c.machine }}</th>{% endfor %}</tr>
{% else %}<tr><th class="text">check</th>{% for c in matrix.columns %}<th>{{ c.backend }}</th>{% endfor %}</tr>
{% endif %}
</thead>
<tbody>
{% for family, rows in matrix.families %}<tr class="family"><th colspan="{{ matrix.columns | length + 1 }}">
{{- family }}</th></tr>
{% for check, cells in rows %}<tr><th class="check">{{ check }}</th>
{% for cell in cells %}<td class="cell-{{ cell.state }}" title="{{ cell.title }}">{{ cell.text }}
{%- for mark in cell.marks %}<sup class="mark">{{ mark }}</sup>{% endfor %}
{%- if cell.note %}<small>{{ cell.note }}</small>{% endif %}</td>{% endfor %}</tr>
{% endfor %}{% endfor %}</tbody></table>
{% if matrix.footnotes %}
<ol class="footnotes" id="matrix-footnotes">{% for note in matrix.footnotes %}
<li><sup class="mark">{{ note.mark }}</sup> {{ note.text }}</li>{% endfor %}</ol>
{% endif %}
{% if other_skips %}
<details id="other-skips"><summary>Other skips ({{ other_skips | length }} reasons): not a capability the backend
left undeclared</summary>
<table><thead><tr><th class="text">backend</th><th class="text">reason</th><th>checks</th></tr></thead>
<tbody>{% for backend, reason, count in other_skips %}<tr><td class="text">{{ backend }}</td>
<td class="text">{{ reason }}</td><td>{{ count }}</td></tr>{% endfor %}</tbody></table></details>
{% endif %}
{% if headroom_svg %}<figure class="plot" id="headroom-plot">{{ headroom_svg }}
<figcaption>Smallest error headroom per check and backend (log scale; the dashed line is the tolerance, and a
point left of it fails).</figcaption></figure>{% endif %}
{% else %}
<p class="note" id="no-conformance">No conformance results were given.</p>
{% endif %}

<h2 id="benchmarks">Benchmarks</h2>
{% if has_benchmarks %}
<h3 id="speedup">Speed against {{ baseline }}</h3>
{% if speedup_table %}
<p class="note">Speedup = {{ baseline }}'s time / the backend's time (above 1: faster than {{ baseline }}), at the
same machine, device, dtype, clock, phase and batch. Timed in the <em>same process</em>: the backend's benchmark
also timed {{ baseline }}'s prepared object, one call of each per round in turns, and the speedup is the median of
the per-round ratios, its 95% interval a percentile bootstrap over whole rounds. Timed in <em>two processes</em>:
the ratio of the two benchmarks' medians, both sets of raw timings resampled. Either way {{ resamples }} resamples
from <code>numpy.random.default_rng({{ seed }})</code>, fresh for each comparison. A speedup is coloured as faster or
slower only when its interval excludes 1. Threads: "(backend)" when the backend reports its own intra-op threads,
"(torch)" when torch's stand in for them.</p>
<div class="scroll">{{ table(speedup_table) }}</div>
<p class="note footnote">{{ unstable_mark }} marks an unstable timing (of {{ baseline }} or of the backend); the
reason is the cell's tooltip, and in full under <a href="#stability">Stability</a>.</p>
{% else %}
<p class="note" id="no-speedup">No speedup: {{ speedup_note }}</p>
{% endif %}
{% if precision_table %}
<h3 id="precision-speed">Reduced precision against float32</h3>
<p class="note">Speedup = median float32 time / median time at the precision, for the same backend, machine,
device, clock, threads, phase and batch, with the same bootstrap interval (timed in two tests of one process).
The errors each precision is allowed are in the conformance matrix (docs/tolerances.md).</p>
<div class="scroll">{{ table(precision_table) }}</div>
{% endif %}

<h3 id="latency">Median latency (ms)</h3>
<div class="scroll">{{ table(latency_table) }}</div>
<figure class="plot" id="latency-plot">{{ latency_svg }}
<figcaption>Median latency against batch size (log-log); bars span the first to third quartile.</figcaption></figure>
<h3 id="throughput">Throughput (samples/s)</h3>
<div class="scroll">{{ table(throughput_table) }}</div>
<figure class="plot" id="throughput-plot">{{ throughput_svg }}<figcaption>Samples per second (log scale).
</figcaption></figure>

<h3 id="stability">Stability</h3>
<p class="note">A result is unstable when its rounds spread by more than {{ limits.rel_iqr }} of the median
(interquartile range), when fewer than {{ limits.rounds }} rounds were timed, or when the machine's load average
exceeded {{ limits.load }} per CPU at the start or the end (not judged for a timing on the cpu clock, which leaves
out the time spent waiting for a core). Without a recorded load, the load is unknown.</p>
{% if unstable %}
<div class="banner unstable" id="stability-warnings"><strong>WARNING: {{ unstable | length }} unstable
result{{ "s" if unstable | length != 1 }}.</strong>
<ul>{% for sentence in unstable %}<li>{{ sentence }}</li>{% endfor %}</ul></div>
{% else %}
<p id="all-stable">Every benchmark is stable by these measures.</p>
{% endif %}
<details><summary>Every benchmark's spread, rounds and load</summary>
<div class="scroll">{{ table(stability_table) }}</div></details>

<h3 id="setup">Compile and export times</h3>
<div class="scroll">{{ table(setup_table) }}</div>
<h3 id="peak">Share of machine peak</h3>
<p class="note">Percent of the float32 peak of the device that ran each benchmark (a large matmul: {{ peaks }}).</p>
<div class="scroll">{{ table(peak_table) }}</div>
{% else %}
<p class="note" id="no-benchmarks">No benchmark results were given.</p>
{% endif %}

<h2 id="environment">Machines and versions</h2>
{% if machine_rows %}
<div class="scroll"><table id="machines"><thead><tr>{% for h in machine_header %}<th class="text">{{ h }}</th>
{% endfor %}</tr></thead>
<tbody>{% for row in machine_rows %}<tr>{% for v in row %}<td class="text">{{ v }}</td>{% endfor %}</tr>
{% endfor %}</tbody></table></div>
{% endif %}
{% if version_rows %}
<table id="backend-versions"><thead><tr><th class="text">machine</th><th class="text">backend</th>
<th class="text">version</th><th class="text">capabilities</th></tr></thead>
<tbody>{% for row in version_rows %}<tr>{% for v in row %}<td class="text">{{ v }}</td>{% endfor %}</tr>
{% endfor %}</tbody></table>
{% endif %}
{% if plugin_failures %}<p>Plugins that failed to load:</p>
<ul id="plugin-failures">{% for f in plugin_failures %}<li>{{ f }}</li>{% endfor %}</ul>{% endif %}
<p class="meta">Inputs: {% for path in inputs %}<code>{{ path }}</code>{{ ", " if not loop.last }}{% endfor %}</p>
</body>
</html>
"""
