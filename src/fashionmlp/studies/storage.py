"""Where a study keeps its trials: Optuna storages, by URL, and trials whose worker died.

The default is Optuna's journal storage on a file in the study folder, which several worker
processes on one machine share safely (SQLite, Optuna's docs warn, is not made for parallel
workers); ``--storage URL`` takes any Optuna database URL (PostgreSQL, MySQL, SQLite), so
workers on many machines join one study by name. Database storages have Optuna's heartbeat:
a trial whose worker stops beating is failed and run again. The journal has none, so a
trial whose worker on this machine is gone (``kill -9``) is failed and run again when a
worker next looks (:func:`retry_orphans`).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import time
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import InvalidArgumentError, MissingExtraError

__all__ = ["JOURNAL_FILE", "WORKER_ATTR", "describe_storage", "open_storage", "retry_orphans"]

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

        return optuna.storages.JournalStorage(JournalFileBackend(str(folder / JOURNAL_FILE)))
    scheme = url.partition(":")[0].partition("+")[0]
    if scheme not in _DATABASES or "://" not in url:
        raise InvalidArgumentError(
            f"storage {describe_storage(url)!r} is not a database URL Optuna takes; give one "
            "such as postgresql://user@host:5432/db or sqlite:///study.db, or leave it out "
            "for the study folder's own journal file"
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
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
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
