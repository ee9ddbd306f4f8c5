"""The spec variants the conformance suite runs, by name.

Every variant a suite parametrizes over comes from here, so its name is stable: it is the
test id, the ``variant`` a tolerance override or known deviation can select, and what
``netharness checks`` lists. ``"seed"`` is the seed's own network, :data:`SEED_SPEC`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from harness.spec import SEED_SPEC, NetSpec

SEED = "seed"

SPEC_VARIANTS: dict[str, NetSpec] = {
    SEED: SEED_SPEC,
    "32x32": NetSpec(height=32, width=32),
    "1ch": NetSpec(in_channels=1),
    "2cls": NetSpec(num_classes=2),
    "100cls": NetSpec(num_classes=100),
    "tanh": NetSpec(activation="tanh"),
    "sigmoid": NetSpec(activation="sigmoid"),
}

_NAMES = {spec: name for name, spec in SPEC_VARIANTS.items()}


def variant_name(spec: NetSpec) -> str:
    """The variant's name; a spec not in the table is named by its repr (never a selector match)."""
    return _NAMES.get(spec, repr(spec))


def variant_params(names: Iterable[str]) -> list[Any]:
    """``pytest.param`` entries for these variants, each with its name as the id."""
    return [pytest.param(SPEC_VARIANTS[name], id=name) for name in names]
