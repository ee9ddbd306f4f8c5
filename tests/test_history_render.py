"""The trend page rendered in headless Chromium at 1400 px: no error, nothing asked of the
network, no sideways scrolling, the open regression on the first screen, and every plot with
a labelled x axis (commits) and y axis (ticks and a title) that the browser actually draws.

Chromium is driven by tests/chromium.py, as for the run's report (tests/test_report_html_render.py);
skipped only where the ``chromium`` command is missing. The history is synthetic
(tests/history_data.py, seed printed), a slowdown planted in numpy at the newest commit.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.commands.cli import main
from tests.chromium import WIDTH, DevTools, needs_chromium
from tests.history_data import write_history

pytestmark = needs_chromium
SEED = 20292
FIRST_SCREEN_PX = 900
PAGE = """JSON.stringify({
    viewport: window.innerWidth,
    pageWidth: document.documentElement.scrollWidth,
    csp: document.querySelector('meta[http-equiv="Content-Security-Policy"]')?.content ?? '',
    regressions: [...document.querySelectorAll('#regressions-table tbody tr')].map(tr => ({
        text: tr.innerText, bottom: tr.getBoundingClientRect().bottom})),
    figures: [...document.querySelectorAll('figure.trend')].map(f => {
        const svg = f.querySelector('svg');
        const box = svg.getBoundingClientRect();
        const drawn = cls => [...svg.querySelectorAll('text.' + cls)].map(t => {
            const r = t.getBoundingClientRect();
            return {text: t.textContent.trim(), length: Math.max(r.width, r.height),  // the y label is rotated
                    inside: r.left >= box.left - 1 && r.right <= box.right + 1 &&
                            r.top >= box.top - 1 && r.bottom <= box.bottom + 1};
        });
        return {id: f.id, width: box.width, height: box.height, caption: f.querySelector('figcaption').innerText,
                xlabel: drawn('xlabel'), ylabel: drawn('ylabel'), xtick: drawn('xtick'), ytick: drawn('ytick')};
    }),
})"""


def test_the_trend_page_renders_at_1400_px_with_labelled_axes_and_no_request(tmp_path: Path, browser: DevTools) -> None:
    print(f"seed {SEED}")
    write_history(tmp_path / "runs", 10, slow_from=9, factor=1.4, seed=SEED)
    db = tmp_path / "h.sqlite"
    assert main(["history", "import", str(tmp_path / "runs"), "--history", str(db)]) == 0
    assert main(["history", "report", "--out", str(tmp_path / "page"), "--history", str(db)]) == 0

    # A page under the trend page's own policy that asks the network for something is seen doing so.
    html = (tmp_path / "page" / "history.html").read_text(encoding="utf-8")
    csp = html.split('http-equiv="Content-Security-Policy" content="', 1)[1].split('"')[0]
    asks = tmp_path / "asks.html"
    asks.write_text(
        f'<!DOCTYPE html><meta http-equiv="Content-Security-Policy" content="{csp}"><title>x</title>'
        '<img src="http://example.invalid/pixel.png">'
    )
    browser.load(asks.as_uri())
    assert browser.problems(), "a page that asks the network for something would go unnoticed"

    browser.load((tmp_path / "page" / "history.html").as_uri())
    assert browser.problems() == []
    page = json.loads(browser.evaluate(PAGE))
    assert page["viewport"] == WIDTH
    assert page["csp"].startswith("default-src 'none'")
    assert page["pageWidth"] <= WIDTH, "the page scrolls sideways"
    assert len(page["regressions"]) == 1, page["regressions"]
    regression = page["regressions"][0]
    assert "numpy forward batch 64" in regression["text"] and "c09" in regression["text"]
    assert regression["bottom"] <= FIRST_SCREEN_PX
    figures = page["figures"]
    assert len(figures) == 4, "two benchmarks and two checks"
    for figure in figures:
        assert figure["width"] > 300 and figure["height"] > 100, figure
        for axis in ("xlabel", "ylabel"):
            (label,) = figure[axis]
            assert label["text"] and label["length"] > 100 and label["inside"], (figure["id"], axis, label)
        for axis in ("xtick", "ytick"):
            ticks = [t for t in figure[axis] if t["text"]]
            assert len(ticks) >= 2, (figure["id"], axis, figure[axis])
            assert all(t["length"] > 0 and t["inside"] for t in ticks), (figure["id"], axis, ticks)
        assert [t["text"] for t in figure["xtick"]][0] == "c00" and figure["xtick"][-1]["text"] == "c09"
    ylabels = {figure["ylabel"][0]["text"] for figure in figures}
    assert ylabels == {"median ms per call (band: IQR)", "headroom (log scale)"}
