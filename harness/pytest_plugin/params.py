"""Parameter sets the suite shares: the spec variants, each under its own name."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from harness.net.variants import SPEC_VARIANTS


def variant_params(names: Iterable[str]) -> list[Any]:
    """``pytest.param`` entries for these variants, each with its name as the id."""
    return [pytest.param(SPEC_VARIANTS[name], id=name) for name in names]
