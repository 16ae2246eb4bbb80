"""Named training recipes, and :func:`fit`: a short loop over the public API.

A recipe is data: a frozen :class:`Recipe` naming the optimizer, schedule, batch size,
regularisation and data pipeline. :func:`fit` turns one into a trained model with
:func:`~fashionmlp.make_loaders`, :func:`~fashionmlp.train_epoch` and
:func:`~fashionmlp.evaluate`, and nothing else: reading it top to bottom is the whole
training procedure.

Shipped recipes (all train the seed's ``FashionMLP()`` unchanged):

``seed``
    The seed exactly: SGD lr 0.01, batch 64, torchvision loaders, loss lines every 100
    batches, 5 epochs.
``fast`` (the command line's default)
    AdamW with a one-cycle schedule, batch 1024, label smoothing 0.1, weight decay 0.2,
    random horizontal flips, normalized inputs, the tensor backend, and bfloat16 autocast
    where the device computes it natively. About 90.5% test accuracy in 24 epochs.
``long``
    The fast recipe run longer with small random translations: above 90.8%.

Hyperparameters were chosen on a validation split of 5,000 training images
(``validation_size=5000``, see :func:`~fashionmlp.loaders.validation_split`); the test set
was used only to report the final figures.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from . import distributed
from .callbacks import BatchEvent, CallbackLike
from .checkpoint import load_checkpoint, save_checkpoint
from .devices import resolve_device
from .errors import CheckpointError, InvalidArgumentError
from .evaluate import EvalResult, evaluate
from .loaders import Augment, Backend, make_loaders
from .model import FashionMLP
from .train import EpochStats, train_epoch

__all__ = [
    "RECIPES",
    "EpochReport",
    "FitResult",
    "Recipe",
    "StopTraining",
    "fit",
    "get_recipe",
    "make_optimizer",
    "make_scheduler",
    "resolve_autocast",
]


@dataclass(frozen=True)
class Recipe:
    """How to train: every setting :func:`fit` needs, as plain data.

    Make a variant with :meth:`replace`, e.g. ``get_recipe("fast").replace(epochs=40)``.
    """

    #: A short name, recorded with every run.
    name: str
    #: Passes over the training set.
    epochs: int
    #: Samples per training batch.
    batch_size: int
    #: ``"sgd"`` or ``"adamw"``.
    optimizer: Literal["sgd", "adamw"] = "sgd"
    #: Learning rate (the peak of the one-cycle schedule).
    lr: float = 0.01
    #: SGD momentum.
    momentum: float = 0.0
    #: Nesterov momentum for SGD.
    nesterov: bool = False
    #: Weight decay (decoupled, for AdamW).
    weight_decay: float = 0.0
    #: ``"constant"`` or ``"onecycle"`` (stepped every batch).
    schedule: Literal["constant", "onecycle"] = "constant"
    #: Fraction of the one-cycle schedule spent rising to ``lr``.
    warmup: float = 0.25
    #: Label smoothing of the training loss (the reported losses are plain).
    label_smoothing: float = 0.0
    #: The data pipeline.
    backend: Backend = "torchvision"
    #: Random horizontal flips of training images (tensor backend).
    hflip: bool = False
    #: Random translation of training images by up to this many pixels (tensor backend).
    translate: int = 0
    #: Normalize inputs with FashionMNIST's mean and standard deviation.
    normalize: bool = False
    #: ``"off"``, ``"bf16"``, or ``"auto"`` (bf16 where the device computes it natively).
    autocast: Literal["off", "bf16", "auto"] = "off"
    #: Print the seed's loss line every this many batches in the command line (0 for never).
    log_every: int = 0

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch_size must be at least 1, got {self.batch_size}"),
            (math.isfinite(self.lr) and self.lr > 0, f"lr must be above 0, got {self.lr}"),
            (self.optimizer in ("sgd", "adamw"), f"unknown optimizer {self.optimizer!r}"),
            (self.schedule in ("constant", "onecycle"), f"unknown schedule {self.schedule!r}"),
            (self.autocast in ("off", "bf16", "auto"), f"unknown autocast {self.autocast!r}"),
            (0 < self.warmup < 1, f"warmup must be between 0 and 1, got {self.warmup}"),
            (0 <= self.label_smoothing < 1, "label_smoothing must be in [0, 1)"),
            (self.weight_decay >= 0, "weight_decay must be 0 or more"),
            (self.log_every >= 0, "log_every must be 0 or more"),
            (
                self.backend == "tensor" or not (self.hflip or self.translate),
                "hflip and translate need backend='tensor'",
            ),
        ]
        for holds, message in checks:
            if not holds:
                raise InvalidArgumentError(f"recipe {self.name!r}: {message}")

    def replace(self, **changes: Any) -> Recipe:
        """A copy with ``changes`` applied (and checked)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        """The recipe :meth:`to_dict` wrote.

        Raises:
            InvalidArgumentError: A key is unknown or a value out of range.
        """
        unknown = set(data) - {field.name for field in dataclasses.fields(cls)}
        if unknown:
            raise InvalidArgumentError(f"unknown recipe settings: {', '.join(sorted(unknown))}")
        return cls(**data)

    @property
    def augment(self) -> Augment | None:
        """The training-batch augmentation, if any."""
        if not (self.hflip or self.translate):
            return None
        return Augment(hflip=self.hflip, translate=self.translate)


_SEED = Recipe("seed", epochs=5, batch_size=64, optimizer="sgd", lr=0.01, log_every=100)
_FAST = Recipe(
    "fast",
    epochs=24,
    batch_size=1024,
    optimizer="adamw",
    lr=4e-3,
    weight_decay=0.2,
    schedule="onecycle",
    label_smoothing=0.1,
    backend="tensor",
    hflip=True,
    normalize=True,
    autocast="auto",
)
_LONG = _FAST.replace(name="long", epochs=80, translate=1)

#: The shipped recipes by name.
RECIPES: dict[str, Recipe] = {recipe.name: recipe for recipe in (_SEED, _FAST, _LONG)}


def get_recipe(name: str) -> Recipe:
    """The shipped recipe called ``name``.

    Raises:
        InvalidArgumentError: No recipe has that name (the message lists them).

    Example:
        >>> get_recipe("seed").lr
        0.01
    """
    try:
        return RECIPES[name]
    except KeyError:
        raise InvalidArgumentError(
            f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}"
        ) from None


def make_optimizer(recipe: Recipe, model: nn.Module) -> torch.optim.Optimizer:
    """The recipe's optimizer over ``model``'s parameters."""
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    return torch.optim.SGD(
        model.parameters(),
        lr=recipe.lr,
        momentum=recipe.momentum,
        nesterov=recipe.nesterov,
        weight_decay=recipe.weight_decay,
    )


def make_scheduler(
    recipe: Recipe, optimizer: torch.optim.Optimizer, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The recipe's learning-rate schedule, stepped once per batch; ``None`` if constant.

    A one-cycle schedule needs at least two steps in each of its phases: for very short
    runs (``--limit`` on a tiny subset) the warm-up fraction is widened to allow that, and
    below four steps in all the rate stays constant.
    """
    total = recipe.epochs * steps_per_epoch
    if recipe.schedule == "constant" or total < 4:
        return None
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=recipe.lr,
        total_steps=total,
        pct_start=min(max(recipe.warmup, 2 / total), (total - 2) / total),
    )


def resolve_autocast(recipe: Recipe, device: torch.device) -> torch.dtype | None:
    """The autocast dtype the recipe asks for on ``device`` (``None``: full float32).

    ``"auto"`` means bfloat16 on CUDA GPUs that support it and on CPUs with native
    bfloat16 instructions (AVX-512 BF16 or AMX), float32 elsewhere, where bfloat16 would
    be emulated and slower.
    """
    if recipe.autocast == "off":
        return None
    if recipe.autocast == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    if device.type == "cpu":
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        # These probes are private to torch.cpu; a torch without them gets float32.
        if any(getattr(torch.cpu, check, lambda: False)() for check in checks):
            return torch.bfloat16
    return None


@dataclass(frozen=True)
class EpochReport:
    """What one epoch of :func:`fit` did."""

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

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the form kept in checkpoints and ``metrics.json``)."""
        return {
            "epoch": self.epoch,
            "epochs": self.epochs,
            "train": dataclasses.asdict(self.train),
            "eval": self.eval.to_dict(),
            "seconds": self.seconds,
            "lr": self.lr,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EpochReport:
        """The report :meth:`to_dict` wrote."""
        result = data["eval"]
        return cls(
            epoch=data["epoch"],
            epochs=data["epochs"],
            train=EpochStats(**data["train"]),
            eval=EvalResult(
                correct=result["correct"],
                total=result["total"],
                loss=result["loss"],
                confusion_matrix=tuple(tuple(row) for row in result["confusion_matrix"]),
            ),
            seconds=data["seconds"],
            lr=data["lr"],
        )


@dataclass(frozen=True)
class FitResult:
    """What :func:`fit` returns."""

    #: The trained model.
    model: FashionMLP
    #: One report per epoch, resumed epochs included.
    history: tuple[EpochReport, ...]
    #: Whether all the recipe's epochs ran (false when stopped early).
    finished: bool
    #: The settings of the run (recipe, seed, precision), as saved in checkpoints.
    config: dict[str, Any]
    #: ``(epoch, batches trained in it)`` when a batch callback stopped the run part-way.
    stopped_at: tuple[int, int] | None = None

    @property
    def final(self) -> EvalResult:
        """The evaluation after the last epoch."""
        return self.history[-1].eval


class StopTraining(Exception):
    """Raise from a callback of :func:`fit` to stop the run; it can then be resumed.

    From an epoch callback, the run stops after that epoch (whose checkpoint is already
    written). From a batch callback, it stops right after that batch's optimizer step, and
    :func:`fit` writes a checkpoint of that point: resuming finishes the epoch from the
    next batch, with the weights an unbroken run would have.
    """


class _EpochTally:
    """Counts what the current epoch has trained, without reading from the device."""

    def __init__(self) -> None:
        self.reset()

    def reset(self, loss_sum: float = 0.0, samples: int = 0, batches: int = 0) -> None:
        self.loss_sum: torch.Tensor | float = loss_sum
        self.samples = samples
        self.batches = batches
        self.started = time.perf_counter()

    def on_batch_end(self, event: BatchEvent) -> None:
        self.loss_sum = self.loss_sum + event.loss_tensor.double() * event.batch_size
        self.samples += event.batch_size
        self.batches += 1


def fit(
    recipe: Recipe,
    root: str | os.PathLike[str],
    *,
    device: torch.device | str = "cpu",
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
    """Train ``FashionMLP()`` with ``recipe`` and evaluate it after every epoch.

    Under ``torchrun`` (a default process group initialised) the model is wrapped in
    :class:`~torch.nn.parallel.DistributedDataParallel`, each rank trains on its shard,
    every figure is global, and only rank 0 writes the checkpoint.

    Args:
        recipe: What to do (see :data:`~fashionmlp.recipes.RECIPES`).
        root: The data root.
        device: Where to train.
        seed: Seeds the model's initialisation, the shuffle and the augmentation; the
            same seed, recipe and device give the same weights.
        download: Allow the dataset download.
        limit: Use only the first ``limit`` samples of each split.
        validation_size: Evaluate on this many held-out training images instead of the
            test set (for tuning; see :func:`~fashionmlp.make_loaders`).
        callbacks: Batch callbacks, after the scheduler's step.
        epoch_callbacks: Called with each :class:`EpochReport`, after the checkpoint is
            written; one may raise :class:`StopTraining`.
        checkpoint_path: Written (atomically) before the first epoch and after every
            epoch with everything needed to resume, so a stopped run can always be resumed
            from the start of the epoch it stopped in.
        resume_from: A checkpoint written by an earlier ``fit`` with the same recipe and
            seed; training continues after its last epoch and ends with the same weights
            as a run that was never stopped.
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
    target = resolve_device(device)
    autocast = resolve_autocast(recipe, target)
    config = {
        "recipe": recipe.to_dict(),
        "seed": seed,
        "limit": limit,
        "validation_size": validation_size,
        "precision": "bfloat16" if autocast is not None else "float32",
    }
    torch.manual_seed(seed)
    train, test = make_loaders(
        root,
        recipe.batch_size,
        download=download,
        seed=seed,
        backend=recipe.backend,
        device=target,
        augment=recipe.augment,
        normalize=recipe.normalize,
        limit=limit,
        validation_size=validation_size,
    )
    model = FashionMLP().to(target)
    trained: nn.Module = model
    if distributed.is_distributed():
        # DDP averages the gradients; every rank starts from the same seeded weights, and
        # DDP broadcasts rank 0's anyway.
        trained = DistributedDataParallel(
            model, device_ids=[target.index] if target.type == "cuda" else None
        )
    optimizer = make_optimizer(recipe, model)
    scheduler = make_scheduler(recipe, optimizer, len(train))
    train_loss = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    eval_loss = nn.CrossEntropyLoss()
    history: list[EpochReport] = []
    elapsed = 0.0
    partial: dict[str, Any] | None = None
    tally = _EpochTally()
    if resume_from is not None:
        checkpoint = load_checkpoint(
            resume_from, model, optimizer, scheduler=scheduler, map_location=target
        )
        if checkpoint.config.get("recipe") != config["recipe"] or any(
            checkpoint.config.get(key) != config[key]
            for key in ("seed", "limit", "validation_size")
        ):
            raise CheckpointError(
                f"{resume_from} was written by a run with other settings "
                f"({checkpoint.config}); resume it with the same recipe, seed and data options"
            )
        state = checkpoint.state
        torch.set_rng_state(state["torch_rng"])
        train.generator.set_state(state["loader_rng"])
        if target.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], target)
        history = [EpochReport.from_dict(report) for report in state["history"]]
        elapsed = history[-1].seconds if history else 0.0
        partial = state.get("partial")
        if partial is not None:  # stopped part-way through an epoch
            train.generator.set_state(partial["loader_rng"])  # as the epoch began
            elapsed += partial["seconds"]

    def save(epoch: int, part: dict[str, Any] | None = None) -> None:
        if checkpoint_path is None or not distributed.is_main_process():
            return
        save_checkpoint(
            checkpoint_path,
            model,
            optimizer,
            scheduler=scheduler,
            epoch=epoch,
            config=config,
            state={
                "torch_rng": torch.get_rng_state(),
                "loader_rng": train.generator.get_state(),
                "cuda_rng": torch.cuda.get_rng_state(target) if target.type == "cuda" else None,
                "history": [past.to_dict() for past in history],
                "partial": part,
            },
        )

    if resume_from is None:
        save(0)  # so that even a run stopped in its first epoch can be resumed
    hooks: list[CallbackLike] = [tally, *callbacks]
    if scheduler is not None:
        step_schedule: Callable[[BatchEvent], object] = lambda event: scheduler.step()  # noqa: E731
        hooks.insert(0, step_schedule)
    non_blocking = target.type == "cuda"
    for epoch in range(len(history) + 1, recipe.epochs + 1):
        started = time.perf_counter()
        done = partial["batches"] if partial is not None else 0
        if partial is not None and distributed.is_main_process():
            # The saved sums are global: rank 0 carries them, the others start from zero.
            tally.reset(partial["loss_sum"], partial["samples"], done)
        else:
            tally.reset(batches=done)
        epoch_rng = train.generator.get_state()
        carried_seconds = partial["seconds"] if partial is not None else 0.0
        partial = None
        try:
            if done < len(train):
                train_epoch(
                    train,
                    trained,
                    train_loss,
                    optimizer,
                    callbacks=hooks,
                    epoch=epoch,
                    autocast=autocast,
                    non_blocking=non_blocking,
                    check_finite=check_finite,
                    start_batch=done,
                )
        except StopTraining:
            # Stopped by a batch callback after an optimizer step: keep that point. Under
            # torchrun every rank stops at the same batch (the command line makes them
            # agree), so the sums below can be taken over all of them.
            # Seconds of this epoch so far, across every process that worked on it.
            seconds = carried_seconds + time.perf_counter() - started
            save(
                epoch - 1,
                part={
                    "epoch": epoch,
                    "batches": tally.batches,
                    "loss_sum": float(distributed.reduce_sum(torch.as_tensor(tally.loss_sum))),
                    "samples": int(distributed.reduce_sum(torch.tensor(tally.samples))),
                    "seconds": seconds,
                    "loader_rng": epoch_rng,
                },
            )
            return FitResult(
                model=model,
                history=tuple(history),
                finished=False,
                config=config,
                stopped_at=(epoch, tally.batches),
            )
        # The epoch's figures, including any part trained before a resume.
        loss_sum = distributed.reduce_sum(torch.as_tensor(tally.loss_sum, dtype=torch.float64))
        samples = int(distributed.reduce_sum(torch.tensor(tally.samples)))
        stats = EpochStats(
            epoch=epoch,
            loss=float(loss_sum) / samples,
            samples=samples,
            batches=tally.batches,
            seconds=time.perf_counter() - tally.started,
        )
        result = evaluate(test, model, eval_loss, autocast=autocast, non_blocking=non_blocking)
        elapsed += time.perf_counter() - started
        report = EpochReport(
            epoch=epoch,
            epochs=recipe.epochs,
            train=stats,
            eval=result,
            seconds=elapsed,
            lr=float(optimizer.param_groups[0]["lr"]),
        )
        history.append(report)
        save(epoch)
        stop = False
        for callback in epoch_callbacks:
            try:
                callback(report)
            except StopTraining:
                stop = True
        if stop:
            break
    return FitResult(
        model=model,
        history=tuple(history),
        finished=len(history) == recipe.epochs,
        config=config,
    )
