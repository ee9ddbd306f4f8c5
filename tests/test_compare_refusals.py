"""``netharness compare`` refuses what it cannot compare: one line on stderr, exit 2, no traceback.

Every case builds its two inputs in ``tmp_path`` from the record builders of
tests/fixtures/reports/generate.py, so they have exactly the shape the real writers give them,
and changes one thing: the seed, the device, the backends, a missing ``run_end``, a zero median.
A second table shows that each ``--allow-...`` flag lets exactly its own difference through.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness.commands.cli import main
from tests.fixtures.reports import generate as G

REFUSED = 2


Records = list[dict[str, Any]]


# -- inputs ------------------------------------------------------------------------------------


def conformance(
    seed: int = 0,
    device: str = "cpu",
    backends: tuple[str, ...] = ("eager", "numpy"),
    checks: tuple[str, ...] = ("forward", "output_shape"),
    end: bool = True,
    interrupted: bool = False,
) -> Records:
    """A finished conformance run: every check passes on every backend."""
    start = G.run_start("ci", {name: "1.0" for name in backends})
    start.update(seed=seed, device=device)
    records = [start]
    for backend in backends:
        for name in checks:
            record = G.check(backend, name, "float32-batch1", "passed", error=(1e-6, 10.0))
            records.append({**record, "seed": seed, "device": device})
    if end:
        records.append(
            {"kind": "run_end", "time": 1.0, "exitstatus": 2 if interrupted else 0, "interrupted": interrupted}
        )
    return records


def benchmarks(backends: tuple[str, ...] = ("eager", "numpy"), device: str = "cpu") -> dict[str, Any]:
    rows = [G.benchmark(backend, "forward", 64, G.data(0.01), device=device) for backend in backends]
    return G.benchmark_file("ci", rows)


def with_stats(document: dict[str, Any], **stats: Any) -> dict[str, Any]:
    """The benchmark file with the first benchmark's stats changed."""
    changed = copy.deepcopy(document)
    changed["benchmarks"][0]["stats"].update(stats)
    return changed


def with_check(records: Records, **fields: Any) -> Records:
    """The run with its first check record changed (a field set to None is removed)."""
    changed = copy.deepcopy(records)
    changed[1].update(fields)
    changed[1] = {key: value for key, value in changed[1].items() if value is not None}
    return changed


def many_checks(count: int) -> tuple[str, ...]:
    return tuple(f"check_{i:03d}" for i in range(count))


@dataclass(frozen=True)
class Input:
    """A results file: records (JSON lines), a document (JSON), or raw text."""

    content: Records | dict[str, Any] | str
    name: str = ""

    def write(self, path: Path) -> Path:
        if isinstance(self.content, str):
            text = self.content
        else:
            text = G.render(self.content)
        suffix = ".json" if isinstance(self.content, dict) else ".jsonl"
        target = path.with_name(path.name + (self.name or suffix))
        target.write_text(text, encoding="utf-8")
        return target


@dataclass(frozen=True)
class Case:
    baseline: Input
    current: Input
    message: str
    """A fragment of the one stderr line; {baseline} and {current} are the files' paths."""
    args: tuple[str, ...] = field(default=())


RUN = Input(conformance())
BENCH = Input(benchmarks())
CUT_OFF = G.render(conformance(end=False)) + '{"backend": "eager", "check": "forw'
MALFORMED = G.render(conformance()).replace('"kind": "check"', '"kind": "check",,', 1)

REFUSALS = {
    # different runs
    "eager-vs-numpy": Case(
        Input(benchmarks(("eager",))),
        Input(benchmarks(("numpy",))),
        "baseline and current differ in backends (baseline eager; current numpy): compare runs made alike, "
        "or pass --allow-different=backend to compare only what both have",
    ),
    # A file that names no clock was timed on the wall clock (format 1); CPU time is another quantity.
    "wall-clock-vs-cpu-clock": Case(
        BENCH,
        Input(
            G.benchmark_file(
                "ci", [G.benchmark(b, "forward", 64, G.data(0.01), clock="cpu") for b in ("eager", "numpy")]
            )
        ),
        "the baseline's benchmarks were timed on the wall clock, the current's on the cpu clock;"
        " rerun one with the other's --clock",
    ),
    "cpu-vs-cuda": Case(BENCH, Input(benchmarks(device="cuda")), "differ in devices (baseline cpu; current cuda)"),
    "cpu-vs-cuda-checks": Case(
        RUN, Input(conformance(device="cuda")), "differ in devices (baseline cpu; current cuda)"
    ),
    "seed-0-vs-7": Case(RUN, Input(conformance(seed=7)), "differ in seeds (baseline 0; current 7)"),
    "seed-and-device": Case(
        RUN,
        Input(conformance(seed=7, device="cuda")),
        "differ in seeds (baseline 0; current 7) and devices (baseline cpu; current cuda): "
        "compare runs made alike, or pass --allow-different=seed,device",
    ),
    "a-backend-less": Case(
        RUN, Input(conformance(backends=("eager",))), "differ in backends (baseline eager, numpy; current eager)"
    ),
    "seed-allowed-device-not": Case(
        RUN, Input(conformance(seed=7, device="cuda")), "pass --allow-different=device", ("--allow-different=seed",)
    ),
    "hostile-backend-name-stays-on-one-line": Case(
        RUN,
        Input(conformance(backends=("eager", "evil\nname"))),
        "differ in backends (baseline eager, numpy; current eager, 'evil\\nname')",
    ),
    # nothing in common
    "benchmarks-vs-checks": Case(
        BENCH,
        RUN,
        "share no benchmark and no check: nothing to compare "
        "(baseline: 2 benchmarks, 0 checks; current: 0 benchmarks, 4 checks)",
    ),
    "other-backends-allowed-but-nothing-shared": Case(
        Input(benchmarks(("eager",))),
        Input(benchmarks(("numpy",))),
        "share no benchmark and no check: nothing to compare",
        ("--allow-different", "backend"),
    ),
    "other-devices-allowed-but-nothing-shared": Case(
        BENCH, Input(benchmarks(device="cuda")), "nothing to compare", ("--allow-different", "device")
    ),
    # partial runs
    "no-run-end": Case(
        RUN,
        Input(conformance(end=False)),
        "the current run is partial: {current} has no run_end record (the run did not finish); 4 checks present; "
        "rerun it, or pass --allow-partial to compare what it holds",
    ),
    "interrupted": Case(RUN, Input(conformance(interrupted=True)), "the current run is partial: {current} records an"),
    "cut-off-last-line": Case(RUN, Input(CUT_OFF), "has no run_end record (the run did not finish; its last line was"),
    "partial-baseline": Case(Input(conformance(end=False)), RUN, "the baseline run is partial: {baseline} has no"),
    "99-checks-not-run": Case(
        Input(conformance(backends=("eager",), checks=many_checks(100))),
        Input(conformance(backends=("eager",), checks=many_checks(1))),
        "the current run lacks 99 checks the baseline ran (first: eager check_001 float32-batch1 float32 cpu), "
        "so it looks partial; rerun it, or pass --allow-partial",
    ),
    # corrupt records and impossible timings
    "zero-median": Case(
        Input(with_stats(benchmarks(), median=0)),
        BENCH,
        "results file {baseline}: benchmark 'test_forward[eager-float32-batch64]' has a median of 0 s; "
        "a timing must be a positive number of seconds",
    ),
    "negative-median": Case(BENCH, Input(with_stats(benchmarks(), median=-0.01)), "has a median of -0.01 s"),
    "nan-median": Case(BENCH, Input(with_stats(benchmarks(), median=float("nan"))), "has a median of nan s"),
    "infinite-median": Case(BENCH, Input(with_stats(benchmarks(), median=float("inf"))), "has a median of inf s"),
    "text-median": Case(
        BENCH, Input(with_stats(benchmarks(), median="0.01")), "has stats.median '0.01'; expected a number"
    ),
    "zero-rounds": Case(Input(with_stats(benchmarks(), data=[0.0, 0.0, 0.01])), BENCH, "has a median round of 0 s"),
    "negative-round": Case(BENCH, Input(with_stats(benchmarks(), data=[0.01, -1.0])), "has a round of -1.0 s"),
    "rounds-not-numbers": Case(
        BENCH, Input(with_stats(benchmarks(), data=["fast"])), "has stats.data that is not a list of numbers"
    ),
    "malformed-line": Case(RUN, Input(MALFORMED), "results file {current} is not valid JSON: "),
    "check-without-outcome": Case(
        RUN, Input(with_check(conformance(), outcome=None)), "{current}: line 2 (a check) has no outcome"
    ),
    "check-with-unknown-outcome": Case(
        RUN,
        Input(with_check(conformance(), outcome="maybe")),
        "{current}: line 2 (a check) has outcome 'maybe'; expected one of passed, failed",
    ),
    "check-with-numeric-config": Case(
        RUN, Input(with_check(conformance(), config=7)), "line 2 (a check) has config 7; expected a non-empty string"
    ),
    "record-without-kind": Case(RUN, Input(with_check(conformance(), kind=None)), "line 2 has no kind"),
    "run-without-seed": Case(
        RUN,
        Input([{key: value for key, value in record.items() if key != "seed"} for record in conformance()]),
        "results file {current}: its run_start record has no seed, so it cannot be told",
    ),
}


@pytest.mark.parametrize("case", REFUSALS.values(), ids=REFUSALS.keys())
def test_compare_refuses_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: Case) -> None:
    baseline, current = case.baseline.write(tmp_path / "baseline"), case.current.write(tmp_path / "current")
    code = main(["compare", str(baseline), str(current), *case.args])
    captured = capsys.readouterr()
    assert code == REFUSED
    assert captured.out == "", "nothing is compared, so nothing is printed"
    assert captured.err.count("\n") == 1 and captured.err.startswith("netharness: error: "), captured.err
    assert case.message.format(baseline=baseline, current=current) in captured.err
    assert "Traceback" not in captured.err


# -- what each --allow-... lets through --------------------------------------------------------


@dataclass(frozen=True)
class Allowed:
    baseline: Input
    current: Input
    args: tuple[str, ...]
    exit_code: int
    expect: tuple[str, ...]
    """Fragments of stdout."""
    absent: tuple[str, ...] = ()


FAILING_NUMPY = [
    {**record, "outcome": "failed", "reason": "numpy broke"} if record.get("backend") == "numpy" else record
    for record in conformance(seed=7)
]

ALLOWED = {
    "other-seed": Allowed(
        RUN,
        Input(conformance(seed=7)),
        ("--allow-different=seed",),
        0,
        ("note: seeds (baseline 0; current 7) differ: compared anyway (--allow-different=seed)", "no regressions"),
    ),
    "other-seed-still-finds-a-regression": Allowed(
        RUN,
        Input(FAILING_NUMPY),
        ("--allow-different", "seed"),
        1,
        ("REGRESSION", "0 timing regression(s), 2 conformance regression(s)"),
    ),
    "other-seed-and-device-as-a-list-and-repeated": Allowed(
        RUN,
        Input(conformance(seed=7)),
        ("--allow-different=device,seed", "--allow-different", "backend"),
        0,
        ("seeds (baseline 0; current 7) differ",),
    ),
    "fewer-backends-compares-only-the-shared-ones": Allowed(
        BENCH,
        Input(benchmarks(("eager",))),
        ("--allow-different=backend",),
        0,
        ("eager forward batch 64", "backends (baseline eager, numpy; current eager) differ"),
        ("numpy forward", "only in the baseline"),
    ),
    "a-new-failing-backend-outside-the-comparison-is-not-a-regression": Allowed(
        Input(conformance(backends=("eager",))),
        Input([{**r, "seed": 0} for r in FAILING_NUMPY]),
        ("--allow-different=backend",),
        0,
        ("no regressions",),
        ("REGRESSION", "numpy forward", "numpy output_shape"),
    ),
    "partial": Allowed(
        RUN,
        Input(conformance(end=False)),
        ("--allow-partial",),
        0,
        ("note: the current run is partial (--allow-partial): ", "has no run_end record"),
    ),
    "checks-not-run": Allowed(
        Input(conformance(checks=many_checks(3))),
        Input(conformance(checks=many_checks(1))),
        ("--allow-partial",),
        0,
        ("not run in the current", "the current run lacks 4 checks the baseline ran"),
    ),
}


@pytest.mark.parametrize("case", ALLOWED.values(), ids=ALLOWED.keys())
def test_each_allowance_lets_its_own_difference_through(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: Allowed
) -> None:
    baseline, current = case.baseline.write(tmp_path / "baseline"), case.current.write(tmp_path / "current")
    code = main(["compare", str(baseline), str(current), *case.args])
    captured = capsys.readouterr()
    assert (code, captured.err) == (case.exit_code, "")
    for fragment in case.expect:
        assert fragment in captured.out
    for fragment in case.absent:
        assert fragment not in captured.out


def test_an_unknown_allowance_is_a_usage_error_naming_the_valid_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", "a", "b", "--allow-different=colour"]) == REFUSED
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "unknown difference 'colour'; valid: seed, device, backend" in err


def test_help_documents_the_refusals_and_the_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for fragment in ("2: the inputs cannot be compared", "--allow-different WHAT[,WHAT...]", "--allow-partial"):
        assert fragment in text


def test_runs_made_alike_still_compare(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The refusals leave identical runs alone: the same inputs on both sides compare cleanly."""
    paths = [Input(document).write(tmp_path / name) for name, document in (("b", benchmarks()), ("c", conformance()))]
    for path in paths:
        assert main(["compare", str(path), str(path)]) == 0
        assert capsys.readouterr().out.splitlines()[-1] == "netharness compare: no regressions"


# -- benchmarks that vanished, and a report of a run folder ------------------------------------


@pytest.mark.parametrize(
    ("current_timed", "message"),
    [
        (("eager",), "the current run lacks 1 benchmark the baseline timed (first: numpy forward"),
        ((), "the current run lacks 2 benchmarks the baseline timed"),
    ],
)
def test_benchmarks_that_vanished_are_refused_not_a_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], current_timed: tuple[str, ...], message: str
) -> None:
    for side, timed in (("baseline", ("eager", "numpy")), ("current", current_timed)):
        folder = tmp_path / side
        folder.mkdir()
        Input(conformance()).write(folder / "conformance")
        if timed:
            Input(benchmarks(timed)).write(folder / "benchmarks")
    code = main(["compare", str(tmp_path / "baseline"), str(tmp_path / "current")])
    err = capsys.readouterr().err
    assert code == REFUSED and message in err and "no timing at all of " in err and "numpy" in err, err
    assert main(["compare", str(tmp_path / "baseline"), str(tmp_path / "current"), "--allow-partial"]) == 0


def test_a_report_of_a_run_folder_leaves_its_previous_run_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    (run / "previous").mkdir(parents=True)
    (run / ".netharness-run.json").write_text('{"files": [], "complete": true}')
    Input(conformance(backends=("eager",))).write(run / "conformance")
    Input(with_check(conformance(backends=("eager",)), outcome="failed")).write(run / "previous" / "conformance")
    assert main(["report", str(run), "--out", str(tmp_path / "r")]) == 0
    summary = (tmp_path / "r" / "summary.md").read_text()
    assert "fail" not in summary.split("| verdict |")[1].lower(), summary


BAD_REPORT_INPUTS = [
    (with_check(conformance(), outcome="timeout"), "(a check) has outcome 'timeout'; expected one of"),
    (with_check(conformance(), headroom=-2.0), "(a check) has headroom -2.0; expected a number >= 0"),
]


@pytest.mark.parametrize(("records", "message"), BAD_REPORT_INPUTS)
def test_a_report_refuses_what_it_cannot_judge(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], records: Any, message: str
) -> None:
    path = Input(records).write(tmp_path / "conformance")
    assert main(["report", str(path), "--out", str(tmp_path / "r")]) == REFUSED
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
