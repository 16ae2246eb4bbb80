"""What ``train`` prints as a run goes, on rank 0 only."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .common import fail, plural

if TYPE_CHECKING:
    import torch

    from ..config import Recipe, RunConfig
    from ..records import BatchEvent, EpochReport

__all__ = ["RunConsole", "optimizer_summary"]


class RunConsole:
    """What ``train`` prints as the run goes: its header, the seed's loss lines or a
    progress bar, a line per epoch. Under ``torchrun`` only rank 0 prints."""

    def __init__(self, config: RunConfig, path: Path, *, resumed: bool, main: bool) -> None:
        self.config = config
        self.path = path
        self.resumed = resumed
        self.main = main
        self.resume_hint = f"resume with: fashionmlp train --resume {path}"
        self._progress: Any = None

    def say(self, line: str) -> None:
        if self.main:
            print(line, flush=True)

    def fail(self, message: str) -> None:
        if self.main:
            fail(message)

    def header(self, device: torch.device) -> str:
        recipe = self.config.recipe
        return (
            f"{'Resuming' if self.resumed else 'Training'} FashionMLP with recipe "
            f"{recipe.name!r} on {device}: {plural(recipe.epochs, 'epoch', 'epochs')}, batch "
            f"{recipe.batch_size}, {optimizer_summary(recipe)}, seed {self.config.seed}; "
            f"run folder {self.path}"
        )

    def callbacks(self, args: argparse.Namespace) -> list[object]:
        """The seed's loss lines, or a progress bar on a terminal; then this console."""
        from ..callbacks import PrintLoss, ProgressBar

        every = self.config.recipe.print_every
        if not self.main:
            return []
        if every:
            return [self._epoch_header, PrintLoss(every), self]
        if not args.no_progress and sys.stderr.isatty():
            with contextlib.suppress(ImportError):  # tqdm is optional: the lines come anyway
                self._progress = ProgressBar()
                return [self._progress, self]
        return [self]

    @staticmethod
    def _epoch_header(event: BatchEvent) -> None:
        """The seed tutorial's epoch header, printed before the epoch's first loss line."""
        if event.batch == 0:
            print(f"Epoch {event.epoch}\n-------------------------------", flush=True)

    def on_epoch_end(self, epoch: EpochReport) -> None:
        evaluated_on = self.config.evaluated_on
        loss = f", {evaluated_on} loss {epoch.eval.loss:.4f}" if epoch.eval.loss is not None else ""
        self.say(
            f"Epoch {epoch.epoch}/{epoch.epochs}: train loss {epoch.train.loss:.4f}, "
            f"{evaluated_on} accuracy {100 * epoch.eval.accuracy:.2f}%{loss}, "
            f"{epoch.train.seconds:.1f} s (total {epoch.seconds:.1f} s)"
        )

    def close(self) -> None:
        if self._progress is not None:
            self._progress.close()


def optimizer_summary(recipe: Recipe) -> str:
    """``sgd lr 0.01``; a Muon recipe has two rates: the hidden matrices' and AdamW's."""
    if recipe.optimizer == "muon":
        return f"muon lr {recipe.muon_lr} (hidden weights), adamw lr {recipe.lr} (the rest)"
    return f"{recipe.optimizer} lr {recipe.lr}"
