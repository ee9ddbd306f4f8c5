"""Outcomes come from the harness: a skip, xfail or exit raised in backend code is a failure.

An attacker's backend whose forward is wrong (2 x logits) raised ``pytest.skip`` in
``forward``, ``unittest.SkipTest`` in ``gradients`` and ``pytest.xfail`` in ``train_step``, and
passed a strict run as "conforms (88 passed, 16 xfailed, 88 skipped)"; ``pytest.exit`` in
``forward`` ended the run early with exit 0. Each is now a failure that names what was raised.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import run_suite_with_only

CONTROL_FLOW_BACKENDS = """
    import sys
    import unittest

    import pytest
    from backends.eager import EagerBackend
    from harness import hookimpl

    class Skips(EagerBackend):
        name = "skips"
        dtypes = ("float32",)

        def forward(self, spec, params, x, *, device, dtype):
            pytest.skip("not today")

        def gradients(self, spec, params, x, target, *, loss, device, dtype):
            raise unittest.SkipTest("no gradients")

        def train_step(self, spec, params, x, target, *, loss, lr, device, dtype):
            pytest.xfail("expected")

    class Exits(EagerBackend):
        name = "exits"
        dtypes = ("float32",)

        def forward(self, spec, params, x, *, device, dtype):
            if x.shape[0] == 7:
                pytest.exit("bye", returncode=0)
            return 2 * super().forward(spec, params, x, device=device, dtype=dtype)

        def gradients(self, spec, params, x, target, *, loss, device, dtype):
            sys.exit(0)

    @hookimpl
    def harness_backends():
        return [Skips(), Exits()]
"""


@pytest.mark.parametrize(
    ("suite", "select", "raised"),
    [
        ("test_forward_values.py", "test_forward_values[skips", "Skipped (not today) at only_plugin.py"),
        ("test_gradients.py", "test_gradients[skips", "SkipTest (no gradients) at only_plugin.py"),
        ("test_training.py", "test_train_step[skips", "XFailed (expected) at only_plugin.py"),
        ("test_forward_values.py", "test_forward_values[exits", "Exit (bye) at only_plugin.py"),
        ("test_gradients.py", "test_gradients[exits", "SystemExit (0) at only_plugin.py"),
    ],
)
def test_control_flow_raised_in_backend_code_fails_the_check(
    pytester: pytest.Pytester, fake_site: Path, monkeypatch: pytest.MonkeyPatch, suite: str, select: str, raised: str
) -> None:
    pytest.importorskip("torch")
    backend = select.split("[")[1]
    result = run_suite_with_only(
        pytester, fake_site, monkeypatch, CONTROL_FLOW_BACKENDS, suite, f"--backend={backend}", "-k", select
    )
    outcomes = result.parseoutcomes()
    assert result.ret == 1, result.stdout.str()
    assert outcomes.get("failed", 0) >= 1 and not {"skipped", "xfailed", "passed"} & set(outcomes), outcomes
    result.stdout.fnmatch_lines([f"*backend {backend!r} raised {raised}*only the harness skips*"])


def test_the_harness_s_own_skips_still_skip(
    pytester: pytest.Pytester, fake_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A check the harness skips (finite differences need float64) is still a skip, not a failure."""
    pytest.importorskip("torch")
    plugin = """
        from backends.eager import EagerBackend
        from harness import hookimpl

        class Plain(EagerBackend):
            name = "plain"
            dtypes = ("float32",)

        @hookimpl
        def harness_backends():
            return [Plain()]
    """
    result = run_suite_with_only(
        pytester, fake_site, monkeypatch, plugin, "test_gradients.py", "--backend=plain", "-k", "finite_differences"
    )
    result.assert_outcomes(skipped=2)


BFLOAT16_ONLY = """
    from backends.eager import EagerBackend
    from harness import hookimpl

    class Bf16Only(EagerBackend):
        '''Declares bfloat16 alone, and triples its gradients.'''

        name = "bf16-only"
        dtypes = ("bfloat16",)

        def gradients(self, spec, params, x, target, *, loss, device, dtype):
            value, grads = super().gradients(spec, params, x, target, loss=loss, device=device, dtype=dtype)
            return value, {name: 3 * g for name, g in grads.items()}

    @hookimpl
    def harness_backends():
        return [Bf16Only()]
"""


def test_a_family_no_declared_precision_can_judge_is_recorded_and_fails_a_strict_run(
    pytester: pytest.Pytester, fake_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    result = run_suite_with_only(
        pytester, fake_site, monkeypatch, BFLOAT16_ONLY, "test_gradients.py", "--backend=bf16-only",
        "--strict-backends", "-k", "test_gradients and batch1", "-rs",
    )  # fmt: skip
    assert result.ret == 1, result.stdout.str()
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(
        [
            "*backend 'bf16-only' declares activations, gradients, losses, training but only precisions that cannot*",
            "*not judged: gradients checks run at float32 and float64 only*",
        ]
    )
