"""TensorBoard event files of a run, its hyperparameters with its final figures included."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from .._files import os_error_fix
from ..callbacks import Run, check_every, run_params
from ..devices import is_main_process
from ..errors import MissingExtraError, RunFolderError
from ..records import BatchEvent, EpochReport, FitResult

__all__ = ["TensorBoardLogger"]


class TensorBoardLogger:
    """TensorBoard event files: the batch loss and learning rate every ``every`` steps, per
    epoch the training and evaluation figures and the learning rate, and at the end the
    run's hyperparameters with its final figures, for TensorBoard's HParams tab.

    Every scalar is logged at the run's global step (batches trained since it began), so
    runs line up on one axis, and a resumed run carries on where it stopped.
    ``tensorboard --logdir runs`` then shows every run under ``runs/``, side by side, and
    its HParams tab a table of their settings (the recipe's every field, the seed, the
    split) against their final accuracy, loss, macro F1, top-5 accuracy, NLL and ECE
    (``hparams/...``), written together in the run's own event files, as the tab needs.

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
        self.every = check_every(every)
        self.log_dir = Path(log_dir)
        # Only the first process writes under torchrun: the others make no writer at all.
        self._writer: Any = None
        self._hparams: dict[str, bool | int | float | str] | None = None
        if is_main_process():
            try:
                self._writer = SummaryWriter(str(self.log_dir))
            except OSError as exc:
                raise RunFolderError(
                    f"cannot write {self.log_dir}: {os_error_fix(exc, 'folder')}"
                ) from exc

    def on_fit_start(self, run: Run) -> None:
        """Note the run's hyperparameters, written with its final figures at the end."""
        config = run.config
        params = run_params(config)
        params["limit"] = config.limit or 0  # the HParams tab sorts numbers, not None
        params["evaluated_on"] = config.evaluated_on
        # The HParams plugin takes numbers, text and booleans; a list is shown as text.
        self._hparams = {
            key: value if isinstance(value, (bool, int, float, str)) else json.dumps(value)
            for key, value in params.items()
        }

    def on_fit_end(self, result: FitResult) -> None:
        """Write the hyperparameters and the final figures (``hparams/<split>_<figure>``,
        those of the model returned: :attr:`FitResult.final <fashionmlp.FitResult.final>`)
        into the run's event files, so that the HParams tab shows them together."""
        if self._writer is None or self._hparams is None or not result.history:
            return
        from torch.utils.tensorboard.summary import hparams

        last = result.history[-1]  # the figures are the model's: the kept epoch's, if any
        metrics = {
            f"hparams/{last.evaluated_on}_{name}": value
            for name, value in result.final.scalars().items()
            if math.isfinite(value)
        }
        writer = self._writer._get_file_writer()
        for summary in hparams(self._hparams, metrics):  # type: ignore[no-untyped-call]
            writer.add_summary(summary)
        for tag, value in metrics.items():
            self._writer.add_scalar(tag, value, last.step)
        self._writer.flush()

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
        scalars = {"epoch/train_loss": report.train.loss, "epoch/lr": report.lr}
        scalars |= {f"epoch/{split}_{name}": v for name, v in report.eval.scalars().items()}
        for tag, value in scalars.items():
            if math.isfinite(value):
                self._writer.add_scalar(tag, value, report.step)
        self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        if self._writer is not None:
            self._writer.close()
