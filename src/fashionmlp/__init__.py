"""fashionmlp: train and evaluate the seed's MLP on FashionMNIST, as a typed library.

The public API, all importable from ``fashionmlp``::

    from fashionmlp import FashionMLP, make_loaders, train_epoch, evaluate, PrintLoss
"""

from __future__ import annotations

__version__ = "0.1.0"

from .callbacks import BatchEvent, Callback, CallbackLike, LossHistory, PrintLoss
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .data import default_data_root, load_split, prepare_dataset, read_idx
from .devices import model_device, resolve_device
from .errors import (
    CheckpointError,
    DatasetError,
    DatasetNotFoundError,
    DeviceError,
    FashionMLPError,
    InputShapeError,
    InvalidArgumentError,
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
)
from .model import CLASSES, NUM_CLASSES, FashionMLP
from .train import EpochStats, train_epoch

__all__ = [
    "CLASSES",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "NUM_CLASSES",
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
    "EpochStats",
    "EvalResult",
    "FashionMLP",
    "FashionMNISTTensors",
    "FashionMLPError",
    "InputShapeError",
    "InvalidArgumentError",
    "Loader",
    "Loaders",
    "LossHistory",
    "PrintLoss",
    "TensorLoader",
    "__version__",
    "default_data_root",
    "evaluate",
    "load_checkpoint",
    "load_split",
    "make_loaders",
    "model_device",
    "prepare_dataset",
    "read_idx",
    "resolve_device",
    "save_checkpoint",
    "train_epoch",
]
