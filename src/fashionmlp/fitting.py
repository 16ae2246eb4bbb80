""":func:`fit`: the parts of a run trained, by a short loop over the public API.

Reading :func:`fit` top to bottom is the whole training procedure: build the parts (or take
them), start afresh or resume, tell the callbacks; then for each epoch
:func:`~fashionmlp.train_epoch`, :func:`~fashionmlp.evaluate`, the epoch's hooks and a
checkpoint. Building lives in :func:`~fashionmlp.build`, the bookkeeping of resuming in
:class:`~fashionmlp.state.TrainState`, the calling of callbacks in
:class:`~fashionmlp.hooks.Hooks`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from . import devices
from .config import Recipe, RunConfig
from .data import Splits
from .errors import InvalidArgumentError
from .evaluation import evaluate
from .hooks import Hooks
from .parts import Parts, build
from .records import FitResult
from .state import TrainState
from .train import train_epoch

__all__ = ["fit"]


def fit(
    recipe: Recipe | RunConfig | Parts,
    root: str | os.PathLike[str] | None = None,
    *,
    model: nn.Module | None = None,
    data: Splits | None = None,
    device: torch.device | str = "auto",
    download: bool = False,
    seed: int | None = None,
    limit: int | None = None,
    validation_size: int = 0,
    callbacks: Sequence[object] = (),
    checkpoint_path: str | os.PathLike[str] | None = None,
    resume_from: str | os.PathLike[str] | None = None,
    check_finite: bool = True,
) -> FitResult:
    """Train a model under a recipe and evaluate it after every epoch.

    ``fit(recipe, ...)`` is the one-line convenience: it builds the parts
    (:func:`~fashionmlp.build`: the recipe's :class:`~fashionmlp.FashionMLP`, or ``model``)
    and trains them; ``fit(parts, ...)`` trains parts built (and perhaps changed) before.
    Training may run under bfloat16 autocast (the recipe's ``autocast``); every evaluation
    is the model's plain float32 forward pass, so that the reported accuracy is what the
    saved model gives wherever it is loaded.

    Under ``torchrun`` (a default process group initialised) the model is wrapped in
    :class:`~torch.nn.parallel.DistributedDataParallel`, each rank trains on its shard,
    every figure is global, and only rank 0 writes the checkpoint.

    Args:
        recipe: What to train: a :class:`~fashionmlp.Recipe`, a whole
            :class:`~fashionmlp.RunConfig`, or :class:`~fashionmlp.parts.Parts` (then
            ``root``, ``model``, ``data``, ``device``, ``download``, ``seed``, ``limit``
            and ``validation_size`` are already decided and must be left out).
        root: The data root (default :func:`~fashionmlp.default_data_root`).
        model: A model of your own to train instead of the recipe's (see
            :func:`~fashionmlp.build`); checkpoints and exact resume work the same.
        data: The dataset already loaded (:func:`~fashionmlp.load_dataset`): many runs
            in one process then read the files once.
        device: Where to train: ``"auto"`` (CUDA, else MPS, else the CPU), ``"cpu"``,
            ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
        download: Allow the dataset download.
        seed: Seeds the model's initialisation, the shuffle and the augmentation (default
            0); the same seed, recipe and device give the same weights.
        limit: Use only the first ``limit`` samples of each split.
        validation_size: Evaluate on this many held-out training images instead of the
            test set (for tuning; see :func:`~fashionmlp.make_loaders`).
        callbacks: Objects with any of the hooks of :mod:`fashionmlp.hooks`
            (``on_fit_start``, ``on_batch_end``, ``on_epoch_end``, ``on_fit_end``,
            ``on_exception``, ``state_dict``/``load_state_dict``), or plain functions of
            each :class:`~fashionmlp.BatchEvent`. Their states are saved in every checkpoint
            and given back on resume. One raising :class:`~fashionmlp.StopTraining` from a
            batch stops the run right after that batch, and ``fit`` writes a checkpoint of
            that very point (with ``at="epoch"``, or from ``on_epoch_end``: after the epoch
            and its checkpoint).
        checkpoint_path: Written (atomically) before the first epoch, after every epoch
            and at a stop, with everything needed to resume.
        resume_from: A checkpoint written by an earlier ``fit`` with the same settings;
            training continues where it stopped (mid-epoch too) and ends with the same
            weights as a run that was never stopped.
        check_finite: Stop with :class:`~fashionmlp.NonFiniteLossError` on a NaN or
            infinite loss (see :func:`~fashionmlp.train_epoch`).

    Raises:
        CheckpointError: ``resume_from`` is unreadable or from other settings.
        NonFiniteLossError: The loss became NaN or infinite.

    Example:
        .. code-block:: python

            result = fit(get_recipe("fast"), "data", device="cuda", seed=0)
            print(result.final.accuracy)
    """
    run_options = {"seed": seed, "limit": limit, "validation_size": validation_size or None}
    build_options = {
        "root": root,
        "model": model,
        "data": data,
        "download": download or None,
        "device": None if device == "auto" else device,
    }
    if isinstance(recipe, Parts):
        _refuse("fit(parts) trains parts already built", {**run_options, **build_options})
        parts = recipe
    else:
        if isinstance(recipe, RunConfig):
            _refuse("fit(run_config) has the run's settings", run_options)
            config = recipe
        else:
            config = RunConfig(recipe, seed=seed or 0, limit=limit, validation_size=validation_size)
        parts = build(config, data, root=root, download=download, device=device, model=model)
    hooks = Hooks(callbacks)
    state = TrainState(parts, hooks)
    if resume_from is not None:
        state.load(resume_from)
    else:
        _save(state, checkpoint_path)  # so that even a run stopped in its first epoch resumes
    try:
        hooks.call("on_fit_start", state)
        result = _train(state, checkpoint_path, check_finite)
    except BaseException as error:
        hooks.call("on_exception", error)
        raise
    hooks.call("on_fit_end", result)
    return result


def _refuse(what: str, options: Mapping[str, object]) -> None:
    given = [name for name, value in options.items() if value is not None]
    if given:
        raise InvalidArgumentError(f"{what}: leave out {', '.join(given)}")


def _train(
    state: TrainState, checkpoint_path: str | os.PathLike[str] | None, check_finite: bool
) -> FitResult:
    """The epoch loop: train, evaluate, tell the callbacks, save; until done or stopped."""
    parts, hooks = state.parts, state.hooks
    epochs = state.config.recipe.epochs
    trained = _data_parallel(parts.model, parts.device)
    non_blocking = parts.device.type == "cuda"
    while state.epochs_done < epochs:
        epoch = state.epochs_done + 1
        stats = train_epoch(
            parts.train,
            trained,
            parts.train_loss,
            parts.optimizer,
            callbacks=hooks,
            epoch=epoch,
            scheduler=parts.scheduler,
            carry=state.start_epoch(),
            first_step=state.steps_done,
            autocast=parts.autocast,
            non_blocking=non_blocking,
            check_finite=check_finite,
        )
        if stats.stop == "batch":  # stopped right after a batch: keep that very point
            state.stop_within_epoch(stats)
            _save(state, checkpoint_path)
            return _result(state, stopped_at=(epoch, stats.batches))
        started = time.perf_counter()
        result = evaluate(
            parts.evaluation,
            parts.model,
            parts.eval_loss,
            non_blocking=non_blocking,
            keep_predictions=epoch == epochs,  # for the misclassified-images plot
        )
        report = state.finish_epoch(stats, result, evaluation_seconds=time.perf_counter() - started)
        # The epoch's callbacks (and loggers) before its checkpoint: a run killed between
        # the two redoes the epoch on resume, and a logger that has its row already skips it,
        # so no row is lost and none is written twice.
        stop = hooks.call("on_epoch_end", report) or stats.stop
        _save(state, checkpoint_path)
        if stop:
            break
    return _result(state)


def _result(state: TrainState, *, stopped_at: tuple[int, int] | None = None) -> FitResult:
    return FitResult(
        model=state.model,
        history=tuple(state.history),
        finished=state.epochs_done == state.config.recipe.epochs,
        precision=state.parts.precision,
        stopped_at=stopped_at,
    )


def _save(state: TrainState, path: str | os.PathLike[str] | None) -> None:
    """Write the state where asked, from one process only under ``torchrun``."""
    if path is not None and devices.is_main_process():
        state.save(Path(path))


def _data_parallel(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` wrapped in DDP under ``torchrun`` (it then averages the gradients), else itself.

    Every rank starts from the same seeded weights, and DDP broadcasts rank 0's anyway.
    """
    if not devices.is_distributed():
        return model
    return DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None
    )
