"""Replacing a set of output files so that a failure leaves no half-written file behind.

Every file is first written in full to a temporary file in its own directory (so the final
``os.replace`` is a rename on one filesystem, which is atomic); only when all of them are on
disk are they renamed into place. If any write fails, the temporary files are removed and the
old outputs stay as they were.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path


def write_files(files: Mapping[Path, str]) -> None:
    """Write every ``path: text`` pair, all or (as far as the filesystem allows) none."""
    staged: list[tuple[str, Path]] = []
    try:
        for path, text in files.items():
            staged.append((_stage(path, text), path))
    except BaseException:
        for temporary, _ in staged:
            _remove(temporary)
        raise
    for index, (temporary, path) in enumerate(staged):
        try:
            os.replace(temporary, path)
        except BaseException:
            for leftover, _ in staged[index:]:
                _remove(leftover)
            raise


def write_file(path: Path, text: str) -> None:
    write_files({path: text})


def _stage(path: Path, text: str) -> str:
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)
    except BaseException:
        _remove(temporary)
        raise
    return temporary


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
