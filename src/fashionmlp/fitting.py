""":func:`fit`: a recipe turned into a trained model, by a short loop over the public API.

Reading :func:`fit` top to bottom is the whole training procedure: build the loaders, the
model, its optimizer and schedule; start afresh or resume; then for each epoch
:func:`~fashionmlp.train_epoch`, :func:`~fashionmlp.evaluate` and a checkpoint. The
bookkeeping of resuming lives in :class:`~fashionmlp.state.TrainState`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from . import distributed
from .callbacks import CallbackLike, EpochCallback, StopTraining
from .devices import resolve_device
from .evaluation import EvalResult, evaluate
from .loaders import make_loaders
from .model import FashionMLP
from .recipes import Recipe, make_optimizer, make_scheduler, resolve_autocast
from .state import EpochReport, RunConfig, TrainState
from .train import train_epoch

__all__ = ["FitResult", "fit"]


@dataclass(frozen=True)
class FitResult:
    """What :func:`fit` returns."""

    #: The trained model.
    model: FashionMLP
    #: One report per epoch, resumed epochs included.
    history: tuple[EpochReport, ...]
    #: Whether all the recipe's epochs ran (false when stopped early).
    finished: bool
    #: The run's settings, as saved in its checkpoints.
    config: RunConfig
    #: ``"bfloat16"`` when the forward passes ran under bfloat16 autocast, else ``"float32"``.
    precision: Literal["float32", "bfloat16"]
    #: ``(epoch, batches trained in it)`` when a batch callback stopped the run part-way.
    stopped_at: tuple[int, int] | None = None

    @property
    def final(self) -> EvalResult:
        """The evaluation after the last epoch (with every sample's predicted label when
        the run trained its last epoch in this call)."""
        return self.history[-1].eval


def fit(
    recipe: Recipe,
    root: str | os.PathLike[str] | None = None,
    *,
    device: torch.device | str = "auto",
    seed: int = 0,
    download: bool = False,
    limit: int | None = None,
    validation_size: int = 0,
    callbacks: Sequence[CallbackLike] = (),
    epoch_callbacks: Sequence[Callable[[EpochReport], object]] = (),
    checkpoint_path: str | os.PathLike[str] | None = None,
    resume_from: str | os.PathLike[str] | None = None,
    check_finite: bool = True,
) -> FitResult:
    """Train the recipe's :class:`~fashionmlp.FashionMLP` and evaluate it after every epoch.

    The model is built from :attr:`Recipe.model_config <fashionmlp.Recipe.model_config>`
    (``FashionMLP()`` itself for the shipped recipes); a recipe that normalizes makes the
    model standardize its own input, so the trained model takes plain ``ToTensor()`` input.
    Training may run under bfloat16 autocast (the recipe's ``autocast``); every evaluation
    is the model's plain float32 forward pass, so that the reported accuracy is what the
    saved model gives wherever it is loaded.

    Under ``torchrun`` (a default process group initialised) the model is wrapped in
    :class:`~torch.nn.parallel.DistributedDataParallel`, each rank trains on its shard,
    every figure is global, and only rank 0 writes the checkpoint.

    Args:
        recipe: What to do (see :data:`~fashionmlp.recipes.RECIPES`).
        root: The data root (default :func:`~fashionmlp.default_data_root`).
        device: Where to train: ``"auto"`` (CUDA, else MPS, else the CPU), ``"cpu"``,
            ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
        seed: Seeds the model's initialisation, the shuffle and the augmentation; the
            same seed, recipe and device give the same weights.
        download: Allow the dataset download.
        limit: Use only the first ``limit`` samples of each split.
        validation_size: Evaluate on this many held-out training images instead of the
            test set (for tuning; see :func:`~fashionmlp.make_loaders`).
        callbacks: Batch callbacks (see :func:`~fashionmlp.train_epoch`); those that also
            have ``on_epoch_end`` (:class:`~fashionmlp.callbacks.EpochCallback`, such as the
            loggers) get each :class:`~fashionmlp.EpochReport` too. One raising
            :class:`~fashionmlp.StopTraining` stops the run right after that batch, and
            ``fit`` writes a checkpoint of that very point (with ``at="epoch"``: after the
            epoch).
        epoch_callbacks: Called with each :class:`~fashionmlp.EpochReport`, after the
            epoch's evaluation and before its checkpoint is written; one raising
            :class:`~fashionmlp.StopTraining` stops the run after that epoch (and its
            checkpoint).
        checkpoint_path: Written (atomically) before the first epoch, after every epoch
            and at a stop, with everything needed to resume.
        resume_from: A checkpoint written by an earlier ``fit`` with the same recipe, seed
            and data options; training continues where it stopped (mid-epoch too) and ends
            with the same weights as a run that was never stopped.
        check_finite: Stop with :class:`~fashionmlp.NonFiniteLossError` on a NaN or
            infinite loss (see :func:`~fashionmlp.train_epoch`).

    Raises:
        CheckpointError: ``resume_from`` is unreadable or from another recipe or seed.
        NonFiniteLossError: The loss became NaN or infinite.

    Example:
        .. code-block:: python

            result = fit(get_recipe("fast"), "data", device="cuda", seed=0)
            print(result.final.accuracy)
    """
    config = RunConfig(recipe, seed=seed, limit=limit, validation_size=validation_size)
    target = resolve_device(device)
    autocast = resolve_autocast(recipe, target)
    torch.manual_seed(seed)
    train, test = make_loaders(
        root,
        recipe.batch_size,
        download=download,
        seed=seed,
        backend=recipe.backend,
        device=target,
        augment=recipe.augment,
        limit=limit,
        validation_size=validation_size,
    )
    model = FashionMLP.from_config(recipe.model_config).to(target)
    optimizer = make_optimizer(recipe, model, precision=autocast)
    scheduler = make_scheduler(recipe, optimizer, len(train))
    state = TrainState(config, model, optimizer, scheduler, train.generator)
    if resume_from is not None:
        state.load(resume_from)
    else:
        _save(state, checkpoint_path)  # so that even a run stopped in its first epoch resumes
    trained = _data_parallel(model, target)
    train_loss = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    eval_loss = nn.CrossEntropyLoss()
    non_blocking = target.type == "cuda"
    precision: Literal["float32", "bfloat16"] = "float32" if autocast is None else "bfloat16"
    epoch_hooks: list[Callable[[EpochReport], object]] = list(epoch_callbacks)
    for callback in callbacks:
        if isinstance(callback, EpochCallback):  # a logger: it wants the epochs too
            epoch_hooks.append(callback.on_epoch_end)

    while state.epochs_done < recipe.epochs:
        epoch = state.epochs_done + 1
        stats = train_epoch(
            train,
            trained,
            train_loss,
            optimizer,
            callbacks=callbacks,
            epoch=epoch,
            scheduler=scheduler,
            carry=state.start_epoch(),
            first_step=state.steps_done,
            autocast=autocast,
            non_blocking=non_blocking,
            check_finite=check_finite,
        )
        if stats.stop == "batch":  # stopped right after a batch: keep that very point
            state.stop_within_epoch(stats)
            _save(state, checkpoint_path)
            return FitResult(
                model=model,
                history=tuple(state.history),
                finished=False,
                config=config,
                precision=precision,
                stopped_at=(epoch, stats.batches),
            )
        started = time.perf_counter()
        result = evaluate(
            test,
            model,
            eval_loss,
            non_blocking=non_blocking,
            keep_predictions=epoch == recipe.epochs,  # for the misclassified-images plot
        )
        report = state.finish_epoch(stats, result, evaluation_seconds=time.perf_counter() - started)
        # The epoch's callbacks (and loggers) before its checkpoint: a run killed between
        # the two redoes the epoch on resume, and a logger that has its row already skips it,
        # so no row is lost and none is written twice.
        stop = _tell(epoch_hooks, report) or stats.stop == "epoch"
        _save(state, checkpoint_path)
        if stop:
            break
    return FitResult(
        model=model,
        history=tuple(state.history),
        finished=state.epochs_done == recipe.epochs,
        config=config,
        precision=precision,
    )


def _save(state: TrainState, path: str | os.PathLike[str] | None) -> None:
    """Write the state where asked, from one process only under ``torchrun``."""
    if path is not None and distributed.is_main_process():
        state.save(Path(path))


def _data_parallel(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` wrapped in DDP under ``torchrun`` (it then averages the gradients), else itself.

    Every rank starts from the same seeded weights, and DDP broadcasts rank 0's anyway.
    """
    if not distributed.is_distributed():
        return model
    return DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None
    )


def _tell(epoch_callbacks: Sequence[Callable[[EpochReport], object]], report: EpochReport) -> bool:
    """Call every epoch callback; return whether one asked to stop."""
    stop = False
    for callback in epoch_callbacks:
        try:
            callback(report)
        except StopTraining:
            stop = True
    return stop
