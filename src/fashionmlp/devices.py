"""Where a run runs: the device, the processes of a ``torchrun`` job, and the facts its
figures depend on.

:func:`resolve_device` turns a device name (``auto``, ``cpu``, ``cuda:1``, ...) into a
:class:`torch.device` this machine has. Under ``torchrun`` (a default process group) the
functions of the second part answer for the whole job: ranks, global sums, agreement; each
is a no-op, or answers for a single process, when there is no group, so library code calls
them unconditionally. :func:`environment` records what ``run.json`` keeps: accuracy moves
with the library and torch versions, and wall times with the processor, whether it
computes bfloat16 natively and the threads it was given, so a figure without them cannot
be compared with another.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any, TypeVar, cast

import torch
import torch.distributed as dist
from torch import nn

from ._version import __version__
from .config import check_device_name
from .errors import DeviceError

__all__ = [
    "all_finite",
    "broadcast_from_main",
    "environment",
    "gather_strided",
    "git_commit",
    "init_from_environment",
    "is_distributed",
    "is_main_process",
    "max_over_ranks",
    "model_device",
    "native_bfloat16",
    "processor_name",
    "rank",
    "reduce_sum",
    "resolve_device",
    "shutdown",
    "world_size",
]

T = TypeVar("T")


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
    for parameter in model.parameters():
        return parameter.device
    return torch.device("cpu")


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively: a CUDA GPU that supports it, or a CPU
    with AVX-512 BF16 or AMX instructions (elsewhere bfloat16 is emulated, and slower)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        # These probes are private to torch.cpu; a torch without them gets float32.
        for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
            if getattr(torch.cpu, probe, bool)():
                return True
    return False


def processor_name(device: torch.device | None = None) -> str:
    """What computes on ``device``: a CUDA GPU's name, else the CPU's model name
    (``Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz``, say), as figures must name it."""
    if device is not None and device.type == "cuda":
        return str(torch.cuda.get_device_name(device))
    try:  # Linux names the model here; platform.processor() often says only "x86_64"
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


# --- torchrun ---------------------------------------------------------------------------


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


# --- the facts a run's figures depend on -------------------------------------------------


def environment(device: torch.device, data_root: str | os.PathLike[str]) -> dict[str, object]:
    """The device, its processor and bfloat16 support, the thread count, the data root,
    the versions, the number of processes, and the library's git commit when it runs from a
    checkout."""
    return {
        "device": str(device),
        "processor": processor_name(device),
        "cpu": processor_name(),
        "native_bfloat16": native_bfloat16(device),
        "threads": torch.get_num_threads(),
        "data_root": str(data_root),
        "fashionmlp": __version__,
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "processes": world_size(),
        "git_commit": git_commit(),
    }


def git_commit(path: str | os.PathLike[str] | None = None) -> str | None:
    """The commit of the git checkout holding ``path`` (default: this library's source),
    with ``-dirty`` when its tracked files have changes; ``None`` outside a checkout or
    without git."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        head = _git(where, "rev-parse", "HEAD")
        changed = _git(where, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    if not head:
        return None
    return f"{head}-dirty" if changed else head


def _git(where: Path, *arguments: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(where), *arguments],
        capture_output=True,
        text=True,
        timeout=5,
        check=True,
    )
    return done.stdout.strip()
