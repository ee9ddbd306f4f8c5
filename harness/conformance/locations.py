"""Where the installed conformance suite lives.

The suite ships in the distribution as the package ``netharness_suites`` (the checkout's
``suites/`` folder, mapped in ``pyproject.toml``), so ``netharness run`` and ``netharness
mutants`` work from any directory, with an editable or a regular install alike.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from harness.errors import UsageError

SUITES_PACKAGE = "netharness_suites"


def suites_dir() -> Path:
    """The folder of the installed suite (``bench_net.py`` and the ``test_*.py`` modules)."""
    spec = importlib.util.find_spec(SUITES_PACKAGE)
    if spec is None or spec.origin is None:
        raise UsageError(f"the conformance suite ({SUITES_PACKAGE}) is not installed; reinstall netharness")
    suites = Path(spec.origin).resolve().parent
    if not (suites / "bench_net.py").is_file():
        raise UsageError(f"the conformance suite in {suites} is incomplete (no bench_net.py); reinstall netharness")
    return suites
