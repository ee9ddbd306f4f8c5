"""Time every built-in backend against what a user would run instead, side by side, in one process.

    .venv/bin/python tools/bench_backends.py [--batches 1,64,256] [--device cpu] [--rounds 15]
        [--repeats 5] [--threads N] [--clock wall|cpu] [--backends eager,compile,numpy,onnx]

Each backend is timed through its benchmark fast path (``harness.bench.fastpath.prepare_runner``,
exactly what ``netharness run`` times) and each plain reference is written here, as a user
would write it:

- plain torch: an ``nn.Sequential`` of the same layers; forward under ``torch.no_grad``;
  train step ``zero_grad``, summed cross-entropy, ``backward``, ``torch.optim.SGD.step``;
- plain onnxruntime: ``torch.onnx.export`` of that ``nn.Sequential`` (weights as initializers,
  logits only), run by an ``InferenceSession`` with default options, ``session.run``.

eager, compile and numpy are compared with plain torch; onnx with plain onnxruntime;
compile's train step also with eager's. All use the same weights and inputs (float32).
Workloads are interleaved: each round times ``--repeats`` calls of every workload, in an
order that alternates between rounds, after warm-up calls. Printed per workload: the median
and the interquartile range (25%-75%) of every timed call, and its speedup over its reference
(the reference's time over its own: above 1, faster) as the ratio of medians and as the median
of per-round ratios (steadier on a busy machine).
``--clock cpu`` times process CPU time instead of wall time: on an oversubscribed machine it
leaves out time spent waiting for a core. Use it single-threaded, or threads that spin while
waiting are counted as work::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \
        .venv/bin/python tools/bench_backends.py --threads 1 --clock cpu

(``--threads`` sets onnxruntime's intra-op threads too: the onnx backend follows torch's,
and the plain session is given the same number). The 1-minute load
average is printed at the start and end. Nothing is asserted: the bars the issue sets are
printed as "meets" or "MISSES".
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from harness import NetSpec, load_backends  # noqa: E402
from harness.bench.fastpath import BENCH_LOSS, BENCH_LR, prepare_runner  # noqa: E402
from harness.bench.machine import load_average  # noqa: E402
from harness.net.testdata import random_images, random_params, random_target  # noqa: E402

REFERENCE = {"eager": "torch", "compile": "torch", "compile-cudagraphs": "torch", "numpy": "torch", "onnx": "ort"}
BARS = [
    # (what, workload, reference, batches, speedup at least); 0.91 is "at most 1.10x the reference's time"
    ("onnx forward over plain onnxruntime export", "onnx forward", "plain ort forward", (1, 64, 256), 0.91),
    ("compile train step over eager train step", "compile train_step", "eager train_step", (64, 256), 1.00),
    ("eager train step over plain torch step", "eager train_step", "plain torch train_step", (1, 64, 256), 0.91),
]


@dataclass
class Workload:
    name: str
    run: Callable[[], Any]
    reference: str = ""
    samples: list[float] = field(default_factory=list)
    round_medians: list[float] = field(default_factory=list)


def plain_module(spec: NetSpec, params: dict[str, np.ndarray], device: str) -> nn.Module:
    """The Net as a user writes it: one nn.Sequential, weights copied in by position."""
    c1, c2 = spec.conv_stages
    module = nn.Sequential(
        nn.Conv2d(spec.in_channels, c1.out_channels, c1.kernel), nn.ReLU(), nn.MaxPool2d(c1.pool),
        nn.Conv2d(c1.out_channels, c2.out_channels, c2.kernel), nn.ReLU(), nn.MaxPool2d(c2.pool),
        nn.Flatten(),
        *(layer for fan_in, fan_out in spec.linear_widths[:-1] for layer in (nn.Linear(fan_in, fan_out), nn.ReLU())),
        nn.Linear(*spec.linear_widths[-1]),
    )  # fmt: skip
    with torch.no_grad():
        for tensor, (name, value) in zip(module.parameters(), params.items(), strict=True):
            assert tuple(tensor.shape) == value.shape, f"{name}: {tuple(tensor.shape)} != {value.shape}"
            tensor.copy_(torch.from_numpy(value))
    return module.to(device)


def plain_onnx_session(module: nn.Module, spec: NetSpec, directory: str, threads: int) -> Any:
    """``torch.onnx.export`` with its defaults (weights as initializers), opened with default options.

    ``threads`` (when not 0) sets the session's intra-op threads, as ``--threads`` sets torch's
    and, through it, the onnx backend's.
    """
    import contextlib
    import io
    import logging
    import warnings

    import onnxruntime as ort

    path = os.path.join(directory, "plain.onnx")
    example = torch.zeros((2, spec.in_channels, spec.height, spec.width))
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.cpu().eval(), (example,), path, dynamo=True, input_names=["input"],
            dynamic_shapes=({0: torch.export.Dim.DYNAMIC},), external_data=False,
        )  # fmt: skip
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def workloads_for(batch: int, device: str, names: list[str], directory: str, threads: int) -> list[Workload]:
    spec = NetSpec()
    rng = np.random.default_rng([batch, 2024])
    params = random_params(spec, rng, "float32")
    x = random_images(spec, batch, rng, "float32")
    target = random_target(spec, BENCH_LOSS, batch, rng, "float32")
    sync = torch.cuda.synchronize if device == "cuda" else lambda: None
    plain = plain_module(spec, params, device)
    optimizer = torch.optim.SGD(plain.parameters(), lr=BENCH_LR)
    x_t, y_t = torch.from_numpy(x).to(device), torch.from_numpy(target).to(device)

    def plain_forward() -> None:
        with torch.no_grad():
            plain(x_t)
        sync()

    def plain_step() -> None:
        optimizer.zero_grad()
        nn.functional.cross_entropy(plain(x_t), y_t, reduction="sum").backward()
        optimizer.step()
        sync()

    found = [Workload("plain torch forward", plain_forward), Workload("plain torch train_step", plain_step)]
    if "onnx" in names and device == "cpu":
        session = plain_onnx_session(plain_module(spec, params, "cpu"), spec, directory, threads)
        found.append(Workload("plain ort forward", lambda: session.run(None, {"input": x})))
    registry = load_backends()
    for name in names:
        backend = registry.backends.get(name)
        availability = backend.availability() if backend is not None else None
        if backend is None or not availability or not availability.available or device not in backend.devices:
            why = "not registered" if backend is None else availability.reason if availability else ""
            print(f"  {name}: skipped ({why or f'does not run on {device}'})")
            continue
        runner = prepare_runner(backend, spec, params, x, target, device=device, dtype="float32")
        for phase, work in (("forward", runner.forward), ("train_step", runner.train_step)):
            if work is not None:
                reference = f"plain {REFERENCE.get(name, 'torch')} {phase}"
                found.append(Workload(f"{name} {phase}", _synced(work, runner.synchronize), reference))
    return found


def _synced(work: Callable[[], Any], synchronize: Callable[[], None]) -> Callable[[], None]:
    def one_round() -> None:
        work()
        synchronize()

    return one_round


def measure(workloads: list[Workload], rounds: int, repeats: int, warmup: int, clock: Callable[[], float]) -> None:
    for workload in workloads:
        for _ in range(warmup):
            workload.run()
    for r in range(rounds):
        for workload in workloads if r % 2 == 0 else workloads[::-1]:
            samples = []
            for _ in range(repeats):
                start = clock()
                workload.run()
                samples.append(clock() - start)
            workload.samples += samples
            workload.round_medians.append(float(np.median(samples)))


def ratio(mine: Workload, theirs: Workload) -> tuple[float, float]:
    """Speedup of ``mine`` over ``theirs`` (their time / mine: above 1, faster): of medians, and per-round median."""
    paired = np.median(np.array(theirs.round_medians) / np.array(mine.round_medians))
    return float(np.median(theirs.samples) / np.median(mine.samples)), float(paired)


def report(batch: int, workloads: list[Workload]) -> dict[str, Workload]:
    by_name = {w.name: w for w in workloads}
    print(f"  {'workload':26s} {'median ms':>10s} {'IQR ms':>17s}   speedup over its reference")
    for w in workloads:
        q1, median, q3 = np.percentile(np.array(w.samples) * 1e3, [25, 50, 75])
        line = f"  {w.name:26s} {median:10.3f} {q1:8.3f}-{q3:<8.3f}"
        if w.reference in by_name:
            of_medians, paired = ratio(w, by_name[w.reference])
            line += f"   {of_medians:5.2f}x {w.reference} (per round {paired:.2f}x)"
        print(line)
    return by_name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--batches", default="1,64,256", metavar="B,B", help="batch sizes (default 1,64,256)")
    add("--device", default="cpu", choices=("cpu", "cuda"), help="device (default cpu)")
    add("--backends", default="eager,compile,compile-cudagraphs,numpy,onnx", metavar="NAMES", help="built-ins to time")
    add("--rounds", type=int, default=15, metavar="R", help="interleaved rounds (default 15)")
    add("--repeats", type=int, default=5, metavar="K", help="timed calls per workload per round (default 5)")
    add("--warmup", type=int, default=5, metavar="W", help="untimed calls per workload first (default 5)")
    add("--threads", type=int, default=0, metavar="N", help="torch intra-op threads (default: torch's own)")
    add("--clock", choices=("wall", "cpu"), default="wall", help="wall time or process CPU time (default wall)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_backends: --device=cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    names = [n for n in args.backends.split(",") if n]
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cpus} CPUs, device {args.device}")
    print(f"{args.rounds} rounds x {args.repeats} calls per workload, {args.warmup} warm-up calls, clock {args.clock}")
    results: dict[int, dict[str, Workload]] = {}
    with tempfile.TemporaryDirectory() as directory:
        os.environ.setdefault("NETHARNESS_ARTIFACTS", directory)
        for batch in (int(b) for b in args.batches.split(",")):
            start_load = load_average()
            print(f"\nbatch {batch} (float32; load average at start {start_load})")
            workloads = workloads_for(batch, args.device, names, directory, args.threads)
            measure(workloads, args.rounds, args.repeats, args.warmup, clock)
            results[batch] = report(batch, workloads)
            print(f"  load average at end {load_average()}")
    print("\nbars (speedup, above 1 faster: ratio of medians; per-round median in brackets):")
    for what, mine, theirs, batches, at_least in BARS:
        for batch in batches:
            if batch in results and mine in results[batch] and theirs in results[batch]:
                of_medians, paired = ratio(results[batch][mine], results[batch][theirs])
                verdict = "meets" if of_medians >= at_least else "MISSES"
                print(f"  {what} at batch {batch}: {of_medians:.2f}x ({paired:.2f}x), {verdict} >= {at_least:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
