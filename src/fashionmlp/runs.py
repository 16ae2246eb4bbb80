"""Run folders: what ``fashionmlp train`` writes, and the rules for reusing one.

A finished run folder is a model folder that ``FashionMLP.from_pretrained`` loads, with
the run's records beside it::

    config.json        the model's config (FashionMLP.save_pretrained writes it)
    model.safetensors  the trained weights; their presence marks the run finished
    run.json           the run's settings (RunConfig) and where it ran
    checkpoint.pt      everything needed to resume, rewritten after every epoch
    metrics.json       per-epoch figures and the final result
    loss.png, accuracy.png, confusion_matrix.png, misclassified.png

A new run goes into a folder that does not exist or is empty; an earlier run's folder is
reused only when asked to overwrite it, and then only its own files are removed. A folder
holding anything else is never written into.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from . import __version__, distributed
from .checkpoint import CONFIG_FILE, WEIGHTS_FILE
from .errors import CheckpointError, InvalidArgumentError
from .fitting import FitResult
from .loaders import Split
from .state import RunConfig

__all__ = [
    "CHECKPOINT",
    "CONFIG",
    "METRICS",
    "PLOTS",
    "RUN",
    "RUN_FILES",
    "WEIGHTS",
    "RunFolder",
    "environment",
    "metrics",
]

#: Everything needed to resume, rewritten after every epoch.
CHECKPOINT = "checkpoint.pt"
#: The finished run's weights; their presence marks the run as finished.
WEIGHTS = WEIGHTS_FILE
#: The model's config, as ``save_pretrained`` writes it.
CONFIG = CONFIG_FILE
#: The run's settings and environment.
RUN = "run.json"
#: Per-epoch figures and the final result.
METRICS = "metrics.json"
#: The figures of a finished run.
PLOTS = ("loss.png", "accuracy.png", "confusion_matrix.png", "misclassified.png")
#: Every file a run folder may hold.
RUN_FILES = (CHECKPOINT, WEIGHTS, CONFIG, RUN, METRICS, *PLOTS)


class RunFolder:
    """One run's folder. Make one with :meth:`new` (a new run) or :meth:`interrupted` (to
    resume); the constructor itself checks nothing.

    Example:
        .. code-block:: python

            folder = RunFolder.new(Path("runs/first"))
            folder.write_config(config, environment(device, "data"))
            result = fit(config.recipe, "data", checkpoint_path=folder.checkpoint, ...)
            folder.write_results(result)
            FashionMLP.from_pretrained(folder.path)  # the trained model, anywhere
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    @property
    def checkpoint(self) -> Path:
        """The resumable training state."""
        return self.path / CHECKPOINT

    @property
    def weights(self) -> Path:
        """The finished model's weights."""
        return self.path / WEIGHTS

    @property
    def finished(self) -> bool:
        """Whether the run finished (its weights were written)."""
        return self.weights.is_file()

    @classmethod
    def new(cls, path: Path | None = None, *, overwrite: bool = False) -> RunFolder:
        """The folder for a new run, created and empty of an earlier run's files.

        Without ``path``: ``runs/<date>-<time>`` under the working directory.

        Raises:
            InvalidArgumentError: ``path`` is a file, its parent is missing, it holds
                files of something other than a run, or an earlier run and
                ``overwrite`` is false.
        """
        if path is None:
            path = Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")
            path.parent.mkdir(exist_ok=True)
        elif not path.parent.is_dir():
            raise InvalidArgumentError(
                f"--out {path}: its parent folder {path.parent} does not exist; create it first"
            )
        if path.exists() and not path.is_dir():
            raise InvalidArgumentError(
                f"--out {path} is a file, not a folder; choose another --out"
            )
        contents = {entry.name for entry in path.iterdir()} if path.is_dir() else set()
        if contents:
            if not contents <= set(RUN_FILES) or RUN not in contents:
                raise InvalidArgumentError(
                    f"--out {path} is not empty and is not a fashionmlp run folder; "
                    "choose a new or empty folder"
                )
            if not overwrite:
                state = "a finished run" if WEIGHTS in contents else "an interrupted run"
                hint = "" if WEIGHTS in contents else f" (or continue it with --resume {path})"
                raise InvalidArgumentError(
                    f"--out {path} already holds {state}; choose another --out or pass "
                    f"--overwrite to replace it{hint}"
                )
            for name in contents:  # only the run's own files, checked above
                (path / name).unlink()
        try:
            path.mkdir(exist_ok=True)
        except OSError as exc:
            raise InvalidArgumentError(
                f"cannot create --out {path} ({exc.strerror or exc})"
            ) from exc
        return cls(path)

    @classmethod
    def interrupted(cls, path: Path) -> RunFolder:
        """An interrupted run's folder, to resume.

        Raises:
            InvalidArgumentError: No interrupted run is there, or that run finished.
        """
        folder = cls(path)
        if not folder.checkpoint.is_file() or not (folder.path / RUN).is_file():
            raise InvalidArgumentError(
                f"--resume {path}: no interrupted run there (it needs {CHECKPOINT} and {RUN})"
            )
        if folder.finished:
            raise InvalidArgumentError(f"--resume {path}: that run already finished")
        return folder

    def write_config(self, config: RunConfig, environment: Mapping[str, object]) -> None:
        """Write ``run.json``: the run's settings and where it ran."""
        document = {**config.to_dict(), "environment": dict(environment)}
        (self.path / RUN).write_text(json.dumps(document, indent=2) + "\n")

    def read_config(self) -> RunConfig:
        """The run's settings from ``run.json``.

        Raises:
            CheckpointError: The file is unreadable or not a run's settings.
        """
        try:
            document = json.loads((self.path / RUN).read_text())
            document.pop("environment", None)
            return RunConfig.from_dict(document)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"{self.path / RUN} is unreadable ({exc})") from exc

    def write_results(self, result: FitResult) -> None:
        """Write the finished model (``config.json`` + ``model.safetensors``) and
        ``metrics.json``."""
        result.model.save_pretrained(self.path)
        (self.path / METRICS).write_text(json.dumps(metrics(result), indent=2) + "\n")

    def write_plots(
        self, result: FitResult, batch_losses: Sequence[tuple[int, float]], evaluated: Split
    ) -> list[Path]:
        """Draw the finished run's figures; return the files written.

        Args:
            result: The finished run.
            batch_losses: ``(step, loss)`` pairs of the batches this process trained (from
                a :class:`~fashionmlp.LossHistory`); after a resume, the later epochs'.
            evaluated: The images and labels the run was evaluated on, in loader order
                (see :func:`~fashionmlp.loaders.select_splits`), for the grid of
                misclassified images.

        Raises:
            ImportError: matplotlib is not installed (``pip install 'fashionmlp[plots]'``).
        """
        try:
            import matplotlib  # noqa: F401
        except ImportError as exc:
            raise ImportError("plots need matplotlib: pip install 'fashionmlp[plots]'") from exc
        from . import plots

        history = result.history
        per_epoch = history[-1].train.batches
        # After a resume, this process saw only the later epochs' batches.
        offset = (len(history) - len(batch_losses) // per_epoch) * per_epoch
        plots.plot_losses(
            self.path / "loss.png",
            [(step + offset, loss) for step, loss in batch_losses],
            history,
            label_smoothing=result.config.recipe.label_smoothing,
        )
        plots.plot_accuracy(self.path / "accuracy.png", history)
        plots.plot_confusion_matrix(
            self.path / "confusion_matrix.png", result.final.confusion_matrix
        )
        if result.final.predictions is not None:
            plots.plot_misclassified(
                self.path / "misclassified.png",
                evaluated.images,
                evaluated.labels,
                result.final.predictions,
            )
        return sorted(self.path.glob("*.png"))


def environment(device: torch.device, data_root: str | os.PathLike[str]) -> dict[str, object]:
    """Where a run ran: device, data root, versions, processes (kept in ``config.json``)."""
    return {
        "device": str(device),
        "data_root": str(data_root),
        "fashionmlp": __version__,
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "processes": distributed.world_size(),
    }


def metrics(result: FitResult) -> dict[str, Any]:
    """The figures of ``metrics.json``: every epoch, the final result, the time to 90%."""
    evaluated_on = result.config.evaluated_on
    reached = [report.seconds for report in result.history if report.eval.accuracy >= 0.90]
    return {
        "evaluated_on": evaluated_on,
        "epochs": [report.to_dict() for report in result.history],
        "final": result.final.to_dict(),
        f"final_{evaluated_on}_accuracy": result.final.accuracy,
        "wall_seconds": result.history[-1].seconds,
        "seconds_to_90_percent": reached[0] if reached else None,
        "precision": result.precision,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
