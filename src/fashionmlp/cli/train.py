"""``fashionmlp train``: a recipe trained into a run folder, or an interrupted run resumed."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import RunConfig
from ..errors import InvalidArgumentError, RunExistsError
from .common import plural, received, stop_if_interrupted
from .console import RunConsole
from .options import (
    add_data_options,
    add_device_option,
    add_recipe_options,
    chosen_recipe,
    recipe_destinations,
    seed_list,
    whole_number,
)
from .run_options import (
    add_output_options,
    add_validation_options,
    run_loggers,
    validation_callbacks,
)

if TYPE_CHECKING:
    import torch

    from ..runs import RunFolder

__all__ = ["add_parser", "run"]

#: The options of a run that a resumed run takes from its folder (or checkpoint) instead.
_RUN_OPTIONS = ("recipe", "set", "seed", "seeds", "limit", "validation", "out", "early_stop")


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add ``train`` and its options to the subcommands ``commands``."""
    train: argparse.ArgumentParser = commands.add_parser(
        "train",
        help="train FashionMLP with a recipe and evaluate it after every epoch",
        description="Train a FashionMLP with a recipe, evaluate it after every epoch, and "
        "write a run folder (the model, its settings, metrics, plots).",
    )
    add_recipe_options(train)
    run_group = train.add_argument_group("the run")
    run_group.add_argument(
        "--seed", type=whole_number(0, 2**63 - 1), help="random seed (default: drawn and recorded)"
    )
    run_group.add_argument(
        "--seeds",
        type=seed_list,
        metavar="A-B|A,B,...",
        help="train once per seed, each in --out/seed-<N>/, and summarize them: mean, "
        "standard deviation, min, max and 95%% interval of the accuracy and time "
        "(--out/summary.json, summary.csv, accuracy.png; a rerun continues the study)",
    )
    run_group.add_argument(
        "--limit", type=whole_number(1), help="use only the first N samples of each split"
    )
    run_group.add_argument(
        "--validation",
        type=whole_number(1),
        metavar="N",
        help="hold out N training images and evaluate on them instead of the test set",
    )
    run_group.add_argument(
        "--resume",
        type=Path,
        metavar="RUN",
        help="continue the interrupted run in folder RUN (its settings are kept)",
    )
    run_group.add_argument(
        "--out", type=Path, help="run folder to write (default: runs/<date>-<time>-<random>)"
    )
    run_group.add_argument(
        "--overwrite", action="store_true", help="replace a finished run in --out"
    )
    add_validation_options(run_group)
    add_output_options(train.add_argument_group("output"))
    add_data_options(train)
    add_device_option(train)
    return train


def run(args: argparse.Namespace) -> int:
    """Train (or resume) the run the options describe; return the exit status."""
    if args.seeds is not None:
        from .seeds import train_seeds

        return train_seeds(args)
    config = None if args.resume is not None else new_run_config(args)  # checked before torch
    stop_if_interrupted()
    from .. import devices
    from ..devices import resolve_device

    # Under torchrun every process runs this; rank 0 alone prints and writes files.
    device = devices.init_from_environment(resolve_device(args.device))
    try:
        main = devices.is_main_process()
        if config is not None:  # every rank trains with rank 0's drawn seed
            config = dataclasses.replace(config, seed=devices.broadcast_from_main(config.seed))
        stop_if_interrupted()
        with _claim_run_folder(args, main) as folder:
            stop_if_interrupted()
            config = config or folder.checkpoint_config()
            return _train_in(folder, config, device, args, main=main)
    finally:
        devices.shutdown()


def new_run_config(args: argparse.Namespace) -> RunConfig:
    """The settings of a new run from the options, checked before anything is written."""
    import random  # here: it costs the command line's start-up otherwise

    recipe = chosen_recipe(args)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    return RunConfig(recipe, seed=seed, limit=args.limit, validation_size=args.validation or 0)


def _claim_run_folder(args: argparse.Namespace, main: bool) -> RunFolder:
    """The run's folder, claimed by rank 0 (the only one that writes) for the run's life."""
    from .. import devices

    folders = _run_folder_class()
    try:
        if args.resume is not None:
            _refuse_settings_beside_resume(args)
            return folders.interrupted(args.resume) if main else folders(args.resume)
        folder = folders.new(args.out, overwrite=args.overwrite) if main else folders(".")
    except RunExistsError as exc:  # said again in the command line's words
        state = "a finished run" if exc.finished else "an interrupted run"
        hint = "" if exc.finished else f" (or continue it with --resume {exc.path})"
        raise InvalidArgumentError(
            f"--out {exc.path} already holds {state}; choose another --out or pass "
            f"--overwrite to replace it{hint}"
        ) from exc
    path = devices.broadcast_from_main(folder.path)  # the name rank 0 chose
    return folder if main else folders(path)


def _run_folder_class() -> type[RunFolder]:
    """:class:`~fashionmlp.runs.RunFolder`, naming ``--out`` where it would say "folder"."""
    from ..runs import RunFolder

    class OutFolder(RunFolder):
        elsewhere = "--out"

    return OutFolder


def _refuse_settings_beside_resume(args: argparse.Namespace) -> None:
    given = [
        f"--{name.replace('_', '-')}" for name in _RUN_OPTIONS if getattr(args, name) is not None
    ]
    given += [
        "--" + path.rsplit(".", 1)[-1].replace("_", "-")
        for dest, path in recipe_destinations().items()
        if getattr(args, dest) is not None
    ]
    given += ["--overwrite"] * args.overwrite + ["--keep-best"] * args.keep_best
    if given:
        raise InvalidArgumentError(
            f"--resume keeps the run's own settings; leave out {', '.join(given)}"
        )


def _train_in(
    folder: RunFolder,
    config: RunConfig,
    device: torch.device,
    args: argparse.Namespace,
    *,
    main: bool,
) -> int:
    from ..callbacks import KeepBest, LossHistory, StopOnSignal
    from ..data import default_data_root, load_dataset
    from ..devices import environment
    from ..train import fit

    data_root = args.data_root or default_data_root()
    if main:
        folder.write_config(config, environment(device, data_root))
    stop_if_interrupted()
    console = RunConsole(config, folder.path, resumed=args.resume is not None, main=main)
    console.say(console.header(device))
    batch_losses = LossHistory()
    stop = StopOnSignal()
    chosen = validation_callbacks(args, folder)
    with stop.installed(), contextlib.ExitStack() as closing:
        loggers = run_loggers(folder, args, closing)
        callbacks = [batch_losses, *chosen, *loggers]
        callbacks += console.callbacks(args)
        closing.callback(console.close)  # a stopped run's bar ends before the message
        stop.received = stop.received or received()  # one that came just before
        data = load_dataset(data_root, download=args.download, test=config.validation_size == 0)
        try:
            result = fit(
                config,
                data=data,
                device=device,
                callbacks=[*callbacks, stop],
                checkpoint_path=folder.checkpoint,
                resume_from=folder.checkpoint if args.resume is not None else None,
                check_finite=not args.no_finite_check,
            )
        except KeyboardInterrupt:  # a second Ctrl-C: stopped at once, nothing more saved
            if not folder.checkpoint.exists():
                raise  # nothing to resume: the failed start is undone, "interrupted" is all
            console.fail(
                "interrupted again: stopped at once, without saving the current epoch's "
                f"progress; the last checkpoint, {folder.checkpoint}, is intact; "
                f"{console.resume_hint}"
            )
            return 128 + signal.SIGINT
    if result.stopped_at is not None:
        epoch, batches = result.stopped_at
        console.fail(
            f"interrupted during epoch {epoch} after {plural(batches, 'batch', 'batches')}; "
            f"the run is saved in {folder.checkpoint}; {console.resume_hint}"
        )
        return 128 + (stop.received or signal.SIGINT)
    if main:
        kept = next((c.best_epoch for c in chosen if isinstance(c, KeepBest)), None)
        _finish(folder, config, result, batch_losses.pairs, data, args, kept)
        from ..loggers import MLflowLogger

        for logger in loggers:  # the tracker gets the run folder's model, card included
            if isinstance(logger, MLflowLogger):
                logger.log_model_folder(folder.path)
    return 0


def _finish(
    folder: RunFolder,
    config: RunConfig,
    result: Any,
    batch_losses: list[tuple[int, float]],
    data: Any,
    args: argparse.Namespace,
    model_epoch: int | None,
) -> None:
    """Write the finished run's model, metrics and plots, and say where they are."""
    from ..data import select_splits
    from ..plots import plot_run

    folder.write_results(result, model_epoch=model_epoch)
    if not args.no_plots:
        _, evaluated = select_splits(
            data, limit=config.limit, validation_size=config.validation_size
        )
        try:
            smoothing = config.recipe.label_smoothing
            drawn = plot_run(
                folder.path, result, batch_losses, evaluated, label_smoothing=smoothing
            )
            print(f"Plots: {', '.join(path.name for path in drawn)}")
        except ImportError as exc:
            print(f"Plots skipped: {exc}")
    kept = result.history[model_epoch - 1] if model_epoch else result.history[-1]
    which = f" (the model of epoch {kept.epoch}, the best)" if model_epoch else ""
    print(
        f"Final {config.evaluated_on} accuracy {100 * kept.eval.accuracy:.2f}%{which} after "
        f"{plural(len(result.history), 'epoch', 'epochs')} in {result.history[-1].seconds:.1f} s; "
        f"the model is in {folder.path} (FashionMLP.from_pretrained)"
    )
