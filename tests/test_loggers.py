from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import fashionmlp.devices as devices_module
from conftest import synthetic_loader
from fashionmlp import (
    EpochReport,
    EpochStats,
    EvalResult,
    FashionMLP,
    InvalidArgumentError,
    MissingExtraError,
    RunConfig,
    fit,
    get_recipe,
    train_epoch,
)
from fashionmlp.loggers import BATCH_COLUMNS, EPOCH_COLUMNS, CSVLogger, TensorBoardLogger


def report(epoch: int, accuracy: float = 0.8) -> EpochReport:
    correct = int(100 * accuracy)
    matrix = tuple(
        tuple(
            correct if (i, j) == (0, 0) else 100 - correct if (i, j) == (0, 1) else 0
            for j in range(10)
        )
        for i in range(10)
    )
    return EpochReport(
        epoch=epoch,
        epochs=3,
        train=EpochStats(epoch=epoch, loss_sum=30.0 / epoch, samples=100, batches=10, seconds=1.0),
        eval=EvalResult(correct=correct, total=100, loss=0.5 / epoch, confusion_matrix=matrix),
        seconds=1.5 * epoch,
        lr=0.01 / epoch,
        step=10 * epoch,
        evaluated_on="validation",
    )


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def train_two_epochs(logger: CSVLogger | TensorBoardLogger, report_epochs: bool = False) -> None:
    """Two epochs of 10 batches (steps 0..19) on a tiny model, the logger as a callback."""
    model = FashionMLP(hidden_features=8)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for epoch in (1, 2):
        train_epoch(
            synthetic_loader(80, 8),
            model,
            nn.CrossEntropyLoss(),
            optimizer,
            callbacks=[logger],
            epoch=epoch,
        )
        if report_epochs:
            logger.on_epoch_end(report(epoch))
    logger.close()


def test_each_epoch_is_one_row_written_as_it_comes(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    logger = CSVLogger(path)
    logger.on_epoch_end(report(1, 0.81))
    assert [row["epoch"] for row in rows(path)] == ["1"]  # flushed: readable at once
    logger.on_epoch_end(report(2, 0.85))
    logger.close()
    written, kept = rows(path), report(2, 0.85).eval
    assert tuple(written[0]) == EPOCH_COLUMNS
    assert written[1] == {
        "epoch": "2",
        "step": "20",
        "train_loss": "0.15",
        "eval_loss": "0.25",
        "eval_accuracy": "0.85",
        "lr": "0.005",
        "seconds": "3.0",
        "evaluated_on": "validation",
        # the figures this record lacks are empty; those of its confusion matrix are there
        "eval_top3_accuracy": "",
        "eval_top5_accuracy": "",
        **{f"eval_{name}": str(getattr(kept, name)) for name in MACROS},
        "eval_nll": "",
        "eval_ece": "",
    }


MACROS = ("macro_precision", "macro_recall", "macro_f1")


def test_an_empty_file_is_taken_as_new_and_gets_the_header(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.touch()  # made beforehand, by a user or a tool
    logger = CSVLogger(path)
    logger.on_epoch_end(report(1))
    logger.close()
    assert path.read_text().splitlines()[0] == ",".join(EPOCH_COLUMNS)
    assert [row["epoch"] for row in rows(path)] == ["1"]


def test_a_resumed_run_continues_the_file_without_repeats(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    first = CSVLogger(path)
    first.on_epoch_end(report(1))
    first.on_epoch_end(report(2))
    first.close()  # stopped; epoch 2's checkpoint was not written, so it is trained again
    resumed = CSVLogger(path)
    for epoch in (2, 3):
        resumed.on_epoch_end(report(epoch))
    resumed.close()
    assert [row["epoch"] for row in rows(path)] == ["1", "2", "3"]


def test_a_file_of_something_else_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "mine.csv"
    path.write_text("name,score\nann,3\n")
    with pytest.raises(InvalidArgumentError, match="not a fashionmlp log"):
        CSVLogger(path)
    assert path.read_text() == "name,score\nann,3\n"
    with pytest.raises(InvalidArgumentError, match="every"):
        CSVLogger(tmp_path / "x.csv", every=-1)
    with pytest.raises(InvalidArgumentError, match="batches_path"):
        CSVLogger()


def test_batch_rows_come_every_n_steps_with_their_step_and_rate(tmp_path: Path) -> None:
    logger = CSVLogger(tmp_path / "epochs.csv", batches_path=tmp_path / "batches.csv", every=4)
    train_two_epochs(logger)
    written = rows(tmp_path / "batches.csv")
    assert tuple(written[0]) == BATCH_COLUMNS
    assert [int(row["step"]) for row in written] == [0, 4, 8, 12, 16]
    assert [(row["epoch"], row["batch"]) for row in written[2:4]] == [("1", "8"), ("2", "2")]
    assert all(float(row["lr"]) == 0.05 and float(row["loss"]) > 0 for row in written)
    assert rows(tmp_path / "epochs.csv") == []  # there, with its header, from the start


def test_only_the_first_process_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices_module, "rank", lambda: 1)  # as on rank 1 under torchrun
    logger = CSVLogger(tmp_path / "metrics.csv")
    logger.on_epoch_end(report(1))
    logger.close()
    assert not (tmp_path / "metrics.csv").exists()
    pytest.importorskip("tensorboard")
    board = TensorBoardLogger(tmp_path / "tb")
    board.on_epoch_end(report(1))
    board.close()
    assert not (tmp_path / "tb").exists()


def test_tensorboard_event_files_load_in_tensorboards_reader(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train_two_epochs(TensorBoardLogger(tmp_path / "tb", every=5), report_epochs=True)
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/batch_loss", "train/lr", "epoch/train_loss", "epoch/validation_accuracy"} <= tags
    assert "epoch/validation_loss" in tags
    assert [e.step for e in events.Scalars("train/batch_loss")] == [0, 5, 10, 15]
    accuracy = events.Scalars("epoch/validation_accuracy")
    assert [(e.step, round(e.value, 2)) for e in accuracy] == [(10, 0.8), (20, 0.8)]


def test_tensorboard_without_its_extra_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'fashionmlp\[tensorboard\]'"):
        TensorBoardLogger(tmp_path / "tb")


@pytest.mark.real_data
def test_tensorboard_writes_hyperparameters_with_final_metrics_for_the_hparams_tab(
    real_data_root: Path, tmp_path: Path
) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    config = RunConfig(get_recipe("fast").replace(epochs=1), seed=5, limit=1000)
    logger = TensorBoardLogger(tmp_path / "tb")
    result = fit(config, root=real_data_root, device="cpu", callbacks=[logger])
    logger.close()

    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    content = events.PluginTagToContent("hparams")
    plugin = {
        tag: plugin_data_pb2.HParamsPluginData.FromString(raw) for tag, raw in content.items()
    }
    experiment = plugin["_hparams_/experiment"].experiment
    names = {info.name.tag for info in experiment.metric_infos}
    assert {"hparams/test_accuracy", "hparams/test_loss", "hparams/test_macro_f1"} <= names
    assert {"hparams/test_ece", "hparams/test_nll", "hparams/test_top5_accuracy"} <= names
    started = plugin["_hparams_/session_start_info"].session_start_info.hparams
    assert started["lr"].number_value == pytest.approx(config.recipe.lr)
    assert started["seed"].number_value == 5 and started["limit"].number_value == 1000
    assert started["model.hidden_features"].number_value == 512
    assert started["optimizer"].string_value == config.recipe.optimizer
    # The tab shows a session's metrics from scalars of those tags in the same run.
    (final,) = events.Scalars("hparams/test_accuracy")
    assert final.value == pytest.approx(result.final.accuracy)
    assert final.step == result.history[-1].step
