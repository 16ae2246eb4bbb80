from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from conftest import BatchCounter, resave, synthetic_loader
from fashionmlp import (
    CheckpointError,
    EpochReport,
    EpochStats,
    FashionMLP,
    InvalidArgumentError,
    Parts,
    RunConfig,
    evaluate,
    get_recipe,
    save_checkpoint,
)
from fashionmlp.callbacks import Hooks
from fashionmlp.train import TrainState, make_optimizer, make_scheduler

CONFIG = RunConfig(get_recipe("fast").replace(epochs=3), seed=5, limit=100)


def new_parts(config: RunConfig = CONFIG) -> Parts:
    """Parts of a small run over synthetic data, as build() would make them."""
    model = FashionMLP(hidden_features=8)
    optimizer = make_optimizer(config.recipe, model)
    loader = synthetic_loader(40, 4)
    train = DataLoader(loader.dataset, batch_size=4, generator=torch.Generator().manual_seed(1))
    return Parts(
        config=config,
        model=model,
        train=train,
        evaluation=loader,
        optimizer=optimizer,
        scheduler=make_scheduler(config.recipe, optimizer, steps_per_epoch=10),
        train_loss=nn.CrossEntropyLoss(),
        eval_loss=nn.CrossEntropyLoss(),
        device=torch.device("cpu"),
        autocast=None,
        normalized_by="model",
    )


def new_state(config: RunConfig = CONFIG, hooks: Hooks | None = None) -> TrainState:
    return TrainState(new_parts(config), hooks)


def advance(state: TrainState) -> None:
    """Train a few steps and draw from the loader's generator, as an epoch would."""
    for _ in range(3):
        state.model(torch.rand(4, 784)).sum().backward()
        state.parts.optimizer.step()
        assert state.parts.scheduler is not None
        state.parts.scheduler.step()
        torch.rand(5, generator=state.parts.generator)


def a_report(state: TrainState) -> EpochReport:
    stats = EpochStats(epoch=1, loss_sum=30.0, samples=100, batches=10, seconds=2.0)
    result = evaluate(synthetic_loader(20, 10), state.model)
    return state.finish_epoch(stats, result, evaluation_seconds=0.5)


def test_run_config_round_trips_and_refuses_what_it_does_not_know() -> None:
    assert RunConfig.from_dict(CONFIG.to_dict()) == CONFIG
    assert (
        CONFIG.evaluated_on == "test"
        and RunConfig(CONFIG.recipe, validation_size=50).evaluated_on == "validation"
    )
    with pytest.raises(InvalidArgumentError, match="unknown setting 'colour'"):
        RunConfig.from_dict({**CONFIG.to_dict(), "colour": "red"})
    with pytest.raises(InvalidArgumentError, match="missing settings 'seed', 'limit'"):
        RunConfig.from_dict({"recipe": CONFIG.recipe.to_dict()})
    with pytest.raises(InvalidArgumentError, match="limit"):
        RunConfig(CONFIG.recipe, limit=0)


def test_a_finished_epoch_becomes_a_report_with_its_time_and_rate() -> None:
    state = new_state()
    first = a_report(state)
    assert (first.epoch, first.epochs, first.seconds) == (1, 3, 2.5)
    assert first.lr == state.parts.optimizer.param_groups[0]["lr"]
    second = a_report(state)
    assert (second.epoch, second.seconds, state.epochs_done) == (2, 5.0, 2)
    assert EpochReport.from_dict(second.to_dict()) == second


def test_the_whole_state_survives_a_save_and_a_load(tmp_path: Path) -> None:
    state = new_state()
    state.start_epoch()
    advance(state)
    a_report(state)
    epoch_start = state.parts.generator.get_state()
    state.start_epoch()
    advance(state)  # part of epoch 2, then a stop
    partial = EpochStats(epoch=2, loss_sum=3.25, samples=12, batches=3, seconds=0.7, stop="batch")
    state.stop_within_epoch(partial)
    state.save(tmp_path / "state.pt")
    global_rng = torch.get_rng_state()

    torch.manual_seed(99)  # anything: the load must put it back
    loaded = new_state()
    loaded.load(tmp_path / "state.pt")
    assert torch.equal(torch.get_rng_state(), global_rng)
    assert all(
        torch.equal(a, b)
        for a, b in zip(state.model.state_dict().values(), loaded.model.state_dict().values())
    )
    saved = state.parts.optimizer.state_dict()["state"]
    restored = loaded.parts.optimizer.state_dict()["state"]
    assert torch.equal(saved[0]["momentum_buffer"], restored[0]["momentum_buffer"])  # Muon's
    assert restored[2]["step"] == 6  # an AdamW parameter's: two advances of 3 steps
    assert loaded.parts.scheduler is not None and state.parts.scheduler is not None
    assert loaded.parts.scheduler.state_dict() == state.parts.scheduler.state_dict()
    assert loaded.history == state.history and loaded.partial == partial
    # The stopped epoch begins again from its start, so that its draws repeat.
    assert loaded.start_epoch() == partial
    assert torch.equal(loaded.parts.generator.get_state(), epoch_start)


def test_a_state_of_other_settings_is_refused(tmp_path: Path) -> None:
    new_state().save(tmp_path / "state.pt")
    other = new_state(RunConfig(CONFIG.recipe, seed=6, limit=100))
    with pytest.raises(CheckpointError, match="other settings .seed: 5 saved, 6 now."):
        other.load(tmp_path / "state.pt")


@pytest.mark.parametrize(
    ("extra", "message"),
    [({"colour": "red"}, r"unused keys: \['colour'\]"), ({}, r"missing keys: \['cuda_rng'")],
)
def test_leftover_or_missing_keys_are_refused(
    tmp_path: Path, extra: dict[str, str], message: str
) -> None:
    state = new_state()
    state.save(tmp_path / "state.pt")
    saved = torch.load(tmp_path / "state.pt", weights_only=True)["state"]
    if not extra:
        del saved["cuda_rng"]
    save_checkpoint(
        tmp_path / "odd.pt",
        state.model,
        state.parts.optimizer,
        scheduler=state.parts.scheduler,
        config=CONFIG.to_dict(),
        state={**saved, **extra},
    )
    with pytest.raises(CheckpointError, match=message):
        new_state().load(tmp_path / "odd.pt")


def test_a_damaged_training_state_is_a_checkpoint_error(tmp_path: Path) -> None:
    state = new_state()
    state.save(tmp_path / "state.pt")
    saved = torch.load(tmp_path / "state.pt", weights_only=True)
    saved["state"]["torch_rng"] = torch.zeros(3)  # the right key holding the wrong thing
    resave(tmp_path / "state.pt", saved)
    with pytest.raises(CheckpointError, match="damaged training state"):
        new_state().load(tmp_path / "state.pt")


def test_the_callbacks_states_are_saved_and_given_back(tmp_path: Path) -> None:
    counter = BatchCounter()
    counter.batches = 41
    new_state(hooks=Hooks([counter])).save(tmp_path / "state.pt")
    resumed = BatchCounter()
    new_state(hooks=Hooks([resumed])).load(tmp_path / "state.pt")
    assert resumed.batches == 41
