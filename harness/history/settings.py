"""The history's names and defaults, importable without SQLAlchemy, Alembic or ruptures (for the parser)."""

from __future__ import annotations

HISTORY_ENV = "NETHARNESS_HISTORY"
DEFAULT_HISTORY = ".netharness/history.sqlite"
OFF = "off"
ALPHA = 0.001
"""A step's significance level (tools/history_detector.py measures what it gives)."""
DEFAULT_MIN_CHANGE = 0.05
"""Timing steps smaller than 5% are not reported."""
DEFAULT_MIN_HEADROOM_CHANGE = 1.0
"""Headroom steps smaller than a factor of two (1 + 1.0) are not reported."""
