"""The seed's multi-layer perceptron: :class:`FashionMLP`, built from its
:class:`~fashionmlp.FashionMLPConfig`."""

from __future__ import annotations

from typing import Final

import torch
from torch import nn
from typing_extensions import Self

from .config import (
    CLASSES,
    IMAGE_SIZE,
    NO_NORMALIZATION,
    NUM_CLASSES,
    FashionMLPConfig,
)
from .data import standardize
from .errors import CheckpointError, InputShapeError
from .pretrained import PretrainedMixin

__all__ = [
    "CLASSES",
    "IMAGE_SIZE",
    "NUM_CLASSES",
    "FashionMLP",
    "FashionMLPConfig",
    "standardize",
]

_FEATURES: Final = IMAGE_SIZE * IMAGE_SIZE
_ACCEPTED = "(N, 1, 28, 28), (N, 28, 28) or (N, 784)"


class FashionMLP(PretrainedMixin, nn.Module):
    """The seed's fully connected classifier: ``Flatten → fc1 → ReLU → fc2 → ReLU → fc3``.

    With the defaults this is exactly the seed's model: ``fc1`` 784→512, ``fc2`` 512→512,
    ``fc3`` 512→10, 669,706 parameters, state-dict keys ``fc1.weight`` … ``fc3.bias``, and
    the same forward pass.

    Args:
        hidden_features: Width of every hidden layer.
        hidden_layers: Number of hidden layers (linear + ReLU); the output layer is
            ``fc{hidden_layers + 1}``.
        dropout: Dropout probability after each hidden ReLU; ``0`` (the seed) adds none.
        normalize: ``(mean, std)`` to standardize the input with inside :meth:`forward`
            (e.g. FashionMNIST's, ``(0.2860, 0.3530)``), so that the trained model takes
            plain ``ToTensor()`` input; ``(0.0, 1.0)`` (the seed) leaves the input as it is.
            Kept in the model's :attr:`config`, not in its ``state_dict``.

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

    model_type = "fashionmlp"
    config_class = FashionMLPConfig

    def __init__(
        self,
        *,
        hidden_features: int = 512,
        hidden_layers: int = 2,
        dropout: float = 0.0,
        normalize: tuple[float, float] = NO_NORMALIZATION,
    ) -> None:
        super().__init__()
        #: What the model was built with (see :class:`FashionMLPConfig`).
        self.config = FashionMLPConfig(hidden_features, hidden_layers, dropout, normalize)
        self.flatten = nn.Flatten()
        # Layers are plain attributes fc1, fc2, ... (not a Sequential) so that the
        # default model's state-dict keys are the seed's own.
        layers: list[str] = []
        for name, shape in self.config.parameter_shapes().items():
            if name.endswith(".weight"):
                layers.append(name.removesuffix(".weight"))
                self.add_module(layers[-1], nn.Linear(in_features=shape[1], out_features=shape[0]))
        self._layer_names = tuple(layers)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None

    @classmethod
    def from_config(cls, config: FashionMLPConfig) -> Self:
        """A new (untrained) model built with ``config``."""
        return cls(
            hidden_features=config.hidden_features,
            hidden_layers=config.hidden_layers,
            dropout=config.dropout,
            normalize=config.normalize,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits ``(N, 10)`` for a batch of images.

        Floating input of another precision than the weights (float64 from NumPy, say) is
        converted to theirs; integer input is refused.

        Raises:
            InputShapeError: ``x`` is not floating point or not one of the accepted shapes
                (it is also a :class:`ValueError`).
        """
        _check_input(x)
        *hidden, output = self._layer_names
        x = x.to(getattr(self, output).weight.dtype)  # a no-op when they already agree
        if self.config.normalizes:
            x = standardize(x, *self.config.normalize)
        x = self.flatten(x)
        for layer in hidden:
            x = self.relu(getattr(self, layer)(x))
            if self.dropout is not None:
                x = self.dropout(x)
        out: torch.Tensor = getattr(self, output)(x)
        return out

    def extra_repr(self) -> str:
        return f"normalize={self.config.normalize}" if self.config.normalizes else ""

    @classmethod
    def expected_shapes(
        cls, config: FashionMLPConfig, found: dict[str, tuple[int, ...]]
    ) -> dict[str, tuple[int, ...]]:
        """The weights a model of ``config`` has; checked before one is built, so that a
        config claiming huge layers is refused instead of allocated.

        Raises:
            CheckpointError: ``found`` has too few tensors for the config's layers.
        """
        if config.hidden_layers >= len(found):  # each layer has two tensors
            # Said before listing the expected names: a config claiming 2**40 layers would
            # fill the memory with them.
            raise CheckpointError(
                f"holds {len(found)} tensors, too few for the {config.hidden_layers} hidden "
                "layers of its config"
            )
        return config.parameter_shapes()


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
