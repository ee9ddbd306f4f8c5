"""Every relative link in README.md and docs/*.md leads somewhere, and every test the guarantees name exists.

A link resolves, relative to the file it is in, to an existing file or folder; a ``#anchor``
into a Markdown file (or into the same file) names one of its headings, slugged the way GitHub
slugs them. http(s) and mailto links are not followed. Links inside code (fenced blocks,
inline code spans) are not links.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.helpers import ROOT

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PENDING: set[str] = set()
"""Files linked before they land (written on a branch of their own). A pending file that exists is
checked like any other; remove it from here once it has landed."""

FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")


def prose_lines(path: Path) -> list[tuple[int, str]]:
    """The lines outside fenced code blocks, numbered from 1."""
    lines, fenced = [], False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append((number, line))
    return lines


def links(path: Path) -> list[tuple[int, str]]:
    """Every link target in ``path``, with its line: inline links, images and reference definitions."""
    found = []
    for number, line in prose_lines(path):
        # A code span inside a link's text ([`x.py`](x.py)) stays; one that holds link syntax is code.
        text = CODE_SPAN.sub(lambda m: "x" * len(m.group(0)) if "](" in m.group(2) else m.group(0), line)
        found += [(number, m.group(1)) for m in LINK.finditer(text)]
        if m := REFERENCE.match(text):
            found.append((number, m.group(1)))
    return found


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text, lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = text.replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    result = set()
    for _, line in prose_lines(path):
        if m := HEADING.match(line):
            base = slug(m.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            result.add(base if count == 0 else f"{base}-{count}")
    return result


def broken(document: Path, target: str) -> str | None:
    """Why ``target``, a link in ``document``, leads nowhere; None when it resolves."""
    if re.match(r"^(https?|mailto):", target):
        return None
    path_part, _, anchor = target.partition("#")
    resolved = (document.parent / path_part).resolve() if path_part else document
    relative = resolved.relative_to(ROOT).as_posix() if resolved.is_relative_to(ROOT) else str(resolved)
    if not resolved.exists():
        return None if relative in PENDING else f"{relative} does not exist"
    if anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
        return f"{relative} has no heading with the anchor #{anchor}"
    return None


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(document: Path) -> None:
    problems = [
        f"{document.name}:{number}: ({target}) {why}"
        for number, target in links(document)
        if (why := broken(document, target))
    ]
    assert not problems, "\n".join(problems)


def test_the_link_checker_sees_links_and_anchors_as_github_does(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# 6. Eager with one change\n## `compare` and *reports*\n## Setup\n## Setup\n"
        "See [a](#6-eager-with-one-change), [b](#compare-and-reports), [c](#setup-1) and [`d`](other.md#nope).\n"
        "`[not a link](missing.md)`\n```\n[nor this](missing.md)\n```\n[e]: https://example.com\n",
        encoding="utf-8",
    )
    (tmp_path / "other.md").write_text("# Other\n", encoding="utf-8")
    targets = [target for _, target in links(page)]
    assert targets == [
        "#6-eager-with-one-change",
        "#compare-and-reports",
        "#setup-1",
        "other.md#nope",
        "https://example.com",
    ]
    assert [broken(page, t) for t in targets] == [
        None,
        None,
        None,
        f"{tmp_path / 'other.md'} has no heading with the anchor #nope",
        None,
    ]
    assert broken(page, "#setup-2") == f"{page} has no heading with the anchor #setup-2"
    assert broken(page, "gone.md") == f"{tmp_path / 'gone.md'} does not exist"


GUARANTEE_TEST = re.compile(r"\[`((?:tests/test_\w+\.py)?)((?:::\w+)?)`\]\(\.\./(tests/test_\w+\.py)\)")
"""A test named by a link: [`tests/file.py::test_name`](../tests/file.py), or [`::test_name`](../tests/file.py)
for another test in the same file, or [`tests/file.py`](../tests/file.py) for the whole file."""


def test_every_guarantee_is_shown_by_tests_that_exist() -> None:
    """Each row of docs/guarantees.md links the tests that show it; a renamed test must not leave a dangling name."""
    rows = [
        line
        for line in (ROOT / "docs" / "guarantees.md").read_text(encoding="utf-8").splitlines()
        if line.startswith("| ") and not line.startswith("| guarantee |")
    ]
    assert len(rows) >= 15, rows  # every guarantee the README listed when they moved here
    problems = []
    for row in rows:
        named = GUARANTEE_TEST.findall(row)
        if not named:
            problems.append(f"no test linked: {row}")
        for file, name, target in named:
            if file and file != target:
                problems.append(f"{file} links to {target}")
            path = ROOT / target
            if not path.exists():
                problems.append(f"{target} does not exist")
            elif name:
                tree = ast.parse(path.read_text(encoding="utf-8"))
                if name[2:] not in {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}:
                    problems.append(f"{target} has no test {name[2:]}")
    assert not problems, "\n".join(problems)
