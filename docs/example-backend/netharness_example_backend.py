"""A complete third-party netharness backend: the Net with torch.nn.functional.

It declares the ``forward`` and ``intermediates`` capabilities, so the conformance suite
checks forward shapes and values and skips the rest, naming the missing capability.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from harness import Availability, Capability, NetSpec, hookimpl

ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}


class FunctionalBackend:
    name = "functional"
    version = f"torch {torch.__version__}"
    capabilities = frozenset({Capability.FORWARD, Capability.INTERMEDIATES})
    devices = ("cpu",)
    dtypes = ("float32", "float64")

    def availability(self) -> Availability:
        return Availability.ok()

    def intermediates(
        self, spec: NetSpec, params: dict[str, np.ndarray], x: np.ndarray, *, device: str, dtype: str
    ) -> dict[str, np.ndarray]:
        spec.check_input(x, dtype)  # raises harness.SpecError for a bad shape, rank or dtype
        spec.check_parameters(params)
        p = {name: torch.tensor(np.ascontiguousarray(v), dtype=getattr(torch, dtype)) for name, v in params.items()}
        act = ACTIVATIONS[spec.activation]
        h = torch.tensor(np.ascontiguousarray(x), dtype=getattr(torch, dtype))  # any layout in
        out = {}
        for name, stage in zip(spec.conv_names, spec.conv_stages):
            h = out[name] = F.conv2d(h, p[f"{name}.weight"], p[f"{name}.bias"])
            h = out[f"{name}.act"] = act(h)
            h = out[f"{name}.pool"] = F.max_pool2d(h, stage.pool)
        h = out["flatten"] = h.flatten(1)
        for name in spec.linear_names:
            h = out[name] = F.linear(h, p[f"{name}.weight"], p[f"{name}.bias"])
            if name != spec.linear_names[-1]:
                h = out[f"{name}.act"] = act(h)
        return {name: value.numpy() for name, value in out.items()}

    def forward(
        self, spec: NetSpec, params: dict[str, np.ndarray], x: np.ndarray, *, device: str, dtype: str
    ) -> np.ndarray:
        return self.intermediates(spec, params, x, device=device, dtype=dtype)[spec.linear_names[-1]]


@hookimpl
def harness_backends() -> list[FunctionalBackend]:
    return [FunctionalBackend()]
