"""report.html rendered in headless Chromium: it draws, it has its tables and charts, and it
raises no error and asks for nothing over the network. At 1400 px, with six backends, the page
and its conformance matrix need no horizontal scrolling, the verdicts fit the first screen, and
every plot axis carries tick labels. The screenshot is kept in ``$NETHARNESS_SCREENSHOT_DIR``
when that is set (CI uploads it as an artifact).

Chromium is driven by tests/chromium.py (the DevTools protocol over a pipe, standard library
only). The test first loads a page with a deliberate script error, to show that errors are
seen at all, then the report. Skipped only where the ``chromium`` command is missing (CI
installs the Debian package).
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import image

from harness.commands.cli import main
from tests.chromium import HEIGHT, WIDTH, DevTools, needs_chromium

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "reports"
pytestmark = needs_chromium


def test_report_renders_in_chromium_with_tables_charts_and_no_errors(tmp_path: Path, browser: DevTools) -> None:
    out = tmp_path / "out"
    inputs = ["bench_vm1.json", "bench_vm2.json", "conformance_vm1.jsonl", "conformance_partial.jsonl"]
    assert main(["report", *(str(FIXTURES / name) for name in inputs), "--out", str(out)]) == 0

    broken = tmp_path / "broken.html"
    broken.write_text("<!DOCTYPE html><title>x</title><script>undefinedFunction()</script>")
    browser.load(broken.as_uri())
    assert any("undefinedFunction" in problem for problem in browser.problems()), "errors would go unnoticed"

    browser.load((out / "report.html").as_uri())
    assert browser.problems() == []
    dom = browser.evaluate(
        """JSON.stringify({
            title: document.title,
            tables: [...document.querySelectorAll('table')].map(t => `${t.id} ${t.className}`),
            matrixCells: [...document.querySelectorAll('#conformance-matrix td')].map(td => td.className),
            banner: document.getElementById('partial-banner')?.innerText ?? '',
            plots: [...document.querySelectorAll('figure.plot')].map(f => {
                const svg = f.querySelector('svg');
                const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
                const texts = svg ? svg.querySelectorAll('text').length : 0;
                return {id: f.id, width: box.width, height: box.height, texts: texts};
            }),
            redCell: getComputedStyle(document.querySelector('#conformance-matrix td.cell-failed')).backgroundColor,
        })"""
    )
    page = json.loads(dom)
    assert page["title"] == "netharness report"
    tables = " ".join(page["tables"]).split()
    for table in ("verdict-table", "failures-table", "conformance-matrix", "machines", "backend-versions"):
        assert table in tables, table
    for table in ("latency-table", "throughput-table", "speedup-table", "setup-table", "peak-table", "stability-table"):
        assert table in tables, table
    assert {"cell-passed", "cell-failed", "cell-xfailed", "cell-undeclared"} <= set(page["matrixCells"])
    assert page["redCell"] == "rgb(248, 201, 201)"
    assert page["banner"].startswith("PARTIAL RUN")
    plots = {plot["id"]: plot for plot in page["plots"]}
    assert set(plots) == {"latency-plot", "throughput-plot", "headroom-plot"}
    for plot in plots.values():
        assert plot["width"] > 200 and plot["height"] > 100 and plot["texts"] > 5, plot

    shot = browser.send("Page.captureScreenshot", {"format": "png"})
    png = tmp_path / "report.png"
    png.write_bytes(base64.b64decode(shot["data"]))
    assert png.stat().st_size > 20_000
    pixels = image.imread(png)
    assert pixels.shape[:2] == (HEIGHT, WIDTH)
    rgb = (pixels[..., :3] * 255).astype(np.uint32)
    colours = np.unique((rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2])
    assert len(colours) > 50, "the screenshot is (nearly) one colour"


SCREENSHOT_DIR_ENV = "NETHARNESS_SCREENSHOT_DIR"
FIRST_SCREEN_PX = 900
"""A laptop's visible height: the verdict of every backend must end above it."""
LAYOUT = """JSON.stringify({
    viewport: window.innerWidth,
    pageWidth: document.documentElement.scrollWidth,
    csp: document.querySelector('meta[http-equiv="Content-Security-Policy"]')?.content ?? '',
    matrix: (() => {
        const m = document.getElementById('conformance-matrix');
        const r = m.getBoundingClientRect();
        return {left: r.left, right: r.right, columns: m.querySelectorAll('thead th').length,
                overflowing: [...m.querySelectorAll('td, th')].filter(c => c.scrollWidth > c.clientWidth + 1)
                    .map(c => c.textContent.trim())};
    })(),
    verdict: (() => {
        const r = document.getElementById('verdict-table').getBoundingClientRect();
        return {right: r.right, bottom: r.bottom, rows: document.querySelectorAll('#verdict-table tbody tr').length};
    })(),
    plots: [...document.querySelectorAll('figure.plot svg')].map(svg => ({
        id: svg.parentElement.id,
        axes: [...svg.querySelectorAll('g[id^="matplotlib.axis"]')].map(axis =>
            [...axis.querySelectorAll('text')].map(t => t.textContent.trim()).filter(t => t.length > 0)),
    })),
})"""


def test_six_backends_fit_1400_px_with_readable_plots_and_no_request(tmp_path: Path, browser: DevTools) -> None:
    out = tmp_path / "out"
    inputs = [FIXTURES / "bench_six.json", FIXTURES / "conformance_six.jsonl"]
    assert main(["report", *map(str, inputs), "--out", str(out)]) == 0

    # The policy the page carries blocks any fetch, and a blocked fetch is seen: a page asking for one fails.
    csp = (out / "report.html").read_text(encoding="utf-8").split('content="', 2)[1].split('"')[0]
    asks = tmp_path / "asks.html"
    asks.write_text(
        f'<!DOCTYPE html><meta http-equiv="Content-Security-Policy" content="{csp}"><title>x</title>'
        '<img src="http://example.invalid/pixel.png"><link rel="stylesheet" href="https://example.invalid/x.css">'
    )
    browser.load(asks.as_uri())
    assert browser.problems(), "a page that asks the network for something would go unnoticed"

    browser.load((out / "report.html").as_uri())
    assert browser.problems() == []
    page = json.loads(browser.evaluate(LAYOUT))
    assert page["viewport"] == WIDTH
    assert page["csp"].startswith("default-src 'none'")
    assert page["pageWidth"] <= WIDTH, "the page scrolls sideways"
    matrix = page["matrix"]
    assert matrix["columns"] == 7, "a check column and six backends"
    assert 0 <= matrix["left"] and matrix["right"] <= WIDTH, matrix
    assert matrix["overflowing"] == [], "cells whose content spills out"
    verdict = page["verdict"]
    assert verdict["rows"] == 6 and verdict["right"] <= WIDTH and verdict["bottom"] <= FIRST_SCREEN_PX, verdict
    plots = {plot["id"]: plot["axes"] for plot in page["plots"]}
    assert set(plots) == {"latency-plot", "throughput-plot", "headroom-plot"}
    for name, axes in plots.items():
        assert len(axes) >= 2, name
        assert all(labels for labels in axes), f"{name}: an axis without tick labels: {axes}"

    shot = browser.send("Page.captureScreenshot", {"format": "png"})
    target = Path(os.environ.get(SCREENSHOT_DIR_ENV) or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    png = target / "report-six-backends-1400px.png"
    png.write_bytes(base64.b64decode(shot["data"]))
    assert image.imread(png).shape[:2] == (HEIGHT, WIDTH)


SPEED_TABLES = {"speedup-table", "precision-table", "latency-table", "throughput-table", "peak-table"}
SPEED_LAYOUT = """JSON.stringify([...document.querySelectorAll('table.speed')].map(t => {
    const lines = cell => {
        const range = document.createRange();
        range.selectNodeContents(cell);
        return new Set([...range.getClientRects()].filter(b => b.width > 0).map(b => Math.round(b.top))).size;
    };
    const wrapped = [];
    for (const row of t.querySelectorAll('tbody tr')) {
        [...row.children].forEach((cell, index) => {
            if (lines(cell) > 1) wrapped.push({column: index, text: cell.textContent.trim()});
        });
    }
    return {id: t.id, right: t.getBoundingClientRect().right, rows: t.querySelectorAll('tbody tr').length,
            wrapped: wrapped};
}))"""


def test_speed_tables_fit_1400_px_and_no_cell_wraps(tmp_path: Path, browser: DevTools) -> None:
    """Issue 28: long stability sentences squeezed "device", "dtype", "phase" and "speedup" to a few
    letters a line ("bfl / oat / 16"). With six backends, an unstable eager and a bfloat16 row, every
    speed table fits the width, and no cell wraps: the first five columns and the numbers included."""
    generator = _report_fixtures()
    reduced = [
        generator.benchmark(name, "forward", 64, generator.data(0.004 * factor, count=20), dtype="bfloat16")
        for name, factor in (("eager", 1.0), ("mlx", 0.5))
    ]
    extra = tmp_path / "bench_bfloat16.json"
    extra.write_text(generator.render(generator.benchmark_file("vm1", reduced)))
    out = tmp_path / "out"
    inputs = [FIXTURES / "bench_six.json", extra, FIXTURES / "conformance_six.jsonl"]
    assert main(["report", *map(str, inputs), "--out", str(out)]) == 0

    browser.load((out / "report.html").as_uri())
    assert browser.problems() == []
    tables = {table["id"]: table for table in json.loads(browser.evaluate(SPEED_LAYOUT))}
    assert set(tables) == SPEED_TABLES, sorted(tables)
    for name, table in tables.items():
        assert table["rows"] > 0, name
        assert table["right"] <= WIDTH, f"{name} is {table['right']:.0f} px wide"
        first_five = [cell for cell in table["wrapped"] if cell["column"] < 5]
        assert first_five == [], f"{name}: cells of the first five columns wrap: {first_five}"
        assert table["wrapped"] == [], f"{name}: cells wrap: {table['wrapped']}"
    html = (out / "report.html").read_text(encoding="utf-8")
    assert 'title="eager baseline unstable: its rounds spread by' in html, "the reason went from the page"


def _report_fixtures() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("report_fixtures", FIXTURES / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
