"""``netharness report`` and ``netharness compare`` on small inputs with known numbers.

The inputs are in tests/fixtures/reports/, written by its generate.py: eager's raw timings have
medians of 0.5, 4, 1.5 and 12 ms (forward/train_step at batch 1/64), compile runs 2x (forward)
and 1.25x (train step) faster, numpy takes exactly twice eager's time, round for round.
"""

from __future__ import annotations

import io
import json
import math
import re
import shutil
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.commands.cli import main
from reports import atomic
from reports.load import load_results
from reports.stats import BOOTSTRAP_SEED, speedup_frame, speedup_interval
from reports.tables import CONFORMANCE_COLUMNS, RESULTS_COLUMNS, benchmark_frame, pooled
from tests.fixtures.reports import generate as G

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "reports"
BENCH_VM1 = FIXTURES / "bench_vm1.json"
BENCH_VM2 = FIXTURES / "bench_vm2.json"
CONFORMANCE = FIXTURES / "conformance_vm1.jsonl"
PARTIAL = FIXTURES / "conformance_partial.jsonl"
COMPARE = FIXTURES / "compare"


def report(tmp_path: Path, *inputs: Path | str, capsys: pytest.CaptureFixture[str] | None = None) -> Path:
    out = tmp_path / "out"
    assert main(["report", *map(str, inputs), "--out", str(out)]) == 0
    if capsys is not None:
        assert capsys.readouterr().out.splitlines()[-1] == str(out / "report.html")
    return out


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of vm1's benchmarks and its complete conformance run."""
    return report(tmp_path_factory.mktemp("full"), BENCH_VM1, CONFORMANCE)


def test_fixtures_are_what_generate_py_writes() -> None:
    for name, text in G.fixtures().items():
        assert (FIXTURES / name).read_text(encoding="utf-8") == text, f"rerun generate.py: {name} is stale"


# -- results.csv and conformance.csv ----------------------------------------------------------


def test_results_csv_has_one_row_per_benchmark_with_units_in_column_names(full: Path) -> None:
    frame = pd.read_csv(full / "results.csv")
    assert list(frame.columns) == RESULTS_COLUMNS
    assert len(frame) == 12
    assert set(frame["machine"]) == {"vm1"} and set(frame["commit"]) == {"abc1234"}
    raw = json.loads(BENCH_VM1.read_text())["benchmarks"]
    eager64 = next(b for b in raw if b["name"] == "test_forward[eager-float32-batch64]")
    row = frame[(frame.backend == "eager") & (frame.phase == "forward") & (frame.batch == 64)].iloc[0]
    assert row["median_s"] == pytest.approx(statistics.median(eager64["stats"]["data"]))
    assert row["median_s"] == pytest.approx(0.004)
    assert row["samples_per_s"] == pytest.approx(16000.0)
    assert row["rounds"] == 12 and row["threads"] == 2 and row["dtype"] == "float32" and row["device"] == "cpu"
    assert row["peak_memory_bytes"] == 64_000_000
    compile64 = frame[(frame.backend == "compile") & (frame.phase == "forward") & (frame.batch == 64)].iloc[0]
    assert (compile64["setup_kind"], compile64["setup_s"]) == ("compile", 2.4)
    assert compile64["first_call_s"] == pytest.approx(2.5 + 3 * 0.002)
    numpy_rows = frame[frame.backend == "numpy"]
    assert numpy_rows["peak_memory_bytes"].isna().all()  # null in the input stays empty
    assert numpy_rows["median_s"].tolist() == pytest.approx([0.001, 0.008, 0.003, 0.024])


def test_conformance_csv_has_outcome_errors_headroom_and_reasons(full: Path) -> None:
    frame = pd.read_csv(full / "conformance.csv", keep_default_na=False, na_values=[""])
    assert list(frame.columns) == CONFORMANCE_COLUMNS
    assert len(frame) == 10
    rows = frame.set_index(["backend", "check", "config"])
    failed = rows.loc[("compile", "forward", "float32-batch64")]
    assert failed["outcome"] == "failed"
    assert failed["headroom"] == pytest.approx(0.4) and failed["max_abs_error"] == pytest.approx(2.5e-5)
    assert (failed["rtol"], failed["atol"]) == (1e-5, 1e-5)
    assert failed["reason"].startswith("forward: mismatched elements 3/640")
    assert rows.loc[("eager", "forward", "float32-batch64")]["headroom"] == math.inf
    skipped = rows.loc[("numpy", "backward", "float32-batch1")]
    assert skipped["outcome"] == "skipped" and "does not declare capability 'backward'" in skipped["reason"]
    assert math.isnan(rows.loc[("eager", "output_shape", "float32-batch1")]["headroom"])
    assert rows.loc[("compile", "backward", "float32-batch1")]["outcome"] == "xfailed"
    assert rows.loc[("numpy", "train_step", "float32-batch1")]["outcome"] == "error"


# -- speedup against eager -----------------------------------------------------------------


def test_twice_as_slow_as_eager_is_a_speedup_of_one_half_with_a_narrow_interval() -> None:
    speedups = speedup_frame(pooled(benchmark_frame(load_results([BENCH_VM1]))))
    assert len(speedups) == 8  # compile and numpy at 2 phases x 2 batches
    for row in speedups[speedups.backend == "numpy"].itertuples():
        assert row.speedup == pytest.approx(0.5)
        assert row.ci_low <= 0.5 <= row.ci_high
        assert row.ci_high - row.ci_low < 0.03
    compile_forward = speedups[(speedups.backend == "compile") & (speedups.phase == "forward")]
    assert compile_forward["speedup"].tolist() == pytest.approx([2.0, 2.0])
    assert ((compile_forward.ci_low < 2.0) & (compile_forward.ci_high > 2.0)).all()


def test_bootstrap_interval_is_seeded_and_covers_the_constructed_ratio() -> None:
    rng = np.random.default_rng(0)
    eager = 1e-3 * (1 + 0.02 * rng.standard_normal(200))
    slow = 2e-3 * (1 + 0.02 * rng.standard_normal(200))
    first, second = speedup_interval(eager, slow), speedup_interval(eager, slow)
    assert first == second  # the same seed every time
    assert first.low < 0.5 < first.high and first.high - first.low < 0.02
    other_seed = speedup_interval(eager, slow, seed=BOOTSTRAP_SEED + 1)
    assert other_seed.estimate == first.estimate and other_seed.low != first.low


# -- summary.md and the HTML -----------------------------------------------------------------


def test_summary_has_one_line_per_backend_and_the_failures(full: Path) -> None:
    lines = (full / "summary.md").read_text().splitlines()
    assert len(lines) <= 60
    assert not any("PARTIAL RUN" in line for line in lines)
    header = next(line for line in lines if line.startswith("| backend"))
    assert header.split(" | ")[1:6] == ["passed", "failed", "error", "skipped", "xfailed"]
    assert header.split(" | ")[6:] == [
        "under override",
        "forward speedup vs eager @64",
        "train step speedup vs eager @64",
        "worst headroom",
        "verdict |",
    ]
    assert "| compile | 1 | 1 | 0 | 0 | 1 | 0 | forward float32 2.00× [" in "\n".join(lines)  # each ratio names both
    eager = "| eager | 3 | 0 | 0 | 0 | 0 | 0 | 1 (baseline) | 1 (baseline) | 12.5 (forward float32-batch1) | conforms |"
    assert eager in lines
    numpy = next(line for line in lines if line.startswith("| numpy"))
    assert numpy.startswith(
        "| numpy | 2 | 0 | 1 | 1 | 0 | 0 | forward float32 0.500× [0.496, 0.504]"
        " | train step float32 0.500× [0.496, 0.504] |"
    )
    assert numpy.endswith("| 50.0 (forward float32-batch1) | 1 failure |")
    compile_row = next(line for line in lines if line.startswith("| compile"))
    assert "1.25× [" in compile_row and compile_row.endswith("| 1 failure (1 known deviation) |")
    assert (
        "Capabilities not declared (their checks are skipped, not failed): numpy: backward (1 check skipped)." in lines
    )
    assert "## Failures (2)" in lines
    # The failures grouped by root cause come first, one line each, numbered in the order to fix them.
    causes = lines.index("## Root causes (2), in the order to fix them")
    assert lines[causes + 2].startswith("1. **compile**: 1 failure: forward: mismatched elements 3/640")
    assert lines[causes + 4] == "1. **numpy**: 1 failure: train_step: RuntimeError: boom in setup"
    start = lines.index("## Failures (2)")
    index, failure = next((i, line) for i, line in enumerate(lines) if "**compile**" in line and i > start)
    assert failure.startswith("- **compile** `forward` `float32-batch64` (failed): forward: mismatched elements 3/640")
    assert failure.endswith("…") and len(failure) < 220 and "reproduce" not in failure
    # The command the message gives after "reproduce:"; for numpy, one built from the record.
    assert lines[index + 1] == "  - reproduce: `pytest suites --backend=compile --seed=0 -k 'test_forward and batch64'`"
    numpy_failure = lines.index("- **numpy** `train_step` `float32-batch1` (error): RuntimeError: boom in setup")
    assert lines[numpy_failure + 1] == (
        "  - reproduce: `pytest 'suites/test_train_step.py::test_train_step[numpy-float32-batch1]' "
        "--backend=numpy --device=cpu --seed=0`"
    )


def test_html_is_one_self_contained_file_with_every_section(full: Path) -> None:
    html = (full / "report.html").read_text()
    for forbidden in ("http://", "https://", "<script", "<link", "src=", "@import"):
        assert forbidden not in html, forbidden
    assert not re.search(r"url\((?!#)", html), "only url(#id) references inside the page"
    assert '<meta http-equiv="Content-Security-Policy" content="default-src \'none\';' in html.replace("&#39;", "'")
    assert 'id="partial-banner"' not in html
    matrix = html[html.index('<table id="conformance-matrix" class="matrix">') :]
    matrix = matrix[: matrix.index("</table>")]
    for state in ("passed", "failed", "xfailed", "undeclared"):  # numpy's backward: a capability skip
        assert f'class="cell-{state}"' in matrix
    assert "known deviation: inductor reorders reductions" in matrix  # in the tooltip
    for figure in ("latency-plot", "throughput-plot", "headroom-plot"):
        assert f'<figure class="plot" id="{figure}"><svg' in html
    for table in ("verdict-table", "failures-table", "latency-table", "throughput-table", "speedup-table"):
        assert f'id="{table}"' in html
    for table in ("setup-table", "peak-table", "stability-table", "machines"):
        assert f'id="{table}"' in html
    assert f"numpy.random.default_rng({BOOTSTRAP_SEED})" in html and "2000 resamples" in html
    assert "torch 2.13.0+cpu inductor" in html and "abc1234" in html  # versions and commit


def test_a_run_without_run_end_is_reported_as_partial_and_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = report(tmp_path, PARTIAL, capsys=None)
    assert "PARTIAL RUN" in capsys.readouterr().out
    summary = (out / "summary.md").read_text().splitlines()
    assert summary[2].startswith("> **PARTIAL RUN**")
    assert "conformance_partial.jsonl has no run_end record" in summary[3]
    assert 'id="partial-banner"' in (out / "report.html").read_text()
    assert len(pd.read_csv(out / "conformance.csv")) == 2


def test_a_line_cut_off_mid_write_is_dropped_and_the_run_is_partial(tmp_path: Path) -> None:
    cut = tmp_path / "cut.jsonl"
    cut.write_text(PARTIAL.read_text() + '{"backend": "eager", "check": "forw')
    (run,) = load_results([cut]).conformance
    assert run.partial and run.dropped_last_line and len(run.checks) == 2
    assert "last line was cut off" in run.partial_reason


def test_an_interrupted_run_is_partial(tmp_path: Path) -> None:
    interrupted = tmp_path / "interrupted.jsonl"
    interrupted.write_text(PARTIAL.read_text() + '{"kind": "run_end", "exitstatus": 2, "interrupted": true}\n')
    (run,) = load_results([interrupted]).conformance
    assert run.partial and "interrupted" in run.partial_reason


def test_two_machines_merge_into_one_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = report(tmp_path, BENCH_VM1, BENCH_VM2, CONFORMANCE, PARTIAL, capsys=capsys)
    results = pd.read_csv(out / "results.csv")
    assert results.groupby("machine").size().to_dict() == {"vm1": 12, "vm2": 2}
    conformance = pd.read_csv(out / "conformance.csv")
    assert conformance.groupby("machine").size().to_dict() == {"vm1": 10, "vm2": 2}
    compile_row = next(line for line in (out / "summary.md").read_text().splitlines() if line.startswith("| compile"))
    assert "vm1/cpu: forward float32 2.00× [" in compile_row and "vm2/cpu: forward float32 2.50× [" in compile_row
    html = (out / "report.html").read_text()
    assert "eager (vm1)" in html and "eager (vm2)" in html  # matrix rows per machine


def test_conformance_only(tmp_path: Path) -> None:
    out = report(tmp_path, CONFORMANCE)
    assert 'id="no-benchmarks"' in (out / "report.html").read_text()
    assert "No benchmark results." in (out / "summary.md").read_text()
    assert (out / "results.csv").read_text().strip() == ",".join(RESULTS_COLUMNS)


def test_benchmarks_only(tmp_path: Path) -> None:
    out = report(tmp_path, BENCH_VM1)
    assert 'id="no-conformance"' in (out / "report.html").read_text()
    assert "No conformance results." in (out / "summary.md").read_text()
    assert (out / "conformance.csv").read_text().strip() == ",".join(CONFORMANCE_COLUMNS)


def test_without_eager_there_is_no_speedup_and_the_report_says_why(tmp_path: Path) -> None:
    document = json.loads(BENCH_VM1.read_text())
    document["benchmarks"] = [b for b in document["benchmarks"] if b["extra_info"]["backend"] != "eager"]
    no_eager = tmp_path / "no_eager.json"
    no_eager.write_text(json.dumps(document))
    out = report(tmp_path, no_eager)
    html = (out / "report.html").read_text()
    assert 'id="no-speedup"' in html and "no eager benchmark results" in html
    assert 'id="speedup-table"' not in html
    assert "No speedups: no eager benchmark results" in (out / "summary.md").read_text()


# -- atomic output ---------------------------------------------------------------------------


def test_a_report_that_fails_late_leaves_the_old_report_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = report(tmp_path, PARTIAL)
    before = {path.name: path.read_bytes() for path in out.iterdir()}

    def broken(*args: object) -> str:
        raise RuntimeError("summary failed")

    monkeypatch.setattr("reports.report.render_summary", broken)
    with pytest.raises(RuntimeError, match="summary failed"):
        main(["report", str(CONFORMANCE), "--out", str(out)])
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before


def test_a_failed_write_replaces_nothing_and_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    targets = {tmp_path / name: f"new {name}" for name in ("a.csv", "b.csv", "c.html")}
    for path in targets:
        path.write_text("old")
    real_stage, calls = atomic._stage, []

    def stage_then_fail(path: Path, text: str) -> str:
        calls.append(path)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real_stage(path, text)

    monkeypatch.setattr(atomic, "_stage", stage_then_fail)
    with pytest.raises(OSError):
        atomic.write_files(targets)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.csv", "c.html"]
    assert all(path.read_text() == "old" for path in targets)
    monkeypatch.undo()
    atomic.write_files(targets)
    assert [path.read_text() for path in targets] == list(targets.values())


# -- compare ---------------------------------------------------------------------------------


def compare(capsys: pytest.CaptureFixture[str], baseline: Path, current: Path, *extra: str) -> tuple[int, str]:
    code = main(["compare", str(baseline), str(current), *extra])
    return code, capsys.readouterr().out


def line_for(output: str, fragment: str) -> str:
    return next(line for line in output.splitlines() if fragment in line)


def test_a_clear_30_percent_slowdown_is_a_regression(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = compare(capsys, COMPARE / "baseline.json", COMPARE / "slow30.json")
    assert code == 1
    eager = line_for(out, "eager forward batch 64")
    assert "+30.0%" in eager and eager.endswith("REGRESSION")
    assert line_for(out, "numpy forward batch 64").endswith("ok")
    assert out.splitlines()[-1] == "netharness compare: 1 timing regression(s), 0 conformance regression(s)"


def test_a_30_percent_slowdown_over_three_noisy_rounds_is_not_significant(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = compare(capsys, COMPARE / "baseline.json", COMPARE / "slow30_noisy.json")
    assert code == 0
    numpy = line_for(out, "numpy forward batch 64")
    assert "+30.0%" in numpy and numpy.endswith("slower, not significant")
    assert out.splitlines()[-1] == "netharness compare: no regressions"


def test_a_significant_5_percent_slowdown_is_below_the_threshold(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = compare(capsys, COMPARE / "baseline.json", COMPARE / "slow5.json")
    assert code == 0
    assert line_for(out, "eager forward batch 64").endswith("slower, within threshold")
    code, out = compare(capsys, COMPARE / "baseline.json", COMPARE / "slow5.json", "--threshold", "0.02")
    assert code == 1 and line_for(out, "eager forward batch 64").endswith("REGRESSION")


def test_a_significant_speedup_is_an_improvement(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = compare(capsys, COMPARE / "slow30.json", COMPARE / "baseline.json")
    assert code == 0 and line_for(out, "eager forward batch 64").endswith("improved")


def test_a_check_that_now_fails_is_a_regression_and_one_that_now_passes_an_improvement(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out = compare(capsys, COMPARE / "conf_baseline.jsonl", COMPARE / "conf_current.jsonl")
    assert code == 1
    assert line_for(out, "compile forward float32-batch1").split()[-3:] == ["passed", "failed", "REGRESSION"]
    assert line_for(out, "eager backward float32-batch1").split()[-3:] == ["failed", "passed", "improved"]
    assert out.splitlines()[-1] == "netharness compare: 0 timing regression(s), 1 conformance regression(s)"


def test_improvements_alone_exit_zero_and_a_new_failing_check_is_a_regression(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = [json.loads(line) for line in (COMPARE / "conf_current.jsonl").read_text().splitlines()]
    fixed = [{**r, "outcome": "passed"} if r.get("backend") == "compile" else r for r in records]
    current = tmp_path / "fixed.jsonl"
    current.write_text("".join(json.dumps(r) + "\n" for r in fixed))
    code, out = compare(capsys, COMPARE / "conf_baseline.jsonl", current)
    assert code == 0 and "improved" in out
    new_check = {**records[1], "check": "losses", "outcome": "failed", "reason": "loss differs"}
    current.write_text("".join(json.dumps(r) + "\n" for r in [*fixed[:-1], new_check, fixed[-1]]))
    code, out = compare(capsys, COMPARE / "conf_baseline.jsonl", current)
    assert code == 1 and line_for(out, "eager losses").split()[-3:] == ["absent", "failed", "REGRESSION"]


def test_compare_reads_directories(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    baseline, current = tmp_path / "baseline", tmp_path / "current" / "nested"
    baseline.mkdir()
    current.mkdir(parents=True)
    shutil.copy(COMPARE / "baseline.json", baseline)
    shutil.copy(COMPARE / "conf_baseline.jsonl", baseline)
    shutil.copy(COMPARE / "slow5.json", current)
    shutil.copy(COMPARE / "conf_current.jsonl", current)
    (current / "package.json").write_text('{"name": "not results"}')  # skipped with a note
    code, out = compare(capsys, baseline, current.parent)
    assert code == 1
    assert line_for(out, "eager forward batch 64").endswith("slower, within threshold")
    assert line_for(out, "compile forward float32-batch1").endswith("REGRESSION")


# -- bad input -------------------------------------------------------------------------------

BAD_FILES = {
    "missing": (None, "does not exist"),
    "malformed": ('{"benchmarks": [', "is not valid JSON"),
    "empty": ("", "is empty"),
    "foreign": (
        '{"name": "left-pad", "version": "1.3.0"}',
        "is not a pytest-benchmark JSON or a netharness conformance",
    ),
    "foreign_lines": ('{"kind": "something"}\n{"kind": "else"}\n', "is not a pytest-benchmark JSON or a netharness"),
}


@pytest.mark.parametrize("command", ["report", "compare"])
@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_input_is_one_line_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, command: str
) -> None:
    content, message = BAD_FILES[case]
    bad = tmp_path / f"{case}.json"
    if content is not None:
        bad.write_text(content)
    argv = ["report", str(bad), "--out", str(tmp_path / "out")] if command == "report" else []
    argv = argv or ["compare", str(COMPARE / "baseline.json"), str(bad)]
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert f"results file {bad} {message}" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["compare", "a", "b", "--threshold", "ten"], "non-negative fraction"),
        (["compare", "a", "b", "--alpha", "1.5"], "probability between 0 and 1"),
        (["report"], "required: RESULTS"),
    ],
)
def test_bad_arguments_are_one_line(argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert fragment in err and len(err.strip().splitlines()) == 1


def test_a_directory_without_results_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.json").write_text("[1, 2]")
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "out")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith(
        f"results directory {tmp_path} holds no pytest-benchmark JSON or netharness conformance file"
    )


def test_a_real_pytest_benchmark_file_loads(tmp_path: Path) -> None:
    """The layout of pytest-benchmark's own output, trimmed: no netharness keys at all still loads."""
    document = {
        "machine_info": {"node": "box", "processor": "", "machine": "x86_64", "python_version": "3.11.7"},
        "commit_info": {"id": "0123456789abcdef", "dirty": False},
        "benchmarks": [
            {
                "group": None,
                "name": "test_fwd[1]",
                "fullname": "t.py::test_fwd[1]",
                "params": {"batch": 1},
                "param": "1",
                "extra_info": {},
                "options": {"timer": "perf_counter"},
                "stats": {
                    "min": 1e-6,
                    "max": 3e-6,
                    "mean": 2e-6,
                    "stddev": 1e-6,
                    "rounds": 3,
                    "median": 2e-6,
                    "iqr": 1e-6,
                    "q1": 1.5e-6,
                    "q3": 2.5e-6,
                    "iterations": 4,
                    "ops": 5e5,
                    "data": [1e-6, 2e-6, 3e-6],
                },
            }
        ],
        "datetime": "2026-01-01T00:00:00",
        "version": "5.3.0",
    }
    path = tmp_path / "0001_run.json"
    path.write_text(json.dumps(document))
    frame = benchmark_frame(load_results([path]))
    assert frame.loc[0, "backend"] == "test_fwd[1]" and frame.loc[0, "commit"] == "0123456789ab"
    assert frame.loc[0, "timings"].tolist() == [1e-6, 2e-6, 3e-6]
    buffer = io.StringIO(frame.drop(columns="timings").to_csv(index=False))
    assert pd.read_csv(buffer).loc[0, "median_s"] == 2e-6
