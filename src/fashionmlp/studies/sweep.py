"""Hyperparameter sweeps on Optuna: trials of a recipe judged on a validation split, the
unpromising pruned, the study kept in a storage that many workers share, and the records it
leaves in its folder.

:func:`sweep` is the whole of ``fashionmlp sweep``: it opens (or continues) the study,
runs its trials in one process or in ``workers`` processes, and writes the study folder's
records (:func:`write_study_files`). Every trial trains with :func:`~fashionmlp.fit` on the
training split less ``validation_size`` held-out images and reports each epoch's validation
accuracy to Optuna (``trial.report`` and ``should_prune``, as Optuna's own examples do); the
test set is never read. Needs the ``sweep`` extra (``pip install 'fashionmlp[sweep]'``).

The default storage is Optuna's journal on a file in the study folder, which several
worker processes on one machine share safely (SQLite, Optuna's docs warn, is not made for
parallel workers); ``storage=URL`` takes any Optuna database URL (PostgreSQL, MySQL,
SQLite), so workers on many machines join one study by name. Database storages have
Optuna's heartbeat: a trial whose worker stops beating is failed and run again. The journal
has none, so a trial whose worker on this machine is gone (``kill -9``) is failed and run
again when a worker next looks (:func:`retry_orphans`).
"""

from __future__ import annotations

import collections
import contextlib
import csv
import dataclasses
import importlib.util
import io
import json
import multiprocessing
import os
import signal
import socket
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from .._files import atomic_write, os_error_fix
from ..callbacks import (
    Callback,
    Hooks,
    StopOnSignal,
    StopTraining,
    Study,
    StudyEnd,
    signals_handled,
)
from ..config import (
    Recipe,
    RunConfig,
    check_positive,
    differences,
    flat,
    override,
    stamped,
)
from ..data import Splits, load_dataset
from ..errors import FashionMLPError, FashionMLPWarning, InvalidArgumentError, MissingExtraError
from ..records import EpochReport, EvalResult
from ..runs import RunFolder, read_document, train_run
from ..train import fit
from .space import DEFAULT_SPACE, SearchSpace

__all__ = [
    "BEST_RECIPE",
    "BEST_RUN",
    "JOURNAL_FILE",
    "STUDY_FILES",
    "SUMMARY",
    "TRIALS_CSV",
    "Pruner",
    "SweepResult",
    "describe_storage",
    "open_storage",
    "retry_orphans",
    "sweep",
    "write_study_files",
]

#: How a sweep stops unpromising trials: the median rule, Hyperband, or not at all.
Pruner = Literal["median", "hyperband", "none"]
#: The states of a finished trial, which count towards the sweep's number of trials.
_FINISHED = ("COMPLETE", "PRUNED")
#: The study's user attribute holding its loggers' states, so that a continued study
#: continues their runs.
_LOGGERS_ATTR = "loggers"


@dataclass(frozen=True)
class SweepResult:
    """What :func:`sweep` leaves: the study's figures and where its records are."""

    #: The study's name in its storage.
    study: str
    #: Trials by state (``COMPLETE``, ``PRUNED``, ``FAIL``, ``RUNNING``, ``WAITING``).
    states: dict[str, int]
    #: The best trial's validation accuracy, or ``None`` when no trial completed.
    best_value: float | None
    #: The best trial's recipe (the sweep's recipe with its parameters), or ``None``.
    best_recipe: Recipe | None
    #: The study folder, with ``trials.csv``, ``best-recipe.toml``, ``study.json`` and the plots.
    folder: Path
    #: The exit status of each worker process (0 for one that finished), for ``workers > 1``.
    workers: tuple[int, ...] = ()
    #: With ``train_best``: the run folder of the best recipe trained on the whole training
    #: split and evaluated on the test set, else ``None``.
    best_run: Path | None = None
    #: With ``train_best``: that run's final evaluation on the test set, else ``None``.
    best_test: EvalResult | None = None


def sweep(
    recipe: Recipe,
    out: str | os.PathLike[str],
    *,
    space: SearchSpace = DEFAULT_SPACE,
    trials: int = 20,
    workers: int = 1,
    storage: str | None = None,
    study: str = "fashionmlp",
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    device: str = "auto",
    seed: int = 0,
    limit: int | None = None,
    validation_size: int = 5000,
    pruner: Pruner = "median",
    heartbeat: int = 60,
    continue_study: bool = False,
    on_trial: Callable[[Any], None] | None = None,
    loggers: Sequence[object] = (),
    train_best: bool = False,
) -> SweepResult:
    """Tune ``recipe`` over ``space`` until the study has ``trials`` finished trials.

    A new study's first trial is ``recipe``'s own values (when ``space`` holds them), the
    baseline the table compares the others with. Rerunning the same sweep continues its
    study (from the storage) until it has its trials; a study of that name made with
    another recipe or space is refused unless ``continue_study``. Each trial is one
    process's work; ``workers`` processes share the machine's CPU threads and load the data
    once each.

    Args:
        recipe: What to tune; every trial is it with the space's values.
        out: The study folder (made if needed): the default storage's journal file and the
            records of :func:`~fashionmlp.studies.sweep.write_study_files`.
        space: The fields to tune and their ranges (:class:`SearchSpace`).
        trials: The study's total of finished trials (completed or pruned): it stops once
            that many have finished (a worker that started one just before may finish it,
            so at most ``trials + workers - 1``).
        workers: Local worker processes.
        storage: An Optuna database URL shared by workers on many machines (PostgreSQL,
            say); default: the journal file in ``out``.
        study: The study's name in the storage.
        root: The data root; download: allow the dataset's download; device: where to
            train.
        seed: Every trial's training seed, and the sampler's: a sweep of one worker draws
            the same trials each time.
        limit: Use only the first ``limit`` images of each split (quick sweeps).
        validation_size: Held-out training images every trial is judged on (at least 1:
            a sweep never looks at the test set).
        pruner: ``"median"`` (stop a trial whose epoch is below the median of earlier
            trials' at that epoch), ``"hyperband"``, or ``"none"``.
        heartbeat: Seconds between a running trial's heartbeats in a database storage; a
            trial silent for twice as long (its worker killed) is failed and run again.
        continue_study: Add trials to a study made with another recipe or space.
        on_trial: Called with each trial as it finishes, in the worker process that ran it
            (with ``workers > 1`` it is sent to them, so give a function of a module).
        loggers: Trackers of the whole study (see :mod:`fashionmlp.callbacks`): each logs
            the study as one run (the same one when the study continues: their states are
            kept in the study), every trial as a child with its parameters, per-epoch
            validation figures and Optuna state (``on_tags``). Sent to the worker processes,
            so they must pickle.
        train_best: Once the study is over, train its best recipe on the whole training
            split (with ``seed`` and ``limit``) into ``out/best-run/``, a run folder like
            ``fashionmlp train``'s (:func:`~fashionmlp.runs.train_run`), and evaluate it on
            the test set: the figure to quote, read only after every trial has been judged
            on validation. The loggers log it as a child run, ``"best"``.

    Raises:
        InvalidArgumentError: A setting does not fit, the storage cannot be opened, the
            study exists with another recipe or space, or ``out`` holds files of something
            else.
        MissingExtraError: Optuna is not installed.
        FashionMLPError: Every worker process ended early (the records are written first).
        KeyboardInterrupt: Ctrl-C or SIGTERM stopped the sweep, every worker with it (the
            trials they stopped are failed; the study continues when the sweep is run
            again); its argument is the signal's number.
    """
    folder = Path(out)
    _check_arguments(recipe, space, trials, workers, validation_size, heartbeat)
    foreign = [p.name for p in folder.glob("[!.]*") if p.name not in STUDY_FILES]
    if foreign:  # a folder of something else: nothing of a study goes into it
        raise InvalidArgumentError(
            f"{folder} holds files that are not a study's ({', '.join(sorted(foreign)[:5])}); "
            "choose a new or empty folder, or the folder of this study"
        )
    if (folder / SUMMARY).is_file():
        made_by = read_document(folder / SUMMARY)[0].get("study")
        if made_by != study:  # the records are one study's: another's would replace them
            raise InvalidArgumentError(
                f"{folder} holds the records of study {made_by!r}; give study {study!r} a "
                "folder of its own, or continue that one"
            )
    optuna = optuna_module()
    made = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    spec = _Spec(
        recipe=recipe.to_dict(),
        space=space.to_dict(),
        folder=str(folder),
        storage=storage,
        study=study,
        trials=trials,
        seed=seed,
        limit=limit,
        validation_size=validation_size,
        pruner=pruner,
        heartbeat=heartbeat,
        root=None if root is None else str(root),
        download=download,
        device=device,
        threads=max(1, (os.cpu_count() or 1) // workers) if workers > 1 else 0,
        loggers=tuple(loggers),
    )
    try:
        created = _open_study(spec, continue_study=continue_study)
    except BaseException:
        if made and not any(folder.iterdir()):  # a failed start leaves nothing behind
            folder.rmdir()
        raise
    trackers = Hooks(loggers)
    trackers.load_state_dict(created.user_attrs.get(_LOGGERS_ATTR, {}))
    params = {f"space.{p.field}": json.dumps(p.to_dict()) for p in space.params}
    params |= flat(spec.recipe)
    trackers.call("on_study_start", Study("sweep", f"study {study}", folder, params))
    if loggers:
        created.set_user_attr(_LOGGERS_ATTR, trackers.state_dict())
    statuses: tuple[int, ...] = ()
    try:
        if workers == 1:
            status = _work(spec, on_trial)
            if status != 0:  # a signal stopped the trial, and the sweep
                raise KeyboardInterrupt(status - 128)
        else:
            statuses = _run_workers(spec, workers, on_trial)
            if all(statuses):
                raise FashionMLPError(
                    f"every worker process ended early (status {', '.join(map(str, statuses))}),"
                    " each with the error it printed; from a script of your own, run the sweep "
                    'under if __name__ == "__main__": (each worker imports the script)'
                )
    except KeyboardInterrupt:
        trackers.call("on_study_end", StudyEnd(finished=False))
        raise
    finally:  # stopped too: the records show the study as far as it went
        write_study_files(created, folder, recipe, space, trials, storage)
    result = _result(optuna, created, recipe, folder, statuses)
    figures = {} if result.best_value is None else {"best_validation_accuracy": result.best_value}
    if train_best and result.best_recipe is not None:
        best = result.best_recipe.replace(name=f"{recipe.name}-best")
        with RunFolder.new(folder / BEST_RUN, overwrite=True) as run:
            trained = train_run(
                run,
                RunConfig(best, seed=seed, limit=limit),
                root=root,
                download=download,
                device=device,
                callbacks=trackers.children("best"),
            )
        result = dataclasses.replace(result, best_run=run.path, best_test=trained.final)
        figures["best_test_accuracy"] = trained.final.accuracy
    trackers.call("on_study_end", StudyEnd(figures))
    return result


def _check_arguments(
    recipe: Recipe, space: SearchSpace, trials: int, workers: int, validation: int, heartbeat: int
) -> None:
    for name, value in (("trials", trials), ("workers", workers), ("heartbeat", heartbeat)):
        check_positive(name, value)
    if validation < 1:
        raise InvalidArgumentError(
            "a sweep judges its trials on a validation split, never on the test set: "
            f"validation_size must be at least 1, got {validation}"
        )
    space.check(recipe)


@dataclass(frozen=True)
class _Spec:
    """Everything a worker process needs, as plain data (it is sent to spawned processes)."""

    recipe: dict[str, Any]
    space: dict[str, Any]
    folder: str
    storage: str | None
    study: str
    trials: int
    seed: int
    limit: int | None
    validation_size: int
    pruner: str
    heartbeat: int
    root: str | None
    download: bool
    device: str
    threads: int
    loggers: tuple[object, ...] = ()

    def what(self) -> dict[str, Any]:
        """What makes a study this one: a rerun must match it to continue."""
        keys = ("recipe", "space", "seed", "limit", "validation_size")
        return {key: getattr(self, key) for key in keys}


def _load(spec: _Spec, worker: int = 0) -> Any:
    """The study, from its storage, with the sampler of ``worker`` (0, 1, ...): seeded by
    the sweep's seed, so that a sweep of one worker draws the same trials each time, and each
    worker of several draws its own."""
    optuna = optuna_module()
    storage = open_storage(spec.storage, Path(spec.folder), heartbeat=spec.heartbeat)
    pruners = {
        "median": optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=1),
        "hyperband": optuna.pruners.HyperbandPruner(min_resource=1),
        "none": optuna.pruners.NopPruner(),
    }
    return optuna.create_study(
        storage=storage,
        study_name=spec.study,
        direction="maximize",
        pruner=pruners[spec.pruner],
        sampler=optuna.samplers.TPESampler(seed=hash((spec.seed, worker)) % 2**32),
        load_if_exists=True,
    )


def _open_study(spec: _Spec, *, continue_study: bool) -> Any:
    """The study, made or continued; one of another recipe or space is refused."""
    study = _load(spec)
    if study.metric_names is None:  # the dashboard's and the plots' name for the value
        with warnings.catch_warnings():  # Optuna calls metric names experimental
            warnings.simplefilter("ignore", optuna_module().exceptions.ExperimentalWarning)
            study.set_metric_names(["validation_accuracy"])
    made_with = study.user_attrs.get("fashionmlp")
    if made_with is None:
        study.set_user_attr("fashionmlp", spec.what())
        # The recipe as given is the first trial, so that the table says what the sweep
        # gained over it (Optuna's enqueue_trial, as its examples seed a known good point).
        point = SearchSpace.from_dict(spec.space).point(Recipe.from_dict(spec.recipe))
        if point is not None:
            study.enqueue_trial(point, user_attrs={"baseline": True}, skip_if_exists=True)
    elif made_with != spec.what() and not continue_study:
        changed = differences(made_with, spec.what())
        raise InvalidArgumentError(
            f"study {spec.study!r} exists with other settings ({'; '.join(changed[:4])}); choose "
            "another study name, or continue it anyway (continue_study=True)"
        )
    return study


def _work(spec: _Spec, on_trial: Callable[[Any], None] | None, worker: int = 0) -> int:
    """A worker: run trials until the study has its total; return the exit status."""
    optuna = optuna_module()
    if spec.threads:
        import torch

        torch.set_num_threads(spec.threads)
    study = _load(spec, worker)
    data = load_dataset(spec.root, download=spec.download, test=False)
    stop = StopOnSignal()
    objective = _Objective(spec, data, stop)
    finished = tuple(getattr(optuna.trial.TrialState, state) for state in _FINISHED)
    callbacks = [optuna.study.MaxTrialsCallback(spec.trials, states=finished)]
    if on_trial is not None:
        callbacks.append(lambda study, trial: on_trial(trial))
    with stop.installed():
        while True:
            if spec.storage is None:
                retry_orphans(study)
            if len(study.get_trials(deepcopy=False, states=finished)) >= spec.trials:
                return 0
            try:
                study.optimize(objective, n_trials=1, catch=(FashionMLPError,), callbacks=callbacks)
            except KeyboardInterrupt:
                return 128 + (stop.received or signal.SIGINT)
            except OSError as exc:  # the storage could not be written: a full disk, say
                raise FashionMLPError(
                    f"cannot write the study {spec.study!r}: {os_error_fix(exc, 'folder')}; "
                    "then run the same command to continue it"
                ) from exc


class _Objective:
    """One trial: the recipe with the trial's values, trained, judged on validation."""

    def __init__(self, spec: _Spec, data: Splits, stop: StopOnSignal) -> None:
        self.spec = spec
        self.recipe = Recipe.from_dict(spec.recipe)
        self.space = SearchSpace.from_dict(spec.space)
        self.data = data
        self.stop = stop

    def __call__(self, trial: Any) -> float:
        optuna = optuna_module()
        recipe = override(self.recipe, self.space.suggest(trial))
        # Named once its parameters are all drawn: a named trial whose worker is gone is
        # retried with the same parameters, all of them.
        trial.set_user_attr(WORKER_ATTR, worker_name())
        spec = self.spec
        config = RunConfig(
            recipe, seed=spec.seed, limit=spec.limit, validation_size=spec.validation_size
        )
        report = _TrialReport(trial)
        trackers = Hooks(Hooks(spec.loggers).children(f"trial {trial.number}"))
        started = time.perf_counter()
        try:
            result = fit(
                config,
                data=self.data,
                device=spec.device,
                callbacks=[report, self.stop, *trackers.callbacks],
            )
        except FashionMLPError as exc:  # a diverging loss, say: this trial fails, not the sweep
            trial.set_user_attr("error", " ".join(str(exc).split()))
            raise
        trial.set_user_attr("validation_accuracy", report.accuracies)
        trial.set_user_attr("seconds", time.perf_counter() - started)
        if result.stopped_at is not None:  # a signal: the sweep stops, the trial fails
            raise KeyboardInterrupt
        trackers.call("on_tags", {"optuna.state": "PRUNED" if report.pruned else "COMPLETE"})
        if report.pruned:
            raise optuna.TrialPruned(f"pruned after epoch {len(report.accuracies)}")
        return result.final.accuracy


class _TrialReport(Callback):
    """Each epoch's validation accuracy to Optuna; a stop after the epoch it says to prune."""

    def __init__(self, trial: Any) -> None:
        self.trial = trial
        self.accuracies: list[float] = []
        self.pruned = False

    def on_epoch_end(self, report: EpochReport) -> None:
        self.accuracies.append(report.eval.accuracy)
        self.trial.report(report.eval.accuracy, report.epoch)
        if report.epoch < report.epochs and self.trial.should_prune():
            self.pruned = True
            raise StopTraining("pruned", at="epoch")


def _run_workers(
    spec: _Spec, workers: int, on_trial: Callable[[Any], None] | None
) -> tuple[int, ...]:
    """Run ``workers`` worker processes to the end, and return their exit statuses.

    Each worker runs in a process group of its own, so that a terminal's Ctrl-C reaches
    the sweep's process alone: it passes SIGINT or SIGTERM on to every worker, once (each
    stops after its batch, failing its trial), waits for them, and raises
    ``KeyboardInterrupt(signal number)``. A second signal kills the workers at once.
    """
    context = multiprocessing.get_context("spawn")  # no torch state forked into them
    processes = [
        context.Process(target=_worker_main, args=(spec, on_trial, worker))
        for worker in range(workers)
    ]
    received: list[int] = []

    def pass_on(number: int, frame: object) -> None:
        for process in processes:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signal.SIGKILL if received else number)
        received.append(number)

    with signals_handled(pass_on) if _main_thread() else contextlib.nullcontext():
        for process in processes:
            process.start()
        for process in processes:
            process.join()
    if received:
        raise KeyboardInterrupt(received[0])
    return tuple(_status(process.exitcode) for process in processes)


def _main_thread() -> bool:
    """Whether this is the main thread, the only one that may handle signals."""
    return threading.current_thread() is threading.main_thread()


def _status(exitcode: int | None) -> int:
    """A process's exit status as a shell says it: 137 for one killed by signal 9."""
    if exitcode is None:
        return 1
    return 128 - exitcode if exitcode < 0 else exitcode


def _worker_main(spec: _Spec, on_trial: Callable[[Any], None] | None, worker: int) -> None:
    """A spawned worker process: :func:`_work`, its status as the process's. In a process
    group of its own: signals come from the sweep's process (see :func:`_run_workers`)."""
    if hasattr(os, "setpgrp"):
        os.setpgrp()
    raise SystemExit(_work(spec, on_trial, worker))


def _result(
    optuna: Any, study: Any, recipe: Recipe, folder: Path, statuses: tuple[int, ...]
) -> SweepResult:
    _, states, best = _outcome(study)
    return SweepResult(
        study=study.study_name,
        states=states,
        best_value=best.value if best else None,
        best_recipe=override(recipe, best.params) if best else None,
        folder=folder,
        workers=statuses,
    )


def _outcome(study: Any) -> tuple[list[Any], dict[str, int], Any]:
    """The study's trials, how many are in each state, and its best completed trial."""
    trials = study.get_trials(deepcopy=False)
    complete = [trial for trial in trials if trial.state.name == "COMPLETE"]
    states = collections.Counter(trial.state.name for trial in trials)
    return trials, dict(states), max(complete, key=lambda trial: trial.value, default=None)


# --- storages ------------------------------------------------------------------------------

#: The journal file of a study folder's default storage.
JOURNAL_FILE = "study.log"
#: The trial's user attribute naming its worker: ``"host:pid"``.
WORKER_ATTR = "worker"
_DATABASES = ("sqlite", "postgresql", "mysql", "oracle", "mssql")


def optuna_module() -> Any:
    """Optuna, or one line saying which extra brings it."""
    try:
        import optuna
    except ImportError:
        raise MissingExtraError("sweeps need Optuna: pip install 'fashionmlp[sweep]'") from None
    # The sweep says what each trial did; Optuna's own lines (a traceback for a trial that a
    # Ctrl-C stopped, say) would only repeat it.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna


def open_storage(url: str | None, folder: Path, *, heartbeat: int = 60) -> Any:
    """The Optuna storage ``url`` names; ``None``: the journal file in ``folder``.

    Args:
        url: An Optuna database URL (``postgresql://user@host/db``, ``sqlite:///x.db``, ...),
            or ``None``.
        folder: The study folder, for the default journal file.
        heartbeat: Seconds between a running trial's heartbeats, for database storages; a
            trial silent for twice as long is failed and run again (up to three times).

    Raises:
        InvalidArgumentError: The URL is malformed, of an unknown kind, or names a server
            that cannot be reached (the message says which).
        MissingExtraError: Optuna, or the database's driver, is not installed.
    """
    optuna = optuna_module()
    if url is None:
        from optuna.storages.journal import JournalFileBackend

        _set_aside_torn_record(folder / JOURNAL_FILE)
        return optuna.storages.JournalStorage(JournalFileBackend(str(folder / JOURNAL_FILE)))
    scheme = url.partition(":")[0].partition("+")[0]
    if scheme not in _DATABASES or "://" not in url:
        raise InvalidArgumentError(
            f"storage {describe_storage(url)!r} is not a database URL Optuna takes; give one "
            "such as postgresql://user@host:5432/db or sqlite:///study.db, or leave it out "
            "for the study folder's own journal file"
        )
    if scheme == "sqlite" and url.partition("://")[2].lstrip("/") in ("", ":memory:"):
        raise InvalidArgumentError(
            f"storage {url!r} is a SQLite database in memory: each worker would have its own "
            "and every trial would be lost when the sweep ends; give a file "
            "(sqlite:///study.db), or leave --storage out for the study folder's journal"
        )
    if url.startswith("postgresql://") and _has("psycopg") and not _has("psycopg2"):
        # SQLAlchemy's default PostgreSQL driver is psycopg2; the extra brings psycopg 3
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    options: dict[str, Any] = {"pool_pre_ping": True}
    if scheme == "postgresql":
        options["connect_args"] = {"connect_timeout": 10}  # an unreachable host: seconds
    try:
        with warnings.catch_warnings():  # Optuna calls its heartbeat experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return _database(optuna, url, options, heartbeat)
    except ImportError as exc:
        raise MissingExtraError(
            f"storage {describe_storage(url)!r} needs its database driver ({exc}); for "
            "PostgreSQL: pip install 'fashionmlp[postgresql]'"
        ) from None
    except Exception as exc:  # SQLAlchemy's errors for bad URLs and servers are many types
        reason = " ".join(str(exc).split())[:300]
        raise InvalidArgumentError(
            f"cannot open storage {describe_storage(url)!r}: {reason}; check the URL, that the "
            "server runs and can be reached, and the database exists"
        ) from None


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _database(optuna: Any, url: str, options: dict[str, Any], heartbeat: int) -> Any:
    """Optuna's storage on the database; again when another worker was making its tables in
    the same moment (a new database: PostgreSQL then says a type "already exists")."""
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=options,
                heartbeat_interval=heartbeat,
                grace_period=2 * heartbeat,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                    max_retry=3
                ),
            )
        except Exception as exc:  # SQLAlchemy's IntegrityError or ProgrammingError
            racing = "already exists" in str(exc) or "duplicate key" in str(exc)
            if not racing or attempt == 4:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def _set_aside_torn_record(journal: Path) -> None:
    """Set aside the last record of ``journal`` if a write cut it short (a full disk, say),
    so that the study opens again from its last whole record; the torn bytes are kept in
    ``study.log.torn``, and a warning says so. Done under the journal's own lock, so that a
    record another worker is writing this moment is never taken for a torn one."""
    if not journal.is_file():
        return
    from optuna.storages.journal import JournalFileSymlinkLock

    lock = JournalFileSymlinkLock(str(journal))
    lock.acquire()
    try:
        data = journal.read_bytes()
        whole = data.rfind(b"\n") + 1  # every whole record of Optuna's journal ends a line
        if whole == len(data):
            return
        aside = journal.with_name(TORN_RECORD)
        with open(aside, "ab") as kept:
            kept.write(data[whole:])
        with open(journal, "r+b") as cut:
            cut.truncate(whole)
    finally:
        lock.release()
    warnings.warn(
        f"{journal} ended in a torn record (a write cut short, by a full disk say): set aside "
        f"in {aside.name}; the study goes on from its last whole record",
        FashionMLPWarning,
        stacklevel=3,
    )


def describe_storage(url: str | None) -> str:
    """The storage's URL with any password taken out, for messages and records."""
    if url is None:
        return f"the journal file {JOURNAL_FILE} in the study folder"
    scheme, _, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if at and ":" in credentials:
        credentials = credentials.split(":", 1)[0] + ":***"
    return f"{scheme}://{credentials}{at}{host}"


def worker_name() -> str:
    """This process, as a trial records its worker."""
    return f"{socket.gethostname()}:{os.getpid()}"


def retry_orphans(study: Any) -> list[int]:
    """Fail the running trials whose worker on this machine has died, and queue each to run
    again with the same parameters; return their numbers.

    A database storage's heartbeat does this for workers anywhere; for the journal, whose
    workers share one machine, a worker's process being gone is the sign.
    """
    optuna = optuna_module()
    host = socket.gethostname()
    orphans = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        worker = str(trial.user_attrs.get(WORKER_ATTR, ""))
        name, _, pid = worker.rpartition(":")
        if not worker:  # a live trial names its worker at once: this one's died first
            if _age(trial) < _UNNAMED_GRACE:
                continue
        elif name != host or not pid.isdigit() or _alive(int(pid)):
            continue
        try:
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
            continue  # another worker retried it a moment ago: it is queued once already
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
        orphans.append(trial.number)
    return orphans


#: Seconds after which a running trial that never named its worker is taken as orphaned.
_UNNAMED_GRACE = 60.0


def _age(trial: Any) -> float:
    """Seconds since the trial started."""
    started = trial.datetime_start
    if started is None:
        return 0.0
    return float((datetime.now(started.tzinfo) - started).total_seconds())


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs; a zombie (killed, its parent not yet told) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True  # no /proc to ask: the signal's answer stands
    return state != "Z"


# --- the study folder's records ------------------------------------------------------------

#: One row per trial: number, state, value, seconds, the parameters, each epoch's accuracy.
TRIALS_CSV = "trials.csv"
#: The best trial's recipe, for ``fashionmlp train --recipe FILE``.
BEST_RECIPE = "best-recipe.toml"
#: The study's settings, its trials by state and its best trial.
SUMMARY = "study.json"
#: Optuna's plots of the study.
PLOTS = ("optimization_history.png", "param_importances.png")
#: The best recipe's run folder, with ``train_best``.
BEST_RUN = "best-run"
#: Where a journal's torn last record is set aside (see :func:`open_storage`).
TORN_RECORD = "study.log.torn"
#: Every file of a study folder (the default storage's journal included).
STUDY_FILES: tuple[str, ...] = (TRIALS_CSV, BEST_RECIPE, SUMMARY, BEST_RUN, *PLOTS)
STUDY_FILES += (JOURNAL_FILE, f"{JOURNAL_FILE}.lock", TORN_RECORD)


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
    try:
        return _write_records(study, folder, recipe, space, trials, storage)
    except (OSError, InvalidArgumentError) as exc:  # InvalidArgumentError: the recipe's save
        reason = os_error_fix(exc, "folder") if isinstance(exc, OSError) else str(exc)
        raise FashionMLPError(
            f"cannot write the records of the study in {folder}: {reason}; the study keeps "
            "its trials in its storage: run the same command to write them"
        ) from exc


def _write_records(
    study: Any, folder: Path, recipe: Recipe, space: SearchSpace, trials: int, storage: str | None
) -> list[Path]:
    everything, states, best = _outcome(study)
    written = [_write(folder / TRIALS_CSV, _table(everything, space))]
    if best is not None:
        best_recipe = override(recipe, best.params).replace(name=f"{recipe.name}-best")
        written.append(best_recipe.save(folder / BEST_RECIPE))
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
    written.append(_write(folder / SUMMARY, json.dumps(stamped(summary), indent=2) + "\n"))
    return written + _plots(study, folder, states.get("COMPLETE", 0))


def _table(trials: list[Any], space: SearchSpace) -> str:
    epochs = max((len(t.user_attrs.get("validation_accuracy", [])) for t in trials), default=0)
    # The space's fields, then those of earlier trials a continued study tuned under another
    # space: every trial keeps its own parameters.
    names = list(
        dict.fromkeys([p.field for p in space.params] + [n for t in trials for n in t.params])
    )
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


def _plots(study: Any, folder: Path, complete: int) -> list[Path]:
    """Optuna's optimization history and parameter importances (needs matplotlib, and two
    completed trials; the importances, parameters that varied)."""
    if complete < 2:
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
