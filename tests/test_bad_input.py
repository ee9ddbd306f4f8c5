"""Every entry point answers a bad argument with one line and a non-zero exit, never a traceback.

One table covers the ``netharness`` console script (exit 2, one line on stderr) and the pytest
options of the conformance suite (a usage error: exit 4, one ``ERROR:`` line on stderr).
Each case runs in a subprocess, exactly as a user would type it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, builtins_but

NETHARNESS = Path(sys.executable).with_name("netharness")
SHAPES = ROOT / "suites" / "test_forward_shapes.py"
VALID_RESULTS = ROOT / "tests" / "fixtures" / "reports" / "conformance_vm1.jsonl"
NETHARNESS_USAGE = 2
PYTEST_USAGE = int(pytest.ExitCode.USAGE_ERROR)


def netharness_commands() -> set[str]:
    """The subcommands ``netharness --help`` lists (others add commands while this file stays)."""
    help_text = subprocess.run([str(NETHARNESS), "--help"], capture_output=True, text=True, check=False).stdout
    listing = help_text.split("COMMAND\n", 1)[-1].split("\noptions:", 1)[0]
    return {line.split()[0] for line in listing.splitlines() if line.startswith("    ") and line[4] != " "}


HAS_MUTANTS = "mutants" in netharness_commands()


def write_inputs(directory: Path) -> None:
    (directory / "malformed.json").write_text('{"benchmarks": [1, 2,\n')
    (directory / "empty.jsonl").write_text("")
    (directory / "foreign.json").write_text('{"name": "not a results file", "values": [1, 2, 3]}\n')


def cli(*args: str, fragment: str, **kwargs: object) -> object:
    return pytest.param("netharness", args, fragment, NETHARNESS_USAGE, **kwargs)


def pytest_option(*args: str, fragment: str, **kwargs: object) -> object:
    return pytest.param("pytest", args, fragment, PYTEST_USAGE, **kwargs)


# {tmp} is the test's own directory; {results} a valid conformance file.
CASES = [
    cli("bogus", fragment="invalid choice: 'bogus'", id="cli-unknown-subcommand"),
    cli(
        "run",
        "--backend=nope",
        "--quick",
        "--out={tmp}/out",
        fragment="unknown backend 'nope'",
        id="cli-run-unknown-backend",
    ),
    cli("run", "--device=tpu", fragment="argument --device: invalid choice: 'tpu'", id="cli-run-device"),
    cli("run", "--seed=-1", fragment="argument --seed: an integer from 0 to 2**63 - 1, got '-1'", id="cli-run-seed"),
    cli("run", "--out", "/proc/x", fragment="cannot write to output directory /proc/x", id="cli-run-out-unwritable"),
    cli(
        "run",
        "--crash-budget=0",
        fragment="argument --crash-budget: expected a positive integer, got '0'",
        id="cli-run-crash-budget",
    ),
    cli("report", "{tmp}/missing.jsonl", fragment="missing.jsonl does not exist", id="cli-report-missing"),
    cli("report", "{tmp}/malformed.json", fragment="malformed.json is not valid JSON", id="cli-report-malformed"),
    cli("report", "{tmp}/empty.jsonl", fragment="empty.jsonl is empty", id="cli-report-empty"),
    cli(
        "report",
        "{tmp}/foreign.json",
        fragment="foreign.json is not a pytest-benchmark JSON or a netharness conformance file",
        id="cli-report-foreign",
    ),
    cli("report", "{results}", "--out", "/proc/x", fragment="output directory /proc/x", id="cli-report-out-unwritable"),
    cli("compare", "{tmp}/base", "{tmp}/current", fragment="base does not exist", id="cli-compare-missing"),
    cli(
        "compare",
        "--threshold=-1",
        "{results}",
        "{results}",
        fragment="argument --threshold: expected a non-negative fraction",
        id="cli-compare-threshold",
    ),
    cli(
        "compare",
        "--alpha=2",
        "{results}",
        "{results}",
        fragment="argument --alpha: expected a probability between 0 and 1, got '2'",
        id="cli-compare-alpha",
    ),
    cli(
        "mutants",
        "--seed=x",
        fragment="argument --seed: an integer from 0 to 2**63 - 1, got 'x'",
        id="cli-mutants-seed",
        marks=pytest.mark.skipif(not HAS_MUTANTS, reason="netharness has no mutants subcommand yet"),
    ),
    pytest_option(
        "--backend=nope", fragment="unknown backend 'nope' for --backend; valid names: all, eager", id="pytest-backend"
    ),
    pytest_option("--backend=", fragment="--backend is empty", id="pytest-backend-empty"),
    pytest_option("--backend=eager,nope", fragment="unknown backend 'nope' for --backend", id="pytest-backend-list"),
    pytest_option(
        "--device=tpu", fragment="unknown device 'tpu' for --device; valid devices: cpu, cuda", id="pytest-device"
    ),
    pytest_option(
        "--seed=-3", fragment="--seed must be an integer from 0 to 2**63 - 1, got '-3'", id="pytest-seed-negative"
    ),
    pytest_option(
        "--seed=abc", fragment="--seed must be an integer from 0 to 2**63 - 1, got 'abc'", id="pytest-seed-text"
    ),
    pytest_option("--timeout=abc", fragment="argument --timeout: invalid float value: 'abc'", id="pytest-timeout"),
    pytest_option(
        "--crash-budget=0", fragment="--crash-budget must be a positive integer, got '0'", id="pytest-crash-budget"
    ),
    pytest_option(
        "--crash-budget=five",
        fragment="--crash-budget must be a positive integer, got 'five'",
        id="pytest-crash-budget-text",
    ),
    pytest_option(
        "--backend=eager",
        "--conformance-results=/proc/x/r.jsonl",
        fragment="/proc/x",
        id="pytest-results-unwritable",
    ),
    # No --batch option exists: pytest's own "unrecognized arguments" usage error is the answer.
    pytest_option("--batch=0,-3", fragment="unrecognized arguments: --batch=0,-3", id="pytest-batch"),
]


@pytest.mark.parametrize(("entry", "args", "fragment", "exit_code"), CASES)
def test_bad_argument_is_one_line_and_a_non_zero_exit(
    entry: str, args: tuple[str, ...], fragment: str, exit_code: int, tmp_path: Path
) -> None:
    write_inputs(tmp_path)
    argv = [arg.format(tmp=tmp_path, results=VALID_RESULTS) for arg in args]
    env = {**os.environ, "NETHARNESS_DISABLE_PLUGINS": builtins_but("eager")}
    if entry == "netharness":
        command, cwd = [str(NETHARNESS), *argv], ROOT  # `run` needs the checkout's suites/
    else:
        command = [sys.executable, "-m", "pytest", str(SHAPES), "-p", "no:cacheprovider", f"--rootdir={ROOT}"]
        command += ["-c", str(ROOT / "pyproject.toml"), "-k", "test_output_shape and batch1 and not variants"]
        if not any(arg.startswith("--conformance-results") for arg in argv):
            command.append(f"--conformance-results={tmp_path}/r.jsonl")
        command, cwd = [*command, *argv], tmp_path
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)
    output = f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert "Traceback" not in done.stdout + done.stderr, output
    assert done.returncode == exit_code, output
    if entry == "netharness":
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, output
        assert lines[0].startswith("netharness: error: "), output
        assert fragment in lines[0], output
        return
    lines = [line for line in done.stderr.splitlines() if line.startswith("ERROR:")]
    assert len(lines) == 1, output
    if lines[0].startswith("ERROR: usage:"):  # pytest's own argparse error, with its usage line first
        assert fragment in done.stderr, output
    else:  # the harness's own check: that one line is all
        assert [line for line in done.stderr.splitlines() if line.strip()] == lines, output
        assert fragment in lines[0], output


ENVIRONMENT_ERRORS = [
    # (variable, value, what the one line says)
    ("NETHARNESS_PEAK_GFLOPS", "abc", "NETHARNESS_PEAK_GFLOPS='abc' is not a positive number of GFLOP/s"),
    ("NETHARNESS_BENCH_SECONDS", "abc", "NETHARNESS_BENCH_SECONDS='abc' is not a positive number of seconds"),
    ("NETHARNESS_BENCH_SECONDS", "-1", "NETHARNESS_BENCH_SECONDS='-1' is not a positive number of seconds"),
    ("NETHARNESS_BENCH_PRECISIONS", "bogus", "NETHARNESS_BENCH_PRECISIONS='bogus' names 'bogus'; valid: float32"),
    ("NETHARNESS_DISABLE_PLUGINS", "numpy", "is disabled by NETHARNESS_DISABLE_PLUGINS"),
]


@pytest.mark.parametrize(("variable", "value", "message"), ENVIRONMENT_ERRORS)
def test_a_bad_environment_variable_is_one_line_naming_it(
    tmp_path: Path, variable: str, value: str, message: str
) -> None:
    env = {**os.environ, "NETHARNESS_DISABLE_PLUGINS": builtins_but("numpy"), variable: value}
    done = subprocess.run(
        [sys.executable, "-m", "harness.commands.cli", "run", "--quick", "--backend=numpy", "--out", "r"],
        cwd=tmp_path, capture_output=True, text=True, env=env, check=False, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--seed", str(2**63)],
        ["run", "--seed", "-1"],
        ["mutants", "--seed", "1e3"],
        ["fidelity", "--seconds", "inf"],
        ["fidelity", "--seconds", "nan"],
        ["fidelity", "--seconds", "-1"],
    ],
)
def test_an_out_of_range_number_is_a_usage_error(argv: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "harness.commands.cli", *argv], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_seed_too_large_for_the_generators_is_refused_by_the_pytest_option(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--backend=numpy", f"--seed={2**63}", "-p", "no:cacheprovider")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--seed must be an integer from 0 to 2**63 - 1*"])
