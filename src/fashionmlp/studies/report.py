"""What a sweep leaves in its study folder: the trials' table, the best recipe, a summary,
and Optuna's plots."""

from __future__ import annotations

import csv
import io
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import config
from .._files import atomic_write
from ..config import Recipe
from .space import SearchSpace
from .storage import describe_storage

__all__ = ["BEST_RECIPE", "STUDY_FILES", "SUMMARY", "TRIALS_CSV", "write_study_files"]

#: One row per trial: number, state, value, seconds, the parameters, each epoch's accuracy.
TRIALS_CSV = "trials.csv"
#: The best trial's recipe, for ``fashionmlp train --recipe FILE``.
BEST_RECIPE = "best-recipe.toml"
#: The study's settings, its trials by state and its best trial.
SUMMARY = "study.json"
#: Optuna's plots of the study.
PLOTS = ("optimization_history.png", "param_importances.png")
#: Every file of a study folder (the default storage's journal included).
STUDY_FILES = (TRIALS_CSV, BEST_RECIPE, SUMMARY, *PLOTS, "study.log", "study.log.lock")


def write_study_files(
    study: Any,
    folder: Path,
    recipe: Recipe,
    space: SearchSpace,
    trials: int,
    storage: str | None = None,
) -> list[Path]:
    """Write the study's records in ``folder``; return the files written.

    ``trials.csv`` (one row per trial: ``number``, ``state`` as Optuna names it, ``value``,
    ``seconds``, ``retry_of``, ``baseline`` (``true`` for the trial of the recipe's own
    values), the parameters, then ``epoch_1`` ... each epoch's validation accuracy),
    ``best-recipe.toml`` (once a trial completed), ``study.json``, and the optimization
    history and parameter importances as PNGs (with matplotlib, once there is enough to
    draw).
    """
    everything = study.get_trials(deepcopy=False)
    complete = [t for t in everything if t.state.name == "COMPLETE"]
    best = max(complete, key=lambda t: t.value) if complete else None
    written = [_write(folder / TRIALS_CSV, _table(everything, space))]
    if best is not None:
        best_recipe = config.override(recipe, best.params).replace(name=f"{recipe.name}-best")
        written.append(best_recipe.save(folder / BEST_RECIPE))
    states: dict[str, int] = {}
    for trial in everything:
        states[trial.state.name] = states.get(trial.state.name, 0) + 1
    summary = {
        "study": study.study_name,
        "storage": describe_storage(storage),
        "trials": {"requested": trials, **states},
        "best": None
        if best is None
        else {
            "number": best.number,
            "validation_accuracy": best.value,
            "params": best.params,
        },
        "recipe": recipe.to_dict(),
        "space": space.to_dict(),
    }
    written.append(_write(folder / SUMMARY, json.dumps(summary, indent=2) + "\n"))
    return written + _plots(study, folder, complete)


def _table(trials: list[Any], space: SearchSpace) -> str:
    epochs = max((len(t.user_attrs.get("validation_accuracy", [])) for t in trials), default=0)
    names = [param.field for param in space.params]
    columns = ["number", "state", "value", "seconds", "retry_of", "baseline", *names]
    columns += [f"epoch_{epoch}" for epoch in range(1, epochs + 1)]
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(columns)
    for trial in sorted(trials, key=lambda t: t.number):
        accuracies = trial.user_attrs.get("validation_accuracy", [])
        writer.writerow(
            [
                trial.number,
                trial.state.name,
                "" if trial.value is None else trial.value,
                trial.user_attrs.get("seconds", ""),
                # A retry's first trial: ours for the journal, Optuna's heartbeat's otherwise.
                trial.user_attrs.get("retry_of", trial.system_attrs.get("failed_trial", "")),
                "true" if trial.user_attrs.get("baseline") else "",
                *(trial.params.get(name, "") for name in names),
                *accuracies,
                *[""] * (epochs - len(accuracies)),
            ]
        )
    return text.getvalue()


def _write(path: Path, text: str) -> Path:
    atomic_write(path, text.encode(), replace=True)
    return path


def _plots(study: Any, folder: Path, complete: list[Any]) -> list[Path]:
    """Optuna's optimization history and parameter importances (needs matplotlib, and two
    completed trials; the importances, parameters that varied)."""
    if len(complete) < 2:
        return []
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
        from optuna.exceptions import ExperimentalWarning
        from optuna.importance import PedAnovaImportanceEvaluator
        from optuna.visualization import matplotlib as optuna_plots
    except ImportError:
        return []
    drawn = []
    draws: list[tuple[str, Callable[[], Any]]] = [
        (PLOTS[0], lambda: optuna_plots.plot_optimization_history(study)),
        (
            PLOTS[1],
            lambda: optuna_plots.plot_param_importances(
                study, evaluator=PedAnovaImportanceEvaluator()
            ),
        ),
    ]
    for name, draw in draws:
        try:
            with warnings.catch_warnings():  # Optuna calls its own plots experimental
                warnings.simplefilter("ignore", ExperimentalWarning)
                axes = draw()
        except (ValueError, RuntimeError):  # too little for Optuna to draw this one yet
            continue
        figure: Any = axes.figure
        figure.set_size_inches(7, 4.5)
        figure.tight_layout()
        figure.savefig(folder / name, dpi=110)
        plt.close(figure)
        drawn.append(folder / name)
    return drawn
