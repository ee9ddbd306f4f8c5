"""Precisions: rounding, the derived tolerance model, and the diagnosis of a coarser arithmetic."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest

from harness import NetSpec
from harness.conformance.tolerances import default_tolerance
from harness.net.bounds import backward_bound, forward_bound, forward_lengths
from harness.net.precision import PRECISIONS, diagnose, gamma
from tests.helpers import run_suite_with_only


def with_float16(values: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return values.astype(np.float32).astype(np.float16).astype(np.float32)


def test_bfloat16_and_float16_rounding_match_the_real_formats() -> None:
    torch = pytest.importorskip("torch")
    values = np.random.default_rng(0).standard_normal(10_000) * 10.0 ** np.random.default_rng(1).integers(-6, 6, 10_000)
    bf16 = torch.tensor(values, dtype=torch.float32).to(torch.bfloat16).to(torch.float32).numpy()
    np.testing.assert_array_equal(PRECISIONS["bfloat16"].round(values), bf16)
    np.testing.assert_array_equal(PRECISIONS["float16"].round(values), with_float16(values))
    assert PRECISIONS["float32"].round(values).dtype == np.float32
    assert PRECISIONS["float64"].round(values).dtype == np.float64


def test_the_forward_bound_is_the_sum_of_gamma_k_plus_the_output_rounding_per_layer() -> None:
    spec = NetSpec()
    assert forward_lengths(spec) == [75, 150, 784, 120, 84]
    u = 2.0**-24
    assert forward_bound(spec, PRECISIONS["float32"]) == pytest.approx(
        sum(gamma(k, u) + u for k in [75, 150, 784, 120, 84])
    )
    assert gamma(10, 0.2) == math.inf  # k u >= 1: no bound
    ordered = ["float64", "float32", "float16", "bfloat16"]
    bounds = [forward_bound(spec, PRECISIONS[name]) for name in ordered]
    assert bounds == sorted(bounds)
    assert backward_bound(spec, PRECISIONS["float32"], 64) > backward_bound(spec, PRECISIONS["float32"], 1)


def test_default_tolerances_follow_the_configuration() -> None:
    seed, wide = default_tolerance("forward_values", "float32"), default_tolerance("forward_values", "bfloat16")
    assert wide.rtol > 100 * seed.rtol
    small = default_tolerance("gradients", "float32", {"batch": 1})
    large = default_tolerance("gradients", "float32", {"batch": 64})
    assert large.rtol > small.rtol
    assert default_tolerance("gradient_finite_differences", "float64").rtol == 1e-5


@pytest.mark.parametrize(("precision", "bits"), [("bfloat16", 8), ("float16", 11)])
def test_diagnosis_describes_the_coarser_rounding(precision: str, bits: int) -> None:
    rng = np.random.default_rng(3)
    expected = rng.standard_normal(1000)
    # Work that rounds its result (and some of its steps) in the coarser precision.
    actual = PRECISIONS[precision].round(
        expected * (1 + PRECISIONS[precision].unit_roundoff * rng.standard_normal(1000))
    )
    assert f"rounding to about {bits} significant bits somewhere" in diagnose(actual, expected, "float32")
    assert diagnose(actual, expected, precision) == ""
    assert diagnose(expected.astype(np.float32), expected, "float32") == ""


SECRETLY_COARSE = """
    import torch
    from backends.eager import EagerBackend, Net
    from harness import hookimpl

    def mantissa10(t):
        bits = t.float().contiguous().view(torch.int32)
        bits = (bits + 0xFFF + ((bits >> 13) & 1)) & ~0x1FFF
        return bits.view(torch.float32).to(t.dtype)

    class Tf32LikeNet(Net):
        def conv(self, name, x):
            layer = getattr(self, name)
            return torch.nn.functional.conv2d(mantissa10(x), mantissa10(layer.weight), layer.bias)

        def linear(self, name, x):
            layer = getattr(self, name)
            return torch.nn.functional.linear(mantissa10(x), mantissa10(layer.weight), layer.bias)

    class SecretBfloat16(EagerBackend):
        name = "secret-bf16"
        dtypes = ("float32",)

        def forward(self, spec, params, x, *, device, dtype):
            net = self._net(spec, params, device, dtype).to(torch.bfloat16)
            with torch.no_grad():
                out = net(torch.tensor(x).to(torch.bfloat16)).float().numpy()
            self._nets.clear()
            return out

    class SecretTf32(EagerBackend):
        name = "secret-tf32"
        dtypes = ("float32",)
        net_class = Tf32LikeNet

    @hookimpl
    def harness_backends():
        return [SecretBfloat16(), SecretTf32()]
"""


def test_a_backend_computing_coarser_than_it_declares_fails_and_the_message_names_the_precision(
    pytester: pytest.Pytester, fake_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    result = run_suite_with_only(
        pytester,
        fake_site,
        monkeypatch,
        SECRETLY_COARSE,
        "test_forward_values.py",
        "--backend=secret-bf16,secret-tf32",
        "-k",
        "test_forward_values and batch7",
    )
    assert result.ret == 1
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    # The logits alone are not every layer: the rounding is described, no declaration suggested.
    assert "the errors look like rounding to about 8 significant bits somewhere" in out
    assert "the errors look like rounding to about 11 significant bits somewhere" in out


ONE_PRECISION_LOWER = """
    from backends.eager import EagerBackend
    from harness import hookimpl
    from harness.net.precision import storage_dtype

    def lying(declared, computed):
        class Lying(EagerBackend):
            name = f"{declared}-computes-{computed}"
            dtypes = (declared,)

            def forward(self, spec, params, x, *, device, dtype):
                params = {k: v.astype(x.dtype) for k, v in params.items()}
                low = x.astype(storage_dtype(computed))
                out = super().forward(spec, params, low, device=device, dtype=computed)
                return out.astype(x.dtype)

        return Lying()

    @hookimpl
    def harness_backends():
        return [lying("float64", "float32"), lying("float32", "float16"), lying("float16", "bfloat16")]
"""


def test_a_backend_one_precision_lower_than_it_declares_fails(
    pytester: pytest.Pytester, fake_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    result = run_suite_with_only(
        pytester,
        fake_site,
        monkeypatch,
        ONE_PRECISION_LOWER,
        "test_forward_values.py",
        "-k",
        "test_forward_values and (batch7 or batch64)",
    )
    result.assert_outcomes(failed=6)
    out = result.stdout.str()
    assert "rounding to about 24 significant bits somewhere" in out
    assert "rounding to about 11 significant bits somewhere" in out


def test_the_report_sets_each_reduced_precision_against_the_same_backends_float32(tmp_path: Path) -> None:
    from reports.commands import cmd_report
    from reports.load import load_results
    from reports.model import report_data
    from tests.fixtures.reports.generate import benchmark, benchmark_file, data

    rows = [
        benchmark("eager", "forward", 64, data(0.004)),
        benchmark("eager", "forward", 64, data(0.002), dtype="bfloat16"),
        benchmark("eager", "forward", 64, data(0.004, spread=0.5), dtype="float16"),
    ]
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(benchmark_file("vm1", rows)))
    frame = report_data(load_results([str(path)])).precision_speedups.set_index("dtype")
    assert frame.loc["bfloat16", "speedup"] == pytest.approx(2.0, rel=0.05)
    assert frame.loc["bfloat16", "verdict"] == "faster"
    assert frame.loc["bfloat16", "ci_low"] > 1.0
    cmd_report(argparse.Namespace(results=[str(path)], out=str(tmp_path / "r")))
    assert 'id="precision-table"' in (tmp_path / "r" / "report.html").read_text(encoding="utf-8")
