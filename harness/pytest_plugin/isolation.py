"""Process-wide state that a backend can change, snapshotted around each conformance test.

Every backend runs in one process, so a backend that calls ``np.seterr(all="raise")`` or
``torch.set_num_threads(1)`` would change what the oracle and every later backend see. The
pytest plugin takes a :func:`snapshot` before each test and, after it, :func:`restore`
puts back whatever changed and names it, and the test fails with that list.
"""

from __future__ import annotations

import hashlib
import os
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

WATCHED_ENVIRONMENT = (
    *("OMP_", "MKL_", "KMP_", "OPENBLAS_", "CUDA_", "CUBLAS_", "CUDNN_", "NVIDIA_"),
    *("XLA_", "JAX_", "TORCH_", "ORT_", "NETHARNESS_"),
)
"""Prefixes of the environment variables that change threads, devices or numerics.

Only these are watched: libraries set others lazily on first use (torch sets
``TORCHINDUCTOR_CACHE_DIR``, for one), and that is no backend's doing."""


@dataclass(frozen=True)
class Probe:
    """One piece of global state: how to read it and how to put it back."""

    name: str
    read: Callable[[], Any]
    write: Callable[[Any], None]
    needs: str = ""
    """A module that must already be imported for the probe to apply (never imported by it)."""


def _ignore(_: Any) -> None:
    return None


def _environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(WATCHED_ENVIRONMENT)}


def _set_environment(saved: dict[str, str]) -> None:
    for key in set(_environment()) - set(saved):
        del os.environ[key]
    os.environ.update(saved)


def _torch() -> Any:
    return sys.modules["torch"]


def _torch_probes() -> list[Probe]:
    t = _torch
    return [
        Probe("torch default dtype", lambda: t().get_default_dtype(), lambda v: t().set_default_dtype(v), "torch"),
        Probe("torch threads", lambda: t().get_num_threads(), lambda v: t().set_num_threads(v), "torch"),
        Probe("torch grad mode", lambda: t().is_grad_enabled(), lambda v: t().set_grad_enabled(v), "torch"),
        Probe(
            "torch deterministic algorithms",
            lambda: t().are_deterministic_algorithms_enabled(),
            lambda v: t().use_deterministic_algorithms(v),
            "torch",
        ),
        Probe("torch anomaly mode", lambda: t().is_anomaly_enabled(), lambda v: t().set_anomaly_enabled(v), "torch"),
        Probe(
            "torch float32 matmul precision",
            lambda: t().get_float32_matmul_precision(),
            lambda v: t().set_float32_matmul_precision(v),
            "torch",
        ),
        Probe(
            "torch cuda matmul TF32",
            lambda: t().backends.cuda.matmul.allow_tf32,
            lambda v: setattr(t().backends.cuda.matmul, "allow_tf32", v),
            "torch",
        ),
        Probe(
            "torch cudnn TF32",
            lambda: t().backends.cudnn.allow_tf32,
            lambda v: setattr(t().backends.cudnn, "allow_tf32", v),
            "torch",
        ),
        Probe(
            "torch cudnn benchmark",
            lambda: t().backends.cudnn.benchmark,
            lambda v: setattr(t().backends.cudnn, "benchmark", v),
            "torch",
        ),
    ]


class GeneratorState:
    """A global generator's state, compared by value and described by a short digest (not its 5 kB)."""

    def __init__(self, state: Any, raw: bytes) -> None:
        self.state, self.raw = state, raw

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GeneratorState) and self.raw == other.raw

    def __hash__(self) -> int:
        return hash(self.raw)

    def __repr__(self) -> str:
        return f"state {hashlib.sha256(self.raw).hexdigest()[:8]}"


def _numpy_global_rng() -> GeneratorState:
    state: Any = np.random.get_state()
    return GeneratorState(state, repr((state[0], state[2:])).encode() + np.asarray(state[1]).tobytes())


def _python_random() -> GeneratorState:
    state = random.getstate()
    return GeneratorState(state, repr(state).encode())


def _torch_global_rng() -> GeneratorState:
    state = _torch().random.get_rng_state()
    return GeneratorState(state, state.numpy().tobytes())


GLOBAL_GENERATORS = [
    Probe(
        "numpy global random state (np.random.seed and legacy draws)",
        _numpy_global_rng,
        lambda v: np.random.set_state(v.state),
    ),
    Probe("python random state", _python_random, lambda v: random.setstate(v.state)),
    Probe(
        "torch global generator (torch.manual_seed and unforked draws)",
        _torch_global_rng,
        lambda v: _torch().random.set_rng_state(v.state),
        "torch",
    ),
]
"""The process's global random generators. A backend that reseeds one, or draws from it, changes
what every later draw in the process is: the harness's own data comes from seeded
``np.random.Generator`` objects, but another backend's init or a user's code may not. Draw from
a generator of your own (``np.random.default_rng(seed)``, ``torch.Generator``), or inside
``torch.random.fork_rng``."""


PROBES: list[Probe] = [
    *GLOBAL_GENERATORS,
    Probe("numpy error state", np.geterr, lambda v: _ignore(np.seterr(**v))),
    Probe("working directory", os.getcwd, os.chdir),
    Probe("environment variables", _environment, _set_environment),
    *_torch_probes(),
]


def snapshot() -> dict[str, Any]:
    """The current value of every probe whose module is loaded."""
    return {p.name: p.read() for p in PROBES if not p.needs or p.needs in sys.modules}


def restore(saved: dict[str, Any]) -> list[str]:
    """Put back every probe that differs from ``saved``; return what changed, as ``name: before -> after``."""
    changed = []
    for probe in PROBES:
        if probe.name not in saved:
            continue
        now = probe.read()
        if now != saved[probe.name]:
            changed.append(f"{probe.name}: {_describe(saved[probe.name], now)}")
            probe.write(saved[probe.name])
    return changed


def _describe(before: Any, after: Any) -> str:
    if isinstance(before, dict) and isinstance(after, dict):
        keys = sorted(k for k in {*before, *after} if before.get(k) != after.get(k))
        return ", ".join(f"{k} {before.get(k)!r} -> {after.get(k)!r}" for k in keys[:5])
    return f"{before!r} -> {after!r}"
