"""The spec variants the conformance suite runs, by name.

Every variant a suite parametrizes over comes from here, so its name is stable: it is the
test id, the ``variant`` a tolerance override or known deviation can select, and what
``netharness checks`` lists. ``"seed"`` is the seed's own network, :data:`SEED_SPEC`.

The one-field variants change the input size, the channels, the classes and the hidden
activation. ``40x48`` is non-square with sizes every pool divides (36x44 into the first pool,
14x18 into the second): a pool that swaps height and width, in its forward or its backward, is
wrong there, and a pool that only handles sizes it divides still runs there.
``1stage`` and ``3stage`` change every other field of the spec at once: the
number of conv stages, each stage's kernel size, pool size and width, the hidden widths and
their number, a non-square input, and sizes that do not divide by the pool entering a pool
(floor mode drops the ragged edge). So a backend that hard-codes k=5, pool 2, two stages or
the (120, 84) hidden layers, or pools in ceil mode, fails on them. They are two networks,
not one per field, because every new network costs the compiling and exporting backends a
compile or an export per operation:

- ``1stage``: 2x37x46 -> conv5 k7 pool3 (a 31x40 map into the pool: a row and a column
  dropped) -> 64 -> 7, ReLU;
- ``3stage``: 3x44x39 -> conv4 k3 pool2 (42x37: a column dropped) -> conv8 k5 pool1 ->
  conv12 k3 pool2 (15x12: a row dropped) -> 48 -> 32 -> 24 -> 10, sigmoid.
"""

from __future__ import annotations

from harness.net.spec import SEED_SPEC, ConvStage, NetSpec

SEED = "seed"

SPEC_VARIANTS: dict[str, NetSpec] = {
    SEED: SEED_SPEC,
    "32x32": NetSpec(height=32, width=32),
    "40x48": NetSpec(height=40, width=48),
    "1ch": NetSpec(in_channels=1),
    "2cls": NetSpec(num_classes=2),
    "100cls": NetSpec(num_classes=100),
    "tanh": NetSpec(activation="tanh"),
    "sigmoid": NetSpec(activation="sigmoid"),
    "1stage": NetSpec(
        in_channels=2, height=37, width=46, conv_stages=(ConvStage(5, 7, 3),), hidden=(64,), num_classes=7
    ),
    "3stage": NetSpec(
        height=44,
        width=39,
        conv_stages=(ConvStage(4, 3, 2), ConvStage(8, 5, 1), ConvStage(12, 3, 2)),
        hidden=(48, 32, 24),
        activation="sigmoid",
    ),
}

_NAMES = {spec: name for name, spec in SPEC_VARIANTS.items()}

NOT_SEED = tuple(name for name in SPEC_VARIANTS if name != SEED)
"""Every variant but the seed's network: what the forward checks run beside the seed's own cases."""
EVERY_FIELD = ("1stage", "3stage")
"""The two networks that change every field the layers depend on: what the per-layer, gradient and step checks run."""
POOLS_DIVIDE = ("40x48",)
"""Non-square networks whose every pool divides its input: what the gradient check adds to EVERY_FIELD."""


def variant_name(spec: NetSpec) -> str:
    """The variant's name; a spec not in the table is named by its repr (never a selector match)."""
    return _NAMES.get(spec, repr(spec))
