"""Under ``pytest -n N --dist loadgroup``, each backend's conformance tests are one group.

pytest-xdist's ``loadgroup`` sends every group of tests to one worker, a group being the
tests with the same ``xdist_group`` mark. A conformance suite's natural group is its
backend: the compiling backends (inductor, XLA, the ONNX export) compile each graph in the
process that runs it, so a backend spread over two workers compiles its graphs twice. On
the 2-core machine, with every compile cache empty, ``--dist loadfile`` spent about 280 s
of CPU on the suite and took 162 s; ``loadgroup`` by backend spent about 235 s and took
131 s.

:class:`BackendGroupScheduling` groups every test whose id starts with a selected backend
(``test_x[<backend>-...]``, as this plugin parametrizes them) by that backend; any other
test is grouped as ``loadgroup`` would (its mark, else on its own). No test id changes,
unlike an ``xdist_group`` mark, which xdist appends to the id. Groups go to the workers in
the order the backends were selected, and a worker takes its next group when it is nearly
done with the last.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from xdist.scheduler import LoadGroupScheduling


def backend_of(nodeid: str, backends: Sequence[str]) -> str | None:
    """The selected backend a test id is parametrized with, or None.

    The backend is the first part of the parameter id; a name may itself hold dashes
    (``compile-cudagraphs``), so the longest name that matches wins.
    """
    _, bracket, params = nodeid.partition("[")
    if not bracket or not params.endswith("]"):
        return None
    params = params[:-1]
    for name in sorted(backends, key=len, reverse=True):
        if params == name or params.startswith(f"{name}-"):
            return name
    return None


class BackendGroupScheduling(LoadGroupScheduling):  # type: ignore[misc]
    """``loadgroup``, with every conformance test grouped by its backend."""

    def __init__(self, config: Any, log: Any = None, *, backends: Sequence[str]) -> None:
        super().__init__(config, log)
        self.backends = tuple(backends)
        # By default loadscope orders groups by their number of tests, which puts a backend
        # with one precision (compile) behind those with three, however long it takes.
        config.option.loadscopereorder = False

    def _split_scope(self, nodeid: str) -> str:
        backend = backend_of(nodeid, self.backends)
        if backend is None:
            return str(super()._split_scope(nodeid))
        return f"netharness backend {backend}"
