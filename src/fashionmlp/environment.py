"""Where a run ran: the facts its figures depend on, recorded in ``run.json``.

Accuracy moves with the library and torch versions, and wall times with the processor,
whether it computes bfloat16 natively, and the threads it was given; a figure without them
cannot be compared with another.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import torch

from . import distributed
from ._version import __version__
from .devices import native_bfloat16, processor_name

__all__ = ["environment", "git_commit"]


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
        "processes": distributed.world_size(),
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
