"""Helpers the harness's own tests import: where the checkout is, and plugins installed as a user would."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_BACKEND = ROOT / "docs" / "example-backend"


def builtins_but(*kept: str) -> str:
    """A NETHARNESS_DISABLE_PLUGINS value that leaves only the ``kept`` built-in plugins loaded."""
    from harness.contract.manager import BUILTIN_PLUGINS

    return ",".join(name for name in BUILTIN_PLUGINS if name not in kept)


def install_plugin(site: Path, dist: str, module_name: str, source: str, entry_name: str | None = None) -> None:
    """Install a plugin module into ``site`` with a real ``netharness.backends`` entry point.

    importlib.metadata finds the dist-info on sys.path exactly as it finds a pip-installed
    package, so the harness's real entry-point discovery loads it.
    """
    (site / f"{module_name}.py").write_text(source)
    info = site / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[netharness.backends]\n{entry_name or module_name} = {module_name}\n")


def run_suite_with_only(
    pytester: pytest.Pytester,
    fake_site: Path,
    monkeypatch: pytest.MonkeyPatch,
    plugin_source: str,
    suite_file: str,
    *args: str,
) -> pytest.RunResult:
    """Run one suite file in a subprocess with ``plugin_source`` as the only plugin (built-ins disabled)."""
    import textwrap

    from harness.contract.manager import BUILTIN_PLUGINS

    install_plugin(fake_site, "only-plugin", "only_plugin", textwrap.dedent(plugin_source))
    monkeypatch.setenv("PYTHONPATH", str(fake_site))
    monkeypatch.setenv("NETHARNESS_DISABLE_PLUGINS", ",".join(BUILTIN_PLUGINS))
    return pytester.runpytest_subprocess(str(ROOT / "suites" / suite_file), "-p", "no:cacheprovider", *args)
