"""``netharness mutants`` hands its child pytest absolute paths only.

The child runs in a temporary working directory, so a relative ``--results rel.jsonl``
reaching it unresolved is written there and lost: the parent then reads an empty file and
reports 0/23 caught with eager "running no checks". Nothing here runs the suite: the
command and environment are built with a relative path from a known working directory, and
one ``run_mutants`` call goes through a stand-in child that resolves paths as a real
process in that temporary directory would.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from backends.mutants import MUTANTS
from harness.commands import mutants as mutation


def option(command: list[str], name: str) -> str:
    values = [arg.split("=", 1)[1] for arg in command if arg.startswith(f"{name}=")]
    assert len(values) == 1, command
    return values[0]


def test_pytest_command_gets_the_results_path_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    command = mutation.pytest_command(Path("out") / "rel.jsonl", seed=0, selection="float64")
    assert option(command, "--conformance-results") == str(tmp_path.resolve() / "out" / "rel.jsonl")


def test_child_environment_resolves_every_pythonpath_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(["mine", "", str(tmp_path / "abs")]))
    env = mutation.child_environment(Path("site"))
    entries = env["PYTHONPATH"].split(os.pathsep)
    here = tmp_path.resolve()
    assert entries == [str(here / "site"), str(mutation.ROOT), str(here / "mine"), str(here / "abs")]


class ChildInItsOwnDirectory:
    """Stands in for ``subprocess.Popen``: writes the records a clean run would, where the child would.

    Every mutant fails its declared check and eager passes, so the run is all-caught exactly
    when the parent reads the file the child wrote.
    """

    started: list[dict[str, Any]] = []

    def __init__(self, command: list[str], *, cwd: str, env: dict[str, str], **_: Any) -> None:
        type(self).started.append({"command": command, "cwd": cwd, "env": env})
        results = Path(option(command, "--conformance-results"))
        if not results.is_absolute():  # what the real child's open() would do
            results = Path(cwd) / results
        records = [{"kind": "run_start"}]
        records.append({"kind": "check", "backend": "eager", "check": "output_shape", "outcome": "passed"})
        for m in MUTANTS:
            records.append(
                {"kind": "check", "backend": f"mutant-{m.defect}", "check": m.caught_by, "outcome": "failed"}
            )
        with results.open("a") as handle:
            handle.writelines(json.dumps(record) + "\n" for record in records)
        self.stdout = io.StringIO(f"{len(MUTANTS)} failed, 1 passed in 0.01s\n")

    def wait(self) -> int:
        return 1

    def terminate(self) -> None:
        pass


def test_relative_results_path_reaches_the_child_resolved_and_every_mutant_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(subprocess, "Popen", ChildInItsOwnDirectory)
    ChildInItsOwnDirectory.started = []
    out = io.StringIO()

    status = mutation.run_mutants(quick=True, results=Path("rel.jsonl"), out=out)

    [child] = ChildInItsOwnDirectory.started
    assert Path(child["cwd"]).resolve() != tmp_path.resolve()  # the child really is elsewhere
    assert option(child["command"], "--conformance-results") == str(tmp_path.resolve() / "rel.jsonl")
    assert status == 0, out.getvalue()
    assert f"caught {len(MUTANTS)}/{len(MUTANTS)}" in out.getvalue()
    assert len(mutation.read_records(tmp_path / "rel.jsonl")) == len(MUTANTS) + 2
