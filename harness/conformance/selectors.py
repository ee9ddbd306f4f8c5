"""Configuration selectors: which tests a tolerance override or a known deviation applies to.

A test's configuration is a small dict of named parameters (:func:`configuration`); a
selector is a dict of some of those names and the values they must equal. An empty
selector matches every configuration of its check. Selectors and check names come from
plugins, so :func:`validate` rejects a typo with the valid choices instead of ignoring it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from harness.conformance.catalogue import CHECKS, unknown_check_message
from harness.conformance.tolerances import Tolerance
from harness.contract.backend import PHASES, KnownDeviation, ToleranceOverride
from harness.contract.devices import DEVICES
from harness.errors import PluginError
from harness.net.precision import PRECISIONS
from harness.net.spec import ACTIVATIONS, LOSSES, NetSpec
from harness.net.variants import SEED, SPEC_VARIANTS, variant_name

SELECTOR_VALUES: dict[str, tuple[Any, ...] | None] = {
    "dtype": tuple(PRECISIONS),  # every precision a backend may declare, not only the storage dtypes
    "device": DEVICES,
    "loss": LOSSES,
    "activation": ACTIVATIONS,
    "variant": tuple(SPEC_VARIANTS),
    "phase": PHASES,
    "batch": None,  # any positive integer
}
"""Every key a selector may use, with its valid values."""


def configuration(params: Mapping[str, Any], device: str) -> dict[str, Any]:
    """The selectable parameters of one test, from its pytest ``callspec.params``.

    ``variant`` is the spec variant's name (``seed`` when the test uses the seed's spec);
    ``activation`` is the activation under test, or the spec's hidden activation.
    """
    spec = params.get("spec")
    spec = spec if isinstance(spec, NetSpec) else SPEC_VARIANTS[SEED]
    config: dict[str, Any] = {"device": device, "variant": variant_name(spec), "activation": spec.activation}
    if "name" in params and params["name"] in ACTIVATIONS:
        config["activation"] = params["name"]
    for key, param in (("dtype", "dtype"), ("dtype", "bench_dtype"), ("loss", "loss"), ("batch", "batch")):
        if param in params:
            config[key] = params[param]
    if "phase" in params:
        config["phase"] = params["phase"]
    return config


def selector_of(declaration: ToleranceOverride | KnownDeviation) -> dict[str, Any]:
    """The declaration's selector, with its ``dtype`` shorthand folded in."""
    select = dict(declaration.select)
    if declaration.dtype is not None:
        select["dtype"] = declaration.dtype
    return select


def matches(declaration: ToleranceOverride | KnownDeviation, check: str, config: Mapping[str, Any]) -> bool:
    if declaration.check != check:
        return False
    return all(key in config and config[key] == value for key, value in selector_of(declaration).items())


def merged_tolerance(
    default: Tolerance, overrides: Iterable[ToleranceOverride], check: str, config: Mapping[str, Any]
) -> Tolerance:
    """``default`` widened per component: the widest rtol and the widest atol of every matching override.

    The reason names each override that widened either component.
    """
    rtol, atol, reasons = default.rtol, default.atol, []
    for override in overrides:
        if not matches(override, check, config):
            continue
        if override.rtol > rtol or override.atol > atol:
            reasons.append(override.reason)
        rtol, atol = max(rtol, override.rtol), max(atol, override.atol)
    if not reasons:
        return default
    return Tolerance(rtol, atol, "; ".join(reasons), source="override")


def validate(declaration: ToleranceOverride | KnownDeviation, backend: str, hook: str) -> None:
    """Raise PluginError naming the hook, the backend and the valid choices for anything unknown or malformed."""
    where = f"{hook} for backend {backend!r}"
    kind = type(declaration).__name__
    if not isinstance(declaration.check, str):
        raise PluginError(f"{where}: a {kind}'s check is {declaration.check!r}; give one check name (a string)")
    if not isinstance(declaration.reason, str):
        raise PluginError(f"{where}: check {declaration.check!r} has reason {declaration.reason!r}; give a string")
    if not isinstance(declaration.select, Mapping):
        raise PluginError(
            f"{where}: check {declaration.check!r} has select={declaration.select!r}; give a dict such as"
            " {'dtype': 'float32'}"
        )
    if declaration.check not in CHECKS:
        raise PluginError(f"{where}: {unknown_check_message(declaration.check)}")
    if not str(declaration.reason).strip():
        raise PluginError(f"{where}: check {declaration.check!r} needs a reason, which the report shows")
    for key, value in selector_of(declaration).items():
        if key not in SELECTOR_VALUES:
            raise PluginError(f"{where}: unknown selector {key!r}; valid selectors: {', '.join(SELECTOR_VALUES)}")
        valid = SELECTOR_VALUES[key]
        if valid is None:
            if not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
                raise PluginError(f"{where}: selector {key}={value!r} must be a positive integer")
        elif value not in valid:
            raise PluginError(
                f"{where}: selector {key}={value!r} is not valid; valid values: {', '.join(map(str, valid))}"
            )
    if isinstance(declaration, ToleranceOverride):
        for field_name in ("rtol", "atol"):
            value = getattr(declaration, field_name)
            if not (isinstance(value, int | float) and not isinstance(value, bool) and _finite(value) and value >= 0):
                raise PluginError(f"{where}: {field_name}={value!r} must be a finite number >= 0")


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float (10**400)
        return False
