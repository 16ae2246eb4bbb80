"""The state of one training run, saved and loaded whole: what :func:`~fashionmlp.fit` resumes.

:class:`RunConfig` is the settings that decide a run's result; :class:`TrainState` is
everything else a run needs to continue (weights, optimizer and schedule, random-number
generators, the epochs done and the progress inside the current one). A checkpoint holds
both, and loading refuses one written with other settings, or with keys it would not use.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .checkpoint import load_checkpoint, save_checkpoint
from .devices import model_device
from .errors import CheckpointError, InvalidArgumentError
from .evaluation import EvalResult
from .recipes import Recipe
from .train import EpochStats

__all__ = ["EpochReport", "RunConfig", "TrainState"]


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides a run's result besides the device: a resume must match it.

    Example:
        >>> from fashionmlp import RunConfig, get_recipe
        >>> config = RunConfig(get_recipe("seed"), seed=3)
        >>> RunConfig.from_dict(config.to_dict()) == config
        True
    """

    #: How to train.
    recipe: Recipe
    #: Seeds the model's initialisation, the shuffle and the augmentation.
    seed: int = 0
    #: Use only the first ``limit`` samples of each split.
    limit: int | None = None
    #: Evaluate on this many held-out training images instead of the test set.
    validation_size: int = 0

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise InvalidArgumentError(f"limit must be at least 1, got {self.limit}")
        if not 0 <= self.validation_size < 60_000:
            raise InvalidArgumentError(
                f"validation_size must be between 0 and 59999, got {self.validation_size}"
            )

    @property
    def evaluated_on(self) -> str:
        """``"validation"`` or ``"test"``: what the run's evaluations measure."""
        return "validation" if self.validation_size else "test"

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict."""
        return {
            "recipe": self.recipe.to_dict(),
            "seed": self.seed,
            "limit": self.limit,
            "validation_size": self.validation_size,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """The config :meth:`to_dict` wrote.

        Raises:
            InvalidArgumentError: A key is missing or unknown, or a value out of range.
        """
        expected = {field.name for field in dataclasses.fields(cls)}
        if set(data) != expected:
            raise InvalidArgumentError(
                f"a run config needs exactly the keys {', '.join(sorted(expected))}; "
                f"got {', '.join(sorted(data)) or 'none'}"
            )
        return cls(**{**data, "recipe": Recipe.from_dict(data["recipe"])})


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
            "epoch": self.epoch,
            "epochs": self.epochs,
            "train": self.train.to_dict(),
            "eval": self.eval.to_dict(),
            "seconds": self.seconds,
            "lr": self.lr,
            "step": self.step,
            "evaluated_on": self.evaluated_on,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EpochReport:
        """The report :meth:`to_dict` wrote."""
        return cls(
            epoch=data["epoch"],
            epochs=data["epochs"],
            train=EpochStats.from_dict(data["train"]),
            eval=EvalResult.from_dict(data["eval"]),
            seconds=data["seconds"],
            lr=data["lr"],
            step=data["step"],
            evaluated_on=data["evaluated_on"],
        )


#: What a checkpoint of a :class:`TrainState` keeps besides weights, optimizer and schedule.
_RESUME_KEYS = frozenset({"torch_rng", "cuda_rng", "loader_rng", "history", "partial"})


class TrainState:
    """One training run, as it stands: what it takes to continue it on another day.

    It holds the model, optimizer and schedule, the loader's random generator, the reports
    of the epochs done and, when the run stopped part-way through an epoch, that epoch's
    progress. :meth:`save` and :meth:`load` write and read all of it as one checkpoint.

    The epoch loop asks it where to begin (:meth:`start_epoch`) and tells it how each epoch
    ended (:meth:`stop_within_epoch`, :meth:`finish_epoch`); the bookkeeping of resuming
    lives here, so that the loop only trains.

    Args:
        config: The run's settings; a checkpoint of other settings is refused.
        model: The model (the module itself, not a ``DistributedDataParallel`` wrapper).
        optimizer: Its optimizer.
        scheduler: Its learning-rate schedule, if any.
        generator: The training loader's random generator (order and augmentation).
    """

    def __init__(
        self,
        config: RunConfig,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None,
        generator: torch.Generator,
    ) -> None:
        self.config = config
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.generator = generator
        #: The reports of the epochs done, in order.
        self.history: list[EpochReport] = []
        #: The current epoch's progress when the run stopped part-way through it.
        self.partial: EpochStats | None = None
        self._epoch_start_rng = generator.get_state()

    @property
    def epochs_done(self) -> int:
        """Epochs finished (trained and evaluated)."""
        return len(self.history)

    @property
    def seconds(self) -> float:
        """Wall-clock seconds of the finished epochs."""
        return self.history[-1].seconds if self.history else 0.0

    @property
    def steps_done(self) -> int:
        """The optimizer steps of the finished epochs (the global step the next one starts at)."""
        return self.history[-1].step if self.history else 0

    def start_epoch(self) -> EpochStats | None:
        """Begin the next epoch; return the progress to carry into it, if any.

        Remembers the loader's random state as the epoch begins; for an epoch that stopped
        part-way, goes back to that state, so that the epoch's draws repeat.
        """
        if self.partial is not None:
            self.generator.set_state(self._epoch_start_rng)
        else:
            self._epoch_start_rng = self.generator.get_state()
        return self.partial

    def stop_within_epoch(self, progress: EpochStats) -> None:
        """Record that the run stopped part-way through the current epoch, after ``progress``."""
        self.partial = progress

    def finish_epoch(
        self, train: EpochStats, result: EvalResult, *, evaluation_seconds: float
    ) -> EpochReport:
        """Record a finished epoch and return its report."""
        report = EpochReport(
            epoch=self.epochs_done + 1,
            epochs=self.config.recipe.epochs,
            train=train,
            eval=result,
            seconds=self.seconds + train.seconds + evaluation_seconds,
            lr=float(self.optimizer.param_groups[0]["lr"]),
            step=self.steps_done + train.batches,
            evaluated_on=self.config.evaluated_on,
        )
        self.history.append(report)
        self.partial = None
        return report

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the whole state to ``path`` atomically (see :func:`~fashionmlp.save_checkpoint`)."""
        device = model_device(self.model)
        save_checkpoint(
            path,
            self.model,
            self.optimizer,
            scheduler=self.scheduler,
            epoch=self.epochs_done,
            config=self.config.to_dict(),
            state={
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                # Mid-epoch, the loader's state as the epoch began: resuming repeats its draws.
                "loader_rng": (
                    self._epoch_start_rng if self.partial else self.generator.get_state()
                ),
                "history": [report.to_dict() for report in self.history],
                "partial": self.partial.to_dict() if self.partial else None,
            },
        )

    def load(self, path: str | os.PathLike[str]) -> None:
        """Continue from the state :meth:`save` wrote to ``path``.

        Raises:
            CheckpointError: The file is unreadable, was written with other settings, or
                holds more or less than a saved state (Lightning Fabric's strict loading).
        """
        checkpoint = load_checkpoint(
            path, self.model, self.optimizer, scheduler=self.scheduler, map_location="cpu"
        )
        if checkpoint.config != self.config.to_dict():
            raise CheckpointError(
                f"{path} was written by a run with other settings ({checkpoint.config}); "
                "resume it with the same recipe, seed and data options"
            )
        if set(checkpoint.state) != _RESUME_KEYS:
            unused = sorted(set(checkpoint.state) - _RESUME_KEYS)
            missing = sorted(_RESUME_KEYS - set(checkpoint.state))
            raise CheckpointError(
                f"{path} is not a fashionmlp training state (unused keys: {unused or 'none'}, "
                f"missing keys: {missing or 'none'}); resume only from a checkpoint fit() wrote"
            )
        try:
            self._restore(checkpoint.state)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(
                f"{path} is a damaged training state ({type(exc).__name__}: {exc}); use "
                "another copy, or start the run again"
            ) from exc

    def _restore(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch_rng"])
        device = model_device(self.model)
        if state["cuda_rng"] is not None and device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        self.generator.set_state(state["loader_rng"])
        self._epoch_start_rng = state["loader_rng"]
        self.history = [EpochReport.from_dict(report) for report in state["history"]]
        self.partial = EpochStats.from_dict(state["partial"]) if state["partial"] else None
