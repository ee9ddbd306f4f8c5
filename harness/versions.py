"""The plugin API's version, and every change to it that an older backend could violate.

A backend may declare ``api_version``, the version of the plugin API it was written for. A
check that an older backend fails because the contract changed says which change, and in
which version it was made (:data:`CONTRACT_CHANGES`), so its author reads a contract change,
not an AttributeError. ``docs/plugin-api-changelog.md`` records every change in prose.
"""

from __future__ import annotations

API_VERSION = 2
"""The plugin API this harness implements. Raised by one for every change a backend must follow."""

FIRST_VERSION = 1
"""What a backend that declares no ``api_version`` is taken to have been written for."""

CONTRACT_CHANGES: dict[str, str] = {
    "prepared-parameters": (
        "plugin API 2 requires a prepare() object to have parameters() (the parameters its train_step()"
        " updated) whenever the backend declares train_step"
    ),
    "check-input-dtype": (
        "plugin API 2 made spec.check_input take the call's dtype: check_input(x, dtype) rejects a float64"
        " array in a float32 call; the one-argument form is deprecated (pass dtype=None to accept any float)"
    ),
    "eager-subclass-dtypes": (
        "plugin API 2 stopped eager subclasses inheriting eager's precisions: a subclass declares its own"
        " `dtypes`, or is tested at float32 and float64 only"
    ),
}
"""Each change an older backend could violate, keyed by a short name, as one sentence naming its version."""
