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
from .callbacks import BatchEvent, CallbackLike, StopAt, StopTraining, as_hook
from .devices import model_device
from .errors import InvalidArgumentError, NonFiniteLossError

__all__ = ["EpochStats", "train_epoch"]

#: Batches between two checks for a NaN or infinite loss (each check is one device read).
FINITE_CHECK_EVERY = 100

#: A loss function: ``loss_fn(logits, targets)`` returning the batch's mean loss.
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class EpochStats:
    """What one call of :func:`train_epoch` did: an epoch, or the part of one before a stop.

    Pass it back as ``train_epoch(carry=...)`` to finish an epoch that stopped part-way.
    """

    #: The epoch number passed in (``None`` if none was).
    epoch: int | None
    #: Sum of the per-sample training loss over the samples trained (``loss * samples``,
    #: kept exactly so that a resumed epoch adds up to the same figure).
    loss_sum: float
    #: Samples trained on.
    samples: int
    #: Batches trained (optimizer steps).
    batches: int
    #: Wall-clock seconds of training.
    seconds: float
    #: ``"batch"`` when a callback raised :class:`~fashionmlp.StopTraining` and the epoch
    #: ended right after that batch; ``"epoch"`` when one asked to stop after this epoch,
    #: which ran to its end; ``None`` otherwise.
    stop: StopAt | None = None

    @property
    def loss(self) -> float:
        """Mean training loss per sample."""
        return self.loss_sum / self.samples

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields and the mean ``loss``."""
        return {
            "epoch": self.epoch,
            "loss": self.loss,
            "loss_sum": self.loss_sum,
            "samples": self.samples,
            "batches": self.batches,
            "seconds": self.seconds,
            "stop": self.stop,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EpochStats:
        """The figures :meth:`to_dict` wrote (``loss`` is derived, so it is not read)."""
        fields = {key: value for key, value in data.items() if key != "loss"}
        return cls(**fields)


def train_epoch(
    dataloader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    model: nn.Module,
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    *,
    callbacks: Sequence[CallbackLike] = (),
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

    Calls ``model.train()``, then for each batch ``(x, y)``: moves it to ``device``,
    and runs the seed's five steps in the seed's order (forward, loss,
    ``optimizer.zero_grad()``, ``loss.backward()``, ``optimizer.step()``), then steps
    ``scheduler``. After each step every callback receives a
    :class:`~fashionmlp.BatchEvent`, in the order given.

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
            :mod:`fashionmlp.callbacks`). One may raise :class:`~fashionmlp.StopTraining`:
            with ``at="batch"`` the epoch ends after the current batch, with ``at="epoch"``
            it runs to its end; either way the returned ``stop`` says so.
        epoch: Passed through to the events and the result.
        scheduler: A learning-rate scheduler stepped after every optimizer step (such as
            :class:`torch.optim.lr_scheduler.OneCycleLR`).
        carry: The :class:`EpochStats` of this epoch's earlier, stopped part: finish that
            epoch. Its first ``carry.batches`` batches are made but not trained on, so that
            the loader's random draws (order, augmentation) stay where an unbroken epoch
            has them, and the returned figures add this part to ``carry``'s, bit for bit
            what an unbroken epoch returns.
        first_step: The run's global step at this epoch's first batch, for the events'
            ``step`` (default: ``(epoch - 1) * len(dataloader)`` when ``epoch`` is given,
            else 0; :func:`~fashionmlp.fit` passes the exact count).
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
    # A carried part's figures are global: one process counts them, the others start at 0.
    counted = carry if carry is not None and distributed.is_main_process() else None
    skip = carry.batches if carry is not None else 0
    if first_step is None:
        first_step = (epoch - 1) * num_batches if epoch is not None else 0
    model.train()
    loss_sum = torch.full((), counted.loss_sum if counted else 0.0, device=target)
    samples = counted.samples if counted else 0
    seen = 0  # this process's samples in the epoch so far, skipped batches included
    made = 0
    recent: list[torch.Tensor] = []
    stop: StopAt | None = None
    for batch, (x, y) in enumerate(dataloader):
        made += 1
        seen += len(x)
        if batch < skip:
            continue
        x, y = x.to(target, non_blocking=non_blocking), y.to(target, non_blocking=non_blocking)
        with autocast_context(target, autocast):
            pred = model(x)
            loss = call_loss(loss_fn, pred, y)

        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]  # torch leaves it unannotated
        lr = optimizer.param_groups[0].get("lr")  # what this step uses: a Python number
        optimizer.step()
        if scheduler is not None:
            scheduler.step()

        detached = loss.detach()
        loss_sum += detached * len(x)
        samples += len(x)
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
                batch_size=len(x),
                samples_seen=seen,
                dataset_size=dataset_size,
                loss_tensor=detached,
                step=first_step + batch,
                lr=float(lr) if lr is not None else None,
            )
            stop = _run_hooks(hooks, event, stop)
            if stop == "batch":
                break
    if made == 0:
        raise InvalidArgumentError("the dataloader yielded no batches; is the dataset empty?")
    batches = max(made, skip)  # trained now, and carried: every batch made up to the stop
    if distributed.is_distributed():  # global figures on every rank
        loss_total, total = distributed.reduce_sum(
            torch.stack([loss_sum.double(), torch.tensor(samples, device=target).double()])
        ).tolist()
        samples = int(total)
    else:
        loss_total = loss_sum.item()  # the epoch's one read from the device
    if check_finite and not math.isfinite(loss_total):
        _raise_non_finite(recent, batches - len(recent), epoch, optimizer)
    return EpochStats(
        epoch=epoch,
        loss_sum=loss_total,
        samples=samples,
        batches=batches,
        seconds=(carry.seconds if carry is not None else 0.0) + time.perf_counter() - started,
        stop=stop,
    )


def _run_hooks(
    hooks: Sequence[Callable[[BatchEvent], object]], event: BatchEvent, stop: StopAt | None
) -> StopAt | None:
    """Call every hook with ``event``; return the stop asked for so far ("batch" first)."""
    for hook in hooks:
        try:
            hook(event)
        except StopTraining as request:
            stop = "batch" if "batch" in (stop, request.at) else "epoch"
    return stop


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


def call_loss(loss_fn: LossFn, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``loss_fn(pred, y)``; a label outside the model's classes becomes our error.

    The labels are looked at only when the loss function fails, so a good batch costs no
    read; torch reports a bad label on the CPU as an IndexError or RuntimeError.
    """
    try:
        return loss_fn(pred, y)
    except (IndexError, RuntimeError) as exc:
        classes = pred.shape[-1]
        if y.dtype.is_floating_point or not bool(((y < 0) | (y >= classes)).any()):
            raise
        raise InvalidArgumentError(
            f"a label of {int(y[(y < 0) | (y >= classes)][0])} is outside 0..{classes - 1}: "
            f"this model has {classes} classes, so each label must be one of them"
        ) from exc


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
