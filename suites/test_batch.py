"""Every sample is computed on its own: the batch size and a neighbour's NaN change nothing.

A backend that splits a batch into chunks (GEMM panels, fixed-size tiles, a loop over
blocks of rows) has edges where one chunk ends and the next begins; one that reduces over
the batch anywhere (a normalisation, a range scale, a softmax shift, a finiteness guard) lets
one sample reach another. Neither shows in a comparison at one batch size, and no other
check feeds the network a non-finite value.
"""

from __future__ import annotations

import numpy as np
import pytest

from harness import NetSpec
from harness.conformance.catalogue import FULL_PRECISIONS
from harness.conformance.tolerances import two_results
from harness.contract.backend import Backend, Capability, supports
from harness.net.testdata import SMALL_BATCH, data_away_from_kinks, random_images, random_params, random_target
from harness.pytest_plugin import Checker

BATCHES = (7, 31, 33, 64, 65, 256)
"""Batch sizes either side of the chunk sizes kernels use (32, 64), a small one and the benchmarks' largest."""
CHUNK_EDGES = (8, 16, 32, 64, 128)


def rows_computed_alone() -> list[int]:
    """Rows that are also computed as a batch of 1: either side of every chunk edge, and each batch's last row."""
    rows = {0, *(n - 1 for n in BATCHES)}
    rows |= {row for edge in CHUNK_EDGES for row in (edge - 1, edge)}
    return sorted(rows)


@pytest.mark.requires("forward")
def test_batch_independence(
    backend: Backend, dtype: str, device: str, rng: np.random.Generator, conformance: Checker
) -> None:
    """Each row of a batch is the batch-of-1 result for that sample, at batch sizes 7 to 256.

    One pool of 256 images: the batch of size n is its first n rows, so a row is computed
    at every batch size that holds it. Each batch is compared, row for row, with the first n
    rows of the batch of 256, and the rows of :func:`rows_computed_alone` with their
    batch-of-1 results. A different batch size may take another kernel, which sums in
    another order and rounds differently: each result is within ``forward_values``'
    tolerance of the exact logits, so two of them are within twice it of each other
    (:func:`~harness.conformance.tolerances.two_results`), whatever the kernels.
    """
    spec = NetSpec()
    params = random_params(spec, rng, dtype)
    pool = random_images(spec, max(BATCHES), rng, dtype)
    tolerance = two_results(conformance.tolerance("forward_values"))

    def logits(n: int, rows: slice) -> np.ndarray:
        # A copy: a backend that hands out one buffer twice fails outputs_not_aliased, not this check.
        out = np.array(backend.forward(spec, params, pool[rows], device=device, dtype=dtype), copy=True)
        if out.shape != spec.output_shape(n):
            conformance.fail(f"forward of a batch of {n} returned shape {out.shape}, not {spec.output_shape(n)}")
        return out

    alone = {row: logits(1, slice(row, row + 1))[0] for row in rows_computed_alone()}
    largest = logits(max(BATCHES), slice(None))
    for n in BATCHES:
        out = largest if n == max(BATCHES) else logits(n, slice(0, n))
        rows = [row for row in alone if row < n]
        reference = np.stack([alone[row] for row in rows]).astype(np.float64)
        conformance.close(f"batch {n}, rows {rows} against each row alone", out[rows], reference, tolerance=tolerance)
        if n != max(BATCHES):
            first = largest[:n].astype(np.float64)
            conformance.close(f"batch {n} against the first {n} rows of batch 256", out, first, tolerance=tolerance)


NONFINITE = (np.nan, np.inf, -np.inf)
BATCH, POISONED = SMALL_BATCH, 1


@pytest.mark.requires("forward")
def test_nonfinite_sample_isolated(
    backend: Backend, dtype: str, device: str, rng: np.random.Generator, conformance: Checker
) -> None:
    """A NaN or infinite pixel in one sample leaves every other sample's logits and input gradient finite and unchanged.

    Sample 1 of :data:`SMALL_BATCH` gets NaN, then +inf, then -inf at one pixel; the other samples' results are
    compared with those of the same call without it, at twice ``forward_values``' and
    ``gradients``' tolerances (:func:`~harness.conformance.tolerances.two_results`: each call is within
    the tolerance of the exact values). The input gradients are compared at float32 and
    float64, on data clear of every kink (:func:`~harness.net.testdata.data_away_from_kinks`); at
    a reduced precision a kink lies within the rounding of many values, and a gradient may
    legitimately take the other branch, so there they need only be finite. What the poisoned
    sample itself gives is not checked; that the input is left as given, NaN included, is.
    """
    spec = NetSpec()
    compare_gradients = dtype in FULL_PRECISIONS
    if compare_gradients:
        params, x = data_away_from_kinks(spec, BATCH, rng, dtype)
    else:
        params, x = random_params(spec, rng, dtype), random_images(spec, BATCH, rng, dtype)
    target = random_target(spec, "cross_entropy", BATCH, rng, dtype)
    others = [i for i in range(BATCH) if i != POISONED]
    run = {"device": device, "dtype": dtype}
    backward = supports(backend, Capability.BACKWARD)
    # Copies: a backend that hands out one buffer twice fails outputs_not_aliased, not this check.
    clean = np.array(backend.forward(spec, params, x, **run), np.float64)
    if backward:
        _, grads = backend.gradients(spec, params, x, target, loss="cross_entropy", **run)  # type: ignore[attr-defined]
        clean_grad = np.array(grads["input"], np.float64)
    for value in NONFINITE:
        poisoned = x.copy()
        poisoned[POISONED, 0, spec.height // 2, spec.width // 2] = value
        given = poisoned.copy()
        what = f"a {value} pixel in sample {POISONED} of {BATCH}"

        def require_finite(name: str, array: np.ndarray, what: str = what) -> None:
            bad = int(np.sum(~np.isfinite(array)))
            if bad:
                conformance.fail(f"{what} made {bad}/{array.size} values of the other samples' {name} non-finite")

        dirty = np.asarray(backend.forward(spec, params, poisoned, **run))
        require_finite("logits", dirty[others])
        conformance.close(
            f"other samples' logits with {what}",
            dirty[others],
            clean[others],
            tolerance=two_results(conformance.tolerance("forward_values")),
        )
        if backward:
            _, dirty_grads = backend.gradients(  # type: ignore[attr-defined]
                spec, params, poisoned, target, loss="cross_entropy", **run
            )
            grad = np.asarray(dirty_grads["input"])[others]
            require_finite("input gradients", grad)
            if compare_gradients:
                conformance.close(
                    f"other samples' d cross_entropy / d input with {what}",
                    grad,
                    clean_grad[others],
                    tolerance=two_results(conformance.tolerance("gradients")),
                )
        if not np.array_equal(poisoned, given, equal_nan=True):
            conformance.fail(f"with {what}, the backend modified its input images")
