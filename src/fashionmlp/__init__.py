"""fashionmlp: train and evaluate the seed's MLP on FashionMNIST, as a typed library.

The names a user of the library reaches for are importable from ``fashionmlp`` itself::

    from fashionmlp import FashionMLP, make_loaders, train_epoch, evaluate, PrintLoss

Helpers (optimizer and schedule builders, IDX readers, device helpers, type aliases) live
in their submodules and are documented there. Names are imported when first used (PEP
562), so ``import fashionmlp`` and ``fashionmlp --help`` do not pay for importing torch.
"""

from __future__ import annotations

__version__ = "0.1.0"

import importlib
import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .callbacks import (
        BatchEvent,
        Callback,
        LossHistory,
        PrintLoss,
        ProgressBar,
        StopOnSignal,
        StopTraining,
    )
    from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
    from .data import default_data_root, prepare_dataset
    from .errors import (
        CheckpointError,
        DatasetError,
        DatasetNotFoundError,
        DeviceError,
        FashionMLPError,
        ImageError,
        InputShapeError,
        InvalidArgumentError,
        MissingExtraError,
        NonFiniteLossError,
        RunFolderError,
    )
    from .evaluation import EvalResult, evaluate
    from .fitting import FitResult, fit
    from .loaders import Augment, FashionMNISTTensors, Loaders, TensorLoader, make_loaders
    from .model import CLASSES, FashionMLP, FashionMLPConfig
    from .prediction import Prediction, image_to_tensor, load_image, predict, predict_probabilities
    from .recipes import RECIPES, Recipe, get_recipe
    from .state import EpochReport, RunConfig
    from .train import EpochStats, train_epoch

#: Where each public name is defined: imported from there on first use.
_PUBLIC = {
    "BatchEvent": "callbacks",
    "Callback": "callbacks",
    "LossHistory": "callbacks",
    "PrintLoss": "callbacks",
    "ProgressBar": "callbacks",
    "StopOnSignal": "callbacks",
    "StopTraining": "callbacks",
    "Checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "default_data_root": "data",
    "prepare_dataset": "data",
    "CheckpointError": "errors",
    "DatasetError": "errors",
    "DatasetNotFoundError": "errors",
    "DeviceError": "errors",
    "FashionMLPError": "errors",
    "ImageError": "errors",
    "InputShapeError": "errors",
    "InvalidArgumentError": "errors",
    "MissingExtraError": "errors",
    "NonFiniteLossError": "errors",
    "RunFolderError": "errors",
    "EvalResult": "evaluation",
    "evaluate": "evaluation",
    "FitResult": "fitting",
    "fit": "fitting",
    "Augment": "loaders",
    "FashionMNISTTensors": "loaders",
    "Loaders": "loaders",
    "TensorLoader": "loaders",
    "make_loaders": "loaders",
    "CLASSES": "model",
    "FashionMLP": "model",
    "FashionMLPConfig": "model",
    "Prediction": "prediction",
    "image_to_tensor": "prediction",
    "load_image": "prediction",
    "predict": "prediction",
    "predict_probabilities": "prediction",
    "RECIPES": "recipes",
    "Recipe": "recipes",
    "get_recipe": "recipes",
    "EpochReport": "state",
    "RunConfig": "state",
    "EpochStats": "train",
    "train_epoch": "train",
}

__all__ = [
    "CLASSES",
    "RECIPES",
    "Augment",
    "BatchEvent",
    "Callback",
    "Checkpoint",
    "CheckpointError",
    "DatasetError",
    "DatasetNotFoundError",
    "DeviceError",
    "EpochReport",
    "EpochStats",
    "EvalResult",
    "FashionMLP",
    "FashionMLPConfig",
    "FashionMLPError",
    "FashionMNISTTensors",
    "FitResult",
    "ImageError",
    "InputShapeError",
    "InvalidArgumentError",
    "Loaders",
    "LossHistory",
    "MissingExtraError",
    "NonFiniteLossError",
    "Prediction",
    "PrintLoss",
    "ProgressBar",
    "Recipe",
    "RunConfig",
    "RunFolderError",
    "StopOnSignal",
    "StopTraining",
    "TensorLoader",
    "__version__",
    "default_data_root",
    "evaluate",
    "fit",
    "get_recipe",
    "image_to_tensor",
    "load_checkpoint",
    "load_image",
    "make_loaders",
    "predict",
    "predict_probabilities",
    "prepare_dataset",
    "save_checkpoint",
    "train_epoch",
]

#: Names that were importable from ``fashionmlp`` before 0.2 and now live only in the
#: submodule named; the old spelling still works, with a DeprecationWarning, until 0.3.
_MOVED = {
    "NUM_CLASSES": "fashionmlp.model",
    "FASHION_MNIST_MEAN": "fashionmlp.loaders",
    "FASHION_MNIST_STD": "fashionmlp.loaders",
    "Backend": "fashionmlp.loaders",
    "Loader": "fashionmlp.loaders",
    "validation_split": "fashionmlp.loaders",
    "CallbackLike": "fashionmlp.callbacks",
    "ImageLike": "fashionmlp.prediction",
    "load_split": "fashionmlp.data",
    "read_idx": "fashionmlp.data",
    "model_device": "fashionmlp.devices",
    "resolve_device": "fashionmlp.devices",
    "make_optimizer": "fashionmlp.recipes",
    "make_scheduler": "fashionmlp.recipes",
    "resolve_autocast": "fashionmlp.recipes",
}


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
        globals()[name] = value  # later lookups find it without coming here
        return value
    if name in _MOVED:
        warnings.warn(
            f"fashionmlp.{name} is deprecated and will be removed in 0.3; "
            f"import it from {_MOVED[name]} instead",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module 'fashionmlp' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
