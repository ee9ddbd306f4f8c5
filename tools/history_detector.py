"""The change-point detector's false-alarm rate and power, on synthetic series with this machine's noise.

First measures the noise: ``RUNS`` runs of a LeNet-sized matmul (batch 64 x 400 -> 120, the
network's first dense layer), each the median of ``ROUNDS`` rounds, as a benchmark's run is;
the relative spread of the run medians (1.4826 x MAD of their logs) is the noise. Then draws
series of ``LENGTH`` runs with that noise, lognormal and, to mimic a busy machine's outliers,
Student-t with 3 degrees of freedom scaled to the same spread, with no step (false alarms:
any step reported) or a step of a given size at run ``STEP_AT`` (power: that step found within
one run of where it was planted, the right way) or at the newest run (the CI case).

    .venv/bin/python tools/history_detector.py [--trials N]

Seeded (printed); the table goes in docs/history.md.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from harness.history.changepoints import find_steps
from harness.history.settings import ALPHA, DEFAULT_MIN_CHANGE

RUNS, ROUNDS, LENGTH, STEP_AT, SEED = 40, 15, 30, 20, 2029


def machine_noise() -> float:
    rng = np.random.default_rng(SEED)
    x = rng.standard_normal((64, 400)).astype(np.float32)
    w = rng.standard_normal((400, 120)).astype(np.float32)
    medians = []
    for _ in range(RUNS):
        rounds = []
        for _ in range(ROUNDS):
            start = time.perf_counter()
            for _ in range(20):
                x @ w
            rounds.append(time.perf_counter() - start)
        medians.append(float(np.median(rounds)))
    logs = np.log(medians)
    return float(1.4826 * np.median(np.abs(logs - np.median(logs))))


def draw(rng: np.random.Generator, sigma: float, kind: str, size: int) -> np.ndarray:
    if kind == "lognormal":
        return rng.normal(0, sigma, size)
    return rng.standard_t(3, size) * sigma / math.sqrt(3)  # t(3) has variance 3


def rates(sigma: float, kind: str, trials: int, rng: np.random.Generator) -> dict[str, float]:
    commits = [f"c{i}" for i in range(LENGTH)]
    result: dict[str, float] = {}
    alarms = sum(bool(find_steps(np.exp(draw(rng, sigma, kind, LENGTH)), commits)) for _ in range(trials))
    result["false alarms"] = alarms / trials
    for size in (0.05, 0.10, 0.20):
        for where, at in (("middle", STEP_AT), ("newest", LENGTH - 1)):
            found = 0
            for _ in range(trials):
                y = draw(rng, sigma, kind, LENGTH)
                y[at:] += math.log1p(size)
                steps = find_steps(np.exp(y), commits)
                found += any(s.regression and abs(s.index - at) <= 1 for s in steps)
            result[f"+{size:.0%} {where}"] = found / trials
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=300)
    args = parser.parse_args()
    sigma = machine_noise()
    print(
        f"seed {SEED}; machine noise (run-to-run, relative): {sigma:.2%};"
        f" alpha {ALPHA}, min change {DEFAULT_MIN_CHANGE}"
    )
    rng = np.random.default_rng(SEED)
    rows = []
    for noise in sorted({round(sigma, 4), 0.02, 0.05}):
        for kind in ("lognormal", "t3"):
            rows.append((noise, kind, rates(noise, kind, args.trials, rng)))
    header = ["noise", "shape", *rows[0][2]]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for noise, kind, result in rows:
        print(f"| {noise:.1%} | {kind} | " + " | ".join(f"{v:.1%}" for v in result.values()) + " |")


if __name__ == "__main__":
    main()
