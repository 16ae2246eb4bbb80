"""fashionmlp: train and evaluate the seed's MLP on FashionMNIST, as a typed library.

The names a user of the library reaches for are importable from ``fashionmlp`` itself::

    from fashionmlp import FashionMLP, make_loaders, train_epoch, evaluate, PrintLoss

Helpers (optimizer and schedule builders, IDX readers, device helpers, type aliases) live
in their submodules and are documented there. Names are imported when first used (PEP
562), so ``import fashionmlp`` and ``fashionmlp --help`` do not pay for importing torch.
"""

from __future__ import annotations

import functools
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._version import __version__ as __version__

# The public API, listed once: type checkers read these imports ("X as X" re-exports X),
# and at run time the lazy imports and __all__ are derived from them (_public below).
if TYPE_CHECKING:
    from .augment import (
        Augment as Augment,
    )
    from .callbacks import (
        Callback as Callback,
        LossHistory as LossHistory,
        PrintLoss as PrintLoss,
        ProgressBar as ProgressBar,
        StopOnSignal as StopOnSignal,
    )
    from .checkpoint import (
        load_checkpoint as load_checkpoint,
        save_checkpoint as save_checkpoint,
    )
    from .data import (
        Split as Split,
        Splits as Splits,
        default_data_root as default_data_root,
        load_dataset as load_dataset,
    )
    from .errors import (
        CheckpointError as CheckpointError,
        DatasetError as DatasetError,
        DatasetNotFoundError as DatasetNotFoundError,
        DeviceError as DeviceError,
        FashionMLPError as FashionMLPError,
        ImageError as ImageError,
        InputShapeError as InputShapeError,
        InvalidArgumentError as InvalidArgumentError,
        MissingExtraError as MissingExtraError,
        NonFiniteLossError as NonFiniteLossError,
        RunFolderError as RunFolderError,
    )
    from .evaluation import (
        evaluate as evaluate,
    )
    from .fitting import (
        fit as fit,
    )
    from .hooks import (
        StopTraining as StopTraining,
    )
    from .loaders import (
        Loaders as Loaders,
        make_loaders as make_loaders,
    )
    from .model import (
        CLASSES as CLASSES,
        FashionMLP as FashionMLP,
    )
    from .model_config import (
        FashionMLPConfig as FashionMLPConfig,
    )
    from .parts import (
        Parts as Parts,
        build as build,
    )
    from .prediction import (
        Prediction as Prediction,
        image_to_tensor as image_to_tensor,
        load_image as load_image,
        predict as predict,
        predict_probabilities as predict_probabilities,
    )
    from .recipes import (
        RECIPES as RECIPES,
        Recipe as Recipe,
        RunConfig as RunConfig,
        get_recipe as get_recipe,
    )
    from .records import (
        BatchEvent as BatchEvent,
        EpochReport as EpochReport,
        EpochStats as EpochStats,
        EvalResult as EvalResult,
        FitResult as FitResult,
    )
    from .train import (
        train_epoch as train_epoch,
    )


@functools.cache
def _public() -> dict[str, str]:
    """Each public name and the module it lives in, read from the imports above."""
    import ast  # only when a public name is first used: not for the command line's start-up

    tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    [block] = [
        node
        for node in tree.body
        if isinstance(node, ast.If)
        and isinstance(node.test, ast.Name)
        and node.test.id == "TYPE_CHECKING"
    ]
    return {
        alias.name: str(statement.module)
        for statement in block.body
        if isinstance(statement, ast.ImportFrom)
        for alias in statement.names
    }


def __getattr__(name: str) -> Any:
    if name == "__all__":
        return sorted(_public()) + ["__version__"]
    module = _public().get(name)
    if module is None:
        raise AttributeError(f"module 'fashionmlp' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups find it without coming here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_public()})
