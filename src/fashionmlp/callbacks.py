"""What training tells its callbacks, and the callbacks that ship with the library.

After every batch, :func:`~fashionmlp.train_epoch` builds one :class:`BatchEvent` and
hands it to each callback in the order they were given. A callback is either an object
with an ``on_batch_end(event)`` method (the :class:`Callback` protocol) or a plain
function taking the event. The event is frozen; new fields may be added in later
versions, so read the ones you need by name. A callback stops training by raising
:class:`StopTraining`.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal, Protocol, TextIO, Union, runtime_checkable

import torch

from . import distributed
from .errors import InvalidArgumentError

if TYPE_CHECKING:
    from .state import EpochReport

__all__ = [
    "BatchEvent",
    "Callback",
    "CallbackLike",
    "EpochCallback",
    "LossHistory",
    "PrintLoss",
    "ProgressBar",
    "StopOnSignal",
    "StopTraining",
]

#: Where a :class:`StopTraining` takes effect.
StopAt = Literal["batch", "epoch"]


@dataclass(frozen=True)
class BatchEvent:
    """One finished training batch, as seen by callbacks.

    Reading :attr:`loss` copies one number from the device (a sync on a GPU);
    callbacks that only need it every n batches should read it only then.
    """

    #: The epoch number passed to ``train_epoch`` (``None`` if none was passed).
    epoch: int | None
    #: Index of this batch in the epoch, from 0.
    batch: int
    #: Batches in the epoch (``len(dataloader)``).
    num_batches: int
    #: Samples in this batch (``len(x)``).
    batch_size: int
    #: Samples trained on so far in this epoch, this batch included.
    samples_seen: int
    #: Samples in the dataset (``len(dataloader.dataset)``).
    dataset_size: int
    #: The batch's loss, detached, on the training device.
    loss_tensor: torch.Tensor
    #: The run's global step, the optimizer steps before this one, counting across epochs
    #: and resumes (``train_epoch(first_step=...)``; by default ``(epoch - 1) * num_batches
    #: + batch`` when an epoch is given, else ``batch``).
    step: int = 0
    #: The learning rate this batch's step used (the optimizer's first parameter group).
    lr: float | None = None

    @cached_property
    def loss(self) -> float:
        """The batch's loss as a Python float (read from the device on first access)."""
        return float(self.loss_tensor.item())

    @property
    def current(self) -> int:
        """The seed's ``current``: ``batch * len(x)``, the samples before this batch."""
        return self.batch * self.batch_size


@runtime_checkable
class Callback(Protocol):
    """Anything with an ``on_batch_end`` method is a callback."""

    def on_batch_end(self, event: BatchEvent) -> None:
        """Called after each batch's optimizer step."""


@runtime_checkable
class EpochCallback(Protocol):
    """A callback that also wants each finished epoch: :func:`~fashionmlp.fit` calls its
    ``on_epoch_end`` with the :class:`~fashionmlp.EpochReport` (the loggers are such)."""

    def on_epoch_end(self, report: EpochReport) -> None:
        """Called after each epoch's evaluation, before its checkpoint is written."""


#: What ``train_epoch(callbacks=...)`` accepts: a :class:`Callback` or a plain function.
CallbackLike = Union[Callback, Callable[[BatchEvent], object]]


class StopTraining(Exception):
    """Raise from a callback to stop training cleanly, at a point it can be resumed from.

    Args:
        reason: Said in the exception's message.
        at: ``"batch"`` (the default) stops right after the current batch's optimizer step:
            :func:`~fashionmlp.train_epoch` returns early with ``stop="batch"`` in its
            :class:`~fashionmlp.EpochStats`, and :func:`~fashionmlp.fit` saves that very
            point, so resuming finishes the epoch from the next batch. ``"epoch"`` lets the
            epoch run to its end (in :func:`~fashionmlp.fit`: its evaluation and checkpoint
            too), then stops. Raised from an epoch callback of :func:`~fashionmlp.fit`, both
            mean "after this epoch", which is where the run already is.

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


def as_hook(callback: CallbackLike) -> Callable[[BatchEvent], object]:
    """The function to call for ``callback``; a clear error if it is neither kind."""
    if isinstance(callback, Callback):
        return callback.on_batch_end
    if callable(callback):
        return callback
    raise InvalidArgumentError(
        f"callback {callback!r} is neither callable nor has an on_batch_end(event) method"
    )


class PrintLoss:
    """Print the seed's progress line every ``every`` batches.

    The line is exactly the seed's ``Loss: {loss:.4f} [{current}/{size}]`` with
    ``current = batch * len(x)`` and ``size = len(dataloader.dataset)``. Only the batches
    it prints read the loss from the device.

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
            print(
                f"Loss: {event.loss:.4f} [{event.current}/{event.dataset_size}]",
                file=self.file or sys.stdout,
            )

    __call__ = on_batch_end


class LossHistory:
    """Collect ``(step, loss)`` pairs, one every ``every`` steps, across epochs.

    ``step`` is the event's global step (:attr:`BatchEvent.step`), so a history kept across
    a resumed run lines up with the unbroken run's. Losses are kept as device tensors and
    read together when first asked for, so collecting them costs no per-batch sync.

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


class ProgressBar:
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

    def close(self) -> None:
        """Close the bar if one is open (also done after an epoch's last batch)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class StopOnSignal:
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
