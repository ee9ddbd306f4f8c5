"""The GitHub workflow and .ci/run run the same gate with the same commands."""

from __future__ import annotations

import pytest

from tests.helpers import ROOT

CI_RUN = (ROOT / ".ci" / "run").read_text()
WORKFLOW = (ROOT / ".github" / "workflows" / "conformance.yml").read_text()


def test_both_run_the_tests_and_lint() -> None:
    for command in ("make test", "make lint"):
        assert command in CI_RUN and f"run: {command}" in WORKFLOW


def test_both_audit_the_workflows_with_zizmor_after_lint() -> None:
    command = ".venv/bin/zizmor --offline .github/workflows/"
    assert command in CI_RUN and f"run: {command}" in WORKFLOW
    for text in (CI_RUN, WORKFLOW):
        assert text.index("make lint") < text.index(command) < text.index(".venv/bin/netharness run")


def test_both_run_the_full_mutation_run_after_lint() -> None:
    command = ".venv/bin/netharness mutants\n"
    assert command in CI_RUN and f"run: {command}" in WORKFLOW
    assert CI_RUN.index("make lint") < CI_RUN.index(command)


def test_both_run_the_kernel_matrix_gate_after_lint() -> None:
    command = "make kernel-matrix-quick\n"
    assert command in CI_RUN and f"run: {command}" in WORKFLOW
    assert CI_RUN.index("make lint") < CI_RUN.index(command) < CI_RUN.index(".venv/bin/netharness run")
    assert WORKFLOW.index("run: make lint") < WORKFLOW.index(f"run: {command}")


def test_both_run_the_main_job_quick_and_strict() -> None:
    assert ".venv/bin/netharness run --quick --strict-backends" in CI_RUN
    assert ".venv/bin/netharness run --quick --strict-backends --backend=${{ matrix.backend }}" in WORKFLOW


def test_workflow_covers_every_builtin_backend_and_merges_them(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.contract.manager import DISABLE_ENV, build_plugin_manager, collect_backends

    # Backends, not plugins: one plugin may register several (openvino and openvino-f32), and
    # --backend selects by backend name. Built-ins register whether or not their runtime is installed.
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    registry = collect_backends(build_plugin_manager(entry_points=False))
    assert not registry.failures, registry.failures
    assert f"backend: [{', '.join(registry.names())}]" in WORKFLOW
    assert ".venv/bin/netharness report results/*/conformance.jsonl results/*/benchmarks.json" in WORKFLOW
    assert "GITHUB_STEP_SUMMARY" in WORKFLOW


def test_readme_quick_start_is_what_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make report" in readme and "make test" in readme
    assert "make test" in CI_RUN
