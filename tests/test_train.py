from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from torch import nn
from torch.optim.lr_scheduler import LambdaLR, LRScheduler
from torch.utils.data import DataLoader, Subset, TensorDataset

import seed_code
from conftest import synthetic_loader
from fashionmlp import (
    BatchEvent,
    EpochStats,
    FashionMLP,
    InvalidArgumentError,
    NonFiniteLossError,
    PrintLoss,
    StopTraining,
    make_loaders,
    train_epoch,
)
from fashionmlp.train import FINITE_CHECK_EVERY
from strategies import loader_sizes


def sgd(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.01)


def decaying_sgd() -> tuple[FashionMLP, torch.optim.Optimizer, LRScheduler]:
    """A small model, and SGD at 0.01 / (1 + step): every step has its own rate."""
    model = FashionMLP(hidden_features=8)
    optimizer = sgd(model)
    return model, optimizer, LambdaLR(optimizer, lambda step: 1 / (1 + step))


@settings(max_examples=25, deadline=None)
@given(sizes=loader_sizes())
def test_counts_add_up_for_any_dataset_and_batch_size(sizes: tuple[int, int]) -> None:
    samples, batch_size = sizes
    loader = synthetic_loader(samples, batch_size)
    model = FashionMLP(hidden_features=8)
    events: list[BatchEvent] = []
    stats = train_epoch(loader, model, nn.CrossEntropyLoss(), sgd(model), callbacks=[events.append])
    assert stats.batches == len(events) == math.ceil(samples / batch_size)
    assert stats.samples == samples == events[-1].samples_seen
    assert [e.batch for e in events] == list(range(stats.batches))
    assert sum(e.batch_size for e in events) == samples
    assert all(e.dataset_size == samples and e.num_batches == stats.batches for e in events)
    assert stats.loss == pytest.approx(
        sum(e.loss * e.batch_size for e in events) / samples, rel=1e-5
    )


def test_callbacks_run_once_per_batch_in_the_order_given() -> None:
    calls: list[tuple[str, int]] = []

    class Named:
        def __init__(self, name: str) -> None:
            self.name = name

        def on_batch_end(self, event: BatchEvent) -> None:
            calls.append((self.name, event.batch))

    model = FashionMLP(hidden_features=8)
    train_epoch(
        synthetic_loader(50, 16),
        model,
        nn.CrossEntropyLoss(),
        sgd(model),
        callbacks=[Named("a"), lambda e: calls.append(("f", e.batch)), Named("b")],
        epoch=3,
    )
    assert calls == [(name, batch) for batch in range(4) for name in ("a", "f", "b")]


def test_the_seeds_five_steps_run_in_the_seeds_order() -> None:
    steps: list[str] = []
    model = FashionMLP(hidden_features=8)
    model.register_forward_hook(lambda *_: steps.append("forward"))
    optimizer = sgd(model)
    zero_grad, step = optimizer.zero_grad, optimizer.step
    optimizer.zero_grad = lambda *a, **k: (steps.append("zero_grad"), zero_grad(*a, **k))[1]  # type: ignore[method-assign]
    optimizer.step = lambda *a, **k: (steps.append("step"), step(*a, **k))[1]  # type: ignore[method-assign]

    def loss_fn(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        steps.append("loss")
        pred.register_hook(lambda grad: steps.append("backward"))
        return nn.functional.cross_entropy(pred, y)

    train_epoch(synthetic_loader(20, 10), model, loss_fn, optimizer)
    assert steps == ["forward", "loss", "zero_grad", "backward", "step"] * 2


def test_no_per_batch_device_reads_unless_a_callback_asks(device_reads: list[str]) -> None:
    model = FashionMLP(hidden_features=8)
    loader = synthetic_loader(2000, 8)  # 250 batches: the finite check runs twice
    train_epoch(loader, model, nn.CrossEntropyLoss(), sgd(model), callbacks=[lambda e: None])
    assert len(device_reads) == 1 + 250 // FINITE_CHECK_EVERY, device_reads  # the mean, checks
    device_reads.clear()
    train_epoch(loader, model, nn.CrossEntropyLoss(), sgd(model), check_finite=False)
    assert len(device_reads) == 1, device_reads
    device_reads.clear()
    printer = PrintLoss(every=25, file=io.StringIO())
    train_epoch(loader, model, nn.CrossEntropyLoss(), sgd(model), callbacks=[printer])
    assert len(device_reads) == 1 + 2 + 10, device_reads  # and batches 0, 25, ..., 225


def test_model_is_left_training_and_the_event_carries_the_epoch() -> None:
    model = FashionMLP(hidden_features=8).eval()
    epochs: list[int | None] = []
    stats = train_epoch(
        synthetic_loader(10, 5),
        model,
        nn.CrossEntropyLoss(),
        sgd(model),
        callbacks=[lambda e: epochs.append(e.epoch)],
        epoch=2,
        device="cpu",
    )
    assert model.training and stats.epoch == 2 and epochs == [2, 2]


def test_loaders_without_length_train_and_empty_ones_are_refused() -> None:
    model = FashionMLP(hidden_features=8)
    batches: Any = iter([(torch.rand(2, 784), torch.tensor([0, 1]))] * 3)
    events: list[BatchEvent] = []
    stats = train_epoch(
        batches, model, nn.CrossEntropyLoss(), sgd(model), callbacks=[events.append]
    )
    assert (stats.batches, stats.samples) == (3, 6)
    assert [(e.num_batches, e.dataset_size, e.samples_seen) for e in events] == [
        (None, None, 2),
        (None, None, 4),
        (None, None, 6),
    ]
    empty = DataLoader(Subset(synthetic_loader(4, 2).dataset, []), batch_size=2)
    with pytest.raises(InvalidArgumentError, match="no batches"):
        train_epoch(empty, model, nn.CrossEntropyLoss(), sgd(model))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("batch", [3, 250])
def test_a_non_finite_loss_stops_training_naming_epoch_and_batch(
    bad: float, batch: int, device_reads: list[str]
) -> None:
    model = FashionMLP(hidden_features=8)
    calls = []

    def loss_fn(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        loss = nn.functional.cross_entropy(pred, y)
        return loss * bad if len(calls) == batch + 1 else loss

    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    with pytest.raises(
        NonFiniteLossError,
        match=rf"epoch 7, batch {batch} \(learning rate 0.5\)"
        r".*lower one \(e.g. 0.05\)",
    ):
        train_epoch(synthetic_loader(2400, 4), model, loss_fn, optimizer, epoch=7)
    checks = batch // FINITE_CHECK_EVERY + 1
    assert len(calls) == checks * FINITE_CHECK_EVERY  # stopped at the next check, not the end
    assert len(device_reads) == checks + 1, device_reads  # the checks, then one to find the batch


def test_the_finite_check_can_be_turned_off() -> None:
    model = FashionMLP(hidden_features=8)

    def nan_loss(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(pred, y) * float("nan")

    stats = train_epoch(synthetic_loader(40, 8), model, nan_loss, sgd(model), check_finite=False)
    assert math.isnan(stats.loss) and stats.batches == 5


@pytest.mark.real_data
def test_loss_falls_on_a_small_fixed_subset(real_data_root: Path) -> None:
    train, _ = make_loaders(real_data_root, 32, seed=0, limit=512)
    torch.manual_seed(0)
    model = FashionMLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = [train_epoch(train, model, nn.CrossEntropyLoss(), optimizer).loss for _ in range(5)]
    assert losses == sorted(losses, reverse=True)
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.real_data
def test_train_epoch_with_print_loss_is_the_seeds_own_training_function(
    real_data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train, _ = make_loaders(real_data_root, 64, limit=12_800)
    # The seed's pipeline made once, then served unshuffled to both loops alike.
    x, y = next(iter(DataLoader(train.dataset, batch_size=12_800)))
    loader = DataLoader(TensorDataset(x, y), batch_size=64)
    torch.manual_seed(0)
    start = FashionMLP().state_dict()
    models, printed = [], []
    for run in ("seed", "library"):
        model = FashionMLP()
        model.load_state_dict(start)
        optimizer = sgd(model)
        if run == "seed":
            seed_code.training(loader, model, nn.CrossEntropyLoss(), optimizer)
        else:
            train_epoch(loader, model, nn.CrossEntropyLoss(), optimizer, callbacks=[PrintLoss(100)])
        models.append(model.state_dict())
        printed.append(capsys.readouterr().out.splitlines())
    assert printed[0] == printed[1] and len(printed[0]) == 2, printed
    assert printed[0][1].endswith(" [6400/12800]")
    for name in start:
        assert torch.equal(models[0][name], models[1][name]), name


def test_the_scheduler_steps_after_every_optimizer_step() -> None:
    model, optimizer, scheduler = decaying_sgd()
    rates: list[float] = []
    train_epoch(
        synthetic_loader(40, 8),
        model,
        nn.CrossEntropyLoss(),
        optimizer,
        scheduler=scheduler,
        callbacks=[lambda e: rates.append(optimizer.param_groups[0]["lr"])],
    )
    assert rates == pytest.approx([0.01 / 2, 0.01 / 3, 0.01 / 4, 0.01 / 5, 0.01 / 6])


def stop_after(batch: int, at: str = "batch") -> Callable[[BatchEvent], None]:
    def callback(event: BatchEvent) -> None:
        if event.batch == batch:
            raise StopTraining("test", at=at)  # type: ignore[arg-type]

    return callback


@pytest.mark.parametrize("stop_at", [0, 7, 18, 19])
def test_an_epoch_finished_from_its_carry_is_bit_for_bit_the_unbroken_one(stop_at: int) -> None:
    loader = synthetic_loader(160, 8)  # 20 batches
    torch.manual_seed(0)
    start = FashionMLP(hidden_features=16).state_dict()
    runs = []
    for split in (False, True):
        model = FashionMLP(hidden_features=16)
        model.load_state_dict(start)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        seen: list[int] = []
        hooks: list[Any] = [lambda e: seen.append(e.samples_seen)]
        if split:
            part = train_epoch(
                loader,
                model,
                nn.CrossEntropyLoss(),
                optimizer,
                callbacks=[stop_after(stop_at), *hooks],
            )
            assert (part.stop, part.batches, part.samples) == (
                "batch",
                stop_at + 1,
                8 * (stop_at + 1),
            )
            stats = train_epoch(
                loader, model, nn.CrossEntropyLoss(), optimizer, callbacks=hooks, carry=part
            )
        else:
            stats = train_epoch(loader, model, nn.CrossEntropyLoss(), optimizer, callbacks=hooks)
        runs.append((model.state_dict(), stats, seen))
    (whole, unbroken, seen_whole), (resumed, finished, seen_split) = runs
    assert all(torch.equal(whole[key], resumed[key]) for key in whole)
    assert finished.loss_sum == unbroken.loss_sum and finished.loss == unbroken.loss
    assert (finished.samples, finished.batches, finished.stop) == (160, 20, None)
    assert seen_split == seen_whole  # samples_seen counts the carried batches too


def test_stop_at_epoch_runs_to_the_end_and_every_callback_sees_every_batch() -> None:
    model = FashionMLP(hidden_features=8)
    after: list[int] = []
    stats = train_epoch(
        synthetic_loader(80, 8),
        model,
        nn.CrossEntropyLoss(),
        sgd(model),
        callbacks=[stop_after(3, at="epoch"), lambda e: after.append(e.batch)],
    )
    assert stats.stop == "epoch" and stats.batches == 10 and after == list(range(10))
    after.clear()
    stats = train_epoch(
        synthetic_loader(80, 8),
        model,
        nn.CrossEntropyLoss(),
        sgd(model),
        callbacks=[stop_after(3), stop_after(2, at="epoch"), lambda e: after.append(e.batch)],
    )
    assert stats.stop == "batch" and stats.batches == 4 and after == [0, 1, 2, 3]
    with pytest.raises(InvalidArgumentError, match="'batch' or 'epoch'"):
        StopTraining(at="now")  # type: ignore[arg-type]


def test_epoch_stats_round_trip_through_a_dict() -> None:
    stats = EpochStats(epoch=2, loss_sum=12.5, samples=50, batches=5, seconds=1.5, stop="batch")
    assert stats.loss == 0.25 and stats.to_dict()["loss"] == 0.25
    assert EpochStats.from_dict(stats.to_dict()) == stats


def test_a_label_outside_the_classes_is_our_error() -> None:
    model = FashionMLP(hidden_features=8)
    labels = torch.tensor([0, 1, 10, 3])
    loader = DataLoader(TensorDataset(torch.rand(4, 784), labels), batch_size=2)
    with pytest.raises(InvalidArgumentError, match="a label of 10 is outside 0..9"):
        train_epoch(loader, model, nn.CrossEntropyLoss(), sgd(model))


def test_events_carry_the_global_step_and_the_learning_rate_used() -> None:
    model, optimizer, scheduler = decaying_sgd()
    seen: list[tuple[int, float | None]] = []
    for epoch in (1, 2):  # 5 batches each
        train_epoch(
            synthetic_loader(40, 8),
            model,
            nn.CrossEntropyLoss(),
            optimizer,
            scheduler=scheduler,
            epoch=epoch,
            callbacks=[lambda e: seen.append((e.step, e.lr))],
        )
    assert [step for step, _ in seen] == list(range(10))
    assert [lr for _, lr in seen] == pytest.approx([0.01 / (1 + step) for step in range(10)])
    seen.clear()
    train_epoch(
        synthetic_loader(40, 8),
        model,
        nn.CrossEntropyLoss(),
        optimizer,
        first_step=100,
        callbacks=[lambda e: seen.append((e.step, e.lr))],
    )
    assert [step for step, _ in seen] == [100, 101, 102, 103, 104]
