"""Build the plugin manager and the backend registry.

Order, as in tox: hookspecs, then the built-in backends registered as ordinary plugins,
then ``netharness.backends`` entry points, skipping any plugin named in ``disabled`` or in
the ``NETHARNESS_DISABLE_PLUGINS`` environment variable (comma-separated). A plugin that
fails to import is recorded with its cause; the others still load.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, cast

import pluggy

from harness import hookspecs
from harness.contract.backend import Backend, check_backend
from harness.errors import PluginError, UsageError

ENTRY_POINT_GROUP = "netharness.backends"
DISABLE_ENV = "NETHARNESS_DISABLE_PLUGINS"
BUILTIN_PLUGINS: dict[str, str] = {
    "eager": "backends.eager",
    "compile": "backends.compiled",
    "numpy": "backends.numpy_backend",
    "onnx": "backends.onnx_backend",
    "jax": "backends.jax_backend",
    "openvino": "backends.openvino_backend",
}


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be loaded or whose hook raised: its name and the cause."""

    plugin: str
    cause: str

    def __str__(self) -> str:
        return f"plugin {self.plugin!r} failed: {self.cause}"


@dataclass
class BackendRegistry:
    """Backends keyed by name, each with the plugin that registered it."""

    backends: dict[str, Backend] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)
    failures: list[PluginFailure] = field(default_factory=list)

    def register(self, backend: Backend, plugin_name: str) -> None:
        check_backend(backend, plugin_name)
        if backend.name in self.backends:
            raise PluginError(
                f"backend name {backend.name!r} is registered twice: by plugin"
                f" {self.owners[backend.name]!r} and by plugin {plugin_name!r}; disable one with"
                f" {DISABLE_ENV}={plugin_name}"
            )
        self.backends[backend.name] = backend
        self.owners[backend.name] = plugin_name

    def names(self) -> list[str]:
        return list(self.backends)

    def select(self, values: Iterable[str], *, strict: bool = False) -> list[str]:
        """Resolve ``--backend`` values (names, comma lists, ``all``) to registered names, in order.

        Names of plugins that failed to load are dropped (they are reported elsewhere), or
        are an error under ``strict``. Anything else unknown is a UsageError listing the
        valid names, and so is an empty selection.
        """
        names = [n.strip() for value in (list(values) or ["all"]) for n in value.split(",")]
        if not any(names):
            raise UsageError("--backend is empty; give a backend name, a comma list, or 'all'")
        chosen: list[str] = []
        failed = {f.plugin: f for f in self.failures}
        for name in names:
            if name == "all":
                chosen.extend(n for n in self.names() if n not in chosen)
            elif name in self.backends:
                if name not in chosen:
                    chosen.append(name)
            elif name in failed and strict:
                raise UsageError(f"--backend {name}: {failed[name]} (--strict-backends)")
            elif name not in failed:
                valid = ", ".join(["all", *self.names()])
                causes = "".join(f"; {failure} (it may provide {name!r})" for failure in self.failures)
                if name in disabled_from_env():
                    causes += f"; the plugin {name!r} is disabled by {DISABLE_ENV}, which names it"
                raise UsageError(f"unknown backend {name!r} for --backend; valid names: {valid}{causes}")
        if not chosen and not failed:
            raise UsageError("no backend is registered; install one (see docs/writing-a-backend.md)")
        return chosen

    def get(self, name: str) -> Backend:
        try:
            return self.backends[name]
        except KeyError:
            raise PluginError(
                f"unknown backend {name!r}; choose from {', '.join(self.names()) or '(none registered)'}"
            ) from None


class HarnessPluginManager(pluggy.PluginManager):
    """A pluggy manager that remembers which plugins failed to load."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT_NAME)
        self.add_hookspecs(hookspecs)
        self.load_failures: list[PluginFailure] = []
        self.entry_point_origins: dict[str, tuple[str, str]] = {}
        """Per entry-point name, the distribution and the object reference it was loaded from."""

    def register_module(self, plugin_name: str, module_name: str) -> None:
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # any import-time error of a plugin is the plugin's fault
            self.load_failures.append(PluginFailure(plugin_name, f"{type(exc).__name__}: {exc}"))
            return
        self.register(module, name=plugin_name)

    def load_entry_points(self, disabled: set[str]) -> None:
        for dist in importlib.metadata.distributions():
            for ep in dist.entry_points:
                if ep.group != ENTRY_POINT_GROUP or ep.name in disabled:
                    continue
                origin = (str(dist.metadata["Name"]), ep.value)
                first = self.entry_point_origins.get(ep.name)
                if first is not None and first != origin:
                    self.load_failures.append(
                        PluginFailure(
                            ep.name,
                            f"two installed distributions provide entry point {ep.name!r}: {first[0]} ({first[1]})"
                            f" and {origin[0]} ({origin[1]}); only the first is loaded: uninstall or rename one",
                        )
                    )
                    continue
                if self.is_blocked(ep.name) or self.get_plugin(ep.name) is not None and ep.name not in BUILTIN_PLUGINS:
                    continue  # the same distribution seen twice on sys.path
                if ep.name in BUILTIN_PLUGINS:
                    self.load_failures.append(
                        PluginFailure(
                            ep.name,
                            f"entry point {ep.name!r} of {dist.metadata['Name']} has a built-in plugin's name;"
                            " rename it in its [project.entry-points.\"netharness.backends\"] table",
                        )
                    )
                    continue
                try:
                    plugin: Any = ep.load()
                except Exception as exc:
                    self.load_failures.append(PluginFailure(ep.name, f"{type(exc).__name__}: {exc}"))
                    continue
                self.register(plugin, name=ep.name)
                self.entry_point_origins[ep.name] = origin


def disabled_from_env() -> set[str]:
    return {name.strip() for name in os.environ.get(DISABLE_ENV, "").split(",") if name.strip()}


def build_plugin_manager(
    disabled: Iterable[str] = (),
    *,
    builtins: bool = True,
    entry_points: bool = True,
    extra_plugins: Iterable[tuple[str, ModuleType | object]] = (),
) -> HarnessPluginManager:
    """Create a plugin manager: hookspecs, built-ins, extra plugins, entry points."""
    skip = set(disabled) | disabled_from_env()
    pm = HarnessPluginManager()
    if builtins:
        for plugin_name, module_name in BUILTIN_PLUGINS.items():
            if plugin_name not in skip:
                pm.register_module(plugin_name, module_name)
    for plugin_name, plugin in extra_plugins:
        if plugin_name not in skip:
            pm.register(plugin, name=plugin_name)
    if entry_points:
        pm.load_entry_points(skip)
    pm.check_pending()
    return pm


def collect_backends(pm: HarnessPluginManager) -> BackendRegistry:
    """Ask every plugin for its backends.

    A hook that raises, a duplicate name (the first registration is kept) and a backend
    that breaks the contract are recorded in ``registry.failures`` with the plugin's name,
    so the other backends still run; callers decide whether failures are fatal.
    """
    registry = BackendRegistry(failures=list(pm.load_failures))
    # Call each implementation on its own so a result (or a failure) names its plugin.
    for impl in pm.hook.harness_backends.get_hookimpls():  # registration order
        try:
            result = cast("Sequence[Backend] | None", impl.function())
        except Exception as exc:
            registry.failures.append(
                PluginFailure(impl.plugin_name, f"harness_backends raised {type(exc).__name__}: {exc}")
            )
            continue
        for backend in result or ():
            try:
                registry.register(backend, impl.plugin_name)
            except PluginError as exc:
                registry.failures.append(PluginFailure(impl.plugin_name, str(exc)))
    return registry


def load_backends(disabled: Iterable[str] = ()) -> BackendRegistry:
    """The usual way in: a registry of every built-in and installed backend."""
    return collect_backends(build_plugin_manager(disabled))
