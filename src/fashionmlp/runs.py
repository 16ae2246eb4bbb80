"""Run folders: what a run is trained into, the rules for reusing one, and
:func:`train_run`, the one function that trains a run into its folder (``fashionmlp train``,
seed studies and a sweep's best recipe all call it).

A finished run folder is a model folder that ``FashionMLP.from_pretrained`` loads, with
the run's records beside it::

    config.json        the model's config (FashionMLP.save_pretrained writes it)
    model.safetensors  the trained weights; their presence marks the run finished
    README.md          the model card: what the model is, its accuracy, how to load it
    run.json           the run's settings (RunConfig) and where it ran
    checkpoint.pt      everything needed to resume, rewritten after every epoch
    metrics.csv        one row per finished epoch, appended as the run goes
    metrics.json       per-epoch figures and the final result
    loss.png, accuracy.png, confusion_matrix.png, misclassified.png
    tensorboard/       TensorBoard event files (fashionmlp train --tensorboard)

``run.json``, ``metrics.json`` and ``config.json`` carry their file format; this version
reads those of every earlier one (fashionmlp 0.1.0's named none: format 1).

A new run goes into a folder that does not exist or is empty; an earlier run's folder is
reused only when asked to overwrite it, and then only its own files are removed (with the
temporary file of one being saved, such as ``.checkpoint.pt.<random>``, which a process
killed mid-save leaves behind). A folder holding anything else is never written into.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import warnings
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import torch

from ._files import (
    atomic_write,
    check_name,
    lock_exclusive,
    os_error_fix,
    read_regular_file,
    remove_path,
    temporary_prefix,
)
from .callbacks import Hooks, LossHistory
from .checkpoint import Checkpoint, load_checkpoint
from .config import RunConfig, file_format, stamped
from .data import Splits, default_data_root, load_dataset, select_splits
from .devices import environment, is_main_process, resolve_device
from .errors import (
    CheckpointError,
    FashionMLPWarning,
    InvalidArgumentError,
    MissingExtraError,
    RunExistsError,
    RunFolderError,
)
from .loggers.csv_logger import CSVLogger
from .plots import RUN_PLOTS, plot_run
from .pretrained import (
    CARD_FILE,
    CONFIG_FILE,
    WEIGHTS_FILE,
    is_model_card,
    model_card,
    write_model_card,
    write_weights,
)
from .records import FitResult
from .train import fit

__all__ = [
    "CHECKPOINT",
    "CONFIG",
    "LOCK",
    "METRICS",
    "METRICS_CSV",
    "MODEL_FILES",
    "RUN",
    "RUN_FILES",
    "TENSORBOARD",
    "WEIGHTS",
    "RunFolder",
    "metrics",
    "read_document",
    "train_run",
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
#: One row per finished epoch, appended as the run goes
#: (see :class:`~fashionmlp.loggers.CSVLogger`).
METRICS_CSV = "metrics.csv"
#: The folder of TensorBoard event files.
TENSORBOARD = "tensorboard"
#: Held locked (``flock``) by the process training in the folder; it names that process.
LOCK = ".lock"
#: What ``run.json`` holds beside the run's settings: records of where and how it ran.
_RECORDS = ("environment", "data")
#: Every file a run folder may hold.
#: The model folder's files: the model, its config and its card.
MODEL_FILES = (WEIGHTS, CONFIG, CARD_FILE)
#: Every file a run folder may hold.
RUN_FILES = (CHECKPOINT, *MODEL_FILES, RUN, METRICS, METRICS_CSV, TENSORBOARD, LOCK, *RUN_PLOTS)


class RunFolder:
    """One run's folder, owned by one process at a time.

    :meth:`new` (for a new run) and :meth:`interrupted` (to resume one) *claim* the folder:
    they take an operating-system lock on its ``.lock`` file before anything is written and
    hold it until :meth:`release` (or the end of a ``with`` block, or the process: the
    kernel frees it when the process dies, so ``kill -9`` leaves no stale lock). A second
    claim of a folder in use is refused, naming the process that holds it. Used as a
    context manager, a claimed new run whose start failed (no checkpoint written yet) is
    removed again, so that the same folder can be used next time. The constructor itself
    claims and checks nothing.

    Example:
        .. code-block:: python

            with RunFolder.new(Path("runs/first")) as folder:
                folder.write_config(config, environment(device, "data"))
                result = fit(config.recipe, "data", checkpoint_path=folder.checkpoint, ...)
                folder.write_results(result)
            FashionMLP.from_pretrained(folder.path)  # the trained model, anywhere
    """

    def __init__(self, path: str | os.PathLike[str], *, elsewhere: str = "folder") -> None:
        self.path = Path(path)
        #: How errors name another folder to use (a command line names its option).
        self.elsewhere = elsewhere
        self._lock: IO[str] | None = None
        self._new = False  # claimed for a new run (so a failed start can be undone)
        self._created: list[Path] = []  # the folders made for it, outermost first

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        try:
            if kind is not None and self._new and not self._resumable(kind):
                self._remove_failed_start()
        finally:
            self.release()

    def _resumable(self, kind: type[BaseException]) -> bool:
        """Whether a new run that ended with ``kind`` left anything worth resuming.

        Interrupted, or stopped by a file that could not be written (a full disk: free some
        space and resume), any checkpoint is, even the untrained start's. Failed otherwise
        (a loss that diverged, say), only one with progress: a run that failed before its
        first epoch ended is removed whole, so that nothing is left to clean up.
        """
        if not self.checkpoint.exists():
            return False
        if issubclass(kind, (KeyboardInterrupt, CheckpointError, RunFolderError)):
            return True
        try:
            state = load_checkpoint(self.checkpoint).state
        except CheckpointError:
            return False
        return bool(state.get("history") or state.get("partial"))

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
    def new(
        cls, path: Path | None = None, *, overwrite: bool = False, elsewhere: str = "folder"
    ) -> RunFolder:
        """Claim the folder for a new run: created if needed, empty of an earlier run's files.

        Without ``path``: ``runs/<date>-<time>-<random>`` under the working directory, a
        name no other run has.

        Raises:
            InvalidArgumentError: ``path`` is a file, its parent is missing, or it holds
                files of something other than a run.
            RunExistsError: It holds an earlier run and ``overwrite`` is false.
            RunFolderError: Another process is training in it, or it cannot be created or
                written (the message says why: disk full, read-only, permission).
        """
        folder = cls(path or cls._unused_name(), elsewhere=elsewhere)
        path = folder.path
        check_name(path, error=InvalidArgumentError)
        for place in (path, *path.parents):
            if place.exists() and not place.is_dir():
                raise InvalidArgumentError(
                    f"{place} is a file, not a folder; choose another {elsewhere}"
                )
        folder._refuse_foreign_files()  # before anything of ours is written into it
        folder._make_folders()
        folder._claim()
        try:
            folder._refuse_foreign_files()
            contents = folder._run_files()
            # Settings alone, without a checkpoint, are a start killed before it got going:
            # nothing there can be resumed, so the folder is taken like an empty one.
            if contents - {RUN} and not overwrite:
                raise RunExistsError(path, finished=WEIGHTS in contents)
            for name in contents:  # only the run's own files, checked above
                remove_path(path / name)
        except BaseException:
            folder.release()
            raise
        folder._new = True
        return folder

    @classmethod
    def interrupted(cls, path: Path, *, elsewhere: str = "folder") -> RunFolder:
        """Claim an interrupted run's folder, to resume it.

        Raises:
            InvalidArgumentError: No interrupted run is there, or that run finished.
            RunFolderError: Another process is training in it.
        """
        check_name(path, error=InvalidArgumentError)
        folder = cls(path, elsewhere=elsewhere)
        if not folder.checkpoint.is_file():
            raise InvalidArgumentError(f"{path}: no interrupted run there (it has no {CHECKPOINT})")
        folder._claim()
        if folder.finished:
            folder.release()
            raise InvalidArgumentError(f"{path}: that run already finished")
        return folder

    def release(self) -> None:
        """Give up the claim (the lock's file stays; it is a run file)."""
        if self._lock is not None:
            self._lock.close()  # closing the file releases the lock
            self._lock = None

    @staticmethod
    def _unused_name() -> Path:
        runs = Path("runs")
        runs.mkdir(exist_ok=True)
        # The second's timestamp reads well; the random part keeps runs started in the
        # same second (by several users, or a script) apart.
        return runs / f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"

    def _run_files(self) -> set[str]:
        return (
            {entry.name for entry in self.path.iterdir()} - {LOCK} if self.path.is_dir() else set()
        )

    def _make_folders(self) -> None:
        """Create the folder and any missing parents, remembering which were made."""
        missing = [place for place in (self.path, *self.path.parents) if not place.exists()]
        for place in reversed(missing):
            try:
                place.mkdir()
            except FileExistsError:
                continue  # made a moment ago by someone else: the checks follow, under the lock
            except OSError as exc:
                raise RunFolderError(
                    f"cannot create {place}: {os_error_fix(exc, self.elsewhere)}"
                ) from exc
            self._created.append(place)

    def _refuse_foreign_files(self) -> None:
        contents = self._run_files()
        foreign = sorted(
            name
            for name in contents
            if not _is_run_file(name)
            or (name == CARD_FILE and not is_model_card(self.path / name))  # a user's README
        )
        if foreign:
            shown = ", ".join(
                f"{name}/" if (self.path / name).is_dir() else name for name in foreign
            )
            raise InvalidArgumentError(
                f"{self.path} is not a fashionmlp run folder: it holds {shown}, which are not a "
                f"run's; move them away, or choose a new or empty {self.elsewhere}"
            )
        if contents and RUN not in contents:
            raise InvalidArgumentError(
                f"{self.path} is not a fashionmlp run folder (it has no {RUN}); choose a new "
                f"or empty {self.elsewhere}"
            )

    def _claim(self) -> None:
        """Take the folder's lock, or say which process holds it."""
        try:
            handle = open(self.path / LOCK, "a+")  # noqa: SIM115  # held open: it is the lock
        except OSError as exc:
            raise RunFolderError(
                f"cannot write in {self.path}: {os_error_fix(exc, self.elsewhere)}"
            ) from exc
        try:
            lock_exclusive(handle)
        except OSError:
            handle.seek(0)
            owner = " ".join(handle.read().split()) or "another process"
            handle.close()
            raise RunFolderError(
                f"{self.path} is in use by a run of {owner}; wait for it to finish, or stop "
                f"it (Ctrl-C saves it to resume), or choose another {self.elsewhere}"
            ) from None
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"process {os.getpid()} on {socket.gethostname()}\n")
            handle.flush()
        except OSError as exc:
            handle.close()
            raise RunFolderError(
                f"cannot write in {self.path}: {os_error_fix(exc, self.elsewhere)}"
            ) from exc
        self._lock = handle

    def _remove_failed_start(self) -> None:
        """Remove what a new run that never got going wrote, so the folder can be used again."""
        for name in RUN_FILES:  # atomic_write leaves no temporary files of its own
            remove_path(self.path / name)
        for place in reversed(self._created):  # the innermost first; each only if empty
            with contextlib.suppress(OSError):
                place.rmdir()

    def write_config(self, config: RunConfig, environment: Mapping[str, object]) -> None:
        """Write ``run.json``: the run's settings, the images its figures are about
        (``data``: :attr:`RunConfig.samples <fashionmlp.RunConfig.samples>`), and where it ran.

        Raises:
            RunFolderError: It cannot be written (the message says why).
        """
        document = {**config.to_dict(), "data": config.samples, "environment": dict(environment)}
        self._write(RUN, json.dumps(stamped(document), indent=2) + "\n")

    def read_config(self) -> RunConfig:
        """The run's settings from ``run.json`` (of this version's format or an older one).

        Raises:
            CheckpointError: The file is unreadable, of a newer format, or not a run's
                settings.
        """
        path = self.path / RUN
        document, format = read_document(path)
        settings = {key: value for key, value in document.items() if key not in _RECORDS}
        try:
            return RunConfig.from_dict(settings, format=format)
        except InvalidArgumentError as exc:
            raise CheckpointError(f"{path} does not hold a run's settings ({exc})") from None

    def read_checkpoint(self) -> tuple[RunConfig, Checkpoint]:
        """The interrupted run's checkpoint, read and checked once, and the settings it holds:
        what a resume continues (``run.json`` is a record of them, rewritten on resume).

        Raises:
            CheckpointError: The checkpoint is unreadable or holds no run's settings.
        """
        checkpoint = load_checkpoint(self.checkpoint)
        try:
            return RunConfig.from_dict(checkpoint.config, format=checkpoint.format), checkpoint
        except InvalidArgumentError as exc:
            raise CheckpointError(
                f"{self.checkpoint} does not hold a run's settings ({exc}); it is not a "
                "checkpoint of a fashionmlp run: start the run again"
            ) from None

    def owner(self) -> str | None:
        """The process training in the folder (``"process 123 on host"``), or ``None``."""
        try:
            handle = open(self.path / LOCK)  # noqa: SIM115  # closed below, which unlocks
        except OSError:
            return None
        with handle:
            try:
                lock_exclusive(handle)
            except OSError:
                return " ".join(handle.read().split()) or "another process"
        return None

    def write_results(self, result: FitResult, *, model_epoch: int | None = None) -> None:
        """Write the finished model and ``metrics.json`` (see :func:`metrics`).

        The model goes in with its own ``save_pretrained`` (``config.json`` +
        ``model.safetensors``: a :class:`~fashionmlp.FashionMLP` has it); a model without
        one gets its weights alone, as ``model.safetensors``.
        """
        figures = metrics(result, model_epoch=model_epoch)
        kept = result.history[figures["model_epoch"] - 1]
        recipe = self.read_config().recipe.to_dict() if (self.path / RUN).is_file() else None
        facts = {"evaluation": kept.eval, "split": kept.evaluated_on, "recipe": recipe}
        save_pretrained = getattr(result.model, "save_pretrained", None)
        if callable(save_pretrained):
            save_pretrained(self.path, **facts)
        else:  # weights alone, and a card that names the module
            write_weights(self.path, result.model.state_dict())
            parameters = sum(p.numel() for p in result.model.state_dict().values())
            config = {"model_type": type(result.model).__name__}
            write_model_card(self.path, model_card(config, parameters, **facts))
        self._write(METRICS, json.dumps(stamped(figures), indent=2) + "\n")

    def _write(self, name: str, text: str) -> None:
        try:
            atomic_write(self.path / name, text.encode(), replace=True)
        except OSError as exc:
            raise RunFolderError(
                f"cannot write {self.path / name}: {os_error_fix(exc, self.elsewhere)}"
            ) from exc


def _is_run_file(name: str) -> bool:
    """Whether a file of this name belongs in a run folder.

    Besides the run's files, the temporary file of one being written: another process is
    saving its checkpoint this moment, or one killed mid-write left it behind.
    """
    return name in RUN_FILES or any(name.startswith(temporary_prefix(own)) for own in RUN_FILES)


def metrics(result: FitResult, *, model_epoch: int | None = None) -> dict[str, Any]:
    """The figures of ``metrics.json``: every epoch, the saved model's result, the time to
    90%.

    ``model_epoch`` is the epoch whose weights the run's model holds, when not the last
    (default: :attr:`FitResult.model_epoch <fashionmlp.FitResult.model_epoch>`, a
    :class:`~fashionmlp.callbacks.KeepBest`'s): ``final`` is then that epoch's evaluation,
    and ``model_epoch`` says which it is.
    """
    evaluated_on = result.history[-1].evaluated_on
    reached = [report.seconds for report in result.history if report.eval.accuracy >= 0.90]
    model_epoch = model_epoch or result.model_epoch
    kept = result.history[model_epoch - 1] if model_epoch else result.history[-1]
    return {
        "evaluated_on": evaluated_on,
        "epochs": [report.to_dict() for report in result.history],
        "model_epoch": kept.epoch,
        "final": kept.eval.to_dict(),
        f"final_{evaluated_on}_accuracy": kept.eval.accuracy,
        "wall_seconds": result.history[-1].seconds,
        "seconds_to_90_percent": reached[0] if reached else None,
        "precision": result.precision,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def read_document(path: Path) -> tuple[dict[str, Any], int]:
    """A JSON file of ours (``run.json``, ``metrics.json``, a study's summary) without its
    stamp, and its file format (see :func:`~fashionmlp.config.stamped`).

    Raises:
        CheckpointError: The file is missing, unreadable, not a JSON object, or of a newer
            format (the message names the version that wrote it).
    """
    data = read_regular_file(path, limit=_MAX_RECORD_BYTES, error=CheckpointError)
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as exc:
        reason = "nested too deep" if isinstance(exc, RecursionError) else exc
        raise CheckpointError(f"{path} is not valid JSON ({reason})") from None
    if not isinstance(document, dict):
        raise CheckpointError(f"{path} holds a {type(document).__name__}, not a record of ours")
    return file_format(document, str(path), CheckpointError)


#: A record file larger than this is not one of ours.
_MAX_RECORD_BYTES = 64 << 20


def train_run(
    folder: RunFolder,
    config: RunConfig,
    *,
    data: Splits | None = None,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    device: torch.device | str = "auto",
    callbacks: Sequence[object] = (),
    resume: Checkpoint | None = None,
    check_finite: bool = True,
    plots: bool = True,
) -> FitResult:
    """Train the run ``config`` describes into ``folder``, or resume it: the one way a run
    becomes a run folder.

    Writes ``run.json`` first, ``metrics.csv`` as the epochs go and ``checkpoint.pt`` after
    each; once the run is over (finished, or stopped after an epoch), the model folder
    (``config.json``, ``model.safetensors``, the card ``README.md``: the model of the epoch a
    :class:`~fashionmlp.callbacks.KeepBest` among ``callbacks`` kept, else the last),
    ``metrics.json`` and the plots, then tells the callbacks (``on_model_saved``). A run
    stopped part-way through an epoch leaves its checkpoint, to be resumed. Under
    ``torchrun`` every process trains and only the first writes.

    Args:
        folder: The run's folder, claimed (:meth:`RunFolder.new` or
            :meth:`RunFolder.interrupted`).
        config: The run's settings (for a resume, those its checkpoint holds).
        data: The dataset already loaded; default: read from ``root``.
        root: The data root (default :func:`~fashionmlp.default_data_root`), recorded in
            ``run.json``.
        download: Allow the dataset's download.
        device: Where to train.
        callbacks: More callbacks for :func:`~fashionmlp.fit` (printing, trackers, ...).
        resume: The run's checkpoint, read once (:meth:`RunFolder.read_checkpoint`), to
            continue from.
        check_finite: Stop on a NaN or infinite loss.
        plots: Draw the run's figures (needs matplotlib; without it, a warning).

    Raises:
        RunFolderError: A file of the run cannot be written.
        CheckpointError: ``resume`` does not fit the run.
        NonFiniteLossError: The loss became NaN or infinite.
    """
    target = resolve_device(device)
    root = root if root is not None else default_data_root()
    main = is_main_process()
    if main:
        folder.write_config(config, environment(target, root))
    if data is None:
        data = load_dataset(root, download=download, test=config.validation_size == 0)
    losses = LossHistory()
    log = CSVLogger(folder.path / METRICS_CSV, rewrite=True)
    try:
        result = fit(
            config,
            data=data,
            device=target,
            callbacks=[losses, log, *callbacks],
            checkpoint_path=folder.checkpoint,
            resume_from=resume,
            check_finite=check_finite,
        )
    finally:
        log.close()
    if result.stopped_at is not None or not main:
        return result
    folder.write_results(result)
    if plots:
        _, evaluated = select_splits(
            data, limit=config.limit, validation_size=config.validation_size
        )
        try:
            smoothing = config.recipe.label_smoothing
            plot_run(folder.path, result, losses.pairs, evaluated, label_smoothing=smoothing)
        except MissingExtraError as exc:
            warnings.warn(f"plots skipped: {exc}", FashionMLPWarning, stacklevel=2)
    Hooks(callbacks).call("on_model_saved", folder.path)
    return result
