from __future__ import annotations

import argparse
import csv
import dataclasses
import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import pytest
import torch
from PIL import Image

import fashionmlp.cli.common as options_module
import fashionmlp.data as data_module
from conftest import SmallDisk, interrupt_at, interruptible_run_options, start_cli, wait_for_line
from fashionmlp import (
    CLASSES,
    FashionMLP,
    FashionMLPConfig,
    Recipe,
    RunConfig,
    config,
    get_recipe,
    load_checkpoint,
)
from fashionmlp.cli import build_parser, main, run
from fashionmlp.cli.train import RunConsole
from fashionmlp.data import load_split

PNGS = {"loss.png", "accuracy.png", "confusion_matrix.png", "misclassified.png"}


def csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def run_cli(*arguments: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fashionmlp", *arguments],
        capture_output=True,
        text=True,
        timeout=300,
        **kwargs,
    )  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def fast_run(real_data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short run of the default (fast) recipe, shared by the evaluate/predict tests."""
    out = tmp_path_factory.mktemp("runs") / "fast"
    status = main(
        [
            "train",
            "--epochs",
            "3",
            "--limit",
            "5000",
            "--seed",
            "1",
            "--device",
            "cpu",
            "--data-root",
            str(real_data_root),
            "--out",
            str(out),
        ]
    )
    assert status == 0
    return out


@pytest.fixture(scope="module")
def variant_run(real_data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short run of another shape: wider layers, one more of them, dropout."""
    out = tmp_path_factory.mktemp("runs") / "variant"
    arguments = ["train", "--hidden-features", "256", "--hidden-layers", "3", "--dropout", "0.1"]
    arguments += ["--epochs", "2", "--limit", "5000", "--seed", "2", "--device", "cpu"]
    arguments += ["--no-plots", "--data-root", str(real_data_root), "--out", str(out)]
    assert main(arguments) == 0
    return out


#: Another project's code: only the public API, in a fresh process.
REPRODUCE = """
import json, sys
from fashionmlp import FashionMLP, evaluate, make_loaders

_, test = make_loaders(sys.argv[1], limit=int(sys.argv[2]))  # plain ToTensor() batches
for folder in sys.argv[3:]:
    model = FashionMLP.from_pretrained(folder)
    accuracy = evaluate(test, model).accuracy
    print(json.dumps({"accuracy": accuracy, "config": model.config.to_dict()}))
"""


@pytest.mark.real_data
def test_a_fresh_process_reproduces_each_runs_accuracy_with_the_public_api(
    fast_run: Path, variant_run: Path, real_data_root: Path
) -> None:
    shapes = {fast_run: (512, 2, 0.0, [0.286, 0.353]), variant_run: (256, 3, 0.1, [0.286, 0.353])}
    folders = list(shapes)
    printed = run_cli_code(REPRODUCE, str(real_data_root), "5000", *map(str, folders))
    for folder, loaded in zip(folders, printed):
        shape = shapes[folder]
        reported = json.loads((folder / "metrics.json").read_text())["final_test_accuracy"]
        assert loaded["accuracy"] == reported, folder
        config = loaded["config"]
        assert (
            config["hidden_features"],
            config["hidden_layers"],
            config["dropout"],
            config["normalize"],
        ) == shape


def run_cli_code(code: str, *arguments: str) -> Any:
    result = subprocess.run(
        [sys.executable, "-c", code, *arguments], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.mark.real_data
def test_set_changes_any_recipe_field_through_its_own_checks(
    real_data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    common = ["train", "--epochs", "1", "--limit", "640", "--seed", "0", "--device", "cpu"]
    common += ["--no-plots", "--data-root", str(real_data_root)]
    settings = ["--set", "weight_decay=0.05", "--set", "hflip=false", "--set", "optimizer=sgd"]
    assert main([*common, *settings, "--out", str(out)]) == 0
    recipe = json.loads((out / "run.json").read_text())["recipe"]
    assert (recipe["weight_decay"], recipe["hflip"], recipe["optimizer"]) == (0.05, False, "sgd")
    for setting, message in (
        ("colour=red", "unknown recipe setting 'colour'"),
        ("lr=fast", "lr must be a number, got 'fast'"),
        ("dropout=1", "dropout must be in [0, 1)"),
    ):
        assert main([*common, "--set", setting, "--out", str(tmp_path / "bad")]) != 0
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "bad").exists()


@pytest.mark.real_data
def test_train_writes_a_complete_run_folder(fast_run: Path) -> None:
    assert {p.name for p in fast_run.iterdir()} >= {
        "config.json",
        "run.json",
        "metrics.json",
        "model.safetensors",
        "checkpoint.pt",
        *PNGS,
    }
    for name in PNGS:
        assert (fast_run / name).read_bytes()[:4] == b"\x89PNG"
    config = json.loads((fast_run / "run.json").read_text())
    assert config["recipe"]["name"] == "fast" and config["recipe"]["epochs"] == 3
    assert config["seed"] == 1 and config["limit"] == 5000
    metrics = json.loads((fast_run / "metrics.json").read_text())
    assert [epoch["epoch"] for epoch in metrics["epochs"]] == [1, 2, 3]
    assert metrics["final"]["total"] == 5000
    assert sum(map(sum, metrics["final"]["confusion_matrix"])) == 5000
    assert metrics["final_test_accuracy"] == metrics["final"]["accuracy"] > 0.6
    epochs = csv_rows(fast_run / "metrics.csv")  # written as the run went
    assert [row["epoch"] for row in epochs] == ["1", "2", "3"]
    assert float(epochs[-1]["eval_accuracy"]) == metrics["final_test_accuracy"]
    assert {row["evaluated_on"] for row in epochs} == {"test"}
    model = FashionMLP.from_pretrained(fast_run)
    assert model.config == FashionMLP(normalize=(0.2860, 0.3530)).config  # the fast recipe's


@pytest.mark.real_data
def test_the_seed_recipe_prints_the_seeds_lines(
    real_data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(
        [
            "train",
            "--recipe",
            "seed",
            "--epochs",
            "1",
            "--limit",
            "6400",
            "--seed",
            "3",
            "--device",
            "cpu",
            "--no-plots",
            "--data-root",
            str(real_data_root),
            "--out",
            str(tmp_path / "seed"),
        ]
    )
    lines = capsys.readouterr().out.splitlines()
    assert status == 0
    assert ": 1 epoch, batch 64," in lines[0] and "after 1 epoch in" in lines[-1]
    start = lines.index("Epoch 1")
    assert lines[start + 1] == "-------------------------------"
    assert lines[start + 2].startswith("Loss: ") and lines[start + 2].endswith(" [0/6400]")
    assert (
        lines[start + 3].startswith("Epoch 1/1: train loss ")
        and "test accuracy" in lines[start + 3]
    )
    config = json.loads((tmp_path / "seed" / "run.json").read_text())
    assert config["recipe"]["lr"] == 0.01 and config["recipe"]["batch_size"] == 64
    assert not any((tmp_path / "seed" / name).exists() for name in PNGS)


@pytest.mark.real_data
def test_evaluate_prints_accuracy_per_class_and_confusion(
    fast_run: Path, real_data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", str(fast_run), "--data-root", str(real_data_root)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Test accuracy ") and "/10000)" in out
    assert all(name in out for name in CLASSES) and "Confusion matrix" in out
    for figure in ("top-3 ", "top-5 ", "macro precision", "log-likelihood", "calibration error"):
        assert figure in out, figure
    command = ["evaluate", str(fast_run / "checkpoint.pt"), "--json"]
    assert main([*command, "--data-root", str(real_data_root)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["total"] == 10_000 and sum(map(sum, result["confusion_matrix"])) == 10_000
    assert 0.6 < result["accuracy"] <= 1
    assert result["top_k_accuracy"]["1"] == result["accuracy"] <= result["top_k_accuracy"]["5"]
    for name in ("precision", "recall", "f1"):
        assert len(result[name]) == 10 and 0 < result[f"macro_{name}"] <= 1
    assert result["nll"] > 0 and 0 <= result["ece"] < 1


@pytest.mark.real_data
def test_predict_classifies_pictures_and_reports_bad_files(
    fast_run: Path, real_data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images, labels = load_split(real_data_root, "test")
    index = int((labels == 1).nonzero()[0])  # a trouser: the easiest class
    photo = Image.fromarray((255 - images[index]).numpy()).resize((280, 280)).convert("RGB")
    photo.save(tmp_path / "trouser.jpg")  # dark garment on white: predict must invert it
    (tmp_path / "broken.png").write_bytes(b"not a png")
    status = main(
        [
            "predict",
            str(fast_run),
            str(tmp_path / "trouser.jpg"),
            str(tmp_path / "broken.png"),
            str(tmp_path / "trouser.jpg"),
        ]
    )
    captured = capsys.readouterr()
    assert status == 1
    lines = captured.out.splitlines()
    assert len(lines) == 2 and all(line.split(": ")[1].startswith("Trouser ") for line in lines)
    assert captured.err.count("broken.png") == 1 and len(captured.err.splitlines()) == 1
    assert (
        main(
            [
                "predict",
                str(fast_run / "checkpoint.pt"),
                str(tmp_path / "trouser.jpg"),
                "--json",
                "--top",
                "2",
            ]
        )
        == 0
    )
    [result] = json.loads(capsys.readouterr().out)
    assert [p["class"] for p in result["predictions"]][0] == "Trouser"
    assert len(result["predictions"]) == 2


@pytest.fixture(scope="module")
def unbroken_run(real_data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run the interruption tests must reproduce, trained once."""
    out = tmp_path_factory.mktemp("unbroken") / "run"
    assert main(["train", *interruptible_run_options(real_data_root), "--out", str(out)]) == 0
    return out


@pytest.mark.real_data
@pytest.mark.parametrize(
    ("signal_number", "status", "when"),
    [  # Ctrl-C and SIGTERM take the same path; each is tried once, at a different point
        (signal.SIGTERM, 143, "epoch 2"),
        (signal.SIGINT, 130, "epoch 1"),
    ],
)
def test_an_interrupted_run_resumes_to_the_uninterrupted_weights(
    real_data_root: Path,
    tmp_path: Path,
    signal_number: int,
    status: int,
    when: str,
    unbroken_run: Path,
) -> None:
    part = tmp_path / "part"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fashionmlp",
            "train",
            *interruptible_run_options(real_data_root),
            "--out",
            str(part),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if when == "epoch 1":  # at epoch 1's first loss line
        err = interrupt_at(process, "Loss:", signal_number)
    else:  # at epoch 2's
        err = interrupt_at(process, "Loss:", signal_number, after="Epoch 1/3:")
    assert process.returncode == status
    last = err.strip().splitlines()[-1]
    assert f"interrupted during {when} after " in last
    assert last.endswith(f"resume with: fashionmlp train --resume {part}")
    assert "Traceback" not in err and not (part / "model.safetensors").exists()
    kept = [row["epoch"] for row in csv_rows(part / "metrics.csv")]
    assert kept == (["1"] if when == "epoch 2" else [])  # the finished epoch's row stays

    plots = signal_number == signal.SIGTERM  # the resumed run draws the whole run's plots
    resumed = run_cli(
        "train",
        "--resume",
        str(part),
        "--data-root",
        str(real_data_root),
        "--device",
        "cpu",
        *([] if plots else ["--no-plots"]),
    )
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.startswith("Resuming FashionMLP")
    expected = FashionMLP.from_pretrained(unbroken_run).state_dict()
    got = FashionMLP.from_pretrained(part).state_dict()
    assert all(torch.equal(expected[key], got[key]) for key in expected)
    metrics = json.loads((part / "metrics.json").read_text())
    assert [epoch["epoch"] for epoch in metrics["epochs"]] == [1, 2, 3]
    assert [row["epoch"] for row in csv_rows(part / "metrics.csv")] == ["1", "2", "3"]
    assert {path.name for path in part.glob("*.png")} == (PNGS if plots else set())


@pytest.mark.real_data
def test_a_second_ctrl_c_stops_at_once_without_saving(real_data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    # One batch of 30,000 images per epoch: about a second, so that the second Ctrl-C lands
    # while the first still waits for the batch to end.
    arguments = ["--batch-size", "30000", "--limit", "30000", "--out", str(out)]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fashionmlp",
            "train",
            *interruptible_run_options(real_data_root),
            *arguments,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("Epoch 1/3:"):
                break
        deadline = time.monotonic() + 60  # epoch 1's checkpoint follows its line
        while load_checkpoint(out / "checkpoint.pt").epoch != 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        saved = (out / "checkpoint.pt").read_bytes()
        process.send_signal(signal.SIGINT)
        time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert (out / "checkpoint.pt").read_bytes() == saved
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "interrupted again: stopped at once" in err
    assert err.strip().endswith(f"resume with: fashionmlp train --resume {out}")
    assert not (out / "model.safetensors").exists()


@pytest.mark.real_data
def test_a_diverging_run_stops_with_one_line(
    real_data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arguments = [
        "train",
        "--recipe",
        "seed",
        "--lr",
        "1e6",
        "--limit",
        "1280",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--no-plots",
        "--data-root",
        str(real_data_root),
    ]
    assert main([*arguments, "--out", str(tmp_path / "a")]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert re.search(r"the training loss became (nan|inf) at epoch 1, batch \d+", err)
    assert "lower one" in err
    assert main([*arguments, "--out", str(tmp_path / "b"), "--no-finite-check"]) == 0
    assert "test accuracy" in capsys.readouterr().out


def test_run_folders_are_never_mixed_with_other_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    assert main(["train", "--out", str(busy)]) == 2
    assert "not a fashionmlp run folder" in capsys.readouterr().err
    assert main(["train", "--out", str(busy), "--overwrite"]) == 2
    assert (busy / "notes.txt").read_text() == "mine" and len(list(busy.iterdir())) == 1

    interrupted = tmp_path / "interrupted"
    interrupted.mkdir()
    for name in ("run.json", "checkpoint.pt"):
        (interrupted / name).write_text("{}")
    assert main(["train", "--out", str(interrupted)]) == 2
    err = capsys.readouterr().err
    assert "an interrupted run" in err and f"--resume {interrupted}" in err
    assert (interrupted / "checkpoint.pt").read_text() == "{}"


def test_resume_refuses_what_it_cannot_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "--resume", str(tmp_path), "--epochs", "3"]) == 2
    assert "leave out --epochs" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "no interrupted run there" in capsys.readouterr().err


@pytest.mark.real_data
def test_a_finished_run_is_never_overwritten_by_accident(
    fast_run: Path, real_data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (fast_run / "model.safetensors").read_bytes()
    assert (
        main(["train", "--limit", "64", "--data-root", str(real_data_root), "--out", str(fast_run)])
        == 2
    )
    assert "--overwrite" in capsys.readouterr().err
    assert (fast_run / "model.safetensors").read_bytes() == before
    assert main(["train", "--resume", str(fast_run)]) == 2
    assert "already finished" in capsys.readouterr().err


@pytest.mark.real_data
def test_overwrite_replaces_a_finished_run_whole(real_data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    common = ["train", "--limit", "640", "--epochs", "1", "--device", "cpu", "--out", str(out)]
    common += ["--data-root", str(real_data_root)]
    assert main([*common, "--seed", "1"]) == 0
    first = (out / "model.safetensors").read_bytes()
    assert PNGS <= {path.name for path in out.iterdir()}
    assert main([*common, "--seed", "2", "--no-plots", "--overwrite"]) == 0
    assert json.loads((out / "run.json").read_text())["seed"] == 2
    assert (out / "model.safetensors").read_bytes() != first
    # Nothing of the first run is left: its plots are gone too.
    assert {path.name for path in out.iterdir()} == {
        "config.json",
        "run.json",
        "checkpoint.pt",
        "model.safetensors",
        "metrics.json",
        "metrics.csv",
        "README.md",
        ".lock",
    }


@pytest.mark.real_data
def test_validation_from_the_command_line_never_reads_the_test_set(
    real_data_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    real_load = data_module._load_verified

    def training_files_only(path: Path, spec: Any) -> torch.Tensor:
        assert not path.name.startswith("t10k"), "the test set was read while tuning"
        return real_load(path, spec)

    monkeypatch.setattr(data_module, "_load_verified", training_files_only)
    out = tmp_path / "tuning"
    arguments = ["train", "--validation", "5000", "--limit", "1000", "--epochs", "1"]
    arguments += ["--seed", "0", "--device", "cpu", "--out", str(out)]
    assert main([*arguments, "--data-root", str(real_data_root)]) == 0
    printed = capsys.readouterr().out
    assert "validation accuracy" in printed and "test accuracy" not in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["evaluated_on"] == "validation" and metrics["final"]["total"] == 1000
    assert metrics["final_validation_accuracy"] == metrics["final"]["accuracy"]
    assert json.loads((out / "run.json").read_text())["validation_size"] == 5000
    assert PNGS <= {path.name for path in out.iterdir()}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["train", "--epochs", "0"], "--epochs: must be at least 1"),
        (["train", "--batch-size", "-1"], "--batch-size: must be at least 1"),
        (["train", "--lr", "nan"], "--lr: must be a finite number above 0"),
        (["train", "--lr", "0"], "--lr: must be a finite number above 0"),
        (["train", "--seed", "x"], "--seed: expected a whole number"),
        (["train", "--recipe", "slow"], "--recipe: invalid choice"),
        (["train", "--device", "tpu"], "--device: unknown device 'tpu'"),
        (["evaluate", "run", "--device", "cuda:x"], "--device: unknown device 'cuda:x'"),
        (["train", "--set", "weight_decay"], "--set: expected FIELD=VALUE"),
        (["predict", "weights.pt"], "the following arguments are required: IMAGE"),
        (["evaluate"], "the following arguments are required: RUN_OR_WEIGHTS"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(arguments)
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("arguments", "status", "message"),
    [
        (["train", "--set", "momentum=0.9"], 2, "does not use momentum"),
        (["train", "--set", "colour=red"], 2, "unknown recipe setting 'colour'"),
        (["train", "--validation", "60000"], 2, "validation_size must be between 0 and 59999"),
        (["evaluate", "missing-run"], 1, "missing-run: no such file or folder"),
        (["predict", "nowhere.pt", "a.png"], 1, "nowhere.pt: no such file or folder"),
    ],
)
def test_failures_before_work_are_one_line_and_leave_nothing(
    arguments: list[str],
    status: int,
    message: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(arguments) == status
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
        main(
            [
                "--debug",
                "train",
                "--data-root",
                str(tmp_path / "data"),
                "--out",
                str(tmp_path / "r2"),
            ]
        )


def test_console_script_and_module_entry_point() -> None:
    script = str(Path(sys.executable).with_name("fashionmlp"))
    for command in ([script], [sys.executable, "-m", "fashionmlp"]):
        result = subprocess.run(
            [*command, "train", "--help"],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "COLUMNS": "200"},
        )
        assert result.returncode == 0, result.stderr
        assert "--recipe" in result.stdout and "--device" in result.stdout


# --- faults a careful user hits ------------------------------------------------------------


@pytest.mark.real_data
def test_a_run_folder_has_one_owner_and_kill_9_frees_it(
    real_data_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    options = [*interruptible_run_options(real_data_root), "--epochs", "30"]
    owner = start_cli("train", *options, "--out", str(out))
    try:
        wait_for_line(owner, "Epoch 1/30:")  # training, with its checkpoint written
        # Stopped (SIGSTOP), it holds the lock as it did running, and leaves both cores to
        # the processes that try the folder.
        owner.send_signal(signal.SIGSTOP)
        for extra in (["--out", str(out)], ["--out", str(out), "--overwrite"]):
            other = run_cli("train", *options, *extra)
            assert other.returncode == 1, other.stderr
            assert f"is in use by a run of process {owner.pid} on" in other.stderr
            assert len(other.stderr.strip().splitlines()) == 1
        other = run_cli("train", "--resume", str(out), "--data-root", str(real_data_root))
        assert other.returncode == 1 and f"process {owner.pid}" in other.stderr
        owner.kill()  # kill -9: no handler runs, the kernel releases the lock
        owner.wait(timeout=60)
    finally:
        owner.kill()
    # The lock is free at once: a resume claims the folder and trains (resuming to the end
    # is the interruption tests' job; this one stops it once it has begun).
    resumed = start_cli("train", "--resume", str(out), "--data-root", str(real_data_root))
    try:
        wait_for_line(resumed, "Resuming FashionMLP")
        resumed.send_signal(signal.SIGINT)
        _, err = resumed.communicate(timeout=120)
    finally:
        resumed.kill()
    assert resumed.returncode == 130, err
    assert "resume with: fashionmlp train --resume" in err


@pytest.mark.real_data
def test_a_full_disk_at_start_is_one_line_and_leaves_nothing_behind(
    real_data_root: Path, small_disk: SmallDisk, capsys: pytest.CaptureFixture[str]
) -> None:
    small_disk.mount("4k")  # room for the lock's page, none for run.json
    out = small_disk.path / "run"
    assert (
        main(["train", "--epochs", "1", "--data-root", str(real_data_root), "--out", str(out)]) == 1
    )
    err = capsys.readouterr().err
    assert "run.json: the disk is full: free some space, or choose another --out" in err
    assert len(err.strip().splitlines()) == 1 and os.listdir(small_disk.path) == []


@pytest.mark.real_data
def test_a_full_disk_mid_run_keeps_the_last_checkpoint_and_resumes(
    real_data_root: Path, small_disk: SmallDisk, capsys: pytest.CaptureFixture[str]
) -> None:
    # Checkpoints of this model take ~230 KB: one fits, a second beside it does not.
    small_disk.mount("384k")
    out = small_disk.path / "run"
    options = [*interruptible_run_options(real_data_root), "--hidden-features", "64"]
    assert main(["train", *options, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "cannot write checkpoint" in err and "the disk is full" in err
    assert "any earlier checkpoint there is intact" in err and len(err.strip().splitlines()) == 1
    # No partial file; epoch 1's row was written before its checkpoint failed.
    assert sorted(os.listdir(out)) == [".lock", "checkpoint.pt", "metrics.csv", "run.json"]
    assert load_checkpoint(out / "checkpoint.pt").epoch == 0
    small_disk.mount("16m")  # space freed
    assert (
        main(["train", "--resume", str(out), "--data-root", str(real_data_root), "--no-plots"]) == 0
    )
    assert FashionMLP.from_pretrained(out).config.hidden_features == 64


@pytest.mark.parametrize("empty_folder_first", [False, True])
def test_a_read_only_disk_is_one_line_and_gets_no_file(
    small_disk: SmallDisk, capsys: pytest.CaptureFixture[str], empty_folder_first: bool
) -> None:
    out = small_disk.path / "run"
    if empty_folder_first:
        out.mkdir()
    small_disk.mount("64k", read_only=True)
    assert main(["train", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "the file system is read-only: choose another --out, on a writable one" in err
    assert len(err.strip().splitlines()) == 1
    assert os.listdir(out) == [] if empty_folder_first else not out.exists()


def test_permission_denied_names_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    # Root may write anywhere whatever the mode bits, so the refusal is simulated.
    monkeypatch.setattr(Path, "mkdir", refuse)
    assert main(["train", "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert "permission denied: choose another --out, one you can write to" in err


def test_a_failed_start_leaves_nothing_so_a_rerun_just_works(
    real_data_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "run"
    monkeypatch.setattr(data_module, "SYSTEM_DATA_DIRS", ())
    common = ["train", "--epochs", "1", "--limit", "640", "--no-plots", "--out", str(out)]
    assert main([*common, "--data-root", str(tmp_path / "empty")]) == 1
    assert "not found" in capsys.readouterr().err and not out.exists()
    assert main([*common, "--data-root", str(real_data_root)]) == 0


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (b"hello\n", "text"),
        (b'{"weights": [1, 2]}', "JSON"),
        (b"\xff\xd8\xff\xe0" + bytes(100), "a JPEG image"),
        (b"\x89PNG\r\n\x1a\n" + bytes(100), "a PNG image"),
        (b"PK\x03\x04" + bytes(100), "a truncated zip archive"),
        (b"", "an empty file"),
    ],
)
def test_weights_of_the_wrong_kind_are_named_for_what_they_look_like(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, kind: str
) -> None:
    path = tmp_path / "w.pt"
    path.write_bytes(content)
    for command in (
        ["evaluate", str(path)],
        ["predict", str(path), "x.png"],
        ["export", str(path)],
    ):
        assert main(command) == 1
        err = capsys.readouterr().err
        assert f"is not a fashionmlp checkpoint or weights file (it looks like {kind})" in err
        assert len(err.strip().splitlines()) == 1


@pytest.mark.real_data
def test_evaluate_says_when_the_run_reported_on_fewer_images_or_is_unfinished(
    fast_run: Path, real_data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", str(fast_run), "--data-root", str(real_data_root)]) == 0
    err = capsys.readouterr().err
    assert "note: this run (--limit 5000) reported accuracy on the first 5000 test images" in err
    unfinished = tmp_path / "unfinished"
    shutil.copytree(fast_run, unfinished, ignore=shutil.ignore_patterns("model.safetensors"))
    assert main(["evaluate", str(unfinished)]) == 1
    assert "holds an unfinished run" in capsys.readouterr().err


def test_ctrl_c_during_start_up_is_one_line_without_a_traceback(tmp_path: Path) -> None:
    process = start_cli("train", "--out", str(tmp_path / "run"))
    time.sleep(0.4)  # importing torch, or reading the data
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert err.strip() == "fashionmlp: error: interrupted" and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_help_version_and_usage_mistakes_do_not_import_torch() -> None:
    for arguments in (["--help"], ["--version"], ["train", "--epochs", "0"], ["train", "--help"]):
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "fashionmlp", *arguments],
            capture_output=True,
            text=True,
            timeout=60,
        )
        imported = [
            line.split("|")[-1].strip() for line in result.stderr.splitlines() if "|" in line
        ]
        assert imported and "torch" not in imported, arguments
    result = subprocess.run(
        [sys.executable, "-c", "import sys, fashionmlp; print('torch' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.strip() == "False"


def test_every_recipe_field_has_its_flag_and_a_new_field_gets_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def flags() -> set[str]:
        [train] = [
            action.choices["train"]
            for action in build_parser()._actions
            if isinstance(action, argparse._SubParsersAction)
        ]
        return {option for action in train._actions for option in action.option_strings}

    fields = [*config.fields(Recipe), *config.fields(FashionMLPConfig)]
    assert {"--" + name.replace("_", "-") for name in fields if name != "model"} <= flags()

    @dataclasses.dataclass(frozen=True)
    class Wider(Recipe):
        #: A setting added later.
        cutout: int = config.ranged(0, low=0)

    monkeypatch.setattr(options_module, "Recipe", Wider)
    parser = options_module.Parser(prog="fashionmlp train")  # as a command makes its own
    options_module.add_recipe_options(parser)
    assert "--cutout" in {option for action in parser._actions for option in action.option_strings}
    with pytest.raises(SystemExit):
        parser.parse_args(["--cutout", "-1"])


@pytest.mark.real_data
def test_tensorboard_event_files_load_with_loss_and_accuracy(
    real_data_root: Path, tmp_path: Path
) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    arguments = ["train", "--epochs", "2", "--limit", "4096", "--seed", "0", "--no-plots"]
    arguments += ["--tensorboard", "--log-every", "1", "--device", "cpu", "--out", str(out)]
    assert main([*arguments, "--data-root", str(real_data_root)]) == 0
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {
        "train/batch_loss",
        "epoch/train_loss",
        "epoch/test_loss",
        "epoch/test_accuracy",
    } <= tags
    assert [e.step for e in events.Scalars("train/batch_loss")] == [0, 1, 2, 3]  # 2 batches x 2
    final = json.loads((out / "metrics.json").read_text())["final_test_accuracy"]
    assert events.Scalars("epoch/test_accuracy")[-1].value == pytest.approx(final)


def test_the_run_header_names_each_learning_rate_of_the_optimizer() -> None:
    def header(recipe: Recipe) -> str:
        return RunConsole(RunConfig(recipe), Path("run"), resumed=False, main=True).header("cpu")

    assert ", sgd lr 0.01, seed 0" in header(get_recipe("seed"))
    fast = get_recipe("fast")
    assert f", muon lr {fast.muon_lr} (hidden weights), adamw lr {fast.lr} (the rest)," in (
        header(fast)
    )


@pytest.mark.parametrize(("world_size", "how"), [("2", "os._exit"), ("1", "sys.exit")])
def test_under_torchrun_the_program_skips_the_interpreters_shutdown(
    world_size: str, how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # gloo's threads can abort a finalizing interpreter, so torchrun processes leave with
    # os._exit; everywhere else the program exits normally. Either way with main's status.
    def leave(status: int) -> NoReturn:
        raise SystemExit(("os._exit", status))

    monkeypatch.setattr(os, "_exit", leave)
    monkeypatch.setenv("WORLD_SIZE", world_size)
    monkeypatch.setattr(sys, "argv", ["fashionmlp", "evaluate", str(tmp_path / "missing")])
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit) as exit_:
            run()
    finally:
        signal.signal(signal.SIGINT, handler)  # run() ignores a late Ctrl-C; pytest wants it
    assert exit_.value.code == (("os._exit", 1) if how == "os._exit" else 1)


@pytest.mark.real_data
def test_train_takes_a_recipe_file_and_refuses_a_wrong_field_naming_it(
    real_data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = get_recipe("fast").replace(name="mine", epochs=1, batch_size=512)
    path = recipe.save(tmp_path / "mine.toml")
    common = ["--limit", "640", "--seed", "0", "--device", "cpu", "--no-plots"]
    common += ["--data-root", str(real_data_root)]
    assert main(["train", "--recipe", str(path), *common, "--out", str(tmp_path / "r")]) == 0
    saved = json.loads((tmp_path / "r" / "run.json").read_text())["recipe"]
    assert Recipe.from_dict(saved) == recipe
    capsys.readouterr()
    for line, field in (("colour = 'red'", "'colour'"), ("epochs = 'one'", "epochs")):
        text = [row for row in path.read_text().splitlines() if not row.startswith("epochs")]
        bad = tmp_path / "bad.toml"
        bad.write_text("\n".join([line, *text]) + ("\nepochs = 1\n" if "colour" in line else "\n"))
        assert main(["train", "--recipe", str(bad), *common, "--out", str(tmp_path / "b")]) == 2
        err = capsys.readouterr().err
        assert field in err and str(bad) in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "b").exists()


@pytest.mark.real_data
def test_early_stop_and_keep_best_save_the_best_epochs_model(
    real_data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    arguments = ["train", "--recipe", "seed", "--backend", "tensor", "--lr", "0.5", "--epochs", "6"]
    arguments += ["--limit", "2000", "--validation", "500", "--seed", "1", "--no-plots"]
    # No gain of 99 points can come: the run stops after epoch 3 on any CPU (which epoch is
    # best depends on the CPU's arithmetic: lr 0.5 overshoots, at different epochs).
    arguments += ["--early-stop", "2", "--early-stop-delta", "0.99", "--keep-best"]
    arguments += ["--device", "cpu"]
    assert main([*arguments, "--data-root", str(real_data_root), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    accuracies = [epoch["eval"]["accuracy"] for epoch in metrics["epochs"]]
    best = 1 + accuracies.index(max(accuracies))
    assert len(accuracies) == 3 and metrics["model_epoch"] == best
    assert metrics["final_validation_accuracy"] == max(accuracies)
    said = f"accuracy {100 * max(accuracies):.2f}% (the model of epoch {best}, the best)"
    assert said in capsys.readouterr().out
    assert main(["train", "--resume", str(out), "--keep-best"]) == 2  # kept from the run


@pytest.mark.real_data
def test_a_reader_that_stops_reading_ends_the_command_quietly(
    fast_run: Path, variant_run: Path, tmp_path: Path
) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `| head` that has had its lines: every write fails
    command = ["compare", str(fast_run), str(variant_run), "--out", str(tmp_path), "--no-plots"]
    try:
        done = subprocess.run(
            [sys.executable, "-m", "fashionmlp", *command],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert done.returncode == 141 and "Traceback" not in done.stderr, done.stderr
