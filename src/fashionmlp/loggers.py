"""Loggers: callbacks that write a run's figures where researchers watch and compare runs.

A logger is a callback with ``on_batch_end`` (it writes a batch's loss every ``every``
steps) and ``on_epoch_end`` (it writes each :class:`~fashionmlp.EpochReport`); give it to
:func:`~fashionmlp.fit` in ``callbacks=`` and it gets both. In your own loop, pass it to
:func:`~fashionmlp.train_epoch` and call ``on_epoch_end`` yourself. Under ``torchrun`` only
the first process writes, so one set of files is written, once.

:class:`CSVLogger` appends rows and flushes each as it comes, so ``tail -f`` shows a run as
it goes; :class:`TensorBoardLogger` writes TensorBoard event files (``pip install
'fashionmlp[tensorboard]'``).
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import IO, Any

from . import distributed
from .errors import InvalidArgumentError, MissingExtraError
from .records import BatchEvent, EpochReport

__all__ = ["BATCH_COLUMNS", "EPOCH_COLUMNS", "CSVLogger", "TensorBoardLogger"]

#: The columns of an epoch CSV, which has one row per finished epoch.
EPOCH_COLUMNS = (
    "epoch",
    "step",
    "train_loss",
    "eval_loss",
    "eval_accuracy",
    "lr",
    "seconds",
    "evaluated_on",
)
#: The columns of a batch CSV, which has one row every ``every`` steps.
BATCH_COLUMNS = ("step", "epoch", "batch", "loss", "lr")


def _check_every(every: int) -> int:
    if isinstance(every, bool) or not isinstance(every, int) or every < 0:
        raise InvalidArgumentError(f"every must be a whole number, 0 or more, got {every!r}")
    return every


class _CSVFile:
    """One CSV file, appended to row by row; a resumed run continues it.

    Rows whose key (the first column) the file holds already are not written again: an
    epoch a resumed run trains a second time (it was logged, but its checkpoint was not yet
    written when the run stopped) keeps its one row.
    """

    def __init__(self, path: Path, columns: tuple[str, ...]) -> None:
        self.path = path
        self.columns = columns
        rows: list[list[str]] = []
        if path.exists():
            with open(path, newline="") as handle:
                rows = list(csv.reader(handle))
        if rows and tuple(rows[0]) != columns:
            raise InvalidArgumentError(
                f"{path} is not a fashionmlp log with the columns {', '.join(columns)}; "
                "choose another file"
            )
        self.keys = {row[0] for row in rows[1:] if row}
        self._handle: IO[str] | None = open(path, "a", newline="")  # noqa: SIM115  # kept open
        if not rows:  # new or empty: the file is there, with its header, from the start
            csv.writer(self._handle).writerow(columns)
            self._handle.flush()

    def write(self, row: tuple[object, ...]) -> None:
        key = str(row[0])
        if key in self.keys or self._handle is None:
            return
        csv.writer(self._handle).writerow(row)
        self._handle.flush()  # so that tail -f, and a run stopped now, see the row
        self.keys.add(key)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


class CSVLogger:
    """Each finished epoch as a CSV row, and with ``batches_path`` a batch's loss every
    ``every`` steps, appended and flushed as they come.

    The epoch columns are :data:`EPOCH_COLUMNS`: the epoch, the global step at its end, the
    training loss, the evaluation loss and accuracy, the learning rate, the wall seconds so
    far and which split was evaluated. A run resumed with the same files continues them
    without repeating or losing a row.

    Args:
        path: The epoch CSV (``metrics.csv`` in a ``fashionmlp train`` run folder), or
            ``None`` for batches only.
        batches_path: A CSV for batch losses (:data:`BATCH_COLUMNS`), or ``None``.
        every: Steps between two batch rows (each is one read of the loss from the device).

    Raises:
        InvalidArgumentError: A file exists with other columns, or neither file is given.

    Example:
        .. code-block:: python

            logger = CSVLogger("runs/x/metrics.csv", batches_path="runs/x/batches.csv")
            fit(get_recipe("fast"), callbacks=[logger])
            logger.close()
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        batches_path: str | os.PathLike[str] | None = None,
        every: int = 100,
    ) -> None:
        if path is None and batches_path is None:
            raise InvalidArgumentError("give path (epochs), batches_path (batches), or both")
        self.every = _check_every(every)
        # Only the first process writes under torchrun: the others open no file at all.
        main = distributed.is_main_process()
        self._epochs = _CSVFile(Path(path), EPOCH_COLUMNS) if main and path else None
        self._batches = (
            _CSVFile(Path(batches_path), BATCH_COLUMNS) if main and batches_path else None
        )

    def on_batch_end(self, event: BatchEvent) -> None:
        """Append the batch's loss on steps ``0, every, 2 * every, ...``."""
        if self._batches is None or not self.every or event.step % self.every:
            return
        self._batches.write((event.step, event.epoch, event.batch, event.loss, event.lr))

    __call__ = on_batch_end

    def on_epoch_end(self, report: EpochReport) -> None:
        """Append the epoch's row."""
        if self._epochs is not None:
            self._epochs.write(_epoch_row(report))

    def close(self) -> None:
        """Close the files (they are complete after every row anyway)."""
        for log in (self._epochs, self._batches):
            if log is not None:
                log.close()


def _epoch_row(report: EpochReport) -> tuple[object, ...]:
    return (
        report.epoch,
        report.step,
        report.train.loss,
        report.eval.loss if report.eval.loss is not None else "",
        report.eval.accuracy,
        report.lr,
        report.seconds,
        report.evaluated_on,
    )


class TensorBoardLogger:
    """TensorBoard event files: the batch loss and learning rate every ``every`` steps, and
    per epoch the training and evaluation losses, the accuracy and the learning rate.

    Every scalar is logged at the run's global step (batches trained since it began), so
    runs line up on one axis, and a resumed run carries on where it stopped.
    ``tensorboard --logdir runs`` then shows every run under ``runs/``, side by side.

    Needs the ``tensorboard`` package (``pip install 'fashionmlp[tensorboard]'``); it is
    imported when the logger is made.

    Args:
        log_dir: The folder for the event files (made if needed).
        every: Steps between two batch points (each is one read of the loss).

    Raises:
        MissingExtraError: tensorboard is not installed.
    """

    def __init__(self, log_dir: str | os.PathLike[str], *, every: int = 50) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise MissingExtraError(
                "TensorBoard logging needs tensorboard: pip install 'fashionmlp[tensorboard]'"
            ) from None
        self.every = _check_every(every)
        self.log_dir = Path(log_dir)
        # Only the first process writes under torchrun: the others make no writer at all.
        self._writer: Any = (
            SummaryWriter(str(self.log_dir)) if distributed.is_main_process() else None
        )

    def on_batch_end(self, event: BatchEvent) -> None:
        """Log the batch's loss and learning rate on steps ``0, every, 2 * every, ...``."""
        if self._writer is None or not self.every or event.step % self.every:
            return
        self._writer.add_scalar("train/batch_loss", event.loss, event.step)
        if event.lr is not None:
            self._writer.add_scalar("train/lr", event.lr, event.step)

    __call__ = on_batch_end

    def on_epoch_end(self, report: EpochReport) -> None:
        """Log the epoch's losses, accuracy and learning rate, and flush."""
        if self._writer is None:
            return
        split = report.evaluated_on
        scalars = {
            "epoch/train_loss": report.train.loss,
            f"epoch/{split}_accuracy": report.eval.accuracy,
            "epoch/lr": report.lr,
        }
        if report.eval.loss is not None and math.isfinite(report.eval.loss):
            scalars[f"epoch/{split}_loss"] = report.eval.loss
        for tag, value in scalars.items():
            self._writer.add_scalar(tag, value, report.step)
        self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        if self._writer is not None:
            self._writer.close()
