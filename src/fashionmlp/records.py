"""The plain records that training hands around: events, epoch figures, evaluations, results.

Every layer of the library makes or reads these, so they live at the bottom and import
nothing of the library's own: :class:`BatchEvent` (one trained batch, for callbacks),
:class:`EpochStats` (one call of :func:`~fashionmlp.train_epoch`), :class:`EvalResult` (one
call of :func:`~fashionmlp.evaluate`), :class:`EpochReport` (one epoch of
:func:`~fashionmlp.fit`) and :class:`FitResult` (what :func:`~fashionmlp.fit` returns).

Each is frozen. The ones kept in checkpoints and ``metrics.json`` turn into JSON-ready dicts
(their ``to_dict``, which adds the figures derived from the fields, such as ``accuracy``)
and back (their ``from_dict``, which reads every field, ignores the derived figures and
refuses anything else).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal, TypeVar

if TYPE_CHECKING:  # plain data: importing the records needs no torch
    import torch
    from torch import nn

__all__ = [
    "CALIBRATION_BINS",
    "TOP_K",
    "BatchEvent",
    "EpochReport",
    "EpochStats",
    "EvalResult",
    "FitResult",
    "StopAt",
]

#: Where a :class:`~fashionmlp.StopTraining` takes effect: right after the batch, or after
#: the epoch.
StopAt = Literal["batch", "epoch"]

_Record = TypeVar("_Record")


def _read(cls: type[_Record], data: object, derived: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fields of ``cls`` from ``data``: every one present, nothing unknown.

    ``derived`` names the figures :meth:`to_dict` adds, which are ignored.

    Raises:
        ValueError: ``data`` is not a dict, lacks a field or holds an unknown key.
    """
    if not isinstance(data, dict):
        raise ValueError(f"a {cls.__name__} must be a dict, got {type(data).__name__}")
    names = [f.name for f in dataclasses.fields(cls) if f.metadata.get("saved", True)]  # type: ignore[arg-type]
    missing = [name for name in names if name not in data]
    unknown = sorted(set(data) - set(names) - set(derived))
    if missing or unknown:
        raise ValueError(
            f"a {cls.__name__} lacks {', '.join(missing) or 'nothing'} and has unknown keys "
            f"{', '.join(unknown) or 'none'}"
        )
    return {name: data[name] for name in names}


@dataclass(frozen=True)
class BatchEvent:
    """One finished training batch, as seen by callbacks.

    Reading :attr:`loss` copies one number from the device (a sync on a GPU);
    callbacks that only need it every n batches should read it only then.
    """

    #: The epoch number passed to ``train_epoch`` (``None`` if none was passed).
    epoch: int | None
    #: Index of this batch in the epoch, from 0.
    batch: int
    #: Batches in the epoch (``len(dataloader)``), or ``None`` for a loader without a length
    #: (an ``IterableDataset``'s).
    num_batches: int | None
    #: Samples in this batch (``len(x)``).
    batch_size: int
    #: Samples trained on so far in this epoch, this batch included.
    samples_seen: int
    #: Samples in the dataset (``len(dataloader.dataset)``), or ``None`` when unknown.
    dataset_size: int | None
    #: The batch's loss, detached, on the training device.
    loss_tensor: torch.Tensor
    #: The run's global step, the optimizer steps before this one, counting across epochs
    #: and resumes (``train_epoch(first_step=...)``; by default ``(epoch - 1) * num_batches
    #: + batch`` when an epoch and a length are known, else ``batch``).
    step: int = 0
    #: The learning rate this batch's step used (the optimizer's first parameter group).
    lr: float | None = None

    @cached_property
    def loss(self) -> float:
        """The batch's loss as a Python float (read from the device on first access)."""
        return float(self.loss_tensor.item())

    @property
    def current(self) -> int:
        """The seed's ``current``: ``batch * len(x)``, the samples before this batch."""
        return self.batch * self.batch_size


@dataclass(frozen=True)
class EpochStats:
    """What one call of :func:`~fashionmlp.train_epoch` did: an epoch, or the part of one
    before a stop.

    Pass it back as ``train_epoch(carry=...)`` to finish an epoch that stopped part-way.
    """

    #: The epoch number passed in (``None`` if none was).
    epoch: int | None
    #: Sum of the per-sample training loss over the samples trained (``loss * samples``,
    #: kept exactly so that a resumed epoch adds up to the same figure).
    loss_sum: float
    #: Samples trained on.
    samples: int
    #: Batches trained (optimizer steps).
    batches: int
    #: Wall-clock seconds of training.
    seconds: float
    #: ``"batch"`` when a callback raised :class:`~fashionmlp.StopTraining` and the epoch
    #: ended right after that batch; ``"epoch"`` when one asked to stop after this epoch,
    #: which ran to its end; ``None`` otherwise.
    stop: StopAt | None = None

    @property
    def loss(self) -> float:
        """Mean training loss per sample."""
        return self.loss_sum / self.samples

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields and the mean ``loss``."""
        return {**dataclasses.asdict(self), "loss": self.loss}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EpochStats:
        """The figures :meth:`to_dict` wrote (``loss`` is derived, so it is not read).

        Raises:
            ValueError: A field is missing or a key unknown.
        """
        return cls(**_read(cls, data, derived=("loss",)))


#: The ``k`` of the top-k accuracies an evaluation counts (those up to its number of classes).
TOP_K = (1, 3, 5)
#: Equal-width confidence bins of the expected calibration error.
CALIBRATION_BINS = 15


@dataclass(frozen=True)
class EvalResult:
    """Accuracy, loss, confusion matrix and the figures researchers report, of one pass over
    a dataset.

    The fields are the counts and sums the evaluation adds up on the device; the figures
    derived from them (per-class precision, recall and F1 and their macro averages, top-k
    accuracy, expected calibration error, negative log-likelihood) are properties, so they
    cost no read of their own.
    """

    #: Samples whose arg-max prediction equals the label.
    correct: int
    #: Samples evaluated.
    total: int
    #: Mean loss per sample, or ``None`` when no ``loss_fn`` was given.
    loss: float | None
    #: ``confusion_matrix[true][predicted]`` counts; rows are true classes.
    confusion_matrix: tuple[tuple[int, ...], ...]
    #: Samples whose label is among the ``k`` highest logits, for each ``k`` of
    #: :data:`~fashionmlp.records.TOP_K` up to the number of classes (``()`` when not counted).
    top_k_correct: tuple[int, ...] = ()
    #: Sum over the samples of ``-log softmax(logits)[label]`` (``None`` when not counted).
    nll_sum: float | None = None
    #: Per confidence bin (``[i / B, (i + 1) / B)`` of the top softmax probability, ``B =``
    #: :data:`~fashionmlp.records.CALIBRATION_BINS`): samples, their summed confidence, and
    #: how many of them were right (``()`` when not counted).
    calibration: tuple[tuple[float, float, float], ...] = ()
    #: The predicted label of every sample, int64 ``(total,)`` on the CPU, in loader order,
    #: when ``evaluate(keep_predictions=True)``; else ``None``. Left out of comparisons and
    #: of :meth:`to_dict`.
    predictions: torch.Tensor | None = field(
        default=None, compare=False, repr=False, metadata={"saved": False}
    )

    @property
    def accuracy(self) -> float:
        """``correct / total``, in ``[0, 1]``."""
        return self.correct / self.total

    @property
    def per_class_accuracy(self) -> tuple[float, ...]:
        """Accuracy on each true class, its recall (``nan`` for a class with no samples)."""
        return tuple(
            row[index] / sum(row) if sum(row) else math.nan
            for index, row in enumerate(self.confusion_matrix)
        )

    @property
    def recall(self) -> tuple[float, ...]:
        """The recall of each class, the share of its samples predicted as it (``nan`` for a
        class with no samples)."""
        return self.per_class_accuracy

    @property
    def precision(self) -> tuple[float, ...]:
        """The precision of each class, the share of the samples predicted as it that are
        (``nan`` for a class never predicted)."""
        matrix = self.confusion_matrix
        columns = [sum(row[index] for row in matrix) for index in range(len(matrix))]
        return tuple(
            matrix[index][index] / column if column else math.nan
            for index, column in enumerate(columns)
        )

    @property
    def f1(self) -> tuple[float, ...]:
        """The F1 of each class, the harmonic mean of its precision and recall; 0 for a class
        never predicted right, or never predicted at all, and ``nan`` for one with no
        samples."""
        return tuple(
            math.nan if math.isnan(r) else 2 * p * r / (p + r) if r and p else 0.0
            for p, r in zip(self.precision, self.recall)
        )

    @property
    def present(self) -> tuple[int, ...]:
        """The classes present in the evaluation, those with samples or predicted (the
        labels scikit-learn's macro averages are over)."""
        matrix = self.confusion_matrix
        return tuple(
            index
            for index, row in enumerate(matrix)
            if sum(row) or sum(other[index] for other in matrix)
        )

    @property
    def macro_precision(self) -> float:
        """The mean of the precisions of the classes :attr:`present` (one never predicted
        counts as 0, as scikit-learn's ``average="macro", zero_division=0`` does)."""
        return self._macro(self.precision)

    @property
    def macro_recall(self) -> float:
        """The mean of the recalls of the classes :attr:`present` (one predicted but without
        samples counts as 0)."""
        return self._macro(self.recall)

    @property
    def macro_f1(self) -> float:
        """The mean of the F1 scores of the classes :attr:`present`."""
        return self._macro(self.f1)

    def _macro(self, values: tuple[float, ...]) -> float:
        present = self.present
        return sum(0.0 if math.isnan(values[i]) else values[i] for i in present) / len(present)

    @property
    def top_k_accuracy(self) -> dict[int, float]:
        """``{k: share of samples whose label is among the k highest logits}``."""
        return {k: count / self.total for k, count in zip(TOP_K, self.top_k_correct)}

    @property
    def nll(self) -> float | None:
        """Mean negative log-likelihood of the labels (the plain cross-entropy), or
        ``None`` when not counted."""
        return self.nll_sum / self.total if self.nll_sum is not None else None

    @property
    def ece(self) -> float | None:
        """The expected calibration error, over the confidence bins the mean gap between
        confidence and accuracy, weighted by the bin's share of the samples (``None`` when
        not counted)."""
        if not self.calibration:
            return None
        return sum(abs(confidence - right) for _, confidence, right in self.calibration) / (
            self.total
        )

    def scalars(self) -> dict[str, float]:
        """The one-number figures, by name, as loggers write them: ``accuracy``, ``loss``
        (when computed), ``top3_accuracy``, ``top5_accuracy``, the macro averages, ``nll``
        and ``ece`` (those counted)."""
        figures: dict[str, float | None] = {"accuracy": self.accuracy, "loss": self.loss}
        figures |= {f"top{k}_accuracy": v for k, v in self.top_k_accuracy.items() if k > 1}
        figures |= {name: getattr(self, name) for name in _MACROS}
        figures |= {"nll": self.nll, "ece": self.ece}
        return {name: value for name, value in figures.items() if value is not None}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the figures and the derived ones (no predictions)."""
        return {
            "correct": self.correct,
            "total": self.total,
            "loss": self.loss,
            "confusion_matrix": [list(row) for row in self.confusion_matrix],
            "top_k_correct": list(self.top_k_correct),
            "nll_sum": self.nll_sum,
            "calibration": [list(cell) for cell in self.calibration],
            "accuracy": self.accuracy,
            "per_class_accuracy": list(self.per_class_accuracy),
            **{name: list(getattr(self, name)) for name in ("precision", "recall", "f1")},
            **{name: getattr(self, name) for name in _MACROS},
            "top_k_accuracy": {str(k): value for k, value in self.top_k_accuracy.items()},
            "nll": self.nll,
            "ece": self.ece,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalResult:
        """The result :meth:`to_dict` wrote (the derived figures are not read).

        Raises:
            ValueError: A field is missing or a key unknown.
        """
        fields = _read(cls, data, derived=_DERIVED)
        fields["confusion_matrix"] = tuple(tuple(row) for row in fields["confusion_matrix"])
        fields["top_k_correct"] = tuple(fields["top_k_correct"])
        fields["calibration"] = tuple(tuple(cell) for cell in fields["calibration"])
        return cls(**fields)


_MACROS = ("macro_precision", "macro_recall", "macro_f1")
_DERIVED = (
    "accuracy",
    "per_class_accuracy",
    "precision",
    "recall",
    "f1",
    *_MACROS,
    "top_k_accuracy",
    "nll",
    "ece",
)


@dataclass(frozen=True)
class EpochReport:
    """What one epoch of :func:`~fashionmlp.fit` did."""

    #: The epoch, from 1.
    epoch: int
    #: The recipe's number of epochs.
    epochs: int
    #: The training pass.
    train: EpochStats
    #: The evaluation after it (test set, or validation split when one was asked for).
    eval: EvalResult
    #: Wall-clock seconds of training and evaluation so far, this epoch included.
    seconds: float
    #: Learning rate at the end of the epoch.
    lr: float
    #: Optimizer steps in the run so far, this epoch's included (the global step).
    step: int = 0
    #: ``"test"`` or ``"validation"``: what :attr:`eval` measured.
    evaluated_on: str = "test"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the form kept in checkpoints and ``metrics.json``)."""
        return {
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)},
            "train": self.train.to_dict(),
            "eval": self.eval.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EpochReport:
        """The report :meth:`to_dict` wrote.

        Raises:
            ValueError: A field is missing or a key unknown, here or in its parts.
        """
        fields = _read(cls, data)
        train, evaluation = fields.pop("train"), fields.pop("eval")
        return cls(
            **fields, train=EpochStats.from_dict(train), eval=EvalResult.from_dict(evaluation)
        )


@dataclass(frozen=True)
class FitResult:
    """What :func:`~fashionmlp.fit` returns."""

    #: The trained model (the module itself, never a ``DistributedDataParallel`` wrapper).
    model: nn.Module
    #: One report per epoch, resumed epochs included.
    history: tuple[EpochReport, ...]
    #: Whether all the recipe's epochs ran (false when stopped early).
    finished: bool
    #: ``"bfloat16"`` when the forward passes ran under bfloat16 autocast, else ``"float32"``.
    precision: Literal["float32", "bfloat16"]
    #: ``(epoch, batches trained in it)`` when a batch callback stopped the run part-way.
    stopped_at: tuple[int, int] | None = None
    #: The epoch whose weights :attr:`model` holds when it is not the last (a
    #: :class:`~fashionmlp.callbacks.KeepBest`'s), else ``None``.
    model_epoch: int | None = None

    @property
    def final(self) -> EvalResult:
        """The evaluation of the model returned, after the epoch whose weights it holds
        (:attr:`model_epoch`), by default the last (with every sample's predicted label when
        the run trained that epoch in this call)."""
        return self.history[(self.model_epoch or len(self.history)) - 1].eval
