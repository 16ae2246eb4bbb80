"""The seed's multi-layer perceptron and the names of the ten classes."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import torch
from torch import nn
from typing_extensions import Self

from .checkpoint import load_state, push_pretrained, read_pretrained, write_pretrained
from .errors import CheckpointError, InputShapeError, InvalidArgumentError

__all__ = [
    "CLASSES",
    "IMAGE_SIZE",
    "NUM_CLASSES",
    "FashionMLP",
    "FashionMLPConfig",
    "standardize",
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

_FEATURES: Final = IMAGE_SIZE * IMAGE_SIZE
_ACCEPTED = "(N, 1, 28, 28), (N, 28, 28) or (N, 784)"


def standardize(x: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """``(x - mean) / std``: the arithmetic of ``transforms.Normalize``, bit for bit."""
    return (x - mean) / std


@dataclass(frozen=True)
class FashionMLPConfig:
    """The constructor arguments of a :class:`FashionMLP`: all it takes to build it again.

    Saved as the ``config.json`` of :meth:`FashionMLP.save_pretrained`, and in every
    checkpoint of a ``FashionMLP``, so that a trained model can be rebuilt without knowing
    how it was made (as nanoGPT's ``GPT(GPTConfig(**checkpoint["model_args"]))``).

    Example:
        >>> config = FashionMLPConfig(hidden_features=256, normalize=(0.286, 0.353))
        >>> FashionMLPConfig.from_dict(config.to_dict()) == config
        True
    """

    #: Width of every hidden layer.
    hidden_features: int = 512
    #: Number of hidden layers (linear + ReLU).
    hidden_layers: int = 2
    #: Dropout probability after each hidden ReLU.
    dropout: float = 0.0
    #: ``(mean, std)`` the model standardizes its input with, or ``None``: the model then
    #: takes ``ToTensor()``-style input in ``[0, 1]`` whatever it was trained with.
    normalize: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.hidden_features, bool) or not isinstance(self.hidden_features, int):
            raise InvalidArgumentError(
                f"hidden_features must be a whole number, got {self.hidden_features!r}"
            )
        if isinstance(self.hidden_layers, bool) or not isinstance(self.hidden_layers, int):
            raise InvalidArgumentError(
                f"hidden_layers must be a whole number, got {self.hidden_layers!r}"
            )
        if self.hidden_features < 1:
            raise InvalidArgumentError(
                f"hidden_features must be at least 1, got {self.hidden_features}"
            )
        if self.hidden_layers < 1:
            raise InvalidArgumentError(
                f"hidden_layers must be at least 1, got {self.hidden_layers}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise InvalidArgumentError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.normalize is not None:
            mean, std = self.normalize
            if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
                raise InvalidArgumentError(
                    f"normalize must be (mean, std) with a finite mean and std above 0, "
                    f"got {self.normalize}"
                )

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

    def to_dict(self) -> dict[str, Any]:
        """The arguments as a JSON-ready dict."""
        return {
            "hidden_features": self.hidden_features,
            "hidden_layers": self.hidden_layers,
            "dropout": self.dropout,
            "normalize": list(self.normalize) if self.normalize is not None else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FashionMLPConfig:
        """The config :meth:`to_dict` wrote.

        Raises:
            InvalidArgumentError: A key is unknown or a value out of range.
        """
        unknown = set(data) - {field.name for field in dataclasses.fields(cls)}
        if unknown:
            raise InvalidArgumentError(f"unknown FashionMLP settings: {', '.join(sorted(unknown))}")
        normalize = data.get("normalize")
        if normalize is not None:
            try:
                mean, std = (float(value) for value in normalize)
            except (TypeError, ValueError):
                raise InvalidArgumentError(
                    f"normalize must be [mean, std], got {normalize!r}"
                ) from None
            data = {**data, "normalize": (mean, std)}
        return cls(**data)


class FashionMLP(nn.Module):
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
            plain ``ToTensor()`` input; ``None`` (the seed) leaves the input as it is. Kept
            in the model's :attr:`config`, not in its ``state_dict``.

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
        self,
        *,
        hidden_features: int = 512,
        hidden_layers: int = 2,
        dropout: float = 0.0,
        normalize: tuple[float, float] | None = None,
    ) -> None:
        super().__init__()
        #: What the model was built with (see :class:`FashionMLPConfig`).
        self.config = FashionMLPConfig(hidden_features, hidden_layers, dropout, normalize)
        self.flatten = nn.Flatten()
        # Layers are plain attributes fc1, fc2, ... (not a Sequential) so that the
        # default model's state-dict keys are the seed's own.
        shapes = self.config.parameter_shapes()
        layers = [name.removesuffix(".weight") for name in shapes if name.endswith(".weight")]
        for layer in layers:
            n_out, n_in = shapes[f"{layer}.weight"]
            self.add_module(layer, nn.Linear(in_features=n_in, out_features=n_out))
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
        *hidden, output = (getattr(self, name) for name in self._layer_names)
        x = x.to(output.weight.dtype)  # a no-op when they already agree
        if self.config.normalize is not None:
            x = standardize(x, *self.config.normalize)
        x = self.flatten(x)
        for layer in hidden:
            x = self.relu(layer(x))
            if self.dropout is not None:
                x = self.dropout(x)
        out: torch.Tensor = output(x)
        return out

    def extra_repr(self) -> str:
        return f"normalize={self.config.normalize}" if self.config.normalize is not None else ""

    def save_pretrained(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``config.json`` and ``model.safetensors`` to ``folder`` (Hugging Face's layout).

        The folder is created if needed; the two files are written atomically and replaced
        if there. Load it back with :meth:`from_pretrained`, here or in any project.

        Raises:
            CheckpointError: The folder cannot be created or written.

        Example:
            >>> import tempfile
            >>> folder = FashionMLP(hidden_features=64).save_pretrained(tempfile.mkdtemp())
            >>> FashionMLP.from_pretrained(folder).config.hidden_features
            64
        """
        return write_pretrained(folder, self.config.to_dict(), self.state_dict())

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str],
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        token: str | None = None,
        local_files_only: bool = False,
    ) -> Self:
        """Load a trained model, in eval mode, with the architecture and input normalization
        it was trained with.

        ``name_or_path`` is one of: a folder written by :meth:`save_pretrained`; a finished
        ``fashionmlp train`` run folder (it is such a folder); a checkpoint file of ours
        (``checkpoint.pt``, or anything :func:`~fashionmlp.save_checkpoint` wrote for a
        ``FashionMLP``); or, with the ``hub`` extra (``pip install 'fashionmlp[hub]'``), a
        Hugging Face Hub repository id ``"user/repo"`` (``revision``, ``cache_dir``,
        ``token`` and ``local_files_only`` go to the download, as for
        ``PyTorchModelHubMixin`` models). Nothing in the files is ever run as code.

        Raises:
            CheckpointError: Nothing loadable is there, or the files are truncated, not of
                the right kind, of another shape (missing, extra or mis-sized weights), or
                their config is not valid JSON; the message names the file and the fix.
        """
        found = read_pretrained(
            name_or_path,
            revision=revision,
            cache_dir=cache_dir,
            token=token,
            local_files_only=local_files_only,
        )
        try:
            config = FashionMLPConfig.from_dict(found.config)
        except (InvalidArgumentError, TypeError) as exc:
            raise CheckpointError(
                f"{found.config_source} does not describe a FashionMLP ({exc}); write it again "
                "with model.save_pretrained()"
            ) from exc
        # Checked before the model is built: a config claiming huge layers is refused
        # instead of allocated.
        shapes = {name: tuple(tensor.shape) for name, tensor in found.state.items()}
        if config.hidden_layers >= len(shapes):  # each layer has two tensors
            # Said before listing the expected names: a config claiming 2**40 layers would
            # fill the memory with them.
            raise CheckpointError(
                f"{found.weights_source} holds {len(shapes)} tensors, too few for the "
                f"{config.hidden_layers} hidden layers of its config ({found.config_source}); "
                "the files do not belong together: write them again with model.save_pretrained()"
            )
        expected = config.parameter_shapes()
        if shapes != expected:
            missing = sorted(set(expected) - set(shapes))
            extra = sorted(set(shapes) - set(expected))
            resized = sorted(k for k in set(shapes) & set(expected) if shapes[k] != expected[k])
            raise CheckpointError(
                f"{found.weights_source} does not fit the model its config describes "
                f"({found.config_source}): missing {missing or 'none'}, unexpected "
                f"{extra or 'none'}, of another size {resized or 'none'}; the files do not "
                "belong together: write them again with model.save_pretrained()"
            )
        model = cls.from_config(config)
        load_state(model, found.state, source=found.weights_source)
        return model.eval()

    def push_to_hub(
        self,
        repo_id: str,
        *,
        token: str | None = None,
        private: bool | None = None,
        revision: str | None = None,
        commit_message: str = "Upload FashionMLP",
    ) -> str:
        """Upload :meth:`save_pretrained`'s two files to the Hugging Face Hub repository
        ``repo_id`` (created if needed); return the commit's URL.

        Needs the ``hub`` extra (``pip install 'fashionmlp[hub]'``) and a token with write
        access (``token``, or ``huggingface-cli login``).
        """
        return push_pretrained(
            self,
            repo_id,
            token=token,
            private=private,
            revision=revision,
            commit_message=commit_message,
        )


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
