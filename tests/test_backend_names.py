"""Backend names that could be markup or command-line options are refused; ordinary ones pass."""

from __future__ import annotations

from typing import Any

import pytest

from harness.contract.backend import check_backend
from harness.errors import PluginError


class Named:
    capabilities: frozenset[Any] = frozenset()
    devices = ("cpu",)
    dtypes = ("float32",)
    version = "1"

    def __init__(self, name: str) -> None:
        self.name = name

    def availability(self) -> Any:
        raise NotImplementedError


@pytest.mark.parametrize(
    "name", ["<script>alert(1)</script>", "Eager", "-x", "a b", "", "x" * 65, "name\nnewline", "all"]
)
def test_backend_names_that_could_be_markup_or_options_are_refused(name: str) -> None:
    with pytest.raises(PluginError, match="a name must match"):
        check_backend(Named(name), "plugin")


@pytest.mark.parametrize("name", ["eager", "my-backend", "openvino-bf16", "jax.cpu", "b2"])
def test_ordinary_backend_names_are_accepted(name: str) -> None:
    check_backend(Named(name), "plugin")
