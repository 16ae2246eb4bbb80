"""Callbacks: the hook protocol, the one dispatcher that calls hooks, and the callbacks that
ship with the library.

A *callback* is any object that defines some of these methods; each is called at its
moment, for every callback in the order given, by :class:`Hooks`:

``on_fit_start(run)``
    :func:`~fashionmlp.fit` is about to train; ``run`` is the run as it starts (a
    :class:`Run`: its settings in ``run.config``, its model, device and precision, the
    epochs already done when resuming). Called after a resumed callback got its state back.
``on_batch_end(event)``
    A batch was trained: a :class:`~fashionmlp.BatchEvent`.
``on_epoch_end(report)``
    :func:`~fashionmlp.fit` trained and evaluated an epoch: an
    :class:`~fashionmlp.EpochReport`, before the epoch's checkpoint is written.
``on_fit_end(result)``
    :func:`~fashionmlp.fit` returns this :class:`~fashionmlp.FitResult` (finished, or
    stopped by a callback).
``on_exception(error)``
    :func:`~fashionmlp.fit` is leaving with ``error`` (a failure, or Ctrl-C twice).
``on_model_saved(folder)``
    The run's model folder (``config.json``, ``model.safetensors``, ``README.md``) was
    written, by :func:`~fashionmlp.runs.train_run`: a tracker keeps it as artifacts.
``on_tags(tags)``
    Facts about the run from whoever ran it, in its words (a study's trial:
    ``{"optuna.state": "PRUNED"}``): a tracker tags its run with them.
``state_dict()`` / ``load_state_dict(state)``
    What the callback needs to continue a resumed run (a logger's run id, a counter): saved
    in every checkpoint, given back before ``on_fit_start`` when the run resumes. Tensors
    and plain values (numbers, strings, lists and dicts of them) only.

A study of many runs (:mod:`fashionmlp.studies`) takes loggers too and calls three hooks of
its own, so that a tracker with parent and child runs logs the study as one run with a
child per seed or trial:

``on_study_start(study)``
    A study begins or continues: a :class:`Study` (its kind, name, folder, settings). A
    study that keeps its loggers' states (a sweep's storage does) gives each its
    ``load_state_dict`` first, so that a continued study continues its tracker's run.
``child(name)``
    The callback that logs one run of the study (``"seed-3"``, ``"trial 7"``) as a child of
    the study's; given to that run's :func:`~fashionmlp.fit`. ``None`` for none.
``on_study_end(end)``
    The study ends: a :class:`StudyEnd` (its figures, and whether it finished).

A plain function is a batch callback: it is called as ``on_batch_end``. Any hook may raise
:class:`StopTraining` to end the run cleanly (see there). Nothing else is needed: no base
class, no registration (Lightning Fabric's ``Fabric.call`` and minGPT's callbacks by event
name are the models); :class:`Callback` is a base class with every hook as a no-op, for
those who like to inherit their signatures.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, TextIO, TypeVar

from .config import RunConfig, check_positive, flat
from .errors import InvalidArgumentError
from .records import BatchEvent, EpochReport, EpochStats, FitResult, StopAt

if TYPE_CHECKING:  # the protocol and the callbacks need no torch to be imported
    import torch
    from torch import nn

__all__ = [
    "HOOKS",
    "STUDY_HOOKS",
    "Callback",
    "EarlyStopping",
    "Hooks",
    "KeepBest",
    "LossHistory",
    "PrintLoss",
    "ProgressBar",
    "Run",
    "StopOnSignal",
    "StopTraining",
    "Study",
    "StudyEnd",
    "default_hook",
    "signals_handled",
    "state_key",
]

#: The hooks of a run a callback may define, in the order of a run.
HOOKS: Final = (
    "on_fit_start",
    "on_batch_end",
    "on_epoch_end",
    "on_fit_end",
    "on_exception",
    "on_model_saved",
    "on_tags",
)
#: The hooks of a study a logger may define (with ``child``).
STUDY_HOOKS: Final = ("on_study_start", "on_study_end")

_Function = TypeVar("_Function", bound=Callable[..., Any])
_DEFAULT = "_fashionmlp_default_hook"


class Run(Protocol):
    """What ``on_fit_start`` shows a callback: the run as it starts (a
    :class:`~fashionmlp.train.TrainState`). Read it; change nothing."""

    @property
    def config(self) -> RunConfig:
        """The run's settings."""

    @property
    def model(self) -> nn.Module:
        """The model trained."""

    @property
    def device(self) -> torch.device:
        """Where it trains."""

    @property
    def precision(self) -> Literal["float32", "bfloat16"]:
        """The precision of its training passes."""

    @property
    def history(self) -> list[EpochReport]:
        """The reports of the epochs done (of the earlier part, when resuming)."""

    @property
    def partial(self) -> EpochStats | None:
        """The progress inside the current epoch, when resuming one that stopped part-way."""

    @property
    def steps_done(self) -> int:
        """The optimizer steps of the finished epochs."""


@dataclass(frozen=True)
class Study:
    """A study as its loggers see it begin (``on_study_start``)."""

    #: ``"seeds"`` or ``"sweep"``.
    kind: str
    #: Its name (a sweep's study name; a seed study's recipe and seeds).
    name: str
    #: Its folder.
    folder: Path
    #: Its settings, flat (``lr``, ``model.dropout``, ``seeds``, ``space.lr``, ...).
    params: dict[str, Any]


@dataclass(frozen=True)
class StudyEnd:
    """How a study ended, as its loggers see it (``on_study_end``)."""

    #: Its figures (``accuracy_mean``, ``best_validation_accuracy``, ...).
    figures: dict[str, float] = field(default_factory=dict)
    #: Whether it ran to its end (or was stopped by a signal, to be continued).
    finished: bool = True


def default_hook(function: _Function) -> _Function:
    """Mark a base class's no-op hook: :class:`Hooks` does not call it, so a hook a
    callback leaves as inherited costs nothing, not even per batch."""
    setattr(function, _DEFAULT, True)
    return function


class StopTraining(Exception):
    """Raise from a callback to stop training cleanly, at a point it can be resumed from.

    Args:
        reason: Said in the exception's message.
        at: ``"batch"`` (the default) stops right after the current batch's optimizer step:
            :func:`~fashionmlp.train_epoch` returns early with ``stop="batch"`` in its
            :class:`~fashionmlp.EpochStats`, and :func:`~fashionmlp.fit` saves that very
            point, so resuming finishes the epoch from the next batch. ``"epoch"`` lets the
            epoch run to its end (in :func:`~fashionmlp.fit`: its evaluation and checkpoint
            too), then stops. Raised from ``on_epoch_end``, both mean "after this epoch",
            which is where the run already is.

    The callbacks after the one that raised still see the batch; the stop takes effect
    once all of them have run.

    Example:
        >>> def stop_when_low(event):
        ...     if event.batch % 100 == 0 and event.loss < 0.3:
        ...         raise StopTraining("loss below 0.3", at="epoch")
    """

    def __init__(self, reason: str = "", *, at: StopAt = "batch") -> None:
        if at not in ("batch", "epoch"):
            raise InvalidArgumentError(f"StopTraining at must be 'batch' or 'epoch', got {at!r}")
        super().__init__(reason or f"training stopped (at the end of this {at})")
        self.at: StopAt = at


def state_key(callback: object) -> str:
    """The name a callback's state is saved under: its ``state_key`` attribute if it has one
    (as Lightning's callbacks do), else its class's qualified name."""
    key = getattr(callback, "state_key", None)
    return key if isinstance(key, str) else type(callback).__qualname__


class Hooks:
    """The callbacks of one run, called by hook name: ``hooks.call("on_epoch_end", report)``.

    Each callback's hooks are looked up once, here, so calling them per batch costs a loop
    over the ones that have that hook.

    Raises:
        InvalidArgumentError: A callback defines no hook and is not callable.

    Example:
        >>> from fashionmlp.callbacks import Hooks
        >>> seen = []
        >>> hooks = Hooks([seen.append])  # a plain function: a batch callback
        >>> hooks.call("on_batch_end", "an event")
        >>> seen
        ['an event']
    """

    def __init__(self, callbacks: Iterable[object] = ()) -> None:
        self.callbacks = list(callbacks)
        names = HOOKS + STUDY_HOOKS
        self._table: dict[str, list[Callable[[Any], object]]] = {name: [] for name in names}
        for callback in self.callbacks:
            found = {name: getattr(callback, name, None) for name in names}
            if not any(map(callable, found.values())) and not hasattr(callback, "state_dict"):
                if not callable(callback):
                    raise InvalidArgumentError(
                        f"callback {callback!r} is not callable and has none of the hooks "
                        f"{', '.join(HOOKS)} (see fashionmlp.callbacks)"
                    )
                found["on_batch_end"] = callback  # a plain function: a batch callback
            for name, hook in found.items():
                if callable(hook) and not getattr(hook, _DEFAULT, False):
                    self._table[name].append(hook)
        self._keys = _unique_keys(self.callbacks)

    def __bool__(self) -> bool:
        return bool(self.callbacks)

    def wants(self, hook: str) -> bool:
        """Whether any callback defines ``hook``."""
        return bool(self._table[hook])

    def call(self, hook: str, argument: object) -> StopAt | None:
        """Call ``hook`` of every callback that has it, in order; return the stop asked for.

        A :class:`StopTraining` from one callback does not keep the others from the
        argument; the stop returned is ``"batch"`` if any asked for that, else ``"epoch"``
        if any asked, else ``None``.
        """
        stop: StopAt | None = None
        for function in self._table[hook]:
            try:
                function(argument)
            except StopTraining as request:
                stop = "batch" if "batch" in (stop, request.at) else "epoch"
        return stop

    def children(self, name: str) -> list[object]:
        """The callbacks that log the study's run ``name`` as children of these loggers'
        (each one's ``child(name)`` that is not ``None``)."""
        made = [getattr(callback, "child", None) for callback in self.callbacks]
        children = [child(name) for child in made if callable(child)]
        return [child for child in children if child is not None]

    def state_dict(self) -> dict[str, Any]:
        """Every stateful callback's ``state_dict()``, by its :func:`state_key`."""
        return {
            key: callback.state_dict()  # type: ignore[attr-defined]
            for key, callback in zip(self._keys, self.callbacks)
            if callable(getattr(callback, "state_dict", None))
        }

    def load_state_dict(self, states: dict[str, Any]) -> None:
        """Give each callback its saved state; one that saved none starts afresh.

        States of callbacks this run does not have are left alone (a run resumed without
        its TensorBoard logger, say).
        """
        for key, callback in zip(self._keys, self.callbacks):
            load = getattr(callback, "load_state_dict", None)
            if key in states and callable(load):
                load(states[key])


def _unique_keys(callbacks: list[object]) -> list[str]:
    """Each callback's :func:`state_key`, a second one of the same key numbered ``#2``."""
    seen: dict[str, int] = {}
    keys = []
    for callback in callbacks:
        key = state_key(callback)
        seen[key] = seen.get(key, 0) + 1
        keys.append(key if seen[key] == 1 else f"{key}#{seen[key]}")
    return keys


# --- the shipped callbacks ----------------------------------------------------------------


class Callback:
    """A base class with every hook of :mod:`fashionmlp.callbacks` as a no-op: override those
    you need. The hooks left as they are cost nothing (they are not called).

    Example:
        >>> class CountEpochs(Callback):
        ...     def __init__(self):
        ...         self.epochs = 0
        ...     def on_epoch_end(self, report):
        ...         self.epochs += 1
        ...     def state_dict(self):
        ...         return {"epochs": self.epochs}
        ...     def load_state_dict(self, state):
        ...         self.epochs = state["epochs"]
    """

    @default_hook
    def on_fit_start(self, run: Run) -> None:
        """:func:`~fashionmlp.fit` is about to train ``run`` (its settings: ``run.config``)."""

    @default_hook
    def on_batch_end(self, event: BatchEvent) -> None:
        """A batch was trained."""

    @default_hook
    def on_epoch_end(self, report: EpochReport) -> None:
        """An epoch was trained and evaluated (before its checkpoint is written)."""

    @default_hook
    def on_fit_end(self, result: FitResult) -> None:
        """:func:`~fashionmlp.fit` returns ``result``."""

    @default_hook
    def on_exception(self, error: BaseException) -> None:
        """:func:`~fashionmlp.fit` is leaving with ``error``."""

    @default_hook
    def on_model_saved(self, folder: Path) -> None:
        """The run's model folder was written to ``folder``."""

    @default_hook
    def on_tags(self, tags: Mapping[str, str]) -> None:
        """Facts about the run from whoever ran it."""


class PrintLoss(Callback):
    """Print the seed's progress line every ``every`` batches.

    The line is exactly the seed's ``Loss: {loss:.4f} [{current}/{size}]`` with
    ``current = batch * len(x)`` and ``size = len(dataloader.dataset)`` (``?`` for a loader
    whose dataset has no length). Only the batches it prints read the loss from the device.

    Example:
        >>> import torch
        >>> from fashionmlp import BatchEvent, PrintLoss
        >>> event = BatchEvent(epoch=None, batch=0, num_batches=938, batch_size=64,
        ...                    samples_seen=64, dataset_size=60000,
        ...                    loss_tensor=torch.tensor(2.3051))
        >>> PrintLoss(every=100)(event)
        Loss: 2.3051 [0/60000]
    """

    def __init__(self, every: int = 100, *, file: TextIO | None = None) -> None:
        if every < 1:
            raise InvalidArgumentError(f"every must be at least 1, got {every}")
        self.every = every
        self.file = file

    def on_batch_end(self, event: BatchEvent) -> None:
        """Print the line on batches ``0, every, 2 * every, ...``."""
        if event.batch % self.every == 0:
            size = "?" if event.dataset_size is None else event.dataset_size
            print(f"Loss: {event.loss:.4f} [{event.current}/{size}]", file=self.file or sys.stdout)

    __call__ = on_batch_end


class LossHistory(Callback):
    """Collect ``(step, loss)`` pairs, one every ``every`` steps, across epochs.

    ``step`` is the event's global step (:attr:`BatchEvent.step`), so a history kept across
    a resumed run lines up with the unbroken run's; given to :func:`~fashionmlp.fit`, its
    pairs are saved in the run's checkpoints, and a resumed run's history starts with the
    earlier part's. Losses are kept as device tensors and read together when first asked
    for, so collecting them costs no per-batch sync.

    Example:
        >>> history = LossHistory()
        >>> # train_epoch(train, model, loss_fn, optimizer, callbacks=[history])
        >>> history.pairs
        []
    """

    def __init__(self, every: int = 1) -> None:
        if every < 1:
            raise InvalidArgumentError(f"every must be at least 1, got {every}")
        self.every = every
        self._steps: list[int] = []
        self._pending: list[torch.Tensor] = []
        self._losses: list[float] = []

    def on_batch_end(self, event: BatchEvent) -> None:
        """Record the batch's loss tensor if this step is one to keep."""
        if event.step % self.every == 0:
            self._steps.append(event.step)
            self._pending.append(event.loss_tensor)

    __call__ = on_batch_end

    @property
    def steps(self) -> list[int]:
        """The recorded steps."""
        return list(self._steps)

    @property
    def losses(self) -> list[float]:
        """The recorded losses as floats (one device read for all new ones)."""
        if self._pending:
            import torch

            self._losses.extend(torch.stack(self._pending).float().cpu().tolist())
            self._pending.clear()
        return list(self._losses)

    @property
    def pairs(self) -> list[tuple[int, float]]:
        """``(step, loss)`` pairs in the order they were recorded."""
        return list(zip(self.steps, self.losses))

    def __len__(self) -> int:
        return len(self._steps)

    def state_dict(self) -> dict[str, Any]:
        """The pairs so far, for a checkpoint (one device read for the new losses)."""
        return {"every": self.every, "steps": self.steps, "losses": self.losses}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from the pairs :meth:`state_dict` saved."""
        self.every = int(state["every"])
        self._steps = [int(step) for step in state["steps"]]
        self._losses = [float(loss) for loss in state["losses"]]
        self._pending.clear()


class ProgressBar(Callback):
    """A tqdm progress bar over each epoch's batches, with the loss every ``every`` batches.

    Needs the ``tqdm`` package (``pip install fashionmlp[progress]``); it is imported when
    the bar is made. The bar is written to ``file`` (default: standard error); any other
    keyword is passed to ``tqdm`` (``mininterval=1.0``, ``ncols=80``, ...).

    Raises:
        ImportError: tqdm is not installed.
    """

    def __init__(self, every: int = 20, *, file: TextIO | None = None, **tqdm_options: Any) -> None:
        from tqdm.auto import tqdm

        if every < 1:
            raise InvalidArgumentError(f"every must be at least 1, got {every}")
        self.every = every
        self.file = file
        self._tqdm = tqdm
        self._options = {"unit": "batch", "leave": False, **tqdm_options}
        self._bar: Any = None

    def on_batch_end(self, event: BatchEvent) -> None:
        """Advance the bar; open it on an epoch's first batch and close it on its last."""
        if event.batch == 0 or self._bar is None:
            self.close()
            label = f"epoch {event.epoch}" if event.epoch is not None else "training"
            self._bar = self._tqdm(
                total=event.num_batches, desc=label, file=self.file, **self._options
            )
        if event.batch % self.every == 0:  # set before update() so that it draws it
            self._bar.set_postfix(loss=f"{event.loss:.4f}", refresh=False)
        self._bar.update(1)
        if event.batch + 1 == event.num_batches:
            self.close()

    __call__ = on_batch_end

    def on_epoch_end(self, report: EpochReport) -> None:
        """Close the epoch's bar (for loaders without a length, whose last batch is unknown)."""
        self.close()

    def close(self) -> None:
        """Close the bar if one is open (also done after an epoch's last batch)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class StopOnSignal(Callback):
    """Turn Ctrl-C (SIGINT) and SIGTERM into a clean stop at the next batch boundary.

    Inside ``with stop.installed():`` the signals are only recorded; after the batch that
    is running, this callback raises :class:`StopTraining` (``at="batch"``), so no optimizer
    step or checkpoint write is cut in half and :func:`~fashionmlp.fit` saves the point it
    stopped at. A second Ctrl-C raises :class:`KeyboardInterrupt` at once, without waiting
    for the batch. Under ``torchrun`` every process must stop after the same batch (or the
    others would wait forever in the next gradient exchange), so the processes agree on it
    after every batch: one small all-reduce each.

    Example:
        .. code-block:: python

            stop = StopOnSignal()
            with stop.installed():
                result = fit(recipe, "data", callbacks=[stop], checkpoint_path="run.pt")
            if stop.received:
                print(f"stopped by signal {stop.received}; resume from run.pt")
    """

    def __init__(self) -> None:
        from .devices import max_over_ranks  # torch's, which a run has imported by now

        #: The signal received (``signal.SIGINT`` or ``signal.SIGTERM``), or ``None``.
        self.received: int | None = None
        self._agreed = max_over_ranks

    def on_batch_end(self, event: BatchEvent) -> None:
        """Raise :class:`StopTraining` if a signal was received (by any process)."""
        received = self._agreed(self.received or 0)
        if received:
            self.received = received
            raise StopTraining(
                f"signal {received} after batch {event.batch} of epoch {event.epoch}"
            )

    __call__ = on_batch_end

    def _handle(self, signal_number: int, frame: FrameType | None) -> None:
        if self.received == signal.SIGINT == signal_number:
            raise KeyboardInterrupt
        self.received = signal_number

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopOnSignal]:
        """Handle SIGINT and SIGTERM inside the block (main thread only); restore after."""
        with signals_handled(self._handle):
            for number in (signal.SIGINT, signal.SIGTERM):
                # The handler only records the signal, so let interrupted system calls resume
                # (a gloo transfer cut short by EINTR could fail the whole process group).
                signal.siginterrupt(number, False)
            yield self


@contextlib.contextmanager
def signals_handled(handler: Callable[[int, FrameType | None], Any]) -> Iterator[None]:
    """Ctrl-C (SIGINT) and SIGTERM handled by ``handler`` inside the block (main thread
    only); the handlers before restored after."""
    previous = {
        number: signal.signal(number, handler) for number in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for number, handler_before in previous.items():
            signal.signal(number, handler_before)


#: What the validation-driven callbacks watch: the evaluation's accuracy (higher is better)
#: or loss (lower is better).
Monitor = Literal["accuracy", "loss"]


def _watched(report: EpochReport, monitor: Monitor) -> float:
    """The epoch's figure, signed so that higher is better."""
    if monitor == "accuracy":
        return report.eval.accuracy
    if report.eval.loss is None:
        raise InvalidArgumentError("monitor='loss' needs an evaluation loss (give a loss_fn)")
    return -report.eval.loss


def _check_monitor(monitor: str) -> Monitor:
    if monitor not in ("accuracy", "loss"):
        raise InvalidArgumentError(f"monitor must be 'accuracy' or 'loss', got {monitor!r}")
    return monitor  # type: ignore[return-value]


class EarlyStopping(Callback):
    """Stop a run whose evaluation has not improved for ``patience`` epochs.

    An epoch improves on the best so far when its accuracy is higher by more than
    ``min_delta`` (with ``monitor="loss"``: its loss lower by more than that). The run stops
    after the epoch that used up the patience, its checkpoint written; its state resumes.

    Args:
        patience: Epochs without improvement to allow.
        min_delta: The least gain that counts as an improvement.
        monitor: ``"accuracy"`` or ``"loss"`` of the evaluation (the validation split when
            the run has one: do not tune on the test set).

    Example:
        .. code-block:: python

            fit(get_recipe("long"), validation_size=5000, callbacks=[EarlyStopping(5)])
    """

    def __init__(self, patience: int, *, min_delta: float = 0.0, monitor: str = "accuracy") -> None:
        check_positive("patience", patience)
        if not min_delta >= 0:
            raise InvalidArgumentError(f"min_delta must be 0 or more, got {min_delta}")
        self.patience = patience
        self.min_delta = float(min_delta)
        self.monitor = _check_monitor(monitor)
        #: The best figure so far (signed so that higher is better), or ``None``.
        self.best: float | None = None
        #: Epochs since the best.
        self.waited = 0
        #: The epoch after which it stopped the run, or ``None``.
        self.stopped_epoch: int | None = None

    def on_epoch_end(self, report: EpochReport) -> None:
        """Count the epoch; stop the run once the patience is used up."""
        value = _watched(report, self.monitor)
        if self.best is None or value > self.best + self.min_delta:
            self.best, self.waited = value, 0
            return
        self.waited += 1
        if self.waited >= self.patience:
            self.stopped_epoch = report.epoch
            raise StopTraining(f"no gain in {self.waited} epochs", at="epoch")

    def state_dict(self) -> dict[str, Any]:
        """The counts so far, for a checkpoint."""
        keys = ("patience", "min_delta", "monitor", "best", "waited", "stopped_epoch")
        return {key: getattr(self, key) for key in keys}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s counts."""
        self.patience, self.min_delta = int(state["patience"]), float(state["min_delta"])
        self.monitor = _check_monitor(state["monitor"])
        self.best, self.waited = state["best"], int(state["waited"])
        self.stopped_epoch = state["stopped_epoch"]


class KeepBest(Callback):
    """Make the weights of the run's best epoch its model at the end.

    After every epoch whose evaluation is the best so far (``monitor``), the model's
    weights are copied (to the CPU); when the run ends, finished or stopped after an epoch,
    they are loaded into the model, so that what is saved is the best epoch's model, not the
    last's. A run stopped part-way through an epoch (to be resumed) is left as it is. The
    copy is in the callback's state, so a resumed run keeps it.

    Example:
        .. code-block:: python

            keep = KeepBest()
            result = fit(get_recipe("long"), validation_size=5000, callbacks=[keep])
            print(keep.best_epoch)  # the epoch whose weights result.model holds
    """

    def __init__(self, monitor: str = "accuracy") -> None:
        self.monitor = _check_monitor(monitor)
        #: The best epoch so far, or ``None``.
        self.best_epoch: int | None = None
        #: Its figure (accuracy, or loss).
        self.best_value: float | None = None
        self._best: float | None = None
        self._weights: dict[str, torch.Tensor] | None = None
        self._model: Any = None

    def on_fit_start(self, run: Run) -> None:
        """Know the model whose weights to keep."""
        self._model = run.model

    def on_epoch_end(self, report: EpochReport) -> None:
        """Copy the weights if this epoch is the best so far."""
        value = _watched(report, self.monitor)
        if self._best is not None and value <= self._best:
            return
        self._best, self.best_epoch = value, report.epoch
        self.best_value = abs(value) if self.monitor == "loss" else value
        state = self._model.state_dict()
        self._weights = {
            name: tensor.detach().to("cpu", copy=True) for name, tensor in state.items()
        }

    @property
    def kept_epoch(self) -> int | None:
        """The epoch whose weights the model gets at the run's end (``fit`` reads it into
        :attr:`FitResult.model_epoch <fashionmlp.FitResult.model_epoch>`)."""
        return self.best_epoch if self._weights is not None else None

    def on_fit_end(self, result: FitResult) -> None:
        """Load the best epoch's weights into the model (unless stopped mid-epoch)."""
        if self._weights is not None and result.stopped_at is None:
            result.model.load_state_dict(self._weights)

    def state_dict(self) -> dict[str, Any]:
        """The best epoch, its figure and its weights, for a checkpoint."""
        return {
            "monitor": self.monitor,
            "best_epoch": self.best_epoch,
            "best_value": self.best_value,
            "best": self._best,
            "weights": self._weights,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s best epoch."""
        self.monitor = _check_monitor(state["monitor"])
        self.best_epoch, self.best_value = state["best_epoch"], state["best_value"]
        self._best, self._weights = state["best"], state["weights"]


# --- what the loggers share ------------------------------------------------------------------


def check_every(every: int) -> int:
    """A logger's ``every`` checked: steps between two batch points, 0 for none."""
    if isinstance(every, bool) or not isinstance(every, int) or every < 0:
        raise InvalidArgumentError(f"every must be a whole number, 0 or more, got {every!r}")
    return every


def run_params(config: RunConfig) -> dict[str, Any]:
    """A run's settings as trackers record them: every recipe field by its path (``lr``,
    ``model.hidden_features``), then ``seed``, ``limit`` and ``validation_size``."""
    params = flat(config.recipe.to_dict())
    params |= {"seed": config.seed, "limit": config.limit}
    params["validation_size"] = config.validation_size
    return params
