"""``fashionmlp train --seeds A-B``: a recipe over several seeds, and its spread."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import RunConfig
from ..errors import InvalidArgumentError
from .common import received, stop_if_interrupted
from .options import chosen_recipe
from .run_options import mlflow_uri, validation_callbacks

if TYPE_CHECKING:
    from ..config import Recipe
    from ..loggers import MLflowLogger
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
    recipe = chosen_recipe(args)
    RunConfig(recipe, limit=args.limit, validation_size=args.validation or 0)  # checked now
    stop_if_interrupted()
    from ..callbacks import StopOnSignal
    from ..devices import resolve_device
    from ..studies import repeat
    from .console import RunConsole  # the same lines as a single run's

    stop = StopOnSignal()
    device = resolve_device(args.device)
    parent = _parent_run(args, recipe)

    def callbacks(config: RunConfig) -> list[object]:
        console = RunConsole(
            config, Path(args.out) / f"seed-{config.seed}", resumed=False, main=True
        )
        console.say(console.header(device))
        chosen = [*validation_callbacks(args, None), *console.callbacks(args), stop]
        if parent is not None:  # each seed a child run of the study's
            chosen.append(_child_run(parent, config.seed, args.log_every))
        return chosen

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

        if parent is not None:
            parent.end_run("KILLED")
        fail(
            f"interrupted; the finished seeds are kept: run the same command to continue {args.out}"
        )
        return 128 + (stop.received or signal.SIGINT)
    if parent is not None:
        parent.log_figures(_figures(summary))
        parent.end_run()
    print(summary_text(summary))
    print(f"Summary: {Path(args.out) / 'summary.json'}, summary.csv, accuracy.png")
    return 0


def _parent_run(args: argparse.Namespace, recipe: Recipe) -> MLflowLogger | None:
    """With ``--mlflow``, the study's MLflow run, whose children the seeds' runs are."""
    uri = mlflow_uri(args)
    if uri is None:
        return None
    from .. import config
    from ..loggers import MLflowLogger

    parent = MLflowLogger(
        uri,
        experiment=args.mlflow_experiment,
        run_name=f"{recipe.name} seeds {','.join(map(str, args.seeds))}",
    )
    params = config.flat(recipe.to_dict())
    params["seeds"] = ",".join(map(str, args.seeds))
    parent.start_run(params, tags={"fashionmlp.study": "seeds", "fashionmlp.folder": str(args.out)})
    return parent


def _child_run(parent: MLflowLogger, seed: int, every: int) -> MLflowLogger:
    """A seed's MLflow run, a child of the study's."""
    from ..loggers import MLflowLogger

    return MLflowLogger(
        parent.tracking_uri,
        experiment=parent.experiment,
        run_name=f"seed-{seed}",
        every=every,
        parent_run_id=parent.run_id,
    )


def _figures(summary: SeedSummary) -> dict[str, float]:
    """The study's figures for its MLflow run: mean, std, min, max, interval."""
    figures: dict[str, float] = {}
    for name, spread in (("accuracy", summary.accuracy), ("seconds", summary.seconds)):
        for key, value in spread.to_dict().items():
            if key == "ci95" and value is not None:
                figures |= {f"{name}_ci95_low": value[0], f"{name}_ci95_high": value[1]}
            elif key != "ci95" and value is not None:
                figures[f"{name}_{key}"] = value
    return figures


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
