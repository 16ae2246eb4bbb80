"""What a training step and an evaluation step share: unpacking a batch, moving it to the
model's device and dtype, autocast, and calling the loss.

:func:`~fashionmlp.train_epoch` and :func:`~fashionmlp.evaluate` both use these, so a batch
reaches a model the same way in both, and a mistake in it is reported the same way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn

from .errors import InvalidArgumentError

__all__ = ["LossFn", "autocast_context", "call_loss", "input_dtype", "to_model"]

#: A loss function, ``loss_fn(logits, targets)``, returning the batch's mean loss.
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

_BATCH = (
    "each batch must be a pair (x, y) of tensors, as a DataLoader over a "
    "TensorDataset(images, labels) gives"
)


def input_dtype(model: nn.Module) -> torch.dtype:
    """The dtype a model's input should have: that of its first floating-point parameter
    (float32 for a model without one)."""
    for parameter in model.parameters():
        if parameter.is_floating_point():
            return parameter.dtype
    return torch.float32


def to_model(
    batch: object, device: torch.device, dtype: torch.dtype, *, non_blocking: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch ``(x, y)`` on ``device``, floating-point ``x`` in the model's ``dtype``.

    A model in float64 or bfloat16 gets its input in its own precision, as ``FashionMLP``
    converts it itself; the labels keep theirs.

    Raises:
        InvalidArgumentError: The batch is not a pair of tensors (a dict, a 3-tuple, ...).
    """
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        kind = f"a {len(batch)}-tuple" if isinstance(batch, (tuple, list)) else type(batch).__name__
        raise InvalidArgumentError(f"{_BATCH}; got {kind}")
    x, y = batch
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise InvalidArgumentError(f"{_BATCH}; got ({type(x).__name__}, {type(y).__name__})")
    x = x.to(device, dtype=dtype if x.is_floating_point() else None, non_blocking=non_blocking)
    return x, y.to(device, non_blocking=non_blocking)


def call_loss(loss_fn: LossFn, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``loss_fn(pred, y)``; a label outside the model's classes becomes our error.

    The labels are looked at only when the loss function fails, so a good batch costs no
    read; torch reports a bad label on the CPU as an IndexError or RuntimeError.
    """
    try:
        return loss_fn(pred, y)
    except (IndexError, RuntimeError) as exc:
        classes = pred.shape[-1]
        if y.dtype.is_floating_point or not bool(((y < 0) | (y >= classes)).any()):
            raise
        raise InvalidArgumentError(
            f"a label of {int(y[(y < 0) | (y >= classes)][0])} is outside 0..{classes - 1}: "
            f"this model has {classes} classes, so each label must be one of them"
        ) from exc


def autocast_context(
    device: torch.device, dtype: torch.dtype | None
) -> contextlib.AbstractContextManager[object]:
    """``torch.autocast`` on ``device`` with ``dtype``, or nothing when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
