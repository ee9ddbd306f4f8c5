"""Root causes: failures that share a cause, shown once, in the order to fix them.

One bug fails many checks. An exception raised at one place in a backend (a ``TypeError``
in its pool backward) fails every check that reaches that place; a wrong forward pass fails
every gradient and training check after it. :func:`root_causes` folds a backend's failing
records into groups:

- failures that raised the same exception type at the same place (the innermost frame
  outside the harness, the suite and the array libraries, recorded as ``location``) form one
  group, whatever check they were in;
- the other failures of the checks that follow one another (shapes, then forward values,
  then the fast path, gradients and training) join the group of the first of them that
  fails: fix that one first, and the later ones may pass;
- any other failure is grouped with the failures of its own check.

Groups come in the order to fix them: upstream first, then the largest. Each reads as one
line: ``38 failures: TypeError in numpy_kernels.py:123 pool_backward``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.conformance.catalogue import CHECKS
from harness.results import first_line

PIPELINE = ("shapes", "forward", "fast path", "gradients", "training")
"""Families in the order one feeds the next: a failure upstream explains the ones below it."""
CHECKED = ("ConformanceError", "AssertionError", "Failed", "")
"""Exception types that are a check's verdict rather than a crash at one place in the backend."""
FAILING = ("failed", "error", "crashed", "xpassed")
_QUALIFIED_EXCEPTION = re.compile(r"^(?:[A-Za-z_]\w*\.)*(?:ConformanceError|AssertionError|Failed): ")
"""'harness.conformance.compare.ConformanceError: ' before the words of a message (pytest's --tb=line)."""


@dataclass
class Cause:
    """One root cause: the failures it explains, the first of them, and how to reproduce it."""

    backend: str
    headline: str
    """What went wrong, one line: 'TypeError in kernels.py:12 pool_backward: ...' or the first check's message."""
    first_check: str
    reproduce: str
    checks: dict[str, int] = field(default_factory=dict)
    """How many failures of each check the cause explains, in the order met."""
    rank: int = len(PIPELINE)
    crash: bool = False
    """The failures raised one exception at one place (else: one check, or one check and those after it)."""

    @property
    def count(self) -> int:
        return sum(self.checks.values())

    @property
    def followers(self) -> list[str]:
        """The checks besides the first that fail with it."""
        return [check for check in self.checks if check != self.first_check]

    def line(self) -> str:
        """'3 failures: TypeError in k.py:12 pool_backward: ...; in gradients, train_step', or, for a
        failing check upstream, '...; gradients (4) fail after it: forward_values fails too; fix it first'."""
        text = f"{self.count} failure{'s' if self.count != 1 else ''}: {self.headline}"
        followers = self.followers
        if followers and self.rank < len(PIPELINE) and not self.crash:
            listed = ", ".join(f"{check} ({self.checks[check]})" for check in followers)
            text += f"; {listed} fail after it: {self.first_check} fails too; fix it first"
        elif followers:
            text += f"; in {', '.join([self.first_check, *followers])}"
        return text


def _rank(check: str) -> int:
    info = CHECKS.get(check)
    return PIPELINE.index(info.family) if info is not None and info.family in PIPELINE else len(PIPELINE)


def _order(check: str) -> int:
    return list(CHECKS).index(check) if check in CHECKS else len(CHECKS)


def crashed_at(record: Mapping[str, Any]) -> str:
    """'TypeError in kernels.py:12 pool_backward' for an exception raised in a backend, else ''."""
    exception = str(record.get("exception") or "")
    if exception in CHECKED:
        return ""
    location = str(record.get("location") or "")
    return f"{exception} in {location}" if location else exception


def root_causes(records: Iterable[Mapping[str, Any]], reproduce: Any = None) -> list[Cause]:
    """The failing ``records`` (check records as dicts) grouped by root cause, in the order to fix them.

    ``reproduce(record)`` gives a record's reproduce command (default: its ``reproduce`` key).
    """
    failing = [r for r in records if str(r.get("outcome")) in FAILING]
    failing.sort(key=lambda r: (str(r.get("backend")), _rank(str(r.get("check"))), _order(str(r.get("check")))))
    causes: dict[tuple[str, str], Cause] = {}
    upstream: dict[str, tuple[str, str]] = {}
    for record in failing:
        backend, check = str(record.get("backend")), str(record.get("check"))
        crash = crashed_at(record)
        rank = _rank(check)
        if crash:
            key = (backend, f"crash {crash}")
        elif rank < len(PIPELINE):
            key = upstream.setdefault(backend, (backend, f"check {check}"))
        else:
            key = (backend, f"check {check}")
        if key not in causes:
            message = first_line(str(record.get("reason") or ""), "(no message recorded)")
            message = message.split("reproduce:", 1)[0].rstrip(" ;,") or message
            message = _QUALIFIED_EXCEPTION.sub("", message)
            if crash:  # its type is in the headline already
                message = re.sub(rf"^(?:\w+\.)*{re.escape(str(record.get('exception')))}: ", "", message)
            headline = (
                f"{crash}: {message}"
                if crash
                else (f"{check}: {message}" if not message.startswith(check) else message)
            )
            command = reproduce(record) if reproduce is not None else str(record.get("reproduce") or "")
            causes[key] = Cause(backend, headline, check, command, rank=rank, crash=bool(crash))
        cause = causes[key]
        cause.checks[check] = cause.checks.get(check, 0) + 1
        cause.rank = min(cause.rank, rank)
    return sorted(causes.values(), key=lambda c: (c.backend, c.rank, -c.count))


def cause_lines(causes: list[Cause], *, indent: str = "  ") -> list[str]:
    """Plain-text lines: per backend, its causes numbered in the order to fix them, each with its reproduce."""
    lines: list[str] = []
    backends = list(dict.fromkeys(cause.backend for cause in causes))
    for backend in backends:
        mine = [cause for cause in causes if cause.backend == backend]
        many = f"{len(mine)} root causes, in the order to fix them" if len(mine) > 1 else "1 root cause"
        lines.append(f"{indent}{backend} has {many}:")  # not 'name:', which starts a verdict line
        for number, cause in enumerate(mine, 1):
            lines.append(f"{indent}  {number}. {cause.line()}")
            if cause.reproduce:
                lines.append(f"{indent}     reproduce: {cause.reproduce}")
    return lines
