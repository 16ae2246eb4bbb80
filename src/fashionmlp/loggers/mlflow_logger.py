"""MLflow tracking of a run: settings, per-epoch figures, batch losses, the model, the status.

:class:`MLflowLogger` talks to any MLflow tracking URI through MLflow's own client
(``pip install 'fashionmlp[mlflow]'``): a local SQLite store by default, or a team's
server. A tracking server that stops answering never stops the training: one warning
line says what was not logged, and the run's own files are complete as ever.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..callbacks import Run, Study, StudyEnd, check_every, run_params
from ..devices import environment, is_main_process
from ..errors import FashionMLPWarning, InvalidArgumentError, MissingExtraError
from ..records import BatchEvent, EpochReport, FitResult

__all__ = ["DEFAULT_TRACKING_URI", "MLflowLogger", "TrackingWarning", "check_tracking_uri"]

#: The store runs go to without a tracking URI, a SQLite file in the current folder (MLflow's
#: own default since 3.7).
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
#: URI schemes of MLflow's tracking stores (``databricks`` and ``uc`` included).
_SCHEMES = ("file", "sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks")
#: MLflow's limit of metrics in one ``log_batch`` call.
_BATCH = 1000


class TrackingWarning(FashionMLPWarning):
    """A tracking server did not take what was logged; the run goes on without it."""


def check_tracking_uri(uri: str | None) -> str:
    """``uri``, or the default, checked for its form (not for the server's answer).

    Raises:
        InvalidArgumentError: Not a URI MLflow takes (a local path is taken as ``file:``).
    """
    uri = DEFAULT_TRACKING_URI if uri is None else uri
    scheme, sep, rest = uri.partition(":")
    if not sep or re.fullmatch(r"[A-Za-z]", scheme):  # a plain path (or C:\...)
        return uri
    base = scheme.partition("+")[0]
    if base not in _SCHEMES or not rest.startswith("//") or (base == "sqlite" and "///" not in uri):
        raise InvalidArgumentError(
            f"{uri!r} is not an MLflow tracking URI; give one such as sqlite:///mlflow.db, "
            "http://host:5000 or file:./mlruns (or none, for sqlite:///mlflow.db here)"
        )
    return uri


class MLflowLogger:
    """Log a run to MLflow: its settings at the start, every epoch's figures, the batch loss
    every ``every`` steps, the model folder and its final status at the end.

    At the run's start it makes (or finds) the experiment and starts a run with the recipe
    and run settings as parameters (``lr``, ``model.hidden_features``, ``seed``, ...) and
    tags (recipe name, seed, precision, device, versions, processor). Each epoch logs the
    training loss, the evaluation figures (``<split>_accuracy``, ``<split>_loss``,
    ``<split>_macro_f1``, ``<split>_top5_accuracy``, ``<split>_nll``, ``<split>_ece``, ...)
    and the learning rate at the run's global step; the batch loss is read only on the
    steps it logs. At the end (``log_model``) the model folder goes up as artifacts under
    ``model/`` (``config.json``, ``model.safetensors``, the card ``README.md``: safetensors,
    never a pickled module), and the run ends ``FINISHED``, or ``KILLED`` when stopped,
    ``FAILED`` when it raised.

    Its state (the MLflow run's id and what it logged) is in the run's checkpoints, so a
    resumed run continues the same MLflow run, logging no epoch twice. Under ``torchrun``
    only the first process logs.

    Args:
        tracking_uri: Any MLflow tracking URI; ``None``: ``sqlite:///mlflow.db`` in the
            current folder.
        experiment: The experiment's name (made if needed).
        run_name: The MLflow run's name (MLflow draws one by default).
        every: Steps between two batch-loss points (0 for none).
        parent_run_id: Log as a child of this run (a study's trial or seed).
        log_model: Log the model folder at the end (``fashionmlp train`` logs its run
            folder's instead, with :meth:`log_model_folder`).

    Raises:
        InvalidArgumentError: ``tracking_uri`` is malformed (found before anything runs).
        MissingExtraError: MLflow is not installed.

    Example:
        .. code-block:: python

            from fashionmlp.loggers import MLflowLogger

            fit(get_recipe("fast"), callbacks=[MLflowLogger(experiment="fashion")])
            # then: mlflow ui --backend-store-uri sqlite:///mlflow.db
    """

    #: How the command line checks a URI for this tracker before anything runs.
    check_uri = staticmethod(check_tracking_uri)

    def __init__(
        self,
        tracking_uri: str | None = None,
        *,
        experiment: str = "fashionmlp",
        run_name: str | None = None,
        every: int = 50,
        parent_run_id: str | None = None,
        log_model: bool = True,
    ) -> None:
        self.tracking_uri = check_tracking_uri(tracking_uri)
        self.every = check_every(every)
        self.experiment = experiment
        self.run_name = run_name
        self.parent_run_id = parent_run_id
        self.log_model = log_model
        #: The MLflow run's id, once started (it is in the checkpoint's state).
        self.run_id: str | None = None
        self.logged_step = -1  # the last batch step logged
        self.logged_epoch = 0  # the last epoch logged
        self._client = _client(self.tracking_uri) if is_main_process() else None
        self._pending: list[Any] = []

    # --- the hooks ----------------------------------------------------------------------

    def on_fit_start(self, run: Run) -> None:
        """Start the MLflow run (or take up the resumed one) and log the settings."""
        if self._client is None:
            return
        if self.run_id is not None:  # resumed: the same MLflow run goes on
            self.start_run()
            return
        config = run.config
        tags = {**_tags(run), "fashionmlp.evaluated_on": config.evaluated_on}
        self.start_run(run_params(config), tags)

    def on_batch_end(self, event: BatchEvent) -> None:
        """Note the batch's loss on steps ``0, every, 2 * every, ...``."""
        if self._client is None or not self.every or event.step % self.every:
            return
        if event.step > self.logged_step:
            self._note("train_batch_loss", event.loss, event.step)
            self.logged_step = event.step

    __call__ = on_batch_end

    def on_epoch_end(self, report: EpochReport) -> None:
        """Log the epoch's figures (with the batch losses since the last epoch)."""
        if self._client is None or report.epoch <= self.logged_epoch:
            return
        figures = {"train_loss": report.train.loss, "lr": report.lr, "epoch": report.epoch}
        figures |= {f"{report.evaluated_on}_{k}": v for k, v in report.eval.scalars().items()}
        for key, value in figures.items():
            self._note(key, value, report.step)
        self._flush("epoch " + str(report.epoch))
        self.logged_epoch = report.epoch

    def on_fit_end(self, result: FitResult) -> None:
        """Log what is left, the model folder (``log_model``), and end the run: KILLED when
        a stop cut an epoch short, FINISHED otherwise."""
        if self._client is None or self.run_id is None:
            return
        self._flush("the last batches")
        if result.model_epoch is not None:  # the model is that epoch's, not the last's
            self.set_tags({"fashionmlp.model_epoch": str(result.model_epoch)})
        if self.log_model and result.stopped_at is None:
            with tempfile.TemporaryDirectory() as folder:
                if self._save(result, Path(folder)):
                    self.log_model_folder(folder)
        self._end("KILLED" if result.stopped_at is not None else "FINISHED")

    def on_exception(self, error: BaseException) -> None:
        """End the run ``FAILED`` (``KILLED`` for Ctrl-C), keeping what was logged."""
        if self._client is None or self.run_id is None:
            return
        self._flush("the last batches")
        self._end("KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED")

    def state_dict(self) -> dict[str, Any]:
        """The MLflow run (its id, store and experiment), the batch-loss spacing, and how far
        it was logged, for the checkpoint."""
        keys = ("run_id", "tracking_uri", "experiment", "every", "logged_step", "logged_epoch")
        return {key: getattr(self, key) for key in keys}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the MLflow run of :meth:`state_dict`, in the store it is in."""
        self.run_id, self.experiment = state["run_id"], state["experiment"]
        self.every = check_every(state["every"])  # the same points as before the stop
        self.logged_step, self.logged_epoch = int(state["logged_step"]), int(state["logged_epoch"])
        if state["tracking_uri"] != self.tracking_uri:
            self.tracking_uri = check_tracking_uri(state["tracking_uri"])
            if self._client is not None:
                self._client = _client(self.tracking_uri)

    def on_model_saved(self, folder: Path) -> None:
        """Log the run's model folder (:meth:`log_model_folder`)."""
        self.log_model_folder(folder)

    def on_tags(self, tags: Mapping[str, str]) -> None:
        """Tag the run with what whoever ran it says of it (a trial's Optuna state)."""
        self.set_tags(tags)

    # --- a study: one parent run, a child run per seed or trial ----------------------------

    def on_study_start(self, study: Study) -> None:
        """Start the study's run (named after the study unless this logger has a name), or
        take up the one its state names (a continued study's), with the study's settings as
        parameters."""
        self.run_name = self.run_name or study.name
        tags = {"fashionmlp.study": study.kind, "fashionmlp.folder": str(study.folder)}
        self.start_run(study.params, tags)

    def child(self, name: str) -> MLflowLogger:
        """A logger of one run of the study, a child of its run (the model logged by
        ``on_model_saved`` when the run has a folder)."""
        return MLflowLogger(
            self.tracking_uri,
            experiment=self.experiment,
            run_name=name,
            every=self.every,
            parent_run_id=self.run_id,
            log_model=False,
        )

    def on_study_end(self, end: StudyEnd) -> None:
        """Log the study's figures and end its run: FINISHED, or KILLED when stopped."""
        self.log_figures(end.figures)
        self.end_run("FINISHED" if end.finished else "KILLED")

    def __getstate__(self) -> dict[str, Any]:
        # Sent to a sweep's worker processes: the client is made again there.
        return {**self.__dict__, "_client": None, "_pending": []}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if is_main_process():
            self._client = _client(self.tracking_uri)

    # --- the rest -----------------------------------------------------------------------

    def log_model_folder(self, folder: str | os.PathLike[str]) -> None:
        """Log a model folder's ``config.json``, ``model.safetensors`` and ``README.md`` (those
        there) as the run's artifacts under ``model/``."""
        files = [Path(folder) / name for name in ("config.json", "model.safetensors", "README.md")]

        def upload(client: Any) -> None:
            for path in files:
                if path.is_file():
                    client.log_artifact(self.run_id, str(path), "model")

        if self.run_id is not None:
            self._call("the model", upload)

    def log_figures(self, figures: Mapping[str, float]) -> None:
        """Log figures of the whole run (a study's mean and interval, say) at step 0."""
        for key, value in figures.items():
            self._note(key, value, 0)
        self._flush("the summary")

    def start_run(
        self, params: Mapping[str, Any] | None = None, tags: Mapping[str, str] | None = None
    ) -> str | None:
        """Start an MLflow run outside :func:`~fashionmlp.fit` (a study's parent run, whose
        trials or seeds are children: ``parent_run_id=logger.run_id``), or take up again
        the one :attr:`run_id` names; return its id (``None`` if MLflow did not answer)."""

        def start(client: Any) -> None:
            if self.run_id is not None:
                client.update_run(self.run_id, status="RUNNING")
            else:
                self.run_id = self._create(client, params or {}, dict(tags or {}))

        self._call("the run's start", start)
        return self.run_id

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Tag the run (a trial's Optuna state, say)."""
        if self.run_id is not None:
            self._call(
                "the tags",
                lambda client: [client.set_tag(self.run_id, k, v) for k, v in tags.items()],
            )

    def end_run(self, status: str = "FINISHED") -> None:
        """End a run :meth:`start_run` began: ``FINISHED``, ``KILLED`` or ``FAILED``."""
        self._flush("the last figures")
        if self.run_id is not None:
            self._end(status)

    def _create(self, client: Any, params: Mapping[str, Any], tags: dict[str, str]) -> str:
        """A new MLflow run in the experiment (made if needed), with its parameters."""
        from mlflow.entities import Param

        found = client.get_experiment_by_name(self.experiment)
        experiment_id = found.experiment_id if found else client.create_experiment(self.experiment)
        if self.parent_run_id is not None:
            tags["mlflow.parentRunId"] = self.parent_run_id
        started = client.create_run(experiment_id, run_name=self.run_name, tags=tags)
        listed = [Param(key, str(value)) for key, value in params.items()]
        for first in range(0, len(listed), 100):  # MLflow's limit of parameters a call
            client.log_batch(started.info.run_id, params=listed[first : first + 100])
        return str(started.info.run_id)

    def _save(self, result: FitResult, folder: Path) -> bool:
        save_pretrained = getattr(result.model, "save_pretrained", None)
        if not callable(save_pretrained):
            return False
        facts: dict[str, Any] = {}
        if result.history:  # the figures of the model logged: the kept epoch's, if any
            facts = {"evaluation": result.final, "split": result.history[-1].evaluated_on}
        save_pretrained(folder, **facts)
        return True

    def _note(self, key: str, value: float, step: int) -> None:
        from mlflow.entities import Metric

        self._pending.append(Metric(key, float(value), int(time.time() * 1000), step))

    def _flush(self, what: str) -> None:
        pending, self._pending = self._pending, []

        def send(client: Any) -> None:
            for first in range(0, len(pending), _BATCH):
                client.log_batch(self.run_id, metrics=pending[first : first + _BATCH])

        if self.run_id is not None and pending:
            self._call(what, send)

    def _end(self, status: str) -> None:
        self._call(
            f"the run's status ({status})",
            lambda client: client.set_terminated(self.run_id, status=status),
        )

    def _call(self, what: str, action: Callable[[Any], object]) -> None:
        """``action(client)``; a tracking store that fails it is one warning, once, and the
        run goes on without MLflow (later calls are skipped: a dead server costs no more
        time)."""
        if self._client is None:
            return
        try:
            action(self._client)
        except Exception as exc:  # MLflow's and the network's errors are many types
            reason = " ".join(str(exc).split())[:200]
            warnings.warn(
                f"MLflow at {self.tracking_uri} did not take {what} ({reason}); the run goes "
                "on, its own files are complete, and nothing more is sent to MLflow",
                TrackingWarning,
                stacklevel=2,
            )
            self._client = None


def _client(uri: str) -> Any:
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise MissingExtraError(
            "MLflow logging needs MLflow: pip install 'fashionmlp[mlflow]'"
        ) from None
    # A server that does not answer should cost seconds, not MLflow's default minutes of
    # retries; a value the user set is kept.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    return MlflowClient(tracking_uri=uri)


def _tags(run: Run) -> dict[str, str]:
    config = run.config
    facts = environment(run.device, "")
    precision = run.precision
    return {
        "fashionmlp.recipe": config.recipe.name,
        "fashionmlp.seed": str(config.seed),
        "fashionmlp.precision": precision,
        **{f"fashionmlp.{key}": str(facts[key]) for key in ("device", "processor", "threads")},
        **{
            f"fashionmlp.version.{key}": str(facts[key])
            for key in ("fashionmlp", "torch", "python")
        },
        "fashionmlp.git_commit": str(facts["git_commit"]),
        "mlflow.source.name": " ".join(sys.argv[:1]) or "python",
    }
