"""The public API is declared once and is what the docs promise."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

import fashionmlp


def test_every_public_name_exists_and_the_core_imports_work() -> None:
    from fashionmlp import CLASSES, FashionMLP, evaluate, make_loaders, train_epoch  # noqa: F401

    missing = [name for name in fashionmlp.__all__ if not hasattr(fashionmlp, name)]
    assert missing == []
    assert len(set(fashionmlp.__all__)) == len(fashionmlp.__all__)


def test_argument_order_is_the_contract() -> None:
    def parameters(function: object) -> list[str]:
        return list(inspect.signature(function).parameters)  # type: ignore[arg-type]

    assert parameters(fashionmlp.make_loaders)[:3] == ["root", "batch_size", "download"]
    assert inspect.signature(fashionmlp.make_loaders).parameters["batch_size"].default == 64
    assert parameters(fashionmlp.train_epoch)[:5] == [
        "dataloader",
        "model",
        "loss_fn",
        "optimizer",
        "callbacks",
    ]
    assert parameters(fashionmlp.evaluate)[:3] == ["dataloader", "model", "loss_fn"]


def test_public_functions_are_annotated_and_documented() -> None:
    for name in fashionmlp.__all__:
        obj = getattr(fashionmlp, name)
        if inspect.isfunction(obj):
            signature = inspect.signature(obj)
            assert signature.return_annotation is not inspect.Signature.empty, name
            assert all(
                p.annotation is not inspect.Parameter.empty for p in signature.parameters.values()
            ), name
        if inspect.isfunction(obj) or inspect.isclass(obj):
            assert inspect.getdoc(obj), name


def test_the_package_ships_py_typed() -> None:
    assert (Path(fashionmlp.__file__).parent / "py.typed").is_file()


def test_every_public_name_is_imported_lazily_from_where_it_lives() -> None:
    public = fashionmlp._public()  # read from the one list: the TYPE_CHECKING imports
    assert set(public) | {"__version__"} == set(fashionmlp.__all__)
    assert {"fit", "build", "load_dataset", "FashionMLP", "Callback"} <= set(public)
    for name, module in public.items():
        assert getattr(importlib.import_module(f"fashionmlp.{module}"), name) is getattr(
            fashionmlp, name
        )


def test_the_names_of_an_unreleased_version_are_gone() -> None:
    for name in ("read_idx", "make_optimizer", "Backend", "NUM_CLASSES"):
        with pytest.raises(AttributeError):
            getattr(fashionmlp, name)


def test_the_top_level_is_the_design_cards_api_and_unknown_names_fail() -> None:
    assert {"FashionMLP", "make_loaders", "train_epoch", "evaluate", "fit"} <= set(
        fashionmlp.__all__
    )
    assert len(fashionmlp.__all__) < 50
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        fashionmlp.nonsense  # noqa: B018


OLD_NAMES = {  # a name each module of 0.1.0 had, and where it lives now
    "fashionmlp.recipes": ("Recipe", "fashionmlp.config"),
    "fashionmlp.settings": ("flat", "fashionmlp.config"),
    "fashionmlp.model_config": ("FASHION_MNIST_NORMALIZATION", "fashionmlp.config"),
    "fashionmlp._toml": ("loads_toml", "fashionmlp.config"),
    "fashionmlp.loaders": ("validation_split", "fashionmlp.data"),
    "fashionmlp.tensor_loader": ("TensorLoader", "fashionmlp.data"),
    "fashionmlp.augment": ("Augment", "fashionmlp.data"),
    "fashionmlp.parts": ("make_optimizer", "fashionmlp.train"),
    "fashionmlp.state": ("TrainState", "fashionmlp.train"),
    "fashionmlp.fitting": ("fit", "fashionmlp.train"),
    "fashionmlp.step": ("to_model", "fashionmlp.train"),
    "fashionmlp.evaluation": ("eval_mode", "fashionmlp.train"),
    "fashionmlp.hooks": ("Hooks", "fashionmlp.callbacks"),
    "fashionmlp.distributed": ("is_main_process", "fashionmlp.devices"),
    "fashionmlp.environment": ("environment", "fashionmlp.devices"),
    "fashionmlp.hub": ("is_repo_id", "fashionmlp.pretrained"),
    "fashionmlp.model_card": ("model_card", "fashionmlp.pretrained"),
    "fashionmlp.studies.storage": ("open_storage", "fashionmlp.studies.sweep"),
    "fashionmlp.studies.report": ("write_study_files", "fashionmlp.studies.sweep"),
}


@pytest.mark.parametrize("old", sorted(OLD_NAMES))
def test_a_module_of_0_1_0_imports_under_its_old_name_with_a_warning(old: str) -> None:
    name, new = OLD_NAMES[old]
    module = importlib.import_module(old)
    with pytest.warns(DeprecationWarning, match=f"{old} is now {new}; import from there"):
        moved = getattr(module, name)
    assert moved is getattr(importlib.import_module(new), name)
    assert set(OLD_NAMES) == {f"fashionmlp.{old}" for old in fashionmlp.MOVED_MODULES}


def test_code_of_0_1_0_runs_as_written() -> None:
    with pytest.warns(DeprecationWarning):
        from fashionmlp.recipes import RunConfig, get_recipe
        from fashionmlp.settings import flat
    assert flat(RunConfig(get_recipe("seed")).to_dict())["recipe.lr"] == 0.01
