from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_BACKEND = ROOT / "docs" / "example-backend"


@pytest.fixture
def fake_site(tmp_path: Path) -> Path:
    """A directory to put on PYTHONPATH holding plugin modules and their dist-info."""
    site = tmp_path / "site"
    site.mkdir()
    return site


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
