"""The options of ``train`` that choose its callbacks: validation-driven ones (early
stopping, keeping the best epoch), the loggers and the output, and the callbacks made from
them."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .options import whole_number

if TYPE_CHECKING:
    from ..callbacks import Callback
    from ..runs import RunFolder

__all__ = ["add_output_options", "add_validation_options", "run_loggers", "validation_callbacks"]


def _gain(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def add_validation_options(group: Any) -> None:
    """``--early-stop N``, ``--early-stop-delta X`` and ``--keep-best``."""
    group.add_argument(
        "--early-stop",
        type=whole_number(1),
        metavar="N",
        help="stop when the evaluation accuracy has not improved for N epochs",
    )
    group.add_argument(
        "--early-stop-delta",
        type=_gain,
        default=0.0,
        metavar="X",
        help="the least accuracy gain (a fraction, e.g. 0.001) --early-stop counts (default 0)",
    )
    group.add_argument(
        "--keep-best",
        action="store_true",
        help="save the weights of the epoch with the best evaluation accuracy, not the last's",
    )


def add_output_options(group: Any) -> None:
    """Progress, plots, TensorBoard and the finite-loss check."""
    group.add_argument(
        "--no-progress", action="store_true", help="plain lines instead of a progress bar"
    )
    group.add_argument("--no-plots", action="store_true", help="do not write the PNG plots")
    group.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write TensorBoard event files to RUN/tensorboard "
        "(pip install 'fashionmlp[tensorboard]'; then: tensorboard --logdir runs)",
    )
    group.add_argument(
        "--log-every",
        type=whole_number(1),
        default=50,
        metavar="N",
        help="steps between two batch-loss points in TensorBoard (default 50)",
    )
    add_mlflow_options(group)
    group.add_argument(
        "--no-finite-check",
        action="store_true",
        help="keep training when the loss becomes NaN or infinite (default: stop)",
    )


def add_mlflow_options(group: Any) -> None:
    """``--mlflow [URI]`` and ``--mlflow-experiment``; a malformed URI is refused here, before
    anything runs."""
    group.add_argument(
        "--mlflow",
        nargs="?",
        const="",
        type=_tracking_uri,
        metavar="URI",
        help="also log to MLflow: any tracking URI (http://host:5000, sqlite:///x.db, ...); "
        "without one, sqlite:///mlflow.db here (pip install 'fashionmlp[mlflow]'; then: "
        "mlflow ui)",
    )
    group.add_argument(
        "--mlflow-experiment",
        default="fashionmlp",
        metavar="NAME",
        help="the MLflow experiment (default fashionmlp)",
    )


def _tracking_uri(text: str) -> str:
    from ..errors import InvalidArgumentError
    from ..loggers.mlflow_logger import check_tracking_uri

    try:
        return check_tracking_uri(text or None)
    except InvalidArgumentError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def mlflow_uri(args: argparse.Namespace) -> str | None:
    """The tracking URI ``--mlflow`` asks for (a bare ``--mlflow``: the default store), or
    ``None`` without it."""
    if args.mlflow is None:
        return None
    from ..loggers.mlflow_logger import check_tracking_uri

    return check_tracking_uri(args.mlflow or None)


def validation_callbacks(args: argparse.Namespace, folder: RunFolder | None) -> list[Callback]:
    """``--early-stop`` and ``--keep-best``'s callbacks; for a resumed run, those its
    checkpoint holds the state of (their settings come back with it)."""
    from ..callbacks import EarlyStopping, KeepBest

    if folder is not None and args.resume is not None:
        saved = _saved_states(folder, args)
        kinds: dict[str, Callable[[], Callback]] = {
            "EarlyStopping": lambda: EarlyStopping(1),  # its patience comes with its state
            "KeepBest": KeepBest,
        }
        return [make() for name, make in kinds.items() if name in saved]
    chosen: list[Callback] = []
    if args.early_stop is not None:
        chosen.append(EarlyStopping(args.early_stop, min_delta=args.early_stop_delta))
    if args.keep_best:
        chosen.append(KeepBest())
    return chosen


def run_loggers(
    folder: RunFolder, args: argparse.Namespace, closing: contextlib.ExitStack
) -> list[object]:
    """The run's loggers (they write from rank 0 only), closed with the run. A resumed run
    logs to the MLflow run its checkpoint names, with or without ``--mlflow``."""
    from ..loggers import CSVLogger, MLflowLogger, TensorBoardLogger
    from ..runs import METRICS_CSV, TENSORBOARD

    loggers: list[object] = [CSVLogger(folder.path / METRICS_CSV, rewrite=True)]
    if args.tensorboard:
        loggers.append(TensorBoardLogger(folder.path / TENSORBOARD, every=args.log_every))
    tracked = _saved_states(folder, args).get("MLflowLogger")
    uri = tracked["tracking_uri"] if tracked else mlflow_uri(args)
    if uri is not None:
        experiment = tracked["experiment"] if tracked else args.mlflow_experiment
        loggers.append(
            MLflowLogger(
                uri,
                experiment=experiment,
                run_name=folder.path.name,  # the run folder's name, as in TensorBoard
                every=args.log_every,
                log_model=False,
            )
        )
    for logger in loggers:
        close = getattr(logger, "close", None)
        if close is not None:
            closing.callback(close)
    return loggers


def _saved_states(folder: RunFolder | None, args: argparse.Namespace) -> dict[str, Any]:
    """The callbacks' states in a resumed run's checkpoint (none for a new run)."""
    if folder is None or args.resume is None:
        return {}
    from ..checkpoint import load_checkpoint

    return dict(load_checkpoint(folder.checkpoint).state.get("callbacks", {}))
