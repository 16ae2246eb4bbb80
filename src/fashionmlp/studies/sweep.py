"""Hyperparameter sweeps on Optuna: trials of a recipe judged on a validation split, the
unpromising pruned, the study kept in a storage that many workers share.

:func:`sweep` is the whole of ``fashionmlp sweep``: it opens (or continues) the study,
runs its trials in one process or in ``workers`` processes, and writes the study folder's
records (:func:`~fashionmlp.studies.report.write_study_files`). Every trial trains with
:func:`~fashionmlp.fit` on the training split less ``validation_size`` held-out images and
reports each epoch's validation accuracy to Optuna; the test set is never read. Needs the
``sweep`` extra (``pip install 'fashionmlp[sweep]'``).
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import signal
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..callbacks import Callback, StopOnSignal, StopTraining
from ..config import Recipe, RunConfig, differences, flat, override
from ..data import Splits, load_dataset
from ..errors import FashionMLPError, InvalidArgumentError
from ..records import EpochReport
from ..train import fit
from .report import write_study_files
from .space import DEFAULT_SPACE, SearchSpace
from .storage import WORKER_ATTR, open_storage, optuna_module, retry_orphans, worker_name

__all__ = ["Pruner", "SweepResult", "sweep"]

#: How a sweep stops unpromising trials: the median rule, Hyperband, or not at all.
Pruner = Literal["median", "hyperband", "none"]
#: The states of a finished trial, which count towards the sweep's number of trials.
_FINISHED = ("COMPLETE", "PRUNED")
#: The study's user attribute naming its MLflow run.
_MLFLOW_ATTR = "mlflow_run_id"


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
    mlflow: str | None = None,
    mlflow_experiment: str = "fashionmlp",
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
            records of :func:`~fashionmlp.studies.report.write_study_files`.
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
        seed: Every trial's training seed.
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
        mlflow: An MLflow tracking URI to log the study to: one parent run for the study
            (the same one when the study continues), each trial a child run with its
            parameters, per-epoch validation figures and Optuna state (needs the
            ``mlflow`` extra).
        mlflow_experiment: The MLflow experiment.

    Raises:
        InvalidArgumentError: A setting does not fit, the storage cannot be opened, or the
            study exists with another recipe or space.
        MissingExtraError: Optuna is not installed.
        KeyboardInterrupt: Ctrl-C or SIGTERM stopped the sweep (the trial it stopped is
            failed; the study continues when the sweep is run again).
    """
    folder = Path(out)
    _check_arguments(recipe, space, trials, workers, validation_size, heartbeat)
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
        mlflow=mlflow,
        mlflow_experiment=mlflow_experiment,
    )
    try:
        created = _open_study(spec, continue_study=continue_study)
    except BaseException:
        if made and not any(folder.iterdir()):  # a failed start leaves nothing behind
            folder.rmdir()
        raise
    parent = _parent_run(spec, created) if mlflow is not None else None
    if parent is not None:
        spec = dataclasses.replace(spec, mlflow_parent=parent.run_id)
    statuses: tuple[int, ...] = ()
    try:
        if workers == 1:
            if _work(spec, on_trial) != 0:
                raise KeyboardInterrupt  # a signal stopped the trial, and the sweep
        else:
            statuses = _run_workers(spec, workers, on_trial)
    finally:  # stopped too: the records show the study as far as it went
        write_study_files(created, folder, recipe, space, trials, storage)
    result = _result(optuna, created, recipe, folder, statuses)
    if parent is not None:
        if result.best_value is not None:
            parent.log_figures({"best_validation_accuracy": result.best_value})
        parent.end_run()
    return result


def _parent_run(spec: _Spec, study: Any) -> Any:
    """The study's MLflow run: made once, and taken up again when the study continues."""
    from ..loggers import MLflowLogger

    parent = MLflowLogger(
        spec.mlflow, experiment=spec.mlflow_experiment, run_name=f"study {spec.study}"
    )
    parent.run_id = study.user_attrs.get(_MLFLOW_ATTR)
    tuned = SearchSpace.from_dict(spec.space).params
    params = {f"space.{param.field}": json.dumps(param.to_dict()) for param in tuned}
    params |= flat(spec.recipe)
    tags = {"fashionmlp.study": "sweep", "fashionmlp.folder": spec.folder}
    if parent.start_run(params, tags) is not None and _MLFLOW_ATTR not in study.user_attrs:
        study.set_user_attr(_MLFLOW_ATTR, parent.run_id)
    return parent


def _check_arguments(
    recipe: Recipe, space: SearchSpace, trials: int, workers: int, validation: int, heartbeat: int
) -> None:
    for name, value in (("trials", trials), ("workers", workers), ("heartbeat", heartbeat)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidArgumentError(
                f"{name} must be a whole number of at least 1, got {value!r}"
            )
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
    mlflow: str | None = None
    mlflow_experiment: str = "fashionmlp"
    mlflow_parent: str | None = None

    def what(self) -> dict[str, Any]:
        """What makes a study this one: a rerun must match it to continue."""
        keys = ("recipe", "space", "seed", "limit", "validation_size")
        return {key: getattr(self, key) for key in keys}


def _load(spec: _Spec) -> Any:
    """The study, from its storage."""
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


def _work(spec: _Spec, on_trial: Callable[[Any], None] | None) -> int:
    """A worker: run trials until the study has its total; return the exit status."""
    optuna = optuna_module()
    if spec.threads:
        import torch

        torch.set_num_threads(spec.threads)
    study = _load(spec)
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
        tracker = self._tracker(trial)
        callbacks = [report, self.stop, *([tracker] if tracker is not None else [])]
        started = time.perf_counter()
        try:
            result = fit(config, data=self.data, device=spec.device, callbacks=callbacks)
        except FashionMLPError as exc:  # a diverging loss, say: this trial fails, not the sweep
            trial.set_user_attr("error", " ".join(str(exc).split()))
            raise
        trial.set_user_attr("validation_accuracy", report.accuracies)
        trial.set_user_attr("seconds", time.perf_counter() - started)
        if result.stopped_at is not None:  # a signal: the sweep stops, the trial fails
            raise KeyboardInterrupt
        if tracker is not None:
            tracker.set_tags({"optuna.state": "PRUNED" if report.pruned else "COMPLETE"})
        if report.pruned:
            raise optuna.TrialPruned(f"pruned after epoch {len(report.accuracies)}")
        return result.final.accuracy

    def _tracker(self, trial: Any) -> Any:
        """The trial's MLflow child run, when the sweep logs to MLflow."""
        if self.spec.mlflow is None:
            return None
        from ..loggers import MLflowLogger

        return MLflowLogger(
            self.spec.mlflow,
            experiment=self.spec.mlflow_experiment,
            run_name=f"trial {trial.number}",
            every=0,
            parent_run_id=self.spec.mlflow_parent,
            log_model=False,
        )


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
    """Run ``workers`` worker processes to the end; Ctrl-C is passed on to each."""
    context = multiprocessing.get_context("spawn")  # no torch state forked into them
    processes = [
        context.Process(target=_worker_main, args=(spec, on_trial)) for _ in range(workers)
    ]
    for process in processes:
        process.start()
    try:
        for process in processes:
            process.join()
    except KeyboardInterrupt:
        for process in processes:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signal.SIGINT)
        for process in processes:
            process.join()
        raise
    return tuple(_status(process.exitcode) for process in processes)


def _status(exitcode: int | None) -> int:
    """A process's exit status as a shell says it: 137 for one killed by signal 9."""
    if exitcode is None:
        return 1
    return 128 - exitcode if exitcode < 0 else exitcode


def _worker_main(spec: _Spec, on_trial: Callable[[Any], None] | None) -> None:
    """A spawned worker process: :func:`_work`, its status as the process's."""
    raise SystemExit(_work(spec, on_trial))


def _result(
    optuna: Any, study: Any, recipe: Recipe, folder: Path, statuses: tuple[int, ...]
) -> SweepResult:
    trials = study.get_trials(deepcopy=False)
    states: dict[str, int] = {}
    for trial in trials:
        states[trial.state.name] = states.get(trial.state.name, 0) + 1
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = max(complete, key=lambda t: t.value) if complete else None
    return SweepResult(
        study=study.study_name,
        states=states,
        best_value=best.value if best else None,
        best_recipe=override(recipe, best.params) if best else None,
        folder=folder,
        workers=statuses,
    )
