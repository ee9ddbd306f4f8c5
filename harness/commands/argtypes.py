"""Argument types for the commands' options: a string in, a checked number out.

A value that is not one is argparse's one-line usage error, naming what was expected.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TypeVar

Number = TypeVar("Number", int, float)


def checked_number(
    convert: Callable[[str], Number], accept: Callable[[Number], bool], expected: str
) -> Callable[[str], Number]:
    """An argparse ``type`` that converts with ``convert`` and keeps only what ``accept`` accepts."""

    def parse(value: str) -> Number:
        try:
            number = convert(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value!r}") from None
        if not accept(number):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value!r}")
        return number

    parse.__name__ = expected
    return parse


positive_int = checked_number(int, lambda n: n >= 1, "a positive integer")
positive_seconds = checked_number(float, lambda x: math.isfinite(x) and x > 0, "a positive, finite number of seconds")
positive_number = checked_number(float, lambda x: math.isfinite(x) and x > 0, "a positive number")
probability = checked_number(float, lambda p: 0 < p < 1, "a probability between 0 and 1")
