"""The max-pool tie check's data ties exactly on any machine: in any summation order, at every precision.

The tie check is only fair if the values before each pool are bitwise tied whatever kernel
computes them. Here each convolution is summed, in float32 and in float64, in several
random orders of its products, one product at a time, as a kernel with another blocking
or thread split would: every order must give the same bits at every position.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from harness import NetSpec, oracle
from harness.net.testdata import as_float64, distinct_values_per_window, tied_pool_data
from harness.net.variants import SPEC_VARIANTS
from tests.helpers import ROOT, run_suite_with_only

SEED = 2026
ORDERS = 4


def products_per_output(weight: np.ndarray, x: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """(C_out, H', W', C_in * k * k + 1): every product a convolution output sums, and its bias last."""
    c_out, c_in, k, _ = weight.shape
    _, _, h, w = x.shape
    patches = np.lib.stride_tricks.sliding_window_view(x[0], (k, k), axis=(1, 2))  # (C_in, H', W', k, k)
    patches = patches.transpose(1, 2, 0, 3, 4).reshape(h - k + 1, w - k + 1, c_in * k * k)
    products = patches[None] * weight.reshape(c_out, 1, 1, -1)
    biases = np.broadcast_to(bias.reshape(c_out, 1, 1, 1), (*products.shape[:3], 1))
    return np.concatenate([products, biases], axis=-1)


def summed_in_order(products: np.ndarray, order: np.ndarray) -> np.ndarray:
    """One sequential sum per output, in ``order``, rounding after every addition (the products' dtype)."""
    return np.cumsum(products[..., order], axis=-1)[..., -1]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("variant", ["seed", "1ch", "1stage", "3stage"])
def test_every_convolution_before_a_pool_is_the_same_in_any_summation_order(dtype: str, variant: str) -> None:
    spec = dataclasses.replace(SPEC_VARIANTS[variant], activation="relu")
    params, x = tied_pool_data(spec, dtype)
    rng = np.random.default_rng(SEED)
    print(f"seed {SEED}")
    layers = oracle.forward_layers(spec, as_float64(params), x.astype(np.float64))
    previous = x.astype(dtype)
    for name, stage in zip(spec.conv_names, spec.conv_stages):
        products = products_per_output(params[f"{name}.weight"], previous, params[f"{name}.bias"])
        sums = [summed_in_order(products, rng.permutation(products.shape[-1])) for _ in range(ORDERS)]
        for found in sums:
            assert np.array_equal(found, sums[0]), f"{name}: another summation order gave other bits"
            assert np.unique(found).size == 1, f"{name}: not one value everywhere"
        np.testing.assert_array_equal(sums[0][None], layers[name])
        assert distinct_values_per_window(layers[f"{name}.act"], stage.pool) == 1
        previous = layers[f"{name}.pool"].astype(dtype)


def test_the_tie_data_still_lets_the_gradient_judge_the_tie_rule() -> None:
    """The gradients the check compares are not zero: where a tie sends its gradient changes them."""
    spec = NetSpec()
    params, x = tied_pool_data(spec, "float64")
    _, grads = oracle.gradients(spec, params, x, np.array([3]), "cross_entropy")
    assert np.count_nonzero(grads["input"][:, :-1]) > grads["input"][:, :-1].size // 2
    assert np.count_nonzero(grads["conv1.weight"][:, -1]) == grads["conv1.weight"][:, -1].size


def test_distinct_values_per_window_counts_the_most_in_any_window() -> None:
    values = np.zeros((1, 1, 4, 4))
    assert distinct_values_per_window(values, 2) == 1
    values[0, 0, 3, 2] = np.nextafter(0.0, 1.0)  # one last-bit difference breaks one tie
    assert distinct_values_per_window(values, 2) == 2
    values[0, 0, 0, 0] = np.nan
    assert distinct_values_per_window(values, 2) == 2
    assert distinct_values_per_window(np.arange(16.0).reshape(1, 1, 4, 4), 2) == 4


ROUNDS_BEFORE_THE_POOL = """
    import numpy as np
    from backends.eager import EagerBackend
    from harness import hookimpl

    class RoundsBeforeThePool(EagerBackend):
        '''Intermediates whose conv2 differs in the last bit from one position to the next.'''

        name = "rounds-before-pool"
        dtypes = ("float32",)

        def intermediates(self, spec, params, x, *, device, dtype):
            layers = super().intermediates(spec, params, x, device=device, dtype=dtype)
            act = layers["conv2.act"]
            layers["conv2.act"] = np.where(np.indices(act.shape)[-1] % 2 == 1, np.nextafter(act, 2 * act), act)
            return layers

    @hookimpl
    def harness_backends():
        return [RoundsBeforeThePool()]
"""


def test_ties_broken_before_the_pool_are_named_not_blamed_on_the_tie_rule(
    pytester: pytest.Pytester, fake_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    result = run_suite_with_only(
        pytester,
        fake_site,
        monkeypatch,
        ROUNDS_BEFORE_THE_POOL,
        "test_gradients.py",
        "--backend=rounds-before-pool",
        "-k",
        "maxpool_tie",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*ties broken upstream at conv2 by rounding (2 distinct values in one pool window)*"])
    assert "tie rule says" not in result.stdout.str()


@pytest.mark.parametrize(
    "selection",
    ["OPENBLAS_CORETYPE=Prescott", "OPENBLAS_CORETYPE=Sandybridge", "ATEN_CPU_CAPABILITY=default", "OMP_NUM_THREADS=2"],
)
def test_the_tie_verdicts_hold_under_another_kernel_selection(tmp_path: Path, selection: str) -> None:
    """eager and numpy pass the tie check, and a tie sent to the last maximum or split evenly fails it, in both
    precisions, whichever kernels the BLAS and ATen pick (the gate's kernel matrix runs the rest of the suite)."""
    pytest.importorskip("torch")
    import os
    import subprocess
    import sys

    from harness.commands.mutants import plugin_site

    site = plugin_site(tmp_path / "site")
    variable, value = selection.split("=")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), variable: value}
    env.setdefault("OMP_NUM_THREADS", "1")
    results = tmp_path / "r.jsonl"
    command = [
        sys.executable, "-m", "pytest", str(ROOT / "suites" / "test_gradients.py"), "-k", "maxpool_tie",
        "--backend=eager,numpy,mutant-tie-last-max,mutant-tie-split", "-p", "no:cacheprovider", "-q",
        f"--conformance-results={results}",
    ]  # fmt: skip
    subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, check=False, timeout=600)
    records = [json.loads(line) for line in results.read_text().splitlines()]
    outcome = {(r["backend"], r["dtype"]): r["outcome"] for r in records if r.get("kind") == "check"}
    for dtype in ("float32", "float64"):
        assert outcome[("eager", dtype)] == outcome[("numpy", dtype)] == "passed", outcome
        assert outcome[("mutant-tie-last-max", dtype)] == outcome[("mutant-tie-split", dtype)] == "failed", outcome
