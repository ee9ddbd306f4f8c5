"""The seed a run hands every backend, and the one check of it."""

from __future__ import annotations

from harness.errors import UsageError

SEED_LIMIT = 2**63
"""Seeds are below 2**63: what every framework's generator takes (torch.manual_seed overflows above)."""


def check_seed(value: str | int) -> int:
    """``value`` as a seed; a one-line :class:`UsageError` that says what a seed is if it is not one."""
    try:
        seed = int(value)
    except (TypeError, ValueError):
        seed = -1
    if not 0 <= seed < SEED_LIMIT:
        raise UsageError(f"--seed must be an integer from 0 to 2**63 - 1, got {value!r}")
    return seed
