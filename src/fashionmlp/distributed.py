"""Running under ``torchrun``: ranks, process groups and global figures.

Every function here is a no-op (or answers for a single process) when no default process
group is initialised, so library code calls them unconditionally.
"""

from __future__ import annotations

import os
from typing import Any, TypeVar, cast

import torch
import torch.distributed as dist

__all__ = [
    "all_finite",
    "broadcast_from_main",
    "gather_strided",
    "init_from_environment",
    "is_distributed",
    "is_main_process",
    "max_over_ranks",
    "rank",
    "reduce_sum",
    "shutdown",
    "world_size",
]


T = TypeVar("T")


def is_distributed() -> bool:
    """Whether a default process group is initialised (and has more than one process)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank, 0 when not distributed."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """The number of processes, 1 when not distributed."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """Whether this process is rank 0: the one that prints and writes files."""
    return rank() == 0


def reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of ``tensor`` over all processes (``tensor`` itself if alone).

    Sums in float64 or int64 so that counts and loss sums stay exact.
    """
    if not is_distributed():
        return tensor
    wide = tensor.to(torch.float64 if tensor.is_floating_point() else torch.int64)
    dist.all_reduce(wide, op=dist.ReduceOp.SUM)
    return wide


def gather_strided(tensor: torch.Tensor) -> torch.Tensor:
    """Every process's 1-D ``tensor``, interleaved back into the unsharded order.

    Rank ``r`` of ``W`` holds the items ``r, r + W, r + 2W, ...`` (the evaluation shards of
    :func:`~fashionmlp.make_loaders`); every process gets all the items, in index order.
    Alone, ``tensor`` itself.
    """
    if not is_distributed():
        return tensor
    world = world_size()
    lengths = [torch.zeros(1, dtype=torch.int64, device=tensor.device) for _ in range(world)]
    dist.all_gather(lengths, torch.tensor([len(tensor)], device=tensor.device))
    sizes = [int(length) for length in lengths]
    padded = torch.zeros(max(sizes), dtype=tensor.dtype, device=tensor.device)
    padded[: len(tensor)] = tensor
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    # Row i of the stack holds items i*W .. i*W + W - 1; the padding falls past the end.
    return torch.stack(parts, dim=1).reshape(-1)[: sum(sizes)]


def all_finite(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` is finite on every process; all processes get the same answer."""
    finite = torch.isfinite(tensor).all().to(torch.int64).reshape(1)
    if is_distributed():
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    return bool(finite)


def init_from_environment(device: torch.device) -> torch.device:
    """Join the process group ``torchrun`` describes in the environment, if any.

    Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) this initialises the default
    process group (NCCL for CUDA, gloo otherwise) and returns this process's device: on
    CUDA, ``cuda:LOCAL_RANK``. Without ``torchrun`` it returns ``device`` unchanged.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def max_over_ranks(value: int) -> int:
    """The largest ``value`` any process passed (``value`` itself when alone)."""
    if not is_distributed():
        return value
    device = torch.device("cpu")
    if dist.get_backend() == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())
    tensor = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def broadcast_from_main(value: T) -> T:
    """Rank 0's ``value`` on every process (``value`` itself when alone)."""
    if not is_distributed():
        return value
    box: list[Any] = [value]
    dist.broadcast_object_list(box, src=0)
    return cast(T, box[0])


def shutdown() -> None:
    """Leave the default process group, if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
