"""The errors the harness raises on purpose.

An expected error is one line that says what is wrong and what to do. The command line
prints it without a traceback and exits non-zero; a bug still shows its traceback.
"""

from __future__ import annotations


class HarnessError(Exception):
    """Base of every error the harness raises on purpose."""


class SpecError(HarnessError, ValueError):
    """An invalid network spec, or an input that does not fit the spec."""


class PluginError(HarnessError):
    """A plugin or backend that cannot be loaded or registered."""


class UsageError(HarnessError):
    """A bad command-line argument."""
