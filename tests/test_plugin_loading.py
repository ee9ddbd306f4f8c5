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


def test_two_distributions_with_one_entry_point_name_are_both_named(
    fake_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.contract.manager import build_plugin_manager, collect_backends
    from tests.helpers import install_plugin

    source = """
from harness import hookimpl
from backends.numpy_backend import NumpyBackend

class Mine(NumpyBackend):
    name = "{name}"

@hookimpl
def harness_backends():
    return [Mine()]
"""
    install_plugin(fake_site, "acme-one", "acme_one", source.format(name="acme-one"), "acme")
    install_plugin(fake_site, "acme-two", "acme_two", source.format(name="acme-two"), "acme")
    monkeypatch.syspath_prepend(str(fake_site))
    pm = build_plugin_manager(builtins=False)
    (failure,) = [f for f in pm.load_failures if f.plugin == "acme"]
    assert "two installed distributions provide entry point 'acme'" in failure.cause
    assert "acme-one (acme_one)" in failure.cause and "acme-two (acme_two)" in failure.cause
    assert "plugin 'acme' failed" in str(collect_backends(pm).failures[0])


def test_an_availability_that_raises_is_named_in_the_backends_list_without_a_traceback(
    fake_site: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.commands.cli import main
    from tests.helpers import builtins_but, install_plugin

    source = """
from harness import hookimpl
from backends.numpy_backend import NumpyBackend

class Broken(NumpyBackend):
    name = "broken"

    def availability(self):
        raise RuntimeError("no licence server")

@hookimpl
def harness_backends():
    return [Broken()]
"""
    install_plugin(fake_site, "broken-plugin", "broken_plugin", source)
    monkeypatch.syspath_prepend(str(fake_site))
    monkeypatch.setenv("NETHARNESS_DISABLE_PLUGINS", builtins_but("numpy"))
    assert main(["backends"]) == 1
    out, err = capsys.readouterr()
    (row,) = [line for line in out.splitlines() if line.startswith("broken ")]
    assert "broken: availability() raised RuntimeError: no licence server" in row
    assert err.strip() == "error: backend 'broken': availability() raised RuntimeError"


def test_a_plugin_that_changes_directory_at_import_moves_no_results(
    pytester: pytest.Pytester, fake_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.helpers import ROOT, builtins_but, install_plugin

    elsewhere = pytester.path / "elsewhere"
    elsewhere.mkdir()
    source = f"""
import os
from harness import hookimpl
os.chdir({str(elsewhere)!r})

@hookimpl
def harness_backends():
    return []
"""
    install_plugin(fake_site, "wanderer", "wanderer", source)
    monkeypatch.setenv("PYTHONPATH", str(fake_site))
    monkeypatch.setenv("NETHARNESS_DISABLE_PLUGINS", builtins_but("numpy"))
    result = pytester.runpytest_subprocess(
        str(ROOT / "suites" / "test_forward_shapes.py"), "--backend=numpy", "-k", "test_output_shape and batch1",
        "--conformance-results=res.jsonl", "-p", "no:cacheprovider",
    )  # fmt: skip
    assert result.ret == 0, result.stdout.str()
    assert (pytester.path / "res.jsonl").exists() and not (elsewhere / "res.jsonl").exists()
