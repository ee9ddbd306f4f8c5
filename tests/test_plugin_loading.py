"""A plugin that fails to load, or shadows a built-in, is named with its cause; nothing is silently skipped."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import UsageError


def test_a_backend_of_a_plugin_that_failed_to_load_is_named_with_the_cause() -> None:
    from harness.contract.manager import BackendRegistry, PluginFailure

    registry = BackendRegistry(failures=[PluginFailure("acme-plugins", "ModuleNotFoundError: No module named 'acme'")])
    for strict in (False, True):
        with pytest.raises(UsageError) as caught:
            registry.select(["acme-gpu"], strict=strict)
        message = str(caught.value)
        assert "unknown backend 'acme-gpu'" in message
        assert "plugin 'acme-plugins' failed: ModuleNotFoundError: No module named 'acme'" in message


def test_an_entry_point_named_like_a_built_in_plugin_is_an_error_not_silently_skipped(
    fake_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.contract.manager import build_plugin_manager
    from tests.helpers import install_plugin

    install_plugin(fake_site, "shadow-numpy", "shadow_numpy", "raise RuntimeError('never imported')\n", "numpy")
    monkeypatch.syspath_prepend(str(fake_site))
    pm = build_plugin_manager(builtins=False)
    (failure,) = [f for f in pm.load_failures if f.plugin == "numpy"]
    assert "has a built-in plugin's name; rename it" in failure.cause and "shadow-numpy" in failure.cause
