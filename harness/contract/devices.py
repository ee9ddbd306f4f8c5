"""The devices a backend may run on, and the one check that the machine has the one asked for."""

from __future__ import annotations

import os

from harness.errors import UsageError

DEVICES = ("cpu", "cuda")


def cuda_present() -> bool:
    """Whether this machine has a CUDA device, asked of torch where it is installed."""
    try:
        import torch
    except ImportError:
        return os.path.exists("/dev/nvidiactl")
    return bool(torch.cuda.is_available())


def check_device(value: str) -> str:
    """``value`` if it names a device and the machine has it; a :class:`UsageError` that says why not."""
    if value not in DEVICES:
        raise UsageError(f"unknown device {value!r} for --device; valid devices: {', '.join(DEVICES)}")
    if value == "cuda" and not cuda_present():
        raise UsageError("--device=cuda: this machine has no CUDA device (torch.cuda.is_available() is False)")
    return value
