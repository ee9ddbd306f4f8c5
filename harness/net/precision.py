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
        values = np.asarray(array)
        if values.dtype != np.float32:  # float32 converts to float32 storage exactly: no float64 copy
            values = values.astype(np.float64)
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


ROUNDING_LEVEL_MARGIN = 2.5
"""How far (in bits) a median error may sit from a precision's unit roundoff and still look like it."""
SCALAR_SPREAD = 0.01
"""Signed relative errors that vary by less than this fraction of their mean are one factor: a rounded scalar."""


class Wording:
    """Every sentence the precision diagnosis can say, in one place.

    The diagnosis describes what it measured; it suggests declaring a precision only when
    every layer's errors look like that precision's rounding, since a coarser declaration
    is rarely the fix for a mismatch.
    """

    @staticmethod
    def measured(bits: float, declared: str) -> str:
        return f"median relative error 2^{bits:.1f}; {declared} rounds at 2^{_declared_bits(declared):.0f}"

    @staticmethod
    def rounding(significant: int, bits: float, declared: str) -> str:
        return (
            f"the errors look like rounding to about {significant} significant bits somewhere"
            f" ({Wording.measured(bits, declared)})"
        )

    @staticmethod
    def too_large(bits: float, declared: str) -> str:
        return f"the errors are too large for rounding ({Wording.measured(bits, declared)}): a logic or layout error"

    @staticmethod
    def far_above(bits: float, declared: str) -> str:
        return f"the errors are far above {declared} rounding ({Wording.measured(bits, declared)})"

    @staticmethod
    def one_factor(factor: float) -> str:
        return (
            f"every element is off by the same factor (1 {'+' if factor >= 0 else '-'} {abs(factor):.2g}):"
            " a scalar (a learning rate, a scale) rounded or changed somewhere, not the arithmetic"
        )

    @staticmethod
    def declare(names: list[str]) -> str:
        listed = " or ".join(names)
        return f"every layer looks that way: if {listed} arithmetic is intended, declare precision {names[0]}"


def _declared_bits(declared: str) -> float:
    return math.log2(PRECISIONS[declared].working_roundoff)


def one_factor(actual: np.ndarray, expected: np.ndarray) -> float | None:
    """The common relative error when every element is off by the same factor; None otherwise."""
    expected = np.asarray(expected, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    if expected.size < 4 or actual.shape != expected.shape:
        return None
    nonzero = np.abs(expected) > 0
    if nonzero.sum() < 4:
        return None
    relative = (actual[nonzero] - expected[nonzero]) / expected[nonzero]
    if not np.all(np.isfinite(relative)):
        return None
    mean = float(np.mean(relative))
    if mean == 0 or float(np.std(relative)) > SCALAR_SPREAD * abs(mean):
        return None
    return mean


def rounding_level(bits: float, declared: str, device: str = "cpu") -> list[str]:
    """The coarser precisions whose rounding the median error ``2^bits`` looks like (tf32 only on CUDA)."""
    reference = PRECISIONS[declared].working_roundoff
    coarser = [
        p
        for p in PRECISIONS.values()
        if p.working_roundoff > reference and (p.operand_bits is None or device.startswith("cuda"))
    ]
    levels: dict[float, list[str]] = {}
    for p in coarser:
        levels.setdefault(math.log2(p.working_roundoff), []).append(p.name)
    level = min(levels, key=lambda b: abs(bits - b), default=None)
    if level is None or abs(bits - level) > ROUNDING_LEVEL_MARGIN:
        return []
    return levels[level]


def diagnose(
    actual: np.ndarray,
    expected: np.ndarray,
    declared: str,
    *,
    device: str = "cpu",
    layers: tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None = None,
) -> str:
    """What the errors look like, when they are far above ``declared`` rounding; '' otherwise.

    The median relative error of correctly rounded work sits near the unit roundoff of the
    precision that rounds last (within a factor 4 on the correct backends); a declared
    precision whose u is 16x or more below the observed median cannot explain it. The text
    says what was measured: a rounding to about so many significant bits, one factor on
    every element (a rounded scalar), or errors too large for rounding. It suggests a
    declaration only when ``layers`` (backend's, reference's intermediates) are given and
    every layer's errors look like the same rounding; it never names tf32 off CUDA.
    """
    if declared not in PRECISIONS:
        return ""
    bits = effective_bits(actual, expected)
    if bits is None:
        return ""
    declared_bits = _declared_bits(declared)
    if bits < declared_bits + 4:
        return ""
    factor = one_factor(actual, expected)
    if factor is not None:
        return Wording.one_factor(factor)
    if bits > -3:
        return Wording.too_large(bits, declared)
    names = rounding_level(bits, declared, device)
    if not names:
        return Wording.far_above(bits, declared)
    significant = int(round(-math.log2(PRECISIONS[names[0]].working_roundoff)))
    text = Wording.rounding(significant, bits, declared)
    if layers is not None and _every_layer_rounds_like(layers, names, declared, device):
        text += f"; {Wording.declare(names)}"
    return text


def _every_layer_rounds_like(
    layers: tuple[dict[str, np.ndarray], dict[str, np.ndarray]], names: list[str], declared: str, device: str
) -> bool:
    actual, expected = layers
    if not expected or set(expected) - set(actual):
        return False
    for name, reference in expected.items():
        bits = effective_bits(actual[name], reference)
        if bits is None or one_factor(actual[name], reference) is not None:
            return False
        if rounding_level(bits, declared, device) != names:
            return False
    return True
