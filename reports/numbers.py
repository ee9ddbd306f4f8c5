"""Numbers as a reader reads them: three significant figures, and a unit.

Every number the report shows goes through here, so none reaches a page as ``1.423e+04`` or
``1345.9945415505624``. Between 0.001 and a million a number is written out, with thousands
separators (``14,200``); outside that range it is a mantissa and a power of ten (``2.50×10⁻⁵``).
A missing number is a dash, an infinite one ``∞``.
"""

from __future__ import annotations

import math
from typing import Any

DIGITS = 3
MISSING = "—"
_SUPERSCRIPTS = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")
_SI_BYTES = ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB"))
_DURATIONS = ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns"))


def as_float(value: Any) -> float:
    """``value`` as a float; NaN when it is missing or not a number (pandas' NA included)."""
    if value is None or isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def sig(value: Any, digits: int = DIGITS) -> str:
    """``value`` to ``digits`` significant figures: 14230 -> '14,200', 2 -> '2.00', 2.5e-5 -> '2.50×10⁻⁵'."""
    number = as_float(value)
    if math.isnan(number):
        return MISSING
    if math.isinf(number):
        return "∞" if number > 0 else "−∞"
    if number == 0:
        return "0"
    exponent = math.floor(math.log10(abs(number)))
    rounded = round(number, digits - 1 - exponent)
    if rounded != 0:  # rounding may carry into the next power of ten (999.6 -> 1,000)
        exponent = math.floor(math.log10(abs(rounded)))
    if -3 <= exponent < 6:
        decimals = max(0, digits - 1 - exponent)
        return f"{rounded:,.{decimals}f}".replace("-", "−")
    mantissa = rounded / 10**exponent
    return f"{mantissa:.{digits - 1}f}×10{str(exponent).translate(_SUPERSCRIPTS)}".replace("-", "−", 1)


def tick(value: float) -> str:
    """An axis tick label: like :func:`sig`, without trailing zeros (0.5, 2, 10, 1,000, 10⁻⁶)."""
    text = sig(value)
    if "×10" in text:
        mantissa, power = text.split("×")
        mantissa = mantissa.rstrip("0").rstrip(".")
        return power if mantissa == "1" else f"{mantissa}×{power}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def quantity(value: Any, unit: str) -> str:
    """'4.00 ms', '16,000 samples/s'; a missing value is only the dash."""
    text = sig(value)
    return text if text == MISSING else f"{text} {unit}"


def duration(seconds: Any) -> str:
    """Seconds in the largest unit that keeps the number at or above 1: '4.00 ms', '2.40 s', '850 ns'."""
    number = as_float(seconds)
    if math.isnan(number) or math.isinf(number) or number == 0:
        return quantity(number, "s")
    for scale, unit in _DURATIONS:
        if abs(number) >= scale:
            return quantity(number / scale, unit)
    return quantity(number / 1e-9, "ns")


def size(count: Any) -> str:
    """Bytes with an SI prefix: '64.0 MB'."""
    number = as_float(count)
    for scale, unit in _SI_BYTES:
        if abs(number) >= scale:
            return quantity(number / scale, unit)
    return quantity(number, "B")


def percent(fraction: Any) -> str:
    """A fraction as a percentage: 0.4 -> '40.0%'."""
    text = sig(as_float(fraction) * 100)
    return text if text == MISSING else f"{text}%"


def times(ratio: Any) -> str:
    """A ratio: '2.00×'."""
    text = sig(ratio)
    return text if text == MISSING else f"{text}×"


def interval(low: Any, high: Any) -> str:
    """'[1.98, 2.02]', or '' when there is no interval."""
    if math.isnan(as_float(low)) or math.isnan(as_float(high)):
        return ""
    return f"[{sig(low)}, {sig(high)}]"
