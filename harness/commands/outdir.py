"""The run's output folder is the harness's own: it replaces only what a netharness run wrote.

A manifest (:data:`MANIFEST`) beside the report names every entry the harness may write there
and says whether the last run in the folder completed. From it:

- a folder that holds anything and no netharness run is refused, unless ``--force``;
- even with ``--force``, an entry with one of the run's names that the harness did not write
  (a user's ``results.csv``, ``plots/``, ``artifacts/``, ``previous``) is refused, never replaced;
- the last complete report is kept in ``previous/`` until a new complete one exists: a
  partial run's outputs never replace it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.errors import UsageError
from harness.results import LOCK, MANIFEST, PARTS, PREVIOUS, QUARANTINES

OUTPUTS = (
    "conformance.jsonl",
    "benchmarks.json",
    "benchmark-checks.jsonl",
    "results.csv",
    "conformance.csv",
    "report.html",
    "summary.md",
    "artifacts",
    "plots",
    "history",
    *(f"{results}{suffix}" for results in ("conformance.jsonl", "benchmark-checks.jsonl") for suffix in QUARANTINES),
)
"""What one run writes into its folder (the report's files, the results it was built from, and
the lines set aside from those: cut off mid-write, or not written by the harness's recorder)."""
OWNED = (*OUTPUTS, PREVIOUS, PARTS)
"""Every entry a run may replace or remove, and then only where the manifest says a run wrote it."""


def claim(out: Path, *, force: bool) -> None:
    """Refuse ``out`` unless it is new, empty, or a netharness run's folder (``force``: any folder).

    Either way, refuse an entry named like one of the run's that no netharness run wrote.
    """
    if not out.exists():
        return
    if not out.is_dir():
        raise UsageError(f"--out {out} is a file; pass a folder")
    entries = {entry.name for entry in out.iterdir()}
    ours = owned(out)
    clashing = sorted((entries & set(OWNED)) - ours)
    if clashing:
        raise UsageError(
            f"--out {out} holds {', '.join(clashing)}, which no netharness run wrote and this run would replace;"
            " move them away or pass another --out"
        )
    others = sorted(entries - ours - {LOCK, MANIFEST})
    if others and not _is_a_run_folder(out) and not force:
        raise UsageError(
            f"--out {out} is not empty ({len(others)} entries, such as {others[0]!r}) and holds no netharness run;"
            " pass a new or empty folder, or --force to write beside them (nothing of theirs is replaced)"
        )


def owned(out: Path) -> set[str]:
    """The entries of ``out`` a netharness run wrote (by its manifest; a folder of a release before the
    manifest, marked by its lock file alone, owns every run's name)."""
    manifest = _read_manifest(out)
    if manifest is not None:
        files = manifest.get("files")
        names = {str(name) for name in files if str(name) in OWNED} if isinstance(files, list) else set()
    elif (out / LOCK).exists():
        names = set(OWNED)
    else:
        names = set()
    return {name for name in names if (out / name).exists() or (out / name).is_symlink()}


def set_aside_last_report(out: Path) -> bool:
    """Keep the last complete report in ``previous/``, out of this run's way; True if one is kept.

    The last run's outputs become ``previous/`` when that run completed (or when there is no
    older report to keep); a partial run's outputs are dropped when ``previous/`` already
    holds a complete report.
    """
    ours = owned(out)
    present = [name for name in OUTPUTS if name in ours]
    previous = out / PREVIOUS
    keep_older = PREVIOUS in ours and previous.is_dir() and not _last_run_complete(out)
    _write_manifest(out, complete=False)
    if not present:
        return PREVIOUS in ours and previous.is_dir()
    if keep_older:
        for name in present:
            _remove(out / name)
        return True
    if PREVIOUS in ours:
        _remove(previous)
    previous.mkdir()
    for name in present:
        (out / name).rename(previous / name)
    return True


def finish(out: Path, *, complete: bool) -> None:
    """Mark the run's outputs complete (a run that reached its end) or partial, for the next run."""
    _write_manifest(out, complete=complete)


def drop_previous(out: Path) -> None:
    """Remove ``previous/``, now that a new complete report replaces it."""
    if PREVIOUS in owned(out):
        _remove(out / PREVIOUS)


@contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold ``out``'s lock for the run; a second run into the same folder fails at once."""
    handle = (out / LOCK).open("a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise UsageError(
            f"{out} is in use by another netharness run ({holder}); wait for it or pass another --out"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    try:
        yield
    finally:
        handle.close()


def _is_a_run_folder(out: Path) -> bool:
    return _read_manifest(out) is not None or (out / LOCK).exists()


def _last_run_complete(out: Path) -> bool:
    manifest = _read_manifest(out)
    return manifest is None or manifest.get("complete") is True  # a folder from before the manifest: as before


def _read_manifest(out: Path) -> dict[str, object] | None:
    try:
        manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _write_manifest(out: Path, *, complete: bool) -> None:
    tmp = out / f"{MANIFEST}.tmp"
    tmp.write_text(json.dumps({"files": list(OWNED), "complete": complete}), encoding="utf-8")
    tmp.replace(out / MANIFEST)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
