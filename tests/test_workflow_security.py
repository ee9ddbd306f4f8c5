"""The CI workflow a user copies resists supply-chain attacks: zizmor finds nothing, every action is SHA-pinned.

zizmor runs offline (no GitHub API), exactly as .ci/run runs it. A mutable tag
(``@v4``) lets whoever controls the action's repository change what CI runs; a full
commit SHA does not, so every ``uses:`` names one, with the release tag in a comment.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"
# `uses: owner/repo[/path]@<ref>  # <comment>`, as a step key or a reusable-workflow job key.
USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<target>[^\s#]+)\s*(?:#\s*(?P<comment>.*))?$")
FULL_SHA = re.compile(r"[0-9a-f]{40}")
VERSION_COMMENT = re.compile(r"v\d+(\.\d+)*")


def zizmor_executable() -> str:
    """The zizmor of this interpreter's environment (the dev extras install it), else one on PATH."""
    found = shutil.which("zizmor", path=str(Path(sys.executable).parent)) or shutil.which("zizmor")
    if found is None:
        pytest.skip("zizmor is not installed: `pip install -e '.[dev]'` (or `make venv`) installs it")
    return found


def zizmor_findings(target: Path) -> list[dict[str, Any]]:
    """zizmor's findings on ``target``, offline; it exits 0 with none and 10-14 with some."""
    done = subprocess.run(
        [zizmor_executable(), "--offline", "--format", "json", str(target)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode in (0, 10, 11, 12, 13, 14), f"zizmor failed (exit {done.returncode}):\n{done.stderr}"
    findings: list[dict[str, Any]] = json.loads(done.stdout)
    return findings


def workflow_files() -> list[Path]:
    files = sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])
    assert files, f"no workflows in {WORKFLOWS}"
    return files


def uses_lines(path: Path) -> list[tuple[int, str, str]]:
    """Every ``uses:`` of a workflow: (line number, target, comment)."""
    found = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        match = USES.match(line)
        if match:
            found.append((number, match["target"], (match["comment"] or "").strip()))
    return found


def describe(findings: list[dict[str, Any]]) -> str:
    lines = []
    for finding in findings:
        where = finding["locations"][0]["concrete"]
        lines.append(f"{finding['ident']} at line {where['location']['start_point']['row'] + 1}: {where['feature']}")
    return "\n".join(lines)


def test_zizmor_finds_nothing_in_the_workflows() -> None:
    findings = zizmor_findings(WORKFLOWS)
    assert findings == [], f"zizmor --offline {WORKFLOWS.relative_to(ROOT)}:\n{describe(findings)}"


def test_zizmor_check_would_catch_an_unpinned_credential_keeping_workflow(tmp_path: Path) -> None:
    """The check above is not vacuous: the same call flags the three faults this workflow used to have."""
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "bad.yml").write_text(
        "name: bad\non: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n"
        "    steps:\n      - uses: actions/checkout@v4\n      - run: make test\n"
    )
    idents = {finding["ident"] for finding in zizmor_findings(workflows)}
    assert {"unpinned-uses", "excessive-permissions", "artipacked"} <= idents, idents


@pytest.mark.parametrize("workflow", workflow_files(), ids=lambda path: path.name)
def test_every_action_is_pinned_to_a_full_commit_sha_with_its_version(workflow: Path) -> None:
    uses = uses_lines(workflow)
    assert uses, f"{workflow.name}: no `uses:` found; has the pattern stopped matching?"
    for number, target, comment in uses:
        if target.startswith(("./", "docker://")):  # in this repository, or an image digest's own concern
            continue
        action, _, ref = target.partition("@")
        assert FULL_SHA.fullmatch(ref), f"{workflow.name}:{number}: {action} is pinned to {ref!r}, not a 40-hex SHA"
        assert VERSION_COMMENT.match(comment), f"{workflow.name}:{number}: {action}@{ref} needs a `# vX.Y.Z` comment"


def test_every_checkout_drops_the_token_and_the_workflow_reads_only() -> None:
    for workflow in workflow_files():
        text = workflow.read_text()
        checkouts = text.count("uses: actions/checkout@")
        assert text.count("persist-credentials: false") == checkouts, workflow.name
        assert re.search(r"^permissions:\n  contents: read$", text, re.MULTILINE), workflow.name
