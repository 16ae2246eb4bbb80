"""Named training recipes, and the settings of a run: how to train, as plain data.

A :class:`Recipe` names the model (its :class:`~fashionmlp.FashionMLPConfig`), the
optimizer, schedule, batch size, regularisation and data pipeline; a :class:`RunConfig`
adds what else decides a run's result (the seed, the data used). Both are frozen, checked
when made (:mod:`fashionmlp.settings`), and turn into JSON and TOML and back;
:func:`~fashionmlp.build` turns them into the parts of a run, and :func:`~fashionmlp.fit`
trains those. Neither imports torch.

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
(``validation_size=5000``, see :func:`~fashionmlp.loaders.validation_split`), first by a
grid and now by ``fashionmlp sweep`` over the space files in ``benchmarks/spaces/`` (see
``benchmarks/README.md``); the test set was used only to report the final figures.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar, Literal

from . import settings
from .errors import InvalidArgumentError
from .model_config import FASHION_MNIST_NORMALIZATION, FashionMLPConfig

__all__ = ["RECIPES", "Backend", "Recipe", "RunConfig", "get_recipe", "recipe_from"]

#: The data pipelines :func:`~fashionmlp.make_loaders` can build.
Backend = Literal["torchvision", "tensor"]
#: The images of each of FashionMNIST's splits.
TRAIN_IMAGES, TEST_IMAGES = 60_000, 10_000
#: The largest learning rate a recipe takes: far above any that trains, and low enough
#: that a step's arithmetic stays within float32.
_MAX_LR = 1e6


@dataclass(frozen=True)
class Recipe(settings.Settings):
    """How to train: every setting :func:`~fashionmlp.fit` needs, as plain data.

    Make a variant with :meth:`replace`, e.g. ``get_recipe("fast").replace(epochs=40)``;
    save one with :meth:`save` and train it with ``fashionmlp train --recipe FILE``.

    Example:
        >>> import pathlib, tempfile
        >>> path = get_recipe("fast").replace(name="mine", epochs=20).save(
        ...     pathlib.Path(tempfile.mkdtemp()) / "mine.toml")
        >>> Recipe.load(path).epochs
        20
    """

    settings_name: ClassVar[str] = "recipe"

    #: A short name, recorded with every run.
    name: str
    #: Passes over the training set.
    epochs: int = settings.ranged(low=1)
    #: Samples per training batch.
    batch_size: int = settings.ranged(low=1)
    #: ``"sgd"``, ``"adamw"``, or ``"muon"``: Muon for the hidden weight matrices and AdamW
    #: for the rest (see :class:`fashionmlp.optim.Muon`).
    optimizer: Literal["sgd", "adamw", "muon"] = "sgd"
    #: Learning rate (the peak of the one-cycle schedule); with ``"muon"``, AdamW's.
    lr: float = settings.ranged(0.01, low=0, low_open=True, high=_MAX_LR)
    #: Muon's learning rate for the hidden weight matrices (``optimizer="muon"``).
    muon_lr: float = settings.ranged(0.02, low=0, low_open=True, high=_MAX_LR)
    #: Muon's decoupled weight decay for the hidden weight matrices.
    muon_weight_decay: float = settings.ranged(0.0, low=0)
    #: Newton-Schulz iterations per Muon step.
    ns_steps: int = settings.ranged(5, low=1, high=100)
    #: SGD momentum.
    momentum: float = settings.ranged(0.0, low=0, high=1)
    #: Nesterov momentum for SGD.
    nesterov: bool = False
    #: Weight decay (decoupled, for AdamW).
    weight_decay: float = settings.ranged(0.0, low=0)
    #: ``"constant"`` or ``"onecycle"`` (stepped every batch).
    schedule: Literal["constant", "onecycle"] = "constant"
    #: Fraction of the one-cycle schedule spent rising to ``lr``.
    warmup: float = settings.ranged(0.25, low=0, high=1, low_open=True, high_open=True)
    #: Label smoothing of the training loss (the reported losses are plain).
    label_smoothing: float = settings.ranged(0.0, low=0, high=1, high_open=True)
    #: The data pipeline.
    backend: Backend = "torchvision"
    #: Random horizontal flips of training images (tensor backend).
    hflip: bool = False
    #: Random translation of training images by up to this many pixels (tensor backend).
    translate: int = settings.ranged(0, low=0, high=27)
    #: ``"off"``, ``"bf16"``, or ``"auto"`` (bf16 where the device computes it natively).
    autocast: Literal["off", "bf16", "auto"] = "off"
    #: Print the seed's loss line every this many batches in the command line (0 for never).
    print_every: int = settings.ranged(0, low=0)
    #: The config of the :class:`~fashionmlp.FashionMLP` trained. Its ``normalize`` is
    #: applied inside the model; a model of your own given to :func:`~fashionmlp.fit` gets
    #: its input standardized by the loaders instead.
    model: FashionMLPConfig = FashionMLPConfig()

    def __post_init__(self) -> None:
        settings.check(self, self._label())
        if self.backend != "tensor" and (self.hflip or self.translate):
            raise InvalidArgumentError(
                f"recipe {self.name!r}: hflip and translate need backend='tensor'"
            )

    def _label(self) -> str:
        return f"recipe {self.name!r}"

    def unused(self) -> dict[str, str]:
        """The settings this recipe does not use, each with why: ``momentum`` is SGD's, the
        ``muon_*`` settings and ``ns_steps`` Muon's, ``warmup`` the one-cycle schedule's.

        Example:
            >>> sorted(get_recipe("fast").unused())
            ['momentum', 'nesterov']
        """
        unused: dict[str, str] = {}
        if self.optimizer != "sgd":
            unused |= dict.fromkeys(("momentum", "nesterov"), "SGD's")
        if self.optimizer != "muon":
            unused |= dict.fromkeys(("muon_lr", "muon_weight_decay", "ns_steps"), "Muon's")
        if self.schedule != "onecycle":
            unused["warmup"] = "the one-cycle schedule's"
        return unused


@dataclass(frozen=True)
class RunConfig(settings.Settings):
    """A run, described once: its recipe and everything else that decides its result
    besides the device. A checkpoint, ``run.json`` and a resume all read this one object.

    Example:
        >>> from fashionmlp import RunConfig, get_recipe
        >>> config = RunConfig(get_recipe("seed"), seed=3)
        >>> RunConfig.from_dict(config.to_dict()) == config
        True
    """

    settings_name: ClassVar[str] = "run settings"

    #: How to train.
    recipe: Recipe
    #: Seeds the model's initialisation, the shuffle and the augmentation.
    seed: int = settings.ranged(0, low=0, high=2**63 - 1)
    #: Use only the first ``limit`` samples of each split.
    limit: int | None = settings.ranged(None, low=1)
    #: Evaluate on this many held-out training images instead of the test set.
    validation_size: int = 0

    def __post_init__(self) -> None:
        settings.check(self, self.settings_name)
        if not 0 <= self.validation_size < TRAIN_IMAGES:
            raise InvalidArgumentError(
                f"validation_size must be between 0 and 59999, got {self.validation_size}"
            )

    @property
    def evaluated_on(self) -> str:
        """``"validation"`` or ``"test"``: what the run's evaluations measure."""
        return "validation" if self.validation_size else "test"

    @property
    def samples(self) -> dict[str, int]:
        """The images the run trains and evaluates on, by split, ``limit`` applied: what its
        figures are about (``--validation 1000 --limit 500`` evaluates 500).

        Example:
            >>> RunConfig(get_recipe("seed"), validation_size=1000, limit=500).samples
            {'train': 500, 'validation': 500}
        """
        train, evaluated = TRAIN_IMAGES - self.validation_size, self.validation_size or TEST_IMAGES
        if self.limit is not None:
            train, evaluated = min(train, self.limit), min(evaluated, self.limit)
        return {"train": train, self.evaluated_on: evaluated}


_SEED = Recipe("seed", epochs=5, batch_size=64, optimizer="sgd", lr=0.01, print_every=100)
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
    autocast="auto",
    model=FashionMLPConfig(normalize=FASHION_MNIST_NORMALIZATION),
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
            f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}, or give a recipe "
            "file (.toml or .json)"
        ) from None


def recipe_from(name_or_path: str | os.PathLike[str]) -> Recipe:
    """A shipped recipe by name, or the recipe in a ``.toml`` or ``.json`` file.

    Raises:
        InvalidArgumentError: No recipe has that name, or the file is not a recipe.
    """
    text = os.fspath(name_or_path)
    if text in RECIPES:
        return RECIPES[text]
    if text.endswith((".toml", ".json")) or os.sep in text:
        return Recipe.load(text)
    return get_recipe(text)
