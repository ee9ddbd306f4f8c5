"""Building the report's files in memory, then writing them all at once.

Nothing in the output directory is touched until every file has been rendered, and the files
are then replaced atomically (:mod:`reports.atomic`): a failure at any step leaves the previous
report as it was and no half-written file.
"""

from __future__ import annotations

from pathlib import Path

from harness.errors import UsageError
from reports.atomic import write_files
from reports.html import render_html
from reports.load import Results
from reports.markdown import render_summary
from reports.model import report_data
from reports.tables import conformance_csv, results_csv

REPORT_FILES = ("results.csv", "conformance.csv", "report.html", "summary.md")


def build_report(results: Results) -> dict[str, str]:
    """File name -> text of every report file."""
    data = report_data(results)
    return {
        "results.csv": results_csv(data.bench),
        "conformance.csv": conformance_csv(data.conf),
        "report.html": render_html(data),
        "summary.md": render_summary(data),
    }


def write_report(results: Results, out: Path) -> dict[str, Path]:
    """Render every file, then replace them in ``out`` together; return name -> path written."""
    files = build_report(results)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create output directory {out}: {exc.strerror or exc}") from None
    if not out.is_dir():
        raise UsageError(f"output path {out} is not a directory")
    paths = {name: out / name for name in files}
    try:
        write_files({paths[name]: text for name, text in files.items()})
    except OSError as exc:
        raise UsageError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
    return paths
