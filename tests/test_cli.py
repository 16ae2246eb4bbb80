from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import fashionmlp.data as data_module
from fashionmlp import FashionMLP, load_checkpoint
from fashionmlp.cli import main


@pytest.mark.real_data
def test_train_runs_the_seed_end_to_end_and_writes_a_run_folder(
    real_data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    status = main(["train", "--epochs", "2", "--limit", "6400", "--seed", "3", "--device", "cpu",
                   "--data-root", str(real_data_root), "--out", str(out)])
    stdout = capsys.readouterr().out
    assert status == 0
    assert "Loss: " in stdout and "[0/6400]" in stdout and "[6400/6400]" not in stdout
    assert stdout.count("test accuracy") == 2
    config = json.loads((out / "config.json").read_text())
    assert (config["seed"], config["lr"], config["batch_size"]) == (3, 0.01, 64)
    metrics = json.loads((out / "metrics.json").read_text())
    assert [row["epoch"] for row in metrics["epochs"]] == [1, 2]
    assert metrics["test"]["total"] == 6400
    assert sum(map(sum, metrics["test"]["confusion_matrix"])) == 6400
    checkpoint = load_checkpoint(out / "model.pt", FashionMLP())
    assert checkpoint.epoch == 2 and checkpoint.optimizer_state is not None

    # The same seed trains the same weights.
    again = tmp_path / "again"
    assert main(["train", "--epochs", "2", "--limit", "6400", "--seed", "3", "--device", "cpu",
                 "--data-root", str(real_data_root), "--out", str(again)]) == 0
    second = load_checkpoint(again / "model.pt")
    assert all(torch.equal(checkpoint.model_state[k], second.model_state[k])
               for k in checkpoint.model_state)

    # The tensor backend runs the same command.
    fast = tmp_path / "fast"
    assert main(["train", "--epochs", "1", "--limit", "640", "--backend", "tensor",
                 "--data-root", str(real_data_root), "--out", str(fast)]) == 0
    assert json.loads((fast / "config.json").read_text())["backend"] == "tensor"

    # A finished run is never overwritten by accident.
    before = (out / "model.pt").read_bytes()
    assert main(["train", "--epochs", "1", "--limit", "64", "--data-root", str(real_data_root),
                 "--out", str(out)]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "model.pt").read_bytes() == before


@pytest.mark.parametrize(
    ("arguments", "message"),
    [(["--epochs", "0"], "--epochs: must be at least 1"),
     (["--batch-size", "-1"], "--batch-size: must be at least 1"),
     (["--lr", "nan"], "--lr: must be a finite number above 0"),
     (["--lr", "0"], "--lr: must be a finite number above 0"),
     (["--seed", "x"], "--seed: expected a whole number")],
)
def test_bad_arguments_are_one_line_and_exit_2(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["train", *arguments])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("arguments", "message"),
    [(["--device", "tpu"], "unknown device 'tpu'"),
     (["--out", "no/such/parent/run"], "parent folder no/such/parent does not exist")],
)
def test_failures_before_work_are_one_line_and_exit_1(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str],
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["train", *arguments]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fashionmlp: error: ") and message in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_missing_dataset_is_one_line_naming_both_remedies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(data_module, "SYSTEM_DATA_DIRS", ())
    status = main(["train", "--data-root", str(tmp_path / "data"), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert status == 1 and len(err.strip().splitlines()) == 1
    assert "apt-get install dataset-fashion-mnist" in err and "--download" in err
    with pytest.raises(Exception, match="not found"):
        main(["--debug", "train", "--data-root", str(tmp_path / "data"),
              "--out", str(tmp_path / "r2")])


def test_console_script_and_module_entry_point() -> None:
    for command in (["fashionmlp"], [sys.executable, "-m", "fashionmlp"]):
        if command == ["fashionmlp"]:
            command = [str(Path(sys.executable).with_name("fashionmlp"))]
        result = subprocess.run([*command, "train", "--help"], capture_output=True, text=True,
                                timeout=120, env={**os.environ, "COLUMNS": "200"})
        assert result.returncode == 0, result.stderr
        assert "--epochs" in result.stdout and "--device" in result.stdout
