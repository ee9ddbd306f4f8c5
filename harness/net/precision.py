"""Precisions: how each stores values and accumulates sums, rounding to it, and what errors say about it.

A configuration's precision is one of :data:`PRECISIONS`. At the contract every array is a
NumPy array: float64 for ``float64``, float32 for the others. ``tf32`` keeps float32
storage (only matmuls and convolutions round their operands to 10 mantissa bits);
``bfloat16`` and ``float16`` travel as float32 values that are exactly representable in
that precision (:meth:`Precision.round`), so no extra dependency is needed and the oracle
sees exactly what the backend was given.
The error bounds of the spec's network at a precision are in :mod:`harness.net.bounds`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Precision:
    """One arithmetic: how values are stored and how sums accumulate."""

    name: str
    storage: str
    """The NumPy dtype of arrays at the contract."""
    mantissa_bits: int
    """Explicit fraction bits of the stored values (52, 23, 10, 7)."""
    accumulate_bits: int
    """Fraction bits of the accumulator of dot products (float32 for every reduced precision)."""
    operand_bits: int | None = None
    """Fraction bits operands are rounded to inside matmuls and convolutions (tf32 only)."""

    @property
    def unit_roundoff(self) -> float:
        return 2.0 ** -(self.mantissa_bits + 1)

    @property
    def working_roundoff(self) -> float:
        """The unit roundoff of the coarsest rounding in the arithmetic (tf32's operands, say)."""
        return 2.0 ** -((self.operand_bits or self.mantissa_bits) + 1)

    @property
    def accumulate_roundoff(self) -> float:
        return 2.0 ** -(self.accumulate_bits + 1)

    @property
    def layer_roundoff(self) -> float:
        """What one layer adds besides its sum: the output's rounding, and tf32's two operand roundings."""
        if self.operand_bits is not None:
            return 2 * 2.0 ** -(self.operand_bits + 1) + self.unit_roundoff
        return self.unit_roundoff

    def round(self, array: np.ndarray) -> np.ndarray:
        """``array`` rounded to nearest-even in this precision, in the storage dtype."""
        values = np.asarray(array, dtype=np.float64)
        stored = values.astype(self.storage)
        if self.name == "float16":
            with np.errstate(over="ignore"):  # beyond 65504 is inf in float16, as it should be
                return stored.astype(np.float16).astype(np.float32)
        if self.mantissa_bits >= 23 or self.operand_bits is not None:  # float64, float32, tf32 store as is
            return stored
        bits = stored.copy().view(np.uint32)
        drop = 23 - self.mantissa_bits
        bits += np.uint32((1 << (drop - 1)) - 1) + ((bits >> np.uint32(drop)) & np.uint32(1))
        bits &= np.uint32(~((1 << drop) - 1) & 0xFFFFFFFF)
        return bits.view(np.float32)


PRECISIONS: dict[str, Precision] = {
    p.name: p
    for p in (
        Precision("float64", "float64", 52, 52),
        Precision("float32", "float32", 23, 23),
        Precision("tf32", "float32", 23, 23, operand_bits=10),
        Precision("bfloat16", "float32", 7, 23),
        Precision("float16", "float32", 10, 23),
    )
}
"""Every precision, finest first."""

SAFETY = 1.0
"""The one safety factor on every derived bound (see ``docs/tolerances.md`` for its calibration)."""


def precision(name: str) -> Precision:
    return PRECISIONS[name]


def storage_dtype(name: str) -> str:
    """The NumPy dtype of arrays at the contract for this precision (``float32`` unless ``float64``)."""
    return PRECISIONS[name].storage if name in PRECISIONS else name


def gamma(k: int, u: float) -> float:
    """Higham's gamma_k = k u / (1 - k u): the relative error bound of a k-term sum."""
    if k * u >= 1:
        return math.inf
    return k * u / (1 - k * u)


def effective_bits(actual: np.ndarray, expected: np.ndarray) -> float | None:
    """log2 of the median relative error over the elements that carry the result's scale.

    None when the errors are too few or exactly zero to say anything.
    """
    expected = np.asarray(expected, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    if expected.size == 0 or actual.shape != expected.shape:
        return None
    scale = float(np.max(np.abs(expected)))
    big = np.abs(expected) >= 0.1 * scale
    if scale == 0 or big.sum() < 4:
        return None
    relative = np.abs(actual[big] - expected[big]) / np.abs(expected[big])
    if not np.all(np.isfinite(relative)):
        return None
    median = float(np.median(relative))
    return math.log2(median) if median > 0 else None


def diagnose(actual: np.ndarray, expected: np.ndarray, declared: str) -> str:
    """When errors look like a coarser arithmetic than ``declared``, say which one.

    The median relative error of correctly rounded work sits near the unit roundoff of the
    precision that rounds last (within a factor 4 on the correct backends); a declared
    precision whose u is 16x or more below the observed median cannot explain it.
    """
    bits = effective_bits(actual, expected)
    if bits is None or declared not in PRECISIONS:
        return ""
    declared_bits = math.log2(PRECISIONS[declared].working_roundoff)
    if bits < declared_bits + 4:
        return ""
    seen = f"median relative error 2^{bits:.1f}, declared {declared}: 2^{declared_bits:.0f}"
    coarser = [p for p in PRECISIONS.values() if p.working_roundoff > PRECISIONS[declared].working_roundoff]
    # Precisions with the same stored mantissa (tf32 and float16) cannot be told apart by errors.
    levels: dict[float, list[str]] = {}
    for p in coarser:
        levels.setdefault(math.log2(p.working_roundoff), []).append(p.name)
    level = min(levels, key=lambda b: abs(bits - b), default=None)
    if level is None or abs(bits - level) > 2.5:
        return f"errors are far above {declared} arithmetic ({seen})"
    names = " or ".join(levels[level])
    return f"errors are consistent with {names} arithmetic ({seen}); if intended, declare precision {levels[level][0]}"
