"""Files written by earlier versions still load, evaluate and resume.

``tests/fixtures/v0.1.0/`` holds what fashionmlp 0.1.0 wrote (see its README.md): two
finished run folders, an interrupted one, a variant's ``save_pretrained`` folder, a recipe
in TOML and in JSON, and ``figures.json``, the figures 0.1.0 itself gave for them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

import fashionmlp
from conftest import resave
from fashionmlp import (
    CheckpointError,
    FashionMLP,
    FashionMLPConfig,
    InvalidArgumentError,
    Recipe,
    RunConfig,
    get_recipe,
    load_checkpoint,
)
from fashionmlp.cli import main
from fashionmlp.config import FORMAT_VERSION, UPGRADES, loads_toml, upgrade
from fashionmlp.pretrained import write_pretrained
from fashionmlp.runs import RunFolder

V010 = Path(__file__).parent / "fixtures" / "v0.1.0"
FIGURES: dict[str, Any] = json.loads((V010 / "figures.json").read_text())


def fixed_input() -> torch.Tensor:
    """The input ``figures.json`` holds the outputs for."""
    return torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", sorted(FIGURES["outputs"]))
def test_model_folders_and_checkpoints_of_0_1_0_give_the_same_outputs(name: str) -> None:
    model = FashionMLP.from_pretrained(V010 / name)
    with torch.no_grad():
        outputs = model(fixed_input())
    torch.testing.assert_close(outputs, torch.tensor(FIGURES["outputs"][name]), atol=1e-4, rtol=0)


@pytest.mark.parametrize("suffix", ["toml", "json"])
def test_a_recipe_file_of_0_1_0_loads_with_its_values(suffix: str) -> None:
    recipe = Recipe.load(V010 / f"recipe.{suffix}")
    saved = FIGURES["recipe"]
    assert (recipe.name, recipe.epochs, recipe.lr, recipe.translate) == ("mine", 12, 0.003, 2)
    assert {k: v for k, v in recipe.to_dict().items() if k in saved} == saved


@pytest.mark.real_data
@pytest.mark.parametrize("name", sorted(FIGURES["evaluate_accuracy"]))
def test_evaluate_on_a_finished_run_of_0_1_0_gives_its_accuracy(
    name: str, real_data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["evaluate", str(V010 / name), "--json", "--data-root", str(real_data_root)])
    assert status == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["accuracy"] == FIGURES["evaluate_accuracy"][name]


@pytest.mark.real_data
def test_an_interrupted_run_of_0_1_0_resumes_to_its_accuracy(
    tmp_path: Path, real_data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    shutil.copytree(V010 / "run-interrupted", run)
    status = main(["train", "--resume", str(run), "--data-root", str(real_data_root)])
    assert status == 0, capsys.readouterr().err
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(metrics["epochs"]) == FIGURES["resumed_epochs"]
    expected = FIGURES["resumed_accuracy"]["run-interrupted"]
    assert abs(metrics["final"]["accuracy"] - expected) <= 0.01


# --- formats: every file carries its own, older ones load, newer ones are refused ----------


def future(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` as a later version would write it: a format this one does not know."""
    return {**document, "format_version": FORMAT_VERSION + 1, "fashionmlp_version": "9.0.0"}


def refused_in_one_line(message: str) -> None:
    assert "written by fashionmlp 9.0.0" in message and "pip install --upgrade" in message
    assert f"reads formats up to {FORMAT_VERSION}" in message and "\n" not in message


def test_every_file_of_a_run_names_its_format_and_writer(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(V010 / "run-seed", run)
    model = FashionMLP.from_pretrained(run)
    model.save_pretrained(tmp_path / "model")
    get_recipe("fast").save(tmp_path / "recipe.toml")
    RunFolder(run).write_config(RunConfig(get_recipe("seed")), {})
    for document in (
        json.loads((tmp_path / "model" / "config.json").read_text()),
        loads_toml((tmp_path / "recipe.toml").read_text()),
        json.loads((run / "run.json").read_text()),
    ):
        assert document["format_version"] == FORMAT_VERSION
        assert document["fashionmlp_version"] == fashionmlp.__version__


def test_a_recipe_of_a_newer_format_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(future(FIGURES["recipe"])))
    with pytest.raises(InvalidArgumentError) as refused:
        Recipe.load(path)
    refused_in_one_line(str(refused.value))


def test_a_model_folder_of_a_newer_format_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = FashionMLP(hidden_features=8)
    document = {"model_type": "fashionmlp", **future(model.config.to_dict())}
    folder = write_pretrained(tmp_path / "model", document, model.state_dict())
    with pytest.raises(CheckpointError) as refused:
        FashionMLP.from_pretrained(folder)
    refused_in_one_line(str(refused.value))
    assert main(["export", str(folder)]) == 1  # the command line says the same, in one line
    err = capsys.readouterr().err
    refused_in_one_line(err.strip())


def test_a_checkpoint_and_a_run_of_a_newer_format_are_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    shutil.copytree(V010 / "run-interrupted", run)
    payload = torch.load(run / "checkpoint.pt", weights_only=True)
    resave(
        run / "checkpoint.pt",
        {**payload, "version": FORMAT_VERSION + 1, "fashionmlp_version": "9.0.0"},
    )
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(run / "checkpoint.pt")
    refused_in_one_line(str(refused.value))
    assert main(["train", "--resume", str(run)]) == 1
    refused_in_one_line(capsys.readouterr().err.strip())
    finished = tmp_path / "finished"
    shutil.copytree(V010 / "run-seed", finished)
    (finished / "run.json").write_text(
        json.dumps(future(json.loads((finished / "run.json").read_text())))
    )
    with pytest.raises(CheckpointError) as refused:
        RunFolder(finished).read_config()
    refused_in_one_line(str(refused.value))


def test_a_key_that_the_files_own_format_always_wrote_is_still_required(tmp_path: Path) -> None:
    recipe = {k: v for k, v in FIGURES["recipe"].items() if k != "lr"}
    for document in (recipe, {**recipe, "format_version": FORMAT_VERSION}):
        path = tmp_path / "recipe.json"
        path.write_text(json.dumps(document))
        with pytest.raises(InvalidArgumentError, match="missing setting 'lr'"):
            Recipe.load(path)


def test_an_older_format_is_brought_up_to_todays_by_its_upgrades(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As a later version that added a recipe field and a model field would register them.
    monkeypatch.setitem(UPGRADES, ("Recipe", FORMAT_VERSION), lambda d: {**d, "added": 0.5})
    monkeypatch.setitem(UPGRADES, ("FashionMLPConfig", FORMAT_VERSION), lambda d: {**d, "width": 8})
    old = FIGURES["recipe"]
    upgraded = upgrade(Recipe, old, FORMAT_VERSION - 1)
    assert upgraded == {**old, "added": 0.5} and old == FIGURES["recipe"]  # not changed in place
    assert upgrade(FashionMLPConfig, old["model"], FORMAT_VERSION - 1)["width"] == 8
    assert upgrade(Recipe, old, FORMAT_VERSION) == old  # a file of today's format: as it is
