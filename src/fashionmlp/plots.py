"""Figures of a training run, as PNG files (needs matplotlib: ``fashionmlp[plots]``).

matplotlib is imported inside each function and used through its object interface
(``Figure`` with the Agg canvas), so nothing here touches pyplot's global state or the
backend a user's own code has chosen.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ._files import os_error_fix
from .config import CLASSES
from .data import Split
from .errors import MissingExtraError, RunFolderError
from .records import EpochReport, FitResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "RUN_PLOTS",
    "plot_accuracy",
    "plot_confusion_matrix",
    "plot_curves",
    "plot_losses",
    "plot_misclassified",
    "plot_run",
    "plot_spread",
]

#: The figures :func:`plot_run` draws.
RUN_PLOTS = ("loss.png", "accuracy.png", "confusion_matrix.png", "misclassified.png")


def plot_run(
    folder: str | os.PathLike[str],
    result: FitResult,
    batch_losses: Sequence[tuple[int, float]],
    evaluated: Split,
    *,
    label_smoothing: float = 0.0,
) -> list[Path]:
    """Draw a finished run's figures (:data:`RUN_PLOTS`) in ``folder``; return the files.

    Args:
        folder: Where the PNG files go.
        result: The finished run.
        batch_losses: ``(global step, loss)`` pairs of the batches trained (a
            :class:`~fashionmlp.LossHistory`'s).
        evaluated: The images and labels the run was evaluated on, in loader order
            (see :func:`~fashionmlp.data.select_splits`), for the grid of
            misclassified images.
        label_smoothing: The training loss's, to mark its floor on the loss plot.

    Raises:
        MissingExtraError: matplotlib is not installed (``pip install 'fashionmlp[plots]'``).
        RunFolderError: A figure cannot be written (the message says why).
    """
    _require_matplotlib()
    folder = Path(folder)
    loss, accuracy, confusion, misclassified = (folder / name for name in RUN_PLOTS)
    try:
        drawn = [
            plot_losses(loss, batch_losses, result.history, label_smoothing=label_smoothing),
            plot_accuracy(accuracy, result.history),
            plot_confusion_matrix(confusion, result.final.confusion_matrix),
        ]
        if result.final.predictions is not None:
            predictions = result.final.predictions
            drawn.append(
                plot_misclassified(misclassified, evaluated.images, evaluated.labels, predictions)
            )
    except OSError as exc:
        raise RunFolderError(f"cannot write the plots in {folder}: {os_error_fix(exc)}") from exc
    return drawn


def plot_losses(
    path: str | os.PathLike[str],
    batch_losses: Sequence[tuple[int, float]],
    history: Sequence[EpochReport],
    *,
    label_smoothing: float = 0.0,
) -> Path:
    """Training loss per batch (thin), and per epoch with the evaluation loss (markers).

    With ``label_smoothing`` the legend says so: a smoothed training loss cannot go
    below a floor, so it sits above the (plain) evaluation loss.
    """
    figure = _figure(7, 4)
    axes = figure.add_subplot()
    if batch_losses:
        steps, losses = zip(*batch_losses)
        done = [step + 1 for step in steps]  # x is batches completed, as at epoch ends
        smoothed = f" (label smoothing {label_smoothing:g})" if label_smoothing else ""
        axes.plot(
            done, losses, linewidth=0.6, alpha=0.5, label=f"training loss{smoothed}, per batch"
        )
    if history:
        ends = [report.step for report in history]  # the global step at each epoch's end
        axes.plot(ends, [r.train.loss for r in history], "o-", label="training loss, epoch mean")
        evaluated = [(end, r.eval.loss) for end, r in zip(ends, history) if r.eval.loss is not None]
        if evaluated:
            axes.plot(*zip(*evaluated), "s-", label="evaluation loss")
    axes.set_xlabel("batches trained")
    axes.set_ylabel("loss")
    axes.set_title("Loss")
    axes.grid(alpha=0.3)
    axes.legend()
    return _save(figure, path)


def plot_accuracy(path: str | os.PathLike[str], history: Sequence[EpochReport]) -> Path:
    """Evaluation accuracy after every epoch."""
    figure = _figure(7, 4)
    axes = figure.add_subplot()
    axes.plot([r.epoch for r in history], [100 * r.eval.accuracy for r in history], "o-")
    axes.set_xlabel("epoch")
    axes.set_ylabel("accuracy (%)")
    best = max(history, key=lambda r: r.eval.accuracy)
    axes.set_title(
        f"Evaluation accuracy (last {100 * history[-1].eval.accuracy:.2f}%, "
        f"best {100 * best.eval.accuracy:.2f}% at epoch {best.epoch})"
    )
    axes.grid(alpha=0.3)
    return _save(figure, path)


def plot_confusion_matrix(path: str | os.PathLike[str], matrix: Sequence[Sequence[int]]) -> Path:
    """The confusion matrix with counts; rows are true classes, columns predictions."""
    counts = torch.tensor(matrix)
    figure = _figure(8, 7)
    axes = figure.add_subplot()
    image = axes.imshow(counts.numpy(), cmap="Blues")
    figure.colorbar(image, ax=axes, fraction=0.046)
    ticks = range(len(CLASSES))
    axes.set_xticks(ticks, CLASSES, rotation=45, ha="right")
    axes.set_yticks(ticks, CLASSES)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    threshold = float(counts.max()) / 2
    for row in ticks:
        for column in ticks:
            value = int(counts[row, column])
            axes.text(
                column,
                row,
                str(value),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if value > threshold else "black",
            )
    total = int(counts.sum())
    axes.set_title(f"Confusion matrix ({int(counts.trace())}/{total} correct)")
    return _save(figure, path)


def plot_misclassified(
    path: str | os.PathLike[str],
    images: torch.Tensor,
    labels: torch.Tensor,
    predictions: torch.Tensor,
    *,
    count: int = 36,
) -> Path:
    """A grid of the first ``count`` misclassified images, titled ``true → predicted``.

    Args:
        images: ``(N, 28, 28)`` or ``(N, 1, 28, 28)`` images (uint8 or float in [0, 1]).
        labels: True labels ``(N,)``.
        predictions: Predicted labels ``(N,)``.
    """
    wrong = (labels != predictions).nonzero().squeeze(1)[:count].tolist()
    columns = 6
    rows = max(1, -(-len(wrong) // columns))
    figure = _figure(columns * 1.9, rows * 2.1)
    for position, index in enumerate(wrong):
        axes = figure.add_subplot(rows, columns, position + 1)
        axes.imshow(images[index].reshape(28, 28).float().cpu().numpy(), cmap="gray")
        axes.set_title(
            f"{CLASSES[int(labels[index])]}\n→ {CLASSES[int(predictions[index])]}", fontsize=8
        )
        axes.axis("off")
    figure.suptitle(
        f"Misclassified test images: true → predicted ({int((labels != predictions).sum())} in all)"
    )
    return _save(figure, path)


def plot_spread(
    path: str | os.PathLike[str], runs: Sequence[Mapping[str, Any]], evaluated_on: str
) -> Path:
    """Accuracy per epoch over several seeds: each run's thin line, their mean, and the mean
    plus or minus one standard deviation as a band (``runs`` as a seed study's summary
    holds them: each with its ``seed`` and ``epochs``, the accuracy after each epoch).

    Raises:
        MissingExtraError: matplotlib is not installed.
    """
    _require_matplotlib()
    figure = _figure(7, 4)
    axes = figure.add_subplot()
    length = min(len(run["epochs"]) for run in runs)
    epochs = list(range(1, length + 1))
    curves = torch.tensor([run["epochs"][:length] for run in runs], dtype=torch.float64) * 100
    for run, curve in zip(runs, curves):
        axes.plot(epochs, curve.tolist(), linewidth=0.7, alpha=0.4, label=f"seed {run['seed']}")
    mean = curves.mean(0)
    axes.plot(epochs, mean.tolist(), "o-", color="black", label=f"mean of {len(runs)} seeds")
    if len(runs) > 1:
        std = curves.std(0)  # the sample standard deviation, as the summary's
        axes.fill_between(
            epochs,
            (mean - std).tolist(),
            (mean + std).tolist(),
            alpha=0.25,
            color="grey",
            label="mean ± std",
        )
    _whole_epochs(axes)
    axes.set_xlabel("epoch")
    axes.set_ylabel(f"{evaluated_on} accuracy (%)")
    axes.set_title(f"{evaluated_on.capitalize()} accuracy over seeds (final {mean[-1]:.2f}%)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    return _save(figure, path)


def plot_curves(
    path: str | os.PathLike[str],
    curves: Mapping[str, Sequence[float]],
    *,
    ylabel: str,
    title: str,
) -> Path:
    """Several runs' figures per epoch, overlaid, one line each (by name).

    Raises:
        MissingExtraError: matplotlib is not installed.
    """
    _require_matplotlib()
    figure = _figure(7, 4)
    axes = figure.add_subplot()
    for name, values in curves.items():
        axes.plot(range(1, len(values) + 1), list(values), "o-", markersize=3, label=name)
    _whole_epochs(axes)
    axes.set_xlabel("epoch")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    return _save(figure, path)


def _whole_epochs(axes: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    axes.xaxis.set_major_locator(MaxNLocator(integer=True))


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise MissingExtraError("plots need matplotlib: pip install 'fashionmlp[plots]'") from None


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    figure.savefig(path, dpi=110)
    return path
