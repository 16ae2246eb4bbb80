"""Loggers: callbacks that write a run's figures where researchers watch and compare runs.

A logger is a callback with ``on_batch_end`` (it writes a batch's loss every ``every``
steps) and ``on_epoch_end`` (it writes each :class:`~fashionmlp.EpochReport`); give it to
:func:`~fashionmlp.fit` in ``callbacks=`` and it gets both. In your own loop, pass it to
:func:`~fashionmlp.train_epoch` and call ``on_epoch_end`` yourself. Under ``torchrun`` only
the first process writes, so one set of files is written, once.

:class:`CSVLogger` appends rows and flushes each as it comes, so ``tail -f`` shows a run as
it goes; :class:`TensorBoardLogger` writes TensorBoard event files, the HParams tab's
included (``pip install 'fashionmlp[tensorboard]'``); :class:`MLflowLogger` logs to any
MLflow tracking store (``pip install 'fashionmlp[mlflow]'``).

A *tracker* is a logger that keeps runs on a server, with parent and child runs: given to a
study (:func:`~fashionmlp.studies.repeat`, :func:`~fashionmlp.studies.sweep`) it logs the
study as one run with a child per seed or trial, through the study hooks of
:mod:`fashionmlp.callbacks`. :data:`TRACKERS` registers each for the command line, which
gives every one the options ``--NAME [URI]`` and ``--NAME-experiment``; a tracker class
takes ``(uri, *, experiment, run_name, every, log_model)`` and keeps ``tracking_uri`` and
``experiment`` in its state. Adding one is a module of its own, a line here, and its extra.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .csv_logger import (
        BATCH_COLUMNS as BATCH_COLUMNS,
        EPOCH_COLUMNS as EPOCH_COLUMNS,
        CSVLogger as CSVLogger,
    )
    from .mlflow_logger import MLflowLogger as MLflowLogger
    from .tensorboard_logger import TensorBoardLogger as TensorBoardLogger

__all__ = [
    "BATCH_COLUMNS",
    "EPOCH_COLUMNS",
    "TRACKERS",
    "CSVLogger",
    "MLflowLogger",
    "TensorBoardLogger",
    "tracker",
]

#: The trackers the command line offers, each under its option's name, with its
#: ``module:class`` and the extra that brings its dependency. Importing this module imports
#: none of them.
TRACKERS: dict[str, tuple[str, str]] = {
    "mlflow": ("fashionmlp.loggers.mlflow_logger:MLflowLogger", "mlflow"),
}

_LAZY = {
    "BATCH_COLUMNS": "csv_logger",
    "EPOCH_COLUMNS": "csv_logger",
    "CSVLogger": "csv_logger",
    "MLflowLogger": "mlflow_logger",
    "TensorBoardLogger": "tensorboard_logger",
}


def __getattr__(name: str) -> Any:
    # Each logger imported when first named: the command line reads TRACKERS without
    # paying for torch.
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)


def tracker(name: str) -> Any:
    """The tracker class registered as ``name`` in :data:`TRACKERS`."""
    module, _, cls = TRACKERS[name][0].partition(":")
    return getattr(importlib.import_module(module), cls)
