"""The check catalogue is the suite: every check a test records is listed, and every listed check exists."""

from __future__ import annotations

import re

import pytest

from harness.commands.cli import main
from harness.conformance.catalogue import CHECKS, suite_configurations
from harness.conformance.tolerances import default_tolerance
from tests.helpers import ROOT


def test_every_suite_check_is_in_the_catalogue_and_every_catalogued_check_runs() -> None:
    in_suite = set(suite_configurations(ROOT / "suites")) | {"benchmark"}  # bench_net.py's check
    assert in_suite == set(CHECKS), (in_suite - set(CHECKS), set(CHECKS) - in_suite)


def test_netharness_checks_lists_families_configurations_and_tolerances(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["checks"]) == 0
    out = capsys.readouterr().out
    for name in CHECKS:
        assert f"  {name}  (needs " in out
    assert "batch: batch1, batch7, batch64" in out
    assert f"float32: {default_tolerance('gradients', 'float32')}" in out
    assert f"bfloat16: {default_tolerance('forward_values', 'bfloat16')}" in out
    assert "float32: 8 ulp" in out


MACHINE_SECTION = "## Why each verdict holds on any machine"


def test_docs_say_why_every_check_holds_on_any_machine() -> None:
    """docs/tolerances.md argues, for every catalogued check and only those, why its verdict holds on any machine."""
    text = (ROOT / "docs" / "tolerances.md").read_text(encoding="utf-8")
    assert MACHINE_SECTION in text
    section = text.split(MACHINE_SECTION, 1)[1].split("\n## ", 1)[0]
    entries = re.findall(r"^- \*\*`(\w+)`\*\*: \S", section, flags=re.MULTILINE)
    assert len(entries) == len(set(entries)), sorted(name for name in entries if entries.count(name) > 1)
    assert set(entries) == set(CHECKS), (set(CHECKS) - set(entries), set(entries) - set(CHECKS))
