"""Writing small IDX files, valid or broken, for the data tests."""

from __future__ import annotations

import gzip
from pathlib import Path

import torch


def idx_bytes(values: torch.Tensor, *, magic: int | None = None) -> bytes:
    """The IDX encoding of a uint8 tensor (1-D labels or 3-D images)."""
    values = values.to(torch.uint8)
    if magic is None:
        magic = 0x0800 + values.dim()
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in values.shape)
    return header + values.numpy().tobytes()


def write_idx(path: Path, values: torch.Tensor, *, magic: int | None = None) -> Path:
    """Write ``values`` as IDX to ``path``, gzip-compressed if it ends in ``.gz``."""
    data = idx_bytes(values, magic=magic)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path
