"""The ``onnx`` backend: the deployed model file, run by onnxruntime like eager, for any batch.

Every test writes under one temporary artifacts directory, so the model is exported once
for the module and nothing lands in the repository.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from backends.eager import EagerBackend
from harness import SEED_SPEC, Capability, NetSpec, PluginError, SpecError, load_backends
from harness.net.testdata import random_images, random_params

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")

from backends import onnx_backend  # noqa: E402  (after the optional-dependency skips)
from backends.onnx_backend import OPSET, OnnxBackend  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")

FORWARD_RTOL, FORWARD_ATOL = 1e-4, 1e-5  # float32 against eager float32
DTYPE = "float32"
EAGER = EagerBackend()


def assert_close(
    actual: np.ndarray, expected: np.ndarray, *, rtol: float = FORWARD_RTOL, atol: float = FORWARD_ATOL, what: str = ""
) -> None:
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("artifacts")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(onnx_backend.ARTIFACTS_ENV, str(directory))
        yield directory


@pytest.fixture(scope="module")
def onnx_backend_(artifacts: Path) -> OnnxBackend:
    backend = OnnxBackend()
    if not backend.availability().available:
        pytest.skip(backend.availability().reason)
    return backend


@pytest.fixture(scope="module")
def params() -> dict[str, np.ndarray]:
    return random_params(SEED_SPEC, np.random.default_rng(0), DTYPE)


@pytest.fixture(scope="module")
def model_file(onnx_backend_: OnnxBackend, params: dict[str, np.ndarray]) -> Path:
    onnx_backend_.forward(SEED_SPEC, params, images(2), device="cpu", dtype=DTYPE)
    return onnx_backend_.model_path(SEED_SPEC, DTYPE)


def images(batch: int, spec: NetSpec = SEED_SPEC) -> np.ndarray:
    return random_images(spec, batch, np.random.default_rng(batch), DTYPE)


# -- declared contract ----------------------------------------------------------------------


def test_registered_as_an_export_only_float32_backend() -> None:
    backend = load_backends().get("onnx")
    assert backend.capabilities == frozenset({Capability.FORWARD, Capability.INTERMEDIATES})
    assert backend.dtypes == ("float32",), "onnxruntime's CPU provider has no float64 Conv"
    assert backend.version.endswith(f"opset {OPSET}") and backend.version.startswith("onnxruntime ")


def test_float64_is_refused_with_the_reason(onnx_backend_: OnnxBackend, params: dict[str, np.ndarray]) -> None:
    with pytest.raises(PluginError, match="float32 only.*no float64 Conv"):
        onnx_backend_.forward(SEED_SPEC, params, images(2).astype(np.float64), device="cpu", dtype="float64")


# -- numerics against eager, any batch --------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 7, 64], ids=lambda b: f"batch{b}")
def test_forward_matches_eager(onnx_backend_: OnnxBackend, params: dict[str, np.ndarray], batch: int) -> None:
    x = images(batch)
    actual = onnx_backend_.forward(SEED_SPEC, params, x, device="cpu", dtype=DTYPE)
    assert actual.dtype == np.float32 and actual.shape == (batch, SEED_SPEC.num_classes)
    assert_close(actual, EAGER.forward(SEED_SPEC, params, x, device="cpu", dtype=DTYPE))


def test_intermediates_are_exported_outputs(onnx_backend_: OnnxBackend, params: dict[str, np.ndarray]) -> None:
    x = images(7)
    actual = onnx_backend_.intermediates(SEED_SPEC, params, x, device="cpu", dtype=DTYPE)
    expected = EAGER.intermediates(SEED_SPEC, params, x, device="cpu", dtype=DTYPE)
    assert list(actual) == list(SEED_SPEC.layer_names())
    for name in expected:
        assert_close(actual[name], expected[name], what=name)


def test_one_export_serves_new_parameters(onnx_backend_: OnnxBackend, model_file: Path) -> None:
    exported = dict(onnx_backend_.export_times)
    x = images(7)
    for seed in (10, 11):
        params = random_params(SEED_SPEC, np.random.default_rng(seed), DTYPE)
        expected = EAGER.forward(SEED_SPEC, params, x, device="cpu", dtype=DTYPE)
        assert_close(onnx_backend_.forward(SEED_SPEC, params, x, device="cpu", dtype=DTYPE), expected)
    assert onnx_backend_.export_times == exported, "new parameters must not trigger a new export"


def test_another_spec_gets_its_own_model(onnx_backend_: OnnxBackend, model_file: Path) -> None:
    spec = NetSpec(height=32, width=32, activation="tanh")
    params = random_params(spec, np.random.default_rng(1), DTYPE)
    x = images(3, spec)
    assert_close(
        onnx_backend_.forward(spec, params, x, device="cpu", dtype=DTYPE),
        EAGER.forward(spec, params, x, device="cpu", dtype=DTYPE),
    )
    assert onnx_backend_.model_path(spec, DTYPE) != model_file and onnx_backend_.model_path(spec, DTYPE).is_file()


# -- the model file -------------------------------------------------------------------------


def test_deployed_model_has_weights_as_initializers_and_logits_only(
    onnx_backend_: OnnxBackend, model_file: Path, artifacts: Path
) -> None:
    """The model a user ships: nothing but the image goes in, nothing but the logits comes out."""
    assert model_file.parent == artifacts / "onnx" and model_file.name.startswith("net-")
    model = onnx.load(str(model_file))
    onnx.checker.check_model(model, full_check=True)
    assert onnx_backend_.opset == OPSET
    assert {o.version for o in model.opset_import if o.domain in ("", "ai.onnx")} == {OPSET}
    assert [i.name for i in model.graph.input] == ["input"]
    assert set(SEED_SPEC.parameter_shapes()) <= {init.name for init in model.graph.initializer}
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert [o.name for o in model.graph.output] == [SEED_SPEC.layer_names()[-1]]
    assert any(key.startswith(SEED_SPEC.describe()) for key in onnx_backend_.export_times)


def test_layers_model_keeps_weights_as_inputs_and_every_layer_as_output(
    onnx_backend_: OnnxBackend, params: dict[str, np.ndarray]
) -> None:
    onnx_backend_.intermediates(SEED_SPEC, params, images(2), device="cpu", dtype=DTYPE)
    model = onnx.load(str(onnx_backend_.layers_model_path(SEED_SPEC, DTYPE)))
    inputs = [i.name for i in model.graph.input]
    assert inputs == ["input", *SEED_SPEC.parameter_shapes()], "one export serves every set of weights"
    assert not set(inputs) & {init.name for init in model.graph.initializer}
    assert [o.name for o in model.graph.output] == list(SEED_SPEC.layer_names())


def test_sessions_run_with_every_graph_optimization(onnx_backend_: OnnxBackend, model_file: Path) -> None:
    """As deployed: constant folding and fusions on, so the conformance checks check the optimized graph."""
    session = onnx_backend_.load_session(model_file).session
    level = session.get_session_options().graph_optimization_level
    assert level == onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL


def test_a_deleted_model_file_is_exported_again(onnx_backend_: OnnxBackend, params: dict[str, np.ndarray]) -> None:
    spec = NetSpec(activation="sigmoid")
    onnx_backend_.forward(spec, params, images(2), device="cpu", dtype=DTYPE)
    path = onnx_backend_.model_path(spec, DTYPE)
    path.unlink()
    onnx_backend_.forward(spec, params, images(2), device="cpu", dtype=DTYPE)
    assert path.is_file()


def test_a_later_run_reuses_the_model_only_while_the_code_that_made_it_is_unchanged(
    onnx_backend_: OnnxBackend, model_file: Path, params: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A later process finds the file by name; another Net source or exporter version names another file."""
    monkeypatch.setattr(onnx_backend, "EXPORT_TIMES", {})  # as a new process starts
    onnx_backend_.forward(SEED_SPEC, params, images(2), device="cpu", dtype=DTYPE)
    assert onnx_backend.EXPORT_TIMES == {}, "the file on disk was exported again"
    assert not onnx_backend_.prepare(SEED_SPEC, params, device="cpu", dtype=DTYPE).benchmark_info["exported_here"]
    fingerprint = onnx_backend.exporter_fingerprint()
    monkeypatch.setattr(onnx_backend, "exporter_fingerprint", lambda: fingerprint + "-edited")
    assert onnx_backend_.model_path(SEED_SPEC, DTYPE) != model_file


def test_the_fingerprint_changes_with_the_nets_source_and_the_exporters_versions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.metadata
    import sys

    def fingerprint() -> str:
        onnx_backend.exporter_fingerprint.cache_clear()
        return onnx_backend.exporter_fingerprint()

    original = fingerprint()
    edited = tmp_path / "eager.py"
    edited.write_text(Path(str(sys.modules["backends.eager"].__file__)).read_text() + "\n# one more line\n")
    with monkeypatch.context() as patch:
        patch.setattr(sys.modules["backends.eager"], "__file__", str(edited))
        assert fingerprint() != original, "an edit to the Net's source must name another model file"
    version = importlib.metadata.version
    with monkeypatch.context() as patch:
        patch.setattr(importlib.metadata, "version", lambda name: "0.0" if name == "onnxscript" else version(name))
        assert fingerprint() != original, "another exporter version must name another model file"
    assert fingerprint() == original


# -- errors name the file -------------------------------------------------------------------


def test_missing_model_file_is_named(onnx_backend_: OnnxBackend, tmp_path: Path) -> None:
    missing = tmp_path / "gone.onnx"
    with pytest.raises(PluginError, match=f"model file {re.escape(str(missing))} does not exist"):
        onnx_backend_.load_session(missing)


def test_corrupt_model_file_is_named(onnx_backend_: OnnxBackend, model_file: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(model_file.read_bytes()[:1000])
    with pytest.raises(
        PluginError, match=f"model file {re.escape(str(truncated))} is not a valid ONNX model: "
    ) as info:
        onnx_backend_.load_session(truncated)
    assert "\n" not in str(info.value)


def test_wrong_image_size_is_rejected_by_the_graph(
    onnx_backend_: OnnxBackend, model_file: Path, params: dict[str, np.ndarray]
) -> None:
    model = onnx_backend_.load_session(model_file)
    feeds = {"input": np.zeros((2, 3, 32, 32), np.float32)}
    with pytest.raises(
        SpecError, match=f"model file {re.escape(str(model_file))} rejected the input: .*index: 2 Got: 32 Expected: 40"
    ):
        model.run(feeds, ["fc3"])


def test_wrong_image_size_is_a_spec_error_before_running(
    onnx_backend_: OnnxBackend, params: dict[str, np.ndarray]
) -> None:
    with pytest.raises(SpecError, match="32x32 but the spec expects 40x40"):
        onnx_backend_.forward(SEED_SPEC, params, np.zeros((2, 3, 32, 32), np.float32), device="cpu", dtype=DTYPE)


# -- prepared models for benchmarks ---------------------------------------------------------


def test_prepared_model_is_the_deployed_file_it_links(
    onnx_backend_: OnnxBackend, params: dict[str, np.ndarray], model_file: Path
) -> None:
    """The benchmark times, and the report links, one file: the deployed model holding these weights."""
    prepared = onnx_backend_.prepare(SEED_SPEC, params, device="cpu", dtype=DTYPE)
    info = prepared.benchmark_info
    assert info["export_s"] == prepared.export_seconds > 0
    assert not info["exported_here"], "the model_file fixture exported it: this prepare paid for its session only"
    assert prepared.setup_seconds == info["session_s"] > 0
    path = Path(info["artifact"])
    assert path == prepared.model_path and path.parent == model_file.parent and path != model_file
    assert info["model_bytes"] == path.stat().st_size > 0
    assert info["threads"] == torch.get_num_threads()  # the session's intra-op threads, as it holds them
    model = onnx.load(str(path))
    assert [i.name for i in model.graph.input] == ["input"] and len(model.graph.output) == 1
    stored = {init.name: onnx.numpy_helper.to_array(init) for init in model.graph.initializer}
    for name, value in params.items():
        np.testing.assert_array_equal(stored[name], value, err_msg=name)
        np.testing.assert_array_equal(prepared.parameters()[name], value, err_msg=name)
    for batch in (1, 7):
        x = images(batch)
        assert_close(prepared.forward(x), EAGER.forward(SEED_SPEC, params, x, device="cpu", dtype=DTYPE))


def test_a_prepare_that_exports_counts_the_export_in_its_setup(onnx_backend_: OnnxBackend) -> None:
    """One-off costs belong to the configuration that paid them, never copied to the next."""
    spec = NetSpec(height=36, width=36)
    params = random_params(spec, np.random.default_rng(6), DTYPE)
    first = onnx_backend_.prepare(spec, params, device="cpu", dtype=DTYPE)
    second = onnx_backend_.prepare(spec, params, device="cpu", dtype=DTYPE)
    assert first.benchmark_info["exported_here"] and not second.benchmark_info["exported_here"]
    assert first.setup_seconds == pytest.approx(first.export_seconds + first.benchmark_info["session_s"])
    assert second.setup_seconds == second.benchmark_info["session_s"] < first.setup_seconds


# -- the exporter's function table, built once ------------------------------------------------


def test_a_model_exported_with_the_table_built_once_is_the_one_a_fresh_table_gives(
    params: dict[str, np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import contextlib

    other = NetSpec(num_classes=3)
    cases = [(SEED_SPEC, params), (other, random_params(other, np.random.default_rng(1), DTYPE))]
    for i, (spec, spec_params) in enumerate(cases):  # the second export reuses the first's table
        onnx_backend.export_model(spec, spec_params, DTYPE, tmp_path / f"reused-{i}.onnx")
    with monkeypatch.context() as patch:
        patch.setattr(onnx_backend, "torchlib_registry_built_once", contextlib.nullcontext)
        for i, (spec, spec_params) in enumerate(cases):
            onnx_backend.export_model(spec, spec_params, DTYPE, tmp_path / f"fresh-{i}.onnx")
    for i in range(len(cases)):
        assert (tmp_path / f"reused-{i}.onnx").read_bytes() == (tmp_path / f"fresh-{i}.onnx").read_bytes()


def test_each_export_gets_its_own_copy_of_one_table_and_the_class_is_restored() -> None:
    from torch.onnx._internal.exporter import _registration

    registry_class = _registration.ONNXRegistry
    original = registry_class.__dict__["from_torchlib"]
    fresh = registry_class.from_torchlib()
    with onnx_backend.torchlib_registry_built_once():
        first, second = registry_class.from_torchlib(), registry_class.from_torchlib()
        target, kept = list(first.functions)[:2]
        assert first.functions[kept][0] is second.functions[kept][0], "built once: the functions are shared"
        first.functions[target].clear()  # as an export registering its own op changes its table
        first.functions["netharness::custom"] = []
        assert second.functions[target] and "netharness::custom" not in second.functions
        assert registry_class.from_torchlib().functions.keys() == fresh.functions.keys()
        assert first.opset_version == fresh.opset_version
    assert registry_class.__dict__["from_torchlib"] is original
