"""The timed code is the checked code: a changed contract method is timed through it, a wrong fast path fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers import run_suite_with_only


def test_an_eager_subclass_that_changes_a_contract_method_is_timed_through_it() -> None:
    pytest.importorskip("torch")
    from backends.eager import EagerBackend
    from harness import NetSpec
    from harness.bench.fastpath import ContractPath
    from harness.net.testdata import random_params

    class Doubled(EagerBackend):
        def forward(self, spec: Any, params: Any, x: np.ndarray, *, device: str, dtype: str) -> np.ndarray:
            return 2 * super().forward(spec, params, x, device=device, dtype=dtype)

    spec = NetSpec()
    params = random_params(spec, np.random.default_rng(0), "float32")
    x = np.random.default_rng(1).standard_normal((2, 3, 40, 40)).astype(np.float32)
    assert not isinstance(EagerBackend().prepare(spec, params, device="cpu", dtype="float32"), ContractPath)
    fast = Doubled().prepare(spec, params, device="cpu", dtype="float32")
    assert isinstance(fast, ContractPath)
    np.testing.assert_array_equal(fast.forward(x), Doubled().forward(spec, params, x, device="cpu", dtype="float32"))


ZEROS_FAST_PATH = """
    import numpy as np
    from backends.eager import EagerBackend
    from harness import hookimpl

    class Zeros:
        def __init__(self, classes):
            self.classes = classes
        def forward(self, x):
            return np.zeros((x.shape[0], self.classes), np.float32)

    class ZeroFastPath(EagerBackend):
        name = "zero-fast-path"
        dtypes = ("float32",)
        def prepare(self, spec, params, *, device, dtype):
            return Zeros(spec.num_classes)

    @hookimpl
    def harness_backends():
        return [ZeroFastPath()]
"""


def test_a_fast_path_that_returns_zeros_fails_its_check(
    pytester: pytest.Pytester, fake_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    result = run_suite_with_only(
        pytester, fake_site, monkeypatch, ZEROS_FAST_PATH, "test_fast_path.py", "--backend=zero-fast-path", "-q"
    )
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*test_prepared_forward*zero-fast-path-float32-batch1*", "*prepared logits, call 1*"])


WRONG_ABOVE_BATCH_8 = """
    import numpy as np
    from backends.eager import EagerBackend
    from harness import hookimpl

    class Zeros:
        def __init__(self, net):
            self.net = net
        def forward(self, x):
            out = self.net.forward(x)
            return out if x.shape[0] <= 8 else out * 0
        def __getattr__(self, name):
            return getattr(self.net, name)

    class WrongAbove8(EagerBackend):
        name = "wrong-above-8"
        dtypes = ("float32",)
        def prepare(self, spec, params, *, device, dtype):
            return Zeros(super().prepare(spec, params, device=device, dtype=dtype))

    @hookimpl
    def harness_backends():
        return [WrongAbove8()]
"""


def test_a_benchmark_whose_timed_object_is_wrong_fails_and_claims_no_speed(
    pytester: pytest.Pytester, fake_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Right at batches 1 and 7 (what the fast-path checks call) but zeros at 64: the benchmark fails."""
    pytest.importorskip("torch")
    monkeypatch.setenv("NETHARNESS_BENCH_PRECISIONS", "float32")
    result = run_suite_with_only(
        pytester, fake_site, monkeypatch, WRONG_ABOVE_BATCH_8, "bench_net.py", "--backend=wrong-above-8",
        "-k", "forward and (batch1 or batch64)", "--benchmark-disable",
    )  # fmt: skip
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*the benchmarked object is wrong: the timed forward's logits at batch 64*"])
