"""Loggers: callbacks that write a run's figures where researchers watch and compare runs.

A logger is a callback with ``on_batch_end`` (it writes a batch's loss every ``every``
steps) and ``on_epoch_end`` (it writes each :class:`~fashionmlp.EpochReport`); give it to
:func:`~fashionmlp.fit` in ``callbacks=`` and it gets both. In your own loop, pass it to
:func:`~fashionmlp.train_epoch` and call ``on_epoch_end`` yourself. Under ``torchrun`` only
the first process writes, so one set of files is written, once.

:class:`CSVLogger` appends rows and flushes each as it comes, so ``tail -f`` shows a run as
it goes; :class:`TensorBoardLogger` writes TensorBoard event files, the HParams tab's
included (``pip install 'fashionmlp[tensorboard]'``); :class:`MLflowLogger` logs to any
MLflow tracking store, and uses the run's start and end too, so it is for ``fit``
(``pip install 'fashionmlp[mlflow]'``).
"""

from __future__ import annotations

from .csv_logger import BATCH_COLUMNS, EPOCH_COLUMNS, CSVLogger
from .mlflow_logger import MLflowLogger
from .tensorboard_logger import TensorBoardLogger

__all__ = ["BATCH_COLUMNS", "EPOCH_COLUMNS", "CSVLogger", "MLflowLogger", "TensorBoardLogger"]
