"""Selectors and declarations: overrides merge per component, typos fail with the valid choices."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from harness import KnownDeviation, ToleranceOverride
from harness.conformance.selectors import configuration, matches, merged_tolerance, validate
from harness.conformance.tolerances import Tolerance
from harness.errors import PluginError
from harness.net.precision import PRECISIONS
from harness.net.variants import SPEC_VARIANTS
from tests.helpers import ROOT, builtins_but

DEFAULT = Tolerance(rtol=1e-4, atol=2e-5)
CONFIG = {"dtype": "float32", "device": "cpu", "variant": "seed", "activation": "relu", "batch": 7, "loss": "sse"}

MERGES = [
    # (overrides, expected rtol, expected atol): each component takes its own widest value.
    ([ToleranceOverride("gradients", 1e-3, 1e-6, "more rtol")], 1e-3, 2e-5),
    ([ToleranceOverride("gradients", 1e-5, 1e-3, "more atol, less rtol")], 1e-4, 1e-3),
    ([ToleranceOverride("gradients", 1e-3, 0, "a"), ToleranceOverride("gradients", 0, 1e-3, "b")], 1e-3, 1e-3),
    ([ToleranceOverride("gradients", 1, 1, "other dtype", dtype="float64")], 1e-4, 2e-5),
    ([ToleranceOverride("gradients", 1, 1, "other loss", select={"loss": "cross_entropy"})], 1e-4, 2e-5),
    ([ToleranceOverride("gradients", 1, 1, "this batch", select={"batch": 7, "loss": "sse"})], 1, 1),
    ([ToleranceOverride("forward_values", 1, 1, "other check")], 1e-4, 2e-5),
]


@pytest.mark.parametrize(("overrides", "rtol", "atol"), MERGES)
def test_overrides_merge_per_component_and_only_where_they_select(
    overrides: list[ToleranceOverride], rtol: float, atol: float
) -> None:
    merged = merged_tolerance(DEFAULT, overrides, "gradients", CONFIG)
    assert (merged.rtol, merged.atol) == (rtol, atol)
    assert (merged.reason == "default") == ((rtol, atol) == (1e-4, 2e-5))


BAD_DECLARATIONS = [
    (ToleranceOverride("gradient", 1, 1, "typo"), "unknown check 'gradient'; valid checks: activation_derivatives"),
    (
        ToleranceOverride("gradients", 1, 1, "typo", dtype="float23"),
        "selector dtype='float23' is not valid; valid values: float64, float32, tf32, bfloat16, float16",
    ),
    (KnownDeviation("activation_properties", "xla", select={"activaton": "tanh"}), "unknown selector 'activaton'"),
    (KnownDeviation("activation_properties", "xla", select={"activation": "gelu"}), "valid values: relu, tanh"),
    (KnownDeviation("forward_values", "x", select={"variant": "64x64"}), "valid values: seed, 32x32"),
    (KnownDeviation("forward_values", "x", select={"batch": 0}), "must be a positive integer"),
    (KnownDeviation("forward_values", " "), "needs a reason"),
    (ToleranceOverride("gradients", float("nan"), 1, "nan"), "rtol=nan must be a finite number"),
    (ToleranceOverride("gradients", 1, -1, "negative"), "atol=-1 must be a finite number"),
]


@pytest.mark.parametrize(("declaration", "message"), BAD_DECLARATIONS)
def test_a_hook_typo_fails_with_the_valid_choices(declaration: Any, message: str) -> None:
    with pytest.raises(PluginError, match="harness_hook for backend 'mine'") as caught:
        validate(declaration, "mine", "harness_hook")
    assert message in str(caught.value)


@pytest.mark.parametrize("precision", list(PRECISIONS))
def test_a_selector_takes_every_precision_a_backend_may_declare(precision: str) -> None:
    override = ToleranceOverride("forward_values", 1e-2, 1e-2, "coarser arithmetic", dtype=precision)
    validate(override, "mine", "harness_tolerance_overrides")
    validate(KnownDeviation("forward_values", "a deviation", select={"dtype": precision}), "mine", "hook")
    config = configuration({"backend": "mine", "dtype": precision}, "cpu")
    assert matches(override, "forward_values", config)
    other = next(p for p in PRECISIONS if p != precision)
    assert not matches(override, "forward_values", configuration({"backend": "mine", "dtype": other}, "cpu"))


def test_a_known_deviation_can_select_one_configuration() -> None:
    tanh_only = KnownDeviation("activation_properties", "XLA's tanh dips", select={"activation": "tanh"})
    validate(tanh_only, "jax", "harness_known_deviations")
    for name, expected in (("tanh", True), ("relu", False), ("sigmoid", False)):
        config = configuration({"backend": "jax", "dtype": "float32", "name": name}, "cpu")
        assert matches(tanh_only, "activation_properties", config) is expected
    variant = configuration({"spec": SPEC_VARIANTS["32x32"], "dtype": "float64"}, "cpu")
    assert variant["variant"] == "32x32" and variant["activation"] == "relu"
    assert matches(KnownDeviation("forward_values", "r", select={"variant": "32x32"}), "forward_values", variant)


MALFORMED_HOOKS = [
    # (the hook's body, what the one-line usage error says)
    ("raise RuntimeError('oops')", "plugin 'only_plugin': harness_known_deviations raised RuntimeError for backend"),
    ("return KnownDeviation('forward_values', 'why')", "returned KnownDeviation(check='forward_values'"),
    ("return [KnownDeviation('forward_values', 'why', select='dtype')]", "has select='dtype'; give a dict"),
    ("return [KnownDeviation(['forward_values'], 'why')]", "check is ['forward_values']; give one check name"),
    ("return [KnownDeviation('forward_values', None)]", "has reason None; give a string"),
    ("return [ToleranceOverride('forward_values', 10**400, 0, 'huge')]", "must be a finite number >= 0"),
    ("return [KnownDeviation('forward_values', 'why')] if backend.only_mine else []", "raised AttributeError"),
]


@pytest.mark.parametrize(("body", "message"), MALFORMED_HOOKS)
def test_a_malformed_declaration_is_one_line_naming_the_plugin_that_made_it(
    pytester: pytest.Pytester, fake_site: Path, monkeypatch: pytest.MonkeyPatch, body: str, message: str
) -> None:
    hook = "harness_tolerance_overrides" if "ToleranceOverride(" in body else "harness_known_deviations"
    plugin = f"""
        from harness import KnownDeviation, ToleranceOverride, hookimpl
        from backends.numpy_backend import NumpyBackend

        @hookimpl
        def harness_backends():
            return []

        @hookimpl
        def {hook}(backend):
            {body}
    """
    monkeypatch.setenv("NETHARNESS_DISABLE_PLUGINS", builtins_but("numpy"))
    from tests.helpers import install_plugin

    install_plugin(fake_site, "only-plugin", "only_plugin", textwrap.dedent(plugin))
    monkeypatch.setenv("PYTHONPATH", str(fake_site))
    result = pytester.runpytest_subprocess(
        str(ROOT / "suites" / "test_forward_values.py"), "--backend=numpy", "-p", "no:cacheprovider", "-q"
    )
    assert result.ret == 4, result.stdout.str() + result.stderr.str()
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert len(errors) == 1 and message in errors[0] and "only_plugin" in errors[0], result.stderr.str()
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
