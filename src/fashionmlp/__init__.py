"""fashionmlp: train and evaluate the seed's MLP on FashionMNIST, as a typed library.

The public API, all importable from ``fashionmlp``::

    from fashionmlp import FashionMLP, make_loaders, train_epoch, evaluate, PrintLoss
"""

from __future__ import annotations

__version__ = "0.1.0"

from .callbacks import BatchEvent, Callback, CallbackLike, LossHistory, PrintLoss, ProgressBar
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .data import default_data_root, load_split, prepare_dataset, read_idx
from .devices import model_device, resolve_device
from .errors import (
    CheckpointError,
    DatasetError,
    DatasetNotFoundError,
    DeviceError,
    FashionMLPError,
    ImageError,
    InputShapeError,
    InvalidArgumentError,
    NonFiniteLossError,
)
from .evaluate import EvalResult, evaluate
from .loaders import (
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    Augment,
    Backend,
    FashionMNISTTensors,
    Loader,
    Loaders,
    TensorLoader,
    make_loaders,
    validation_split,
)
from .model import CLASSES, NUM_CLASSES, FashionMLP
from .predict import ImageLike, Prediction, image_to_tensor, load_image, predict
from .recipes import (
    RECIPES,
    EpochReport,
    FitResult,
    Recipe,
    StopTraining,
    fit,
    get_recipe,
    make_optimizer,
    make_scheduler,
    resolve_autocast,
)
from .train import EpochStats, train_epoch

__all__ = [
    "CLASSES",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "NUM_CLASSES",
    "RECIPES",
    "Augment",
    "Backend",
    "BatchEvent",
    "Callback",
    "CallbackLike",
    "Checkpoint",
    "CheckpointError",
    "DatasetError",
    "DatasetNotFoundError",
    "DeviceError",
    "EpochReport",
    "EpochStats",
    "EvalResult",
    "FashionMLP",
    "FashionMLPError",
    "FashionMNISTTensors",
    "FitResult",
    "ImageError",
    "ImageLike",
    "InputShapeError",
    "InvalidArgumentError",
    "Loader",
    "Loaders",
    "LossHistory",
    "NonFiniteLossError",
    "Prediction",
    "PrintLoss",
    "ProgressBar",
    "Recipe",
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
    "load_split",
    "make_loaders",
    "make_optimizer",
    "make_scheduler",
    "model_device",
    "predict",
    "prepare_dataset",
    "read_idx",
    "resolve_autocast",
    "resolve_device",
    "save_checkpoint",
    "train_epoch",
    "validation_split",
]
