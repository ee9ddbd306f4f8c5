"""The backend's own initialiser follows the spec's init scheme, checked statistically.

Conv weights must be N(0, 2/fan_out) (Kaiming normal, fan_out, ReLU gain), linear weights
U(-a, a) with a = sqrt(6/(fan_in+fan_out)) (Xavier uniform), and every bias exactly 0.
Samples are pooled over ``SEEDS_PER_CHECK`` seeds derived from ``--seed``, so each check is
deterministic for a given ``--seed`` and has the power to see a factor-of-two variance
error, a normal drawn where a uniform belongs, and a swapped fan.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy import optimize, stats

from harness import NetSpec
from harness.contract.backend import Backend
from harness.net.precision import PRECISIONS, storage_dtype
from harness.pytest_plugin import Checker

SEEDS_PER_CHECK = 10
FAMILY_ALPHA = 1e-5
"""The false-alarm rate of each statistical test function, over all its sub-tests.

A run holds one such test per check, backend and precision (a few dozen with every built-in
backend), and ``tools/seed_sweep.sh`` runs the suite under many seeds: at 1e-5 each, a sweep
of 20 runs expects well under 0.01 false alarms, and the effects these checks look for (a
factor in a variance, a wrong law, a shared stream) are still tens of standard errors out."""


def pooled(backend: Backend, spec: NetSpec, dtype: str, seed: int) -> dict[str, np.ndarray]:
    """Every parameter flattened and concatenated over SEEDS_PER_CHECK seeds."""
    draws = [backend.init_params(spec, seed=seed * 1000 + i, dtype=dtype) for i in range(SEEDS_PER_CHECK)]
    return {name: np.concatenate([d[name].ravel() for d in draws]).astype(np.float64) for name in draws[0]}


def require(conformance: Checker, ok: bool, message: str, causes: Any = None) -> None:
    """Fail with ``message`` unless ``ok``; ``causes()`` adds the likely causes it recognises."""
    if not ok:
        found = causes() if causes is not None else ""
        conformance.fail(f"{message}{'; likely: ' + found if found else ''}")


TRUNCATED_BELOW = 2.6
"""A normal sample of 1000 or more values reaches beyond 2.6 of its standard deviations (P > 1 - 1e-4)."""
UNIFORM_REACH = 1.75
"""max |w| / std of a uniform is sqrt(3) = 1.73; a truncated normal's is always above it."""
FAN_MATCH = 0.05
"""A sample variance within 5% of another scheme's variance names that scheme."""


def likely_causes(name: str, samples: dict[str, np.ndarray], normal: bool, alternatives: dict[str, float]) -> str:
    """The usual causes an init failure points at, as far as the samples show them.

    Truncation (a normal that never goes past about 2 sigma, as Keras' truncated normal), a
    variance that matches another scheme's (the wrong fan), the same values under two seeds,
    and a layer that starts with another layer's values once both are standardised (one random
    stream restarted for each layer).
    """
    w = samples[name]
    found = []
    spread = float(w.std())
    if normal and spread > 0 and w.size >= 1000:
        reach = float(np.abs(w - w.mean()).max()) / spread
        if reach < TRUNCATED_BELOW:
            # A normal cut at ±k sigma has a smaller spread: max / std = k / truncnorm(-k, k).std().
            if reach <= UNIFORM_REACH:  # the limit of a normal cut ever closer to 0
                found.append(f"no value beyond ±{reach:.2f} standard deviations: looks uniform, not normal")
            else:
                k = optimize.brentq(lambda k: k / stats.truncnorm(-k, k).std() - reach, 0.05, 3.5)
                found.append(f"looks truncated at ±{k:.1f}σ (no value beyond; as Keras' truncated normal)")
    variance = float(w.var(ddof=1))
    for scheme, expected in alternatives.items():
        if expected > 0 and abs(variance / expected - 1) < FAN_MATCH:
            found.append(f"the variance matches {scheme}")
            break
    draws = np.split(w, SEEDS_PER_CHECK)
    same = [i for i in range(1, len(draws)) if np.array_equal(draws[0], draws[i])]
    if same:
        found.append(f"seeds 0 and {same[0]} of the {SEEDS_PER_CHECK} drawn give the same values (is the seed used?)")
    elif np.unique(w).size < w.size // 2 and w.dtype == np.float64 and np.unique(draws[0]).size < draws[0].size // 2:
        found.append(f"only {np.unique(draws[0]).size} distinct values in {draws[0].size}: values repeat")
    head = 64  # one layer's first values a fixed multiple of another's: one stream, restarted per layer
    mine = draws[0][:head]
    for other, values in samples.items():
        theirs = np.split(values, SEEDS_PER_CHECK)[0][:head]
        if other == name or not other.endswith(".weight") or theirs.size < head or mine.size < head:
            continue
        if np.std(mine) > 0 and np.std(theirs) > 0 and abs(np.corrcoef(mine, theirs)[0, 1]) > 1 - 1e-6:
            found.append(f"it starts with {other}'s values, scaled: the layers share one random stream")
            break
    return "; ".join(found)


def require_shape(
    conformance: Checker, name: str, w: np.ndarray, law: Any, law_name: str, alpha: float, causes: Any = None
) -> None:
    """Kolmogorov-Smirnov against the exact law: rejects at most ``alpha`` of correct draws."""
    ks = stats.kstest(w, law.cdf)
    require(
        conformance,
        ks.pvalue > alpha,
        f"{name}: Kolmogorov-Smirnov against {law_name} rejects the shape "
        f"(D={ks.statistic:.4f}, p={ks.pvalue:.2e} < {alpha:.1e})",
        causes,
    )


@pytest.mark.requires("init")
def test_init_conv_weights(backend: Backend, dtype: str, seed: int, conformance: Checker) -> None:
    """Conv weights ~ N(0, 2/fan_out): mean (z-test), variance (chi-square interval), shape (KS).

    False-alarm rate: at most FAMILY_ALPHA = 1e-5 for the whole test (Bonferroni: 3 tests per
    conv weight, each at 1e-5 / (3 * number of conv weights)); all three tests are exact for
    normal samples.
    """
    spec = NetSpec()
    samples = pooled(backend, spec, dtype, seed)
    names = [f"{name}.weight" for name in spec.conv_names]
    alpha = FAMILY_ALPHA / (3 * len(names))
    for name in names:
        w = samples[name]
        n = w.size
        fan_in, fan_out = spec.fans(name)
        sigma = math.sqrt(2.0 / fan_out)

        def causes(name: str = name, fan_in: int = fan_in, fan_out: int = fan_out) -> str:
            return likely_causes(
                name,
                samples,
                True,
                {"2/fan_in: fan_in used instead of fan_out": 2.0 / fan_in, "1/fan_out: no ReLU gain": 1.0 / fan_out},
            )

        z = w.mean() / (sigma / math.sqrt(n))
        require(
            conformance,
            abs(z) < stats.norm.isf(alpha / 2),
            f"{name}: mean {w.mean():.3g} is {z:.1f} standard errors from 0 (n={n}, alpha={alpha:.1e})",
            causes,
        )
        chi2 = (n - 1) * w.var(ddof=1) / sigma**2
        low, high = stats.chi2.ppf(alpha / 2, n - 1), stats.chi2.isf(alpha / 2, n - 1)
        require(
            conformance,
            low <= chi2 <= high,
            f"{name}: variance {w.var(ddof=1):.4g} outside the chi-square interval "
            f"[{low * sigma**2 / (n - 1):.4g}, {high * sigma**2 / (n - 1):.4g}] for N(0, 2/fan_out={sigma**2:.4g}) "
            f"(fan_out={fan_out}; fan_in would give {2.0 / spec.fans(name)[0]:.4g})",
            causes,
        )
        require_shape(conformance, name, w, stats.norm(0, sigma), f"N(0, {sigma**2:.4g})", alpha, causes)


@pytest.mark.requires("init")
def test_init_linear_weights(backend: Backend, dtype: str, seed: int, conformance: Checker) -> None:
    """Linear weights ~ U(-a, a), a = sqrt(6/(fan_in+fan_out)): bounds, mean, variance, shape (KS).

    The mean and the variance are z-tests under a normal approximation (the central limit
    theorem, over n >= 8400 pooled weights), not exact tests: the sample variance s^2 is taken
    as normal around a^2/3 with the uniform's own standard error, Var(s^2) ~ (mu4 - sigma^4)/n
    = 4a^4/(45n). A chi-square interval would assume normal samples, for which Var(s^2) is
    2 sigma^4/n, 2.5 times larger: too wide here. The Kolmogorov-Smirnov test is exact.

    False-alarm rate: FAMILY_ALPHA = 1e-5 for the whole test to that approximation (Bonferroni over 3
    statistical tests per linear weight; the bounds check cannot false-alarm).
    """
    spec = NetSpec()
    samples = pooled(backend, spec, dtype, seed)
    names = [f"{name}.weight" for name in spec.linear_names]
    alpha = FAMILY_ALPHA / (3 * len(names))
    for name in names:
        w = samples[name]
        n = w.size
        fan_in, fan_out = spec.fans(name)
        a = math.sqrt(6.0 / (fan_in + fan_out))
        bound = a * (1 + 2 * PRECISIONS[dtype].working_roundoff)  # rounding to the precision may round up
        require(
            conformance, float(np.abs(w).max()) <= bound, f"{name}: max |w| = {np.abs(w).max():.4g} exceeds a = {a:.4g}"
        )
        sigma2 = a * a / 3.0

        def causes(name: str = name, fan_in: int = fan_in, fan_out: int = fan_out) -> str:
            return likely_causes(
                name,
                samples,
                False,
                {
                    "a = sqrt(6/fan_in): fan_in alone": 2.0 / fan_in,
                    "a = sqrt(6/fan_out): fan_out alone": 2.0 / fan_out,
                    "torch's default nn.Linear init, a = 1/sqrt(fan_in)": 1.0 / (3 * fan_in),
                },
            )

        z = w.mean() / math.sqrt(sigma2 / n)
        require(
            conformance,
            abs(z) < stats.norm.isf(alpha / 2),
            f"{name}: mean {w.mean():.3g} is {z:.1f} s.e. from 0",
            causes,
        )
        z_var = (w.var(ddof=1) - sigma2) / math.sqrt(4 * a**4 / (45 * n))
        require(
            conformance,
            abs(z_var) < stats.norm.isf(alpha / 2),
            f"{name}: variance {w.var(ddof=1):.4g} vs a^2/3 = {sigma2:.4g} is {z_var:.1f} s.e. off"
            f" (z-test, normal approximation with the uniform's fourth moment, alpha={alpha:.1e})",
            causes,
        )
        require_shape(conformance, name, w, stats.uniform(-a, 2 * a), f"U(-{a:.4g}, {a:.4g})", alpha, causes)


@pytest.mark.requires("init")
def test_init_biases(backend: Backend, dtype: str, seed: int, conformance: Checker) -> None:
    """Every bias, conv and linear, is exactly 0 (the spec's choice for conv biases). No false alarms."""
    spec = NetSpec()
    params = backend.init_params(spec, seed=seed, dtype=dtype)
    for name, shape in spec.parameter_shapes().items():
        require(conformance, params[name].shape == shape, f"{name}: shape {params[name].shape}, expected {shape}")
        stored = params[name].dtype
        require(conformance, stored == np.dtype(storage_dtype(dtype)), f"{name}: dtype {stored}, not {dtype}'s")
        if name.endswith(".bias"):
            nonzero = int(np.count_nonzero(params[name]))
            require(conformance, nonzero == 0, f"{name}: {nonzero}/{params[name].size} biases are not 0")


@pytest.mark.requires("init")
def test_init_seeds(backend: Backend, dtype: str, seed: int, conformance: Checker) -> None:
    """The same seed reproduces the same parameters; a different seed gives different weights."""
    spec = NetSpec()
    first = backend.init_params(spec, seed=seed, dtype=dtype)
    again = backend.init_params(spec, seed=seed, dtype=dtype)
    other = backend.init_params(spec, seed=seed + 1, dtype=dtype)
    for name in spec.parameter_shapes():
        require(
            conformance, np.array_equal(first[name], again[name]), f"{name}: seed {seed} gave different values twice"
        )
        if name.endswith(".weight"):
            require(
                conformance, not np.array_equal(first[name], other[name]), f"{name}: seeds {seed} and {seed + 1} agree"
            )


PRECISIONS_DRAWN_IN_A_CHILD = ("float32", "float64")
CHILD_DRAW = """
import hashlib, importlib, sys
import numpy as np
from harness import NetSpec
module, qualname, seed, dtype = sys.argv[1:5]
backend = getattr(importlib.import_module(module), qualname)()
params = backend.init_params(NetSpec(), seed=int(seed), dtype=dtype)
digest = hashlib.sha256()
for name in sorted(params):
    digest.update(name.encode() + np.ascontiguousarray(params[name]).tobytes())
print(digest.hexdigest())
"""


def other_hash_seed() -> str:
    """A PYTHONHASHSEED this process does not have (a random one, unless the caller fixed it)."""
    import os

    mine = os.environ.get("PYTHONHASHSEED", "random")
    return str((int(mine) + 1) % 2**32) if mine.isdigit() else "1"


@pytest.mark.requires("init")
def test_init_reproducible_across_processes(backend: Backend, dtype: str, seed: int, conformance: Checker) -> None:
    """The same seed draws bit-identical parameters in a fresh process with another hash seed.

    "Same seed, same parameters" is a contract between runs, not only within one: a backend
    that mixes the hash of a name, the time or an address into its draws passes ``init_seeds``
    in one process and breaks every rerun. The child imports the backend's class afresh and
    constructs it without arguments (a backend that needs arguments is skipped), draws, and
    its parameters' digest must equal this process's. Run at the full precisions only: the
    reduced ones draw the same way, and a child process is the costliest thing the suite does.
    """
    import hashlib
    import os
    import subprocess
    import sys

    if dtype not in PRECISIONS_DRAWN_IN_A_CHILD:
        pytest.skip(f"drawn in a child process at {', '.join(PRECISIONS_DRAWN_IN_A_CHILD)} only")
    cls = type(backend)
    try:
        fresh = cls()
    except TypeError:
        pytest.skip(f"{cls.__name__}() needs arguments: it cannot be rebuilt in a child process")
    if getattr(fresh, "name", None) != backend.name or "<locals>" in cls.__qualname__:
        pytest.skip(f"{cls.__qualname__}() does not rebuild the backend {backend.name!r} in a child process")
    hash_seed = other_hash_seed()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p), "PYTHONHASHSEED": hash_seed}
    args = [sys.executable, "-c", CHILD_DRAW, cls.__module__, cls.__qualname__, str(seed), dtype]
    child = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    if child.returncode != 0:
        conformance.fail(f"init_params in a child process (PYTHONHASHSEED={hash_seed}) failed: {child.stderr[-600:]}")
    params = backend.init_params(NetSpec(), seed=seed, dtype=dtype)
    digest = hashlib.sha256()
    for name in sorted(params):
        digest.update(name.encode() + np.ascontiguousarray(params[name]).tobytes())
    if child.stdout.strip().splitlines()[-1:] != [digest.hexdigest()]:
        conformance.fail(
            f"init_params(seed={seed}, dtype={dtype!r}) drew different parameters in a child process"
            f" (PYTHONHASHSEED={hash_seed}) than in this one: the draws depend on something per process"
            " (a str hash, the time, an address); derive every stream from the seed alone"
        )
