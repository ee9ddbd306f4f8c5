"""What one conformance record means to a reader: failing or not, why it was skipped, which
tolerance it passed under, and how to reproduce it.

- A check *fails* when it failed, errored, crashed its process, or passed although it was
  declared a known deviation (a strict xfail that now passes fails the run).
- A check *not run* (``not_run``) was never started: its backend had spent its crash budget.
  It neither fails nor passes; a backend with one does not conform.
- A *capability skip* is a skip whose reason is "does not declare capability 'x'": the backend
  said it cannot do ``x``. Those are never listed as problems; they are folded into one
  sentence per backend.
- The *tolerance source* of a record is ``default`` (the table in ``harness/conformance/tolerances.py``,
  including the ULP tolerance of the activation checks), ``override`` (a backend widened it
  through ``harness_tolerance_overrides``, with the reason in ``tolerance_reason``) or
  ``known deviation`` (an xfail declared by the backend); empty when the check compares no
  numbers. ``tolerance_factor`` is the override's largest ratio to the default tolerance.
- ULP measurements (``tolerance_reason`` such as ``8 ulp``) carry the ULP count in
  ``max_rel_error`` and its limit in ``rtol``; :func:`split_ulps` moves them to their own
  columns, ``max_ulp`` and ``ulp_limit``.
"""

from __future__ import annotations

import math
import re
from typing import Any

import pandas as pd

from harness.budget import NOT_RUN_PREFIX
from harness.conformance.checker import reproduce_command
from harness.conformance.tolerances import default_tolerance
from harness.results import first_line

FAILING = ("failed", "error", "crashed", "xpassed")
KNOWN_DEVIATION = ("xfailed", "xpassed")
SOURCES = ("default", "override", "known deviation", "")
_CAPABILITY_SKIP = re.compile(r"does not declare capability '([^']+)'")
_ULP_NOTE = re.compile(r"\s*\d+(\.\d*)?([eE][+-]?\d+)?\s*ulps?\s*", re.IGNORECASE)
_BATCH = re.compile(r"batch(\d+)")
_REPRODUCE = re.compile(r"reproduce:\s*(.+?)\s*$", re.DOTALL)


def skipped_capability(outcome: str, reason: str) -> str | None:
    """The capability a skip names as undeclared, or None for any other record."""
    if outcome != "skipped":
        return None
    found = _CAPABILITY_SKIP.search(reason)
    return found.group(1) if found else None


def is_ulp_note(tolerance_reason: Any) -> bool:
    """True for the note a ULP comparison records as its tolerance reason ('8 ulp')."""
    return isinstance(tolerance_reason, str) and bool(_ULP_NOTE.fullmatch(tolerance_reason))


def tolerance_source(outcome: str, tolerance_reason: Any, recorded: Any = None) -> str:
    """``known deviation``, ``override`` or ``default``; ``recorded`` is the record's own
    ``tolerance_source`` (written since 0.2), else the reason text decides (older files)."""
    if outcome in KNOWN_DEVIATION:
        return "known deviation"
    if recorded in ("default", "override"):
        return str(recorded)
    reason = tolerance_reason if isinstance(tolerance_reason, str) else ""
    if not reason:
        return ""
    if reason.startswith("default") or is_ulp_note(reason):
        return "default"
    return "override"


def tolerance_factor(check: str, dtype: str, config: str, rtol: float, atol: float) -> float:
    """How many times wider than the default the tolerance was (the larger of the two ratios); NaN if unknown.

    The default may depend on the configuration (its batch size, its spec variant), which the
    record names only in its ``config`` id (``float32-batch7-100cls``); those parts are passed on.
    """
    try:
        default = default_tolerance(check, dtype, _config_mapping(config))
    except (KeyError, ValueError, TypeError):  # a dtype or configuration the table does not know
        return math.nan
    ratios = [
        value / base
        for value, base in ((rtol, default.rtol), (atol, default.atol))
        if not math.isnan(value) and base > 0
    ]
    return max(ratios) if ratios else math.nan


def _config_mapping(config: str) -> dict[str, Any]:
    """{'batch': 7, 'variant': '100cls'} from 'float32-batch7-100cls', as far as the id says.

    The part after the dtype and the batch is passed as the variant; the table reads a name it
    does not know as the default spec.
    """
    mapping: dict[str, Any] = {}
    for part in config.split("-")[1:]:
        found = _BATCH.fullmatch(part)
        if found:
            mapping["batch"] = int(found.group(1))
        elif "variant" not in mapping:
            mapping["variant"] = part
    return mapping


def add_tolerance_columns(conf: pd.DataFrame) -> pd.DataFrame:
    """``conf`` with ``max_ulp``/``ulp_limit`` split out, and ``tolerance_source``/``tolerance_factor`` added."""
    conf = split_ulps(conf)
    recorded = conf["recorded_source"] if "recorded_source" in conf else [None] * len(conf)
    conf["tolerance_source"] = [
        tolerance_source(str(o), r, s) for o, r, s in zip(conf["outcome"], conf["tolerance_reason"], recorded)
    ]
    conf["tolerance_factor"] = [
        tolerance_factor(str(row.check), str(row.dtype), str(row.config), float(row.rtol), float(row.atol))
        if row.tolerance_source == "override"
        else math.nan
        for row in conf.itertuples()
    ]
    return conf


def split_ulps(conf: pd.DataFrame) -> pd.DataFrame:
    """ULP counts and limits in ``max_ulp`` and ``ulp_limit``, never under ``max_rel_error`` and ``rtol``."""
    conf = conf.copy()
    ulp = conf["tolerance_reason"].map(is_ulp_note).astype(bool)
    conf["max_ulp"] = conf["max_rel_error"].where(ulp)
    conf["ulp_limit"] = conf["rtol"].where(ulp)
    for column in ("max_rel_error", "rtol", "atol"):
        conf[column] = conf[column].mask(ulp)
    return conf


def not_run_reason(reason: str) -> str:
    """Why a check was not run, without the record's 'not run: ' prefix."""
    return reason.removeprefix(NOT_RUN_PREFIX)


def failure_summary(reason: str) -> str:
    """The first line of a failure message, without its reproduce command."""
    line = first_line(reason)
    return _REPRODUCE.sub("", line).rstrip(" ;,") or line


def reproduce_from_record(reason: str, test_id: str, backend: str, device: str, seed: Any) -> str:
    """The command the message gives after 'reproduce:', or the one the harness builds from the record."""
    found = _REPRODUCE.search(reason)
    if found:
        return found.group(1).split("\n", 1)[0].strip()
    if not test_id:
        return ""
    return reproduce_command(test_id, backend, device, None if seed is None or pd.isna(seed) else int(seed))
