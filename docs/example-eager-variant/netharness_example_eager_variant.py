"""Eager with one change: the built-in ``eager`` backend with a max pool written by hand.

The subclass overrides one extension point, ``Net.pool``. Everything else is inherited,
and every inherited path runs the new kernel: ``forward``, ``intermediates``,
``gradients``, ``train_step`` and the benchmark fast path (``prepare``).
"""

from __future__ import annotations

import torch

from backends.eager import EagerBackend, Net
from harness import hookimpl


class HandPoolNet(Net):
    """The seed's Net, with max pooling as a reshape into windows and a max over each."""

    def pool(self, x: torch.Tensor, window: int) -> torch.Tensor:
        n, c, h, w = x.shape
        rows, cols = h // window, w // window  # odd sizes are floored, as the spec says
        tiles = x[:, :, : rows * window, : cols * window].reshape(n, c, rows, window, cols, window)
        # One row per window, its elements in row-major order. max() returns the first
        # maximum of a tie, so autograd sends a tie's gradient where the spec does.
        tiles = tiles.permute(0, 1, 2, 4, 3, 5).reshape(n, c, rows, cols, window * window)
        return tiles.max(dim=-1).values


class HandPoolBackend(EagerBackend):
    name = "eager-handpool"  # what --backend takes: a new name, never "eager"
    net_class = HandPoolNet


@hookimpl
def harness_backends() -> list[HandPoolBackend]:
    return [HandPoolBackend()]
