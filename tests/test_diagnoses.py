"""Failures that point at the bug: root causes grouped, layouts and orders named, rounding described.

Each case of issue 27 is a small backend here: the flatten done in NHWC order, the
intermediates returned in NHWC, and a ``TypeError`` in the backward pass. None of their
messages may suggest declaring a precision.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.conformance.causes import cause_lines, root_causes
from harness.conformance.compare import localise, permutation_note
from harness.conformance.tolerances import Tolerance
from harness.net.precision import PRECISIONS, diagnose
from tests.helpers import ROOT, run_suite_with_only

TIGHT = Tolerance(rtol=1e-6, atol=1e-7)


def _layers(rng: np.random.Generator) -> dict[str, np.ndarray]:
    conv = rng.standard_normal((3, 4, 5, 5))
    pool = rng.standard_normal((3, 4, 2, 2))
    return {"conv1": conv, "conv1.pool": pool, "flatten": pool.reshape(3, -1), "fc1": rng.standard_normal((3, 10))}


# -- localisation -----------------------------------------------------------------------------


def test_intermediates_in_nhwc_are_named_as_a_layout_not_as_a_divergent_layer() -> None:
    expected = _layers(np.random.default_rng(0))
    actual = {name: (v.transpose(0, 2, 3, 1) if v.ndim == 4 else v) for name, v in expected.items()}
    text, logic = localise(actual, expected, TIGHT)
    assert logic
    assert text.startswith(
        "conv1 is (3, 5, 5, 4) (NHWC); the spec's layout is (N, C, H, W): the values match after transposing to NCHW"
    )
    assert "(and 1 more layers so laid out)" in text
    assert "first divergent layer" not in text


def test_a_flatten_in_nhwc_order_is_a_permutation_named_with_its_layout() -> None:
    expected = _layers(np.random.default_rng(1))
    actual = dict(expected, flatten=expected["conv1.pool"].transpose(0, 2, 3, 1).reshape(3, -1))
    text, logic = localise(actual, expected, TIGHT)
    assert logic
    assert text == (
        "flatten: the same values in another order: the flatten looks like NHWC order; the spec flattens in NCHW order"
    )
    wrong = dict(expected, flatten=expected["flatten"] + 1.0)
    assert localise(wrong, expected, TIGHT) == ("first divergent layer: flatten", False)
    assert permutation_note("flatten", expected["flatten"] + 1.0, expected["flatten"], None, TIGHT) == ""


# -- the precision diagnosis: describes, and suggests a declaration only when every layer agrees -----


def test_a_logic_bug_gets_no_rounding_diagnosis() -> None:
    rng = np.random.default_rng(2)
    expected = rng.standard_normal(500)
    text = diagnose(rng.permutation(expected), expected, "float32")
    assert text.startswith("the errors are too large for rounding")
    assert "declare" not in text


def test_a_rounded_scalar_is_one_factor_not_an_arithmetic() -> None:
    expected = np.random.default_rng(3).standard_normal(500)
    lr = 0.1
    actual = expected * float(np.float32(lr)) / lr  # a float64 step with its learning rate rounded to float32
    text = diagnose(actual, expected, "float64")
    assert text.startswith("every element is off by the same factor (1 + 1.5e-08)")
    assert "declare" not in text and "float32" not in text


@pytest.mark.parametrize(("precision", "bits"), [("bfloat16", 8), ("float16", 11)])
def test_a_coarser_arithmetic_is_described_and_declared_only_when_every_layer_agrees(precision: str, bits: int) -> None:
    rng = np.random.default_rng(4)
    coarse = PRECISIONS[precision]

    def rounded(values: np.ndarray) -> np.ndarray:
        return coarse.round(values * (1 + coarse.unit_roundoff * rng.standard_normal(values.shape)))

    expected = {name: rng.standard_normal(400) for name in ("conv1", "fc1", "fc3")}
    actual = {name: rounded(values) for name, values in expected.items()}
    alone = diagnose(actual["fc3"], expected["fc3"], "float32")
    assert alone.startswith(f"the errors look like rounding to about {bits} significant bits somewhere")
    assert "declare" not in alone, "one array is not every layer"
    every = diagnose(actual["fc3"], expected["fc3"], "float32", layers=(actual, expected))
    assert every.endswith(f"declare precision {precision}")
    exact_first = dict(actual, conv1=expected["conv1"])
    assert "declare" not in diagnose(actual["fc3"], expected["fc3"], "float32", layers=(exact_first, expected))
    assert "tf32" not in every, "tf32 exists only on CUDA"
    on_cuda = diagnose(actual["fc3"], expected["fc3"], "float32", device="cuda", layers=(actual, expected))
    assert ("tf32" in on_cuda) == (precision == "float16")


# -- root causes ------------------------------------------------------------------------------


def test_failures_sharing_an_exception_and_a_place_are_one_cause_shown_first() -> None:
    def record(check: str, outcome: str = "failed", **more: str) -> dict[str, str]:
        return {"backend": "b", "check": check, "outcome": outcome, "reproduce": f"pytest {check}", **more}

    crash = {"exception": "TypeError", "location": "kernels.py:12 pool_backward", "reason": "TypeError: bad operand"}
    records = [
        record("train_step", **crash),
        record("gradients", **crash),
        record("gradients", **crash),
        record("init_biases", reason="init_biases: fc1 is not zero", exception="ConformanceError"),
        record("forward_values", outcome="passed"),
    ]
    causes = root_causes(records)
    assert [cause.line() for cause in causes] == [
        "3 failures: TypeError in kernels.py:12 pool_backward: bad operand; in gradients, train_step",
        "1 failure: init_biases: fc1 is not zero",
    ]
    assert causes[0].reproduce == "pytest gradients"
    lines = cause_lines(causes)
    assert lines[0] == "  b has 2 root causes, in the order to fix them:"
    assert lines[1].startswith("    1. 3 failures: TypeError in kernels.py:12 pool_backward")


def test_a_failing_forward_pass_is_the_cause_of_the_gradients_that_follow() -> None:
    records = [
        {"backend": "b", "check": c, "outcome": "failed", "reason": f"{c}: wrong", "exception": "ConformanceError"}
        for c in ("train_step", "gradients", "forward_values", "intermediate_values")
    ]
    (cause,) = root_causes(records)
    assert cause.line() == (
        "4 failures: forward_values: wrong; intermediate_values (1), gradients (1), train_step (1) fail after it:"
        " forward_values fails too; fix it first"
    )


# -- the cases as backends --------------------------------------------------------------------

CASES = """
    import numpy as np
    import torch
    from backends.eager import EagerBackend, Net
    from harness import hookimpl

    class FlattenNHWC(Net):
        def flatten(self, x):
            return torch.flatten(x.permute(0, 2, 3, 1), 1)

    class FlattensNHWC(EagerBackend):
        name = "flatten-nhwc"
        dtypes = ("float64",)
        net_class = FlattenNHWC

    class IntermediatesNHWC(EagerBackend):
        name = "intermediates-nhwc"
        dtypes = ("float64",)

        def intermediates(self, spec, params, x, *, device, dtype):
            layers = super().intermediates(spec, params, x, device=device, dtype=dtype)
            return {k: (v.transpose(0, 2, 3, 1) if v.ndim == 4 else v) for k, v in layers.items()}

    def pool_backward(grad, window):
        return len(grad) * window + "2"  # the crash: a str where a number belongs

    class CrashesInBackward(EagerBackend):
        name = "crash-backward"
        dtypes = ("float64",)

        def gradients(self, spec, params, x, target, *, loss, device, dtype):
            return pool_backward(np.ones(3), 2)

    @hookimpl
    def harness_backends():
        return [FlattensNHWC(), IntermediatesNHWC(), CrashesInBackward()]
"""


def _run(pytester: pytest.Pytester, fake_site: Path, monkeypatch: pytest.MonkeyPatch, suite: str, *args: str):  # type: ignore[no-untyped-def]
    if importlib.util.find_spec("torch") is None:  # not imported here: pytester would unload it again
        pytest.skip("needs torch")
    return run_suite_with_only(pytester, fake_site, monkeypatch, CASES, suite, "--tb=line", *args)


def _causes_section(out: str) -> list[str]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("netharness: failures by root cause"))
    return [line for line in lines[start + 1 :] if line.startswith("  ")]


def test_a_flatten_in_nhwc_order_fails_as_one_cause_that_names_the_flatten_and_the_order(
    pytester: pytest.Pytester, fake_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _run(
        pytester,
        fake_site,
        monkeypatch,
        "test_forward_values.py",
        "--backend=flatten-nhwc",
        "-k",
        "test_forward_values[ or test_intermediate_values[",
    )
    out = result.stdout.str()
    result.assert_outcomes(failed=4)
    section = _causes_section(out)
    assert section[0] == "  flatten-nhwc has 1 root cause:"
    assert section[1].startswith(
        "    1. 4 failures: forward_values: flatten: the same values in another order:"
        " the flatten looks like NHWC order; the spec flattens in NCHW order"
    )
    assert "declare" not in out


def test_intermediates_in_nhwc_fail_with_a_message_that_names_the_layout(
    pytester: pytest.Pytester, fake_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _run(
        pytester,
        fake_site,
        monkeypatch,
        "test_forward_values.py",
        "--backend=intermediates-nhwc",
        "-k",
        "test_intermediate_values[ or test_intermediate_shapes[",
        str(ROOT / "suites" / "test_forward_shapes.py"),
    )
    out = result.stdout.str()
    assert (
        "conv1 is (7, 36, 36, 6) (NHWC); the spec's layout is (N, C, H, W): the values match after transposing to NCHW"
        in out
    )
    assert "layer conv1: ndarray float64 (" in out and ": NHWC order; the spec's layout is (N, C, H, W)" in out
    assert "declare" not in out


def test_a_crash_in_the_backward_is_one_cause_first_in_the_summary_and_in_summary_md(
    pytester: pytest.Pytester, fake_site: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    results = tmp_path / "conformance.jsonl"
    result = _run(
        pytester,
        fake_site,
        monkeypatch,
        "test_gradients.py",
        "--backend=crash-backward",
        f"--conformance-results={results}",
    )
    out = result.stdout.str()
    failed = result.parseoutcomes()["failed"]
    section = _causes_section(out)
    assert section[1].startswith(f"    1. {failed} failures: TypeError in only_plugin.py:")
    assert " pool_backward: " in section[1]
    assert "declare" not in out
    # In its own process: pytester unloads what a test imports, and NumPy's extensions load only once.
    build = (
        "from pathlib import Path; from reports.commands import report_from;"
        f" report_from([Path({str(results)!r})], Path({str(tmp_path / 'report')!r}))"
    )
    done = subprocess.run([sys.executable, "-c", build], cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    summary = (tmp_path / "report" / "summary.md").read_text()
    causes = summary[summary.index("## Root causes") :].splitlines()
    assert causes[2].startswith(f"1. **crash-backward**: {failed} failures: TypeError in only_plugin.py:")


# -- init failures name their likely causes ---------------------------------------------------

INITS = """
    import numpy as np
    from scipy import stats
    from backends.eager import EagerBackend
    from harness import hookimpl

    class KerasTruncated(EagerBackend):
        '''Conv weights from the right normal truncated at 2 sigma (Keras' distribution="normal")'''
        name = "keras-truncated"
        dtypes = ("float64",)

        def init_params(self, spec, *, seed, dtype):
            params = super().init_params(spec, seed=seed, dtype=dtype)
            rng = np.random.default_rng(seed)
            for name in spec.conv_names:
                w = params[f"{name}.weight"]
                sigma = np.sqrt(2.0 / spec.fans(f"{name}.weight")[1])
                params[f"{name}.weight"] = stats.truncnorm(-2, 2).rvs(w.shape, random_state=rng) * sigma
            return params

    class FanIn(EagerBackend):
        name = "fan-in"
        dtypes = ("float64",)

        def init_params(self, spec, *, seed, dtype):
            params = super().init_params(spec, seed=seed, dtype=dtype)
            rng = np.random.default_rng(seed)
            for name in spec.conv_names:
                w = params[f"{name}.weight"]
                params[f"{name}.weight"] = rng.standard_normal(w.shape) * np.sqrt(2.0 / spec.fans(f"{name}.weight")[0])
            return params

    @hookimpl
    def harness_backends():
        return [KerasTruncated(), FanIn()]
"""


def test_init_failures_name_truncation_and_the_wrong_fan(
    pytester: pytest.Pytester, fake_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if importlib.util.find_spec("torch") is None:
        pytest.skip("needs torch")
    result = run_suite_with_only(
        pytester,
        fake_site,
        monkeypatch,
        INITS,
        "test_init_statistics.py",
        "--tb=line",
        "--backend=keras-truncated,fan-in",
        "-k",
        "test_init_conv_weights",
    )
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    assert "likely: looks truncated at ±2." in out and "σ (no value beyond; as Keras' truncated normal)" in out
    assert "likely: the variance matches 2/fan_in: fan_in used instead of fan_out" in out


def test_layers_drawn_from_one_restarted_stream_are_named() -> None:
    from suites.test_init_statistics import SEEDS_PER_CHECK, likely_causes

    stream = np.random.default_rng(5).standard_normal(2400)
    samples = {
        "conv1.weight": np.concatenate([stream[:150] * 0.1] * SEEDS_PER_CHECK),
        "conv2.weight": np.concatenate([stream * 0.05] * SEEDS_PER_CHECK),
    }
    found = likely_causes("conv2.weight", samples, True, {})
    assert "seeds 0 and 1 of the 10 drawn give the same values (is the seed used?)" in found
    assert "it starts with conv1.weight's values, scaled: the layers share one random stream" in found
