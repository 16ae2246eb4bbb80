"""Runs and seed studies side by side: the settings that differ, the accuracy (with its
spread over seeds), the size, the epochs and the time, and their curves overlaid."""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import flat
from ..errors import CheckpointError, InvalidArgumentError
from ..runs import METRICS, RunFolder, read_document
from .seeds import SEED_SUMMARY

__all__ = ["Comparison", "Entry", "compare", "plot_comparison"]


@dataclass(frozen=True)
class Entry:
    """One run folder, or one seed study (its runs averaged)."""

    #: The folder's name, as the table and the plots call it.
    name: str
    #: The run's settings, flattened (``lr``, ``model.dropout``, ``seed``, ...).
    settings: dict[str, Any]
    #: The final accuracy (the mean over a study's seeds), a fraction.
    accuracy: float
    #: Its sample standard deviation over the seeds, or ``None`` for a single run.
    std: float | None
    #: The number of runs (seeds).
    runs: int
    #: The model's parameters.
    parameters: int
    #: Epochs trained (the most of a study's runs).
    epochs: int
    #: Wall-clock seconds (the mean over a study's seeds).
    seconds: float
    #: What the accuracy measures, ``"test"`` or ``"validation"``.
    evaluated_on: str
    #: Per epoch, the evaluation accuracy and loss (means over a study's seeds).
    curves: dict[str, list[float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Comparison:
    """Entries side by side, and the settings in which they differ."""

    entries: tuple[Entry, ...]
    #: The settings whose values differ between the entries, in order.
    differing: tuple[str, ...]

    @property
    def split(self) -> str | None:
        """``"test"`` or ``"validation"`` when every entry was evaluated on it, else ``None``."""
        splits = {entry.evaluated_on for entry in self.entries}
        return splits.pop() if len(splits) == 1 else None

    def text(self) -> str:
        """The table ``fashionmlp compare`` prints: a column per entry."""
        rows: list[tuple[str, list[str]]] = [
            (name, [_shown(entry.settings.get(name, "-")) for entry in self.entries])
            for name in self.differing
        ]
        # Each figure says what it measures: one split's name in the row's label, or each
        # entry's beside its figure when they were evaluated on different splits.
        split = self.split
        accuracies = [
            _accuracy(e) + ("" if split else f" ({e.evaluated_on})") for e in self.entries
        ]
        rows += [
            (f"{split} accuracy" if split else "accuracy", accuracies),
            ("parameters", [f"{e.parameters:,}" for e in self.entries]),
            ("epochs trained", [str(e.epochs) for e in self.entries]),
            ("seconds", [f"{e.seconds:.1f}" for e in self.entries]),
        ]
        header = ("", [entry.name for entry in self.entries])
        widths = [max(len(row[0]) for row in [header, *rows])]
        widths += [max(len(row[1][i]) for row in [header, *rows]) for i in range(len(self.entries))]
        return "\n".join(
            "  ".join(cell.ljust(width) for cell, width in zip([label, *cells], widths)).rstrip()
            for label, cells in [header, *rows]
        )


def _accuracy(entry: Entry) -> str:
    spread = f" ± {100 * entry.std:.2f}" if entry.std is not None else ""
    seeds = f" ({entry.runs} seeds)" if entry.runs > 1 else ""
    return f"{100 * entry.accuracy:.2f}%{spread}{seeds}"


def _shown(value: Any) -> str:
    if isinstance(value, float) and len(str(value)) > 8:
        return f"{value:.4g}"  # a sweep's 0.007372727600110483 is 0.007373 to the eye
    return (
        json.dumps(value) if isinstance(value, (list, dict, bool)) or value is None else str(value)
    )


def compare(paths: Sequence[str | os.PathLike[str]]) -> Comparison:
    """Compare finished run folders and seed studies (folders with a ``summary.json``).

    Raises:
        InvalidArgumentError: Fewer than two paths, or two of one name.
        CheckpointError: A path is neither a finished run's folder nor a seed study's.
    """
    if len(paths) < 2:
        raise InvalidArgumentError("give at least two run folders or seed studies to compare")
    entries = tuple(_entry(Path(path)) for path in paths)
    if len({entry.name for entry in entries}) != len(entries):
        raise InvalidArgumentError(
            "two of the folders have one name; compare folders of distinct names"
        )
    names = list(dict.fromkeys(name for entry in entries for name in entry.settings))
    differing = tuple(
        name
        for name in names
        if len({json.dumps(entry.settings.get(name), sort_keys=True) for entry in entries}) > 1
    )
    return Comparison(entries, differing)


def _entry(path: Path) -> Entry:
    if (path / SEED_SUMMARY).is_file():
        summary, _ = read_document(path / SEED_SUMMARY)
        runs = [_run(path / run["folder"]) for run in summary["runs"]]
        settings = {**runs[0].settings, "seed": ",".join(str(s) for s in summary["seeds"])}
        return Entry(
            name=path.name,
            settings=settings,
            accuracy=summary["accuracy"]["mean"],
            std=summary["accuracy"]["std"],
            runs=len(runs),
            parameters=runs[0].parameters,
            epochs=max(run.epochs for run in runs),
            seconds=summary["seconds"]["mean"],
            evaluated_on=summary["evaluated_on"],
            curves={key: _mean([run.curves[key] for run in runs]) for key in ("accuracy", "loss")},
        )
    return _run(path)


def _run(path: Path) -> Entry:
    if not (path / METRICS).is_file():
        raise CheckpointError(
            f"{path} is neither a finished run's folder (no {METRICS}) nor a seed study's "
            f"(no {SEED_SUMMARY}); give finished runs or studies"
        )
    config = RunFolder(path).read_config()
    metrics, _ = read_document(path / METRICS)
    settings = flat(config.recipe.to_dict())
    settings |= {
        "seed": config.seed,
        "limit": config.limit,
        "validation_size": config.validation_size,
    }
    try:
        epochs = metrics["epochs"]
        return Entry(
            name=path.name,
            settings=settings,
            accuracy=metrics["final"]["accuracy"],
            std=None,
            runs=1,
            parameters=config.recipe.model.parameters(),
            epochs=len(epochs),
            seconds=metrics["wall_seconds"],
            evaluated_on=metrics["evaluated_on"],
            curves={
                "accuracy": [epoch["eval"]["accuracy"] for epoch in epochs],
                "loss": [epoch["eval"]["loss"] for epoch in epochs],
            },
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path}: its {METRICS} is damaged ({exc!r})") from None


def _mean(curves: list[list[float]]) -> list[float]:
    length = min(len(curve) for curve in curves)
    return [statistics.fmean(curve[i] for curve in curves) for i in range(length)]


def plot_comparison(comparison: Comparison, folder: str | os.PathLike[str]) -> list[Path]:
    """Draw the entries' accuracy and loss per epoch, overlaid, as ``accuracy.png`` and
    ``loss.png`` in ``folder`` (made if needed); return the files.

    Raises:
        MissingExtraError: matplotlib is not installed.
    """
    from ..plots import plot_curves

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    split = comparison.split
    drawn = []
    for key, label in (("accuracy", "accuracy (%)"), ("loss", "loss")):
        label = f"{split} {label}" if split else label  # mixed: each curve names its split
        scale = 100 if key == "accuracy" else 1
        curves = {
            e.name + ("" if split else f" ({e.evaluated_on})"): [scale * v for v in e.curves[key]]
            for e in comparison.entries
        }
        drawn.append(
            plot_curves(
                folder / f"{key}.png", curves, ylabel=label, title=f"{label.capitalize()} per epoch"
            )
        )
    return drawn
