"""A recipe over several seeds: one run folder each, and the mean, spread and confidence
interval of their final accuracy and wall time.

:func:`repeat` trains ``DIR/seed-<N>/`` for each seed (a rerun continues: finished seeds
are kept, an interrupted one resumes) and writes ``DIR/summary.json``, ``summary.csv`` and
``accuracy.png`` (each epoch's mean accuracy, the spread over seeds as a band).
:func:`summarize` computes the same summary from any finished run folders. The 95%
interval is Student's t interval of the mean, from SciPy (``pip install
'fashionmlp[stats]'``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._files import atomic_write
from ..callbacks import Hooks, Study, StudyEnd
from ..config import Recipe, RunConfig, differences, flat, stamped
from ..data import Splits, load_dataset
from ..devices import resolve_device
from ..errors import CheckpointError, InvalidArgumentError, MissingExtraError
from ..runs import METRICS, RUN, RunFolder, read_document, train_run

__all__ = ["SEED_SUMMARY", "SeedSummary", "Spread", "repeat", "spread", "summarize"]

#: The summary of a seed study, in its folder.
SEED_SUMMARY = "summary.json"


@dataclass(frozen=True)
class Spread:
    """How a figure varies over seeds."""

    #: The number of values.
    n: int
    #: Their mean.
    mean: float
    #: Their sample standard deviation (``n - 1`` in the denominator; ``nan`` for one value).
    std: float
    #: The least value.
    min: float
    #: The greatest value.
    max: float
    #: Student's t 95% confidence interval of the mean, or ``None`` for one value.
    ci95: tuple[float, float] | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``std`` is ``None`` for one value)."""
        std = None if math.isnan(self.std) else self.std
        ci95 = list(self.ci95) if self.ci95 is not None else None
        return {
            "n": self.n,
            "mean": self.mean,
            "std": std,
            "min": self.min,
            "max": self.max,
            "ci95": ci95,
        }


def spread(values: Sequence[float]) -> Spread:
    """The :class:`Spread` of ``values``.

    Raises:
        InvalidArgumentError: ``values`` is empty.
        MissingExtraError: SciPy is not installed (needed for two values or more).

    Example:
        >>> from fashionmlp.studies import spread
        >>> s = spread([0.90, 0.91, 0.92])
        >>> round(s.mean, 4), round(s.std, 4), [round(b, 4) for b in s.ci95]
        (0.91, 0.01, [0.8852, 0.9348])
    """
    if not values:
        raise InvalidArgumentError("no values to summarize")
    n, mean = len(values), statistics.fmean(values)
    if n == 1:
        return Spread(1, mean, math.nan, values[0], values[0], None)
    try:
        from scipy import stats
    except ImportError:
        raise MissingExtraError(
            "the confidence interval needs SciPy: pip install 'fashionmlp[stats]'"
        ) from None
    std = statistics.stdev(values)
    low, high = stats.t.interval(0.95, n - 1, loc=mean, scale=std / math.sqrt(n))
    return Spread(n, mean, std, min(values), max(values), (float(low), float(high)))


@dataclass(frozen=True)
class SeedSummary:
    """The final accuracy and wall time of one recipe over several seeds."""

    #: The recipe's name.
    recipe: str
    #: ``"test"`` or ``"validation"``: what the accuracies measure.
    evaluated_on: str
    #: The seeds, in order.
    seeds: tuple[int, ...]
    #: The final accuracy's spread (fractions, in ``[0, 1]``).
    accuracy: Spread
    #: The wall time's spread, in seconds.
    seconds: Spread
    #: Each run, with its seed, folder, final accuracy, seconds and accuracy per epoch.
    runs: tuple[dict[str, Any], ...]
    #: All else that decides the runs' results, the same for each run (the whole recipe, the
    #: ``limit`` and the ``validation_size``, a :class:`~fashionmlp.RunConfig` less its seed).
    settings: dict[str, Any] = field(default_factory=dict)

    def figures(self) -> dict[str, float]:
        """The study's figures as trackers log them: ``accuracy_mean``, ``accuracy_std``,
        ``accuracy_min``, ``accuracy_max``, ``accuracy_ci95_low``, ``accuracy_ci95_high``,
        and the same of ``seconds`` (those defined)."""
        figures: dict[str, float] = {}
        for name, spread in (("accuracy", self.accuracy), ("seconds", self.seconds)):
            for key, value in spread.to_dict().items():
                if key == "ci95" and value is not None:
                    figures |= {f"{name}_ci95_low": value[0], f"{name}_ci95_high": value[1]}
                elif key != "ci95" and value is not None:
                    figures[f"{name}_{key}"] = value
        return figures

    def to_dict(self) -> dict[str, Any]:
        """The form of ``summary.json``."""
        return {
            "recipe": self.recipe,
            "evaluated_on": self.evaluated_on,
            "seeds": list(self.seeds),
            "accuracy": self.accuracy.to_dict(),
            "seconds": self.seconds.to_dict(),
            "runs": list(self.runs),
            "settings": self.settings,
        }


def summarize(folders: Sequence[str | os.PathLike[str]]) -> SeedSummary:
    """The summary of finished run folders of one recipe (their ``metrics.json``).

    Raises:
        CheckpointError: A folder is not a finished run's, or the runs are of several
            recipes or evaluated on different splits.
    """
    runs = [_run_record(Path(folder)) for folder in folders]
    if not runs:
        raise InvalidArgumentError("no run folders to summarize")
    for key in ("settings", "evaluated_on"):
        if len({json.dumps(run[key]) for run in runs}) > 1:
            changed = differences(runs[0][key], runs[-1][key]) if key == "settings" else []
            raise CheckpointError(
                f"the runs differ in {key.replace('settings', 'their settings')} "
                f"({'; '.join(changed) or 'test or validation'}): summarize the runs of one "
                "recipe on the same data"
            )
    return SeedSummary(
        recipe=runs[0]["settings"]["recipe"]["name"],
        evaluated_on=runs[0]["evaluated_on"],
        seeds=tuple(run["seed"] for run in runs),
        accuracy=spread([run["accuracy"] for run in runs]),
        seconds=spread([run["seconds"] for run in runs]),
        runs=tuple({k: v for k, v in run.items() if k != "settings"} for run in runs),
        settings=runs[0]["settings"],
    )


def _settings(config: RunConfig) -> dict[str, Any]:
    """What decides a run's result besides its seed: the whole recipe, limit and validation."""
    return {key: value for key, value in config.to_dict().items() if key != "seed"}


def _run_record(folder: Path) -> dict[str, Any]:
    try:
        config = RunFolder(folder).read_config()
        metrics, _ = read_document(folder / METRICS)
        return {
            "seed": config.seed,
            "folder": folder.name,
            "settings": _settings(config),
            "evaluated_on": metrics["evaluated_on"],
            "accuracy": metrics["final"]["accuracy"],
            "seconds": metrics["wall_seconds"],
            "epochs": [epoch["eval"]["accuracy"] for epoch in metrics["epochs"]],
        }
    except (CheckpointError, KeyError, TypeError) as exc:
        reason = exc if isinstance(exc, CheckpointError) else f"{type(exc).__name__}: {exc}"
        raise CheckpointError(
            f"{folder} is not a finished run's folder ({reason}); finish it, or leave it out"
        ) from None


#: What gives a seed's run its extra callbacks (printing, early stopping): the run's
#: settings in, callbacks out.
CallbacksFor = Callable[[RunConfig], Sequence[object]]


def repeat(
    recipe: Recipe,
    seeds: Sequence[int],
    out: str | os.PathLike[str],
    *,
    data: Splits | None = None,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    device: str = "auto",
    limit: int | None = None,
    validation_size: int = 0,
    callbacks: CallbacksFor | None = None,
    loggers: Sequence[object] = (),
    plots: bool = True,
) -> SeedSummary | None:
    """Train ``recipe`` once per seed, in ``out/seed-<N>/``, then summarize the runs.

    Each run folder is a complete ``fashionmlp train`` run folder
    (:func:`~fashionmlp.runs.train_run` writes it). A rerun continues the study: a seed's
    finished folder is kept as it is, an interrupted one resumes.

    Args:
        recipe: What to train.
        seeds: The seeds, each once.
        out: The study folder (made if needed).
        data: The dataset already loaded (default: read once from ``root``).
        root: The data root; download: allow the dataset's download; device: where to train.
        limit: Use only the first ``limit`` images of each split.
        validation_size: Evaluate on held-out training images instead of the test set.
        callbacks: Gives each run's extra callbacks, from its settings (a
            :class:`~fashionmlp.StopOnSignal` among them stops the study with its run).
        loggers: Trackers of the whole study (see :mod:`fashionmlp.callbacks`): each logs
            the study as one run and every seed as a child of it.
        plots: Draw each run's figures and the study's accuracy band (needs matplotlib).

    Returns:
        The summary (also written as ``summary.json``, ``summary.csv`` and
        ``accuracy.png``), or ``None`` when a callback stopped a run (the study resumes
        when called again).

    Raises:
        InvalidArgumentError: No seed, a seed twice, or a seed's folder holding another run.
    """
    if not seeds or len(set(seeds)) != len(seeds):
        raise InvalidArgumentError(f"give each seed once, at least one; got {list(seeds)}")
    folder = Path(out)
    study = RunConfig(recipe, limit=limit, validation_size=validation_size)
    for path in sorted(folder.glob("seed-*")):  # a seed run before: of this study's settings?
        if (path / RUN).is_file():
            before = _settings(RunFolder(path).read_config())
            if before != _settings(study):
                changed = "; ".join(differences(before, _settings(study)))
                raise InvalidArgumentError(
                    f"{folder} is a seed study of other settings ({changed}); give another "
                    "folder, or its own settings to continue it"
                )
    target = resolve_device(device)
    if data is None:
        data = load_dataset(root, download=download, test=validation_size == 0)
    trackers = Hooks(loggers)
    listed = ",".join(map(str, seeds))
    params = {**flat(recipe.to_dict()), "seeds": listed}
    trackers.call("on_study_start", Study("seeds", f"{recipe.name} seeds {listed}", folder, params))
    for seed in seeds:
        path = folder / f"seed-{seed}"
        if RunFolder(path).finished:
            continue
        config = RunConfig(recipe, seed=seed, limit=limit, validation_size=validation_size)
        extra = [*(callbacks(config) if callbacks else ()), *trackers.children(path.name)]
        resume = RunFolder(path).checkpoint.is_file()
        with RunFolder.interrupted(path) if resume else RunFolder.new(path) as run:
            checkpoint = None
            if resume:
                saved, checkpoint = run.read_checkpoint()
                if saved != config:
                    raise InvalidArgumentError(
                        f"{path} holds a run of other settings; move it away, or give another "
                        "folder"
                    )
            result = train_run(
                run,
                config,
                data=data,
                root=root,
                device=target,
                callbacks=extra,
                resume=checkpoint,
                plots=plots,
            )
        if result.stopped_at is not None:
            trackers.call("on_study_end", StudyEnd(finished=False))
            return None
    summary = summarize([folder / f"seed-{seed}" for seed in seeds])
    write_summary(folder, summary, plots=plots)
    trackers.call("on_study_end", StudyEnd(summary.figures()))
    return summary


def write_summary(folder: Path, summary: SeedSummary, *, plots: bool = True) -> list[Path]:
    """Write ``summary.json``, ``summary.csv`` (a row per seed, then the mean, spread and
    interval) and, with matplotlib, ``accuracy.png``; return the files written."""
    written = [folder / SEED_SUMMARY, folder / "summary.csv"]
    document = json.dumps(stamped(summary.to_dict()), indent=2) + "\n"
    atomic_write(written[0], document.encode(), replace=True)
    atomic_write(written[1], _table(summary).encode(), replace=True)
    if plots:
        try:
            from ..plots import plot_spread

            written.append(plot_spread(folder / "accuracy.png", summary.runs, summary.evaluated_on))
        except MissingExtraError:
            pass
    return written


def _table(summary: SeedSummary) -> str:
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(["seed", "accuracy", "seconds"])
    for run in summary.runs:
        writer.writerow([run["seed"], run["accuracy"], run["seconds"]])
    accuracy, seconds = summary.accuracy.to_dict(), summary.seconds.to_dict()
    for statistic in ("mean", "std", "min", "max"):
        writer.writerow([statistic, accuracy[statistic], seconds[statistic]])
    for index, bound in enumerate(("ci95_low", "ci95_high")):
        low_high = (accuracy["ci95"], seconds["ci95"])
        writer.writerow([bound, *(pair[index] if pair else "" for pair in low_high)])
    return text.getvalue()
