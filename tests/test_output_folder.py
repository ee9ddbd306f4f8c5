"""--out is the harness's own: one run per folder, nothing it did not write is replaced, and the
last complete report is kept until a new complete one exists."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.commands.outdir import (
    LOCK,
    MANIFEST,
    PREVIOUS,
    claim,
    drop_previous,
    finish,
    output_lock,
    set_aside_last_report,
)
from harness.errors import UsageError
from tests.helpers import ROOT, builtins_but


def test_a_second_run_into_the_same_folder_fails_at_once(tmp_path: Path) -> None:
    with output_lock(tmp_path), pytest.raises(UsageError, match="in use by another netharness run"):
        with output_lock(tmp_path):
            pass
    with output_lock(tmp_path):  # released: the next run may start
        pass


def a_run(out: Path, report: str, *, complete: bool) -> None:
    """What one run leaves: its set-aside of the last report, its outputs, and its end."""
    out.mkdir(exist_ok=True)
    (out / LOCK).touch()
    had_previous = set_aside_last_report(out)
    (out / "report.html").write_text(report)
    (out / "conformance.jsonl").write_text(report)
    finish(out, complete=complete)
    if complete and had_previous:
        drop_previous(out)


def test_the_previous_report_is_moved_aside_until_the_new_one_is_complete(tmp_path: Path) -> None:
    a_run(tmp_path, "first", complete=True)
    (tmp_path / "unrelated.txt").write_text("mine")
    assert set_aside_last_report(tmp_path)
    assert not (tmp_path / "report.html").exists()
    assert (tmp_path / PREVIOUS / "report.html").read_text() == "first"
    assert (tmp_path / "unrelated.txt").read_text() == "mine"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert not set_aside_last_report(empty)


def test_two_interrupted_runs_keep_the_last_complete_report(tmp_path: Path) -> None:
    a_run(tmp_path, "complete", complete=True)
    a_run(tmp_path, "partial 1", complete=False)
    a_run(tmp_path, "partial 2", complete=False)
    assert (tmp_path / PREVIOUS / "report.html").read_text() == "complete"
    assert (tmp_path / "report.html").read_text() == "partial 2"
    a_run(tmp_path, "complete again", complete=True)
    assert not (tmp_path / PREVIOUS).exists()
    assert (tmp_path / "report.html").read_text() == "complete again"


USER_FOLDERS = [
    # (what the user's folder holds, --force, the refusal; '' when the run may write there)
    ({}, False, ""),
    ({"notes.txt": "mine"}, False, "is not empty (1 entries, such as 'notes.txt') and holds no netharness run"),
    ({"notes.txt": "mine"}, True, ""),
    ({"results.csv": "mine"}, True, "holds results.csv, which no netharness run wrote"),
    ({"artifacts/pkg.whl": "wheel"}, True, "holds artifacts, which no netharness run wrote"),
    ({"plots/a.svg": "x", "summary.md": "mine"}, True, "holds plots, summary.md, which no netharness run wrote"),
    ({"previous": "a file named previous"}, True, "holds previous, which no netharness run wrote"),
]


@pytest.mark.parametrize(("files", "force", "refusal"), USER_FOLDERS)
def test_a_folder_that_is_not_a_runs_own_is_refused_and_nothing_in_it_is_replaced(
    tmp_path: Path, files: dict[str, str], force: bool, refusal: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    if refusal:
        with pytest.raises(UsageError, match=refusal.replace("(", r"\(").replace(")", r"\)")):
            claim(tmp_path, force=force)
    else:
        claim(tmp_path, force=force)
        a_run(tmp_path, "report", complete=True)
    for name, text in files.items():
        assert (tmp_path / name).read_text() == text, f"{name} was touched"


def test_a_runs_own_folder_needs_no_force_and_a_file_is_refused(tmp_path: Path) -> None:
    a_run(tmp_path, "report", complete=True)
    (tmp_path / "mine.txt").write_text("a file of the user's beside the report")
    claim(tmp_path, force=False)
    assert (tmp_path / MANIFEST).exists()
    with pytest.raises(UsageError, match="is a file; pass a folder"):
        claim(tmp_path / "mine.txt", force=False)


def test_netharness_run_into_the_current_folder_deletes_nothing_of_the_users(tmp_path: Path) -> None:
    """The reported case: `--out .` in a folder with a wheel in artifacts/ and a summary.md."""
    (tmp_path / "artifacts").mkdir()
    (tmp_path / "artifacts" / "pkg-1.0-py3-none-any.whl").write_bytes(b"wheel")
    (tmp_path / "summary.md").write_text("my notes")
    env = {"NETHARNESS_DISABLE_PLUGINS": builtins_but("numpy"), "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    for force in ([], ["--force"]):
        done = subprocess.run(
            [sys.executable, "-m", "harness.commands.cli", "run", "--quick", "--backend=numpy", "--out", ".", *force],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=600,
        )
        assert done.returncode == 2, done.stdout + done.stderr
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "holds artifacts, summary.md, which no netharness run wrote" in done.stderr
    assert (tmp_path / "artifacts" / "pkg-1.0-py3-none-any.whl").read_bytes() == b"wheel"
    assert (tmp_path / "summary.md").read_text() == "my notes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifacts", "summary.md"]
