"""The third ring of faults: no silent wrong answer from a damaged file, nothing that hangs,
every bad input one line. Each numbered case is one an adversarial user found on an
earlier version; the number is the case's in the issue that listed them."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conftest import SmallDisk
from fashionmlp import (
    CheckpointError,
    FashionMLP,
    FashionMLPError,
    InvalidArgumentError,
    evaluate,
    load_checkpoint,
    predict,
    save_checkpoint,
)
from fashionmlp.cli import main
from fashionmlp.loggers import CSVLogger, TensorBoardLogger
from fashionmlp.pretrained import write_pretrained
from fashionmlp.runs import RunFolder


def one_line(err: str) -> str:
    """The one line of a failure: no traceback, no warnings before it."""
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("fashionmlp: error: "), err
    return err


@pytest.fixture(scope="module")
def trained(real_data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished two-epoch run, copied by each test that damages it."""
    out = tmp_path_factory.mktemp("faults") / "run"
    arguments = ["train", "--epochs", "2", "--limit", "2000", "--seed", "0", "--no-plots"]
    assert (
        main([*arguments, "--device", "cpu", "--data-root", str(real_data_root), "--out", str(out)])
        == 0
    )
    return out


@pytest.fixture
def run(trained: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(trained, copy, ignore=shutil.ignore_patterns(".lock"))
    return copy


def evaluate_cli(
    path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    status = main(["evaluate", str(path), "--data-root", str(data_root)])
    return status, capsys.readouterr().err


def status_of(arguments: list[str]) -> int:
    """The exit status of the command line, whether a usage mistake (argparse's exit) or
    returned."""
    try:
        return main(arguments)
    except SystemExit as exit_:
        return int(exit_.code or 0)


# --- 1. a model folder's config.json lacking a setting ------------------------------------


@pytest.mark.real_data
@pytest.mark.parametrize("how", ["deleted", "null"])
def test_1_a_config_without_its_normalization_is_refused_not_defaulted(
    run: Path, real_data_root: Path, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    document = json.loads((run / "config.json").read_text())
    if how == "deleted":
        del document["normalize"]
    else:
        document["normalize"] = None
    # Written whole, checksums and all, as a writer that left the key out would: the rule
    # that every setting be present is what refuses it.
    weights = load_checkpoint(run / "checkpoint.pt").model_state
    write_pretrained(run, {k: v for k, v in document.items() if k != "weights_sha256"}, weights)
    status, err = evaluate_cli(run, real_data_root, capsys)
    assert status == 1 and "normalize" in one_line(err)


@pytest.mark.real_data
def test_1_a_config_edited_by_hand_is_refused_by_its_checksum(
    run: Path, real_data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (run / "config.json").read_text()
    (run / "config.json").write_text(text.replace("0.353", "0.3"))
    status, err = evaluate_cli(run, real_data_root, capsys)
    assert status == 1 and "does not match the checksum" in one_line(err)


# --- 2. a checkpoint damaged in the middle ---------------------------------------------------


@pytest.mark.real_data
def test_2_a_checkpoint_damaged_in_the_middle_is_refused_on_resume(
    run: Path, real_data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (run / "model.safetensors").unlink()  # unfinished: resumable
    data = bytearray((run / "checkpoint.pt").read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = os.urandom(64)
    (run / "checkpoint.pt").write_bytes(bytes(data))
    status = main(["train", "--resume", str(run), "--data-root", str(real_data_root)])
    err = one_line(capsys.readouterr().err)
    assert status == 1 and "is damaged" in err and "earlier copy" in err
    assert (run / "checkpoint.pt").read_bytes() == bytes(data)  # left as it was


# --- 3. metrics.csv trusted on resume --------------------------------------------------------


def csv_epochs(path: Path) -> list[tuple[str, str]]:
    with open(path, newline="") as handle:
        return [(row["epoch"], row["eval_accuracy"]) for row in csv.DictReader(handle)]


@pytest.mark.real_data
@pytest.mark.parametrize("damage", ["a half-written last row", "a fake row appended"])
def test_3_on_resume_metrics_csv_is_rebuilt_from_the_checkpoints_history(
    run: Path, real_data_root: Path, damage: str
) -> None:
    truth = csv_epochs(run / "metrics.csv")
    (run / "model.safetensors").unlink()
    text = (run / "metrics.csv").read_text()
    if damage == "a half-written last row":
        text = text[: len(text) - 20]
    else:
        text += "3,99,0.1,0.1,0.5,0.001,9.0,test\n"
    (run / "metrics.csv").write_text(text)
    assert (
        main(["train", "--resume", str(run), "--data-root", str(real_data_root), "--no-plots"]) == 0
    )
    assert csv_epochs(run / "metrics.csv") == truth
    final = json.loads((run / "metrics.json").read_text())["final_test_accuracy"]
    assert float(truth[-1][1]) == final


# --- 4. export replacing the files it reads --------------------------------------------------


@pytest.mark.parametrize("target", ["model.safetensors", "config.json", "checkpoint.pt"])
def test_4_export_never_overwrites_what_it_reads(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str
) -> None:
    pytest.importorskip("onnxscript")
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    before = (run / target).read_bytes()
    status = main(["export", str(run), "--out", str(run / target), "--overwrite"])
    assert status == 2 and target in one_line(capsys.readouterr().err)
    assert (run / target).read_bytes() == before
    FashionMLP.from_pretrained(run)  # still whole


# --- 5. a FIFO given as an image, and signals at every point ---------------------------------


@pytest.mark.real_data
def test_5_a_fifo_as_an_image_or_as_weights_is_refused_at_once(
    trained: Path, tmp_path: Path
) -> None:
    fifo = tmp_path / "some.fifo"
    os.mkfifo(fifo)
    for arguments in (["predict", str(trained), str(fifo)], ["evaluate", str(fifo)]):
        result = subprocess.run(
            [sys.executable, "-m", "fashionmlp", *arguments],
            capture_output=True,
            text=True,
            timeout=60,  # it waited forever in open() before
        )
        assert result.returncode == 1, result.stderr
        assert "is not a regular file (a FIFO)" in one_line(result.stderr)


def test_5_a_second_sigterm_during_start_up_ends_the_command_at_once(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import time
        from fashionmlp.cli.common import startup_signals
        with startup_signals():
            print("ready", flush=True)
            time.sleep(60)  # a start-up step that never reaches a safe point
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
        process.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 143 and err.strip() == "fashionmlp: error: interrupted"


# --- 6. learning rates past float32, and runs that fail before their first epoch -------------


@pytest.mark.parametrize(
    "setting", [["--lr", "1e38"], ["--set", "lr=1e300"], ["--set", "muon_lr=1e300"]]
)
def test_6_an_overflowing_learning_rate_is_refused_up_front_leaving_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setting: list[str]
) -> None:
    out = tmp_path / "run"
    assert status_of(["train", *setting, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "lr" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


@pytest.mark.real_data
def test_6_a_run_that_fails_in_its_first_epoch_leaves_nothing(
    real_data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "parent" / "run"
    arguments = ["train", "--recipe", "seed", "--lr", "1e6", "--limit", "1280", "--epochs", "2"]
    arguments += ["--device", "cpu", "--data-root", str(real_data_root), "--out", str(out)]
    assert main(arguments) == 1  # the loss diverges in epoch 1
    assert "training loss became" in one_line(capsys.readouterr().err)
    assert not (tmp_path / "parent").exists()  # the folders it made for itself too


# --- 7. names longer than a file system takes ------------------------------------------------


def test_7_a_name_over_255_bytes_is_one_line_everywhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    long = tmp_path / ("ü" * 200)
    for arguments, status in (
        (["train", "--out", str(long)], 2),
        (["train", "--resume", str(long)], 2),
        (["evaluate", str(long)], 1),
        (["predict", str(long), "x.png"], 1),
    ):
        assert status_of(arguments) == status, arguments
        assert "more than the 255" in one_line(capsys.readouterr().err)


# --- 8. metrics.csv of random bytes, or a folder, on resume ----------------------------------


@pytest.mark.real_data
def test_8_a_metrics_csv_of_garbage_is_rebuilt_and_a_folder_refused(
    run: Path, real_data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truth = csv_epochs(run / "metrics.csv")
    (run / "model.safetensors").unlink()
    (run / "metrics.csv").write_bytes(os.urandom(500))
    resume = ["train", "--resume", str(run), "--data-root", str(real_data_root), "--no-plots"]
    assert main(resume) == 0
    assert csv_epochs(run / "metrics.csv") == truth
    (run / "model.safetensors").unlink()
    (run / "metrics.csv").unlink()
    (run / "metrics.csv").mkdir()
    assert main(resume) == 2
    assert "metrics.csv is a folder" in one_line(capsys.readouterr().err)


# --- 9. a config nested 100,000 deep ---------------------------------------------------------


@pytest.mark.parametrize("file", ["config.json", "run.json"])
def test_9_json_nested_100000_deep_is_one_line(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], file: str
) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    (run / file).write_text("[" * 100_000 + "]" * 100_000)
    assert main(["evaluate", str(run)]) == 1
    assert "nested too deep" in one_line(capsys.readouterr().err)


# --- 10. the library's inputs ------------------------------------------------------------------


def test_10_evaluate_refuses_batches_that_are_not_pairs() -> None:
    model = FashionMLP(hidden_features=8)
    x, y = torch.rand(4, 1, 28, 28), torch.randint(0, 10, (4,))
    for batches, named in (([{"x": x, "y": y}], "dict"), ([(x, y, y)], "3-tuple")):
        with pytest.raises(InvalidArgumentError, match=f"pair .* got (a )?{named}"):
            evaluate(batches, model)


def test_10_predict_takes_numpy_arrays_as_images_and_refuses_the_meta_device() -> None:
    model = FashionMLP(hidden_features=8)
    pixels = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    [[best, *_]] = predict(model, pixels)
    [[same, *_]] = predict(model, torch.from_numpy(pixels))
    assert best == same
    photo = np.random.default_rng(1).integers(0, 256, (90, 60, 3), dtype=np.uint8)
    assert len(predict(model, photo)[0]) == 3  # a picture of another size, as PIL's
    with pytest.raises(InvalidArgumentError, match="meta device"):
        predict(model, torch.empty(1, 28, 28, device="meta"))


def test_10_loggers_pointed_into_a_read_only_folder_raise_our_error(
    small_disk: SmallDisk,
) -> None:
    small_disk.mount("64k", read_only=True)
    with pytest.raises(FashionMLPError, match="read-only"):
        CSVLogger(small_disk.path / "metrics.csv")
    pytest.importorskip("tensorboard")
    with pytest.raises(FashionMLPError, match="read-only"):
        TensorBoardLogger(small_disk.path / "tb")


# --- the clumsy cases ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["/dev/null", "fifo", "symlink loop"])
def test_paths_that_are_not_regular_files_are_named_for_what_they_are(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    path = Path("/dev/null")
    if kind == "fifo":
        path = tmp_path / "pipe"
        os.mkfifo(path)
    elif kind == "symlink loop":
        path = tmp_path / "loop"
        path.symlink_to(path)
    assert main(["evaluate", str(path)]) == 1
    err = one_line(capsys.readouterr().err)
    assert "no such file" not in err and str(path) in err


@pytest.mark.real_data
def test_a_run_resumes_from_its_checkpoint_with_run_json_gone(
    run: Path, real_data_root: Path
) -> None:
    (run / "model.safetensors").unlink()
    (run / "run.json").unlink()
    assert (
        main(["train", "--resume", str(run), "--data-root", str(real_data_root), "--no-plots"]) == 0
    )
    assert json.loads((run / "run.json").read_text())["seed"] == 0  # written again


@pytest.mark.parametrize("content", ["[1, 2]", '{"recipe": 3}'])
def test_a_run_json_of_the_wrong_shape_is_one_line(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str
) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    (run / "run.json").write_text(content)
    assert main(["evaluate", str(run)]) == 1
    assert "run.json" in one_line(capsys.readouterr().err)


def test_nan_weights_are_refused_when_loaded(tmp_path: Path) -> None:
    model = FashionMLP(hidden_features=8)
    with torch.no_grad():
        model.fc2.bias[0] = float("nan")
    model.save_pretrained(tmp_path / "folder")
    with pytest.raises(CheckpointError, match=r"NaN or infinite weights \(fc2.bias\)"):
        FashionMLP.from_pretrained(tmp_path / "folder")
    save_checkpoint(tmp_path / "c.pt", model)
    with pytest.raises(CheckpointError, match="NaN or infinite weights"):
        load_checkpoint(tmp_path / "c.pt", FashionMLP(hidden_features=8))


def test_a_pickle_as_checkpoint_is_one_line_without_torchs_warnings(
    tmp_path: Path,
) -> None:
    path = tmp_path / "checkpoint.pt"
    torch.save({"fc1.weight": torch.zeros(2)}, path, _use_new_zipfile_serialization=False)
    result = subprocess.run(
        [sys.executable, "-m", "fashionmlp", "evaluate", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "Warning" not in result.stderr
    one_line(result.stderr)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("translate=100", "recipe 'fast': translate must be in [0, 27], got 100"),
        ("momentum=0.9", "does not use momentum, which is SGD's"),
        ("epochs=1e9", "epochs must be a whole number, got 1e+09"),
    ],
)
def test_settings_are_refused_before_anything_is_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setting: str, message: str
) -> None:
    assert main(["train", "--set", setting, "--out", str(tmp_path / "run")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and message in one_line(captured.err)


@pytest.mark.real_data
def test_missing_parents_of_out_are_created(real_data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "run"
    arguments = ["train", "--epochs", "1", "--limit", "256", "--no-plots", "--device", "cpu"]
    assert main([*arguments, "--data-root", str(real_data_root), "--out", str(out)]) == 0
    assert (out / "model.safetensors").is_file()


def test_overwrite_says_which_files_of_yours_are_in_the_way(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    (run / "notes.txt").write_text("mine")
    (run / "analysis").mkdir()
    assert main(["train", "--out", str(run), "--overwrite"]) == 2
    err = one_line(capsys.readouterr().err)
    assert "notes.txt" in err and "analysis/" in err
    assert (run / "notes.txt").read_text() == "mine" and (run / "model.safetensors").exists()


def test_evaluating_a_run_that_is_training_says_it_is_in_use(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    (run / "model.safetensors").unlink()
    with RunFolder.interrupted(run):  # this process holds it, as a trainer would
        assert main(["evaluate", str(run)]) == 1
        assert f"is in use by a run of process {os.getpid()}" in capsys.readouterr().err
    assert main(["evaluate", str(run)]) == 1
    assert f"finish it with fashionmlp train --resume {run}" in capsys.readouterr().err


def test_export_keeps_torchs_chatter_out_and_checks_the_destination_first(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("onnxscript")
    started = time.monotonic()
    assert main(["export", str(trained), "--out", str(tmp_path / "missing" / "m.onnx")]) == 2
    assert "does not exist" in one_line(capsys.readouterr().err)
    assert time.monotonic() - started < 5  # refused before the export's tens of seconds
    assert main(["export", str(trained), "--out", str(tmp_path / "m.onnx")]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("Wrote ")
    assert len(capsys.readouterr().out.splitlines()) <= 1


def test_a_compiled_models_checkpoint_holds_the_modules_own_keys(tmp_path: Path) -> None:
    model = FashionMLP(hidden_features=8)
    compiled: Any = torch.compile(model)
    save_checkpoint(tmp_path / "c.pt", compiled)
    checkpoint = load_checkpoint(tmp_path / "c.pt", FashionMLP(hidden_features=8))
    assert set(checkpoint.model_state) == set(model.state_dict())


@pytest.mark.real_data
def test_run_json_records_the_images_a_limited_validation_evaluates(
    real_data_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    arguments = ["train", "--validation", "1000", "--limit", "500", "--epochs", "1"]
    arguments += ["--no-plots", "--device", "cpu", "--data-root", str(real_data_root)]
    assert main([*arguments, "--out", str(out)]) == 0
    recorded = json.loads((out / "run.json").read_text())["data"]
    final = json.loads((out / "metrics.json").read_text())["final"]
    assert recorded == {"train": 500, "validation": 500} and final["total"] == 500
