"""tools/kernel_matrix.py: which selections a CPU supports and why not, its arguments, and how it reads a run.

Nothing here runs the conformance suite: the matrix's own logic is checked on made-up CPU
flags, probe records and JUnit files, and the probe plugin on a one-test pytest run.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.helpers import ROOT

TOOLS = ROOT / "tools"
AVX2_ONLY = frozenset("fpu sse sse2 pni ssse3 fma sse4_1 sse4_2 popcnt avx f16c avx2 bmi1 bmi2".split())
"""An AVX2 CPU without AVX-512, as this project's 2-core machine is."""
AVX512 = AVX2_ONLY | {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl", "avx512_bf16"}
NEEDS_NO_INSTRUCTIONS = {"default", "aten=default", "threads=1", "threads=2"}
AVX512_SELECTIONS = {"openblas=SkylakeX", "openblas=Cooperlake", "aten=avx512", "onednn=AVX512_CORE", "xla=AVX512"}


@pytest.fixture
def km(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """tools/kernel_matrix.py, imported with tools/ on sys.path for as long as the test lasts."""
    monkeypatch.syspath_prepend(str(TOOLS))
    spec = importlib.util.spec_from_file_location("kernel_matrix", TOOLS / "kernel_matrix.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "kernel_matrix", module)
    spec.loader.exec_module(module)
    yield module
    for name in ("kernel_selections", "kernel_probe"):  # imported by kernel_matrix from tools/
        sys.modules.pop(name, None)


@pytest.fixture
def ks(km: ModuleType) -> ModuleType:
    """tools/kernel_selections.py, as kernel_matrix imported it."""
    return sys.modules["kernel_selections"]


def skips(ks: ModuleType, flags: frozenset[str], cpus: int = 2) -> dict[str, str | None]:
    return {selection.name: reason for selection, reason, _ in ks.plan(None, flags, cpus)}


# -- which selections a CPU supports ------------------------------------------------------


def test_an_avx2_cpu_runs_everything_but_the_avx512_selections_and_says_which_flags_it_lacks(ks: ModuleType) -> None:
    found = skips(ks, AVX2_ONLY)
    assert {name for name, reason in found.items() if reason} == AVX512_SELECTIONS
    assert found["openblas=SkylakeX"] == "needs avx512f, avx512bw, avx512dq, avx512vl, avx512cd, which this CPU lacks"
    assert found["openblas=Cooperlake"] is not None and "avx512_bf16" in found["openblas=Cooperlake"]
    assert found["aten=avx512"] == "needs avx512f, avx512bw, avx512dq, avx512vl, which this CPU lacks"
    assert found["onednn=AVX512_CORE"] == found["aten=avx512"] == found["xla=AVX512"]


def test_an_avx512_cpu_runs_every_selection(ks: ModuleType) -> None:
    assert not any(skips(ks, AVX512).values())


def test_an_sse2_cpu_runs_only_what_needs_no_newer_instructions(ks: ModuleType) -> None:
    found = skips(ks, frozenset({"fpu", "sse", "sse2"}))
    assert {name for name, reason in found.items() if not reason} == NEEDS_NO_INSTRUCTIONS
    assert found["openblas=Prescott"] == "needs pni, which this CPU lacks"
    assert found["onednn=SSE41"] == "needs sse4_1, which this CPU lacks"
    assert found["xla=SSE4_2"] == "needs sse4_2, which this CPU lacks"


def test_a_one_cpu_process_skips_two_threads(ks: ModuleType) -> None:
    found = skips(ks, AVX2_ONLY, cpus=1)
    assert found["threads=2"] == "needs 2 CPUs, this process may use 1"
    assert found["threads=1"] is None


def test_without_cpu_flags_only_the_selections_that_need_no_instructions_run(ks: ModuleType) -> None:
    found = skips(ks, frozenset())
    assert {name for name, reason in found.items() if not reason} == NEEDS_NO_INSTRUCTIONS
    assert found["onednn=AVX"] == "no /proc/cpuinfo flags to check the instructions it needs against"


def test_cpu_flags_are_read_from_the_first_processor(ks: ModuleType, tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2\n\nprocessor\t: 1\nflags\t\t: fpu avx512f\n")
    assert ks.cpu_flags(cpuinfo) == {"fpu", "sse2", "avx2"}
    assert ks.cpu_flags(tmp_path / "missing") == frozenset()


def test_each_selection_moves_one_knob_from_the_default(ks: ModuleType) -> None:
    selections = ks.all_selections()
    assert selections[0].name == "default" and selections[0].env == {}
    assert len({s.name for s in selections}) == len(selections)
    for selection in selections[1:]:
        assert set(selection.env) <= set(ks.KNOB_VARIABLES), selection
        knob = selection.name.split("=")[0]
        verified = {"openblas": selection.openblas, "aten": selection.aten, "onednn": selection.onednn}
        verified |= {"xla": selection.xla, "threads": selection.threads}
        assert [name for name, value in verified.items() if value is not None] == [knob], selection


def test_the_gate_selections_run_on_any_avx2_machine_and_the_quick_tests_exist(km: ModuleType, ks: ModuleType) -> None:
    found = skips(ks, AVX2_ONLY)
    assert all(found[name] is None for name in km.QUICK_SELECTIONS)
    assert "default" not in km.QUICK_SELECTIONS  # the main job's own run is the default
    for node in km.QUICK_TESTS:
        path, function = node.split("::")
        assert re.search(rf"^def {function}\(", (ROOT / path).read_text(), re.M), node


def test_a_child_environment_drops_the_knobs_it_inherits_and_sets_its_own(
    km: ModuleType, ks: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
    # A worker that imported the compile backend may have set its cache folder; the point is
    # that the selection does not add one.
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    by_name = {s.name: s for s in ks.all_selections()}
    default = km.child_environment(by_name["default"], tmp_path)
    assert "OMP_NUM_THREADS" not in default and "XLA_FLAGS" not in default
    assert default["NETHARNESS_KERNEL_PROBE"] == str(tmp_path)
    assert default["PYTHONPATH"].split(":")[0] == str(TOOLS)
    prescott = km.child_environment(by_name["openblas=Prescott"], tmp_path)
    assert prescott["OPENBLAS_CORETYPE"] == "Prescott" and "OMP_NUM_THREADS" not in prescott
    assert "TORCHINDUCTOR_CACHE_DIR" not in prescott
    assert km.child_environment(by_name["threads=1"], tmp_path)["OPENBLAS_NUM_THREADS"] == "1"


def test_a_run_loads_only_the_builtin_plugins_of_its_backends(
    km: ModuleType, ks: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from harness.contract.manager import BUILTIN_PLUGINS, DISABLE_ENV

    assert km.BUILTIN_PLUGINS == tuple(BUILTIN_PLUGINS) and km.DISABLE_ENV == DISABLE_ENV
    monkeypatch.setenv(DISABLE_ENV, "mine")
    default = selection(ks, "default")
    assert km.child_environment(default, tmp_path, "jax")[DISABLE_ENV] == "mine,eager,compile,numpy,onnx,openvino"
    assert km.child_environment(default, tmp_path, "eager,openvino-f32")[DISABLE_ENV] == "mine,compile,numpy,onnx,jax"
    assert km.child_environment(default, tmp_path, "all,jax")[DISABLE_ENV] == "mine"


def test_each_aten_capability_compiles_into_an_inductor_cache_of_its_own(
    km: ModuleType, ks: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    by_name = {s.name: s for s in ks.all_selections()}
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    scalar = km.child_environment(by_name["aten=default"], tmp_path)["TORCHINDUCTOR_CACHE_DIR"]
    assert scalar.endswith("-aten-default") and Path(scalar).name.startswith("torchinductor_")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    env = km.child_environment(by_name["aten=avx2"], tmp_path)
    assert env["TORCHINDUCTOR_CACHE_DIR"] == f"{tmp_path / 'mine'}-aten-avx2"


def test_quick_runs_each_selection_on_the_chosen_backends_whose_kernels_it_changes(ks: ModuleType) -> None:
    runs = {s.name: (why, backends) for s, why, backends in ks.plan(None, AVX2_ONLY, 2, "eager,numpy,jax", True)}
    assert runs["openblas=Prescott"] == (None, "eager,numpy,jax")  # the oracle's BLAS: every backend
    assert runs["aten=default"] == (None, "eager") and runs["onednn=AVX"] == (None, "eager,jax")
    assert runs["xla=SSE4_2"] == (None, "jax") and runs["threads=1"] == (None, "eager,numpy,jax")
    runs = {s.name: (why, backends) for s, why, backends in ks.plan(None, AVX2_ONLY, 2, "numpy", True)}
    assert runs["aten=default"] == ("changes the kernels of eager, compile only, none of them chosen", "")
    runs = {s.name: (why, backends) for s, why, backends in ks.plan(None, AVX2_ONLY, 2, "all", True)}
    assert runs["onednn=SSE41"] == (None, "eager,compile,jax")
    full = {s.name: backends for s, _, backends in ks.plan(None, AVX2_ONLY, 2, "eager,numpy,jax", False)}
    assert set(full.values()) == {"eager,numpy,jax"}  # the full matrix runs every backend everywhere


# -- arguments ----------------------------------------------------------------------------


def test_quick_picks_the_gate_backends_selections_and_checks(km: ModuleType, tmp_path: Path) -> None:
    args = km.parse_args(["--quick", "-n", "2", "-k", "float32"])
    assert args.backends == "eager,numpy,jax" and args.selections == list(km.QUICK_SELECTIONS)
    command = km.pytest_command(args, tmp_path, "eager,numpy,jax")
    assert command[3 : 3 + len(km.QUICK_TESTS)] == list(km.QUICK_TESTS)
    assert "--strict-backends" in command and "--backend=eager,numpy,jax" in command
    assert command[-6:] == ["-k", "(not float16) and (float32)", "-n", "2", "--dist", "loadgroup"]


def test_explicit_choices_override_quick_and_extra_arguments_reach_pytest(km: ModuleType, tmp_path: Path) -> None:
    args = km.parse_args(["--quick", "--backend=numpy", "--backend", "eager", "--selections=threads=1,default"])
    assert args.backends == "numpy,eager" and args.selections == ["threads=1", "default"]
    args = km.parse_args(["--", "--seed=3"])
    assert args.backends == "all" and args.selections is None
    command = km.pytest_command(args, tmp_path, "all")
    assert command[3] == "suites" and command[-1] == "--seed=3" and "-n" not in command and "-k" not in command


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--selections=openblas=Zen4"], "unknown selection 'openblas=Zen4'; valid: default, openblas=Prescott,"),
        (["--selections=,"], "--selections is empty; valid: default,"),
        (["-n", "two"], "-n 'two': give a number of pytest-xdist workers (0 for none) or 'auto'"),
        (["-n", "-1"], "-n '-1': give a number"),
        (["-k", " "], "-k is empty; give a pytest keyword expression"),
        (["--backend="], "--backend is empty; give a backend name, a comma list, or 'all'"),
        (["--frobnicate"], "unrecognized arguments: --frobnicate"),
    ],
)
def test_a_bad_argument_is_a_usage_error(km: ModuleType, argv: list[str], message: str) -> None:
    with pytest.raises(km.UsageError) as caught:
        km.parse_args(argv)
    assert str(caught.value).startswith(message)


def test_a_usage_error_is_one_line_without_a_traceback() -> None:
    script = str(TOOLS / "kernel_matrix.py")
    result = subprocess.run([sys.executable, script, "--selections=avx9"], capture_output=True, text=True, check=False)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("kernel_matrix: error: unknown selection 'avx9'; valid: default,")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_list_prints_every_selection_and_runs_nothing(tmp_path: Path) -> None:
    script = str(TOOLS / "kernel_matrix.py")
    result = subprocess.run(
        [sys.executable, script, "--list", f"--logs={tmp_path / 'logs'}"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines][:2] == ["default", "openblas=Prescott"]
    assert any(line.startswith("threads=1 ") and line.endswith(" runs on all") for line in lines)
    assert not (tmp_path / "logs").exists()


# -- reading a run ------------------------------------------------------------------------


def record(architecture: str = "Haswell", threads: int = 2, **torch: object) -> dict[str, object]:
    blas = [{"library": f"libscipy_openblas{suffix}.so", "architecture": architecture, "threads": threads}
            for suffix in ("64_", "")]  # fmt: skip
    return {"pid": 1, "openblas": blas, "openmp_threads": [threads], **torch}


def selection(ks: ModuleType, name: str) -> object:
    return next(s for s in ks.all_selections() if s.name == name)


def test_verify_names_what_ran_and_accepts_openblas_reporting_its_prescott_table_as_katmai(ks: ModuleType) -> None:
    torch = {"aten": "AVX2", "torch_threads": 2, "onednn": "Intel AVX2"}
    seen, problems = ks.verify(selection(ks, "openblas=Prescott"), [record("Katmai", **torch)])
    assert problems == []
    assert seen == "OpenBLAS Katmai (Prescott's kernels); ATen AVX2; oneDNN AVX2; threads torch 2, OpenBLAS 2, OpenMP 2"
    assert ks.verify(selection(ks, "openblas=Zen"), [record("Haswell")])[1] == []


def test_verify_reports_a_selection_that_did_not_take_effect(ks: ModuleType) -> None:
    assert ks.verify(selection(ks, "openblas=Sandybridge"), [record("Haswell")])[1] == [
        "OpenBLAS ran Haswell, not Sandybridge"
    ]
    torch = {"aten": "AVX2", "torch_threads": 2, "onednn": "Intel AVX2 with Intel DL Boost"}
    assert ks.verify(selection(ks, "aten=default"), [record(**torch)])[1] == ["ATen ran AVX2, not DEFAULT"]
    assert ks.verify(selection(ks, "onednn=SSE41"), [record(**torch)])[1] == ["oneDNN ran Intel AVX2, not Intel SSE4.1"]
    one = {"aten": "AVX2", "torch_threads": 1, "onednn": "Intel AVX2"}
    assert ks.verify(selection(ks, "threads=1"), [record(threads=1, **one), record(threads=2, **one)])[1] == [
        "OpenBLAS ran 1/2 threads, not 1",
        "OpenMP ran 1/2 threads, not 1",
    ]
    assert ks.verify(selection(ks, "default"), []) == ("", ["no test process reported its kernels"])
    without = {"pid": 1, "threadpoolctl": "missing"}
    assert ks.verify(selection(ks, "threads=1"), [without])[1] == [
        "OpenBLAS not checked: threadpoolctl is missing (pip install threadpoolctl)"
    ]
    assert ks.verify(selection(ks, "default"), [without])[1] == []


def test_verify_holds_xla_code_to_the_registers_and_fma_its_isa_allows(ks: ModuleType) -> None:
    wide = record(xla={"widest": "ymm", "fma": True})
    seen, problems = ks.verify(selection(ks, "xla=SSE4_2"), [wide])
    assert seen.endswith("; XLA ymm FMA; threads OpenBLAS 2, OpenMP 2")
    assert problems == ["XLA's code used ymm and FMA, beyond xmm without FMA"]
    assert ks.verify(selection(ks, "xla=AVX"), [record(xla={"widest": "ymm", "fma": False})])[1] == []
    assert ks.verify(selection(ks, "xla=AVX2"), [wide])[1] == []
    assert ks.verify(selection(ks, "xla=AVX"), [record(xla="objdump is missing (binutils)")])[1] == [
        "XLA not checked: objdump is missing (binutils)"
    ]


def test_verify_does_not_ask_torch_of_a_run_that_never_loaded_it(ks: ModuleType) -> None:
    seen, problems = ks.verify(selection(ks, "aten=default"), [record()])
    assert problems == [] and "ATen" not in seen


def test_read_junit_counts_outcomes_and_keeps_each_failure_first_line(
    km: ModuleType, ks: ModuleType, tmp_path: Path
) -> None:
    (tmp_path / "junit.xml").write_text(
        '<?xml version="1.0"?><testsuites><testsuite>'
        '<testcase classname="suites.test_batch" name="test_batch_independence[eager-float32]"/>'
        '<testcase classname="suites.test_gradients" name="test_gradients[numpy-float64-batch1-sse]">'
        '<failure message="harness.conformance.ConformanceError: dsse/dinput: mismatched elements 3/10&#10;'
        '  reproduce: pytest ...">trace</failure></testcase>'
        '<testcase classname="suites.test_activations" name="test_activation_values[jax-float32-tanh]">'
        '<skipped type="pytest.xfail" message="known deviation"/></testcase>'
        '<testcase classname="suites.test_gradcheck" name="test_gradcheck[numpy-float32]">'
        '<skipped type="pytest.skip" message="float64 only"/></testcase>'
        "</testsuite></testsuites>"
    )
    outcome = km.Outcome(selection(ks, "default"))
    km.read_junit(tmp_path / "junit.xml", outcome)
    assert (outcome.passed, outcome.failed, outcome.xfailed, outcome.skipped) == (1, 1, 1, 1)
    assert outcome.failures == [
        ("suites/test_gradients.py::test_gradients[numpy-float64-batch1-sse]", "dsse/dinput: mismatched elements 3/10")
    ]
    assert outcome.status() == "FAILED"


def test_the_probe_records_what_a_pytest_process_ran(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if importlib.util.find_spec("jax") is None:  # found, not imported: pytester would unload it again
        pytest.skip("jax is not installed (an extra)")
    pytester.makepyfile("import jax, numpy, torch\n\ndef test_nothing():\n    assert torch.ones(1).sum() == 1\n")
    probe = tmp_path / "probe"
    probe.mkdir()
    monkeypatch.setenv("NETHARNESS_KERNEL_PROBE", str(probe))
    monkeypatch.setenv("PYTHONPATH", str(TOOLS))
    result = pytester.runpytest_subprocess("-p", "kernel_probe", "-p", "no:cacheprovider", "-p", "no:netharness")
    result.assert_outcomes(passed=1)
    [written] = probe.glob("*.json")
    found = json.loads(written.read_text())
    assert found["openblas"] and {"library", "architecture", "threads"} <= set(found["openblas"][0])
    assert found["aten"] in {"DEFAULT", "AVX2", "AVX512"} and found["torch_threads"] >= 1
    assert found["onednn"] is None or found["onednn"].startswith("Intel ")
    assert found["xla"]["widest"] in {"xmm", "ymm", "zmm"} and isinstance(found["xla"]["fma"], bool)


def test_the_table_names_each_selection_its_least_headroom_and_the_reduced_check_nearest_failing(
    km: ModuleType, ks: ModuleType, tmp_path: Path
) -> None:
    results = tmp_path / "conformance.jsonl"
    lines = [{"kind": "run_start"}]
    for name, outcome, headroom in [("t[a]", "passed", 10.0), ("t[b]", "passed", 4.0), ("t[c]", "failed", 0.5)]:
        lines.append({"kind": "check", "test_id": f"suites/x.py::{name}", "outcome": outcome, "headroom": headroom})
    lines.append({"kind": "check", "test_id": "suites/x.py::t[d]", "outcome": "passed", "headroom": None})
    results.write_text("\n".join(json.dumps(line) for line in lines))
    assert km.read_headrooms(results) == {"t[a]": 10.0, "t[b]": 4.0}

    default = km.Outcome(selection(ks, "default"), passed=3, headrooms={"t[a]": 10.0, "t[b]": 4.0, "t[e]": 500.0})
    headrooms = {"t[a]": 5.0, "t[b]": 4.0, "t[e]": 100.0}
    prescott = km.Outcome(selection(ks, "openblas=Prescott"), passed=3, headrooms=headrooms)
    skylake = km.Outcome(selection(ks, "openblas=SkylakeX"), skip="needs avx512f, which this CPU lacks")
    rows = km.table([default, prescott, skylake]).splitlines()
    assert rows[2].startswith("| default | passed | 3 | 0 | 0 | 0 | 0 | 4 `t[b]` |  |")
    assert rows[3].startswith("| openblas=Prescott | passed | 3 | 0 | 0 | 0 | 0 | 4 `t[b]` | `t[a]` (10 → 5) |")
    assert rows[4] == "| openblas=SkylakeX | skipped | | | | | | | | needs avx512f, which this CPU lacks |"
    assert km.distinct(4.1312, 4.1309) == ("4.1312", "4.1309") and km.distinct(1.33, 1.14) == ("1.33", "1.14")
    assert km.distinct(4.13071569, 4.13071569 * (1 - 3e-12)) == ("4.13", "4.13, -3e-12 relative")
