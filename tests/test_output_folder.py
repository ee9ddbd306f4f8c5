"""One run per output folder, and the previous report kept aside until the new one is complete."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.commands.run import PREVIOUS, move_aside_previous, output_lock
from harness.errors import UsageError


def test_a_second_run_into_the_same_folder_fails_at_once(tmp_path: Path) -> None:
    with output_lock(tmp_path), pytest.raises(UsageError, match="in use by another netharness run"):
        with output_lock(tmp_path):
            pass
    with output_lock(tmp_path):  # released: the next run may start
        pass


def test_the_previous_report_is_moved_aside_until_the_new_one_is_complete(tmp_path: Path) -> None:
    (tmp_path / "report.html").write_text("old")
    (tmp_path / "conformance.jsonl").write_text("old")
    (tmp_path / "unrelated.txt").write_text("mine")
    assert move_aside_previous(tmp_path)
    assert not (tmp_path / "report.html").exists()
    assert (tmp_path / PREVIOUS / "report.html").read_text() == "old"
    assert (tmp_path / "unrelated.txt").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert not move_aside_previous(empty)
