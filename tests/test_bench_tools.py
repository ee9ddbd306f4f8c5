"""The measurement tools run and say what they measured; the numbers themselves are never asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT


def cuda_available() -> bool:
    torch = pytest.importorskip("torch")
    return bool(torch.cuda.is_available())


def run_gpu_check(out: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ROOT / "tools" / "gpu_check.sh"), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def test_gpu_check_stops_at_once_without_cuda(tmp_path: Path) -> None:
    if cuda_available():
        pytest.skip("this machine has CUDA: tools/gpu_check.sh would run for real")
    result = run_gpu_check(tmp_path)
    assert result.returncode == 2
    assert "gpu_check: torch sees no CUDA device" in result.stderr
    assert "run this on a GPU machine" in result.stderr


def test_gpu_check_names_a_python_that_is_not_there(tmp_path: Path) -> None:
    result = run_gpu_check(tmp_path, {"PATH": "/usr/bin:/bin", "NETHARNESS_PYTHON": str(tmp_path / "no-python")})
    assert result.returncode == 2
    assert f"gpu_check: no Python at {tmp_path / 'no-python'}" in result.stderr


def test_bench_backends_prints_each_backend_beside_its_reference() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "bench_backends.py"), "--batches=1", "--rounds=1", "--repeats=1",
         "--warmup=0", "--backends=eager,numpy"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "batch 1 (float32; load average at start" in out and "load average at end" in out
    for workload, reference in [
        ("eager forward", "plain torch forward"),
        ("numpy train_step", "plain torch train_step"),
    ]:
        line = next(line for line in out.splitlines() if line.strip().startswith(workload))
        assert f"x {reference} (per round" in line
    assert "eager train step over plain torch step at batch 1:" in out
