"""Model cards: the README.md of every model folder, read with Hugging Face's own parser."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fashionmlp import FashionMLP, evaluate
from fashionmlp.cli import main
from fashionmlp.pretrained import CARD_FILE, is_model_card

huggingface_hub = pytest.importorskip("huggingface_hub")


def card_of(folder: Path) -> huggingface_hub.ModelCard:
    return huggingface_hub.ModelCard.load(folder / CARD_FILE)


def percent(accuracy: float) -> str:
    return f"{100 * accuracy:.2f}%"


@pytest.fixture(scope="module")
def full_test_run(real_data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One epoch of the fast recipe, evaluated on the whole test set."""
    out = tmp_path_factory.mktemp("card") / "run"
    command = ["train", "--epochs", "1", "--seed", "0", "--device", "cpu", "--no-plots"]
    assert main([*command, "--data-root", str(real_data_root), "--out", str(out)]) == 0
    return out


@pytest.mark.real_data
def test_a_run_folders_card_states_its_test_accuracy_in_the_hubs_layout(
    full_test_run: Path,
) -> None:
    metrics = json.loads((full_test_run / "metrics.json").read_text())
    accuracy = metrics["final"]["accuracy"]
    card = card_of(full_test_run)
    data = card.data.to_dict()
    assert data["library_name"] == "fashionmlp"
    assert "image-classification" in data["tags"] and data["datasets"]
    assert data["metrics"] == ["accuracy"]
    (result,) = card.data.eval_results  # the Hub's own reading of the model-index
    assert result.metric_type == "accuracy" and result.dataset_split == "test"
    assert result.metric_value == pytest.approx(accuracy, abs=5e-5)
    text = card.text
    assert f"**Test accuracy: {percent(accuracy)}** (10,000 test images)" in text
    assert "669,706 parameters" in text  # the seed's architecture, counted
    assert "| `lr` |" in text and "FashionMLP.from_pretrained(" in text
    for name in ("T-shirt/top", "Ankle boot"):
        assert name in text  # the per-class table
    assert "28x28 grayscale" in text


@pytest.mark.real_data
def test_export_writes_a_card_beside_the_onnx_file_with_the_same_accuracy(
    full_test_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("onnx")
    out = tmp_path / "deploy" / "model.onnx"
    out.parent.mkdir()
    assert main(["export", str(full_test_run), "--out", str(out)]) == 0
    accuracy = json.loads((full_test_run / "metrics.json").read_text())["final"]["accuracy"]
    card = card_of(out.parent)
    assert card.data.eval_results[0].metric_value == pytest.approx(accuracy, abs=5e-5)
    assert percent(accuracy) in card.text
    assert 'onnxruntime.InferenceSession("model.onnx")' in card.text

    # A README.md of the user's own is never replaced.
    other = tmp_path / "mine" / "model.onnx"
    other.parent.mkdir()
    (other.parent / CARD_FILE).write_text("# my notes\n")
    capsys.readouterr()
    assert main(["export", str(full_test_run), "--out", str(other)]) == 0
    assert (other.parent / CARD_FILE).read_text() == "# my notes\n"
    assert "it is not a model card of fashionmlp's" in capsys.readouterr().out


def test_save_pretrained_writes_a_card_with_the_evaluation_it_is_given(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = FashionMLP(hidden_features=16, hidden_layers=1)
    images = torch.rand(10_000, 1, 28, 28)
    labels = torch.randint(0, 10, (10_000,))
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(images, labels), batch_size=1000
    )
    result = evaluate(loader, model, torch.nn.CrossEntropyLoss())
    folder = model.save_pretrained(tmp_path / "model", evaluation=result, split="test")
    card = card_of(folder)
    assert card.data.eval_results[0].metric_value == pytest.approx(result.accuracy, abs=5e-5)
    assert f"**Test accuracy: {percent(result.accuracy)}**" in card.text
    assert f"{sum(p.numel() for p in model.parameters()):,} parameters" in card.text

    # Without an evaluation: a card all the same, with no figures in its front matter.
    bare = model.save_pretrained(tmp_path / "bare")
    assert is_model_card(bare / CARD_FILE)
    assert not card_of(bare).data.eval_results and "accuracy" not in card_of(bare).text.lower()


def test_a_validation_figure_is_not_reported_as_the_test_accuracy(tmp_path: Path) -> None:
    model = FashionMLP(hidden_features=8, hidden_layers=1)
    images, labels = torch.rand(100, 1, 28, 28), torch.randint(0, 10, (100,))
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(images, labels), batch_size=50
    )
    result = evaluate(loader, model, torch.nn.CrossEntropyLoss())
    folder = model.save_pretrained(tmp_path / "model", evaluation=result, split="validation")
    card = card_of(folder)
    assert not card.data.eval_results  # the Hub's results are for the test set
    assert (
        f"**Validation accuracy: {percent(result.accuracy)}** (100 validation images)" in card.text
    )


def test_save_pretrained_leaves_a_users_readme_alone(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / CARD_FILE).write_text("---\nlicense: apache-2.0\n---\n# Mine\n")
    FashionMLP(hidden_features=8).save_pretrained(folder)
    assert (folder / CARD_FILE).read_text() == "---\nlicense: apache-2.0\n---\n# Mine\n"
    assert FashionMLP.from_pretrained(folder).config.hidden_features == 8
