"""The report page: one Jinja2 template with its CSS inline, and nothing fetched from anywhere."""

from __future__ import annotations

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1400px;
       padding: 0 1em; color: #1d1d1f; line-height: 1.4; }
h1 { margin-bottom: 0.2em; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
.meta, .note { color: #555; font-size: 0.9em; }
.banner { padding: 0.8em 1em; border-radius: 6px; margin: 1em 0; font-weight: 600; }
.banner.partial { background: #fff4e5; border: 2px solid #e08a00; color: #7a4500; }
.banner.partial ul { margin: 0.3em 0 0 1.2em; font-weight: normal; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.88em; }
th, td { border: 1px solid #d0d0d0; padding: 0.3em 0.6em; text-align: right; vertical-align: top; }
th { background: #f3f3f5; }
td.text, th.text { text-align: left; }
#conformance-matrix td { text-align: center; min-width: 7em; }
.cell-passed { background: #d6f5d6; }
.cell-failed { background: #f8c9c9; }
.cell-xfailed { background: #fde9b8; }
.cell-skipped { background: #e4e4e4; color: #555; }
.cell-none { background: #fff; color: #aaa; }
.legend span { display: inline-block; padding: 0.1em 0.6em; margin-right: 0.4em; border-radius: 3px; }
figure.plot { margin: 1em 0; }
figure.plot svg { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: 0.9em; }
.faster { background: #d6f5d6; }
.slower { background: #f8c9c9; }
code { background: #f3f3f5; padding: 0 0.2em; }
"""

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>netharness report</title>
<style>{{ css }}</style>
</head>
<body>
<h1>netharness report</h1>
<p class="meta">Machines: {{ machines | join(", ") or "none" }} &middot; commit{{ "s" if commits | length > 1 }}:
{{ commits | join(", ") or "unknown" }} &middot; inputs: {{ inputs | length }} file{{ "s" if inputs | length != 1 }}</p>
{% if partial_reasons %}
<div class="banner partial" id="partial-banner" role="alert">PARTIAL RUN: at least one conformance run did not finish,
so some checks are missing. Every record present is reported.
<ul>{% for reason in partial_reasons %}<li>{{ reason }}</li>{% endfor %}</ul></div>
{% endif %}

<h2 id="conformance">Conformance</h2>
{% if matrix %}
<p class="legend"><span class="cell-passed">passed</span><span class="cell-failed">failed or error</span>
<span class="cell-xfailed">expected failure</span><span class="cell-skipped">skipped</span>
Each cell counts the configurations of one check; hover for the reasons. Headroom is tolerance / observed error
(the smallest over the configurations): below 1 fails.</p>
<table id="conformance-matrix">
<thead><tr><th class="text">backend</th>{% for check in matrix.checks %}<th>{{ check }}</th>{% endfor %}</tr></thead>
<tbody>
{% for row in matrix.rows %}<tr><th class="text">{{ row.label }}</th>
{% for cell in row.cells %}<td class="cell-{{ cell.state }}" title="{{ cell.title }}">{{ cell.text }}
{% if cell.headroom %}<br><small>headroom {{ cell.headroom }}</small>{% endif %}</td>{% endfor %}</tr>
{% endfor %}</tbody></table>
{% if issues %}
<h3>Checks that did not pass</h3>
<table id="conformance-issues"><thead><tr><th class="text">machine</th><th class="text">backend</th>
<th class="text">check</th><th class="text">config</th><th class="text">outcome</th>
<th class="text">reason</th></tr></thead>
<tbody>{% for issue in issues %}<tr><td class="text">{{ issue.machine }}</td><td class="text">{{ issue.backend }}</td>
<td class="text">{{ issue.check }}</td><td class="text">{{ issue.config }}</td>
<td class="text cell-{{ issue.state }}">{{ issue.outcome }}</td><td class="text">{{ issue.reason }}</td></tr>
{% endfor %}</tbody></table>
{% endif %}
{% if headroom_svg %}<figure class="plot" id="headroom-plot">{{ headroom_svg }}
<figcaption>Smallest error headroom per backend and check (log scale; the dashed line is the tolerance).
</figcaption></figure>{% endif %}
{% else %}
<p class="note" id="no-conformance">No conformance results were given.</p>
{% endif %}

<h2 id="benchmarks">Benchmarks</h2>
{% if latency_html %}
<h3>Median latency (ms)</h3>
<div id="latency-table">{{ latency_html }}</div>
<figure class="plot" id="latency-plot">{{ latency_svg }}
<figcaption>Median latency against batch size (log-log); bars span the first to third quartile.</figcaption></figure>
<h3>Throughput (samples/s)</h3>
<div id="throughput-table">{{ throughput_html }}</div>
<figure class="plot" id="throughput-plot">{{ throughput_svg }}<figcaption>Samples per second (log scale).
</figcaption></figure>

<h3 id="speedup">Speedup against eager</h3>
{% if speedup_html %}
<p class="note">Speedup = median eager time / median backend time (above 1: faster than eager), at the same
machine, device, dtype, threads, phase and batch. The 95% interval is a percentile bootstrap: the raw per-round
timings of both backends are resampled with replacement {{ resamples }} times from
<code>numpy.random.default_rng({{ seed }})</code> (fresh for each comparison), and the ratio of medians is
taken for each resample.</p>
<div id="speedup-table">{{ speedup_html }}</div>
{% else %}
<p class="note" id="no-speedup">No speedup: {{ speedup_note }}</p>
{% endif %}

<h3 id="setup">Compile and export times</h3>
<div id="setup-table">{{ setup_html }}</div>
<h3 id="peak">Share of machine peak</h3>
<p class="note">Percent of the machine's peak (a large float32 matmul timed once per run: {{ peaks }}).</p>
<div id="peak-table">{{ peak_html }}</div>
{% else %}
<p class="note" id="no-benchmarks">No benchmark results were given.</p>
{% endif %}

<h2 id="environment">Machines and versions</h2>
{% if machine_rows %}
<table id="machines"><thead><tr>{% for h in machine_header %}<th class="text">{{ h }}</th>{% endfor %}</tr></thead>
<tbody>{% for row in machine_rows %}<tr>{% for v in row %}<td class="text">{{ v }}</td>{% endfor %}</tr>
{% endfor %}</tbody></table>
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
