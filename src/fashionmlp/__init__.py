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
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ._version import __version__ as __version__

#: Modules of 0.1.0 that moved when the package was cut by subject, and where they went.
#: The old name stays importable (``from fashionmlp.recipes import Recipe``) and gives the
#: new module's names, with a DeprecationWarning.
MOVED_MODULES = {
    "_toml": "config",
    "augment": "data",
    "distributed": "devices",
    "environment": "devices",
    "evaluation": "train",
    "fitting": "train",
    "hooks": "callbacks",
    "hub": "pretrained",
    "loaders": "data",
    "model_card": "pretrained",
    "model_config": "config",
    "parts": "train",
    "recipes": "config",
    "settings": "config",
    "state": "train",
    "step": "train",
    "studies.report": "studies.sweep",
    "studies.storage": "studies.sweep",
    "tensor_loader": "data",
}


class _MovedModule(ModuleType):
    """An old module's name: its attributes are those of the module it moved to."""

    def __init__(self, old: str, new: str) -> None:
        super().__init__(f"{__name__}.{old}")
        self._new = f"{__name__}.{new}"
        # Not a file of its own: inspect, which asks every module for its file, then leaves
        # it alone instead of asking __getattr__ below (and importing the new module).
        self.__file__ = f"<{self._new}>"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # introspection, not a use
            raise AttributeError(name)
        warnings.warn(
            f"{self.__name__} is now {self._new}; import from there", DeprecationWarning, 2
        )
        return getattr(importlib.import_module(self._new), name)


def _register_moved(package: str = "") -> None:
    """Give the moved modules of ``package`` (the root, or a subpackage as it is imported:
    a dotted name can only be found once its parent is) their old names."""
    for old, new in MOVED_MODULES.items():
        if old.rpartition(".")[0] == package:
            sys.modules.setdefault(f"{__name__}.{old}", _MovedModule(old, new))


_register_moved()

# The public API, listed once: type checkers read these imports ("X as X" re-exports X),
# and at run time the lazy imports and __all__ are derived from them (_public below).
if TYPE_CHECKING:
    from .callbacks import (
        Callback as Callback,
        LossHistory as LossHistory,
        PrintLoss as PrintLoss,
        ProgressBar as ProgressBar,
        StopOnSignal as StopOnSignal,
        StopTraining as StopTraining,
    )
    from .checkpoint import (
        load_checkpoint as load_checkpoint,
        save_checkpoint as save_checkpoint,
    )
    from .config import (
        RECIPES as RECIPES,
        FashionMLPConfig as FashionMLPConfig,
        Recipe as Recipe,
        RunConfig as RunConfig,
        get_recipe as get_recipe,
    )
    from .data import (
        Augment as Augment,
        Loaders as Loaders,
        Split as Split,
        Splits as Splits,
        default_data_root as default_data_root,
        load_dataset as load_dataset,
        make_loaders as make_loaders,
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
    from .model import (
        CLASSES as CLASSES,
        FashionMLP as FashionMLP,
    )
    from .prediction import (
        Prediction as Prediction,
        image_to_tensor as image_to_tensor,
        load_image as load_image,
        predict as predict,
        predict_probabilities as predict_probabilities,
    )
    from .records import (
        BatchEvent as BatchEvent,
        EpochReport as EpochReport,
        EpochStats as EpochStats,
        EvalResult as EvalResult,
        FitResult as FitResult,
    )
    from .train import (
        Parts as Parts,
        build as build,
        evaluate as evaluate,
        fit as fit,
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
    if name in MOVED_MODULES:  # ``import fashionmlp.settings`` then ``fashionmlp.settings.x``
        return sys.modules[f"{__name__}.{name}"]
    module = _public().get(name)
    if module is None:
        raise AttributeError(f"module 'fashionmlp' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups find it without coming here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_public()})
