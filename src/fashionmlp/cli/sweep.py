"""``fashionmlp sweep``: a recipe's hyperparameters tuned on Optuna, judged on validation."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path
from typing import Any

from ..config import RunConfig
from .common import (
    Parser,
    add_data_options,
    add_device_option,
    add_recipe_options,
    add_tracker_options,
    chosen_recipe,
    fail,
    plural,
    received,
    stop_if_interrupted,
    trackers,
    whole_number,
)

__all__ = ["DESCRIPTION", "HELP", "PARSER", "run"]


HELP = "tune a recipe's hyperparameters on Optuna, on a validation split"
DESCRIPTION = (
    "Tune a recipe's settings over a search space with Optuna. Every trial trains on the "
    "training split less --validation held-out images and is judged on those alone (the test "
    "set is never read); unpromising trials are pruned. The study folder gets trials.csv, "
    "best-recipe.toml (train it with fashionmlp train --recipe), study.json and plots. Rerun "
    "the same command to continue the study. Needs pip install 'fashionmlp[sweep]'."
)
PARSER = Parser(add_help=False)
add_recipe_options(PARSER)
group = PARSER.add_argument_group("the study")
group.add_argument(
    "--space",
    type=Path,
    metavar="FILE",
    help="search space (TOML); default: the fast recipe's rates, decays and smoothing",
)
group.add_argument(
    "--trials",
    type=whole_number(1),
    required=True,
    metavar="N",
    help="finished trials the study ends with (completed or pruned)",
)
group.add_argument(
    "--workers",
    type=whole_number(1),
    default=1,
    metavar="N",
    help="local worker processes sharing the CPU threads (default 1)",
)
group.add_argument(
    "--storage",
    metavar="URL",
    help="an Optuna database URL (postgresql://user@host/db, sqlite:///x.db) "
    "shared by workers on many machines; default: the study folder's journal file",
)
group.add_argument(
    "--study",
    default="fashionmlp",
    metavar="NAME",
    help="the study's name in the storage (default fashionmlp)",
)
group.add_argument(
    "--out", type=Path, metavar="DIR", help="the study folder (default: sweeps/NAME)"
)
group.add_argument(
    "--pruner",
    choices=("median", "hyperband", "none"),
    default="median",
    help="how to stop unpromising trials (default median)",
)
group.add_argument(
    "--heartbeat",
    type=whole_number(1),
    default=60,
    metavar="SECONDS",
    help="a database storage's heartbeat: a trial silent twice as long is "
    "failed and run again (default 60)",
)
group.add_argument(
    "--continue",
    dest="continue_study",
    action="store_true",
    help="add trials to a study of this name made with another recipe or space",
)
group.add_argument(
    "--train-best",
    action="store_true",
    help="then train the best recipe on the whole training split into DIR/best-run and "
    "evaluate it on the test set (read only then)",
)
group = PARSER.add_argument_group("the trials")
group.add_argument(
    "--seed",
    type=whole_number(0, 2**63 - 1),
    default=0,
    help="every trial's training seed and the sampler's: one worker draws the same trials each time (default 0)",
)
group.add_argument(
    "--limit", type=whole_number(1), help="use only the first N images of each split"
)
group.add_argument(
    "--validation",
    type=whole_number(1),
    default=5000,
    metavar="N",
    help="held-out training images each trial is judged on (default 5000)",
)
add_tracker_options(PARSER)
add_data_options(PARSER)
add_device_option(PARSER)


def run(args: argparse.Namespace) -> int:
    """Run the sweep the options describe; return the exit status."""

    recipe = chosen_recipe(args)
    RunConfig(recipe, seed=args.seed, limit=args.limit, validation_size=args.validation)
    from ..studies import DEFAULT_SPACE, SearchSpace, sweep

    space = SearchSpace.load(args.space) if args.space is not None else DEFAULT_SPACE
    out = args.out or Path("sweeps") / args.study
    stop_if_interrupted()
    print(
        f"Sweeping recipe {recipe.name!r} over {', '.join(p.field for p in space.params)}: "
        f"{args.trials} trials, {plural(args.workers, 'worker', 'workers')}, judged on "
        f"{args.validation} "
        f"held-out training images; study {args.study!r} in {out}",
        flush=True,
    )
    try:
        result = sweep(
            recipe,
            out,
            space=space,
            trials=args.trials,
            workers=args.workers,
            storage=args.storage,
            study=args.study,
            root=args.data_root,
            download=args.download,
            device=args.device,
            seed=args.seed,
            limit=args.limit,
            validation_size=args.validation,
            pruner=args.pruner,
            heartbeat=args.heartbeat,
            continue_study=args.continue_study,
            loggers=trackers(args, None),
            train_best=args.train_best,
            on_trial=_say_trial,
        )
    except KeyboardInterrupt as stopped:  # the signal's number, from the sweep
        fail("interrupted; the study keeps its trials: run the same command to continue it")
        number = stopped.args[0] if stopped.args and isinstance(stopped.args[0], int) else 0
        return 128 + (number or received() or signal.SIGINT)
    return _summary(result, args.trials)


def _say_trial(trial: Any) -> None:
    epochs = len(trial.user_attrs.get("validation_accuracy", []))
    value = f", validation accuracy {100 * trial.value:.2f}%" if trial.value is not None else ""
    error = f": {trial.user_attrs['error']}" if "error" in trial.user_attrs else ""
    seconds = trial.user_attrs.get("seconds")
    took = f" in {seconds:.0f} s" if seconds is not None else ""
    print(
        f"Trial {trial.number}: {trial.state.name.lower()}{value} after "
        f"{plural(epochs, 'epoch', 'epochs')}{took}{error}",
        flush=True,
    )


def _summary(result: Any, trials: int) -> int:
    states = ", ".join(f"{count} {state.lower()}" for state, count in sorted(result.states.items()))
    print(f"Study {result.study!r}: {states}")
    if result.best_recipe is not None:
        print(
            f"Best validation accuracy {100 * result.best_value:.2f}%; its recipe is "
            f"{result.folder / 'best-recipe.toml'} (fashionmlp train --recipe FILE trains it)"
        )
    print(f"Trials: {result.folder / 'trials.csv'}")
    if result.best_test is not None:
        print(
            f"The best recipe trained on the whole training split: test accuracy "
            f"{100 * result.best_test.accuracy:.2f}% (run folder {result.best_run})"
        )
    failed = [status for status in result.workers if status != 0]
    if failed:
        ended = plural(len(failed), "worker process", "worker processes")
        done = result.states.get("COMPLETE", 0) + result.states.get("PRUNED", 0) >= trials
        fail(
            f"{ended} ended early (status {', '.join(map(str, failed))}); "
            + (
                "the others finished the study: it has all its trials"
                if done
                else "the study keeps its trials: run the same command to finish it"
            )
        )
        return 1
    return 0
