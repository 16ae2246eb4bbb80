"""Turning a device name into a :class:`torch.device` that this machine has."""

from __future__ import annotations

import re

import torch
from torch import nn

from .errors import DeviceError

__all__ = ["model_device", "resolve_device"]

_NAMES = "cpu, cuda, cuda:N, mps or auto"


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """Return the device ``name`` stands for, checking that this machine has it.

    ``"auto"`` picks CUDA if available, else Apple's MPS, else the CPU.

    Raises:
        DeviceError: ``name`` is not one of cpu, cuda, cuda:N, mps, auto, or names a
            device this machine lacks (it is also a :class:`ValueError`).

    Example:
        >>> from fashionmlp.devices import resolve_device
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if isinstance(name, torch.device):
        name = str(name)
    name = name.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise DeviceError("device 'mps' is not available on this machine; use cpu or auto")
        return torch.device("mps")
    match = re.fullmatch(r"cuda(?::(\d+))?", name)
    if match is None:
        raise DeviceError(f"unknown device {name!r}; use {_NAMES}")
    if not torch.cuda.is_available():
        raise DeviceError(
            f"device {name!r} asked for, but CUDA is not available on this machine "
            "(no NVIDIA GPU, or a CPU-only PyTorch build); use cpu or auto"
        )
    index = int(match.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise DeviceError(
            f"device {name!r} asked for, but this machine has {torch.cuda.device_count()} "
            f"CUDA device(s), numbered from 0"
        )
    return torch.device("cuda", index)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (the CPU for a model without any)."""
    for parameter in model.parameters():
        return parameter.device
    return torch.device("cpu")
