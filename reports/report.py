"""Building the report's files in memory, then writing them all at once.

Nothing in the output directory is touched until every file has been rendered; then the
exported models the benchmarks ran are copied beside the report (:mod:`reports.artifacts`),
and the files are replaced atomically (:mod:`reports.atomic`): a failure at any step leaves
the previous report as it was and no half-written file.
"""

from __future__ import annotations

from pathlib import Path

from harness.errors import UsageError
from reports.artifacts import Placement, place, plan
from reports.atomic import write_files
from reports.html import render_html
from reports.load import Results
from reports.markdown import render_summary
from reports.model import ReportData
from reports.tables import conformance_csv, results_csv

REPORT_FILES = ("results.csv", "conformance.csv", "report.html", "summary.md")


def build_report(data: ReportData, placements: list[Placement] | None = None) -> dict[str, str]:
    """File name -> text of every report file; ``placements`` say which artifacts the folder will hold."""
    links = {placement.recorded: placement.link for placement in placements or []}
    bench = data.bench.assign(artifact=data.bench["artifact"].map(lambda path: links.get(path, path)))
    return {
        "results.csv": results_csv(bench),
        "conformance.csv": conformance_csv(data.conf),
        "report.html": render_html(data, links),
        "summary.md": render_summary(data),
    }


def write_report(data: ReportData, out: Path) -> dict[str, Path]:
    """Render every file, then replace them in ``out`` together; return name -> path written."""
    placements = plan(_artifacts(data.results), out)
    files = build_report(data, placements)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create output directory {out}: {exc.strerror or exc}") from None
    if not out.is_dir():
        raise UsageError(f"output path {out} is not a directory")
    paths = {name: out / name for name in files}
    try:
        place(placements, out)
        write_files({paths[name]: text for name, text in files.items()})
    except OSError as exc:
        raise UsageError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
    return paths


def _artifacts(results: Results) -> list[tuple[str, str]]:
    """(recorded artifact path, the results file that names it) for every benchmark."""
    return [
        (str((bench.get("extra_info") or {}).get("artifact") or ""), str(run.path))
        for run in results.benchmarks
        for bench in run.benchmarks
    ]
