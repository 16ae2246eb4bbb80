"""Evaluation under ``model.eval()`` and ``torch.no_grad()``, as the seed does it."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from . import distributed
from .devices import model_device
from .errors import InvalidArgumentError
from .train import LossFn, autocast_context, call_loss

__all__ = ["EvalResult", "eval_mode", "evaluate"]


@dataclass(frozen=True)
class EvalResult:
    """Accuracy, loss and confusion matrix of one pass over a dataset."""

    #: Samples whose arg-max prediction equals the label.
    correct: int
    #: Samples evaluated.
    total: int
    #: Mean loss per sample, or ``None`` when no ``loss_fn`` was given.
    loss: float | None
    #: ``confusion_matrix[true][predicted]`` counts; rows are true classes.
    confusion_matrix: tuple[tuple[int, ...], ...]
    #: The predicted label of every sample, int64 ``(total,)`` on the CPU, in loader order,
    #: when ``evaluate(keep_predictions=True)``; else ``None``. Left out of comparisons and
    #: of :meth:`to_dict`.
    predictions: torch.Tensor | None = field(default=None, compare=False, repr=False)

    @property
    def accuracy(self) -> float:
        """``correct / total``, in ``[0, 1]``."""
        return self.correct / self.total

    @property
    def per_class_accuracy(self) -> tuple[float, ...]:
        """Accuracy on each true class (``nan`` for a class with no samples)."""
        return tuple(
            row[index] / sum(row) if sum(row) else math.nan
            for index, row in enumerate(self.confusion_matrix)
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the figures and the derived accuracies (no predictions)."""
        return {
            "correct": self.correct,
            "total": self.total,
            "loss": self.loss,
            "confusion_matrix": [list(row) for row in self.confusion_matrix],
            "accuracy": self.accuracy,
            "per_class_accuracy": list(self.per_class_accuracy),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalResult:
        """The result :meth:`to_dict` wrote (the accuracies are derived, so not read)."""
        return cls(
            correct=data["correct"],
            total=data["total"],
            loss=data["loss"],
            confusion_matrix=tuple(tuple(row) for row in data["confusion_matrix"]),
        )


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run the block with ``model`` in eval mode and without gradients; restore its mode.

    Example:
        >>> from fashionmlp import FashionMLP
        >>> from fashionmlp.evaluation import eval_mode
        >>> model = FashionMLP().train()
        >>> with eval_mode(model):
        ...     model.training
        False
        >>> model.training
        True
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def evaluate(
    dataloader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    model: nn.Module,
    loss_fn: LossFn | None = None,
    *,
    device: torch.device | str | None = None,
    autocast: torch.dtype | None = None,
    non_blocking: bool = False,
    keep_predictions: bool = False,
) -> EvalResult:
    """Evaluate ``model`` on every batch of ``dataloader``.

    Runs under ``model.eval()`` and ``torch.no_grad()``, then puts the model back in
    the mode it was in. Counts and sums stay on the device until the end, when they
    are read once. Under ``torchrun`` the counts, the loss and the confusion matrix are
    summed over all processes, so every rank returns the result for the whole dataset.

    Args:
        dataloader: Yields ``(x, y)`` batches.
        model: Produces logits ``(N, C)``; the confusion matrix is ``C x C``.
        loss_fn: If given, ``loss_fn(logits, y)`` (batch mean) is averaged per sample.
        device: Where batches go; defaults to the device of the model's parameters.
        autocast: Run the forward pass under :func:`torch.autocast` with this dtype.
        non_blocking: Copy batches to the device asynchronously.
        keep_predictions: Also return every sample's predicted label (one more read).
            Under ``torchrun`` the processes' labels are put back in the order of the
            whole evaluation set, which assumes rank-strided shards (rank ``r`` holding
            samples ``r, r + W, ...``), as :func:`~fashionmlp.make_loaders` builds them.

    Raises:
        InvalidArgumentError: ``dataloader`` yielded no batch.

    Example:
        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> from fashionmlp import FashionMLP, evaluate
        >>> data = TensorDataset(torch.rand(100, 1, 28, 28), torch.randint(0, 10, (100,)))
        >>> result = evaluate(DataLoader(data, batch_size=32), FashionMLP())
        >>> result.total, len(result.confusion_matrix)
        (100, 10)
    """
    target = torch.device(device) if device is not None else model_device(model)
    confusion: torch.Tensor | None = None  # flat (C * C,) counts, made at the first batch
    loss_sum = torch.zeros((), device=target)
    # Samples with a label outside 0..C-1, and with a NaN or infinite input: counted on the
    # device and read with the figures, so checking them costs no read of its own.
    bad_labels = torch.zeros((), dtype=torch.int64, device=target)
    bad_inputs = torch.zeros((), dtype=torch.int64, device=target)
    predicted: list[torch.Tensor] = []
    with eval_mode(model):
        for x, y in dataloader:
            x, y = x.to(target, non_blocking=non_blocking), y.to(target, non_blocking=non_blocking)
            with autocast_context(target, autocast):
                pred = model(x)
                if loss_fn is not None:
                    loss_sum += call_loss(loss_fn, pred, y).float() * len(x)
            classes = pred.shape[1]
            if confusion is None:
                confusion = torch.zeros(classes * classes, dtype=torch.int64, device=target)
            labels = pred.argmax(1)
            valid = (y >= 0) & (y < classes)
            bad_labels += (~valid).sum()
            if x.is_floating_point():
                bad_inputs += (~torch.isfinite(x.reshape(len(x), -1))).any(1).sum()
            # index_add_ rather than bincount, which reads its input's maximum from the
            # device; a bad label counts nowhere rather than outside the matrix.
            cells = torch.where(valid, y * classes + labels, 0)
            confusion.index_add_(0, cells, valid.to(torch.int64))
            if keep_predictions:
                predicted.append(labels)
    if confusion is None:
        raise InvalidArgumentError("the dataloader yielded no batches; is the dataset empty?")
    # Every figure in one tensor: one sum over processes under torchrun, one read.
    wide = torch.float32 if target.type == "mps" else torch.float64  # MPS has no float64
    checks = torch.stack([bad_labels, bad_inputs]).to(wide)
    figures = torch.cat([confusion.to(wide), loss_sum.to(wide).reshape(1), checks])
    *counts, loss_total, labels_outside, inputs_not_finite = distributed.reduce_sum(
        figures
    ).tolist()
    if labels_outside:
        raise InvalidArgumentError(
            f"the loader gave {int(labels_outside)} label(s) outside 0..{classes - 1}; this "
            f"model has {classes} classes, so each label must be one of them"
        )
    if inputs_not_finite:
        raise InvalidArgumentError(
            f"the loader gave {int(inputs_not_finite)} sample(s) holding NaN or infinite "
            "values; give finite pixel values"
        )
    matrix = tuple(
        tuple(int(count) for count in counts[row * classes : (row + 1) * classes])
        for row in range(classes)
    )
    total = sum(map(sum, matrix))
    return EvalResult(
        correct=sum(matrix[index][index] for index in range(classes)),
        total=total,
        loss=loss_total / total if loss_fn is not None else None,
        confusion_matrix=matrix,
        predictions=(
            distributed.gather_strided(torch.cat(predicted)).cpu() if keep_predictions else None
        ),
    )
