"""The callbacks that ship with the library, and :class:`Callback`, a base class for yours.

A callback is any object with some of the hooks of :mod:`fashionmlp.hooks`
(``on_fit_start``, ``on_batch_end``, ``on_epoch_end``, ``on_fit_end``, ``on_exception``,
``state_dict``/``load_state_dict``), or a plain function taking each
:class:`~fashionmlp.BatchEvent`. Inheriting from :class:`Callback` is optional: it only
gives every hook's signature, as a no-op to override.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

import torch

from . import distributed
from .errors import InvalidArgumentError
from .hooks import StopTraining, default_hook
from .records import BatchEvent, EpochReport, FitResult

if TYPE_CHECKING:
    from .state import TrainState

__all__ = [
    "Callback",
    "LossHistory",
    "PrintLoss",
    "ProgressBar",
    "StopOnSignal",
]


class Callback:
    """A base class with every hook of :mod:`fashionmlp.hooks` as a no-op: override those
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
    def on_fit_start(self, run: TrainState) -> None:
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
        #: The signal received (``signal.SIGINT`` or ``signal.SIGTERM``), or ``None``.
        self.received: int | None = None

    def on_batch_end(self, event: BatchEvent) -> None:
        """Raise :class:`StopTraining` if a signal was received (by any process)."""
        received = distributed.max_over_ranks(self.received or 0)
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
        previous = {
            number: signal.signal(number, self._handle)
            for number in (signal.SIGINT, signal.SIGTERM)
        }
        for number in previous:
            # The handler only records the signal, so let interrupted system calls resume
            # (a gloo transfer cut short by EINTR could fail the whole process group).
            signal.siginterrupt(number, False)
        try:
            yield self
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
