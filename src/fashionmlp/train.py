"""One epoch of training: the seed's loop as a function, with callbacks."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from . import distributed
from .callbacks import BatchEvent, CallbackLike, as_hook
from .devices import model_device
from .errors import InvalidArgumentError, NonFiniteLossError

__all__ = ["EpochStats", "train_epoch"]

#: Batches between two checks for a NaN or infinite loss (each check is one device read).
FINITE_CHECK_EVERY = 100

#: A loss function: ``loss_fn(logits, targets)`` returning the batch's mean loss.
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class EpochStats:
    """What one call of :func:`train_epoch` did."""

    #: The epoch number passed in (``None`` if none was).
    epoch: int | None
    #: Mean training loss per sample over the epoch.
    loss: float
    #: Samples trained on.
    samples: int
    #: Batches (optimizer steps).
    batches: int
    #: Wall-clock seconds the epoch took.
    seconds: float


def train_epoch(
    dataloader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    model: nn.Module,
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    *,
    callbacks: Sequence[CallbackLike] = (),
    epoch: int | None = None,
    device: torch.device | str | None = None,
    autocast: torch.dtype | None = None,
    non_blocking: bool = False,
    check_finite: bool = True,
    start_batch: int = 0,
) -> EpochStats:
    """Train ``model`` for one pass over ``dataloader``, as the seed's ``training()`` does.

    Calls ``model.train()``, then for each batch ``(x, y)``: moves it to ``device``,
    and runs the seed's five steps in the seed's order (forward, loss,
    ``optimizer.zero_grad()``, ``loss.backward()``, ``optimizer.step()``). After each
    step every callback receives a :class:`~fashionmlp.BatchEvent`, in the order given.

    The loop reads almost nothing back from the device: the epoch's loss is summed on
    the device and read at the end, and every
    :data:`~fashionmlp.train.FINITE_CHECK_EVERY` batches one read
    checks that sum for a NaN or infinity (``check_finite=False`` drops those checks).

    Args:
        dataloader: Yields ``(x, y)`` batches; must support ``len()`` and have a
            ``dataset`` with ``len()``, as :class:`torch.utils.data.DataLoader` does.
        model: The model; left in training mode.
        loss_fn: ``loss_fn(logits, y)`` returning the batch's mean loss
            (e.g. :class:`torch.nn.CrossEntropyLoss`).
        optimizer: Steps once per batch.
        callbacks: Called after every batch, in this order (see
            :mod:`fashionmlp.callbacks`).
        epoch: Passed through to the events and the result.
        device: Where batches go; defaults to the device of the model's parameters.
        autocast: Run forward and loss under :func:`torch.autocast` with this dtype
            (``torch.bfloat16`` on a CUDA GPU is the usual choice); ``None`` (default)
            keeps full float32, as in the seed.
        non_blocking: Copy batches to the device asynchronously (worth it with a
            pinned-memory DataLoader and a CUDA device; a no-op for data already there).
        start_batch: Skip training on the epoch's first ``start_batch`` batches, to finish
            an epoch that was stopped part-way. The loader still makes them, so that its
            random draws (order, augmentation) stay where an unbroken epoch has them; the
            returned figures and the events' ``samples_seen`` cover the batches trained.
        check_finite: Stop with :class:`~fashionmlp.NonFiniteLossError` when a batch's
            loss is NaN or infinite (found within
            :data:`~fashionmlp.train.FINITE_CHECK_EVERY` batches).

    Under ``torchrun`` the mean loss and the sample count are summed over all processes
    (one all-reduce at the end of the epoch), so every rank returns the global figures;
    a ``DistributedSampler``'s ``set_epoch(epoch)`` is called first when ``epoch`` is given.

    Returns:
        The epoch's mean loss, sample and batch counts and wall time.

    Raises:
        InvalidArgumentError: ``dataloader`` has no length, or yielded no batch.
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
    hooks = [as_hook(callback) for callback in callbacks]
    target = torch.device(device) if device is not None else model_device(model)
    started = time.perf_counter()
    set_epoch = getattr(getattr(dataloader, "sampler", None), "set_epoch", None)
    if epoch is not None and set_epoch is not None:
        set_epoch(epoch)  # a DistributedSampler reshuffles from the epoch number
    model.train()
    loss_sum = torch.zeros((), device=target)
    samples = 0
    batches = 0
    recent: list[torch.Tensor] = []
    for batch, (x, y) in enumerate(dataloader):
        if batch < start_batch:
            continue
        x, y = x.to(target, non_blocking=non_blocking), y.to(target, non_blocking=non_blocking)
        with autocast_context(target, autocast):
            pred = model(x)
            loss = loss_fn(pred, y)

        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]  # torch leaves it unannotated
        optimizer.step()

        detached = loss.detach()
        size = len(x)
        loss_sum += detached * size
        samples += size
        batches += 1
        if check_finite:
            # A NaN or infinity makes the running sum non-finite too, so checking the sum
            # every FINITE_CHECK_EVERY batches finds it; the losses kept since the last
            # check then say which batch it was.
            recent.append(detached)
            if len(recent) == FINITE_CHECK_EVERY:
                # all_finite agrees across processes, so under torchrun they stop together.
                if not distributed.all_finite(loss_sum):
                    _raise_non_finite(recent, batch + 1 - len(recent), epoch, optimizer)
                recent.clear()
        if hooks:
            event = BatchEvent(
                epoch=epoch,
                batch=batch,
                num_batches=num_batches,
                batch_size=size,
                samples_seen=samples,
                dataset_size=dataset_size,
                loss_tensor=detached,
            )
            for hook in hooks:
                hook(event)
    if batches == 0:
        raise InvalidArgumentError("the dataloader yielded no batches; is the dataset empty?")
    if distributed.is_distributed():  # global figures on every rank
        loss_total, samples = distributed.reduce_sum(
            torch.stack([loss_sum.double(), torch.tensor(samples, device=target).double()])
        ).tolist()
        samples = int(samples)
        mean_loss = loss_total / samples
    else:
        mean_loss = loss_sum.item() / samples  # the epoch's one read from the device
    if check_finite and not math.isfinite(mean_loss):
        _raise_non_finite(recent, batches - len(recent), epoch, optimizer)
    return EpochStats(
        epoch=epoch,
        loss=mean_loss,
        samples=samples,
        batches=batches,
        seconds=time.perf_counter() - started,
    )


def _raise_non_finite(
    recent: list[torch.Tensor],
    first_batch: int,
    epoch: int | None,
    optimizer: torch.optim.Optimizer,
) -> None:
    losses = torch.stack(recent).float().tolist()  # one read for all of them
    bad = [index for index, value in enumerate(losses) if not math.isfinite(value)]
    if bad:
        value, batches = losses[bad[0]], f"batch {first_batch + bad[0]}"
    else:  # it was another process's loss
        value, batches = math.nan, f"batches {first_batch}-{first_batch + len(recent) - 1}"
    where = f"epoch {epoch}, {batches}" if epoch is not None else batches
    lr = float(optimizer.param_groups[0].get("lr", float("nan")))
    raise NonFiniteLossError(
        f"the training loss became {value} at {where} (learning rate {lr:g}); "
        f"training stopped. The learning rate is probably too high: try a lower one "
        f"(e.g. {lr / 10:g})"
    )


def autocast_context(
    device: torch.device, dtype: torch.dtype | None
) -> contextlib.AbstractContextManager[object]:
    """``torch.autocast`` on ``device`` with ``dtype``, or nothing when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def _loader_sizes(dataloader: Any) -> tuple[int, int]:
    try:
        return len(dataloader), len(dataloader.dataset)
    except (TypeError, AttributeError):
        raise InvalidArgumentError(
            "dataloader must support len() and have a .dataset with len(), "
            "like torch.utils.data.DataLoader; wrap tensors in "
            "DataLoader(TensorDataset(x, y), batch_size=...)"
        ) from None
