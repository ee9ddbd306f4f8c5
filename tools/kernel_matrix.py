"""The strict conformance suite under each kernel selection this CPU supports, one knob at a time.

    .venv/bin/python tools/kernel_matrix.py [--backend NAMES] [-k EXPR] [--quick] [-n N]
        [--selections NAMES] [--list] [--logs DIR] [-- EXTRA PYTEST ARGS]

A verdict must not depend on the kernels the libraries pick (BLAS core types, ATen's, oneDNN's
and XLA's instruction sets) nor on the thread count. Each selection changes one knob from the
default and runs ``pytest suites --ignore=suites/bench_net.py --backend=... --strict-backends``
in a child process with that environment:

- ``default``: none of the variables below (they are removed from the child's environment);
- ``openblas=CORE``: ``OPENBLAS_CORETYPE`` (NumPy's and SciPy's bundled OpenBLAS: the numpy
  backend and the float64 oracle every check compares with);
- ``aten=CAP``: ``ATEN_CPU_CAPABILITY`` (torch's vectorised kernels: eager, and the code
  inductor generates for compile);
- ``onednn=ISA``: ``ONEDNN_MAX_CPU_ISA`` (torch's convolutions);
- ``xla=ISA``: ``XLA_FLAGS=--xla_cpu_max_isa=ISA`` (the code XLA generates for jax);
- ``threads=N``: ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` (torch,
  its MKL, OpenBLAS; onnx sessions follow torch's count), and for one thread
  ``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false`` (jax). OpenVINO reads no variable.

A selection whose instructions this CPU lacks (by ``/proc/cpuinfo``'s flags) is skipped with
the reason: the libraries would run it anyway and die on an illegal instruction, or fall
back without saying so. Each selection that runs is verified from inside its test processes
(``tools/kernel_probe.py``): the core type OpenBLAS dispatched to, ATen's capability, the ISA
oneDNN reports, the registers in XLA's code, the threads. A selection that did not take effect
fails, like a failing check. The selections themselves are in ``tools/kernel_selections.py``.

``--quick`` is the gate's subset: the arithmetic-sensitive checks (QUICK_TESTS) on eager,
numpy and jax under QUICK_SELECTIONS, each selection on the backends whose kernels it changes.
``--backend`` and ``--selections`` override either part.
Prints a line per selection as it runs, then one table; exits 1 if any selection failed, 2 on
a usage error. Each run's log, results and probe records stay in ``--logs`` (default
``.netharness/kernel-matrix``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

ROOT = Path(__file__).resolve().parent.parent
TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))

from kernel_probe import PROBE_ENV  # noqa: E402
from kernel_selections import (  # noqa: E402
    Selection,
    all_selections,
    cpu_count,
    cpu_flags,
    cpu_model,
    plan,
    selection_environment,
    verify,
)

QUICK_TESTS = tuple(
    f"suites/{name}"
    for name in (
        "test_gradients.py::test_gradients",
        "test_gradients.py::test_maxpool_tie_subgradient",
        "test_gradients.py::test_relu_subgradient_at_zero",
        "test_forward_values.py::test_forward_values",
        "test_batch.py::test_batch_independence",
        "test_hygiene.py::test_forward_deterministic",
        "test_layouts.py::test_input_layouts",
        "test_activations.py::test_activation_edge_cases",
    )
)
"""The checks whose arithmetic a kernel or a thread count changes: gradients (the max-pool tie and
ReLU's subgradient at 0 included), forward values, batch independence, determinism, layouts, and
the activations at their edges. Not the spec variants, finite differences or training, which
repeat the same kernels on other shapes at many times the cost."""
QUICK_KEYWORD = "not float16"
"""And only float32 and float64 (``float16`` also matches ``bfloat16``): a reordered sum moves a
result by a few units of float32's roundoff, which float64's tolerances see and bfloat16's and
float16's, 2^16 and 2^13 times coarser, do not. The full matrix runs eager's narrow precisions."""
QUICK_BACKENDS = ("eager", "numpy", "jax")
QUICK_SELECTIONS = ("openblas=Prescott", "aten=default", "onednn=SSE41", "xla=SSE4_2", "threads=1")
"""The gate's selections: the default is the main job's own run; these are the selections furthest
from it that every x86-64 CI machine supports (SSE3 and AVX without FMA in OpenBLAS, ATen without
vector kernels, oneDNN on SSE4.1, one thread)."""


BUILTIN_PLUGINS = ("eager", "compile", "numpy", "onnx", "jax", "openvino")
"""harness.contract.manager's built-in plugins; a plugin's backends are its name and its name plus a suffix
(openvino-f32). Named here so that the matrix starts without importing the harness."""
DISABLE_ENV = "NETHARNESS_DISABLE_PLUGINS"


class UsageError(Exception):
    """A bad argument: one line, exit 2."""


def parse_selection_names(value: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    valid = [s.name for s in all_selections()]
    unknown = [n for n in names if n not in valid]
    if not names or unknown:
        what = f"unknown selection {unknown[0]!r}" if unknown else "--selections is empty"
        raise UsageError(f"{what}; valid: {', '.join(valid)}")
    return list(dict.fromkeys(names))


def parse_workers(value: str) -> str:
    if value == "auto" or (value.isdigit() and int(value) >= 0):
        return value
    raise UsageError(f"-n {value!r}: give a number of pytest-xdist workers (0 for none) or 'auto'")


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    argv = list(argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = OneLineParser(prog="kernel_matrix", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--backend",
        action="append",
        metavar="NAMES",
        help="backend names, comma lists or 'all' (default: all; with --quick: eager,numpy,jax)",
    )
    parser.add_argument("-k", dest="keyword", metavar="EXPR", help="pytest's -k expression, applied in every run")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the gate's subset: the arithmetic-sensitive checks under the gate's selections",
    )
    parser.add_argument(
        "-n",
        dest="workers",
        metavar="N",
        default="0",
        type=str,
        help="pytest-xdist workers per run, with --dist loadgroup (default: 0, one process)",
    )
    parser.add_argument(
        "--selections",
        metavar="NAMES",
        help="comma list of selections to run (default: every one; with --quick: the gate's)",
    )
    parser.add_argument("--list", action="store_true", help="print the selections and skip reasons, run nothing")
    parser.add_argument(
        "--logs",
        metavar="DIR",
        default=".netharness/kernel-matrix",
        help="each run's log, results and probe records (default: .netharness/kernel-matrix)",
    )
    args = parser.parse_args(argv)
    args.workers = parse_workers(args.workers)
    if args.keyword is not None and not args.keyword.strip():
        raise UsageError("-k is empty; give a pytest keyword expression")
    if args.selections is not None:
        args.selections = parse_selection_names(args.selections)
    elif args.quick:
        args.selections = list(QUICK_SELECTIONS)
    if args.backend is not None and not any(n.strip() for b in args.backend for n in b.split(",")):
        raise UsageError("--backend is empty; give a backend name, a comma list, or 'all'")
    args.backends = ",".join(args.backend) if args.backend else ",".join(QUICK_BACKENDS) if args.quick else "all"
    if args.workers != "0" and not _has_xdist():
        raise UsageError("-n needs pytest-xdist: pip install pytest-xdist (make venv installs it)")
    args.extra = extra
    return args


def _has_xdist() -> bool:
    import importlib.util

    return importlib.util.find_spec("xdist") is not None


def pytest_command(args: argparse.Namespace, out: Path, backends: str) -> list[str]:
    """The strict suite (or the gate's subset), as ``netharness run`` runs it, writing into ``out``."""
    command = [sys.executable, "-m", "pytest", *(QUICK_TESTS if args.quick else ("suites",))]
    command += ["--ignore=suites/bench_net.py", f"--backend={backends}", "--strict-backends"]
    command += ["-p", "no:cacheprovider", "-p", "kernel_probe", "-q", "-rN"]
    command += [f"--junitxml={out / 'junit.xml'}", f"--conformance-results={out / 'conformance.jsonl'}"]
    keywords = [k for k in (QUICK_KEYWORD if args.quick else None, args.keyword) if k]
    if keywords:
        command += ["-k", " and ".join(f"({k})" for k in keywords) if len(keywords) > 1 else keywords[0]]
    if args.workers != "0":
        command += ["-n", args.workers, "--dist", "loadgroup"]
    return command + args.extra


def child_environment(selection: Selection, probe: Path, backends: str = "all") -> dict[str, str]:
    """The selection's environment, with the probe loaded from tools/ and writing into ``probe``.

    The built-in plugins that provide none of ``backends`` are disabled: importing OpenVINO,
    onnxruntime and inductor for nothing doubles the start of a run that tests one backend.
    """
    env = selection_environment(selection, dict(os.environ))
    names = {n.strip() for n in backends.split(",") if n.strip()}
    if "all" not in names:
        unused = [p for p in BUILTIN_PLUGINS if not any(n == p or n.startswith(f"{p}-") for n in names)]
        disabled = [d for d in env.get(DISABLE_ENV, "").split(",") if d.strip()]
        if unused:
            env[DISABLE_ENV] = ",".join(dict.fromkeys([*disabled, *unused]))
    env[PROBE_ENV] = str(probe)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TOOLS), env.get("PYTHONPATH", "")) if p)
    return env


@dataclass
class Outcome:
    """What one selection gave: its tests' outcomes and what its processes said they ran."""

    selection: Selection
    skip: str | None = None
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    xfailed: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    seen: str = ""
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    headrooms: dict[str, float] = field(default_factory=dict)
    """Each passed check's headroom (tolerance over error; 1 is the edge of failing), by test id."""

    def least_headroom(self) -> tuple[float, str] | None:
        return min(((h, test_id) for test_id, h in self.headrooms.items()), default=None)

    def nearest_reduced(self, baseline: Outcome) -> tuple[str, float, float] | None:
        """Of the checks with less headroom than in ``baseline``, the one nearest failing: (test, before, now).

        Not the largest factor: a check that falls from 500 to 100 is safe, one from 1.3 to 1.1 is not.
        """
        reduced = [(h, t) for t, h in self.headrooms.items() if h < baseline.headrooms.get(t, -math.inf)]
        if not reduced:
            return None
        now, test = min(reduced)
        return test, baseline.headrooms[test], now

    @property
    def ok(self) -> bool:
        return self.skip is not None or (self.failed == 0 and not self.problems)

    def status(self) -> str:
        if self.skip is not None:
            return "skipped"
        return "passed" if self.ok else "FAILED"


def read_junit(path: Path, outcome: Outcome) -> None:
    """Count the test cases of pytest's JUnit XML into ``outcome``; failures keep their id and first line."""
    for case in ElementTree.parse(path).iter("testcase"):
        children = {child.tag: child for child in case}
        module = (case.get("classname") or "").replace(".", "/")
        test_id = f"{module}.py::{case.get('name')}"
        bad = children.get("failure", children.get("error"))
        if bad is not None:
            outcome.failed += 1
            message = (bad.get("message") or bad.text or "").strip().splitlines() or [""]
            outcome.failures.append((test_id, message[0].removeprefix("harness.conformance.ConformanceError: ")))
        elif "skipped" in children:
            if children["skipped"].get("type") == "pytest.xfail":
                outcome.xfailed += 1
            else:
                outcome.skipped += 1
        else:
            outcome.passed += 1


def read_headrooms(results: Path) -> dict[str, float]:
    """Each passed check's finite headroom in a conformance results file, by test name (without its file)."""
    found: dict[str, float] = {}
    lines = results.read_text().splitlines() if results.is_file() else []
    for record in map(json.loads, lines):
        headroom = record.get("headroom")
        if record.get("kind") == "check" and record.get("outcome") == "passed" and isinstance(headroom, (int, float)):
            if math.isfinite(headroom):
                found[str(record.get("test_id", "")).rpartition("::")[2]] = float(headroom)
    return found


def run_selection(selection: Selection, backends: str, args: argparse.Namespace, logs: Path) -> Outcome:
    """Run the suite under one selection; a usage error of pytest's (same under every selection) stops the matrix."""
    out = logs / selection.name.replace("=", "-")
    shutil.rmtree(out, ignore_errors=True)
    probe = out / "probe"
    probe.mkdir(parents=True)
    outcome = Outcome(selection)
    start = time.monotonic()
    with open(out / "pytest.log", "w") as log:
        code = subprocess.run(
            pytest_command(args, out, backends), cwd=ROOT, env=child_environment(selection, probe, backends),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, check=False,
        ).returncode  # fmt: skip
    outcome.seconds = time.monotonic() - start
    text = (out / "pytest.log").read_text(errors="replace")
    if code in (4, 5):
        errors = [line.removeprefix("ERROR: ") for line in text.splitlines() if line.startswith("ERROR: ")]
        raise UsageError(
            errors[0]
            if errors
            else f"pytest ran no test (exit {code}): check -k and --backend; see {out / 'pytest.log'}"
        )
    if (out / "junit.xml").is_file():
        read_junit(out / "junit.xml", outcome)
    outcome.headrooms = read_headrooms(out / "conformance.jsonl")
    records = [json.loads(p.read_text()) for p in sorted(probe.glob("*.json"))]
    outcome.seen, outcome.problems = verify(selection, records)
    if code not in (0, 1):
        how = f"signal {-code}" if code < 0 else f"exit {code}"
        outcome.problems.insert(0, f"pytest ended with {how}; see {out / 'pytest.log'}")
    elif code == 1 and not outcome.failed:
        outcome.problems.insert(0, f"pytest failed outside any test; see {out / 'pytest.log'}")
    return outcome


def machine_header() -> str:
    """The CPU and the versions of the libraries whose kernels the matrix varies."""
    from importlib.metadata import PackageNotFoundError, version

    versions = []
    for name in ("numpy", "scipy", "torch", "jax", "jaxlib", "onnxruntime", "openvino"):
        try:
            versions.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            continue
    wide = [f for f in ("avx", "fma", "avx2", "avx512f") if f in cpu_flags()]
    return f"CPU: {cpu_model()}, {cpu_count()} CPUs, flags {' '.join(wide) or '(none read)'}; {', '.join(versions)}"


def distinct(before: float, after: float) -> tuple[str, str]:
    """Two numbers with 3 significant digits, or up to 6 until they differ; past that, their relative change."""
    for digits in range(3, 7):
        pair = (f"{before:.{digits}g}", f"{after:.{digits}g}")
        if pair[0] != pair[1]:
            return pair
    return f"{before:.3g}", f"{after:.3g}, {(after - before) / before:+.0e} relative"


def table(outcomes: Iterable[Outcome]) -> str:
    """The Markdown table of every selection, then each failure and each selection that did not take effect."""
    outcomes = list(outcomes)
    baseline = next((o for o in outcomes if o.selection.name == "default" and o.skip is None), None)
    rows = [
        "| selection | status | passed | failed | skipped | xfailed | s | least headroom"
        " | least headroom of the checks it reduced (default → here) | what the tests ran on |",
        "|---|---|---:|---:|---:|---:|---:|---|---|---|",
    ]
    notes = []
    for o in outcomes:
        if o.skip is not None:
            rows.append(f"| {o.selection.name} | skipped | | | | | | | | {o.skip} |")
            continue
        seen = o.seen + "".join(f"; **not in effect: {p}**" for p in o.problems)
        least = o.least_headroom()
        headroom = f"{least[0]:.3g} `{least[1]}` | " if least else " | "
        reduced = o.nearest_reduced(baseline) if baseline is not None and o is not baseline else None
        if reduced:
            headroom += f"`{reduced[0]}` ({' → '.join(distinct(reduced[1], reduced[2]))})"
        counts = f"{o.passed} | {o.failed} | {o.skipped} | {o.xfailed} | {o.seconds:.0f} | {headroom}"
        rows.append(f"| {o.selection.name} | {o.status()} | {counts} | {seen} |")
        notes += [f"- {o.selection.name}: `{test_id}`: {message}" for test_id, message in o.failures]
    return "\n".join(rows + (["", "Failures:", *notes] if notes else []))


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        planned = plan(args.selections, cpu_flags(), cpu_count(), args.backends, args.quick)
        if args.list:
            for selection, skip, backends in planned:
                runs = f"skipped: {skip}" if skip else f"runs on {backends}"
                print(f"{selection.name:22s} {selection.sets():60s} {runs}")
            return 0
        logs = Path(args.logs).resolve()
        print(machine_header(), flush=True)
        print(f"each run: {' '.join(pytest_command(args, logs / '<selection>', '<backends>')[1:])}", flush=True)
        outcomes: list[Outcome] = []
        for i, (selection, skip, backends) in enumerate(planned, 1):
            step = f"[{i}/{len(planned)}] {selection.name}" + (f" ({selection.sets()})" if selection.env else "")
            if skip is not None:
                outcomes.append(Outcome(selection, skip=skip))
                print(f"{step}: skipped, {skip}", flush=True)
                continue
            print(f"{step}: running on {backends}", flush=True)
            outcome = run_selection(selection, backends, args, logs)
            outcomes.append(outcome)
            o = outcome
            counts = f"{o.passed} passed, {o.failed} failed, {o.skipped} skipped, {o.xfailed} xfailed"
            problems = "".join(f"; NOT IN EFFECT: {p}" for p in outcome.problems)
            print(f"    {outcome.status()}: {counts} in {outcome.seconds:.0f} s; ran {outcome.seen}{problems}")
    except UsageError as exc:
        print(f"kernel_matrix: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kernel_matrix: interrupted", file=sys.stderr)
        return 130
    print()
    print(table(outcomes))
    failed = [o.selection.name for o in outcomes if not o.ok]
    ran = sum(o.skip is None for o in outcomes)
    print(f"\n{ran - len(failed)} of {ran} selections passed ({len(outcomes) - ran} skipped); logs in {logs}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
