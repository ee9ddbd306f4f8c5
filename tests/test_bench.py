"""The benchmark suite: what a record holds, and what happens under pytest-xdist."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.contract.manager import BUILTIN_PLUGINS
from tests.helpers import ROOT, builtins_but

BENCH = ROOT / "suites" / "bench_net.py"
EXTRA_KEYS = {
    "backend", "phase", "batch", "dtype", "device", "threads", "samples_per_s", "gflops_per_s", "peak_fraction",
    "peak_memory_bytes", "peak_memory_method", "max_abs_error", "max_rel_error", "first_call_s", "setup_s",
    "setup_kind", "peak_gflops_per_s", "peak_method", "rel_iqr", "rounds", "load_start", "load_end",
}  # fmt: skip
INPUT_BYTES_BATCH1 = 3 * 40 * 40 * 4


def run_bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "NETHARNESS_DISABLE_PLUGINS": ",".join(name for name in BUILTIN_PLUGINS if name != "eager"),
        "NETHARNESS_BENCH_SECONDS": "0.05",
        "NETHARNESS_BENCH_PRECISIONS": "float32",  # the other precisions time the same code path
    }
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(BENCH), "-p", "no:cacheprovider", "--backend=eager", *args],
        cwd=tmp_path,
        env={**__import__("os").environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_timed_record_holds_speed_and_correctness_together(tmp_path: Path) -> None:
    out = tmp_path / "b.json"
    result = run_bench(
        tmp_path, "--benchmark-enable", f"--benchmark-json={out}", "--benchmark-save-data", "-k", "batch1"
    )
    assert result.returncode == 0, result.stdout[-3000:]
    document = json.loads(out.read_text())
    assert document["machine_info"]["netharness_peak_gflops"] > 0
    assert document["machine_info"]["netharness_threads"] >= 1
    records = {b["name"]: b for b in document["benchmarks"]}
    assert set(records) == {
        "test_benchmark[eager-forward-float32-batch1]",
        "test_benchmark[eager-train_step-float32-batch1]",
    }
    for record in records.values():
        assert EXTRA_KEYS <= set(record["extra_info"]), EXTRA_KEYS - set(record["extra_info"])
        info, stats = record["extra_info"], record["stats"]
        assert info["samples_per_s"] == pytest.approx(1 / stats["median"])
        assert info["max_abs_error"] < 1e-3, "the backend's error at this configuration, against the oracle"
        assert len(stats["data"]) == stats["rounds"] == info["rounds"] >= 5
        assert record["group"].startswith(info["phase"])
        assert info["rel_iqr"] == pytest.approx(stats["iqr"] / stats["median"])
        assert info["peak_memory_bytes"] >= INPUT_BYTES_BATCH1, "one round holds at least its input"
        assert info["peak_memory_method"].startswith("resident-set high-water mark")
        assert info["peak_gflops_per_s"] == document["machine_info"]["netharness_peak_gflops"]
        assert "best of" in info["peak_method"]
        assert info["peak_fraction"] == pytest.approx(info["gflops_per_s"] / info["peak_gflops_per_s"])
    forward, train = (
        records[f"test_benchmark[eager-{p}-float32-batch1]"]["extra_info"] for p in ("forward", "train_step")
    )
    assert forward["first_call_s"] != train["first_call_s"], "one-off costs are measured per phase, never copied"


def test_under_xdist_benchmarks_run_once_untimed_and_write_no_timings(tmp_path: Path) -> None:
    """Timings are never taken concurrently: pytest-benchmark disables timing under -n."""
    out = tmp_path / "b.json"
    result = run_bench(tmp_path, "-n", "2", "--benchmark-enable", f"--benchmark-json={out}", "-k", "batch1")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Benchmarks are automatically disabled because xdist plugin is active" in result.stdout + result.stderr
    assert "2 passed" in result.stdout
    assert not out.exists()


def test_fidelity_prints_both_medians(tmp_path: Path) -> None:
    """The command runs and reports; whether the medians agree is a measurement, not asserted here."""
    script = Path(sys.executable).with_name("netharness")
    result = subprocess.run(
        [str(script), "fidelity", "--trials=1", "--seconds=0.05", "--batch=1"],
        cwd=ROOT,
        env={**__import__("os").environ, "NETHARNESS_DISABLE_PLUGINS": builtins_but("eager")},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr[-2000:]
    assert "configuration: eager forward float32 batch1 cpu" in result.stdout
    assert "harness median:" in result.stdout and "torch blocked_autorange median:" in result.stdout
    assert "ratio harness/torch:" in result.stdout
    # Each trial's pair, with how many rounds the harness timed (pytest-benchmark's own count).
    assert re.search(r"^trial 1: harness [0-9.]+ ms \([1-9][0-9]* rounds\), torch [0-9.]+ ms$", result.stdout, re.M)
