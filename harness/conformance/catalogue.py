"""The catalogue of conformance checks: every name a record, an override or a deviation can use.

A check's name is what the results file, the report and the hooks call it: the ``check``
marker of its test, or else the test function's name without ``test_``. Every test in
``suites/`` must name a check listed here (``tests/test_checks_catalogue.py`` holds them
to it), so a hook that names an unknown check is a typo, and is rejected with this list.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.contract.backend import Capability


@dataclass(frozen=True)
class CheckInfo:
    """One conformance check: its family, the capability it needs, and what it asserts."""

    name: str
    family: str
    capability: Capability | None
    summary: str

    @property
    def at_every_precision(self) -> bool:
        """Whether the check runs at tf32, bfloat16 and float16 too.

        Gradients (and training, which follows them) are compared elementwise, and an
        element whose pre-activation or max-pool window is within the precision's error of
        a kink takes the other branch: a whole element's gradient differs, which no
        rounding bound covers. ``activation()``, ``activation_grad()`` and ``loss()`` take
        no precision: they compute in their array's dtype. Those checks run at float32 and
        float64 only.
        """
        return self.family not in KINK_SENSITIVE_FAMILIES


KINK_SENSITIVE_FAMILIES = ("gradients", "training", "activations", "losses")
FULL_PRECISIONS = ("float64", "float32")


def unjudged_families(capabilities: Iterable[Capability], dtypes: Iterable[str]) -> list[str]:
    """The families a backend declares but no precision it declares can judge.

    The kink-sensitive families run at float32 and float64 only; a backend that declares
    neither (bfloat16 alone, say) would have them silently empty.
    """
    if set(dtypes) & set(FULL_PRECISIONS):
        return []
    declared = set(capabilities)
    return sorted(
        {c.family for c in CHECKS.values() if c.family in KINK_SENSITIVE_FAMILIES and c.capability in declared}
    )


def _catalogue(*rows: tuple[str, str, Capability | None, str]) -> dict[str, CheckInfo]:
    return {name: CheckInfo(name, family, capability, summary) for name, family, capability, summary in rows}


CHECKS: dict[str, CheckInfo] = _catalogue(
    ("plugin_loaded", "plugins", None, "every installed plugin imported and its hook returned backends"),
    ("output_shape", "shapes", Capability.FORWARD, "logits are (batch, classes) in the requested dtype"),
    ("output_shape_variants", "shapes", Capability.FORWARD, "logits shape on every spec variant"),
    ("intermediate_shapes", "shapes", Capability.INTERMEDIATES, "every layer's output shape, in forward order"),
    ("rejects_bad_input", "shapes", Capability.FORWARD, "a wrong rank, size, channel count or dtype is rejected"),
    ("forward_values", "forward", Capability.FORWARD, "logits against the float64 oracle (default spec and variants)"),
    ("intermediate_values", "forward", Capability.INTERMEDIATES, "every layer's output against the oracle"),
    ("prepared_forward", "fast path", Capability.FORWARD, "the benchmark fast path's logits against the oracle"),
    (
        "prepared_train_step",
        "training",
        Capability.TRAIN_STEP,
        "the fast path's parameters after one SGD step against the oracle",
    ),
    (
        "prepared_train_steps",
        "training",
        Capability.TRAIN_STEP,
        "three fast-path SGD steps in a row against the oracle's, then the fast path's logits",
    ),
    ("gradients", "gradients", Capability.BACKWARD, "loss and every gradient against the oracle, both losses"),
    (
        "forward_beyond_float16_range",
        "extremes",
        Capability.FORWARD,
        "every layer past 65504: finite logits against the oracle at every precision wider than float16",
    ),
    (
        "cross_entropy_gradient_at_large_logits",
        "extremes",
        Capability.BACKWARD,
        "a confidently wrong prediction: finite loss, the full gradient e_predicted - e_target, exact",
    ),
    ("gradient_finite_differences", "gradients", Capability.BACKWARD, "gradients against central finite differences"),
    (
        "maxpool_tie_subgradient",
        "gradients",
        Capability.BACKWARD,
        "a max-pool tie sends the gradient to the first maximum",
    ),
    ("relu_subgradient_at_zero", "gradients", Capability.BACKWARD, "relu'(0) = 0"),
    ("gradcheck", "gradients", Capability.BACKWARD, "every element of every gradient: random directional derivatives"),
    ("init_conv_weights", "init", Capability.INIT, "Kaiming-normal fan_out statistics"),
    ("init_linear_weights", "init", Capability.INIT, "Xavier-uniform statistics and bounds"),
    ("init_biases", "init", Capability.INIT, "every bias is zero"),
    ("init_seeds", "init", Capability.INIT, "same seed, same parameters; another seed, others"),
    (
        "init_values_not_shared",
        "init",
        Capability.INIT,
        "no draws shared between layers or seeds s, s + 1, in any layout or alignment (false-alarm rate < 1e-5)",
    ),
    (
        "init_reproducible_across_processes",
        "init",
        Capability.INIT,
        "same seed, bit-identical parameters in two processes with different hash seeds",
    ),
    (
        "init_layers_independent",
        "init",
        Capability.INIT,
        "no two layers' weights are correlated (false-alarm rate 1e-5)",
    ),
    (
        "init_seeds_independent",
        "init",
        Capability.INIT,
        "weights under seeds s and s + 1 uncorrelated (false-alarm rate 1e-5)",
    ),
    ("activation_values", "activations", Capability.ACTIVATIONS, "relu, tanh, sigmoid in ULPs of the dtype"),
    ("activation_derivatives", "activations", Capability.ACTIVATIONS, "the elementwise derivatives"),
    ("activation_edge_cases", "activations", Capability.ACTIVATIONS, "zeros, infinities, NaN, extremes"),
    ("activation_properties", "activations", Capability.ACTIVATIONS, "monotonic, bounded, symmetric where the math is"),
    (
        "activation_preserves_dtype_shape_and_input",
        "activations",
        Capability.ACTIVATIONS,
        "same dtype and shape; input untouched",
    ),
    ("loss_values", "losses", Capability.LOSSES, "sse and cross-entropy sums against the oracle"),
    ("cross_entropy_stability", "losses", Capability.LOSSES, "cross-entropy stays finite and exact at large logits"),
    ("train_step", "training", Capability.TRAIN_STEP, "one SGD step: new parameters and the update itself"),
    ("training_converges", "training", Capability.TRAIN_STEP, "the loss falls by 90% within 200 steps"),
    ("forward_deterministic", "hygiene", Capability.FORWARD, "the same call twice gives bit-identical logits"),
    (
        "forward_deterministic_fresh",
        "hygiene",
        Capability.FORWARD,
        "bit-identical on a shape's first call, on a new instance and at batch 256",
    ),
    ("forward_output_is_finite", "hygiene", Capability.FORWARD, "finite inputs give finite logits"),
    (
        "arrays_changed_in_place",
        "hygiene",
        Capability.FORWARD,
        "every method and the fast path follow arrays changed in place between two calls",
    ),
    (
        "returned_dtypes",
        "shapes",
        Capability.FORWARD,
        "logits, intermediates, gradients, stepped and fast-path arrays in the call's dtype",
    ),
    ("inputs_not_mutated", "hygiene", Capability.FORWARD, "forward leaves its inputs and parameters untouched"),
    (
        "batch_independence",
        "batch",
        Capability.FORWARD,
        "each row of batches of 7 to 256 equals that sample computed alone",
    ),
    (
        "nonfinite_sample_isolated",
        "batch",
        Capability.FORWARD,
        "a NaN or inf in one sample leaves the others unchanged",
    ),
    ("input_layouts", "layouts", Capability.FORWARD, "Fortran, strided, channels-last, read-only inputs: same results"),
    ("outputs_not_aliased", "layouts", Capability.FORWARD, "a result keeps its values through the next call"),
    ("benchmark", "benchmarks", None, "the timed configuration ran (timing is in benchmarks.json)"),
)


def unknown_check_message(name: str) -> str:
    return f"unknown check {name!r}; valid checks: {', '.join(sorted(CHECKS))} (see `netharness checks`)"


def suite_configurations(suites: Path) -> dict[str, list[str]]:
    """Per check, the parametrize axes of its tests in ``suites`` (``batch: batch1, batch7``).

    Read from the test functions' ``parametrize`` marks, so it is always what the suite runs;
    every test also runs once per dtype the backend declares.
    """
    axes: dict[str, list[str]] = {}
    for path in sorted(suites.glob("test_*.py")):
        module = _load(path)
        for attribute, function in vars(module).items():
            if not attribute.startswith("test_") or not callable(function):
                continue
            marks = getattr(function, "pytestmark", [])
            check = next((str(m.args[0]) for m in marks if m.name == "check"), attribute.removeprefix("test_"))
            for mark in marks:
                if mark.name == "parametrize":
                    names, values = mark.args[0], mark.args[1]
                    ids = [_param_id(v) for v in values]
                    line = f"{names}: {', '.join(ids)}"
                    if line not in axes.setdefault(check, []):
                        axes[check].append(line)
            axes.setdefault(check, [])
    return axes


def _load(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(f"netharness_suite_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _param_id(value: Any) -> str:
    if hasattr(value, "id") and getattr(value, "id", None):
        return str(value.id)
    if hasattr(value, "values"):
        return "-".join(map(str, value.values))
    return str(value)
