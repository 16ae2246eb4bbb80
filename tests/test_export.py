from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from fashionmlp import FashionMLP, InvalidArgumentError, MissingExtraError
from fashionmlp.cli import main
from fashionmlp.data import load_split, pixels_to_float
from fashionmlp.export import export_onnx


@pytest.mark.real_data
def test_onnxruntime_gives_pytorchs_logits_on_1000_test_images(
    real_data_root: Path, tmp_path: Path
) -> None:
    onnxruntime = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = FashionMLP(normalize=(0.2860, 0.3530))  # the normalization must travel inside
    path = export_onnx(model, tmp_path / "model.onnx")
    images, _ = load_split(real_data_root, "test")
    x = pixels_to_float(images[:1000].unsqueeze(1))  # what ToTensor() gives
    session = onnxruntime.InferenceSession(str(path))
    assert [i.name for i in session.get_inputs()] == ["images"]
    for batch in (x, x[:7]):  # any batch size
        (logits,) = session.run(None, {"images": batch.numpy()})
        expected = model(batch).detach()
        assert logits.shape == (len(batch), 10)
        assert float((torch.from_numpy(logits) - expected).abs().max()) <= 1e-4


def test_an_existing_file_is_kept_unless_overwriting(tmp_path: Path) -> None:
    pytest.importorskip("onnxscript")
    (tmp_path / "model.onnx").write_text("mine")
    with pytest.raises(InvalidArgumentError, match="exists"):
        export_onnx(FashionMLP(hidden_features=8), tmp_path / "model.onnx")
    assert (tmp_path / "model.onnx").read_text() == "mine"
    export_onnx(FashionMLP(hidden_features=8), tmp_path / "model.onnx", overwrite=True)
    assert (tmp_path / "model.onnx").stat().st_size > 1000


def test_the_command_exports_a_saved_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("onnxscript")
    folder = FashionMLP(hidden_features=16).save_pretrained(tmp_path / "run")
    assert main(["export", str(folder)]) == 0
    assert (folder / "model.onnx").is_file() and "Wrote" in capsys.readouterr().out
    assert main(["export", str(folder)]) == 2  # refused: the file exists
    assert "exists" in capsys.readouterr().err


def test_without_the_extra_the_error_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'fashionmlp\[export\]'"):
        export_onnx(FashionMLP(hidden_features=8), tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()
