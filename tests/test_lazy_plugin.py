"""Installing netharness costs other pytest runs nothing: no backend import, no file written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ONE_TEST = """
import sys

def test_one():
    heavy = sorted(m for m in ("torch", "onnxruntime", "onnx", "pandas", "matplotlib") if m in sys.modules)
    assert not heavy, f"imported by plugins alone: {heavy}"
"""


def test_a_pytest_run_that_does_not_use_the_suite_imports_no_backend_and_writes_no_file(tmp_path: Path) -> None:
    (tmp_path / "test_one.py").write_text(ONE_TEST)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "test_one.py"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test_one.py"]
