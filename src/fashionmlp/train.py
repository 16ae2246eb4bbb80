"""Training: a run's parts built from its settings, fitted epoch by epoch, evaluated.

Read top to bottom, this module is the whole procedure, as nanoGPT's ``train.py`` is:

- :func:`build` turns a :class:`~fashionmlp.RunConfig` into :class:`Parts`: the loaders over
  the loaded data, the model, its optimizer and schedule, the losses, the device and the
  precision;
- :func:`fit` starts afresh or resumes, tells the callbacks, then for each epoch calls
  :func:`train_epoch` and :func:`evaluate`, the epoch's hooks and a checkpoint;
- :func:`train_epoch` is the seed's loop: per batch forward, loss, ``zero_grad``,
  backward, ``step``, in plain sight, then the callbacks;
- :func:`evaluate` is the seed's ``model.eval()`` + ``torch.no_grad()`` pass, counting
  what researchers report;
- :class:`TrainState` is the run as it stands, saved whole in every checkpoint and loaded
  whole to resume it (the callbacks' states inside).

Building is separate from training so that a study of many runs loads the data once and
builds each run from it, and so that a model of your own (any ``nn.Module`` mapping
``(N, 1, 28, 28)`` to ``(N, 10)``) trains under any recipe.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .callbacks import Hooks
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .config import NO_NORMALIZATION, Recipe, RunConfig, differences
from .data import Loader, Splits, load_dataset, make_loaders
from .devices import (
    all_finite,
    gather_strided,
    is_distributed,
    is_main_process,
    model_device,
    native_bfloat16,
    reduce_sum,
    resolve_device,
)
from .errors import CheckpointError, InvalidArgumentError, NonFiniteLossError
from .model import FashionMLP
from .optim import Muon, muon_param_groups
from .records import (
    CALIBRATION_BINS,
    TOP_K,
    BatchEvent,
    EpochReport,
    EpochStats,
    EvalResult,
    FitResult,
    StopAt,
)

__all__ = [
    "FINITE_CHECK_EVERY",
    "LossFn",
    "Parts",
    "TrainState",
    "autocast_context",
    "build",
    "call_loss",
    "eval_mode",
    "evaluate",
    "fit",
    "input_dtype",
    "make_optimizer",
    "make_scheduler",
    "resolve_autocast",
    "to_model",
    "train_epoch",
]

#: A loss function, ``loss_fn(logits, targets)``, returning the batch's mean loss.
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: Batches between two checks for a NaN or infinite loss (each check is one device read).
FINITE_CHECK_EVERY = 100


# --- the parts of a run ------------------------------------------------------------------


@dataclass
class Parts:
    """Everything one run trains with: what :func:`build` makes and
    :func:`~fashionmlp.fit` trains.

    Change a part before training if you like (another scheduler, say); a checkpoint
    then holds that part's state, and a resume must be built the same way.
    """

    #: The run's settings, as saved in its checkpoints.
    config: RunConfig
    #: The model trained (on :attr:`device`).
    model: nn.Module
    #: The training loader.
    train: Loader
    #: The evaluation loader (the test set, or the validation split).
    evaluation: Loader
    #: The optimizer over the model's parameters.
    optimizer: torch.optim.Optimizer
    #: The learning-rate schedule, stepped every batch, or ``None``.
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    #: The training loss (with the recipe's label smoothing).
    train_loss: LossFn
    #: The loss every evaluation reports (plain cross-entropy).
    eval_loss: LossFn
    #: Where the model and the data are.
    device: torch.device
    #: The autocast dtype of the training passes, or ``None`` for float32 throughout.
    autocast: torch.dtype | None
    #: Who standardizes the input with the recipe's ``model.normalize``: the ``FashionMLP``
    #: itself (``"model"``, so the trained model takes ``ToTensor()`` input), or the
    #: loaders, for a model of your own (``"loaders"``); ``"none"`` when nothing does.
    normalized_by: Literal["model", "loaders", "none"]

    @property
    def precision(self) -> Literal["float32", "bfloat16"]:
        """``"bfloat16"`` when training runs under bfloat16 autocast, else ``"float32"``."""
        return "float32" if self.autocast is None else "bfloat16"

    @property
    def generator(self) -> torch.Generator:
        """The training loader's random source (its order and augmentation), which a
        checkpoint saves so that a resumed run draws what an unbroken one would."""
        generator = getattr(self.train, "generator", None)
        if not isinstance(generator, torch.Generator):
            raise TypeError("the training loader has no torch.Generator of its own")
        return generator


def build(
    run: Recipe | RunConfig,
    data: Splits | None = None,
    *,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    device: torch.device | str = "auto",
    model: nn.Module | None = None,
) -> Parts:
    """The parts of the run ``run`` describes (a recipe alone runs with seed 0).

    Seeds torch's generator with the run's seed, makes the loaders over ``data`` (or the
    dataset read from ``root``), then the recipe's model (unless ``model`` is given), its
    optimizer and schedule, all on ``device``.

    Args:
        run: The recipe, or the whole run's settings.
        data: The dataset already loaded (:func:`~fashionmlp.load_dataset`), so that many
            runs read the files once; default: read from ``root``.
        root: The data root, when ``data`` is not given.
        download: Allow the dataset download, when ``data`` is not given.
        device: ``"auto"`` (CUDA, else MPS, else the CPU), ``"cpu"``, ``"cuda"``,
            ``"cuda:N"`` or ``"mps"``.
        model: A model of your own to train instead of the recipe's ``FashionMLP``: any
            ``nn.Module`` mapping ``(N, 1, 28, 28)`` float input to ``(N, 10)`` logits
            (its input comes in its own floating-point dtype). The recipe's
            ``model.normalize`` is then applied by the loaders, as the model cannot hold it;
            the recipe's other model settings are not used.

    Raises:
        InvalidArgumentError: A setting does not fit (a device this machine lacks, say).
        DatasetError: The dataset is missing or corrupt.

    Example:
        .. code-block:: python

            data = load_dataset()
            parts = build(RunConfig(get_recipe("fast"), seed=1), data)
            result = fit(parts)
    """
    config = run if isinstance(run, RunConfig) else RunConfig(run)
    recipe = config.recipe
    target = resolve_device(device)
    autocast = resolve_autocast(recipe, target)
    torch.manual_seed(config.seed)
    if data is None:
        data = load_dataset(root, download=download, test=config.validation_size == 0)
    normalize = recipe.model.normalize
    normalized_by: Literal["model", "loaders", "none"] = (
        "none" if normalize == NO_NORMALIZATION else "model" if model is None else "loaders"
    )
    train, evaluation = make_loaders(
        config,
        data=data,
        device=target,
        normalize=normalize if normalized_by == "loaders" else NO_NORMALIZATION,
    )
    trained = (model if model is not None else FashionMLP.from_config(recipe.model)).to(target)
    optimizer = make_optimizer(recipe, trained, precision=autocast)
    return Parts(
        config=config,
        model=trained,
        train=train,
        evaluation=evaluation,
        optimizer=optimizer,
        scheduler=make_scheduler(recipe, optimizer, len(train)),
        train_loss=nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing),
        eval_loss=nn.CrossEntropyLoss(),
        device=target,
        autocast=autocast,
        normalized_by=normalized_by,
    )


def make_optimizer(
    recipe: Recipe, model: nn.Module, *, precision: torch.dtype | None = None
) -> torch.optim.Optimizer:
    """The recipe's optimizer over ``model``'s parameters.

    ``precision`` is the run's autocast dtype (``None``: float32); Muon's Newton-Schulz
    iterations run in it, so that a float32 run is float32 throughout.
    """
    if recipe.optimizer == "muon":
        groups = muon_param_groups(
            model,
            muon_lr=recipe.muon_lr,
            lr=recipe.lr,
            weight_decay=recipe.weight_decay,
            muon_weight_decay=recipe.muon_weight_decay,
        )
        return Muon(groups, ns_steps=recipe.ns_steps, ns_dtype=precision or torch.float32)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    return torch.optim.SGD(
        model.parameters(),
        lr=recipe.lr,
        momentum=recipe.momentum,
        nesterov=recipe.nesterov,
        weight_decay=recipe.weight_decay,
    )


def make_scheduler(
    recipe: Recipe, optimizer: torch.optim.Optimizer, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The recipe's learning-rate schedule, stepped once per batch; ``None`` if constant.

    Each parameter group's one-cycle peaks at its own learning rate (with ``"muon"``: the
    hidden matrices at ``muon_lr``, the rest at ``lr``); AdamW's first beta cycles with it,
    as in torch's default, while Muon's momentum stays fixed. A one-cycle schedule needs at
    least two steps in each of its phases: for very short runs (``--limit`` on a tiny
    subset) the warm-up fraction is widened to allow that, and below four steps in all the
    rate stays constant.
    """
    total = recipe.epochs * steps_per_epoch
    if recipe.schedule == "constant" or total < 4:
        return None
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=[group["lr"] for group in optimizer.param_groups],
        total_steps=total,
        pct_start=min(max(recipe.warmup, 2 / total), (total - 2) / total),
        cycle_momentum=recipe.optimizer != "muon",
    )


def resolve_autocast(recipe: Recipe, device: torch.device) -> torch.dtype | None:
    """The autocast dtype the recipe asks for on ``device`` (``None``: full float32).

    ``"auto"`` means bfloat16 on CUDA GPUs that support it and on CPUs with native
    bfloat16 instructions (AVX-512 BF16 or AMX), float32 elsewhere, where bfloat16 would
    be emulated and slower.
    """
    if recipe.autocast == "off":
        return None
    if recipe.autocast == "bf16":
        return torch.bfloat16
    return torch.bfloat16 if native_bfloat16(device) else None


# --- fit: the epoch loop -----------------------------------------------------------------


def fit(
    recipe: Recipe | RunConfig | Parts,
    root: str | os.PathLike[str] | None = None,
    *,
    model: nn.Module | None = None,
    data: Splits | None = None,
    device: torch.device | str = "auto",
    download: bool = False,
    seed: int | None = None,
    limit: int | None = None,
    validation_size: int = 0,
    callbacks: Sequence[object] = (),
    checkpoint_path: str | os.PathLike[str] | None = None,
    resume_from: str | os.PathLike[str] | Checkpoint | None = None,
    check_finite: bool = True,
) -> FitResult:
    """Train a model under a recipe and evaluate it after every epoch.

    ``fit(recipe, ...)`` is the one-line convenience: it builds the parts
    (:func:`~fashionmlp.build`: the recipe's :class:`~fashionmlp.FashionMLP`, or ``model``)
    and trains them; ``fit(parts, ...)`` trains parts built (and perhaps changed) before.
    Training may run under bfloat16 autocast (the recipe's ``autocast``); every evaluation
    is the model's plain float32 forward pass, so that the reported accuracy is what the
    saved model gives wherever it is loaded.

    Under ``torchrun`` (a default process group initialised) the model is wrapped in
    :class:`~torch.nn.parallel.DistributedDataParallel`, each rank trains on its shard,
    every figure is global, and only rank 0 writes the checkpoint.

    Args:
        recipe: What to train: a :class:`~fashionmlp.Recipe`, a whole
            :class:`~fashionmlp.RunConfig`, or :class:`~fashionmlp.train.Parts` (then
            ``root``, ``model``, ``data``, ``device``, ``download``, ``seed``, ``limit``
            and ``validation_size`` are already decided and must be left out).
        root: The data root (default :func:`~fashionmlp.default_data_root`).
        model: A model of your own to train instead of the recipe's (see
            :func:`~fashionmlp.build`); checkpoints and exact resume work the same.
        data: The dataset already loaded (:func:`~fashionmlp.load_dataset`): many runs
            in one process then read the files once.
        device: Where to train: ``"auto"`` (CUDA, else MPS, else the CPU), ``"cpu"``,
            ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
        download: Allow the dataset download.
        seed: Seeds the model's initialisation, the shuffle and the augmentation (default
            0); the same seed, recipe and device give the same weights.
        limit: Use only the first ``limit`` samples of each split.
        validation_size: Evaluate on this many held-out training images instead of the
            test set (for tuning; see :func:`~fashionmlp.make_loaders`).
        callbacks: Objects with any of the hooks of :mod:`fashionmlp.callbacks`
            (``on_fit_start``, ``on_batch_end``, ``on_epoch_end``, ``on_fit_end``,
            ``on_exception``, ``state_dict``/``load_state_dict``), or plain functions of
            each :class:`~fashionmlp.BatchEvent`. Their states are saved in every checkpoint
            and given back on resume. One raising :class:`~fashionmlp.StopTraining` from a
            batch stops the run right after that batch, and ``fit`` writes a checkpoint of
            that very point (with ``at="epoch"``, or from ``on_epoch_end``: after the epoch
            and its checkpoint).
        checkpoint_path: Written (atomically) before the first epoch, after every epoch
            and at a stop, with everything needed to resume.
        resume_from: A checkpoint written by an earlier ``fit`` with the same settings (its
            path, or the :class:`~fashionmlp.checkpoint.Checkpoint` read from it);
            training continues where it stopped (mid-epoch too) and ends with the same
            weights as a run that was never stopped.
        check_finite: Stop with :class:`~fashionmlp.NonFiniteLossError` on a NaN or
            infinite loss (see :func:`~fashionmlp.train_epoch`).

    Raises:
        CheckpointError: ``resume_from`` is unreadable or from other settings.
        NonFiniteLossError: The loss became NaN or infinite.

    Example:
        .. code-block:: python

            result = fit(get_recipe("fast"), "data", device="cuda", seed=0)
            print(result.final.accuracy)
    """
    run_options = {"seed": seed, "limit": limit, "validation_size": validation_size or None}
    build_options = {
        "root": root,
        "model": model,
        "data": data,
        "download": download or None,
        "device": None if device == "auto" else device,
    }
    if isinstance(recipe, Parts):
        _refuse("fit(parts) trains parts already built", {**run_options, **build_options})
        parts = recipe
    else:
        if isinstance(recipe, RunConfig):
            _refuse("fit(run_config) has the run's settings", run_options)
            config = recipe
        else:
            config = RunConfig(recipe, seed=seed or 0, limit=limit, validation_size=validation_size)
        parts = build(config, data, root=root, download=download, device=device, model=model)
    config = parts.config
    hooks = Hooks(callbacks)
    state = TrainState(parts, hooks)
    if resume_from is not None:
        state.load(resume_from)
    else:
        _save(state, checkpoint_path)  # so that even a run stopped in its first epoch resumes
    epochs, stopped_at = config.recipe.epochs, None
    # Under torchrun, DDP averages the gradients (every rank starts from the same weights).
    trained = parts.model
    if is_distributed():
        cuda = parts.device.type == "cuda"
        trained = DistributedDataParallel(
            trained, device_ids=[parts.device.index] if cuda else None
        )
    non_blocking = parts.device.type == "cuda"
    try:
        hooks.call("on_fit_start", state)
        while state.epochs_done < epochs:
            epoch = state.epochs_done + 1
            stats = train_epoch(
                parts.train,
                trained,
                parts.train_loss,
                parts.optimizer,
                callbacks=hooks,
                epoch=epoch,
                scheduler=parts.scheduler,
                carry=state.start_epoch(),
                first_step=state.steps_done,
                autocast=parts.autocast,
                non_blocking=non_blocking,
                check_finite=check_finite,
            )
            if stats.stop == "batch":  # stopped right after a batch: keep that very point
                state.stop_within_epoch(stats)
                _save(state, checkpoint_path)
                stopped_at = (epoch, stats.batches)
                break
            started = time.perf_counter()
            result = evaluate(
                parts.evaluation,
                parts.model,
                parts.eval_loss,
                non_blocking=non_blocking,
                keep_predictions=epoch == epochs,  # for the misclassified-images plot
            )
            seconds = time.perf_counter() - started
            report = state.finish_epoch(stats, result, evaluation_seconds=seconds)
            # The epoch's callbacks (and loggers) before its checkpoint: a run killed between
            # the two redoes the epoch on resume, and a logger that has its row already
            # skips it, so no row is lost and none is written twice.
            stop = hooks.call("on_epoch_end", report) or stats.stop
            _save(state, checkpoint_path)
            if stop:
                break
        # A callback that leaves the model with another epoch's weights (KeepBest) says which,
        # so that the result and every logger describe the model returned.
        kept = [getattr(callback, "kept_epoch", None) for callback in hooks.callbacks]
        fitted = FitResult(
            model=parts.model,
            history=tuple(state.history),
            finished=state.epochs_done == epochs,
            precision=parts.precision,
            stopped_at=stopped_at,
            model_epoch=next(filter(None, reversed(kept)), None) if stopped_at is None else None,
        )
    except BaseException as error:
        hooks.call("on_exception", error)
        raise
    hooks.call("on_fit_end", fitted)
    return fitted


def _refuse(what: str, options: Mapping[str, object]) -> None:
    given = [name for name, value in options.items() if value is not None]
    if given:
        raise InvalidArgumentError(f"{what}: leave out {', '.join(given)}")


def _save(state: TrainState, path: str | os.PathLike[str] | None) -> None:
    """Write the state where asked, from one process only under ``torchrun``."""
    if path is not None and is_main_process():
        state.save(Path(path))


# --- one epoch ---------------------------------------------------------------------------


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
    in the model's own floating-point dtype), takes the seed's five steps in the seed's
    order (forward, loss, ``optimizer.zero_grad()``, ``loss.backward()``,
    ``optimizer.step()``; forward and loss under :func:`torch.autocast` with ``autocast``
    when given), steps ``scheduler``, and hands every callback's ``on_batch_end`` a
    :class:`~fashionmlp.BatchEvent`, in the order given.

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
            batch, in this order (see :mod:`fashionmlp.callbacks`). One may raise
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
    tally = _Tally(carry, target, check_finite, epoch, optimizer)
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
        # The seed's five steps in the seed's order (forward and loss under the recipe's
        # autocast); nothing is read from the device.
        with autocast_context(x.device, autocast):
            pred = model(x)
            loss = call_loss(loss_fn, pred, y)
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]  # torch leaves it unannotated
        optimizer.step()
        loss = loss.detach()
        if scheduler is not None:
            scheduler.step()
        tally.add(loss, len(x), batch)
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
    loss_sum, samples = tally.total(batches)
    seconds = (carry.seconds if carry is not None else 0.0) + time.perf_counter() - started
    return EpochStats(epoch, loss_sum, samples, batches, seconds, stop)


def _merge(stop: StopAt | None, new: StopAt | None) -> StopAt | None:
    """The stop asked for so far, ``"batch"`` winning over ``"epoch"``."""
    return "batch" if "batch" in (stop, new) else (stop or new)


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


class _Tally:
    """An epoch's loss sum and sample count, on the device, with the finite-loss checks.

    A NaN or infinity makes the running sum non-finite too, so checking the sum every
    :data:`FINITE_CHECK_EVERY` batches finds it; the losses kept since the last check then
    say which batch it was, and the error names the epoch, the batch and the learning rate.
    """

    def __init__(
        self,
        carry: EpochStats | None,
        device: torch.device,
        check: bool,
        epoch: int | None,
        optimizer: torch.optim.Optimizer,
    ) -> None:
        # A carried part's figures are global: one process counts them, the others start at 0.
        counted = carry if carry is not None and is_main_process() else None
        self.loss_sum = torch.full((), counted.loss_sum if counted else 0.0, device=device)
        self.samples = counted.samples if counted else 0
        self.check = check
        self.recent: list[torch.Tensor] = []
        self.epoch = epoch
        self.optimizer = optimizer

    def add(self, loss: torch.Tensor, samples: int, batch: int) -> None:
        self.loss_sum += loss * samples
        self.samples += samples
        if not self.check:
            return
        self.recent.append(loss)
        if len(self.recent) == FINITE_CHECK_EVERY:
            # all_finite agrees across processes, so under torchrun they stop together.
            if not all_finite(self.loss_sum):
                self.fail(batch + 1 - len(self.recent))
            self.recent.clear()

    def total(self, batches: int) -> tuple[float, int]:
        """The global loss sum and sample count: the epoch's one read from the device."""
        if is_distributed():
            count = torch.tensor(float(self.samples), device=self.loss_sum.device)
            both = torch.stack([self.loss_sum.double(), count.double()])
            loss_sum, samples = reduce_sum(both).tolist()
        else:
            loss_sum, samples = self.loss_sum.item(), self.samples
        if self.check and not math.isfinite(loss_sum):
            self.fail(batches - len(self.recent))
        return loss_sum, int(samples)

    def fail(self, first_batch: int) -> None:
        """Say which of the recent losses was not finite (the first batch's index given)."""
        recent = self.recent
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


# --- evaluation ----------------------------------------------------------------------------


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run the block with ``model`` in eval mode and without gradients; restore its mode.

    Example:
        >>> from fashionmlp import FashionMLP
        >>> from fashionmlp.train import eval_mode
        >>> model = FashionMLP().train()
        >>> with eval_mode(model):
        ...     model.training
        False
        >>> model.training
        True
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def evaluate(
    dataloader: Iterable[Any],
    model: nn.Module,
    loss_fn: LossFn | None = None,
    *,
    device: torch.device | str | None = None,
    autocast: torch.dtype | None = None,
    non_blocking: bool = False,
    keep_predictions: bool = False,
) -> EvalResult:
    """Evaluate ``model`` on every batch of ``dataloader``.

    Runs under ``model.eval()`` and ``torch.no_grad()``, then puts the model back in
    the mode it was in. Counts and sums stay on the device until the end, when they
    are read once. Under ``torchrun`` the counts, the loss and the confusion matrix are
    summed over all processes, so every rank returns the result for the whole dataset.

    Args:
        dataloader: Any iterable of ``(x, y)`` batches (``x`` goes to the model in its own
            floating-point dtype).
        model: Produces logits ``(N, C)``; the confusion matrix is ``C x C``.
        loss_fn: If given, ``loss_fn(logits, y)`` (batch mean) is averaged per sample.
        device: Where batches go; defaults to the device of the model's parameters.
        autocast: Run the forward pass under :func:`torch.autocast` with this dtype.
        non_blocking: Copy batches to the device asynchronously.
        keep_predictions: Also return every sample's predicted label (one more read).
            Under ``torchrun`` the processes' labels are put back in the order of the
            whole evaluation set, which assumes rank-strided shards (rank ``r`` holding
            samples ``r, r + W, ...``), as :func:`~fashionmlp.make_loaders` builds them.

    Raises:
        InvalidArgumentError: ``dataloader`` yielded no batch, or one that is not a pair
            of tensors.

    Example:
        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> from fashionmlp import FashionMLP, evaluate
        >>> data = TensorDataset(torch.rand(100, 1, 28, 28), torch.randint(0, 10, (100,)))
        >>> result = evaluate(DataLoader(data, batch_size=32), FashionMLP())
        >>> result.total, len(result.confusion_matrix)
        (100, 10)
    """
    target = torch.device(device) if device is not None else model_device(model)
    dtype = input_dtype(model)
    counts: _Counts | None = None  # made at the first batch, when the classes are known
    with eval_mode(model):
        for batch in dataloader:
            x, y = to_model(batch, target, dtype, non_blocking=non_blocking)
            with autocast_context(target, autocast):
                pred = model(x)
                loss = call_loss(loss_fn, pred, y).float() if loss_fn is not None else None
            counts = counts or _Counts(pred.shape[1], target, keep_predictions)
            counts.add(x, y, pred, loss)
    if counts is None:
        raise InvalidArgumentError("the dataloader yielded no batches; is the dataset empty?")
    return counts.result(with_loss=loss_fn is not None)


class _Counts:
    """An evaluation's figures, summed on the device batch by batch and read once at the end.

    Beside the confusion matrix and the loss: the top-k hits, the labels' negative
    log-likelihood and the confidence bins of the calibration error. Samples with a label
    outside ``0..C-1`` and samples holding a NaN or infinite value are counted too, so
    checking for them costs no read of its own.
    """

    def __init__(self, classes: int, device: torch.device, keep_predictions: bool) -> None:
        self.classes = classes
        self.device = device
        self.ks = [k for k in TOP_K if k <= classes]
        self.confusion = torch.zeros(classes * classes, dtype=torch.int64, device=device)
        self.loss_sum = torch.zeros((), device=device)
        self.nll_sum = torch.zeros((), device=device)
        self.top_k = torch.zeros(len(self.ks), dtype=torch.int64, device=device)
        # per bin: samples, summed confidence, right answers
        self.bins = torch.zeros(3, CALIBRATION_BINS, device=device)
        self.bad_labels = torch.zeros((), dtype=torch.int64, device=device)
        self.bad_inputs = torch.zeros((), dtype=torch.int64, device=device)
        self.predicted: list[torch.Tensor] | None = [] if keep_predictions else None

    def add(
        self, x: torch.Tensor, y: torch.Tensor, pred: torch.Tensor, loss: torch.Tensor | None
    ) -> None:
        classes = self.classes
        if loss is not None:
            self.loss_sum += loss * len(x)
        labels = pred.argmax(1)
        valid = (y >= 0) & (y < classes)
        self.bad_labels += (~valid).sum()
        if x.is_floating_point():
            self.bad_inputs += (~torch.isfinite(x.reshape(len(x), -1))).any(1).sum()
        # index_add_ rather than bincount, which reads its input's maximum from the
        # device; a bad label counts nowhere rather than outside the matrix.
        cells = torch.where(valid, y * classes + labels, 0)
        self.confusion.index_add_(0, cells, valid.to(torch.int64))
        self._add_scores(pred, torch.where(valid, y, 0), labels, valid)
        if self.predicted is not None:
            self.predicted.append(labels)

    def _add_scores(
        self, pred: torch.Tensor, y: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor
    ) -> None:
        """Top-k hits, the labels' log-likelihood and the confidence bins, valid samples only."""
        log_probs = torch.log_softmax(pred.float(), dim=1)
        weight = valid.to(log_probs.dtype)
        self.nll_sum -= (log_probs.gather(1, y[:, None]).squeeze(1) * weight).sum()
        hits = (pred.topk(self.ks[-1], dim=1).indices == y[:, None]).cumsum(1)
        self.top_k += (hits[:, [k - 1 for k in self.ks]] * valid[:, None]).sum(0)
        confidence = log_probs.max(1).values.exp()
        which = (confidence * CALIBRATION_BINS).long().clamp_(0, CALIBRATION_BINS - 1)  # NaN: 0
        right = (labels == y).to(weight.dtype)
        for row, values in enumerate((weight, confidence * weight, right * weight)):
            self.bins[row].index_add_(0, which, values)

    def result(self, *, with_loss: bool) -> EvalResult:
        """The figures, summed over the processes under torchrun: the one read."""
        classes = self.classes
        wide = torch.float32 if self.device.type == "mps" else torch.float64  # MPS: no float64
        checks = torch.stack([self.bad_labels, self.bad_inputs]).to(wide)
        sums = torch.stack([self.loss_sum, self.nll_sum]).to(wide)
        parts = [self.confusion, sums, self.top_k, self.bins.reshape(-1), checks]
        figures = reduce_sum(torch.cat([part.to(wide) for part in parts])).tolist()
        square, bins = classes * classes, 3 * CALIBRATION_BINS
        counts, figures = figures[:square], figures[square:]
        (loss_total, nll_total), figures = figures[:2], figures[2:]
        top_k, figures = figures[: len(self.ks)], figures[len(self.ks) :]
        binned, (labels_outside, inputs_not_finite) = figures[:bins], figures[bins:]
        if labels_outside:
            raise InvalidArgumentError(
                f"the loader gave {int(labels_outside)} label(s) outside 0..{classes - 1}; this "
                f"model has {classes} classes, so each label must be one of them"
            )
        if inputs_not_finite:
            raise InvalidArgumentError(
                f"the loader gave {int(inputs_not_finite)} sample(s) holding NaN or infinite "
                "values; give finite pixel values"
            )
        matrix = tuple(
            tuple(int(count) for count in counts[row * classes : (row + 1) * classes])
            for row in range(classes)
        )
        total = sum(map(sum, matrix))
        predicted = self.predicted
        return EvalResult(
            correct=sum(matrix[index][index] for index in range(classes)),
            total=total,
            loss=loss_total / total if with_loss else None,
            confusion_matrix=matrix,
            top_k_correct=tuple(int(count) for count in top_k),
            nll_sum=nll_total,
            calibration=tuple(
                (binned[i], binned[CALIBRATION_BINS + i], binned[2 * CALIBRATION_BINS + i])
                for i in range(CALIBRATION_BINS)
            ),
            predictions=(gather_strided(torch.cat(predicted)).cpu() if predicted else None),
        )


# --- a batch on its way to the model -------------------------------------------------------

_BATCH = (
    "each batch must be a pair (x, y) of tensors, as a DataLoader over a "
    "TensorDataset(images, labels) gives"
)


def input_dtype(model: nn.Module) -> torch.dtype:
    """The dtype a model's input should have: that of its first floating-point parameter
    (float32 for a model without one)."""
    for parameter in model.parameters():
        if parameter.is_floating_point():
            return parameter.dtype
    return torch.float32


def to_model(
    batch: object, device: torch.device, dtype: torch.dtype, *, non_blocking: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch ``(x, y)`` on ``device``, floating-point ``x`` in the model's ``dtype``.

    A model in float64 or bfloat16 gets its input in its own precision, as ``FashionMLP``
    converts it itself; the labels keep theirs.

    Raises:
        InvalidArgumentError: The batch is not a pair of tensors (a dict, a 3-tuple, ...).
    """
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        kind = f"a {len(batch)}-tuple" if isinstance(batch, (tuple, list)) else type(batch).__name__
        raise InvalidArgumentError(f"{_BATCH}; got {kind}")
    x, y = batch
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise InvalidArgumentError(f"{_BATCH}; got ({type(x).__name__}, {type(y).__name__})")
    x = x.to(device, dtype=dtype if x.is_floating_point() else None, non_blocking=non_blocking)
    return x, y.to(device, non_blocking=non_blocking)


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


# --- the run's state, saved and loaded whole -----------------------------------------------

#: What a checkpoint of a :class:`TrainState` keeps besides weights, optimizer and schedule.
_RESUME_KEYS = frozenset({"torch_rng", "cuda_rng", "loader_rng", "history", "partial", "callbacks"})


class TrainState:
    """One training run, as it stands: what it takes to continue it on another day.

    The epoch loop asks it where to begin (:meth:`start_epoch`) and tells it how each epoch
    ended (:meth:`stop_within_epoch`, :meth:`finish_epoch`); the bookkeeping of resuming
    lives here, so that the loop only trains. Callbacks get it in ``on_fit_start``: read
    :attr:`config`, :attr:`parts` and :attr:`history` there, and change nothing.

    Args:
        parts: What the run trains (see :func:`~fashionmlp.build`).
        hooks: The run's callbacks, whose states every checkpoint carries.
    """

    def __init__(self, parts: Parts, hooks: Hooks | None = None) -> None:
        #: What the run trains.
        self.parts = parts
        #: The run's callbacks.
        self.hooks = hooks if hooks is not None else Hooks()
        #: The reports of the epochs done, in order.
        self.history: list[EpochReport] = []
        #: The current epoch's progress when the run stopped part-way through it.
        self.partial: EpochStats | None = None
        self._epoch_start_rng = parts.generator.get_state()

    @property
    def config(self) -> RunConfig:
        """The run's settings."""
        return self.parts.config

    @property
    def model(self) -> nn.Module:
        """The model trained."""
        return self.parts.model

    @property
    def device(self) -> torch.device:
        """Where the run trains."""
        return self.parts.device

    @property
    def precision(self) -> Literal["float32", "bfloat16"]:
        """The precision of the training passes."""
        return self.parts.precision

    @property
    def epochs_done(self) -> int:
        """Epochs finished (trained and evaluated)."""
        return len(self.history)

    @property
    def seconds(self) -> float:
        """Wall-clock seconds of the finished epochs."""
        return self.history[-1].seconds if self.history else 0.0

    @property
    def steps_done(self) -> int:
        """The optimizer steps of the finished epochs (the global step the next one starts at)."""
        return self.history[-1].step if self.history else 0

    def start_epoch(self) -> EpochStats | None:
        """Begin the next epoch; return the progress to carry into it, if any.

        Remembers the loader's random state as the epoch begins; for an epoch that stopped
        part-way, goes back to that state, so that the epoch's draws repeat.
        """
        if self.partial is not None:
            self.parts.generator.set_state(self._epoch_start_rng)
        else:
            self._epoch_start_rng = self.parts.generator.get_state()
        return self.partial

    def stop_within_epoch(self, progress: EpochStats) -> None:
        """Record that the run stopped part-way through the current epoch, after ``progress``."""
        self.partial = progress

    def finish_epoch(
        self, train: EpochStats, result: EvalResult, *, evaluation_seconds: float
    ) -> EpochReport:
        """Record a finished epoch and return its report."""
        report = EpochReport(
            epoch=self.epochs_done + 1,
            epochs=self.config.recipe.epochs,
            train=train,
            eval=result,
            seconds=self.seconds + train.seconds + evaluation_seconds,
            lr=float(self.parts.optimizer.param_groups[0]["lr"]),
            step=self.steps_done + train.batches,
            evaluated_on=self.config.evaluated_on,
        )
        self.history.append(report)
        self.partial = None
        return report

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the whole state to ``path`` atomically (see
        :func:`~fashionmlp.save_checkpoint`)."""
        device = model_device(self.model)
        save_checkpoint(
            path,
            self.model,
            self.parts.optimizer,
            scheduler=self.parts.scheduler,
            epoch=self.epochs_done,
            config=self.config.to_dict(),
            state={
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                # Mid-epoch, the loader's state as the epoch began: resuming repeats its draws.
                "loader_rng": (
                    self._epoch_start_rng if self.partial else self.parts.generator.get_state()
                ),
                "history": [report.to_dict() for report in self.history],
                "partial": self.partial.to_dict() if self.partial else None,
                "callbacks": self.hooks.state_dict(),
            },
        )

    def load(self, source: str | os.PathLike[str] | Checkpoint) -> None:
        """Continue from the state :meth:`save` wrote (its file, or the
        :class:`~fashionmlp.checkpoint.Checkpoint` read from it); the callbacks get theirs.

        Raises:
            CheckpointError: The file is unreadable, was written with other settings (the
                message names each that differs), or holds more or less than a saved state.
        """
        parts = self.parts
        if isinstance(source, Checkpoint):
            checkpoint = source
            checkpoint.restore(self.model, parts.optimizer, parts.scheduler)
        else:
            checkpoint = load_checkpoint(
                source, self.model, parts.optimizer, scheduler=parts.scheduler
            )
        path = checkpoint.source
        try:
            saved = RunConfig.from_dict(checkpoint.config, format=checkpoint.format)
        except InvalidArgumentError as exc:
            raise CheckpointError(
                f"{path} does not hold a run's settings ({exc}); resume only from a "
                "checkpoint fit() wrote"
            ) from None
        if saved != self.config:
            changed = differences(saved.to_dict(), self.config.to_dict())
            raise CheckpointError(
                f"{path} was written by a run with other settings ({'; '.join(changed)}); "
                "resume it with the settings it was saved with"
            )
        if set(checkpoint.state) != _RESUME_KEYS:
            unused = sorted(set(checkpoint.state) - _RESUME_KEYS)
            missing = sorted(_RESUME_KEYS - set(checkpoint.state))
            raise CheckpointError(
                f"{path} is not a fashionmlp training state (unused keys: {unused or 'none'}, "
                f"missing keys: {missing or 'none'}); resume only from a checkpoint fit() wrote"
            )
        try:
            self._restore(checkpoint.state)
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
            raise CheckpointError(
                f"{path} is a damaged training state ({type(exc).__name__}: {exc}); use "
                "another copy, or start the run again"
            ) from exc

    def _restore(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch_rng"])
        device = model_device(self.model)
        if state["cuda_rng"] is not None and device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        self.parts.generator.set_state(state["loader_rng"])
        self._epoch_start_rng = state["loader_rng"]
        self.history = [EpochReport.from_dict(report) for report in state["history"]]
        self.partial = EpochStats.from_dict(state["partial"]) if state["partial"] else None
        if not isinstance(state["callbacks"], dict):
            raise TypeError(f"the callbacks' states are a {type(state['callbacks']).__name__}")
        self.hooks.load_state_dict(state["callbacks"])
