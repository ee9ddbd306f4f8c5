"""Unit-level guarantees behind the verdicts: hook merging and validation, names, locks, fast paths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness import KnownDeviation, ToleranceOverride
from harness.commands.run import PREVIOUS, move_aside_previous, output_lock
from harness.conformance.selectors import configuration, matches, merged_tolerance, validate
from harness.conformance.tolerances import Tolerance
from harness.contract.backend import check_backend
from harness.errors import PluginError, UsageError
from harness.net.precision import PRECISIONS
from harness.net.variants import SPEC_VARIANTS
from tests.conftest import run_suite_with_only

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


class Named:
    capabilities: frozenset[Any] = frozenset()
    devices = ("cpu",)
    dtypes = ("float32",)
    version = "1"

    def __init__(self, name: str) -> None:
        self.name = name

    def availability(self) -> Any:
        raise NotImplementedError


@pytest.mark.parametrize(
    "name", ["<script>alert(1)</script>", "Eager", "-x", "a b", "", "x" * 65, "name\nnewline", "all"]
)
def test_backend_names_that_could_be_markup_or_options_are_refused(name: str) -> None:
    with pytest.raises(PluginError, match="a name must match"):
        check_backend(Named(name), "plugin")


@pytest.mark.parametrize("name", ["eager", "my-backend", "openvino-bf16", "jax.cpu", "b2"])
def test_ordinary_backend_names_are_accepted(name: str) -> None:
    check_backend(Named(name), "plugin")


def test_a_second_run_into_the_same_folder_fails_at_once(tmp_path: Path) -> None:
    with output_lock(tmp_path), pytest.raises(UsageError, match="in use by another netharness run"):
        with output_lock(tmp_path):
            pass
    with output_lock(tmp_path):  # released: the next run may start
        pass


def test_the_previous_report_is_moved_aside_until_the_new_one_is_complete(tmp_path: Path) -> None:
    (tmp_path / "report.html").write_text("old")
    (tmp_path / "conformance.jsonl").write_text("old")
    (tmp_path / "unrelated.txt").write_text("mine")
    assert move_aside_previous(tmp_path)
    assert not (tmp_path / "report.html").exists()
    assert (tmp_path / PREVIOUS / "report.html").read_text() == "old"
    assert (tmp_path / "unrelated.txt").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert not move_aside_previous(empty)


def test_an_eager_subclass_that_changes_a_contract_method_is_timed_through_it() -> None:
    pytest.importorskip("torch")
    from backends.eager import EagerBackend
    from harness import NetSpec
    from harness.bench.fastpath import ContractPath
    from harness.net.testdata import random_params

    class Doubled(EagerBackend):
        def forward(self, spec: Any, params: Any, x: np.ndarray, *, device: str, dtype: str) -> np.ndarray:
            return 2 * super().forward(spec, params, x, device=device, dtype=dtype)

    spec = NetSpec()
    params = random_params(spec, np.random.default_rng(0), "float32")
    x = np.random.default_rng(1).standard_normal((2, 3, 40, 40)).astype(np.float32)
    assert not isinstance(EagerBackend().prepare(spec, params, device="cpu", dtype="float32"), ContractPath)
    fast = Doubled().prepare(spec, params, device="cpu", dtype="float32")
    assert isinstance(fast, ContractPath)
    np.testing.assert_array_equal(fast.forward(x), Doubled().forward(spec, params, x, device="cpu", dtype="float32"))


ZEROS_FAST_PATH = """
    import numpy as np
    from backends.eager import EagerBackend
    from harness import hookimpl

    class Zeros:
        def __init__(self, classes):
            self.classes = classes
        def forward(self, x):
            return np.zeros((x.shape[0], self.classes), np.float32)

    class ZeroFastPath(EagerBackend):
        name = "zero-fast-path"
        dtypes = ("float32",)
        def prepare(self, spec, params, *, device, dtype):
            return Zeros(spec.num_classes)

    @hookimpl
    def harness_backends():
        return [ZeroFastPath()]
"""


def test_a_fast_path_that_returns_zeros_fails_its_check(
    pytester: pytest.Pytester, fake_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    result = run_suite_with_only(
        pytester, fake_site, monkeypatch, ZEROS_FAST_PATH, "test_fast_path.py", "--backend=zero-fast-path", "-q"
    )
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*test_prepared_forward*zero-fast-path-float32-batch1*", "*prepared logits, call 1*"])


def test_a_backend_of_a_plugin_that_failed_to_load_is_named_with_the_cause() -> None:
    from harness.contract.manager import BackendRegistry, PluginFailure

    registry = BackendRegistry(failures=[PluginFailure("acme-plugins", "ModuleNotFoundError: No module named 'acme'")])
    for strict in (False, True):
        with pytest.raises(UsageError) as caught:
            registry.select(["acme-gpu"], strict=strict)
        message = str(caught.value)
        assert "unknown backend 'acme-gpu'" in message
        assert "plugin 'acme-plugins' failed: ModuleNotFoundError: No module named 'acme'" in message


def test_an_entry_point_named_like_a_built_in_plugin_is_an_error_not_silently_skipped(
    fake_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.contract.manager import build_plugin_manager
    from tests.conftest import install_plugin

    install_plugin(fake_site, "shadow-numpy", "shadow_numpy", "raise RuntimeError('never imported')\n", "numpy")
    monkeypatch.syspath_prepend(str(fake_site))
    pm = build_plugin_manager(builtins=False)
    (failure,) = [f for f in pm.load_failures if f.plugin == "numpy"]
    assert "has a built-in plugin's name; rename it" in failure.cause and "shadow-numpy" in failure.cause
