"""The conformance suite catches each planted defect in the check that names it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.mutants import MUTANTS


@pytest.fixture(scope="module")
def mutant_results(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, object]]:
    """One pytest run of the relevant checks, float64 only, over eager and every mutant."""
    import subprocess
    import sys

    tmp = tmp_path_factory.mktemp("mutants")
    site = tmp / "site"
    info = site / "netharness_mutants-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: netharness-mutants\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[netharness.backends]\nmutants = tests.mutants\n")
    results = tmp / "results.jsonl"
    names = ",".join(["eager", *(f"mutant-{m.defect}" for m in MUTANTS)])
    checks = sorted({m.caught_by for m in MUTANTS})
    command = [
        sys.executable, "-m", "pytest", str(ROOT / "suites"), "-p", "no:cacheprovider", "-q",
        f"--backend={names}", f"--conformance-results={results}",
        "-k", f"({' or '.join(f'test_{c}' for c in checks)}) and float64 and not variants",
    ]  # fmt: skip
    env = {
        **__import__("os").environ,
        "PYTHONPATH": f"{site}:{ROOT}",
        "NETHARNESS_DISABLE_PLUGINS": "compile,numpy,onnx",
    }
    subprocess.run(command, cwd=tmp, env=env, capture_output=True, text=True, timeout=600, check=False)
    return [json.loads(line) for line in Path(results).read_text().splitlines()]


def outcomes(records: list[dict[str, object]], backend: str, check: str) -> set[object]:
    return {r["outcome"] for r in records if r.get("backend") == backend and r.get("check") == check}


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.defect)
def test_mutant_fails_the_check_that_names_it(mutant: type, mutant_results: list[dict[str, object]]) -> None:
    got = outcomes(mutant_results, f"mutant-{mutant.defect}", mutant.caught_by)
    assert "failed" in got, f"{mutant.defect} was not caught by {mutant.caught_by}: outcomes {got}"
    assert outcomes(mutant_results, "eager", mutant.caught_by) == {"passed"}


def test_failure_message_says_how_bad_and_how_to_reproduce(mutant_results: list[dict[str, object]]) -> None:
    failed = [r for r in mutant_results if r.get("backend") == "mutant-relu-on-logits" and r.get("outcome") == "failed"]
    reason = str(failed[0]["reason"])
    assert "mismatched elements" in reason and "greatest absolute difference" in reason
    assert "tolerance rtol=" in reason and "first divergent layer: fc3" in reason
    assert failed[0]["headroom"] is not None and float(failed[0]["headroom"]) < 1
