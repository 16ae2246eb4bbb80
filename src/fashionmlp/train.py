"""One epoch of training: the seed's loop as a function, with callbacks.

:func:`train_step` is one step (forward, loss, ``zero_grad``, backward, optimizer step), a
small function apart from the loop, as ignite's ``supervised_training_step``;
:func:`train_epoch` runs it over a loader, tells the callbacks, and keeps the epoch's
figures on the device until its end.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from . import devices
from .devices import model_device
from .errors import InvalidArgumentError, NonFiniteLossError
from .hooks import Hooks
from .records import BatchEvent, EpochStats, StopAt
from .step import LossFn, autocast_context, call_loss, input_dtype, to_model

__all__ = ["FINITE_CHECK_EVERY", "train_epoch", "train_step"]

#: Batches between two checks for a NaN or infinite loss (each check is one device read).
FINITE_CHECK_EVERY = 100


def train_step(
    model: nn.Module,
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    autocast: torch.dtype | None = None,
) -> torch.Tensor:
    """One step of the seed's loop on the batch ``(x, y)``; return its loss, detached.

    The seed's five steps in the seed's order: forward, loss, ``optimizer.zero_grad()``,
    ``loss.backward()``, ``optimizer.step()``; the forward pass and the loss under
    :func:`torch.autocast` with ``autocast`` when given. Nothing is read from the device.
    """
    with autocast_context(x.device, autocast):
        pred = model(x)
        loss = call_loss(loss_fn, pred, y)
    optimizer.zero_grad()
    loss.backward()  # type: ignore[no-untyped-call]  # torch leaves it unannotated
    optimizer.step()
    return loss.detach()


class _Tally:
    """An epoch's loss sum and sample count, on the device, with the finite-loss checks.

    A NaN or infinity makes the running sum non-finite too, so checking the sum every
    :data:`FINITE_CHECK_EVERY` batches finds it; the losses kept since the last check then
    say which batch it was.
    """

    def __init__(self, carry: EpochStats | None, device: torch.device, check: bool) -> None:
        # A carried part's figures are global: one process counts them, the others start at 0.
        counted = carry if carry is not None and devices.is_main_process() else None
        self.loss_sum = torch.full((), counted.loss_sum if counted else 0.0, device=device)
        self.samples = counted.samples if counted else 0
        self.check = check
        self.recent: list[torch.Tensor] = []

    def add(self, loss: torch.Tensor, samples: int, batch: int, where: _Where) -> None:
        self.loss_sum += loss * samples
        self.samples += samples
        if not self.check:
            return
        self.recent.append(loss)
        if len(self.recent) == FINITE_CHECK_EVERY:
            # all_finite agrees across processes, so under torchrun they stop together.
            if not devices.all_finite(self.loss_sum):
                where.fail(self.recent, batch + 1 - len(self.recent))
            self.recent.clear()

    def total(self, batches: int, where: _Where) -> tuple[float, int]:
        """The global loss sum and sample count: the epoch's one read from the device."""
        if devices.is_distributed():
            count = torch.tensor(float(self.samples), device=self.loss_sum.device)
            both = torch.stack([self.loss_sum.double(), count.double()])
            loss_sum, samples = devices.reduce_sum(both).tolist()
        else:
            loss_sum, samples = self.loss_sum.item(), self.samples
        if self.check and not math.isfinite(loss_sum):
            where.fail(self.recent, batches - len(self.recent))
        return loss_sum, int(samples)


def train_epoch(
    dataloader: Iterable[Any],
    model: nn.Module,
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    *,
    callbacks: Sequence[object] | Hooks = (),
    epoch: int | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    carry: EpochStats | None = None,
    first_step: int | None = None,
    device: torch.device | str | None = None,
    autocast: torch.dtype | None = None,
    non_blocking: bool = False,
    check_finite: bool = True,
) -> EpochStats:
    """Train ``model`` for one pass over ``dataloader``, as the seed's ``training()`` does.

    Calls ``model.train()``, then for each batch ``(x, y)``: moves it to ``device`` (``x``
    in the model's own floating-point dtype), runs :func:`~fashionmlp.train.train_step` (the
    seed's five steps
    in the seed's order), steps ``scheduler``, and hands every callback's ``on_batch_end``
    a :class:`~fashionmlp.BatchEvent`, in the order given.

    The loop reads almost nothing back from the device: the epoch's loss is summed on
    the device and read at the end, and every
    :data:`~fashionmlp.train.FINITE_CHECK_EVERY` batches one read
    checks that sum for a NaN or infinity (``check_finite=False`` drops those checks).

    Args:
        dataloader: Any iterable of ``(x, y)`` batches: a
            :class:`torch.utils.data.DataLoader`, the library's own loaders, a generator.
            Without ``len()`` (an ``IterableDataset``'s loader) the events' ``num_batches``
            and ``dataset_size`` are ``None``.
        model: The model; left in training mode.
        loss_fn: ``loss_fn(logits, y)`` returning the batch's mean loss
            (e.g. :class:`torch.nn.CrossEntropyLoss`).
        optimizer: Steps once per batch.
        callbacks: Their ``on_batch_end`` (or the function itself) is called after every
            batch, in this order (see :mod:`fashionmlp.hooks`). One may raise
            :class:`~fashionmlp.StopTraining`: with ``at="batch"`` the epoch ends after the
            current batch, with ``at="epoch"`` it runs to its end; either way the returned
            ``stop`` says so.
        epoch: Passed through to the events and the result.
        scheduler: A learning-rate scheduler stepped after every optimizer step (such as
            :class:`torch.optim.lr_scheduler.OneCycleLR`).
        carry: The :class:`EpochStats` of this epoch's earlier, stopped part: finish that
            epoch. Its first ``carry.batches`` batches are made but not trained on, so that
            the loader's random draws (order, augmentation) stay where an unbroken epoch
            has them, and the returned figures add this part to ``carry``'s, bit for bit
            what an unbroken epoch returns.
        first_step: The run's global step at this epoch's first batch, for the events'
            ``step`` (default: ``(epoch - 1) * len(dataloader)`` when both are known, else
            0; :func:`~fashionmlp.fit` passes the exact count).
        device: Where batches go; defaults to the device of the model's parameters.
        autocast: Run forward and loss under :func:`torch.autocast` with this dtype
            (``torch.bfloat16`` on a CUDA GPU is the usual choice); ``None`` (default)
            keeps full float32, as in the seed.
        non_blocking: Copy batches to the device asynchronously (worth it with a
            pinned-memory DataLoader and a CUDA device; a no-op for data already there).
        check_finite: Stop with :class:`~fashionmlp.NonFiniteLossError` when a batch's
            loss is NaN or infinite (found within
            :data:`~fashionmlp.train.FINITE_CHECK_EVERY` batches).

    Under ``torchrun`` the loss sum and the sample count are summed over all processes
    (one all-reduce at the end of the epoch), so every rank returns the global figures
    (a global ``carry`` is counted once); a ``DistributedSampler``'s ``set_epoch(epoch)`` is
    called first when ``epoch`` is given.

    Returns:
        The epoch's loss, sample and batch counts and wall time, ``carry``'s included.

    Raises:
        InvalidArgumentError: ``dataloader`` yielded no batch, or one that is not a pair.
        NonFiniteLossError: A loss was NaN or infinite (names the epoch and batch).

    Example:
        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> from fashionmlp import FashionMLP, LossHistory, train_epoch
        >>> data = TensorDataset(torch.rand(256, 1, 28, 28), torch.randint(0, 10, (256,)))
        >>> model = FashionMLP()
        >>> history = LossHistory()
        >>> stats = train_epoch(DataLoader(data, batch_size=64), model,
        ...                     torch.nn.CrossEntropyLoss(),
        ...                     torch.optim.SGD(model.parameters(), lr=0.01),
        ...                     callbacks=[history])
        >>> stats.batches, stats.samples, len(history)
        (4, 256, 4)
    """
    num_batches, dataset_size = _loader_sizes(dataloader)
    hooks = callbacks if isinstance(callbacks, Hooks) else Hooks(callbacks)
    target = torch.device(device) if device is not None else model_device(model)
    dtype = input_dtype(model)
    started = time.perf_counter()
    set_epoch = getattr(getattr(dataloader, "sampler", None), "set_epoch", None)
    if epoch is not None and set_epoch is not None:
        set_epoch(epoch)  # a DistributedSampler reshuffles from the epoch number
    skip = carry.batches if carry is not None else 0
    if first_step is None:
        first_step = (epoch - 1) * num_batches if epoch is not None and num_batches else 0
    where = _Where(epoch, optimizer)
    tally = _Tally(carry, target, check_finite)
    model.train()
    seen = made = 0  # this process's samples and batches so far, skipped ones included
    stop: StopAt | None = None
    for batch, data in enumerate(dataloader):
        x, y = to_model(data, target, dtype, non_blocking=non_blocking)
        made += 1
        seen += len(x)
        if batch < skip:
            continue
        lr = optimizer.param_groups[0].get("lr")  # what this step uses: a Python number
        loss = train_step(model, loss_fn, optimizer, x, y, autocast=autocast)
        if scheduler is not None:
            scheduler.step()
        tally.add(loss, len(x), batch, where)
        if hooks.wants("on_batch_end"):
            event = BatchEvent(
                epoch=epoch,
                batch=batch,
                num_batches=num_batches,
                batch_size=len(x),
                samples_seen=seen,
                dataset_size=dataset_size,
                loss_tensor=loss,
                step=first_step + batch,
                lr=float(lr) if lr is not None else None,
            )
            stop = _merge(stop, hooks.call("on_batch_end", event))
            if stop == "batch":
                break
    if made == 0:
        raise InvalidArgumentError("the dataloader yielded no batches; is the dataset empty?")
    batches = max(made, skip)  # trained now, and carried: every batch made up to the stop
    loss_sum, samples = tally.total(batches, where)
    seconds = (carry.seconds if carry is not None else 0.0) + time.perf_counter() - started
    return EpochStats(epoch, loss_sum, samples, batches, seconds, stop)


def _merge(stop: StopAt | None, new: StopAt | None) -> StopAt | None:
    """The stop asked for so far, ``"batch"`` winning over ``"epoch"``."""
    return "batch" if "batch" in (stop, new) else (stop or new)


class _Where:
    """Which epoch is training, to name it when a loss turns out NaN or infinite."""

    def __init__(self, epoch: int | None, optimizer: torch.optim.Optimizer) -> None:
        self.epoch = epoch
        self.optimizer = optimizer

    def fail(self, recent: list[torch.Tensor], first_batch: int) -> None:
        losses = torch.stack(recent).float().tolist() if recent else []  # one read for all
        bad = [index for index, value in enumerate(losses) if not math.isfinite(value)]
        if bad:
            value, batches = losses[bad[0]], f"batch {first_batch + bad[0]}"
        else:  # it was another process's loss
            value, batches = math.nan, f"batches {first_batch}-{first_batch + len(recent) - 1}"
        where = f"epoch {self.epoch}, {batches}" if self.epoch is not None else batches
        lr = float(self.optimizer.param_groups[0].get("lr", float("nan")))
        raise NonFiniteLossError(
            f"the training loss became {value} at {where} (learning rate {lr:g}); "
            f"training stopped. The learning rate is probably too high: try a lower one "
            f"(e.g. {lr / 10:g})"
        )


def _loader_sizes(dataloader: object) -> tuple[int | None, int | None]:
    """``(len(dataloader), len(dataloader.dataset))``, each ``None`` where unknown."""
    try:
        num_batches: int | None = len(dataloader)  # type: ignore[arg-type]
    except TypeError:  # an iterator, or a DataLoader over an IterableDataset
        num_batches = None
    try:
        dataset_size: int | None = len(dataloader.dataset)  # type: ignore[attr-defined]
    except (TypeError, AttributeError):
        dataset_size = None
    return num_batches, dataset_size
