"""The backend's initialiser draws every weight independently: of the other layers, and of other seeds.

``init_conv_weights`` and ``init_linear_weights`` check each tensor's law, one tensor at a
time, so an initialiser that re-seeds its generator before every layer (every layer starts
with the same draws) or seeds layer ``i`` with ``seed + i`` (seed 1's conv1 is seed 0's
conv2) passes them. Here the flattened weight tensors are correlated pairwise over their
overlapping prefixes: the first 64, 256, 1024, ... elements and the whole shorter tensor.

Statistics: for independent draws with finite variance, Pearson's r over ``n`` pairs has
``sqrt(n) r`` asymptotically N(0, 1); for normal draws that tail is conservative (|r| <= 1).
Each test function rejects when any ``|sqrt(n) r|`` passes the two-sided normal quantile
at ``ALPHA / m``, m being its number of (pair, prefix) tests (Bonferroni). False-alarm rate:
at most ``ALPHA`` = 1e-5 per test function, whatever the seed (as the init statistics, so a
seed sweep expects well under 0.01 false alarms); the threshold over a conv1-sized prefix of
450 weights is |r| > 0.24, and a shared stream gives |r| near 1.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from harness import NetSpec
from harness.contract.backend import Backend
from harness.pytest_plugin import Checker

ALPHA = 1e-5
FIRST_PREFIX = 64


def prefixes(n: int) -> list[int]:
    """64, 256, 1024, ... below ``n``, then ``n`` itself."""
    lengths = [FIRST_PREFIX * 4**k for k in range(32) if FIRST_PREFIX * 4**k < n]
    return [*lengths, n]


def correlated_pairs(tensors: dict[str, np.ndarray], pairs: list[tuple[str, str]]) -> tuple[list[str], int]:
    """Every (pair, prefix) whose correlation rejects independence at ALPHA overall, and the number of tests."""
    tests = [(a, b, n) for a, b in pairs for n in prefixes(min(tensors[a].size, tensors[b].size))]
    threshold = stats.norm.isf(ALPHA / (2 * len(tests)))
    found = []
    for a, b, n in tests:
        x, y = tensors[a][:n], tensors[b][:n]
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            found.append(f"{a} or {b} is constant over its first {n} weights")
            continue
        r = float(np.corrcoef(x, y)[0, 1])
        if abs(r) * math.sqrt(n) > threshold:
            found.append(f"{a} and {b}: r = {r:+.3f} over the first {n} weights (|r| sqrt(n) > {threshold:.2f})")
    return found, len(tests)


def weights(backend: Backend, spec: NetSpec, seed: int, dtype: str) -> dict[str, np.ndarray]:
    params = backend.init_params(spec, seed=seed, dtype=dtype)  # type: ignore[attr-defined]
    return {name: np.asarray(value, np.float64).ravel() for name, value in params.items() if name.endswith(".weight")}


@pytest.mark.requires("init")
def test_init_layers_independent(backend: Backend, dtype: str, seed: int, conformance: Checker) -> None:
    """No two layers' weights from one seed are correlated. False-alarm rate at most 1e-5."""
    spec = NetSpec()
    drawn = weights(backend, spec, seed, dtype)
    found, tests = correlated_pairs(drawn, list(itertools.combinations(drawn, 2)))
    if found:
        conformance.fail(
            f"init_params(seed={seed}) draws correlated layers ({len(found)} of {tests} tests at a family"
            f" false-alarm rate of {ALPHA:g}): {'; '.join(found[:4])}. Draw each layer from one generator's"
            " continuing stream (or independent streams), not a re-seeded one"
        )


@pytest.mark.requires("init")
def test_init_seeds_independent(backend: Backend, dtype: str, seed: int, conformance: Checker) -> None:
    """No layer's weights under seed s correlate with any layer's under seed s + 1. False-alarm rate at most 1e-5."""
    spec = NetSpec()
    first = {f"{name} (seed {seed})": w for name, w in weights(backend, spec, seed, dtype).items()}
    second = {f"{name} (seed {seed + 1})": w for name, w in weights(backend, spec, seed + 1, dtype).items()}
    found, tests = correlated_pairs({**first, **second}, list(itertools.product(first, second)))
    if found:
        conformance.fail(
            f"init_params draws correlated weights under seeds {seed} and {seed + 1} ({len(found)} of {tests}"
            f" tests at a family false-alarm rate of {ALPHA:g}): {'; '.join(found[:4])}. Derive each"
            " layer's stream from the seed as a whole (e.g. one generator per seed), not from seed + layer"
        )


# -- shared values, in any layout or alignment ---------------------------------------------------

MATCH_WIDTH = 2e-7
"""How close two weights' probabilities (below) must be to count as one value drawn twice.

Rounding a draw to float32 moves its probability by at most about 3e-8 (|z| phi(z) times
float32's 6e-8, and a uniform's relative rounding), so the same draw stored in two layers,
scaled differently, matches within this width; two independent draws match by chance with
probability at most 2 MATCH_WIDTH per value of the other tensor."""
SHARED_FRACTION = 0.5
"""A pair fails when at least this fraction of the smaller tensor's values occur in the other."""


def probabilities(spec: NetSpec, name: str, weight: np.ndarray) -> np.ndarray:
    """Each weight's probability under its law (the spec's init scheme): uniform on (0, 1) whatever the layer.

    Conv weights are N(0, 2/fan_out), so Phi(w / sigma); linear weights are U(-a, a), so
    (w + a) / 2a. The same draws scaled for two layers, or in two layouts, give the same
    probabilities; independent draws give independent uniforms.
    """
    fan_in, fan_out = spec.fans(name)
    if name.removesuffix(".weight") in spec.conv_names:
        return np.asarray(stats.norm.cdf(weight / math.sqrt(2.0 / fan_out)))
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return (weight + bound) / (2 * bound)


def shared_fraction(small: np.ndarray, large: np.ndarray) -> float:
    """The fraction of ``small``'s values that have a value of ``large`` within MATCH_WIDTH."""
    ordered = np.sort(large)
    at = np.clip(np.searchsorted(ordered, small), 1, len(ordered) - 1)
    nearest = np.minimum(np.abs(ordered[at] - small), np.abs(ordered[at - 1] - small))
    return float(np.mean(nearest <= MATCH_WIDTH))


def shared_streams(tensors: dict[str, np.ndarray], pairs: list[tuple[str, str]]) -> list[str]:
    found = []
    for a, b in pairs:
        small, large = sorted((tensors[a], tensors[b]), key=len)
        chance = min(1.0, 2 * MATCH_WIDTH * len(large))
        fraction = shared_fraction(small, large)
        if fraction >= SHARED_FRACTION:
            found.append(f"{a} and {b} share {fraction:.0%} of the smaller's values (chance: about {chance:.1%})")
    return found


@pytest.mark.requires("init")
@pytest.mark.parametrize("between", [pytest.param(b, id=b) for b in ("layers", "seeds")])
def test_init_values_not_shared(backend: Backend, dtype: str, seed: int, between: str, conformance: Checker) -> None:
    """No two layers, and no layers under seeds s and s + 1, share their draws, in any layout or alignment.

    ``init_layers_independent`` and ``init_seeds_independent`` correlate aligned prefixes in the
    canonical layout: a stream reused in another layout (a transposed kernel), or shifted by a
    few draws (seed s + 1 as seed s's stream two values on), escapes them. Here each weight is
    mapped to its probability under its law, and a pair fails when half the smaller tensor's
    values occur in the other. By chance a value matches with probability at most 2 x 2e-7 x
    48000 (fc1's size) < 2%, so half of conv1's 450 values matching is a binomial tail far
    below 1e-30: the false-alarm rate is below 1e-5 for any seed. Run at the full precisions,
    whose stored values keep a draw's probability to 3e-8.
    """
    if dtype not in ("float32", "float64"):
        pytest.skip("a reduced precision rounds the draws to a few hundred values: shared by chance")
    spec = NetSpec()
    first = {
        f"{name} (seed {seed})": probabilities(spec, name, w) for name, w in weights(backend, spec, seed, dtype).items()
    }
    if between == "layers":
        pairs = list(itertools.combinations(first, 2))
        tensors = first
    else:
        second = {
            f"{name} (seed {seed + 1})": probabilities(spec, name, w)
            for name, w in weights(backend, spec, seed + 1, dtype).items()
        }
        pairs, tensors = list(itertools.product(first, second)), {**first, **second}
    found = shared_streams(tensors, pairs)
    if found:
        conformance.fail(
            f"init_params reuses draws between {between} ({len(found)} of {len(pairs)} pairs): {'; '.join(found[:4])}."
            " Draw every layer, and every seed, from its own stream: one generator per seed, consumed in turn"
        )
