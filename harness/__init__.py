"""netharness: a plugin-based conformance and benchmarking harness for the seed's Net."""

from __future__ import annotations

from harness.contract.backend import (
    Availability,
    Backend,
    Capability,
    KnownDeviation,
    ToleranceOverride,
)
from harness.contract.manager import build_plugin_manager, collect_backends, load_backends
from harness.errors import HarnessError, PluginError, SpecError, UsageError
from harness.hookspecs import hookimpl
from harness.net import oracle
from harness.net.spec import SEED_SPEC, ConvStage, NetSpec
from harness.versions import API_VERSION

__all__ = [
    "API_VERSION",
    "SEED_SPEC",
    "Availability",
    "Backend",
    "Capability",
    "ConvStage",
    "HarnessError",
    "KnownDeviation",
    "NetSpec",
    "PluginError",
    "SpecError",
    "ToleranceOverride",
    "UsageError",
    "build_plugin_manager",
    "collect_backends",
    "hookimpl",
    "load_backends",
    "oracle",
]
