"""The plugin manager: built-ins, entry points, disabling, and failures that name the plugin."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness import Availability, Capability, hookimpl
from harness.contract.manager import BackendRegistry, build_plugin_manager, collect_backends
from harness.errors import PluginError
from tests.helpers import install_plugin


class TinyBackend:
    version = "0"
    capabilities = frozenset({Capability.FORWARD})
    devices = ("cpu",)
    dtypes = ("float32",)

    def __init__(self, name: str) -> None:
        self.name = name

    def availability(self) -> Availability:
        return Availability.ok()

    def forward(self, spec, params, x, *, device, dtype):  # type: ignore[no-untyped-def]
        raise NotImplementedError


def plugin_returning(*backends: object) -> SimpleNamespace:
    return SimpleNamespace(harness_backends=hookimpl(lambda: list(backends)))


def test_builtin_eager_is_registered_like_any_plugin() -> None:
    pm = build_plugin_manager()
    registry = collect_backends(pm)
    assert "eager" in registry.names()
    assert registry.owners["eager"] == "eager"
    assert pm.get_plugin("eager").__name__ == "backends.eager"


def test_disabled_plugins_are_not_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "eager" not in collect_backends(build_plugin_manager(disabled=["eager"])).names()
    monkeypatch.setenv("NETHARNESS_DISABLE_PLUGINS", "eager, other")
    assert "eager" not in collect_backends(build_plugin_manager()).names()


def test_duplicate_name_names_both_plugins() -> None:
    pm = build_plugin_manager(
        builtins=False,
        entry_points=False,
        extra_plugins=[
            ("first-plugin", plugin_returning(TinyBackend("same"))),
            ("second-plugin", plugin_returning(TinyBackend("same"))),
        ],
    )
    registry = collect_backends(pm)
    assert registry.owners == {"same": "first-plugin"}
    (failure,) = registry.failures
    assert "first-plugin" in failure.cause and "second-plugin" in failure.cause


def test_registry_register_raises_on_duplicates() -> None:
    registry = BackendRegistry()
    registry.register(TinyBackend("x"), "a")  # type: ignore[arg-type]
    with pytest.raises(PluginError, match="'a'.*'b'"):
        registry.register(TinyBackend("x"), "b")  # type: ignore[arg-type]


def test_hook_that_raises_is_recorded_and_others_still_load() -> None:
    def broken() -> list[object]:
        raise RuntimeError("boom")

    pm = build_plugin_manager(
        builtins=False,
        entry_points=False,
        extra_plugins=[
            ("broken", SimpleNamespace(harness_backends=hookimpl(broken))),
            ("good", plugin_returning(TinyBackend("ok"))),
        ],
    )
    registry = collect_backends(pm)
    assert registry.names() == ["ok"]
    assert [(f.plugin, "boom" in f.cause) for f in registry.failures] == [("broken", True)]


def test_backend_that_breaks_its_contract_is_rejected() -> None:
    backend = TinyBackend("liar")
    backend.capabilities = frozenset({Capability.FORWARD, Capability.BACKWARD})  # type: ignore[misc]
    registry = collect_backends(
        build_plugin_manager(builtins=False, entry_points=False, extra_plugins=[("p", plugin_returning(backend))])
    )
    assert registry.names() == []
    assert "declares 'backward' but has no gradients()" in registry.failures[0].cause


def test_entry_point_import_failure_names_plugin_and_cause(fake_site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_plugin(fake_site, "broken-dist", "broken_backend_mod", "raise ImportError('needs libfoo')\n", "broken")
    install_plugin(
        fake_site,
        "good-dist",
        "good_backend_mod",
        "from harness import hookimpl\n"
        "from tests.test_manager import TinyBackend\n"
        "@hookimpl\ndef harness_backends():\n    return [TinyBackend('good')]\n",
        "good",
    )
    monkeypatch.syspath_prepend(str(fake_site))
    registry = collect_backends(build_plugin_manager())
    assert "good" in registry.names() and "eager" in registry.names()
    (failure,) = [f for f in registry.failures if f.plugin == "broken"]
    assert "ImportError: needs libfoo" in failure.cause
    sys.modules.pop("good_backend_mod", None)
