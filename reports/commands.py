"""The ``netharness report`` and ``netharness compare`` commands.

:func:`add_commands` adds both to the ``netharness`` parser; each command returns its exit
code. The heavy modules (pandas, matplotlib, scipy) are imported when a command runs, so
the rest of the ``netharness`` command line does not wait for them. Bad input raises a
one-line :class:`~harness.errors.HarnessError`, which the CLI prints.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reports.comparable import DIFFERENCES
from reports.load import load_results

if TYPE_CHECKING:
    from reports.model import ReportData

DEFAULT_OUT = "netharness-report"
DEFAULT_THRESHOLD = 0.10
DEFAULT_ALPHA = 0.01


def add_commands(subparsers: Any) -> None:
    """Add ``report`` and ``compare`` to an argparse subparsers object (its parser_class is kept)."""
    report = subparsers.add_parser(
        "report", help="gather benchmark JSON and conformance JSONL files into CSV, HTML and Markdown"
    )
    report.add_argument(
        "results",
        nargs="+",
        metavar="RESULTS",
        help="pytest-benchmark JSON and/or netharness conformance JSONL files, or directories holding them",
    )
    report.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help=f"output directory (default: {DEFAULT_OUT})")
    report.set_defaults(func=cmd_report)

    compare = subparsers.add_parser(
        "compare",
        help="compare results against a baseline; exit 1 on a timing or conformance regression",
        description=(
            "Compare CURRENT against BASELINE. Exit 0: no regression; 1: a timing or conformance regression; "
            "2: the inputs cannot be compared, with the reason on one line. Refused by default: a partial run "
            "(no run_end record, interrupted, or missing checks the baseline ran), runs with other seeds, "
            "devices or backends, inputs with no benchmark and no check in common, and corrupt records "
            "(a median that is not a positive number of seconds, a check without its fields)."
        ),
    )
    compare.add_argument("baseline", metavar="BASELINE", help="baseline results: a file or a directory")
    compare.add_argument("current", metavar="CURRENT", help="current results: a file or a directory")
    compare.add_argument(
        "--threshold",
        type=_fraction,
        default=DEFAULT_THRESHOLD,
        metavar="FRACTION",
        help=f"slowdown of the median that counts as a regression (default: {DEFAULT_THRESHOLD})",
    )
    compare.add_argument(
        "--alpha",
        type=_probability,
        default=DEFAULT_ALPHA,
        metavar="P",
        help=f"significance level of the one-sided Mann-Whitney U test (default: {DEFAULT_ALPHA})",
    )
    compare.add_argument(
        "--allow-different",
        type=_differences,
        action="extend",
        default=[],
        metavar="WHAT[,WHAT...]",
        help=(
            f"compare even though the runs differ in these ({', '.join(DIFFERENCES)}; a comma list, repeatable); "
            "only the backends and devices both ran are compared (default: refuse, exit 2)"
        ),
    )
    compare.add_argument(
        "--allow-partial",
        action="store_true",
        help=(
            "compare even when a run is partial (no run_end record, interrupted, or missing checks the "
            "baseline ran); what is missing is listed (default: refuse, exit 2)"
        ),
    )
    compare.set_defaults(func=cmd_compare)


def cmd_report(args: argparse.Namespace) -> int:
    """Write results.csv, conformance.csv, report.html and summary.md into --out."""
    report_from(args.results, Path(args.out))
    return 0


def report_from(inputs: Sequence[str | Path], out: Path) -> ReportData:
    """Load ``inputs``, write the report's files into ``out`` and say so; the data it was built from.

    ``netharness report`` and the end of ``netharness run`` both come here; the run then
    prints its verdict lines from the same data (:func:`reports.verdicts.end_of_run_lines`).
    """
    from reports.model import report_data
    from reports.report import write_report

    results = load_results(inputs)
    data = report_data(results)
    paths = write_report(data, out)
    for reason in results.partial_reasons:
        print(f"netharness: PARTIAL RUN: {reason}")
    for name in ("results.csv", "conformance.csv", "summary.md"):
        print(f"netharness: wrote {paths[name]}")
    print(paths["report.html"])
    return data


def cmd_compare(args: argparse.Namespace) -> int:
    """Print the comparison; 1 on any regression, 0 otherwise (inputs it refuses raise a one-line error)."""
    from reports.compare import compare_results, format_comparison

    baseline = load_results([args.baseline])
    current = load_results([args.current])
    comparison = compare_results(
        baseline, current, args.threshold, args.alpha, set(args.allow_different), args.allow_partial
    )
    print(format_comparison(comparison, args.threshold, args.alpha))
    return 1 if comparison.benchmark_regressions or comparison.conformance_regressions else 0


def _fraction(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative fraction such as 0.10, got {value!r}") from None
    if not number >= 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative fraction such as 0.10, got {value!r}")
    return number


def _differences(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",")]
    unknown = [name for name in names if name not in DIFFERENCES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown difference {unknown[0]!r}; valid: {', '.join(DIFFERENCES)} (a comma list)"
        )
    return names


def _probability(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a probability between 0 and 1, got {value!r}") from None
    if not 0 < number < 1:
        raise argparse.ArgumentTypeError(f"expected a probability between 0 and 1, got {value!r}")
    return number
