from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fashionmlp import (
    RECIPES,
    FashionMLP,
    FashionMLPConfig,
    InvalidArgumentError,
    Recipe,
    get_recipe,
)
from fashionmlp.config import FASHION_MNIST_NORMALIZATION, NO_NORMALIZATION, flat, recipe_from


def test_the_seed_recipe_is_the_seed() -> None:
    seed = get_recipe("seed")
    assert (seed.optimizer, seed.lr, seed.momentum, seed.weight_decay) == ("sgd", 0.01, 0.0, 0.0)
    assert (seed.batch_size, seed.backend, seed.schedule) == (64, "torchvision", "constant")
    assert not (seed.hflip or seed.translate) and seed.autocast == "off"
    assert seed.model == FashionMLPConfig() and seed.model.normalize == NO_NORMALIZATION
    assert seed.label_smoothing == 0.0 and seed.print_every == 100


def test_shipped_recipes_train_the_default_model_on_the_tensor_backend() -> None:
    assert set(RECIPES) == {"seed", "fast", "long"}
    for name in ("fast", "long"):
        recipe = get_recipe(name)
        assert recipe.backend == "tensor" and recipe.name == name
        assert Recipe.from_dict(recipe.to_dict()) == recipe
        # The seed's model, unchanged: 669,706 parameters, no dropout; it normalizes itself.
        model = FashionMLP.from_config(recipe.model)
        assert sum(p.numel() for p in model.parameters()) == 669_706
        assert recipe.model == FashionMLP(normalize=FASHION_MNIST_NORMALIZATION).config
        assert recipe.model.dropout == 0.0 and recipe.optimizer == "muon"
    assert get_recipe("fast").epochs <= 12  # passes over the training set


SPACES = Path(__file__).resolve().parent.parent / "benchmarks" / "spaces"


@pytest.mark.parametrize("name", ["fast", "long"])
def test_each_recipes_committed_space_holds_the_recipe(name: str) -> None:
    pytest.importorskip("optuna")
    from fashionmlp.studies import DEFAULT_SPACE, SearchSpace

    space = SearchSpace.load(SPACES / f"{name}.toml")
    recipe = get_recipe(name)
    space.check(recipe)  # every field is the recipe's, every range fits its field
    for param in space.params:
        value = flat(recipe.to_dict())[param.field]
        if param.kind == "choice":
            assert value in param.choices, param.field
        else:
            assert param.low is not None and param.high is not None
            assert param.low <= value <= param.high, param.field
    if name == "fast":
        assert space == DEFAULT_SPACE  # the file is the library's default, written out


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
    with pytest.raises(InvalidArgumentError, match="unknown setting 'colour'"):
        Recipe.from_dict({**get_recipe("seed").to_dict(), "colour": "red"})
    with pytest.raises(InvalidArgumentError, match="model config: dropout must be in"):
        get_recipe("fast").replace(model={"dropout": 1.0})


def test_a_saved_recipe_reads_back_equal_in_toml_and_json(tmp_path: Path) -> None:
    recipe = get_recipe("long").replace(name="mine", epochs=3, model={"dropout": 0.25})
    for name in ("mine.toml", "mine.json"):
        path = recipe.save(tmp_path / name)
        assert Recipe.load(path) == recipe and recipe_from(str(path)) == recipe
    toml = (tmp_path / "mine.toml").read_text()
    assert 'name = "mine"' in toml and "[model]" in toml and "dropout = 0.25" in toml
    assert json.loads((tmp_path / "mine.json").read_text())["model"]["dropout"] == 0.25


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("colour = 'red'", "unknown setting 'colour'"),
        ("epochs = 'many'", "epochs must be a whole number, got 'many'"),
        ("epochs = 8.5", "epochs must be a whole number, got 8.5"),
        ("[model]\nwidth = 3", "unknown setting 'width'"),
        ("epochs = 0", "epochs must be at least 1, got 0"),
        ("epochs = [", "not valid TOML"),
    ],
)
def test_a_recipe_file_with_a_wrong_field_is_refused_naming_it(
    tmp_path: Path, content: str, message: str
) -> None:
    text = get_recipe("fast").save(tmp_path / "good.toml").read_text()
    key = content.split(" ")[0]
    kept = [line for line in text.splitlines() if not line.startswith(f"{key} =")]
    if content.startswith("[model]"):
        kept = [line.replace("[model]", content) for line in kept]
    else:
        kept.insert(0, content)
    (tmp_path / "bad.toml").write_text("\n".join(kept) + "\n")
    with pytest.raises(InvalidArgumentError, match=message) as info:
        Recipe.load(tmp_path / "bad.toml")
    assert str(tmp_path / "bad.toml") in str(info.value)


def test_a_recipe_file_must_name_every_setting(tmp_path: Path) -> None:
    (tmp_path / "short.toml").write_text('name = "short"\nepochs = 3\n')
    with pytest.raises(InvalidArgumentError, match="missing settings 'batch_size', 'optimizer'"):
        Recipe.load(tmp_path / "short.toml")
    with pytest.raises(InvalidArgumentError, match="no such file"):
        Recipe.load(tmp_path / "absent.toml")


def test_the_benchmarks_floor_of_a_recipe_is_its_epochs_of_plain_steps() -> None:
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "bench.py"
    spec = importlib.util.spec_from_file_location("bench", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    recipe = get_recipe("fast").replace(batch_size=2_000, autocast="off")  # 30 steps a pass
    one = bench.recipe_floor(recipe.replace(epochs=1), torch.device("cpu"), repeats=1)
    assert 0 < one < bench.recipe_floor(recipe.replace(epochs=4), torch.device("cpu"), repeats=1)


def test_29_10_a_whole_number_written_as_a_float_is_refused_saying_how_to_write_it(
    tmp_path: Path,
) -> None:
    path = get_recipe("fast").save(tmp_path / "recipe.toml")
    path.write_text(path.read_text().replace("epochs = 8", "epochs = 8.0"))
    with pytest.raises(
        InvalidArgumentError, match="epochs must be a whole number, got 8.0; write 8"
    ):
        Recipe.load(path)
    path.write_text(path.read_text().replace("epochs = 8.0", "epochs = 8.5"))
    with pytest.raises(InvalidArgumentError, match="epochs must be a whole number, got 8.5$"):
        Recipe.load(path)
