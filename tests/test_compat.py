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

from fashionmlp import FashionMLP, Recipe
from fashionmlp.cli import main

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
