"""The netharness command line: listings, and one-line errors with a non-zero exit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.commands.cli import main


def test_backends_lists_capabilities_devices_and_dtypes(capsys: pytest.CaptureFixture[str]) -> None:
    main(["backends"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["backend", "status", "version", "capabilities", "devices", "dtypes"]
    eager = next(line for line in out if line.startswith("eager "))
    assert "available" in eager and "torch" in eager
    assert "forward,intermediates,backward,init,activations,losses,train_step" in eager
    assert "float32,float64" in eager


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["bogus"], "invalid choice: 'bogus'"),
        ([], "required: COMMAND"),
        (["run", "--seed", "-1"], "an integer from 0 to 2**63 - 1"),
        (["run", "--device", "tpu"], "invalid choice: 'tpu'"),
        (["run", "--clock", "sundial"], "invalid choice: 'sundial' (choose from 'wall', 'cpu')"),
        (["run", "--out", "/proc/forbidden"], "cannot write to output directory /proc/forbidden"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_non_zero(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert fragment in err
    assert len(err.strip().splitlines()) == 1, err


def test_console_script_is_installed_and_reports_errors_without_traceback(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("netharness")
    result = subprocess.run([str(script), "run", "--seed=x"], capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("netharness: error:")
