"""What a reader sees first, and what every number means: verdicts, failures, the matrix,
overrides, ULP columns, numbers with units, stability warnings, portable links, several
machines side by side, and the lines that end ``netharness run``.

The inputs are tests/fixtures/reports/*_six.*: six backends, one of each kind of record (a pass
under a 275x override, a known deviation, a failure whose message carries its reproduce
command and one whose does not, a crash, capability skips, other skips, ULP measurements),
and benchmarks where eager's batch-1 forward is unstable (6 noisy rounds on a busy machine)
and mlx is level with eager within noise.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from harness.commands.cli import main
from reports import numbers, plots
from reports.artifacts import plan, relative_link
from reports.load import load_results
from reports.model import ReportData, report_data
from reports.stability import instability, speedup_verdict
from reports.tables import CONFORMANCE_COLUMNS, RESULTS_COLUMNS
from reports.verdicts import Speed, Verdict, end_of_run_lines, failures, other_skips, verdict_line, verdicts

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "reports"
SIX = [FIXTURES / "bench_six.json", FIXTURES / "conformance_six.jsonl"]
ARTIFACT = "artifacts/onnx/net-0123456789ab.onnx"


@pytest.fixture(scope="module")
def six() -> ReportData:
    return report_data(load_results(SIX))


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("six") / "report"
    assert main(["report", *map(str, SIX), "--out", str(target)]) == 0
    return target


class Texts(HTMLParser):
    """The text inside each element with an id, and every tag's attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.by_id: dict[str, list[str]] = {}
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.tags.append((tag, found))
        if tag in ("br", "col", "meta", "input"):
            return
        self.stack.append(str(found.get("id") or ""))

    def handle_endtag(self, tag: str) -> None:
        if tag not in ("br", "col", "meta", "input") and self.stack:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        for name in self.stack:
            if name:
                self.by_id.setdefault(name, []).append(data)


def parsed(out: Path) -> Texts:
    texts = Texts()
    texts.feed((out / "report.html").read_text(encoding="utf-8"))
    return texts


# -- the first screen -------------------------------------------------------------------------


def test_one_verdict_per_backend_with_capabilities_speed_and_headroom(six: ReportData) -> None:
    found = {verdict.backend: verdict for verdict in verdicts(six)}
    assert sorted(found) == ["compile", "eager", "mlx", "numpy", "onnx", "tvm"]
    assert found["eager"].status == "conforms" and found["eager"].baseline
    assert found["compile"].status == "conforms"
    assert found["compile"].qualifiers == "2 under a widened tolerance, 2 known deviations"
    assert found["numpy"].status == "2 failures" and found["tvm"].status == "1 failure"
    assert found["onnx"].undeclared_sentence == (
        "Does not declare activations, backward, init, losses or train_step (21 checks skipped)."
    )
    assert found["eager"].undeclared_sentence == ""
    (forward,) = [speed for speed in found["onnx"].speeds if speed.phase == "forward"]
    assert forward.text() == "forward float32 1.25× [1.24, 1.26]" and forward.verdict == "faster"
    assert found["numpy"].headroom_text == "0.0140 (gradients float32-batch7)"


def test_worst_headroom_is_over_the_checks_that_decide_the_verdict_not_known_deviations(six: ReportData) -> None:
    conf = six.conf.copy()
    deviation = (conf["backend"] == "compile") & (conf["outcome"] == "xfailed")
    assert deviation.any()
    conf.loc[deviation, "headroom"] = 0.00347
    counted = conf[(conf["backend"] == "compile") & ~deviation].dropna(subset=["headroom"])
    found = {v.backend: v for v in verdicts(dataclasses.replace(six, conf=conf))}
    assert found["compile"].worst_headroom == counted["headroom"].min() > 0.00347
    assert found["compile"].qualifiers.endswith("2 known deviations")


def test_failures_have_their_first_line_and_a_reproduce_command_and_skips_are_not_failures(six: ReportData) -> None:
    found = failures(six.conf)
    assert [(f.backend, f.check, f.outcome) for f in found] == [
        ("numpy", "gradients", "failed"),
        ("numpy", "training_converges", "crashed"),
        ("tvm", "forward_values", "failed"),
    ]
    tvm = found[2]
    assert tvm.message.endswith("first divergent layer: fc3") and "\n" not in tvm.message
    assert tvm.reproduce == (
        "pytest 'suites/test_forward_values.py::test_forward_values[tvm-float32-batch7]' "
        "--backend=tvm --device=cpu --seed=0"
    )
    assert found[0].reproduce == (
        "pytest 'suites/test_gradients.py::test_gradients[numpy-float32-batch7]' --backend=numpy --device=cpu --seed=0"
    )
    assert other_skips(six.conf) == [
        (backend, "finite differences need float64: float32 rounding swamps it", 1)
        for backend in ("compile", "eager", "mlx", "numpy", "tvm")
    ]


def test_the_page_opens_with_the_verdicts_then_the_failures(out: Path) -> None:
    html = (out / "report.html").read_text(encoding="utf-8")
    order = [html.index(f'id="{name}"') for name in ("verdict-table", "failures-table", "conformance-matrix")]
    assert order == sorted(order)
    texts = parsed(out)
    verdict = " ".join(texts.by_id["verdict-table"])
    assert "Does not declare activations, backward, init, losses or train_step (21 checks skipped)." in verdict
    failures_text = " ".join(texts.by_id["failures-table"])
    assert "does not declare" not in failures_text, "capability skips are never rows"
    assert failures_text.count("pytest '") == 3 and "Segmentation fault" in failures_text


# -- the matrix, overrides and known deviations ------------------------------------------------


def test_matrix_has_checks_as_rows_grouped_by_family_and_backends_as_columns(out: Path) -> None:
    html = (out / "report.html").read_text(encoding="utf-8")
    matrix = html[html.index('<table id="conformance-matrix"') :]
    matrix = matrix[: matrix.index("</table>")]
    header = re.findall(r"<th>([^<]*)</th>", matrix[: matrix.index("</thead>")])
    assert header == ["compile", "eager", "mlx", "numpy", "onnx", "tvm"]
    families = re.findall(r'<tr class="family"><th colspan="7">([^<]*)</th>', matrix)
    assert families == ["shapes", "forward", "fast path", "gradients", "init", "activations", "losses", "training"] + [
        "hygiene"
    ]
    row = matrix[matrix.index('<th class="check">forward_values</th>') :].split("</tr>")[0]
    cells = re.findall(r'<td class="cell-(\w+)"', row)
    assert cells == ["override", "passed", "passed", "passed", "passed", "failed"]
    assert "1/2 failed" in row and "†1" in row
    activations = matrix[matrix.index('<th class="check">activation_values</th>') :].split("</tr>")[0]
    assert "6.50 ulp of 8.00" in activations and "3.00 ulp of 8.00" in activations  # mlx, and the others
    undeclared = matrix[matrix.index('<th class="check">loss_values</th>') :].split("</tr>")[0]
    assert re.findall(r'<td class="cell-(\w+)"', undeclared)[4:] == ["undeclared", "undeclared"]


def test_an_override_is_marked_with_its_factor_and_reason_and_a_known_deviation_too(out: Path) -> None:
    notes = " ".join(" ".join(parsed(out).by_id["matrix-footnotes"]).split())
    assert (
        "†1 compile · forward_values (float32-batch1, float32-batch7): passed under 275× the default tolerance" in notes
    )
    assert "inductor reassociates float32 sums in conv1" in notes
    assert "‡2 compile · maxpool_tie_subgradient (float32-batch1, float32-batch7): known deviation" in notes
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert (
        "Passed only under a widened tolerance (override): compile `forward_values` (2 configs, 275× the default"
        in (summary)
    )


def test_csv_says_where_each_tolerance_came_from_and_keeps_ulps_apart(out: Path) -> None:
    frame = pd.read_csv(out / "conformance.csv", keep_default_na=False, na_values=[""])
    assert list(frame.columns) == CONFORMANCE_COLUMNS
    rows = frame.set_index(["backend", "check", "config"])
    override = rows.loc[("compile", "forward_values", "float32-batch7")]
    assert override["tolerance_source"] == "override" and override["tolerance_factor"] > 100
    default = rows.loc[("eager", "forward_values", "float32-batch7")]
    assert default["tolerance_source"] == "default" and math.isnan(default["tolerance_factor"])
    assert rows.loc[("compile", "maxpool_tie_subgradient", "float32-batch7")]["tolerance_source"] == "known deviation"
    ulp = rows.loc[("mlx", "activation_values", "float32-batch7")]
    assert (ulp["max_ulp"], ulp["ulp_limit"], ulp["tolerance_source"]) == (6.5, 8.0, "default")
    assert math.isnan(ulp["max_rel_error"]) and math.isnan(ulp["rtol"]) and math.isnan(ulp["atol"])
    assert math.isnan(default["max_ulp"]) and default["rtol"] > 0


# -- numbers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (14230, "14,200"),
        (1345.9945415505624, "1,350"),
        (2, "2.00"),
        (0.4, "0.400"),
        (2.5e-5, "2.50×10⁻⁵"),
        (999.6, "1,000"),
        (1.5e7, "1.50×10⁷"),
        (-0.5, "−0.500"),
        (math.inf, "∞"),
        (None, "—"),
        (math.nan, "—"),
    ],
)
def test_numbers_have_three_significant_figures(value: float | None, shown: str) -> None:
    assert numbers.sig(value) == shown


def test_units_pick_a_readable_scale() -> None:
    assert [numbers.duration(s) for s in (2.4, 0.004, 2.5e-4, 8.5e-7)] == ["2.40 s", "4.00 ms", "250 µs", "850 ns"]
    assert numbers.size(64e6) == "64.0 MB" and numbers.percent(0.416) == "41.6%" and numbers.times(2) == "2.00×"
    assert [numbers.tick(v) for v in (0.5, 2.0, 1000.0, 1e-6)] == ["0.5", "2", "1,000", "10⁻⁶"]


def significant_digits(number: str) -> int:
    digits = number.replace(",", "").replace(".", "").lstrip("0")
    return len(digits if "." in number else digits.rstrip("0"))


def test_no_raw_float_reaches_the_page(out: Path) -> None:
    texts = parsed(out)
    ours = ["verdict-table", "conformance-matrix", "speedup-table", "latency-table", "throughput-table"]
    ours += ["setup-table", "peak-table", "stability-table", "matrix-footnotes", "stability-warnings"]
    for name in ours:
        text = " ".join(texts.by_id[name])
        assert not re.search(r"\d[eE][+-]?\d", text), name
        long = [n for n in re.findall(r"(?<![\w.-])\d[\d,]*(?:\.\d+)?(?![\w-])", text) if significant_digits(n) > 3]
        assert not long, (name, long)
    assert "1,350" not in texts.by_id["machines"] and "100 GFLOP/s" in texts.by_id["machines"]


# -- stability ---------------------------------------------------------------------------------


def test_an_unstable_baseline_is_flagged_beside_every_speedup_computed_from_it(six: ReportData) -> None:
    speedups = six.speedups
    batch1 = speedups[(speedups["phase"] == "forward") & (speedups["batch"] == 1)]
    assert len(batch1) == 5 and (batch1["baseline_unstable"] != "").all()
    reasons = batch1["baseline_unstable"].iloc[0]
    assert "spread by" in reasons and "only 6 rounds" in reasons and "load average 3.50 at the start" in reasons
    assert (speedups[speedups["batch"] == 64]["baseline_unstable"] == "").all()


def test_a_speedup_whose_interval_spans_one_is_neither_a_win_nor_a_loss(six: ReportData, out: Path) -> None:
    mlx = six.speedups[six.speedups["backend"] == "mlx"]
    assert (mlx["ci_low"] < 1).all() and (mlx["ci_high"] > 1).all()
    assert set(mlx["verdict"]) == {"no clear difference"}
    assert speedup_verdict(1.01, 1.2) == "faster" and speedup_verdict(0.5, 0.99) == "slower"
    assert speedup_verdict(0.9, 1.1) == speedup_verdict(math.nan, math.nan) == "no clear difference"
    html = (out / "report.html").read_text(encoding="utf-8")
    table = html[html.index('<table id="speedup-table"') :].split("</table>")[0]
    for row in table.split("<tr>")[2:]:
        cells = re.findall(r'<td class="([^"]*)"', row)
        speedup_class = cells[8]  # after device, dtype, phase, batch, threads, backend and the two medians
        if ">mlx<" in row:
            assert speedup_class == "", "no colour for an unclear speedup"
        elif ">compile<" in row:
            assert speedup_class == "faster"
    warnings = " ".join(parsed(out).by_id["stability-warnings"])
    assert "eager forward at batch 1 (cpu) is unstable:" in warnings and "Rerun it on a quiet machine" in warnings


def test_stability_is_judged_on_spread_rounds_and_load_and_unknown_load_judges_nothing() -> None:
    assert instability(0.05, 50, 0.5, 0.6, 2) == []
    assert instability(0.05, 50, None, None, None) == []
    [spread] = instability(0.25, 50, None, None, 2)
    assert spread.startswith("its rounds spread by 25.0% of the median")
    assert instability(0.05, 6, None, None, 2) == ["only 6 rounds were timed (fewer than 10)"]
    [busy] = instability(0.05, 50, 1.0, 4.5, 2)
    assert busy == "the machine was busy (load average 4.50 at the end, on 2 CPUs)"


def test_results_csv_has_the_stability_of_every_row(out: Path) -> None:
    frame = pd.read_csv(out / "results.csv", keep_default_na=False, na_values=[""])
    assert list(frame.columns) == RESULTS_COLUMNS
    eager1 = frame[(frame.backend == "eager") & (frame.phase == "forward") & (frame.batch == 1)].iloc[0]
    assert eager1["rounds"] == 6 and eager1["rel_iqr"] > 0.1 and eager1["load_start"] == 3.5
    assert eager1["unstable"].startswith("its rounds spread by")
    stable = frame[(frame.backend == "compile")]
    assert stable["unstable"].isna().all() and (stable["load_end"] == 0.5).all()


def test_without_recorded_spread_or_load_the_report_computes_the_spread_and_calls_load_unknown() -> None:
    data = report_data(load_results([FIXTURES / "bench_vm1.json"]))
    row = data.bench.iloc[0]
    assert row["rel_iqr"] == pytest.approx(row["iqr_s"] / row["median_s"])
    assert math.isnan(row["load_start"]) and row["unstable"] == ""


# -- plots ---------------------------------------------------------------------------------------


def tick_labels(svg: str) -> list[list[str]]:
    """The non-empty tick labels of every axis in a matplotlib SVG, axis by axis."""
    axes = re.split(r'<g id="matplotlib\.axis_\d+">', svg)[1:]
    labels = []
    for axis in axes:
        ticks = re.split(r'<g id="[xy]tick_\d+">', axis.split('<g id="patch_')[0])
        labels.append([t for tick in ticks for t in re.findall(r"<text[^>]*>([^<]+)</text>", tick) if t.strip()])
    return labels


@pytest.mark.parametrize("inputs", [SIX[:1], [FIXTURES / "bench_vm2.json"]], ids=["six", "one-batch"])
def test_every_plot_axis_has_tick_labels_and_every_value_axis_several(inputs: list[Path]) -> None:
    data = report_data(load_results([*inputs, SIX[1]]))
    figures = {
        "latency": plots.latency_svg(data.pooled),
        "throughput": plots.throughput_svg(data.pooled),
        "headroom": plots.headroom_svg(data.conf),
    }
    for name, svg in figures.items():
        axes = tick_labels(svg)
        assert len(axes) >= 2, name
        for labels in axes:
            assert labels, f"{name}: an axis without tick labels"
        value_axes = axes[1::2] if name != "headroom" else axes[0::2]  # y for latency/throughput, x for headroom
        for labels in value_axes:
            assert len(labels) >= 2, f"{name}: a value axis with fewer than two labels: {labels}"
        assert {"latency": "(ms)", "throughput": "(samples/s)", "headroom": "headroom ="}[name] in svg
        assert "e+" not in " ".join(label for axis in axes for label in axis)


# -- a portable folder ---------------------------------------------------------------------------


def test_exported_models_are_copied_beside_the_report_and_linked_relatively(out: Path) -> None:
    assert (out / ARTIFACT).read_text() == (FIXTURES / ARTIFACT).read_text()
    html = (out / "report.html").read_text(encoding="utf-8")
    assert f'<a href="{ARTIFACT}">{ARTIFACT}</a>' in html
    assert "/home/runner" not in html.split('id="environment"')[0]
    frame = pd.read_csv(out / "results.csv", keep_default_na=False)
    assert set(frame[frame.backend == "onnx"]["artifact"]) == {ARTIFACT}


def test_only_what_looks_like_an_artifact_is_linked_or_copied(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the report")
    assert relative_link("/a/artifacts/onnx/net.onnx") == "artifacts/onnx/net.onnx"
    for recorded in (str(secret), "/a/artifacts/../etc/passwd.onnx", "/a/artifacts/onnx/<b>.onnx", "/a/net.onnx"):
        assert relative_link(recorded) is None, recorded
    assert relative_link("/a/artifacts/onnx/model.txt") is None
    assert plan([(str(secret), str(tmp_path / "bench.json")), ("/nowhere/artifacts/onnx/x.onnx", "")], tmp_path) == []


# -- several machines side by side ---------------------------------------------------------------


def test_two_machines_show_the_same_check_and_the_same_benchmark_side_by_side(tmp_path: Path) -> None:
    target = tmp_path / "out"
    inputs = ["bench_vm1.json", "bench_vm2.json", "conformance_vm1.jsonl", "conformance_partial.jsonl"]
    assert main(["report", *(str(FIXTURES / name) for name in inputs), "--out", str(target)]) == 0
    html = (target / "report.html").read_text(encoding="utf-8")
    matrix = html[html.index('<table id="conformance-matrix"') :].split("</table>")[0]
    assert '<th colspan="2">eager</th>' in matrix
    assert re.findall(r"<th>(vm\d)</th>", matrix) == ["vm1", "vm1", "vm2", "vm1"]  # compile, eager x2, numpy
    forward = matrix[matrix.index('<th class="check">forward</th>') :].split("</tr>")[0]
    assert len(re.findall(r'<td class="cell-passed"', forward)) == 3  # eager on vm1 and vm2, and numpy
    latency = html[html.index('<table id="latency-table"') :].split("</table>")[0]
    assert '<th class="" colspan="2">eager</th>' in latency
    row64 = next(row for row in latency.split("<tr>") if ">forward<" in row and ">64<" in row)
    values = re.findall(r'<td class="(?!text)[^"]*"[^>]*>([^<]+)</td>', row64)
    assert values == ["2.00", "2.00", "4.00", "5.00", "8.00"]  # compile vm1, vm2; eager vm1, vm2; numpy vm1


# -- the end of `netharness run` -----------------------------------------------------------------


def test_end_of_run_lines_give_each_backend_its_verdict_in_the_order_asked() -> None:
    every = end_of_run_lines(
        report_data(load_results(SIX)), ["eager", "onnx", "numpy", "compile", "tvm", "mlx", "absent"]
    )
    lines, after = every[:7], every[7:]
    # Why pytest counts more, then the failures by root cause, each backend's in the order to fix them.
    assert after[0].startswith("  (these count conformance checks; pytest's counts above also hold plugin_loaded")
    assert after[1] == "  failures by root cause:"
    assert after[2] == "    numpy has 1 root cause:"
    assert [line.split(":")[0].strip() for line in lines] == ["eager", "onnx", "numpy", "compile", "tvm", "mlx"] + [
        "absent"
    ]
    by = {line.split(":")[0].strip(): line for line in lines}
    assert by["eager"].startswith("  eager: conforms (31 passed, 1 skipped); the speed baseline at batch 64")
    assert "does not declare activations, backward, init, losses or train_step (21 checks skipped)" in by["onnx"]
    assert "vs eager at batch 64: forward float32 1.25× [1.24, 1.26] faster" in by["onnx"]
    assert "forward float32 1.00× [0.967, 1.04] no clear difference" in by["mlx"]
    assert by["numpy"].startswith("  numpy: 2 failures (29 passed, 1 failed, 1 crashed, 1 skipped);")
    assert "worst headroom 0.0140 (gradients float32-batch7)" in by["numpy"]
    assert by["compile"].startswith(
        "  compile: conforms (25 passed, 2 xfailed, 5 skipped; 2 under a widened tolerance, 2 known deviations);"
    )
    assert by["absent"] == "  absent: no conformance results"


def test_a_verdict_line_flags_an_unstable_baseline_and_an_unstable_backend() -> None:
    speed = Speed("forward", "cpu", 2.0, 1.5, 2.5, "faster", "only 6 rounds were timed", "its rounds spread by 50%")
    verdict = Verdict("compile", "", {"passed": 3}, [], 0, 0, 0, speeds=[speed])
    assert verdict_line(verdict) == (
        "compile: conforms (3 passed); vs eager at batch 64: forward float32 2.00× [1.50, 2.50] faster"
        " (eager baseline UNSTABLE) (UNSTABLE)"
    )


def test_a_speed_at_a_reduced_precision_names_it() -> None:
    """openvino runs bfloat16 only, so it is set against eager at bfloat16: the line says so."""
    speed = Speed("forward", "cpu", 51.0, 49.0, 53.0, "faster", "", "", dtype="bfloat16")
    verdict = Verdict("openvino", "", {"passed": 3}, [], 0, 0, 0, speeds=[speed])
    assert verdict_line(verdict) == (
        "openvino: conforms (3 passed); vs eager at batch 64: forward bfloat16 51.0× [49.0, 53.0] faster"
    )


def test_every_speedup_from_the_unstable_baseline_says_so_in_the_page(out: Path) -> None:
    html = (out / "report.html").read_text(encoding="utf-8")
    table = html[html.index('<table id="speedup-table"') :].split("</table>")[0]
    rows = [row for row in table.split("<tr>")[2:] if "<td" in row]
    # A short marker in the cell, the reason in its tooltip (the table keeps to 1400 px).
    flagged = [
        row for row in rows if 'title="eager baseline unstable: its rounds spread by' in row and "⚠ eager<" in row
    ]
    forward_batch1 = [row for row in rows if ">forward<" in row and re.search(r">1</td>", row)]
    assert len(forward_batch1) == 5 and flagged == forward_batch1


def test_the_share_of_peak_is_of_the_device_that_ran_the_benchmark(tmp_path: Path) -> None:
    document = json.loads((FIXTURES / "bench_vm2.json").read_text())
    for bench in document["benchmarks"]:
        bench["extra_info"].update(peak_gflops_per_s=51_234.5678, peak_method="float32 matmul on cuda, best of 5")
    path = tmp_path / "gpu.json"
    path.write_text(json.dumps(document))
    target = tmp_path / "out"
    assert main(["report", str(path), "--out", str(target)]) == 0
    frame = pd.read_csv(target / "results.csv")
    assert set(frame["peak_gflops_per_s"]) == {51_234.5678} and set(frame["peak_method"]) == {
        "float32 matmul on cuda, best of 5"
    }
    html = (target / "report.html").read_text(encoding="utf-8")
    assert "vm2 cpu: 51,200 GFLOP/s (float32 matmul on cuda, best of 5)" in html
