"""Saving and loading training state: atomic writes, ``weights_only`` loads.

A checkpoint is a plain dict of tensors and JSON-like values written with
:func:`torch.save`, so it loads with ``torch.load(path, weights_only=True)`` and loading
never runs code from the file.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._files import atomic_write
from .errors import CheckpointError

__all__ = ["Checkpoint", "load_checkpoint", "save_checkpoint"]

_FORMAT = "fashionmlp-checkpoint"
_VERSION = 1


@dataclass(frozen=True)
class Checkpoint:
    """What :func:`load_checkpoint` read."""

    #: The model's ``state_dict``.
    model_state: dict[str, torch.Tensor]
    #: The optimizer's ``state_dict``, if one was saved.
    optimizer_state: dict[str, Any] | None = None
    #: The learning-rate scheduler's ``state_dict``, if one was saved.
    scheduler_state: dict[str, Any] | None = None
    #: The number of epochs finished when it was saved.
    epoch: int | None = None
    #: The run's settings, as saved.
    config: dict[str, Any] = field(default_factory=dict)
    #: Anything else saved for resuming (random-number-generator states, history).
    state: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    epoch: int | None = None,
    config: dict[str, Any] | None = None,
    state: dict[str, Any] | None = None,
) -> Path:
    """Write the model's weights (and optionally training state) to ``path`` atomically.

    The file is written under a temporary name in the same folder and renamed over
    ``path`` only once complete, so a crash mid-write leaves any earlier file intact.

    Args:
        path: The file to write; its folder must exist.
        model: Its ``state_dict()`` is saved.
        optimizer: Its ``state_dict()`` is saved too, when given.
        scheduler: Its ``state_dict()`` is saved too, when given.
        epoch: Epochs finished, for resuming.
        config: JSON-like settings to keep with the weights.
        state: More to keep for resuming: tensors (such as ``torch.get_rng_state()``),
            and plain values, lists and dicts of them.

    Raises:
        CheckpointError: The file cannot be written.

    Example:
        >>> import tempfile, pathlib
        >>> from fashionmlp import FashionMLP, load_checkpoint, save_checkpoint
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = save_checkpoint(folder / "model.pt", FashionMLP(), epoch=3)
        >>> load_checkpoint(folder / "model.pt", FashionMLP()).epoch
        3
    """
    path = Path(path)
    try:
        # Only JSON-like values load under weights_only=True, so check that now,
        # not when someone tries to resume.
        plain_config = json.loads(json.dumps(config or {}))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"config must hold only JSON-like values: {exc}") from exc
    payload: dict[str, Any] = {
        "format": _FORMAT,
        "version": _VERSION,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "epoch": epoch,
        "config": plain_config,
        "state": dict(state or {}),
    }
    try:
        atomic_write(path, lambda handle: torch.save(payload, handle), replace=True)
    except OSError as exc:
        raise CheckpointError(
            f"cannot write checkpoint {path} ({exc.strerror or exc}); "
            "check that its folder exists and is writable"
        ) from exc
    return path


def load_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    map_location: str | torch.device = "cpu",
) -> Checkpoint:
    """Read a checkpoint with ``weights_only=True``; load it into what is given.

    ``model``, ``optimizer`` and ``scheduler``, when given, get their saved state.

    A bare ``state_dict`` (as ``torch.save(model.state_dict(), path)`` writes) is
    accepted too.

    Raises:
        CheckpointError: The file is missing, not a checkpoint, carries objects that are
            not plain weights (refused unloaded), or does not fit ``model``.
    """
    path = Path(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError as exc:
        raise CheckpointError(f"checkpoint {path} does not exist") from exc
    except IsADirectoryError as exc:
        raise CheckpointError(f"{path} is a folder; give the checkpoint file in it") from exc
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc))
        what = f" ({found.group(1)})" if found else ""
        raise CheckpointError(
            f"{path} holds objects other than tensors and plain values{what}, so it was "
            "refused without running them; only load files from sources you trust"
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint (truncated or another format): {exc}"
        ) from exc
    checkpoint = _parse(path, payload)
    if model is not None:
        try:
            model.load_state_dict(checkpoint.model_state)
        except RuntimeError as exc:
            raise CheckpointError(
                f"{path} does not fit this model (another architecture?): "
                + " ".join(str(exc).split())
            ) from exc
    if optimizer is not None:
        if checkpoint.optimizer_state is None:
            raise CheckpointError(f"{path} holds no optimizer state to resume from")
        try:
            optimizer.load_state_dict(checkpoint.optimizer_state)
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"{path}: optimizer state does not fit: {exc}") from exc
    if scheduler is not None:
        if checkpoint.scheduler_state is None:
            raise CheckpointError(f"{path} holds no scheduler state to resume from")
        scheduler.load_state_dict(checkpoint.scheduler_state)
    return checkpoint


def _parse(path: Path, payload: object) -> Checkpoint:
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path} is not a checkpoint (it holds a {type(payload).__name__})")
    if payload.get("format") == _FORMAT:
        return Checkpoint(
            model_state=payload["model"],
            optimizer_state=payload.get("optimizer"),
            scheduler_state=payload.get("scheduler"),
            epoch=payload.get("epoch"),
            config=payload.get("config") or {},
            state=payload.get("state") or {},
        )
    if payload and all(isinstance(value, torch.Tensor) for value in payload.values()):
        return Checkpoint(model_state=payload)  # a bare state_dict
    raise CheckpointError(f"{path} is not a fashionmlp checkpoint or a model state_dict")
