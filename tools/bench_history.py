"""The history at scale: 1,000 runs of 100 benchmarks and 500 checks (synthetic), timed.

Fills a fresh SQLite history (or ``--history URL``) with ``--runs`` runs, then times what a
user waits for: appending one more run, ``history regressions`` (every series read and
searched for steps) and the trend page (written, and its size). Targets: < 1 s, < 10 s,
< 30 s and < 5 MB. Seeded (printed); the figures go in docs/history.md.

    .venv/bin/python tools/bench_history.py [--runs 1000] [--history URL]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from harness.history.append import Machine, RunInput, append_run
from harness.history.series import analyse, load_series
from harness.history.store import open_history
from reports.trend import write_trend_page

BENCHMARKS, CHECKS, ROUNDS, SEED = 100, 500, 10, 2029


def synthetic_run(i: int, rng: np.random.Generator) -> RunInput:
    benches = []
    for b in range(BENCHMARKS):
        base = 1e-4 * (1 + b % 17) * (1.25 if b == 7 and i >= 900 else 1.0)
        median = base * float(np.exp(rng.normal(0, 0.02)))
        data = (median * (1 + 0.01 * rng.standard_normal(ROUNDS))).tolist()
        benches.append(
            {
                "name": f"bench{b}",
                "extra_info": {"backend": f"backend{b % 5}", "phase": "forward", "batch": 1 + b // 5,
                               "dtype": "float32", "device": "cpu", "threads": 2},
                "stats": {"median": median, "q1": median * 0.99, "q3": median * 1.01, "rounds": ROUNDS, "data": data},
            }
        )  # fmt: skip
    checks = [
        {"backend": f"backend{c % 5}", "check": f"check{c // 5}", "config": "float32-batch64", "dtype": "float32",
         "device": "cpu", "outcome": "passed", "test_id": f"t{c}", "headroom": 50.0 * (1 + c % 7),
         "max_abs_error": 1e-7, "max_rel_error": 1e-6}
        for c in range(CHECKS)
    ]  # fmt: skip
    return RunInput(
        key=f"synthetic-{i}-{rng.integers(1 << 62)}",
        machine=Machine("bench-node", "x86_64", 2),
        time=1.7e9 + 3600 * i,
        commit=f"{i:07x}",
        dirty=False,
        branch="main",
        seed=0,
        device="cpu",
        versions={"torch": "2.13.0"},
        partial=False,
        source=f"synthetic run {i}",
        benchmarks=benches,
        checks=checks,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--history", default=None, metavar="URL")
    args = parser.parse_args()
    rng = np.random.default_rng(SEED)
    print(f"seed {SEED}: {args.runs} runs x {BENCHMARKS} benchmarks x {CHECKS} checks")
    with tempfile.TemporaryDirectory() as tmp:
        url = args.history or f"sqlite:///{tmp}/history.sqlite"
        engine = open_history(url)
        start = time.perf_counter()
        for i in range(args.runs - 1):
            append_run(engine, synthetic_run(i, rng), url)
        print(f"filled {args.runs - 1} runs in {time.perf_counter() - start:.1f} s")
        last = synthetic_run(args.runs - 1, rng)
        start = time.perf_counter()
        append_run(engine, last, url)
        print(f"append one run: {time.perf_counter() - start:.3f} s (target < 1 s)")
        start = time.perf_counter()
        analysed = analyse(load_series(engine, url))
        steps = sum(len(a.steps) for a in analysed)
        print(
            f"regressions: {time.perf_counter() - start:.2f} s, {len(analysed)} series, {steps} steps (target < 10 s)"
        )
        # The synthetic headrooms are constant per check, as a seeded run's are between code
        # changes, and a constant series is skipped at once: the worst case is every series noisy.
        series = load_series(engine, url)
        for one in series:
            one.values = (np.asarray(one.values) * np.exp(rng.normal(0, 0.02, len(one.values)))).tolist()
        start = time.perf_counter()
        analyse(series)
        print(f"detector alone, every one of the {len(series)} series noisy: {time.perf_counter() - start:.2f} s")
        start = time.perf_counter()
        analysed = analyse(load_series(engine, url))
        page = write_trend_page(analysed, Path(tmp) / "page", source="bench")
        size = json.dumps(page.stat().st_size)
        print(f"trend page: {time.perf_counter() - start:.2f} s, {int(size) / 1e6:.2f} MB (target < 30 s, < 5 MB)")
        engine.dispose()


if __name__ == "__main__":
    main()
