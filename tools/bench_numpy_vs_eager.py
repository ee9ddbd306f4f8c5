"""Time the numpy backend against PyTorch eager, in one process, and print numpy's two speedups.

    .venv/bin/python tools/bench_numpy_vs_eager.py [--batch 64] [--rounds 30] [--repeats 10]

Eager is the ``backends.eager`` Net module called directly on a tensor already in memory
(forward: ``net(x)`` under ``torch.no_grad``; train step: zero_grad, forward, summed loss,
backward, ``torch.optim.SGD.step``). numpy is ``NumpyBackend().prepare(...)``'s
``forward`` and ``train_step``. Both run float32 on the default seed spec (3x40x40, 10
classes) with default thread settings. Rounds interleave the four workloads, alternating
their order, after a warm-up; the figures are medians over all timed calls, and the speedup
is eager's median over numpy's (above 1: numpy is faster), as everywhere in netharness.
The spread (25th-75th percentile) shows how noisy the machine was; on a busy machine the
median of per-round speedups (each round's two medians are taken minutes apart at most) and
the ratio of minimums are steadier.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from backends.eager import build_net, torch_loss  # noqa: E402
from backends.numpy_backend import NumpyBackend  # noqa: E402
from harness.net.spec import SEED_SPEC  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--batch", type=int, default=64, metavar="N", help="batch size (default 64)")
    add("--rounds", type=int, default=30, metavar="R", help="interleaved rounds (default 30)")
    add("--repeats", type=int, default=10, metavar="K", help="timed calls per workload per round (default 10)")
    add("--warmup", type=int, default=20, metavar="W", help="untimed calls per workload first (default 20)")
    add("--loss", choices=("cross_entropy", "sse"), default="cross_entropy", help="loss (default cross_entropy)")
    add("--lr", type=float, default=1e-3, metavar="LR", help="SGD learning rate (default 1e-3)")
    args = parser.parse_args(argv)

    spec, dtype = SEED_SPEC, "float32"
    backend = NumpyBackend()
    params = backend.init_params(spec, seed=0, dtype=dtype)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((args.batch, spec.in_channels, spec.height, spec.width)).astype(np.float32)
    if args.loss == "sse":
        target = rng.standard_normal((args.batch, spec.num_classes)).astype(np.float32)
        target_t = torch.tensor(target)
    else:
        target = rng.integers(0, spec.num_classes, args.batch)
        target_t = torch.tensor(target, dtype=torch.int64)

    net = build_net(spec, params, "cpu", dtype)
    x_t = torch.tensor(x)
    optimizer = torch.optim.SGD(net.parameters(), lr=args.lr)
    prepared = backend.prepare(spec, params, device="cpu", dtype=dtype)

    def eager_forward() -> None:
        with torch.no_grad():
            net(x_t)

    def eager_train_step() -> None:
        optimizer.zero_grad()
        torch_loss(args.loss, net(x_t), target_t).backward()
        optimizer.step()

    def numpy_forward() -> None:
        prepared.forward(x)

    def numpy_train_step() -> None:
        prepared.train_step(x, target, loss=args.loss, lr=args.lr)

    workloads: dict[str, Callable[[], None]] = {
        "eager forward": eager_forward,
        "numpy forward": numpy_forward,
        "eager train step": eager_train_step,
        "numpy train step": numpy_train_step,
    }
    for fn in workloads.values():
        for _ in range(args.warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in workloads}
    round_medians: dict[str, list[float]] = {name: [] for name in workloads}
    names = list(workloads)
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            fn = workloads[name]
            samples = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                fn()
                samples.append(time.perf_counter() - start)
            times[name] += samples
            round_medians[name].append(float(np.median(samples)))

    print(f"batch {args.batch}, float32, {spec.describe()}, loss {args.loss}")
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__} ({threads} threads), numpy {np.__version__}, {os.cpu_count()} CPUs")
    print(f"{args.rounds} rounds x {args.repeats} calls per workload, after {args.warmup} warm-up calls")
    for name, samples in times.items():
        q25, med, q75 = np.percentile(np.array(samples) * 1e3, [25, 50, 75])
        print(f"  {name:18s} median {med:7.3f} ms   (25%-75%: {q25:.3f}-{q75:.3f} ms, min {min(samples) * 1e3:.3f})")
    for what in ("forward", "train step"):
        mine, theirs = times[f"numpy {what}"], times[f"eager {what}"]
        speedup = np.median(theirs) / np.median(mine)
        paired = np.median(np.array(round_medians[f"eager {what}"]) / np.array(round_medians[f"numpy {what}"]))
        print(
            f"numpy's speedup over eager, {what}: {speedup:.2f}x (eager's time / numpy's; above 1: faster)"
            f"   (median of per-round speedups {paired:.2f}x, ratio of minimums {min(theirs) / min(mine):.2f}x)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
