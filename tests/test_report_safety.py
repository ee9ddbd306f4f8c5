"""Nothing a plugin or a results file says is markup, in any file ``netharness report`` writes.

Each payload below is put into every string a results file can carry at once (backend names
and versions, capabilities, check names, configs, dtypes, devices, phases, reasons, test ids,
machine info, commits, plugin failures, artifact paths, and the input file's own name), and
the report is written by the real command. Then:

- report.html has no element, attribute or link target that came from the payload: its tags
  are parsed and none is a script, image, frame, object or stylesheet link; no attribute is an
  event handler; every reference points inside the page (``#...``) or to an exported model in
  the report's own folder (``artifacts/...``). The payload is still there, as text a reader sees.
- summary.md has no raw ``<`` or ``>``, no link or image syntax and no line the payload
  started; its tables keep their columns.
- Every CSV cell a spreadsheet would evaluate is a number; a text cell that started with
  ``=``, ``+``, ``-``, ``@``, tab or CR is prefixed with ``'``.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from markupsafe import escape

from harness.commands.cli import main
from reports.escaping import FORMULA_STARTS, csv_cell, markdown_code, markdown_text, plot_text
from reports.template import TEMPLATE
from tests.fixtures.reports import generate as G

PAYLOADS = {
    "script": "<script>alert(1)</script>",
    "attribute-breakout": '"><img src=x onerror=alert(1)>',
    "single-quote-breakout": "' onmouseover='alert(1)",
    "markdown-link": "[x](javascript:alert(1))",
    "markdown-image": "![x](javascript:alert(1))",
    "autolink": "<javascript:alert(1)>",
    "formula": '=HYPERLINK("http://evil")',
    "dde": "+cmd|' /C calc'!A0",
    "minus": "-2+3+cmd|' /C calc'!A0",
    "at": "@SUM(1+1)*cmd|' /C calc'!A0",
    "tab": "\t=1+1",
    "carriage-return": "\r=1+1",
    "new-block": "ok\n# heading\n<script>alert(1)</script>",
    "table-and-code": "a|b`c`*d*_e_ ~f~",
    "mathtext": "$\\foo$ and _hidden",
    "entity": "&lt;script&gt;",
}
DANGEROUS_TAGS = {"script", "img", "iframe", "frame", "object", "embed", "link", "base", "form", "foreignobject"}
REFERENCES = {"href", "xlink:href", "src", "action", "formaction", "data", "srcdoc"}
OWN_LINK = re.compile(r"#[\w-]+|artifacts(/[A-Za-z0-9][A-Za-z0-9._-]*)+")
"""The only links the report writes: to a place in the page, or to an exported model beside it."""


def hostile_conformance(payload: str) -> list[dict[str, Any]]:
    start = G.run_start(payload, {"eager": "torch 2.13.0+cpu", payload: payload})
    start["machine"].update(machine=payload, processor=payload, python=payload)
    start["backends"][payload]["capabilities"] = [payload]
    start.update(plugin_failures=[payload], commit=payload, device=payload)
    hostile = {"test_id": payload, "tolerance_reason": payload, "device": payload, "dtype": payload}
    return [
        start,
        {**G.check("eager", "forward", "float32-batch1", "passed", error=(1e-6, 10.0)), "device": payload},
        {**G.check(payload, payload, payload, "failed", payload, error=(1e-4, 0.1)), **hostile},
        {**G.check(payload, "forward", "float32-batch1", "skipped", payload), **hostile},
        # A negative number is still a number: the CSV must not turn it into text.
        {**G.check(payload, "init", payload, "xfailed", payload, error=(-0.5, 2.0)), **hostile},
        {"kind": "run_end", "time": 1.0, "exitstatus": 1, "interrupted": False},
    ]


def hostile_benchmarks(payload: str) -> dict[str, Any]:
    extra = {"device": payload, "setup_kind": payload, "artifact": payload, "version": payload}
    rows = [
        G.benchmark(backend, "forward", 64, G.data(median), **extra)
        for backend, median in (("eager", 0.004), (payload, 0.002))
        for _ in range(2)
    ]
    for row in rows[1::2]:  # a second phase, named by the payload: a plot title
        row["extra_info"]["phase"] = payload
    rows[0] = G.benchmark("eager", "forward", 64, G.data(0.004, count=3), **extra)  # unstable: 3 rounds
    for row in rows:
        row["name"] = row["fullname"] = payload
    document = G.benchmark_file(payload, rows)
    info = document["machine_info"]
    info.update(python_version=payload, netharness_commit=payload, cpu={"brand_raw": payload})
    document.update(datetime=payload, version=payload)
    return document


@pytest.fixture(scope="module", params=PAYLOADS.values(), ids=PAYLOADS.keys())
def written(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(payload, output directory) of a report written from results full of the payload."""
    payload: str = request.param
    inputs = tmp_path_factory.mktemp("inputs") / payload.replace("/", "∕")  # the file's own path carries it too
    inputs.mkdir()
    conformance, benchmarks = inputs / "conformance.jsonl", inputs / "benchmarks.json"
    conformance.write_text(G.render(hostile_conformance(payload)), encoding="utf-8")
    document = hostile_benchmarks(payload)
    model = inputs / "artifacts" / "onnx" / "net-hostile.onnx"  # a real file, under a path full of the payload
    model.parent.mkdir(parents=True)
    model.write_text("model")
    document["benchmarks"][0]["extra_info"]["artifact"] = str(model)
    benchmarks.write_text(G.render(document), encoding="utf-8")
    out = tmp_path_factory.mktemp("out")
    assert main(["report", str(benchmarks), str(conformance), "--out", str(out)]) == 0
    yield payload, out


# -- report.html ------------------------------------------------------------------------------


class PageParts(HTMLParser):
    """Every start tag with its attributes, and the text a reader sees."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def page(out: Path) -> tuple[str, PageParts]:
    html = (out / "report.html").read_text(encoding="utf-8")
    parts = PageParts()
    parts.feed(html)
    parts.close()
    return html, parts


def test_html_has_no_element_attribute_or_link_from_the_payload(written: tuple[str, Path]) -> None:
    _, out = written
    html, parts = page(out)
    assert html.count("<script") == TEMPLATE.count("<script") == 0, "the template has no script of its own"
    for tag, attrs in parts.tags:
        assert tag not in DANGEROUS_TAGS, tag
        for name, value in attrs:
            assert not name.startswith("on"), f"<{tag} {name}=...>"
            if name in REFERENCES:
                assert OWN_LINK.fullmatch(value or ""), f"<{tag} {name}={value!r}> leaves the page"
        if tag == "a":
            assert [name for name, _ in attrs] == ["href"], f"<a {attrs}>: a link has its href and nothing else"
            if name == "style":
                assert "javascript:" not in (value or "").lower() and "url(" not in (value or "").lower()
            # Elsewhere (a title tooltip) the payload is text, shown as written: that is the point.
    links = [value or "" for tag, attrs in parts.tags if tag == "a" for name, value in attrs if name == "href"]
    assert sorted(links) == ["#stability", "#stability", "artifacts/onnx/net-hostile.onnx"], (
        "the report's own links, and only those"
    )
    # The same, read off the raw text: every tag with its quoted attribute values taken out
    # (inside quotes the payload is inert, escaped text, such as a tooltip) has no handler or image.
    raw_tags = [re.sub(r'"[^"]*"', '""', tag) for tag in re.findall(r"<[^>]*>", html)]
    assert not [tag for tag in raw_tags if re.search(r"\son\w+=|javascript:|<img", tag, re.IGNORECASE)]


def test_html_shows_the_payload_as_text(written: tuple[str, Path]) -> None:
    payload, out = written
    html, parts = page(out)
    shown = payload.replace("\r", "\n")  # HTML reads a CR as a line feed
    assert shown in "".join(parts.text), "the reader sees the hostile text, as text (a matrix row, a table cell)"
    if set(payload) & set("<>&"):  # a quote is markup only inside an attribute, where it is escaped
        assert payload not in html, "only its escaped form is in the page's source"
        assert str(escape(payload)) in html


# -- summary.md -------------------------------------------------------------------------------


def test_summary_has_no_raw_html_no_link_and_no_line_the_payload_started(written: tuple[str, Path]) -> None:
    payload, out = written
    summary = (out / "summary.md").read_text(encoding="utf-8")
    lines = summary.splitlines()
    assert "<" not in summary
    assert not [line for line in lines if ">" in line and not line.startswith("> ")]
    assert not re.search(r"(?<!\\)\]\(", summary), "no [text](target) link or image"
    assert not re.search(r"(?<!\\)!(?<!\\)\[", summary)
    assert markdown_text(payload) in summary
    headings = [line for line in lines if line.startswith("#")]
    assert headings == ["# netharness report", "## Root causes (1), in the order to fix them", "## Failures (1)"]
    table = [line for line in lines if line.startswith("|")]
    columns = {len(re.findall(r"(?<!\\)\|", line)) for line in table}
    assert len(table) >= 4 and len(columns) == 1, "no cell added a column"
    failure = next(line for line in lines if line.startswith("- **"))
    assert failure.startswith(f"- **{markdown_text(payload)}** {markdown_code(payload)} {markdown_code(payload)} ")


# -- the CSV files ----------------------------------------------------------------------------


def cells(path: Path) -> Iterator[tuple[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    for row in rows[1:]:
        yield from zip(rows[0], row)


@pytest.mark.parametrize("name", ["results.csv", "conformance.csv"])
def test_csv_cells_that_a_spreadsheet_would_evaluate_are_numbers(written: tuple[str, Path], name: str) -> None:
    payload, out = written
    values = list(cells(out / name))
    for _, value in values:
        if value.startswith(FORMULA_STARTS):
            float(value)  # raises unless it is a number, which stays one
    text = {value for _, value in values}
    as_written = payload.replace("\r", "\n")  # a lone CR would end the row in a spreadsheet; LF is quoted
    assert csv_cell(payload).replace("\r", "\n") in text
    if payload.startswith(FORMULA_STARTS):
        assert "'" + as_written in text and as_written not in text


def test_a_negative_number_stays_a_number(written: tuple[str, Path]) -> None:
    _, out = written
    errors = [value for column, value in cells(out / "conformance.csv") if column == "max_abs_error"]
    assert "-0.5" in errors


# -- the helpers, case by case ----------------------------------------------------------------

MARKDOWN = [
    ("plain words", "plain words"),
    ("train_step", "train_step"),  # an intraword underscore cannot emphasise
    ("_x_", "\\_x\\_"),
    ("<b>&", "&lt;b&gt;&amp;"),
    ("[x](javascript:alert(1))", "\\[x\\](javascript:alert(1))"),
    ("a|b", "a\\|b"),
    ("`code`", "\\`code\\`"),
    ("$x$", "\\$x\\$"),
    ("two\nlines\r\n\tand tabs", "two lines and tabs"),
    ("back\\slash", "back\\\\slash"),
]


@pytest.mark.parametrize(("text", "expected"), MARKDOWN)
def test_markdown_text(text: str, expected: str) -> None:
    assert markdown_text(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("float32-batch64", "`float32-batch64`"), ("a`b", "a\\`b"), ("<x>", "&lt;x&gt;")],
)
def test_markdown_code_only_for_identifiers(text: str, expected: str) -> None:
    assert markdown_code(text) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),  # in a text column, text
        ("@A1", "'@A1"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("a=1", "a=1"),
        (-1.5, -1.5),  # a number is left alone
        (None, None),
    ],
)
def test_csv_cell(value: object, expected: object) -> None:
    assert csv_cell(value) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("eager", "eager"), ("$\\foo$", "\\$\\foo\\$"), ("_b", "\u200b_b"), ("a_b", "a_b"), ("a\tb\nc", "a b c")],
)
def test_plot_text(text: str, expected: str) -> None:
    assert plot_text(text) == expected
