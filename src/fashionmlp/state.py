"""The state of one training run, saved and loaded whole: what :func:`~fashionmlp.fit` resumes.

A :class:`TrainState` is a run as it stands: its :class:`~fashionmlp.parts.Parts` (the
settings, model, optimizer and schedule, the loader's random generator), the reports of
the epochs done, the progress inside the current one, and its callbacks. A checkpoint
holds all of it, the callbacks' own states included, and loading refuses one written with
other settings, or with keys it would not use (as Lightning Fabric loads a run's state).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from . import config
from .checkpoint import load_checkpoint, save_checkpoint
from .config import RunConfig
from .devices import model_device
from .errors import CheckpointError
from .hooks import Hooks
from .parts import Parts
from .records import EpochReport, EpochStats, EvalResult

__all__ = ["TrainState"]

#: What a checkpoint of a :class:`TrainState` keeps besides weights, optimizer and schedule.
_RESUME_KEYS = frozenset({"torch_rng", "cuda_rng", "loader_rng", "history", "partial", "callbacks"})


class TrainState:
    """One training run, as it stands: what it takes to continue it on another day.

    The epoch loop asks it where to begin (:meth:`start_epoch`) and tells it how each epoch
    ended (:meth:`stop_within_epoch`, :meth:`finish_epoch`); the bookkeeping of resuming
    lives here, so that the loop only trains. Callbacks get it in ``on_fit_start``: read
    :attr:`config`, :attr:`parts` and :attr:`history` there, and change nothing.

    Args:
        parts: What the run trains (see :func:`~fashionmlp.build`).
        hooks: The run's callbacks, whose states every checkpoint carries.
    """

    def __init__(self, parts: Parts, hooks: Hooks | None = None) -> None:
        #: What the run trains.
        self.parts = parts
        #: The run's callbacks.
        self.hooks = hooks if hooks is not None else Hooks()
        #: The reports of the epochs done, in order.
        self.history: list[EpochReport] = []
        #: The current epoch's progress when the run stopped part-way through it.
        self.partial: EpochStats | None = None
        self._epoch_start_rng = parts.generator.get_state()

    @property
    def config(self) -> RunConfig:
        """The run's settings."""
        return self.parts.config

    @property
    def model(self) -> nn.Module:
        """The model trained."""
        return self.parts.model

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
            self.parts.generator.set_state(self._epoch_start_rng)
        else:
            self._epoch_start_rng = self.parts.generator.get_state()
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
            lr=float(self.parts.optimizer.param_groups[0]["lr"]),
            step=self.steps_done + train.batches,
            evaluated_on=self.config.evaluated_on,
        )
        self.history.append(report)
        self.partial = None
        return report

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the whole state to ``path`` atomically (see
        :func:`~fashionmlp.save_checkpoint`)."""
        device = model_device(self.model)
        save_checkpoint(
            path,
            self.model,
            self.parts.optimizer,
            scheduler=self.parts.scheduler,
            epoch=self.epochs_done,
            config=self.config.to_dict(),
            state={
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                # Mid-epoch, the loader's state as the epoch began: resuming repeats its draws.
                "loader_rng": (
                    self._epoch_start_rng if self.partial else self.parts.generator.get_state()
                ),
                "history": [report.to_dict() for report in self.history],
                "partial": self.partial.to_dict() if self.partial else None,
                "callbacks": self.hooks.state_dict(),
            },
        )

    def load(self, path: str | os.PathLike[str]) -> None:
        """Continue from the state :meth:`save` wrote to ``path``; the callbacks get theirs.

        Raises:
            CheckpointError: The file is unreadable, was written with other settings (the
                message names each that differs), or holds more or less than a saved state.
        """
        parts = self.parts
        checkpoint = load_checkpoint(
            path, self.model, parts.optimizer, scheduler=parts.scheduler, map_location="cpu"
        )
        if checkpoint.config != self.config.to_dict():
            changed = config.differences(checkpoint.config, self.config.to_dict())
            raise CheckpointError(
                f"{path} was written by a run with other settings ({'; '.join(changed)}); "
                "resume it with the settings it was saved with"
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
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
            raise CheckpointError(
                f"{path} is a damaged training state ({type(exc).__name__}: {exc}); use "
                "another copy, or start the run again"
            ) from exc

    def _restore(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch_rng"])
        device = model_device(self.model)
        if state["cuda_rng"] is not None and device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        self.parts.generator.set_state(state["loader_rng"])
        self._epoch_start_rng = state["loader_rng"]
        self.history = [EpochReport.from_dict(report) for report in state["history"]]
        self.partial = EpochStats.from_dict(state["partial"]) if state["partial"] else None
        if not isinstance(state["callbacks"], dict):
            raise TypeError(f"the callbacks' states are a {type(state['callbacks']).__name__}")
        self.hooks.load_state_dict(state["callbacks"])
