"""The conformance suite catches every planted defect, each in the check that names it.

One ``netharness mutants --quick`` run (module-scoped: each mutant on the check it declares,
in float32 and float64) feeds the suite-run tests here; a surviving mutant fails
``test_mutant_is_caught_by_its_declared_check``. The full run (every check, and every
precision each defect is in, as its exit status) belongs to the gate: ``.ci/run`` runs
``netharness mutants``.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from backends.eager import EagerBackend
from backends.mutants import MUTANTS, Mutant, NetMutant
from harness import NetSpec
from harness.commands import cli
from harness.commands.mutants import EXIT_BASELINE_BROKEN, EXIT_SURVIVORS, read_records, render, summarize
from harness.contract.manager import BUILTIN_PLUGINS
from harness.net.testdata import random_images, random_params, random_target

# The module fixture runs the suite over forty backends: give it room on a busy machine.
pytestmark = pytest.mark.timeout(900)

FAMILIES = {"shapes", "forward", "gradients", "init", "activations", "losses", "training", "hygiene"}
FAMILIES |= {"batch", "spec fields", "layouts", "precision"}  # issue 14's property families


@dataclass
class MutantsRun:
    exit_status: int
    output: str
    records: list[dict[str, Any]]


@pytest.fixture(scope="module")
def mutants_run(tmp_path_factory: pytest.TempPathFactory) -> MutantsRun:
    """``netharness mutants --quick`` run once, in-process (the suite itself runs in its child pytest)."""
    results = tmp_path_factory.mktemp("mutants") / "conformance.jsonl"
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        status = cli.main(["mutants", "--quick", f"--results={results}"])
    return MutantsRun(status, output.getvalue(), read_records(results))


def outcomes(records: list[dict[str, Any]], backend: str, check: str) -> set[object]:
    return {r["outcome"] for r in records if r.get("backend") == backend and r.get("check") == check}


# -- the mutants themselves (no suite run) -------------------------------------------------------


def test_enough_mutants_covering_every_family() -> None:
    names = [f"mutant-{m.defect}" for m in MUTANTS]
    assert len(MUTANTS) >= 35
    assert len(set(names)) == len(names), "two mutants share a defect name"
    assert {m.family for m in MUTANTS} >= FAMILIES
    assert all(m.caught_by and m.description() for m in MUTANTS)


def test_mutants_are_not_a_builtin_plugin() -> None:
    assert "backends.mutants" not in BUILTIN_PLUGINS.values()


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_mutant_net_without_a_defect_is_eager(activation: str) -> None:
    """The network the network-level mutants bend is, unbent, bit for bit the eager Net."""
    spec = NetSpec(activation=activation)
    rng = np.random.default_rng(0)
    params, x = random_params(spec, rng), random_images(spec, 3, rng)
    target = random_target(spec, "cross_entropy", 3, rng)
    eager, unbent = EagerBackend(), NetMutant()
    run = {"device": "cpu", "dtype": "float64"}
    expected, actual = eager.intermediates(spec, params, x, **run), unbent.intermediates(spec, params, x, **run)
    assert list(actual) == list(expected)
    assert all(np.array_equal(actual[name], expected[name]) for name in expected)
    assert np.array_equal(unbent.forward(spec, params, x, **run), eager.forward(spec, params, x, **run))
    value, grads = unbent.gradients(spec, params, x, target, loss="cross_entropy", **run)
    expected_value, expected_grads = eager.gradients(spec, params, x, target, loss="cross_entropy", **run)
    assert value == expected_value
    assert all(np.array_equal(grads[name], expected_grads[name]) for name in expected_grads)


# -- tabulating: a survivor or a broken baseline is not a pass ------------------------------------


def record(backend: str, check: str, outcome: str) -> dict[str, Any]:
    return {"backend": backend, "check": check, "outcome": outcome, "test_id": f"{check}[{backend}]", "reason": "r"}


def test_a_survivor_makes_the_run_fail() -> None:
    caught, survivor = MUTANTS[0], MUTANTS[1]
    records = [
        {"kind": "run_start"},
        record("eager", "forward_values", "passed"),
        record(f"mutant-{caught.defect}", "output_shape", "passed"),
        record(f"mutant-{caught.defect}", "forward_values", "failed"),
        record(f"mutant-{survivor.defect}", "forward_values", "passed"),
    ]
    report = summarize(records, [caught, survivor])
    assert report.exit_status() == EXIT_SURVIVORS
    assert [m.first for m in report.mutants] == ["forward_values", ""]
    table = render(report)
    assert "caught 1/2 (kill rate 50%)" in table
    assert f"SURVIVED: mutant-{survivor.defect}" in table


def test_the_precisions_that_catch_a_mutant_are_tabulated_and_a_float32_blind_spot_is_named() -> None:
    declared = next(m for m in MUTANTS if m.float32_hides)
    plain = next(m for m in MUTANTS if not m.float32_hides)

    def failed(m: type[Mutant], dtype: str) -> dict[str, Any]:
        return {**record(f"mutant-{m.defect}", m.caught_by, "failed"), "dtype": dtype}

    report = summarize([failed(declared, "float64"), failed(plain, "float64")], [declared, plain])
    assert [m.caught_in for m in report.mutants] == [("float64",), ("float64",)]
    assert [m.precisions_as_declared for m in report.mutants] == [True, False]
    table = render(report)
    assert f"float32 hides mutant-{declared.defect} ({declared.description()}): {declared.float32_hides}" in table
    assert f"float32 hides mutant-{plain.defect} ({plain.description()}): UNDECLARED" in table
    both = summarize([failed(plain, "float32"), failed(plain, "float64")], [plain]).mutants[0]
    assert both.caught_in == ("float32", "float64") and both.precisions_as_declared


def test_a_precision_that_hides_a_defect_without_a_reason_fails_the_full_run_only() -> None:
    plain = next(m for m in MUTANTS if not m.float32_hides and "float32" in m.affects)
    records = [
        record("eager", plain.caught_by, "passed"),
        {**record(f"mutant-{plain.defect}", plain.caught_by, "failed"), "dtype": "float64"},
    ]
    full = summarize(records, [plain])
    assert full.exit_status() == EXIT_SURVIVORS and "UNDECLARED" in render(full)
    quick = summarize(records, [plain])
    quick.quick = True
    assert quick.exit_status() == 0 and "UNDECLARED" not in render(quick)


def test_a_failing_baseline_is_reported_before_survivors() -> None:
    mutant = MUTANTS[0]
    records = [record("eager", "gradients", "failed"), record(f"mutant-{mutant.defect}", "gradients", "failed")]
    report = summarize(records, [mutant])
    assert report.exit_status() == EXIT_BASELINE_BROKEN
    assert "baseline broken: eager failed gradients[eager]" in render(report)
    assert summarize([record(f"mutant-{mutant.defect}", "gradients", "failed")], [mutant]).baseline_broken


# -- the suite run -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.defect)
def test_mutant_is_caught_by_its_declared_check(mutant: type[Mutant], mutants_run: MutantsRun) -> None:
    got = outcomes(mutants_run.records, f"mutant-{mutant.defect}", mutant.caught_by)
    assert "failed" in got, f"{mutant.defect} ({mutant.description()}) survived {mutant.caught_by}: outcomes {got}"


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.defect)
def test_mutant_is_caught_in_float64_and_never_where_it_says_float32_hides(
    mutant: type[Mutant], mutants_run: MutantsRun
) -> None:
    """Its own check catches a mutant only in precisions its defect is in, in float64 if that is one,
    and never in float32 if it says float32 hides it.

    Whether float32 catches the rest is the full run's question (some need another check).
    """
    outcome = summarize(mutants_run.records, [mutant]).mutants[0]
    assert outcome.caught_in and set(outcome.caught_in) <= set(mutant.affects), outcome.caught_in
    if "float64" in mutant.affects:
        assert "float64" in outcome.caught_in, f"{mutant.defect} caught in {outcome.caught_in} only"
    if mutant.float32_hides:
        assert "float32" not in outcome.caught_in, f"float32 catches {mutant.defect}: drop its float32_hides"


def test_eager_is_clean(mutants_run: MutantsRun) -> None:
    eager = [r for r in mutants_run.records if r.get("backend") == "eager"]
    assert eager, "eager ran no checks"
    assert {r["outcome"] for r in eager} <= {"passed", "skipped"}
    declared = {m.caught_by for m in MUTANTS}
    assert declared <= {r["check"] for r in eager if r["outcome"] == "passed"}


def test_command_prints_the_table_and_exits_0(mutants_run: MutantsRun) -> None:
    assert mutants_run.exit_status == 0, mutants_run.output
    lines = mutants_run.output.splitlines()
    assert any(line.split()[:3] == ["mutant", "defect", "expected"] for line in lines if line.strip())
    for mutant in MUTANTS:
        row = next(line for line in lines if line.startswith(f"mutant-{mutant.defect} "))
        assert mutant.caught_by in row and " yes " in row, row
        caught_in = summarize(mutants_run.records, [mutant]).mutants[0].caught_in
        assert caught_in and set(caught_in) <= set(mutant.affects), row
        assert f" {','.join(p.removeprefix('float') for p in caught_in)} " in row, row
    assert f"caught {len(MUTANTS)}/{len(MUTANTS)} (kill rate 100%)" in mutants_run.output
    assert "quick: each mutant ran its declared check only" in mutants_run.output


def test_failure_message_says_how_bad_and_how_to_reproduce(mutants_run: MutantsRun) -> None:
    failed = [
        r
        for r in mutants_run.records
        if (r.get("backend"), r.get("outcome"), r.get("check")) == ("mutant-relu-on-logits", "failed", "forward_values")
    ]
    reason = str(failed[0]["reason"])
    assert "mismatched elements" in reason and "greatest absolute difference" in reason
    assert "tolerance rtol=" in reason and "first divergent layer: fc3" in reason
    assert failed[0]["headroom"] is not None and float(failed[0]["headroom"]) < 1
