"""From settings to the parts of a run: :func:`build` makes them, :func:`~fashionmlp.fit`
trains them.

:func:`build` turns a :class:`~fashionmlp.RunConfig` (a recipe and a seed) into
:class:`Parts`: loaders over the loaded data, the model, its optimizer and schedule, the
losses, the device and the precision. Building is separate from training so that a study
of many runs loads the data once and builds each run from it, and so that a model of your
own (any ``nn.Module`` mapping ``(N, 1, 28, 28)`` to ``(N, 10)``) trains under any recipe.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from .config import NO_NORMALIZATION, Recipe, RunConfig
from .data import Loader, Splits, load_dataset, make_loaders
from .devices import native_bfloat16, resolve_device
from .model import FashionMLP
from .optim import Muon, muon_param_groups
from .step import LossFn

__all__ = ["Parts", "build", "make_optimizer", "make_scheduler", "resolve_autocast"]


@dataclass
class Parts:
    """Everything one run trains with: what :func:`build` makes and
    :func:`~fashionmlp.fit` trains.

    Change a part before training if you like (another scheduler, say); a checkpoint
    then holds that part's state, and a resume must be built the same way.
    """

    #: The run's settings, as saved in its checkpoints.
    config: RunConfig
    #: The model trained (on :attr:`device`).
    model: nn.Module
    #: The training loader.
    train: Loader
    #: The evaluation loader (the test set, or the validation split).
    evaluation: Loader
    #: The optimizer over the model's parameters.
    optimizer: torch.optim.Optimizer
    #: The learning-rate schedule, stepped every batch, or ``None``.
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    #: The training loss (with the recipe's label smoothing).
    train_loss: LossFn
    #: The loss every evaluation reports (plain cross-entropy).
    eval_loss: LossFn
    #: Where the model and the data are.
    device: torch.device
    #: The autocast dtype of the training passes, or ``None`` for float32 throughout.
    autocast: torch.dtype | None
    #: Who standardizes the input with the recipe's ``model.normalize``: the ``FashionMLP``
    #: itself (``"model"``, so the trained model takes ``ToTensor()`` input), or the
    #: loaders, for a model of your own (``"loaders"``); ``"none"`` when nothing does.
    normalized_by: Literal["model", "loaders", "none"]

    @property
    def precision(self) -> Literal["float32", "bfloat16"]:
        """``"bfloat16"`` when training runs under bfloat16 autocast, else ``"float32"``."""
        return "float32" if self.autocast is None else "bfloat16"

    @property
    def generator(self) -> torch.Generator:
        """The training loader's random source (its order and augmentation), which a
        checkpoint saves so that a resumed run draws what an unbroken one would."""
        generator = getattr(self.train, "generator", None)
        if not isinstance(generator, torch.Generator):
            raise TypeError("the training loader has no torch.Generator of its own")
        return generator


def build(
    run: Recipe | RunConfig,
    data: Splits | None = None,
    *,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    device: torch.device | str = "auto",
    model: nn.Module | None = None,
) -> Parts:
    """The parts of the run ``run`` describes (a recipe alone runs with seed 0).

    Seeds torch's generator with the run's seed, makes the loaders over ``data`` (or the
    dataset read from ``root``), then the recipe's model (unless ``model`` is given), its
    optimizer and schedule, all on ``device``.

    Args:
        run: The recipe, or the whole run's settings.
        data: The dataset already loaded (:func:`~fashionmlp.load_dataset`), so that many
            runs read the files once; default: read from ``root``.
        root: The data root, when ``data`` is not given.
        download: Allow the dataset download, when ``data`` is not given.
        device: ``"auto"`` (CUDA, else MPS, else the CPU), ``"cpu"``, ``"cuda"``,
            ``"cuda:N"`` or ``"mps"``.
        model: A model of your own to train instead of the recipe's ``FashionMLP``: any
            ``nn.Module`` mapping ``(N, 1, 28, 28)`` float input to ``(N, 10)`` logits
            (its input comes in its own floating-point dtype). The recipe's
            ``model.normalize`` is then applied by the loaders, as the model cannot hold it;
            the recipe's other model settings are not used.

    Raises:
        InvalidArgumentError: A setting does not fit (a device this machine lacks, say).
        DatasetError: The dataset is missing or corrupt.

    Example:
        .. code-block:: python

            data = load_dataset()
            parts = build(RunConfig(get_recipe("fast"), seed=1), data)
            result = fit(parts)
    """
    config = run if isinstance(run, RunConfig) else RunConfig(run)
    recipe = config.recipe
    target = resolve_device(device)
    autocast = resolve_autocast(recipe, target)
    torch.manual_seed(config.seed)
    if data is None:
        data = load_dataset(root, download=download, test=config.validation_size == 0)
    normalize = recipe.model.normalize
    normalized_by: Literal["model", "loaders", "none"] = (
        "none" if normalize == NO_NORMALIZATION else "model" if model is None else "loaders"
    )
    train, evaluation = make_loaders(
        config,
        data=data,
        device=target,
        normalize=normalize if normalized_by == "loaders" else NO_NORMALIZATION,
    )
    trained = (model if model is not None else FashionMLP.from_config(recipe.model)).to(target)
    optimizer = make_optimizer(recipe, trained, precision=autocast)
    return Parts(
        config=config,
        model=trained,
        train=train,
        evaluation=evaluation,
        optimizer=optimizer,
        scheduler=make_scheduler(recipe, optimizer, len(train)),
        train_loss=nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing),
        eval_loss=nn.CrossEntropyLoss(),
        device=target,
        autocast=autocast,
        normalized_by=normalized_by,
    )


def make_optimizer(
    recipe: Recipe, model: nn.Module, *, precision: torch.dtype | None = None
) -> torch.optim.Optimizer:
    """The recipe's optimizer over ``model``'s parameters.

    ``precision`` is the run's autocast dtype (``None``: float32); Muon's Newton-Schulz
    iterations run in it, so that a float32 run is float32 throughout.
    """
    if recipe.optimizer == "muon":
        groups = muon_param_groups(
            model,
            muon_lr=recipe.muon_lr,
            lr=recipe.lr,
            weight_decay=recipe.weight_decay,
            muon_weight_decay=recipe.muon_weight_decay,
        )
        return Muon(groups, ns_steps=recipe.ns_steps, ns_dtype=precision or torch.float32)
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

    Each parameter group's one-cycle peaks at its own learning rate (with ``"muon"``: the
    hidden matrices at ``muon_lr``, the rest at ``lr``); AdamW's first beta cycles with it,
    as in torch's default, while Muon's momentum stays fixed. A one-cycle schedule needs at
    least two steps in each of its phases: for very short runs (``--limit`` on a tiny
    subset) the warm-up fraction is widened to allow that, and below four steps in all the
    rate stays constant.
    """
    total = recipe.epochs * steps_per_epoch
    if recipe.schedule == "constant" or total < 4:
        return None
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=[group["lr"] for group in optimizer.param_groups],
        total_steps=total,
        pct_start=min(max(recipe.warmup, 2 / total), (total - 2) / total),
        cycle_momentum=recipe.optimizer != "muon",
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
    return torch.bfloat16 if native_bfloat16(device) else None
