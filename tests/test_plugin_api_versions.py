"""The plugin API has a version, and a backend written for an older one fails only with messages naming the change."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import harness
from harness import NetSpec, PluginError
from harness.contract.backend import check_backend
from harness.versions import API_VERSION, CONTRACT_CHANGES

ROOT = Path(__file__).resolve().parents[1]


def test_the_version_is_exported_and_every_change_is_in_the_changelog() -> None:
    assert harness.API_VERSION == API_VERSION >= 2
    changelog = (ROOT / "docs" / "plugin-api-changelog.md").read_text()
    assert f"## Version {API_VERSION}" in changelog
    for change in CONTRACT_CHANGES.values():
        version = int(re.search(r"plugin API (\d+)", change).group(1))  # type: ignore[union-attr]
        assert 1 < version <= API_VERSION, change


def test_check_input_without_a_dtype_warns_and_names_the_change() -> None:
    x = np.zeros((1, 3, 40, 40), np.float64)
    with pytest.warns(DeprecationWarning, match="plugin API 2 made spec.check_input take the call's dtype"):
        NetSpec().check_input(x)
    with pytest.raises(harness.SpecError, match="does not match the call's dtype='float32'"):
        NetSpec().check_input(x, "float32")
    assert NetSpec().check_input(x, None) is x


class _Declared:
    name, version, capabilities, devices, dtypes = "declared", "1", frozenset(), ("cpu",), ("float32",)

    def availability(self) -> harness.Availability:
        return harness.Availability.ok()


@pytest.mark.parametrize("declared", [API_VERSION + 1, 0, "2", True])
def test_an_api_version_this_harness_does_not_implement_is_refused(declared: object) -> None:
    backend = _Declared()
    backend.api_version = declared  # type: ignore[attr-defined]
    with pytest.raises(PluginError, match=f"this netharness implements plugin API {API_VERSION}"):
        check_backend(backend, "p")


@pytest.mark.parametrize("declared", [None, 1, API_VERSION])
def test_older_and_current_api_versions_load(declared: int | None) -> None:
    backend = _Declared()
    if declared is not None:
        backend.api_version = declared  # type: ignore[attr-defined]
    check_backend(backend, "p")


def test_an_eager_subclass_inherits_no_precision_it_did_not_declare() -> None:
    pytest.importorskip("torch")
    from backends.eager import SUBCLASS_DTYPES, EagerBackend

    class Variant(EagerBackend):
        name = "eager-variant"

    class Declares(EagerBackend):
        name = "eager-declares"
        dtypes = ("float32", "float64", "bfloat16")

    class Inherits(Declares):
        name = "eager-inherits"

    assert "bfloat16" in EagerBackend.dtypes
    assert Variant.dtypes == SUBCLASS_DTYPES == ("float32", "float64")
    assert Declares.dtypes == ("float32", "float64", "bfloat16")
    assert Inherits.dtypes == SUBCLASS_DTYPES  # declared by its parent, not by itself


def test_a_fast_path_without_parameters_fails_with_the_contract_change(
    pytester: pytest.Pytester, fake_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backend written against API 1 (a prepare() object without parameters()) is told which change it misses."""
    pytest.importorskip("torch")
    from tests.helpers import run_suite_with_only

    plugin = """
    from backends.eager import EagerBackend, PreparedEagerNet
    from harness import hookimpl

    class OldPrepared(PreparedEagerNet):
        parameters = None  # the API 1 fast path: forward and train_step only

    class Old(EagerBackend):
        name = "old-api"
        api_version = 1

        def prepare(self, spec, params, *, device, dtype):
            return OldPrepared(self, spec, params, device, dtype)

    @hookimpl
    def harness_backends():
        return [Old()]
    """
    result = run_suite_with_only(
        pytester, fake_site, monkeypatch, plugin, "test_fast_path.py", "--backend=old-api", "-q", "-k", "train_step"
    )
    assert result.ret == 1
    output = result.stdout.str()
    assert "AttributeError" not in output
    result.stdout.fnmatch_lines(["*lacks parameters(); plugin API 2 requires a prepare() object to have parameters()*"])
