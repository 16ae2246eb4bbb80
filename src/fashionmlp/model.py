"""The seed's multi-layer perceptron and the names of the ten classes."""

from __future__ import annotations

from typing import Final

import torch
from torch import nn

from .errors import InputShapeError, InvalidArgumentError

__all__ = ["CLASSES", "IMAGE_SIZE", "NUM_CLASSES", "FashionMLP"]

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

_FEATURES: Final = IMAGE_SIZE * IMAGE_SIZE
_ACCEPTED = "(N, 1, 28, 28), (N, 28, 28) or (N, 784)"


class FashionMLP(nn.Module):
    """The seed's fully connected classifier: ``Flatten → fc1 → ReLU → fc2 → ReLU → fc3``.

    With the defaults this is exactly the seed's model: ``fc1`` 784→512, ``fc2`` 512→512,
    ``fc3`` 512→10, 669,706 parameters, state-dict keys ``fc1.weight`` … ``fc3.bias``.

    Args:
        hidden_features: Width of every hidden layer.
        hidden_layers: Number of hidden layers (linear + ReLU); the output layer is
            ``fc{hidden_layers + 1}``.
        dropout: Dropout probability after each hidden ReLU; ``0`` (the seed) adds none.

    Input is a float tensor shaped ``(N, 1, 28, 28)`` (what ``ToTensor()`` batches give),
    ``(N, 28, 28)`` or ``(N, 784)``; the output is logits shaped ``(N, 10)``.

    Example:
        >>> import torch
        >>> from fashionmlp import FashionMLP
        >>> model = FashionMLP()
        >>> model(torch.zeros(8, 1, 28, 28)).shape
        torch.Size([8, 10])
        >>> sum(p.numel() for p in model.parameters())
        669706
    """

    def __init__(
        self, *, hidden_features: int = 512, hidden_layers: int = 2, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if hidden_features < 1:
            raise InvalidArgumentError(f"hidden_features must be at least 1, got {hidden_features}")
        if hidden_layers < 1:
            raise InvalidArgumentError(f"hidden_layers must be at least 1, got {hidden_layers}")
        if not 0.0 <= dropout < 1.0:
            raise InvalidArgumentError(f"dropout must be in [0, 1), got {dropout}")
        self.hidden_features = hidden_features
        self.hidden_layers = hidden_layers
        self.flatten = nn.Flatten()
        widths = [_FEATURES] + [hidden_features] * hidden_layers + [NUM_CLASSES]
        # Layers are plain attributes fc1, fc2, ... (not a Sequential) so that the
        # default model's state-dict keys are the seed's own.
        for index, (n_in, n_out) in enumerate(zip(widths, widths[1:]), start=1):
            self.add_module(f"fc{index}", nn.Linear(in_features=n_in, out_features=n_out))
        self._layer_names = tuple(f"fc{index}" for index in range(1, len(widths)))
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits ``(N, 10)`` for a batch of images.

        Raises:
            InputShapeError: ``x`` is not floating point or not one of the accepted shapes
                (it is also a :class:`ValueError`).
        """
        _check_input(x)
        x = self.flatten(x)
        *hidden, output = (getattr(self, name) for name in self._layer_names)
        for layer in hidden:
            x = self.relu(layer(x))
            if self.dropout is not None:
                x = self.dropout(x)
        out: torch.Tensor = output(x)
        return out


def _check_input(x: torch.Tensor) -> None:
    shape = tuple(x.shape)
    if shape[1:] not in ((1, IMAGE_SIZE, IMAGE_SIZE), (IMAGE_SIZE, IMAGE_SIZE), (_FEATURES,)):
        raise InputShapeError(
            f"FashionMLP got input of shape {shape}; it accepts {_ACCEPTED} "
            "(a batch of 28x28 grayscale images; add a batch dimension with x.unsqueeze(0))"
        )
    if not x.is_floating_point():
        raise InputShapeError(
            f"FashionMLP got input of dtype {x.dtype}; it needs a floating-point tensor "
            "(convert uint8 pixels with x.float() / 255, as ToTensor() does)"
        )
