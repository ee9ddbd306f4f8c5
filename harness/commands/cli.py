"""The ``netharness`` command line.

Expected errors (bad arguments, missing files, broken plugins) print one line and exit
non-zero; a bug still shows its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from harness.budget import DEFAULT_CRASH_BUDGET
from harness.commands.argtypes import positive_int, positive_seconds
from harness.commands.history import add_history_command, add_history_option
from harness.contract.backend import describe_capabilities
from harness.contract.manager import load_backends
from harness.errors import HarnessError, UsageError
from reports.commands import add_commands

EXIT_USAGE = 2


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage, so every bad argument is one line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see {self.prog} --help)")


def cmd_backends(args: argparse.Namespace) -> int:
    """List every backend with its availability, version, capabilities, devices and dtypes."""
    registry = load_backends()
    rows = []
    broken = []
    for name, backend in registry.backends.items():
        try:
            availability = backend.availability()
            status = "available" if availability.available else f"unavailable: {availability.reason}"
        except Exception as exc:  # the backend's bug: say so in its row and fail, never a traceback
            status = f"broken: availability() raised {type(exc).__name__}: {exc}".splitlines()[0]
            broken.append(f"backend {name!r}: availability() raised {type(exc).__name__}")
        rows.append(
            (
                name,
                status,
                backend.version,
                describe_capabilities(backend),
                ",".join(backend.devices),
                ",".join(backend.dtypes),
            )
        )
    header = ("backend", "status", "version", "capabilities", "devices", "dtypes")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())
    for failure in [*map(str, registry.failures), *broken]:
        print(f"error: {failure}", file=sys.stderr)
    return 1 if registry.failures or broken else 0


VALUE_FAMILIES = ("forward", "fast path", "gradients", "losses", "training")
"""Check families that compare values with the oracle under a tolerance."""


def cmd_checks(args: argparse.Namespace) -> int:
    """List every conformance check: family, capability, configurations, default tolerances."""
    from harness.conformance.catalogue import CHECKS, FULL_PRECISIONS, suite_configurations
    from harness.conformance.tolerances import DERIVATIVE_UNITS, ULP_TOLERANCES, default_tolerance
    from harness.net.precision import PRECISIONS

    configurations = suite_configurations(_suites_dir())
    for family in dict.fromkeys(info.family for info in CHECKS.values()):
        print(f"{family}:")
        for info in (i for i in CHECKS.values() if i.family == family):
            needs = info.capability.value if info.capability else "-"
            print(f"  {info.name}  (needs {needs}) {info.summary}")
            for axis in configurations.get(info.name, []):
                print(f"      {axis}")
            if info.family in VALUE_FAMILIES or info.name in ("activation_values", "activation_derivatives"):
                precisions = list(PRECISIONS) if info.at_every_precision else list(FULL_PRECISIONS)
                if info.name == "activation_values":
                    limits = ", ".join(f"{d}: {ULP_TOLERANCES[d]:g} ulp" for d in precisions)
                elif info.name == "activation_derivatives":  # its failures speak in these units, not an rtol
                    limits = ", ".join(
                        f"{d}: {DERIVATIVE_UNITS:g} units of eps (|f'| + |y df'/dy|)" for d in precisions
                    )
                else:
                    limits = "; ".join(f"{d}: {default_tolerance(info.name, d)}" for d in precisions)
                print(f"      default tolerance: {limits}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """The main job: conformance, then benchmarks, on every backend; then the report.

    Exit status: 0 only if every check passed, no process crashed, no backend used up its
    crash budget, and (with --strict-backends) every backend ran; 130 when interrupted
    (SIGINT or SIGTERM); 2 for a usage error.
    """
    from harness.bench.settings import check_environment
    from harness.commands.run import run_main_job

    check_environment()

    return run_main_job(args, _writable_dir(args.out), _suites_dir())


def cmd_mutants(args: argparse.Namespace) -> int:
    """The suite's self-test: every planted-bug mutant of eager must fail a check.

    Exit status: 0 if every mutant was caught and eager passed, 1 if a mutant survived,
    2 if eager itself failed a check.
    """
    from harness.commands.mutants import run_mutants

    return run_mutants(seed=args.seed, quick=args.quick, results=Path(args.results) if args.results else None)


def _suites_dir() -> Path:
    from harness.conformance.locations import suites_dir

    return suites_dir()


def _writable_dir(path: str) -> Path:
    # Absolute before any plugin is imported: a plugin that changes the working directory
    # at import must not move the report.
    directory = Path(path).absolute()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / ".netharness-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"cannot write to output directory {directory}: {exc.strerror or exc}") from None
    return directory


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="netharness", description="Conformance and benchmarks for the seed's Net.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    sub.required = True

    backends = sub.add_parser("backends", help="list backends, their availability and capabilities")
    backends.set_defaults(func=cmd_backends)

    checks = sub.add_parser("checks", help="list every conformance check, its configurations and tolerances")
    checks.set_defaults(func=cmd_checks)

    run = sub.add_parser(
        "run",
        help="run conformance (and benchmarks) on every backend and write the report",
        description="Run the conformance suite, then the benchmarks, on every selected backend, each in its own"
        " supervised pytest processes, then write the report. A test that crashes its process (a segfault,"
        " os._exit) is recorded as crashed and the run resumes after it; a test that exceeds the per-test"
        " timeout (300 s) fails. After --crash-budget such crashes or timeouts of one backend, in its conformance"
        " and benchmark steps together, its remaining tests are recorded as not run, with the reason, and the"
        " run goes on with the other backends. Exits non-zero if any check failed, crashed or was not run.",
    )
    run.add_argument(
        "--out", default="netharness-report", metavar="DIR", help="output directory (default: netharness-report)"
    )
    run.add_argument("--backend", default="all", metavar="NAME[,NAME...]", help="backends to run (default: all)")
    run.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="device (default: cpu)")
    run.add_argument("--seed", default=0, type=_seed, metavar="INT", help="seed, 0 to 2**63 - 1 (default: 0)")
    run.add_argument("--quick", action="store_true", help="a short smoke run")
    run.add_argument(
        "--clock",
        default="wall",
        choices=("wall", "cpu"),
        help="what the benchmarks time: wall (elapsed) or cpu (the benchmark process's CPU time, every thread"
        " summed; steadier on a busy machine); recorded in each benchmark (default: wall)",
    )
    run.add_argument("--strict-backends", action="store_true", help="fail on unavailable backends")
    run.add_argument(
        "--force",
        action="store_true",
        help="write into a non-empty folder that holds no netharness run; its files are never replaced"
        " (default: refuse)",
    )
    run.add_argument(
        "--crash-budget",
        default=DEFAULT_CRASH_BUDGET,
        type=positive_int,
        metavar="K",
        help="after K crashes or timeouts of one backend in the run, record its remaining tests as not run"
        f" (default: {DEFAULT_CRASH_BUDGET})",
    )
    add_history_option(run)
    run.set_defaults(func=cmd_run)

    mutants = sub.add_parser("mutants", help="run the suite on planted-bug variants of eager; all must be caught")
    mutants.add_argument("--seed", default=0, type=_seed, metavar="INT", help="seed, 0 to 2**63 - 1 (default: 0)")
    mutants.add_argument(
        "--quick",
        action="store_true",
        help="run only the check each mutant declares (default: the suite in float32 and float64)",
    )
    mutants.add_argument(
        "--results", default=None, metavar="PATH", help="keep the per-check results here (default: a temporary file)"
    )
    mutants.set_defaults(func=cmd_mutants)
    fidelity = sub.add_parser(
        "fidelity", help="time one configuration with the harness and with torch's Timer; they should agree"
    )
    fidelity.add_argument("--backend", default="eager", metavar="NAME", help="backend (default: eager)")
    fidelity.add_argument("--phase", default="forward", choices=("forward", "train_step"), help="(default: forward)")
    fidelity.add_argument("--batch", default=64, type=positive_int, metavar="N", help="batch size (default: 64)")
    fidelity.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="device (default: cpu)")
    fidelity.add_argument("--trials", default=3, type=positive_int, metavar="N", help="alternations (default: 3)")
    fidelity.add_argument(
        "--seconds", default=1.0, type=positive_seconds, metavar="S", help="time per measurement, positive (default: 1)"
    )
    fidelity.set_defaults(func=cmd_fidelity)
    add_commands(sub)
    add_history_command(sub)
    return parser


def cmd_fidelity(args: argparse.Namespace) -> int:
    """Print the harness's and torch.utils.benchmark's medians for one configuration."""
    from harness.commands.fidelity import run_fidelity

    return run_fidelity(args.backend, args.phase, args.batch, args.device, args.trials, args.seconds)


def _seed(value: str) -> int:
    from harness.contract.seeds import check_seed

    try:
        return check_seed(value)
    except UsageError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("--seed must be ")) from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        func: Callable[[argparse.Namespace], int] = args.func
        return func(args)
    except HarnessError as exc:
        print(f"netharness: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("netharness: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `netharness checks | head`: the reader left; not an error
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - stop Python's flush-at-exit from failing
        return 0


if __name__ == "__main__":
    sys.exit(main())
