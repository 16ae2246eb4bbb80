from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import torch

from fashionmlp import RECIPES, FashionMLP, InvalidArgumentError, Recipe, get_recipe
from fashionmlp.recipes import make_optimizer, make_scheduler, resolve_autocast


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
        # The seed's model, unchanged: 669,706 parameters, no dropout; it normalizes itself.
        model = FashionMLP.from_config(recipe.model_config)
        assert sum(p.numel() for p in model.parameters()) == 669_706
        assert recipe.model_config == FashionMLP(normalize=recipe.model_config.normalize).config
        assert recipe.dropout == 0.0 and recipe.optimizer == "muon"
    assert get_recipe("fast").epochs <= 12  # passes over the training set


def test_the_search_script_tries_the_shipped_settings() -> None:
    search = _load_benchmark("search")
    tried = search.candidates()
    assert tried["muon-8 (fast)"] == get_recipe("fast")
    assert tried["muon-80 translate 1 (long)"] == get_recipe("long")


def _load_benchmark(name: str) -> Any:
    path = Path(__file__).resolve().parent.parent / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


ADAMW = get_recipe("fast").replace(optimizer="adamw")  # one parameter group


def test_one_cycle_schedule_spans_every_step() -> None:
    recipe = ADAMW.replace(epochs=2)
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
    recipe = ADAMW.replace(epochs=1)
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
