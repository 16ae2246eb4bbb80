"""CSV logs of a run: one row per epoch, and batch losses, appended and flushed as they come."""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import IO

from .._files import atomic_write, os_error_fix, read_regular_file
from ..callbacks import Run, check_every
from ..devices import is_main_process
from ..errors import InvalidArgumentError, RunFolderError
from ..records import BatchEvent, EpochReport

__all__ = ["BATCH_COLUMNS", "EPOCH_COLUMNS", "CSVLogger"]

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
    "eval_top3_accuracy",
    "eval_top5_accuracy",
    "eval_macro_precision",
    "eval_macro_recall",
    "eval_macro_f1",
    "eval_nll",
    "eval_ece",
)
#: The evaluation figures of an epoch row after ``evaluated_on`` (see EvalResult.scalars).
_EXTRA_FIGURES = tuple(column.removeprefix("eval_") for column in EPOCH_COLUMNS[8:])
#: The columns of a batch CSV, which has one row every ``every`` steps.
BATCH_COLUMNS = ("step", "epoch", "batch", "loss", "lr")


class _CSVFile:
    """One CSV file of ours, appended to row by row.

    Read when made (unless it is a run's own file, to be rewritten), so that a file of
    something else is refused before anything is written; rows whose key (the first
    column) the file holds already are not written again. :meth:`restart` rewrites it with
    exactly the rows given: a resumed run's truth, from its checkpoint.
    """

    def __init__(self, path: Path, columns: tuple[str, ...], *, read: bool) -> None:
        self.path = path
        self.columns = columns
        self.rows = self._read() if read else []
        self.keys = {row[0] for row in self.rows if row}
        self._handle: IO[str] | None = None
        if read:
            self._open(header=not self.rows and not self._has_header)

    @property
    def _has_header(self) -> bool:
        return self.path.exists() and self.path.stat().st_size > 0

    def _read(self) -> list[list[str]]:
        """The rows after the header, of a file of ours with these columns, or none."""
        if not self.path.exists():
            return []
        data = read_regular_file(self.path, limit=_MAX_LOG_BYTES, error=InvalidArgumentError)
        try:
            rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
        except (UnicodeDecodeError, csv.Error) as exc:
            raise InvalidArgumentError(
                f"{self.path} is not a CSV log of ours ({exc}); move it away, or log to "
                "another file"
            ) from None
        if rows and tuple(rows[0]) != self.columns:
            raise InvalidArgumentError(
                f"{self.path} is not a fashionmlp log with the columns "
                f"{', '.join(self.columns)}; choose another file"
            )
        return rows[1:]

    def _open(self, *, header: bool) -> None:
        try:
            self._handle = open(self.path, "a", newline="")  # kept open
            if header:  # new or empty: the file is there, with its header, from the start
                csv.writer(self._handle).writerow(self.columns)
                self._handle.flush()
        except OSError as exc:
            raise RunFolderError(f"cannot write {self.path}: {os_error_fix(exc, 'file')}") from exc

    def restart(self, rows: list[tuple[object, ...]] | list[list[str]]) -> None:
        """Rewrite the file (atomically) with its header and exactly ``rows``."""
        self.close()
        text = io.StringIO(newline="")
        csv.writer(text).writerows([self.columns, *rows])
        try:
            atomic_write(self.path, text.getvalue().encode(), replace=True)
        except IsADirectoryError:
            raise InvalidArgumentError(f"{self.path} is a folder; move it away") from None
        except OSError as exc:
            raise RunFolderError(f"cannot write {self.path}: {os_error_fix(exc, 'file')}") from exc
        self.keys = {str(row[0]) for row in rows if row}
        self._open(header=False)

    def write(self, row: tuple[object, ...]) -> None:
        key = str(row[0])
        if key in self.keys:
            return
        if self._handle is None:
            self.restart([])  # a run's own file, not read: it starts afresh
        assert self._handle is not None
        csv.writer(self._handle).writerow(row)
        self._handle.flush()  # so that tail -f, and a run stopped now, see the row
        self.keys.add(key)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


#: A log larger than this is not one of ours to read back.
_MAX_LOG_BYTES = 1 << 30


class CSVLogger:
    """Each finished epoch as a CSV row, and with ``batches_path`` a batch's loss every
    ``every`` steps, appended and flushed as they come.

    The epoch columns are :data:`~fashionmlp.loggers.csv_logger.EPOCH_COLUMNS`: the epoch, the global step at its end, the
    training loss, the evaluation loss and accuracy, the learning rate, the wall seconds so
    far and which split was evaluated. A run resumed with the same files continues them
    without repeating or losing a row: given to :func:`~fashionmlp.fit`, the epoch file is
    rewritten at the run's start from the checkpoint's history, the truth (a row cut short
    by a crash, or one that is not the run's, is replaced), and the batch file keeps only
    the steps the checkpoint had trained.

    Args:
        path: The epoch CSV (``metrics.csv`` in a ``fashionmlp train`` run folder), or
            ``None`` for batches only.
        batches_path: A CSV for batch losses (:data:`~fashionmlp.loggers.csv_logger.BATCH_COLUMNS`), or ``None``.
        every: Steps between two batch rows (each is one read of the loss from the device).
        rewrite: The files are the run's own (a run folder's): they are not read, and are
            rewritten from the run's history at its start, whatever they held.

    Raises:
        InvalidArgumentError: A file exists with other columns or is not a CSV log (unless
            ``rewrite``), or neither file is given.
        RunFolderError: A file cannot be written (read-only, full, permission denied).

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
        rewrite: bool = False,
    ) -> None:
        if path is None and batches_path is None:
            raise InvalidArgumentError("give path (epochs), batches_path (batches), or both")
        self.every = check_every(every)
        self.rewrite = rewrite
        # Only the first process writes under torchrun: the others open no file at all.
        main = is_main_process()
        files = [
            _CSVFile(Path(name), columns, read=not rewrite) if main and name else None
            for name, columns in ((path, EPOCH_COLUMNS), (batches_path, BATCH_COLUMNS))
        ]
        self._epochs, self._batches = files

    def on_fit_start(self, run: Run) -> None:
        """Bring the files of a resumed run (or the run's own files) to what its checkpoint
        holds: one epoch row per epoch of its history, and the batch rows of the steps it had
        trained. A new run's existing log of ours is continued as it is."""
        resumed = bool(run.history) or run.partial is not None
        if not resumed and not self.rewrite:
            return
        if self._epochs is not None:
            self._epochs.restart([_epoch_row(report) for report in run.history])
        if self._batches is not None:
            trained = run.steps_done + (run.partial.batches if run.partial else 0)
            kept = [row for row in self._batches.rows if _step(row) < trained]
            self._batches.restart(kept)

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


def _step(row: list[str]) -> float:
    """A batch row's step; a row cut short or garbled counts as past every step."""
    try:
        return int(row[0])
    except (IndexError, ValueError):
        return math.inf


def _epoch_row(report: EpochReport) -> tuple[object, ...]:
    figures = report.eval.scalars()
    return (
        report.epoch,
        report.step,
        report.train.loss,
        report.eval.loss if report.eval.loss is not None else "",
        report.eval.accuracy,
        report.lr,
        report.seconds,
        report.evaluated_on,
        *(figures.get(name, "") for name in _EXTRA_FIGURES),
    )
