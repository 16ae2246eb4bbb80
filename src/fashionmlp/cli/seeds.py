"""``fashionmlp train --seeds A-B``: a recipe over several seeds, and its spread."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InvalidArgumentError
from ..recipes import RunConfig, recipe_from
from .common import received, stop_if_interrupted
from .options import recipe_changes
from .run_options import validation_callbacks
from .train import recipe_with_changes

if TYPE_CHECKING:
    from ..studies import SeedSummary

__all__ = ["train_seeds"]


def train_seeds(args: argparse.Namespace) -> int:
    """Train the recipe once per seed under ``--out``, print and save the summary."""
    if args.seed is not None or args.resume is not None:
        raise InvalidArgumentError(
            "--seeds trains each seed in --out/seed-<N>/ and continues a study when run again: "
            "leave out --seed and --resume"
        )
    if args.out is None:
        raise InvalidArgumentError("--seeds needs --out DIR, the study's folder")
    recipe = recipe_with_changes(recipe_from(args.recipe or "fast"), recipe_changes(args))
    RunConfig(recipe, limit=args.limit, validation_size=args.validation or 0)  # checked now
    stop_if_interrupted()
    from ..callbacks import StopOnSignal
    from ..devices import resolve_device
    from ..studies import repeat
    from .console import RunConsole  # the same lines as a single run's

    stop = StopOnSignal()
    device = resolve_device(args.device)

    def callbacks(config: RunConfig) -> list[object]:
        console = RunConsole(
            config, Path(args.out) / f"seed-{config.seed}", resumed=False, main=True
        )
        console.say(console.header(device))
        return [*validation_callbacks(args, None), *console.callbacks(args), stop]

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
            plots=not args.no_plots,
        )
    if summary is None:
        from .common import fail

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
