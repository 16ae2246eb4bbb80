from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import fashionmlp.loaders as loaders_module
from fashionmlp import (
    RECIPES,
    BatchEvent,
    CheckpointError,
    EpochReport,
    FashionMLP,
    FitResult,
    InvalidArgumentError,
    Recipe,
    StopTraining,
    fit,
    get_recipe,
    make_optimizer,
    make_scheduler,
    resolve_autocast,
)
from fashionmlp.train import FINITE_CHECK_EVERY


def test_the_seed_recipe_is_the_seed() -> None:
    seed = get_recipe("seed")
    assert (seed.optimizer, seed.lr, seed.momentum, seed.weight_decay) == ("sgd", 0.01, 0.0, 0.0)
    assert (seed.batch_size, seed.backend, seed.schedule) == (64, "torchvision", "constant")
    assert seed.augment is None and not seed.normalize and seed.autocast == "off"
    assert seed.label_smoothing == 0.0 and seed.log_every == 100
    optimizer = make_optimizer(seed, FashionMLP())
    assert type(optimizer) is torch.optim.SGD and make_scheduler(seed, optimizer, 938) is None


def test_shipped_recipes_train_the_default_model_on_the_tensor_backend() -> None:
    assert set(RECIPES) == {"seed", "fast", "long"}
    for name in ("fast", "long"):
        recipe = get_recipe(name)
        assert recipe.backend == "tensor" and recipe.name == name
        assert Recipe.from_dict(recipe.to_dict()) == recipe


def test_unknown_names_and_bad_settings_are_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="seed, fast, long"):
        get_recipe("fastest")
    for change in (
        {"epochs": 0},
        {"lr": -1.0},
        {"lr": float("nan")},
        {"optimizer": "lbfgs"},
        {"warmup": 1.0},
        {"label_smoothing": 1.0},
        {"autocast": "fp8"},
    ):
        with pytest.raises(InvalidArgumentError, match="recipe 'fast'"):
            get_recipe("fast").replace(**change)
    with pytest.raises(InvalidArgumentError, match="tensor"):
        get_recipe("seed").replace(hflip=True)
    with pytest.raises(InvalidArgumentError, match="unknown recipe settings: colour"):
        Recipe.from_dict({**get_recipe("seed").to_dict(), "colour": "red"})


def test_one_cycle_schedule_spans_every_step() -> None:
    recipe = get_recipe("fast").replace(epochs=2)
    optimizer = make_optimizer(recipe, FashionMLP(hidden_features=8))
    scheduler = make_scheduler(recipe, optimizer, steps_per_epoch=5)
    assert scheduler is not None
    rates = []
    for _ in range(10):  # the rate each of the 10 steps trains with
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert max(rates) == pytest.approx(recipe.lr, rel=0.05) and rates[-1] < recipe.lr / 1000


@pytest.mark.parametrize("steps", [1, 3, 4, 5, 8])
def test_very_short_schedules_still_work(steps: int) -> None:
    recipe = get_recipe("fast").replace(epochs=1)
    optimizer = make_optimizer(recipe, FashionMLP(hidden_features=8))
    scheduler = make_scheduler(recipe, optimizer, steps_per_epoch=steps)
    assert (scheduler is None) == (steps < 4)
    for _ in range(steps if scheduler else 0):
        optimizer.step()
        scheduler.step()  # type: ignore[union-attr]
        assert 0 < optimizer.param_groups[0]["lr"] <= recipe.lr


def test_autocast_resolution() -> None:
    cpu = torch.device("cpu")
    assert resolve_autocast(get_recipe("seed"), cpu) is None
    assert resolve_autocast(get_recipe("fast").replace(autocast="bf16"), cpu) is torch.bfloat16
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    expected = torch.bfloat16 if native else None
    assert resolve_autocast(get_recipe("fast"), cpu) is expected


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
    def stop_after_first(report: EpochReport) -> None:
        if report.epoch == 1:
            raise StopTraining

    path = tmp_path / "part.pt"
    part = fit(
        two_epochs(name),
        real_data_root,
        seed=4,
        checkpoint_path=path,
        epoch_callbacks=[stop_after_first],
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
FIT_OWN_READS_PER_EPOCH = 2


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
    real_load_split = loaders_module.load_split

    def training_split_only(root: object, split: str, **kwargs: object) -> object:
        assert split == "train", "the test set was read while tuning"
        return real_load_split(root, split, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(loaders_module, "load_split", training_split_only)
    result = fit(
        get_recipe("fast").replace(epochs=1), real_data_root, device="cpu", validation_size=5000
    )
    assert result.final.total == 5000
    assert result.history[0].train.samples == 55_000
    assert [sum(row) for row in result.final.confusion_matrix] == [500] * 10
