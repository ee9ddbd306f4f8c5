"""Both losses, summed over the batch: values against the oracle, and stability at extremes."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from harness import NetSpec, oracle
from harness.contract.backend import Backend
from harness.net.testdata import random_target
from harness.pytest_plugin import Checker

LOSSES = [pytest.param(loss, id=loss) for loss in ("sse", "cross_entropy")]


@pytest.mark.requires("losses")
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("batch", [pytest.param(b, id=f"batch{b}") for b in (1, 7, 64)])
def test_loss_values(
    backend: Backend, dtype: str, loss: str, batch: int, rng: np.random.Generator, conformance: Checker
) -> None:
    """sse = sum((logits - target)^2); cross_entropy = sum -log softmax(logits)[label]. Sums, not means."""
    spec = NetSpec()
    logits = (3 * rng.standard_normal((batch, spec.num_classes))).astype(dtype)
    target = random_target(spec, loss, batch, rng, dtype)
    value = backend.loss(loss, logits, target)
    conformance.close(loss, np.asarray(value), np.asarray(oracle.loss(loss, logits.astype(np.float64), target)))


@pytest.mark.requires("losses")
@pytest.mark.parametrize("scale", [pytest.param(s, id=f"logits{s:g}") for s in (1e2, 1e4)])
def test_cross_entropy_stability(backend: Backend, dtype: str, scale: float, conformance: Checker) -> None:
    """Huge logits give a finite, correct loss with no overflow warning (log-sum-exp, not exp then log)."""
    logits = np.array([[scale, 0.0, -scale], [-scale, scale, 0.0]], dtype)
    labels = np.array([2, 1])
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        try:
            value = backend.loss("cross_entropy", logits, labels)
        except (FloatingPointError, RuntimeWarning, OverflowError) as exc:
            conformance.fail(
                f"cross_entropy {_what_went_wrong(exc)} on logits of size {scale:g}: {type(exc).__name__}: {exc}"
            )
            return
    if not np.isfinite(value):
        conformance.fail(f"cross_entropy on logits of size {scale:g} is {value!r}, not finite")
    conformance.close(
        "cross_entropy", np.asarray(value), np.asarray(oracle.loss("cross_entropy", logits.astype(np.float64), labels))
    )


def _what_went_wrong(exc: BaseException) -> str:
    """'overflowed', 'took the log of 0' or 'computed an invalid value': what NumPy's error or warning says happened."""
    text = str(exc).lower()
    if "divide by zero" in text or "log" in text and "zero" in text:
        return "took the log of 0 (divide by zero: a softmax that underflowed to 0, then log)"
    if "invalid" in text:
        return "computed an invalid value (inf - inf or 0 * inf)"
    return "overflowed"
