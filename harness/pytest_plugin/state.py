"""What one pytest session knows about backends: the registry, the selection and the options.

Built lazily, the first time a netharness fixture, test or option needs it, so a pytest run
that never touches the suite imports no backend and writes no file.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from harness.childprocess import take_record_key
from harness.conformance.selectors import matches, merged_tolerance, validate
from harness.conformance.tolerances import Tolerance, default_tolerance
from harness.contract.backend import Backend, KnownDeviation, ToleranceOverride
from harness.contract.devices import check_device
from harness.contract.manager import BackendRegistry, HarnessPluginManager, build_plugin_manager, collect_backends
from harness.contract.seeds import check_seed
from harness.errors import PluginError, UsageError
from harness.results import ResultsWriter, git_commit

DEFAULT_RESULTS = ".netharness/conformance.jsonl"
GOVERNED_BY = {"prepared_forward": "forward_values", "prepared_train_step": "train_step"}
"""Fast-path checks whose tolerance overrides also come from the contract check they mirror."""


class HarnessState:
    """The plugin manager, the selected backends, their declarations, and the results file."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.device = parse_device(config.getoption("device"))
        self.seed = parse_seed(config.getoption("seed"))
        self.strict: bool = config.getoption("strict_backends")
        # Absolute before the plugins are imported: one that changes the working directory at
        # import must not move the results file.
        self.results_path = Path(config.getoption("conformance_results")).absolute()
        # Taken before any backend is imported: only the recorder can seal a record.
        self.record_key = take_record_key()
        self.pm: HarnessPluginManager = build_plugin_manager()
        self.registry: BackendRegistry = collect_backends(self.pm)
        try:
            self.selected = self.registry.select(config.getoption("backend"), strict=self.strict)
        except UsageError as exc:
            raise pytest.UsageError(str(exc)) from None
        if not self.selected:
            causes = "; ".join(str(f) for f in self.registry.failures)
            raise pytest.UsageError(f"no backend selected: every selected plugin failed to load: {causes}")
        self._availability: dict[str, Any] = {}
        self._deviations: dict[str, list[KnownDeviation]] = {}
        self._overrides: dict[str, list[ToleranceOverride]] = {}
        for name in self.selected:  # a malformed declaration is a usage error before anything runs
            self.known_deviations(name)
            self.tolerance_overrides(name)
        self.writer: ResultsWriter | None = None
        self.is_worker = hasattr(config, "workerinput")
        if not self.is_worker:
            check_writable(self.results_path)

    def backend(self, name: str) -> Backend:
        return self.registry.backends[name]

    def availability(self, name: str) -> Any:
        if name not in self._availability:
            self._availability[name] = self.backend(name).availability()
        return self._availability[name]

    def known_deviations(self, name: str) -> list[KnownDeviation]:
        if name not in self._deviations:
            self._deviations[name] = self._declarations("harness_known_deviations", name, KnownDeviation)
        return self._deviations[name]

    def tolerance_overrides(self, name: str) -> list[ToleranceOverride]:
        if name not in self._overrides:
            self._overrides[name] = self._declarations("harness_tolerance_overrides", name, ToleranceOverride)
        return self._overrides[name]

    def _declarations(self, hook: str, name: str, kind: type[Any]) -> list[Any]:
        """Every plugin's declarations for backend ``name``, each checked and blamed on the plugin that made it.

        A hook that raises, returns something other than a list of ``kind``, or declares
        something malformed is a one-line usage error naming that plugin, the hook and the
        backend: never an internal error, and never blamed on the backend under test.
        """
        declared: list[Any] = []
        arguments = {"backend": self.backend(name)}
        for impl in getattr(self.pm.hook, hook).get_hookimpls():
            where = f"plugin {impl.plugin_name!r}"
            try:
                group = impl.function(**{arg: arguments[arg] for arg in impl.argnames})
            except Exception as exc:
                raise pytest.UsageError(
                    f"{where}: {hook} raised {type(exc).__name__} for backend {name!r}: {exc}".splitlines()[0]
                ) from None
            if group is None:
                continue
            if not isinstance(group, list | tuple) or not all(isinstance(item, kind) for item in group):
                raise pytest.UsageError(
                    f"{where}: {hook} returned {group!r:.80} for backend {name!r}; return a list of {kind.__name__}"
                )
            try:
                for declaration in group:
                    validate(declaration, name, f"{hook} of {where}")
            except PluginError as exc:
                raise pytest.UsageError(str(exc)) from None
            if impl.plugin_name != self.registry.owners.get(name):  # another plugin's word on this backend
                group = [
                    replace(d, reason=f"{d.reason} (declared by {where}, which does not own {name!r})") for d in group
                ]
            declared += group
        return declared

    def deviation_for(self, name: str, check: str, config: dict[str, Any]) -> KnownDeviation | None:
        return next((d for d in self.known_deviations(name) if matches(d, check, config)), None)

    def tolerance_for(self, name: str, check: str, dtype: str, config: dict[str, Any] | None = None) -> Tolerance:
        """The default tolerance, widened per component by every matching override.

        rtol and atol are merged separately: the widest rtol and the widest atol apply, and
        the reason names each override that widened one.
        """
        config = {**(config or {}), "dtype": dtype}
        default = default_tolerance(check, dtype, config)
        governing = GOVERNED_BY.get(check)
        overrides = self.tolerance_overrides(name)
        if governing is not None:  # an override of the contract check governs its fast-path twin too
            overrides = [replace(o, check=check) if o.check == governing else o for o in overrides]
        return merged_tolerance(default, overrides, check, config)

    def write(self, record: dict[str, Any]) -> None:
        if self.writer is None:
            self.writer = ResultsWriter(self.results_path, self.record_key)
            self.writer.start(
                seed=self.seed,
                device=self.device,
                backends={n: describe(self.backend(n)) for n in self.selected},
                plugin_failures=[str(f) for f in self.registry.failures],
                commit=git_commit(),
            )
        self.writer.write(record)


def describe(backend: Backend) -> dict[str, Any]:
    return {"version": backend.version, "capabilities": sorted(c.value for c in backend.capabilities)}


def check_writable(path: Path) -> None:
    """Fail at start-up, not mid-run, if the results file cannot be written (nothing is truncated)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise pytest.UsageError(f"cannot write --conformance-results {path}: {exc.strerror or exc}") from None


def parse_device(value: str) -> str:
    try:
        return check_device(value)
    except UsageError as error:
        raise pytest.UsageError(str(error)) from None


def parse_seed(value: str) -> int:
    try:
        return check_seed(value)
    except UsageError as error:
        raise pytest.UsageError(str(error)) from None


STATE_KEY = pytest.StashKey[HarnessState]()


def harness_state(config: pytest.Config) -> HarnessState:
    """The session's state, built on first use (this is what imports the backends)."""
    if STATE_KEY not in config.stash:
        config.stash[STATE_KEY] = HarnessState(config)
    return config.stash[STATE_KEY]
