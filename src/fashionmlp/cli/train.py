"""``fashionmlp train``: a recipe trained into a run folder, an interrupted run resumed, or a
recipe over several seeds (``--seeds``) and their spread."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import random
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..callbacks import EarlyStopping, KeepBest, PrintLoss, ProgressBar, StopOnSignal
from ..config import RunConfig
from ..errors import InvalidArgumentError, RunExistsError
from ..records import BatchEvent, EpochReport
from .common import (
    Parser,
    add_data_options,
    add_device_option,
    add_recipe_options,
    add_tracker_options,
    chosen_recipe,
    fail,
    number,
    plural,
    received,
    recipe_changes,
    seed_list,
    stop_if_interrupted,
    trackers,
    whole_number,
)

if TYPE_CHECKING:
    import torch

    from ..runs import RunFolder
    from ..studies import SeedSummary

HELP = "train FashionMLP with a recipe and evaluate it after every epoch"
DESCRIPTION = (
    "Train a FashionMLP with a recipe, evaluate it after every epoch, and write a run folder "
    "(the model, its settings, metrics, plots)."
)


PARSER = Parser(add_help=False)
add_recipe_options(PARSER)
group = PARSER.add_argument_group("the run")
group.add_argument(
    "--seed", type=whole_number(0, 2**63 - 1), help="random seed (default: drawn and recorded)"
)
group.add_argument(
    "--seeds",
    type=seed_list,
    metavar="A-B|A,B,...",
    help="train once per seed, each in --out/seed-<N>/, and summarize them: "
    "mean, standard deviation, min, max and 95%% interval of the accuracy and "
    "time (--out/summary.json, summary.csv, accuracy.png; a rerun continues "
    "the study)",
)
group.add_argument(
    "--limit", type=whole_number(1), help="use only the first N samples of each split"
)
group.add_argument(
    "--validation",
    type=whole_number(1),
    metavar="N",
    help="hold out N training images and evaluate on them instead of the test set",
)
group.add_argument(
    "--resume",
    type=Path,
    metavar="RUN",
    help="continue the interrupted run in folder RUN (its settings are kept)",
)
group.add_argument(
    "--out", type=Path, help="run folder to write (default: runs/<date>-<time>-<random>)"
)
group.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
group.add_argument(
    "--early-stop",
    type=whole_number(1),
    metavar="N",
    help="stop when the evaluation accuracy has not improved for N epochs",
)
group.add_argument(
    "--early-stop-delta",
    type=number(float, low=0, high=1, high_open=True),
    default=0.0,
    metavar="X",
    help="the least accuracy gain (a fraction, e.g. 0.001) --early-stop counts (default 0)",
)
group.add_argument(
    "--keep-best",
    action="store_true",
    help="save the weights of the epoch with the best evaluation accuracy, not the last's",
)
group = PARSER.add_argument_group("output")
group.add_argument(
    "--no-progress", action="store_true", help="plain lines instead of a progress bar"
)
group.add_argument("--no-plots", action="store_true", help="do not write the PNG plots")
group.add_argument(
    "--tensorboard",
    action="store_true",
    help="also write TensorBoard event files to RUN/tensorboard (pip install "
    "'fashionmlp[tensorboard]'; then: tensorboard --logdir runs)",
)
group.add_argument(
    "--log-every",
    type=whole_number(1),
    default=50,
    metavar="N",
    help="steps between two batch-loss points of the loggers (default 50)",
)
group.add_argument(
    "--no-finite-check",
    action="store_true",
    help="keep training when the loss becomes NaN or infinite (default: stop)",
)
add_tracker_options(PARSER)
add_data_options(PARSER)
add_device_option(PARSER)

#: The options of a run that a resumed run takes from its checkpoint instead.
_RUN_OPTIONS = ("recipe", "set", "seed", "seeds", "limit", "validation", "out", "early_stop")


def run(args: argparse.Namespace) -> int:
    """Train (or resume) the run the options describe; return the exit status."""
    if args.seeds is not None:
        return _seeds(args)
    if args.resume is not None:
        _refuse_settings_beside_resume(args)
        config = None
    else:  # checked before torch is imported
        seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
        config = RunConfig(
            chosen_recipe(args), seed=seed, limit=args.limit, validation_size=args.validation or 0
        )
    stop_if_interrupted()
    from ..callbacks import StopOnSignal
    from ..devices import (
        broadcast_from_main,
        init_from_environment,
        is_main_process,
        resolve_device,
        shutdown,
    )
    from ..plots import RUN_PLOTS
    from ..runs import TENSORBOARD, train_run

    # Under torchrun every process runs this; rank 0 alone prints and writes files.
    device = init_from_environment(resolve_device(args.device))
    main = is_main_process()
    try:
        if config is not None:  # every rank trains with rank 0's drawn seed
            config = dataclasses.replace(config, seed=broadcast_from_main(config.seed))
        stop_if_interrupted()
        with _claim_run_folder(args, main) as folder:
            checkpoint = None
            if args.resume is not None:  # read and checked once, here
                config, checkpoint = folder.read_checkpoint()
            assert config is not None
            saved = checkpoint.state.get("callbacks", {}) if checkpoint else None
            console = RunConsole(config, folder.path, resumed=checkpoint is not None, main=main)
            console.say(console.header(device))
            chosen = _validation_callbacks(args, saved)
            stop = StopOnSignal()
            with stop.installed(), contextlib.ExitStack() as closing:
                loggers = trackers(args, folder.path.name, saved)
                if args.tensorboard:
                    from ..loggers import TensorBoardLogger

                    tensorboard = TensorBoardLogger(folder.path / TENSORBOARD, every=args.log_every)
                    loggers.append(tensorboard)
                    closing.callback(tensorboard.close)
                closing.callback(console.close)  # a stopped run's bar ends before the message
                stop.received = stop.received or received()  # one that came just before
                try:
                    result = train_run(
                        folder,
                        config,
                        root=args.data_root,
                        download=args.download,
                        device=device,
                        callbacks=[*chosen, *loggers, *console.callbacks(args), stop],
                        resume=checkpoint,
                        check_finite=not args.no_finite_check,
                        plots=not args.no_plots,
                    )
                except KeyboardInterrupt:  # a second Ctrl-C: stopped at once, nothing saved
                    if not folder.checkpoint.exists():
                        raise  # nothing to resume: the failed start is undone
                    console.fail(
                        "interrupted again: stopped at once, without saving the current "
                        f"epoch's progress; the last checkpoint, {folder.checkpoint}, is intact; "
                        f"{console.resume_hint}"
                    )
                    return 128 + signal.SIGINT
    finally:
        shutdown()
    if result.stopped_at is not None:
        epoch, batches = result.stopped_at
        console.fail(
            f"interrupted during epoch {epoch} after {plural(batches, 'batch', 'batches')}; "
            f"the run is saved in {folder.checkpoint}; {console.resume_hint}"
        )
        return 128 + (stop.received or signal.SIGINT)
    if main:
        drawn = [name for name in RUN_PLOTS if (folder.path / name).is_file()]
        if drawn:
            print(f"Plots: {', '.join(drawn)}")
        kept = result.model_epoch
        which = f" (the model of epoch {kept}, the best)" if kept else ""
        print(
            f"Final {config.evaluated_on} accuracy {100 * result.final.accuracy:.2f}%{which} "
            f"after {plural(len(result.history), 'epoch', 'epochs')} in "
            f"{result.history[-1].seconds:.1f} s; the model is in {folder.path} "
            "(FashionMLP.from_pretrained)"
        )
    return 0


def _claim_run_folder(args: argparse.Namespace, main: bool) -> RunFolder:
    """The run's folder, claimed by rank 0 (the only one that writes) for the run's life."""
    from ..devices import (
        broadcast_from_main,
    )
    from ..runs import RunFolder

    out = "--out"  # how errors name another folder to choose
    try:
        if args.resume is not None:
            if main:
                return RunFolder.interrupted(args.resume, elsewhere=out)
            return RunFolder(args.resume, elsewhere=out)
        if not main:
            folder = RunFolder(".", elsewhere=out)
        else:
            folder = RunFolder.new(args.out, overwrite=args.overwrite, elsewhere=out)
    except RunExistsError as exc:  # said again in the command line's words
        state = "a finished run" if exc.finished else "an interrupted run"
        hint = "" if exc.finished else f" (or continue it with --resume {exc.path})"
        raise InvalidArgumentError(
            f"--out {exc.path} already holds {state}; choose another --out or pass "
            f"--overwrite to replace it{hint}"
        ) from exc
    path = broadcast_from_main(folder.path)  # the name rank 0 chose
    return folder if main else RunFolder(path, elsewhere=out)


def _refuse_settings_beside_resume(args: argparse.Namespace) -> None:
    given = [
        f"--{name.replace('_', '-')}" for name in _RUN_OPTIONS if getattr(args, name) is not None
    ]
    given += ["--" + path.rsplit(".", 1)[-1].replace("_", "-") for path in recipe_changes(args)]
    given += ["--overwrite"] * args.overwrite + ["--keep-best"] * args.keep_best
    given = list(dict.fromkeys(given))  # --set's fields once
    if given:
        raise InvalidArgumentError(
            f"--resume keeps the run's own settings; leave out {', '.join(given)}"
        )


def _validation_callbacks(args: argparse.Namespace, saved: dict[str, Any] | None) -> list[Any]:
    """``--early-stop`` and ``--keep-best``'s callbacks; for a resumed run, those its
    checkpoint holds the state of (their settings come back with it)."""
    if saved is not None:
        made: dict[str, Callable[[], object]] = {
            "EarlyStopping": lambda: EarlyStopping(1),  # its patience comes with its state
            "KeepBest": KeepBest,
        }
        return [make() for name, make in made.items() if name in saved]
    chosen: list[Any] = []
    if args.early_stop is not None:
        chosen.append(EarlyStopping(args.early_stop, min_delta=args.early_stop_delta))
    if args.keep_best:
        chosen.append(KeepBest())
    return chosen


class RunConsole:
    """What ``train`` prints as a run goes: its header, the seed's loss lines or a progress
    bar, a line per epoch. Under ``torchrun`` only rank 0 prints."""

    def __init__(self, config: RunConfig, path: Path, *, resumed: bool, main: bool) -> None:
        self.config = config
        self.path = path
        self.resumed = resumed
        self.main = main
        self.resume_hint = f"resume with: fashionmlp train --resume {path}"
        self._progress: Any = None

    def say(self, line: str) -> None:
        if self.main:
            print(line, flush=True)

    def fail(self, message: str) -> None:
        if self.main:
            fail(message)

    def header(self, device: torch.device | str) -> str:
        recipe = self.config.recipe
        rates = f"{recipe.optimizer} lr {recipe.lr}"
        if recipe.optimizer == "muon":  # two rates: the hidden matrices' and AdamW's
            rates = f"muon lr {recipe.muon_lr} (hidden weights), adamw lr {recipe.lr} (the rest)"
        return (
            f"{'Resuming' if self.resumed else 'Training'} FashionMLP with recipe "
            f"{recipe.name!r} on {device}: {plural(recipe.epochs, 'epoch', 'epochs')}, batch "
            f"{recipe.batch_size}, {rates}, seed {self.config.seed}; run folder {self.path}"
        )

    def callbacks(self, args: argparse.Namespace) -> list[object]:
        """The seed's loss lines, or a progress bar on a terminal; then this console."""
        if not self.main:
            return []
        if self.config.recipe.print_every:
            return [self._epoch_header, PrintLoss(self.config.recipe.print_every), self]
        if not args.no_progress and sys.stderr.isatty():
            with contextlib.suppress(ImportError):  # tqdm is optional: the lines come anyway
                self._progress = ProgressBar()
                return [self._progress, self]
        return [self]

    @staticmethod
    def _epoch_header(event: BatchEvent) -> None:
        """The seed tutorial's epoch header, printed before the epoch's first loss line."""
        if event.batch == 0:
            print(f"Epoch {event.epoch}\n-------------------------------", flush=True)

    def on_epoch_end(self, epoch: EpochReport) -> None:
        split = self.config.evaluated_on
        loss = f", {split} loss {epoch.eval.loss:.4f}" if epoch.eval.loss is not None else ""
        self.say(
            f"Epoch {epoch.epoch}/{epoch.epochs}: train loss {epoch.train.loss:.4f}, "
            f"{split} accuracy {100 * epoch.eval.accuracy:.2f}%{loss}, "
            f"{epoch.train.seconds:.1f} s (total {epoch.seconds:.1f} s)"
        )

    def close(self) -> None:
        if self._progress is not None:
            self._progress.close()


def _seeds(args: argparse.Namespace) -> int:
    """Train the recipe once per seed under ``--out``, print and save the summary."""
    if args.seed is not None or args.resume is not None:
        raise InvalidArgumentError(
            "--seeds trains each seed in --out/seed-<N>/ and continues a study when run again: "
            "leave out --seed and --resume"
        )
    if args.out is None:
        raise InvalidArgumentError("--seeds needs --out DIR, the study's folder")
    recipe = chosen_recipe(args)
    RunConfig(recipe, limit=args.limit, validation_size=args.validation or 0)  # checked now
    stop_if_interrupted()
    from ..devices import resolve_device
    from ..studies import repeat

    stop = StopOnSignal()
    device = resolve_device(args.device)

    def callbacks(config: RunConfig) -> list[object]:
        path = Path(args.out) / f"seed-{config.seed}"
        console = RunConsole(config, path, resumed=False, main=True)
        console.say(console.header(device))
        return [*_validation_callbacks(args, None), *console.callbacks(args), stop]

    with stop.installed():
        stop.received = received()
        summary = repeat(
            recipe,
            args.seeds,
            args.out,
            root=args.data_root,
            download=args.download,
            device=str(device),
            limit=args.limit,
            validation_size=args.validation or 0,
            callbacks=callbacks,
            loggers=trackers(args, None),
            plots=not args.no_plots,
        )
    if summary is None:
        fail(
            f"interrupted; the finished seeds are kept: run the same command to continue {args.out}"
        )
        return 128 + (stop.received or signal.SIGINT)
    print(summary_text(summary))
    print(f"Summary: {Path(args.out) / 'summary.json'}, summary.csv, accuracy.png")
    return 0


def summary_text(summary: SeedSummary) -> str:
    """The table of the seeds' results, then their mean, spread and interval."""
    split = summary.evaluated_on
    lines = [f"{'seed':<6}{split + ' accuracy':>22}{'seconds':>10}"]
    lines += [
        f"{run['seed']:<6}{100 * run['accuracy']:>21.2f}%{run['seconds']:>10.1f}"
        for run in summary.runs
    ]
    accuracy, seconds = summary.accuracy, summary.seconds
    if accuracy.ci95 is not None:
        low, high = (100 * bound for bound in accuracy.ci95)
        lines.append(
            f"{split} accuracy over {accuracy.n} seeds: {100 * accuracy.mean:.2f}% ± "
            f"{100 * accuracy.std:.2f} (mean ± std), 95% interval {low:.2f}–{high:.2f}%, "
            f"min {100 * accuracy.min:.2f}%, max {100 * accuracy.max:.2f}%"
        )
        lines.append(
            f"seconds: {seconds.mean:.1f} ± {seconds.std:.1f}, min {seconds.min:.1f}, "
            f"max {seconds.max:.1f}"
        )
    return "\n".join(lines)
