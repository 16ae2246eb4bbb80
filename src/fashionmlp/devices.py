"""Turning a device name into a :class:`torch.device` that this machine has.

Importing this module does not import torch, so that the command line can check a device
name before it pays for that.
"""

from __future__ import annotations

import platform
import re
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import DeviceError

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "check_device_name",
    "model_device",
    "native_bfloat16",
    "processor_name",
    "resolve_device",
]

_NAMES = "cpu, cuda, cuda:N, mps or auto"
_GRAMMAR = re.compile(r"auto|cpu|mps|cuda(?::(\d+))?")


def check_device_name(name: str) -> str:
    """``name`` normalized (lower case, no spaces) if it is a device name at all.

    Whether this machine has that device is :func:`resolve_device`'s question.

    Raises:
        DeviceError: ``name`` is not one of cpu, cuda, cuda:N, mps, auto.

    Example:
        >>> from fashionmlp.devices import check_device_name
        >>> check_device_name(" CUDA:1 ")
        'cuda:1'
    """
    normalized = name.strip().lower()
    if _GRAMMAR.fullmatch(normalized) is None:
        raise DeviceError(f"unknown device {normalized!r}; use {_NAMES}")
    return normalized


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
    import torch

    name = check_device_name(str(name))
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
    if not torch.cuda.is_available():
        raise DeviceError(
            f"device {name!r} asked for, but CUDA is not available on this machine "
            "(no NVIDIA GPU, or a CPU-only PyTorch build); use cpu or auto"
        )
    index = int(name.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise DeviceError(
            f"device {name!r} asked for, but this machine has {torch.cuda.device_count()} "
            f"CUDA device(s), numbered from 0"
        )
    return torch.device("cuda", index)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (the CPU for a model without any)."""
    import torch

    for parameter in model.parameters():
        return parameter.device
    return torch.device("cpu")


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively: a CUDA GPU that supports it, or a CPU
    with AVX-512 BF16 or AMX instructions (elsewhere bfloat16 is emulated, and slower)."""
    import torch

    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        # These probes are private to torch.cpu; a torch without them gets float32.
        return any(getattr(torch.cpu, check, lambda: False)() for check in checks)
    return False


def processor_name(device: torch.device | None = None) -> str:
    """What computes on ``device``: a CUDA GPU's name, else the CPU's model name
    (``Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz``, say), as figures must name it."""
    if device is not None and device.type == "cuda":
        import torch

        return str(torch.cuda.get_device_name(device))
    try:  # Linux names the model here; platform.processor() often says only "x86_64"
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"
