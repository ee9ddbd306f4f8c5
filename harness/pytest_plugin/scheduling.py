"""Under ``pytest -n N --dist loadgroup``, each backend's tests on one network are one group.

pytest-xdist's ``loadgroup`` sends every group of tests to one worker, a group being the
tests with the same ``xdist_group`` mark. A conformance suite's natural group is a backend
on one network: the compiling backends (inductor, XLA, the ONNX export) compile each graph
in the process that runs it, so tests that share graphs belong on one worker. On the 2-core
machine, with every compile cache empty, ``--dist loadfile`` spent about 280 s of CPU on the
suite and took 162 s; ``loadgroup`` by backend spent about 235 s and took 131 s.

:class:`BackendGroupScheduling` groups every test whose id starts with a selected backend
(``test_x[<backend>-...]``, as this plugin parametrizes them) by that backend, and its tests
on each of the networks that change every field (:data:`harness.net.variants.EVERY_FIELD`, the
parameter id ``1stage`` or ``3stage``) into a group of their own per network. Those networks
share no graph with the backend's other tests, and the per-layer, gradient and step checks
all run on them, so they are the part of a backend worth moving: with one group per backend,
inductor's checks (about 105 s with every cache empty) ran on one worker while the other
finished every other backend 15 s sooner and sat idle; split, the cold suite took 102-108 s
instead of 109-112 s (2026-11-28), and a single compiling backend uses two workers
(inductor's checks alone: 65 s instead of 83 s). Any other test is grouped as ``loadgroup``
would (its mark, else on its own). No test id changes, unlike an ``xdist_group`` mark, which
xdist appends to the id. Groups go to the workers in the order their first test was
collected (the backends in the order they were selected), except the every-field networks'
groups: they go last, the network with more layers first, so the run ends on the smallest
groups (simulated with the measured test times: 97 s instead of 101 s, against 94 s for the
best order; measured, the two workers then finished within 0.5-2.6 s of each other, and the
cold suite took 103-105 s). A worker takes its next group when it is nearly done with the last.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from xdist.scheduler import LoadGroupScheduling

from harness.net.variants import EVERY_FIELD, SPEC_VARIANTS


def parameter_id(nodeid: str) -> str | None:
    """What is between the brackets of ``test_x[...]``, or None for a test with no parameters."""
    _, bracket, params = nodeid.partition("[")
    return params[:-1] if bracket and params.endswith("]") else None


def backend_of(nodeid: str, backends: Sequence[str]) -> str | None:
    """The selected backend a test id is parametrized with, or None.

    The backend is the first part of the parameter id; a name may itself hold dashes
    (``compile-cudagraphs``), so the longest name that matches wins.
    """
    params = parameter_id(nodeid)
    if params is None:
        return None
    for name in sorted(backends, key=len, reverse=True):
        if params == name or params.startswith(f"{name}-"):
            return name
    return None


def network_of(nodeid: str, backends: Sequence[str]) -> str | None:
    """The every-field network (``1stage``, ``3stage``) a selected backend's test id names, or None.

    Only the parameters after the backend's name count, so a backend named ``x-1stage`` is
    not a network.
    """
    backend = backend_of(nodeid, backends)
    if backend is None:
        return None
    parts = str(parameter_id(nodeid))[len(backend) :].split("-")
    return next((name for name in EVERY_FIELD if name in parts), None)


def scheduling_rank(network: str | None) -> tuple[int, int]:
    """Where a group goes in the queue: the other groups first, then the networks, more layers first."""
    if network is None:
        return (0, 0)
    return (1, -len(SPEC_VARIANTS[network].layer_names()))


def group_of(nodeid: str, backends: Sequence[str]) -> str | None:
    """The group of a conformance test: its backend, and its every-field network if it has one."""
    backend = backend_of(nodeid, backends)
    if backend is None:
        return None
    network = network_of(nodeid, backends)
    return f"netharness backend {backend}" + (f" on {network}" if network else "")


class BackendGroupScheduling(LoadGroupScheduling):  # type: ignore[misc]
    """``loadgroup``, with every conformance test grouped by its backend and every-field network."""

    workqueue: OrderedDict[str, dict[str, bool]]  # xdist's, untyped: the groups not yet handed out

    def __init__(self, config: Any, log: Any = None, *, backends: Sequence[str]) -> None:
        super().__init__(config, log)
        self.backends = tuple(backends)
        # By default loadscope orders groups by their number of tests, which puts a backend
        # with one precision (compile) behind those with three, however long it takes.
        config.option.loadscopereorder = False

    def _split_scope(self, nodeid: str) -> str:
        return group_of(nodeid, self.backends) or str(super()._split_scope(nodeid))

    def _assign_work_unit(self, node: Any) -> None:
        def rank(unit: tuple[str, dict[str, bool]]) -> tuple[int, int]:  # a group's tests share one network
            return scheduling_rank(network_of(next(iter(unit[1]), ""), self.backends))

        self.workqueue = OrderedDict(sorted(self.workqueue.items(), key=rank))  # stable: a no-op once sorted
        super()._assign_work_unit(node)
