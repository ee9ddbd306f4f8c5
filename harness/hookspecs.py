"""The hooks a netharness plugin can implement. This module is the plugin contract.

A plugin is a module or object with functions decorated by :data:`harness.hookimpl`.
Built-in backends (``backends/``) are plugins exactly like a third party's; third-party
plugins are found through the ``netharness.backends`` entry-point group.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from harness.contract.backend import Backend, KnownDeviation, ToleranceOverride

PROJECT_NAME = "netharness"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def harness_backends() -> Sequence[Backend]:
    """Return the backends this plugin provides (one or more).

    Called once per plugin manager. Every plugin's result is collected; none stops the
    others. Each backend must satisfy :class:`harness.Backend` for the capabilities it
    declares. Constructing a backend must be cheap and must not fail when its runtime is
    missing: report that from ``availability()`` instead.

    :returns: a sequence of backends; a name already registered by another plugin is an
        error that names both plugins.

    Added in 0.1.
    """


@hookspec
def harness_tolerance_overrides(backend: Backend) -> Sequence[ToleranceOverride]:
    """Widen the tolerance of named conformance checks for ``backend``.

    :param backend: the backend under test; return overrides only for your own backends.
    :returns: overrides, each naming the check, the new rtol/atol, optionally a dtype, and
        a reason, which the report shows. Results of all plugins are merged; for the same
        check the widest tolerance wins.

    Added in 0.1.
    """


@hookspec
def harness_known_deviations(backend: Backend) -> Sequence[KnownDeviation]:
    """Declare conformance checks that ``backend`` is known to fail.

    Each named check runs as a strict expected failure with the given reason: if it
    passes, the run fails, so stale entries cannot pile up.

    :param backend: the backend under test; return deviations only for your own backends.
    :returns: known deviations. Results of all plugins are merged.

    Added in 0.1.
    """
