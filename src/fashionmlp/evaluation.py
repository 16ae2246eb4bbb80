"""Evaluation under ``model.eval()`` and ``torch.no_grad()``, as the seed does it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn

from . import devices
from .devices import model_device
from .errors import InvalidArgumentError
from .records import CALIBRATION_BINS, TOP_K, EvalResult
from .step import LossFn, autocast_context, call_loss, input_dtype, to_model

__all__ = ["eval_mode", "evaluate"]


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
    dataloader: Iterable[Any],
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
        dataloader: Any iterable of ``(x, y)`` batches (``x`` goes to the model in its own
            floating-point dtype).
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
        InvalidArgumentError: ``dataloader`` yielded no batch, or one that is not a pair
            of tensors.

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
    dtype = input_dtype(model)
    counts: _Counts | None = None  # made at the first batch, when the classes are known
    with eval_mode(model):
        for batch in dataloader:
            x, y = to_model(batch, target, dtype, non_blocking=non_blocking)
            with autocast_context(target, autocast):
                pred = model(x)
                loss = call_loss(loss_fn, pred, y).float() if loss_fn is not None else None
            counts = counts or _Counts(pred.shape[1], target, keep_predictions)
            counts.add(x, y, pred, loss)
    if counts is None:
        raise InvalidArgumentError("the dataloader yielded no batches; is the dataset empty?")
    return counts.result(with_loss=loss_fn is not None)


class _Counts:
    """An evaluation's figures, summed on the device batch by batch and read once at the end.

    Beside the confusion matrix and the loss: the top-k hits, the labels' negative
    log-likelihood and the confidence bins of the calibration error. Samples with a label
    outside ``0..C-1`` and samples holding a NaN or infinite value are counted too, so
    checking for them costs no read of its own.
    """

    def __init__(self, classes: int, device: torch.device, keep_predictions: bool) -> None:
        self.classes = classes
        self.device = device
        self.ks = [k for k in TOP_K if k <= classes]
        self.confusion = torch.zeros(classes * classes, dtype=torch.int64, device=device)
        self.loss_sum = torch.zeros((), device=device)
        self.nll_sum = torch.zeros((), device=device)
        self.top_k = torch.zeros(len(self.ks), dtype=torch.int64, device=device)
        # per bin: samples, summed confidence, right answers
        self.bins = torch.zeros(3, CALIBRATION_BINS, device=device)
        self.bad_labels = torch.zeros((), dtype=torch.int64, device=device)
        self.bad_inputs = torch.zeros((), dtype=torch.int64, device=device)
        self.predicted: list[torch.Tensor] | None = [] if keep_predictions else None

    def add(
        self, x: torch.Tensor, y: torch.Tensor, pred: torch.Tensor, loss: torch.Tensor | None
    ) -> None:
        classes = self.classes
        if loss is not None:
            self.loss_sum += loss * len(x)
        labels = pred.argmax(1)
        valid = (y >= 0) & (y < classes)
        self.bad_labels += (~valid).sum()
        if x.is_floating_point():
            self.bad_inputs += (~torch.isfinite(x.reshape(len(x), -1))).any(1).sum()
        # index_add_ rather than bincount, which reads its input's maximum from the
        # device; a bad label counts nowhere rather than outside the matrix.
        cells = torch.where(valid, y * classes + labels, 0)
        self.confusion.index_add_(0, cells, valid.to(torch.int64))
        self._add_scores(pred, torch.where(valid, y, 0), labels, valid)
        if self.predicted is not None:
            self.predicted.append(labels)

    def _add_scores(
        self, pred: torch.Tensor, y: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor
    ) -> None:
        """Top-k hits, the labels' log-likelihood and the confidence bins, valid samples only."""
        log_probs = torch.log_softmax(pred.float(), dim=1)
        weight = valid.to(log_probs.dtype)
        self.nll_sum -= (log_probs.gather(1, y[:, None]).squeeze(1) * weight).sum()
        hits = (pred.topk(self.ks[-1], dim=1).indices == y[:, None]).cumsum(1)
        self.top_k += (hits[:, [k - 1 for k in self.ks]] * valid[:, None]).sum(0)
        confidence = log_probs.max(1).values.exp()
        which = (confidence * CALIBRATION_BINS).long().clamp_(0, CALIBRATION_BINS - 1)  # NaN: 0
        right = (labels == y).to(weight.dtype)
        for row, values in enumerate((weight, confidence * weight, right * weight)):
            self.bins[row].index_add_(0, which, values)

    def result(self, *, with_loss: bool) -> EvalResult:
        """The figures, summed over the processes under torchrun: the one read."""
        classes = self.classes
        wide = torch.float32 if self.device.type == "mps" else torch.float64  # MPS: no float64
        checks = torch.stack([self.bad_labels, self.bad_inputs]).to(wide)
        sums = torch.stack([self.loss_sum, self.nll_sum]).to(wide)
        parts = [self.confusion, sums, self.top_k, self.bins.reshape(-1), checks]
        figures = devices.reduce_sum(torch.cat([part.to(wide) for part in parts])).tolist()
        square, bins = classes * classes, 3 * CALIBRATION_BINS
        counts, figures = figures[:square], figures[square:]
        (loss_total, nll_total), figures = figures[:2], figures[2:]
        top_k, figures = figures[: len(self.ks)], figures[len(self.ks) :]
        binned, (labels_outside, inputs_not_finite) = figures[:bins], figures[bins:]
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
        predicted = self.predicted
        return EvalResult(
            correct=sum(matrix[index][index] for index in range(classes)),
            total=total,
            loss=loss_total / total if with_loss else None,
            confusion_matrix=matrix,
            top_k_correct=tuple(int(count) for count in top_k),
            nll_sum=nll_total,
            calibration=tuple(
                (binned[i], binned[CALIBRATION_BINS + i], binned[2 * CALIBRATION_BINS + i])
                for i in range(CALIBRATION_BINS)
            ),
            predictions=(
                devices.gather_strided(torch.cat(predicted)).cpu() if predicted else None
            ),
        )
