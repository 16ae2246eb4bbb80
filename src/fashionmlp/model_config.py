"""What a :class:`~fashionmlp.FashionMLP` is made of, as plain data: its config, and the
facts of the dataset it classifies.

Kept apart from the network itself (:mod:`fashionmlp.model`) so that recipes, and the
command line that derives its options from them, read it without importing torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Final

from . import settings
from .errors import InvalidArgumentError

__all__ = [
    "CLASSES",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_NORMALIZATION",
    "FASHION_MNIST_STD",
    "IMAGE_SIZE",
    "NO_NORMALIZATION",
    "NUM_CLASSES",
    "FashionMLPConfig",
]

#: The ten FashionMNIST class names, in label order (label ``i`` is ``CLASSES[i]``).
CLASSES: Final[tuple[str, ...]] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
#: Side of a FashionMNIST image in pixels.
IMAGE_SIZE: Final = 28
#: Number of classes.
NUM_CLASSES: Final = len(CLASSES)
#: Mean pixel value of the training images (after ``ToTensor()``).
FASHION_MNIST_MEAN: Final = 0.2860
#: Standard deviation of the training images' pixels (after ``ToTensor()``).
FASHION_MNIST_STD: Final = 0.3530
#: ``normalize`` for FashionMNIST's own mean and standard deviation.
FASHION_MNIST_NORMALIZATION: Final = (FASHION_MNIST_MEAN, FASHION_MNIST_STD)
#: ``normalize`` that leaves the input as it is: ``(x - 0) / 1`` is ``x``, bit for bit.
NO_NORMALIZATION: Final = (0.0, 1.0)

_FEATURES: Final = IMAGE_SIZE * IMAGE_SIZE


@dataclass(frozen=True)
class FashionMLPConfig(settings.Settings):
    """The constructor arguments of a :class:`~fashionmlp.FashionMLP`: all it takes to
    build it again.

    Saved as the ``config.json`` of :meth:`FashionMLP.save_pretrained
    <fashionmlp.pretrained.PretrainedMixin.save_pretrained>`, in every checkpoint of a
    ``FashionMLP``, and as the ``model`` table of a :class:`~fashionmlp.Recipe`, so that a
    trained model can be rebuilt without knowing how it was made (as nanoGPT's
    ``GPT(GPTConfig(**checkpoint["model_args"]))``).

    Example:
        >>> config = FashionMLPConfig(hidden_features=256, normalize=(0.286, 0.353))
        >>> FashionMLPConfig.from_dict(config.to_dict()) == config
        True
    """

    settings_name: ClassVar[str] = "model config"

    #: Width of every hidden layer.
    hidden_features: int = settings.ranged(512, low=1)
    #: Number of hidden layers (linear + ReLU).
    hidden_layers: int = settings.ranged(2, low=1)
    #: Dropout probability after each hidden ReLU.
    dropout: float = settings.ranged(0.0, low=0, high=1, high_open=True)
    #: ``(mean, std)`` the input is standardized with, ``(x - mean) / std``, inside the
    #: model: the trained model takes plain ``ToTensor()`` input in ``[0, 1]`` whatever it
    #: was trained with. ``(0.0, 1.0)`` (the seed's) leaves the input as it is.
    normalize: tuple[float, float] = NO_NORMALIZATION

    def __post_init__(self) -> None:
        settings.check(self, self.settings_name)
        mean, std = self.normalize
        if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
            raise InvalidArgumentError(
                f"model config: normalize must be (mean, std) with a finite mean and std "
                f"above 0, got {self.normalize}"
            )

    @property
    def normalizes(self) -> bool:
        """Whether :attr:`normalize` changes the input at all."""
        return self.normalize != NO_NORMALIZATION

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """The ``state_dict`` keys of the model this config builds, and their shapes.

        Example:
            >>> FashionMLPConfig(hidden_features=8, hidden_layers=1).parameter_shapes()
            {'fc1.weight': (8, 784), 'fc1.bias': (8,), 'fc2.weight': (10, 8), 'fc2.bias': (10,)}
        """
        widths = [_FEATURES] + [self.hidden_features] * self.hidden_layers + [NUM_CLASSES]
        shapes: dict[str, tuple[int, ...]] = {}
        for index, (n_in, n_out) in enumerate(zip(widths, widths[1:]), start=1):
            shapes[f"fc{index}.weight"] = (n_out, n_in)
            shapes[f"fc{index}.bias"] = (n_out,)
        return shapes
