from __future__ import annotations

import pytest
import torch

from fashionmlp import FashionMLP, get_recipe
from fashionmlp.train import make_optimizer, make_scheduler, resolve_autocast


def test_the_seed_recipe_makes_the_seeds_optimizer_and_no_schedule() -> None:
    seed = get_recipe("seed")
    optimizer = make_optimizer(seed, FashionMLP())
    assert type(optimizer) is torch.optim.SGD and make_scheduler(seed, optimizer, 938) is None


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
