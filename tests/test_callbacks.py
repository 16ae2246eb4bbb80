from __future__ import annotations

import dataclasses
import io
import os
import signal
import time

import pytest
import torch

from fashionmlp import (
    BatchEvent,
    Callback,
    InvalidArgumentError,
    LossHistory,
    PrintLoss,
    ProgressBar,
    StopOnSignal,
    StopTraining,
)


def event(
    batch: int,
    loss: float = 0.5,
    *,
    batch_size: int = 64,
    epoch: int = 1,
    num_batches: int = 938,
    step: int | None = None,
) -> BatchEvent:
    return BatchEvent(
        epoch=epoch,
        batch=batch,
        num_batches=num_batches,
        batch_size=batch_size,
        samples_seen=(batch + 1) * batch_size,
        dataset_size=60_000,
        loss_tensor=torch.tensor(loss),
        step=(epoch - 1) * num_batches + batch if step is None else step,
        lr=0.01,
    )


def test_print_loss_prints_the_seeds_line_every_100_batches() -> None:
    out = io.StringIO()
    printer = PrintLoss(every=100, file=out)
    for batch in range(250):
        printer.on_batch_end(event(batch, loss=2.0 + batch / 1000))
    assert out.getvalue().splitlines() == [
        "Loss: 2.0000 [0/60000]",
        "Loss: 2.1000 [6400/60000]",
        "Loss: 2.2000 [12800/60000]",
    ]


def test_print_loss_reads_the_loss_only_on_printed_batches(device_reads: list[str]) -> None:
    printer = PrintLoss(every=10, file=io.StringIO())
    for batch in range(35):
        printer(event(batch))
    assert len(device_reads) == 4  # batches 0, 10, 20, 30


def test_print_loss_refuses_every_below_one() -> None:
    with pytest.raises(InvalidArgumentError):
        PrintLoss(every=0)


def test_event_is_frozen_and_caches_its_float() -> None:
    e = event(3, loss=1.25)
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.batch = 4  # type: ignore[misc]
    assert e.loss == 1.25 and e.loss is e.loss
    assert e.current == 3 * 64


def test_loss_history_collects_pairs_across_epochs() -> None:
    history = LossHistory(every=2)
    for batch in range(5):
        history.on_batch_end(event(batch, loss=float(batch), num_batches=5))
    for batch in range(3):  # a second epoch: the events' steps keep counting
        history(event(batch, loss=10.0 + batch, epoch=2, num_batches=5))
    assert history.pairs == [(0, 0.0), (2, 2.0), (4, 4.0), (6, 11.0)]
    assert history.steps == [0, 2, 4, 6] and len(history) == 4
    history(event(3, loss=99.0, epoch=2, num_batches=5))  # step 8, after an earlier read
    assert history.losses == [0.0, 2.0, 4.0, 11.0, 99.0]


def test_the_shipped_callbacks_are_callbacks() -> None:
    assert all(
        isinstance(callback, Callback) for callback in (PrintLoss(), LossHistory(), StopOnSignal())
    )


def test_loss_history_resumes_its_pairs_from_its_state() -> None:
    history = LossHistory(every=2)
    for batch in range(5):
        history(event(batch, loss=float(batch), num_batches=5))
    resumed = LossHistory()
    resumed.load_state_dict(history.state_dict())
    resumed(event(0, loss=7.0, epoch=2, num_batches=5))  # step 5: not kept (every 2)
    resumed(event(1, loss=8.0, epoch=2, num_batches=5))  # step 6
    assert resumed.pairs == [(0, 0.0), (2, 2.0), (4, 4.0), (6, 8.0)]


def test_progress_bar_shows_each_epoch_with_its_loss_and_closes_it() -> None:
    pytest.importorskip("tqdm")
    out = io.StringIO()
    bar = ProgressBar(every=2, file=out, mininterval=0)
    for epoch in (1, 2):
        for batch in range(5):
            bar(event(batch, loss=epoch + batch / 10, epoch=epoch, num_batches=5))
    shown = out.getvalue()
    for epoch in (1, 2):
        assert f"epoch {epoch}: 100%" in shown and "5/5" in shown
    assert "loss=1.4000" in shown and "loss=2.2000" in shown and "loss=1.1000" not in shown
    assert shown.endswith("\r")  # the finished bar was cleared (leave=False)
    bar.close()  # closing again is harmless
    with pytest.raises(InvalidArgumentError):
        ProgressBar(every=0)


def test_stop_on_signal_stops_after_the_batch_and_restores_the_handlers() -> None:
    before = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    stop = StopOnSignal()
    with stop.installed():
        stop(event(0))  # nothing received yet
        os.kill(os.getpid(), signal.SIGTERM)  # recorded, not raised: the batch finishes
        assert stop.received == signal.SIGTERM
        with pytest.raises(StopTraining, match="signal 15 after batch 1 of epoch 1") as info:
            stop(event(1))
        assert info.value.at == "batch"
    assert {number: signal.getsignal(number) for number in before} == before


def test_a_second_ctrl_c_raises_at_once() -> None:
    stop = StopOnSignal()
    with stop.installed():
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.received == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # not reached: the handler raises as soon as the signal lands
