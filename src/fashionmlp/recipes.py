"""Named training recipes: how to train, as plain data.

A recipe is a frozen :class:`Recipe` naming the optimizer, schedule, batch size,
regularisation and data pipeline; :func:`~fashionmlp.fit` turns one into a trained model.
This module also turns a recipe into its optimizer, schedule and precision.

Shipped recipes (all train the seed's ``FashionMLP()`` unchanged):

``seed``
    The seed exactly: SGD lr 0.01, batch 64, torchvision loaders, loss lines every 100
    batches, 5 epochs.
``fast`` (the command line's default)
    Muon for the hidden weight matrices and AdamW for the biases and the output layer
    (:class:`~fashionmlp.optim.Muon`), one-cycle schedules, batch 2048, label smoothing 0.1,
    weight decay 0.2, random horizontal flips, normalization inside the model, the tensor
    backend, and bfloat16 autocast where the device computes it natively. About 90.7% test
    accuracy in 8 epochs.
``long``
    The fast recipe at batch 1024 for 80 epochs, with small random translations: about 92%.

Hyperparameters were chosen on a validation split of 5,000 training images
(``validation_size=5000``, see :func:`~fashionmlp.loaders.validation_split`) by
``benchmarks/search.py``; the test set was used only to report the final figures.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from .errors import InvalidArgumentError
from .loaders import FASHION_MNIST_MEAN, FASHION_MNIST_STD, Augment, Backend
from .model import FashionMLPConfig
from .optim import Muon, muon_param_groups

__all__ = [
    "RECIPES",
    "Recipe",
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
    #: ``"sgd"``, ``"adamw"``, or ``"muon"``: Muon for the hidden weight matrices and AdamW
    #: for the rest (see :class:`fashionmlp.optim.Muon`).
    optimizer: Literal["sgd", "adamw", "muon"] = "sgd"
    #: Learning rate (the peak of the one-cycle schedule); with ``"muon"``, AdamW's.
    lr: float = 0.01
    #: Muon's learning rate for the hidden weight matrices (``optimizer="muon"``).
    muon_lr: float = 0.02
    #: Muon's decoupled weight decay for the hidden weight matrices.
    muon_weight_decay: float = 0.0
    #: Newton-Schulz iterations per Muon step.
    ns_steps: int = 5
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
    #: Width of every hidden layer of the model trained (see :class:`~fashionmlp.FashionMLP`).
    hidden_features: int = 512
    #: Number of hidden layers of the model trained.
    hidden_layers: int = 2
    #: Dropout after each hidden layer of the model trained.
    dropout: float = 0.0

    def __post_init__(self) -> None:
        _check_types(self)
        checks = [
            (self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch_size must be at least 1, got {self.batch_size}"),
            (math.isfinite(self.lr) and self.lr > 0, f"lr must be above 0, got {self.lr}"),
            (
                math.isfinite(self.muon_lr) and self.muon_lr > 0,
                f"muon_lr must be above 0, got {self.muon_lr}",
            ),
            (self.ns_steps >= 1, f"ns_steps must be at least 1, got {self.ns_steps}"),
            (0 < self.warmup < 1, f"warmup must be between 0 and 1, got {self.warmup}"),
            (0 <= self.label_smoothing < 1, "label_smoothing must be in [0, 1)"),
            (self.weight_decay >= 0, "weight_decay must be 0 or more"),
            (self.muon_weight_decay >= 0, "muon_weight_decay must be 0 or more"),
            (self.log_every >= 0, "log_every must be 0 or more"),
            (
                self.backend == "tensor" or not (self.hflip or self.translate),
                "hflip and translate need backend='tensor'",
            ),
        ]
        for holds, message in checks:
            if not holds:
                raise InvalidArgumentError(f"recipe {self.name!r}: {message}")
        try:
            self.model_config  # noqa: B018  # the model's own checks
        except InvalidArgumentError as exc:
            raise InvalidArgumentError(f"recipe {self.name!r}: {exc}") from None

    def replace(self, **changes: Any) -> Recipe:
        """A copy with ``changes`` applied (and checked).

        Raises:
            InvalidArgumentError: A setting is unknown, of the wrong type or out of range.
        """
        known = [field.name for field in dataclasses.fields(self)]
        unknown = sorted(set(changes) - set(known))
        if unknown:
            raise InvalidArgumentError(
                f"unknown recipe setting {', '.join(map(repr, unknown))}; "
                f"the settings are: {', '.join(known)}"
            )
        return dataclasses.replace(self, **changes)

    @property
    def model_config(self) -> FashionMLPConfig:
        """The config of the model this recipe trains.

        A :class:`~fashionmlp.FashionMLP` of the recipe's layers, standardizing its own input
        with FashionMNIST's mean and deviation when :attr:`normalize` is set, so that the
        trained model takes plain ``ToTensor()`` input.
        """
        return FashionMLPConfig(
            hidden_features=self.hidden_features,
            hidden_layers=self.hidden_layers,
            dropout=self.dropout,
            normalize=(FASHION_MNIST_MEAN, FASHION_MNIST_STD) if self.normalize else None,
        )

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


def _check_types(recipe: Recipe) -> None:
    """Each setting must be of its declared type (an int passes for a float)."""
    for name, kind in typing.get_type_hints(Recipe).items():
        value = getattr(recipe, name)
        if typing.get_origin(kind) is Literal:
            fits = value in typing.get_args(kind)
            wanted = " or ".join(map(repr, typing.get_args(kind)))
        elif kind is float:
            fits = isinstance(value, (int, float)) and not isinstance(value, bool)
            wanted = "a number"
        else:
            fits = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
            wanted = {int: "a whole number", bool: "true or false", str: "text"}[kind]
        if not fits:
            raise InvalidArgumentError(
                f"recipe {recipe.name!r}: {name} must be {wanted}, got {value!r}"
            )


_SEED = Recipe("seed", epochs=5, batch_size=64, optimizer="sgd", lr=0.01, log_every=100)
_FAST = Recipe(
    "fast",
    epochs=8,
    batch_size=2048,
    optimizer="muon",
    muon_lr=0.04,
    lr=8e-3,
    weight_decay=0.2,
    schedule="onecycle",
    label_smoothing=0.1,
    backend="tensor",
    hflip=True,
    normalize=True,
    autocast="auto",
)
_LONG = _FAST.replace(
    name="long", epochs=80, batch_size=1024, lr=4e-3, translate=1, muon_weight_decay=0.1
)

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
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    if device.type == "cpu":
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        # These probes are private to torch.cpu; a torch without them gets float32.
        if any(getattr(torch.cpu, check, lambda: False)() for check in checks):
            return torch.bfloat16
    return None
