"""Fixtures every test of the harness shares; helpers to import live in tests/helpers.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.chromium import DevTools

try:
    # pytester puts sys.modules back after each test, so a torch first imported inside one
    # would be imported again in the next, which its C extension does not survive (a
    # SystemError or a segfault, depending on which test comes second). Imported here, it
    # is in every snapshot.
    import torch  # noqa: F401
except ImportError:
    pass


@pytest.fixture(autouse=True)
def not_an_xdist_worker_to_children(monkeypatch: pytest.MonkeyPatch) -> None:
    """make test runs under pytest-xdist, whose workers export PYTEST_XDIST_WORKER. A child pytest
    that inherits it believes it is a worker, and pytest-benchmark then times nothing; each test
    here starts its children as a user's shell would."""
    from harness.running.supervisor import XDIST_WORKER_ENV

    for name in XDIST_WORKER_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def history_in_tmp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A run a test starts writes its history into the test's own folder, never the checkout's .netharness/."""
    monkeypatch.setenv("NETHARNESS_HISTORY", str(tmp_path / "history.sqlite"))


@pytest.fixture
def fake_site(tmp_path: Path) -> Path:
    """A directory to put on PYTHONPATH holding plugin modules and their dist-info."""
    site = tmp_path / "site"
    site.mkdir()
    return site


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[DevTools]:
    """Headless Chromium with one page open (tests/chromium.py); use with ``pytestmark = needs_chromium``."""
    from tests.chromium import DevTools

    client = DevTools(tmp_path / "profile", tmp_path / "chromium.log")
    try:
        client.open_page()
        yield client
    finally:
        client.close()
