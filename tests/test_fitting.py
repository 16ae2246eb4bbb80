from __future__ import annotations

import inspect
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import fashionmlp.data as data_module
from conftest import BatchCounter
from fashionmlp import (
    BatchEvent,
    CheckpointError,
    EpochReport,
    EpochStats,
    EvalResult,
    FitResult,
    InvalidArgumentError,
    Parts,
    Recipe,
    RunConfig,
    StopOnSignal,
    StopTraining,
    evaluate,
    fit,
    get_recipe,
    load_dataset,
    make_loaders,
)
from fashionmlp.callbacks import EarlyStopping, KeepBest
from fashionmlp.config import FASHION_MNIST_NORMALIZATION, NO_NORMALIZATION
from fashionmlp.train import FINITE_CHECK_EVERY

SMALL: dict[str, Any] = {"device": "cpu", "limit": 3000}


def two_epochs(name: str) -> Recipe:
    """The recipe the resume tests run: two epochs on the first 3,000 images."""
    return get_recipe(name).replace(epochs=2)


@pytest.fixture(scope="module")
def unbroken(real_data_root: Path) -> dict[str, FitResult]:
    """The runs the resume tests must reproduce, one per recipe, trained once."""
    return {
        name: fit(two_epochs(name), real_data_root, seed=4, **SMALL) for name in ("fast", "seed")
    }


def assert_same_run(got: FitResult, expected: FitResult) -> None:
    assert got.finished and [r.epoch for r in got.history] == [1, 2]
    for key, value in expected.model.state_dict().items():
        assert torch.equal(value, got.model.state_dict()[key]), key
    assert got.final == expected.final
    for ours, theirs in zip(got.history, expected.history):
        assert ours.eval == theirs.eval
        assert (ours.train.samples, ours.train.batches) == (
            theirs.train.samples,
            theirs.train.batches,
        )
        assert ours.train.loss == pytest.approx(theirs.train.loss, rel=1e-9)


def stop_in_epoch_2(at_batch: int, pause: float = 0.0) -> Callable[[BatchEvent], None]:
    """A batch callback that stops the run after batch ``at_batch`` of epoch 2."""

    def callback(event: BatchEvent) -> None:
        if event.epoch == 2 and event.batch == at_batch:
            time.sleep(pause)  # time that the resumed run must still count
            raise StopTraining

    return callback


@pytest.mark.real_data
@pytest.mark.parametrize("name", ["fast", "seed"])
def test_resuming_after_an_epoch_gives_the_uninterrupted_weights(
    real_data_root: Path, tmp_path: Path, name: str, unbroken: dict[str, FitResult]
) -> None:
    class StopAfterFirst:
        def on_epoch_end(self, report: EpochReport) -> None:
            if report.epoch == 1:
                raise StopTraining

    path = tmp_path / "part.pt"
    part = fit(
        two_epochs(name),
        real_data_root,
        seed=4,
        checkpoint_path=path,
        callbacks=[StopAfterFirst()],
        **SMALL,
    )
    assert not part.finished and len(part.history) == 1
    resumed = fit(
        two_epochs(name), real_data_root, seed=4, checkpoint_path=path, resume_from=path, **SMALL
    )
    assert_same_run(resumed, unbroken[name])

    with pytest.raises(CheckpointError, match="other settings"):
        fit(two_epochs(name), real_data_root, seed=5, resume_from=path, **SMALL)


@pytest.mark.real_data
@pytest.mark.parametrize(("name", "stop_at"), [("fast", 1), ("seed", 30), ("seed", 46)])
def test_stopping_part_way_through_an_epoch_resumes_to_the_same_weights(
    real_data_root: Path, tmp_path: Path, name: str, stop_at: int, unbroken: dict[str, FitResult]
) -> None:
    path = tmp_path / "part.pt"
    part = fit(
        two_epochs(name),
        real_data_root,
        seed=4,
        checkpoint_path=path,
        callbacks=[stop_in_epoch_2(stop_at)],
        **SMALL,
    )
    assert part.stopped_at == (2, stop_at + 1) and not part.finished
    assert len(part.history) == 1
    resumed = fit(two_epochs(name), real_data_root, seed=4, resume_from=path, **SMALL)
    assert resumed.stopped_at is None
    assert_same_run(resumed, unbroken[name])


@pytest.mark.real_data
def test_a_run_stopped_twice_in_one_epoch_resumes_to_the_unbroken_run(
    real_data_root: Path, tmp_path: Path, unbroken: dict[str, FitResult]
) -> None:
    path = tmp_path / "part.pt"
    options: dict[str, Any] = {"seed": 4, "checkpoint_path": path, **SMALL}
    first = fit(two_epochs("seed"), real_data_root, callbacks=[stop_in_epoch_2(10, 0.3)], **options)
    assert first.stopped_at == (2, 11)
    second = fit(
        two_epochs("seed"),
        real_data_root,
        resume_from=path,
        callbacks=[stop_in_epoch_2(30, 0.3)],
        **options,
    )
    assert second.stopped_at == (2, 31) and len(second.history) == 1
    resumed = fit(two_epochs("seed"), real_data_root, resume_from=path, **options)
    assert_same_run(resumed, unbroken["seed"])
    # Both parts' pauses are in the epoch's wall time, as in an unbroken run that paused.
    assert resumed.history[1].seconds - resumed.history[0].seconds >= 0.6


#: Reads of a tensor's value that fit() itself makes per epoch, besides train_epoch's and
#: evaluate's own.
FIT_OWN_READS_PER_EPOCH = 0


@pytest.mark.real_data
def test_fit_reads_from_the_device_a_fixed_number_of_times_per_epoch(
    real_data_root: Path, device_reads: list[str]
) -> None:
    recipe = get_recipe("seed").replace(backend="tensor")
    counts = []
    for epochs in (1, 3):
        device_reads.clear()
        fit(recipe.replace(epochs=epochs), real_data_root, seed=0, device="cpu", limit=12_800)
        counts.append(len(device_reads))
    # 200 batches: train_epoch reads its mean and checks for a non-finite loss twice, and
    # evaluate reads once.
    per_epoch = 1 + 200 // FINITE_CHECK_EVERY + 1 + FIT_OWN_READS_PER_EPOCH
    assert counts[1] - counts[0] == 2 * per_epoch, device_reads


@pytest.mark.real_data
def test_the_same_seed_gives_the_same_model_and_another_seed_does_not(real_data_root: Path) -> None:
    recipe = get_recipe("fast").replace(epochs=1)
    first, again, other = (fit(recipe, real_data_root, seed=s, **SMALL) for s in (1, 1, 2))
    assert torch.equal(first.model.fc1.weight, again.model.fc1.weight)
    assert not torch.equal(first.model.fc1.weight, other.model.fc1.weight)


@pytest.mark.real_data
def test_tuning_on_the_validation_split_never_reads_the_test_set(
    real_data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_load_split = data_module.load_split

    def training_split_only(root: object, split: str, **kwargs: object) -> object:
        assert split == "train", "the test set was read while tuning"
        return real_load_split(root, split, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(data_module, "load_split", training_split_only)
    result = fit(
        get_recipe("fast").replace(epochs=1), real_data_root, device="cpu", validation_size=5000
    )
    assert result.final.total == 5000
    assert result.history[0].train.samples == 55_000
    assert [sum(row) for row in result.final.confusion_matrix] == [500] * 10


@pytest.mark.real_data
def test_a_batch_callback_can_stop_the_run_after_its_epoch(
    real_data_root: Path, tmp_path: Path, unbroken: dict[str, FitResult]
) -> None:
    def after_this_epoch(event: BatchEvent) -> None:
        if event.epoch == 1 and event.batch == 5:
            raise StopTraining("enough", at="epoch")

    path = tmp_path / "part.pt"
    part = fit(
        two_epochs("seed"),
        real_data_root,
        seed=4,
        checkpoint_path=path,
        callbacks=[after_this_epoch],
        **SMALL,
    )
    assert not part.finished and part.stopped_at is None and len(part.history) == 1
    assert part.history[0].train.batches == 47 and part.history[0].train.stop == "epoch"
    assert part.history[0].eval == unbroken["seed"].history[0].eval
    resumed = fit(two_epochs("seed"), real_data_root, seed=4, resume_from=path, **SMALL)
    assert_same_run(resumed, unbroken["seed"])


@pytest.mark.real_data
def test_a_second_ctrl_c_leaves_the_last_checkpoint_as_it_was(
    real_data_root: Path, tmp_path: Path
) -> None:
    path = tmp_path / "run.pt"
    saved: list[bytes] = []

    def ctrl_c_twice(event: BatchEvent) -> None:
        if event.epoch == 2 and event.batch == 3:
            saved.append(path.read_bytes())  # the checkpoint of epoch 1
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)

    stop = StopOnSignal()
    with stop.installed(), pytest.raises(KeyboardInterrupt):
        fit(
            two_epochs("seed"),
            real_data_root,
            seed=4,
            checkpoint_path=path,
            callbacks=[ctrl_c_twice, stop],
            **SMALL,
        )
    assert path.read_bytes() == saved[0]


@pytest.mark.real_data
def test_the_last_evaluation_keeps_every_samples_prediction(
    real_data_root: Path, unbroken: dict[str, FitResult]
) -> None:
    run = unbroken["fast"]
    assert run.history[0].eval.predictions is None  # only the last epoch keeps them
    predictions = run.final.predictions
    assert predictions is not None and len(predictions) == run.final.total == 3000
    # The model standardizes its input itself, and the run evaluated in plain float32.
    _, test = make_loaders(real_data_root, backend="tensor", limit=3000)
    expected = evaluate(test, run.model, keep_predictions=True).predictions
    assert expected is not None and torch.equal(predictions, expected)


@pytest.mark.real_data
def test_a_resume_refuses_a_checkpoint_of_another_shape(
    real_data_root: Path, tmp_path: Path
) -> None:
    path = tmp_path / "run.pt"
    fit(two_epochs("seed").replace(epochs=1), real_data_root, seed=1, checkpoint_path=path, **SMALL)
    wider = two_epochs("seed").replace(model={"hidden_features": 256})
    with pytest.raises(CheckpointError, match="does not fit this model"):
        fit(wider, real_data_root, seed=1, resume_from=path, **SMALL)


@pytest.mark.real_data
def test_a_variant_trains_and_the_model_carries_the_recipes_normalization(
    real_data_root: Path,
) -> None:
    variant = {"hidden_features": 64, "hidden_layers": 3, "dropout": 0.2}
    recipe = get_recipe("fast").replace(epochs=1, model=variant)
    result = fit(recipe, real_data_root, seed=0, **SMALL)
    config = result.model.config
    assert (config.hidden_features, config.hidden_layers, config.dropout) == (64, 3, 0.2)
    assert config.normalize == FASHION_MNIST_NORMALIZATION and config == recipe.model
    plain = recipe.replace(model={"normalize": NO_NORMALIZATION})
    assert fit(plain, real_data_root, **SMALL).model.config.normalize == NO_NORMALIZATION


def test_fit_and_make_loaders_default_like_the_command_line() -> None:
    assert inspect.signature(fit).parameters["device"].default == "auto"
    assert inspect.signature(fit).parameters["root"].default is None
    assert inspect.signature(make_loaders).parameters["root"].default is None


@pytest.mark.real_data
def test_a_resumed_runs_events_and_reports_continue_the_global_step(
    real_data_root: Path, tmp_path: Path, unbroken: dict[str, FitResult]
) -> None:
    path, steps = tmp_path / "part.pt", []
    first = fit(
        two_epochs("seed"),
        real_data_root,
        seed=4,
        checkpoint_path=path,
        callbacks=[stop_in_epoch_2(9), lambda event: steps.append(event.step)],
        **SMALL,
    )
    resumed = fit(
        two_epochs("seed"),
        real_data_root,
        seed=4,
        resume_from=path,
        callbacks=[lambda e: steps.append(e.step)],
        **SMALL,
    )
    per_epoch = first.history[0].train.batches  # 47 batches of 64 in 3,000 images
    assert steps == list(range(2 * per_epoch))  # each step once, in order, across the resume
    assert [r.step for r in resumed.history] == [per_epoch, 2 * per_epoch]
    assert [r.step for r in unbroken["seed"].history] == [per_epoch, 2 * per_epoch]


# --- build once, run many: data passed in, models of one's own, the hook protocol ----------


@pytest.mark.real_data
def test_five_runs_with_the_data_passed_in_read_the_files_once(
    real_data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[str] = []
    real_read = data_module._read_bytes

    def counting(path: Path) -> bytes:
        reads.append(path.name)
        return real_read(path)

    monkeypatch.setattr(data_module, "_read_bytes", counting)
    data = load_dataset(real_data_root)
    recipe = get_recipe("seed").replace(epochs=1, backend="tensor")
    results = [fit(recipe, data=data, seed=seed, device="cpu", limit=640) for seed in range(5)]
    assert sorted(reads) == sorted(
        [
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        ]
    )
    assert (
        len({float(r.model.fc1.weight.detach().sum()) for r in results}) == 5
    )  # five runs, five seeds


class SmallCNN(nn.Module):
    """A model of the user's own: two convolutions, then two linear layers."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3), nn.ReLU()
        )
        self.hidden = nn.Linear(8 * 11 * 11, 32)
        self.out = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.hidden(self.features(x).flatten(1))))


@pytest.mark.real_data
def test_a_cnn_of_ones_own_trains_under_the_fast_recipe_and_resumes_exactly(
    real_data_root: Path, tmp_path: Path
) -> None:
    data = load_dataset(real_data_root)
    recipe = two_epochs("fast").replace(batch_size=256)  # 12 steps an epoch

    def cnn() -> SmallCNN:
        torch.manual_seed(7)
        return SmallCNN()

    unbroken = fit(recipe, data=data, model=cnn(), seed=4, **SMALL)
    assert unbroken.finished and unbroken.final.accuracy > 0.5
    path = tmp_path / "cnn.pt"
    part = fit(
        recipe,
        data=data,
        model=cnn(),
        seed=4,
        checkpoint_path=path,
        callbacks=[stop_in_epoch_2(5)],
        **SMALL,
    )
    assert part.stopped_at == (2, 6)
    resumed = fit(recipe, data=data, model=SmallCNN(), seed=4, resume_from=path, **SMALL)
    assert_same_run(resumed, unbroken)


@pytest.mark.real_data
def test_a_model_in_float64_gets_its_input_in_float64(real_data_root: Path) -> None:
    seen: list[torch.dtype] = []
    model = SmallCNN().double()
    model.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0].dtype))
    recipe = get_recipe("seed").replace(epochs=1, backend="tensor")
    result = fit(recipe, real_data_root, model=model, device="cpu", limit=256)
    assert result.finished and set(seen) == {torch.float64}


class OutsideLogger:
    """A logger written outside the package: it needs no change anywhere in it."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, object]] = []

    def on_fit_start(self, run: Any) -> None:
        self.seen.append(("start", run.config.recipe.name))

    def on_epoch_end(self, report: EpochReport) -> None:
        self.seen.append(("epoch", report.epoch))

    def on_fit_end(self, result: FitResult) -> None:
        self.seen.append(("end", result.finished))


@pytest.mark.real_data
def test_a_callbacks_state_resumes_and_an_outside_logger_sees_the_whole_run(
    real_data_root: Path, tmp_path: Path
) -> None:
    path = tmp_path / "part.pt"
    counter, logger = BatchCounter(), OutsideLogger()
    options: dict[str, Any] = {"seed": 4, "checkpoint_path": path, **SMALL}
    fit(two_epochs("seed"), real_data_root, callbacks=[counter, stop_in_epoch_2(9)], **options)
    assert counter.batches == 47 + 10  # epoch 1, and batches 0..9 of epoch 2
    counter_again = BatchCounter()  # a new object, as in a new process
    fit(
        two_epochs("seed"),
        real_data_root,
        resume_from=path,
        callbacks=[counter_again, logger],
        **options,
    )
    assert counter_again.batches == 2 * 47
    assert logger.seen == [("start", "seed"), ("epoch", 2), ("end", True)]


def test_fit_of_built_parts_refuses_the_options_of_building() -> None:
    with pytest.raises(InvalidArgumentError, match="leave out seed, device"):
        fit(object.__new__(Parts), seed=3, device="cpu")


# --- validation-driven callbacks: early stopping and the best epoch's model ------------------


@pytest.mark.real_data
def test_early_stopping_and_keep_best_resume_their_state(
    real_data_root: Path, tmp_path: Path
) -> None:
    recipe = get_recipe("seed").replace(epochs=6, backend="tensor", lr=0.5)  # it overshoots
    options: dict[str, Any] = {"seed": 1, "limit": 2000, "validation_size": 500, "device": "cpu"}

    def callbacks() -> list[Any]:  # no gain of 99 points comes: a stop after epoch 4
        return [EarlyStopping(3, min_delta=0.99), KeepBest()]

    unbroken_stop, unbroken_keep = callbacks()
    unbroken = fit(recipe, real_data_root, callbacks=[unbroken_stop, unbroken_keep], **options)
    accuracies = [r.eval.accuracy for r in unbroken.history]
    assert unbroken_stop.stopped_epoch == 4 and not unbroken.finished  # stopped early
    assert unbroken_keep.best_epoch == 1 + accuracies.index(max(accuracies))
    best_weights = unbroken.model.state_dict()
    path = tmp_path / "part.pt"
    fit(
        recipe,
        real_data_root,
        checkpoint_path=path,
        callbacks=[*callbacks(), stop_in_epoch_2(3)],
        **options,
    )
    stop, keep = callbacks()
    resumed = fit(recipe, real_data_root, resume_from=path, callbacks=[stop, keep], **options)
    assert (keep.best_epoch, stop.stopped_epoch) == (
        unbroken_keep.best_epoch,
        unbroken_stop.stopped_epoch,
    )
    assert len(resumed.history) == len(unbroken.history)
    for name, value in best_weights.items():
        assert torch.equal(resumed.model.state_dict()[name], value), name


def test_early_stopping_waits_its_patience_and_counts_only_real_gains() -> None:
    stop = EarlyStopping(2, min_delta=0.01)

    def epoch(number: int, correct: int) -> EpochReport:
        matrix = tuple(tuple(correct if i == j == 0 else 0 for j in range(10)) for i in range(10))
        evaluation = EvalResult(correct=correct, total=100, loss=0.5, confusion_matrix=matrix)
        train = EpochStats(epoch=number, loss_sum=1.0, samples=1, batches=1, seconds=1.0)
        return EpochReport(number, 9, train, evaluation, seconds=1.0, lr=0.1)

    stop.on_epoch_end(epoch(1, 80))
    stop.on_epoch_end(epoch(2, 80))  # no gain
    stop.on_epoch_end(epoch(3, 85))  # a gain: the patience starts again
    stop.on_epoch_end(epoch(4, 85))
    with pytest.raises(StopTraining):
        stop.on_epoch_end(epoch(5, 85))  # two epochs without a gain above 0.01
    assert stop.stopped_epoch == 5
    again = EarlyStopping(9)
    again.load_state_dict(stop.state_dict())
    assert again.state_dict() == stop.state_dict()


@pytest.mark.parametrize("patience", [0, True, 2.0])
def test_early_stopping_refuses_a_patience_that_is_not_a_whole_number_of_at_least_1(
    patience: Any,
) -> None:
    with pytest.raises(InvalidArgumentError, match="patience must be a whole number of at least 1"):
        EarlyStopping(patience)


@pytest.mark.real_data
def test_29_3_with_keep_best_the_result_and_the_loggers_describe_the_model_returned(
    real_data_root: Path, tmp_path: Path
) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from fashionmlp.callbacks import KeepBest
    from fashionmlp.loggers import TensorBoardLogger

    data = load_dataset(real_data_root, test=False)
    keep, board = KeepBest(), TensorBoardLogger(tmp_path / "tb")
    recipe = get_recipe("seed").replace(epochs=4, lr=0.2)  # its best epoch is the third
    config = RunConfig(recipe, seed=3, limit=6000, validation_size=2000)
    result = fit(config, data=data, device="cpu", callbacks=[keep, board])
    board.close()
    assert result.model_epoch == keep.best_epoch == 3
    validation = make_loaders(config, data=data).test
    assert result.final.accuracy == evaluate(validation, result.model).accuracy
    assert result.final == result.history[keep.best_epoch - 1].eval
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    (figure,) = events.Scalars("hparams/validation_accuracy")
    assert figure.value == pytest.approx(result.final.accuracy)
