"""Files a benchmark ran (exported models), kept inside the report's folder and linked relatively.

A results file names an artifact by the absolute path it had on the machine that ran it, which
means nothing once the folder is zipped, moved or uploaded. The report links
``artifacts/<kind>/<file>`` instead: the part of the path below its last ``artifacts`` folder.
If the file is not in the report's folder yet, it is copied there, from the recorded path or
from beside the results file that named it (a CI job's downloaded folder). Only what looks
like an artifact is ever linked or copied: a regular file with a known suffix, under an
``artifacts`` folder, whose every path part is plain (letters, digits, ``.``, ``_``, ``-``).
Anything else is shown as text, never as a link.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePath

ARTIFACTS_DIR = "artifacts"
SUFFIXES = (".onnx",)
MAX_BYTES = 512 * 1024 * 1024
_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class Placement:
    """Where one recorded artifact goes: its link, and the file to copy there (None: already there)."""

    recorded: str
    link: str
    copy_from: Path | None


def relative_link(recorded: str) -> str | None:
    """'artifacts/onnx/net-1a2b.onnx' for a recorded path that looks like an artifact, else None."""
    parts = PurePath(recorded).parts
    if ARTIFACTS_DIR not in parts:
        return None
    below = parts[len(parts) - 1 - parts[::-1].index(ARTIFACTS_DIR) + 1 :]
    if not below or not all(_PLAIN.fullmatch(part) for part in below) or not below[-1].endswith(SUFFIXES):
        return None
    return "/".join((ARTIFACTS_DIR, *below))


def plan(artifacts: Iterable[tuple[str, str]], out: Path) -> list[Placement]:
    """Placements for (recorded path, results file) pairs whose file can be found; the rest get no link."""
    placements: dict[str, Placement] = {}
    for recorded, source in artifacts:
        link = relative_link(recorded) if recorded else None
        if link is None or recorded in placements:
            continue
        target = out / link
        if _is_artifact(target):
            placements[recorded] = Placement(recorded, link, None)
            continue
        for candidate in (Path(recorded), Path(source).parent / link):
            if _is_artifact(candidate):
                placements[recorded] = Placement(recorded, link, candidate)
                break
    return list(placements.values())


def place(placements: Iterable[Placement], out: Path) -> None:
    """Copy every artifact that is not in ``out`` yet (an existing file there is kept)."""
    for placement in placements:
        if placement.copy_from is None:
            continue
        target = out / placement.link
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(placement.copy_from, target)


def _is_artifact(path: Path) -> bool:
    try:
        return path.is_file() and not path.is_symlink() and path.stat().st_size <= MAX_BYTES
    except OSError:
        return False
