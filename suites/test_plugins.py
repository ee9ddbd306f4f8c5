"""Every plugin loaded: a plugin that failed to import or whose hook raised shows up here."""

from __future__ import annotations

import pytest

from harness.pytest_plugin import harness_state


def test_plugin_loaded(plugin_name: str, request: pytest.FixtureRequest) -> None:
    state = harness_state(request.config)
    failures = [f for f in state.registry.failures if f.plugin == plugin_name]
    if not failures:
        return
    message = "; ".join(str(f) for f in failures)
    if state.strict:
        pytest.fail(f"{message} (--strict-backends)", pytrace=False)
    pytest.skip(message)
