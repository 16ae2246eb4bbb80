from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

import fashionmlp
from conftest import SmallDisk
from fashionmlp import (
    CheckpointError,
    EpochReport,
    EpochStats,
    EvalResult,
    FashionMLP,
    FitResult,
    InvalidArgumentError,
    RunConfig,
    RunFolderError,
    get_recipe,
    save_checkpoint,
)
from fashionmlp.devices import environment, git_commit
from fashionmlp.errors import RunExistsError
from fashionmlp.runs import RUN, RUN_FILES, RunFolder, metrics

SETTINGS = RunConfig(get_recipe("fast").replace(epochs=2), seed=3, limit=50)


def fit_result(accuracies: tuple[float, ...] = (0.85, 0.91)) -> FitResult:
    history = []
    for epoch, accuracy in enumerate(accuracies, start=1):
        correct = int(100 * accuracy)
        matrix = tuple(
            tuple(
                correct if i == j == 0 else (100 - correct if (i, j) == (0, 1) else 0)
                for j in range(10)
            )
            for i in range(10)
        )
        history.append(
            EpochReport(
                epoch=epoch,
                epochs=len(accuracies),
                train=EpochStats(epoch=epoch, loss_sum=50.0, samples=100, batches=2, seconds=1.0),
                eval=EvalResult(correct=correct, total=100, loss=0.4, confusion_matrix=matrix),
                seconds=1.5 * epoch,
                lr=1e-3,
            )
        )
    return FitResult(FashionMLP(), tuple(history), True, "float32")


def test_a_new_folder_is_named_by_time_under_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with RunFolder.new() as folder, RunFolder.new() as other:  # the same second
        assert folder.path.parent == Path("runs") and folder.path.is_dir()
        assert os.listdir(folder.path) == [".lock"] and not folder.finished
        assert other.path != folder.path and other.path.name[:15] == folder.path.name[:15]


def test_new_refuses_files_and_foreign_folders_and_makes_missing_parents(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidArgumentError, match="is a file"):
        RunFolder.new(tmp_path / "file")
    with pytest.raises(InvalidArgumentError, match="file is a file"):
        RunFolder.new(tmp_path / "file" / "run")  # a file where a parent would be
    with RunFolder.new(tmp_path / "missing" / "run") as made:
        assert made.path.is_dir()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(InvalidArgumentError, match="not a fashionmlp run folder"):
            RunFolder.new(foreign, overwrite=overwrite)
    assert (foreign / "notes.txt").read_text() == "mine"


def test_an_earlier_run_is_replaced_only_with_overwrite_and_only_its_files(tmp_path: Path) -> None:
    with RunFolder.new(tmp_path / "run") as folder:
        folder.write_config(SETTINGS, {"device": "cpu"})
        folder.write_results(fit_result())
    with pytest.raises(
        RunExistsError, match="already holds a finished run.*overwrite=True"
    ) as info:
        RunFolder.new(folder.path)
    assert info.value.finished and info.value.path == folder.path
    assert "--" not in str(info.value)  # the library names no command-line flag
    with RunFolder.new(folder.path, overwrite=True) as again:
        assert os.listdir(again.path) == [".lock"]


def test_the_environment_names_what_the_figures_depend_on(tmp_path: Path) -> None:
    facts = environment(torch.device("cpu"), "data")
    assert facts["threads"] == torch.get_num_threads() and facts["device"] == "cpu"
    cpu = Path("/proc/cpuinfo")
    if cpu.is_file() and "model name" in cpu.read_text():  # Linux: the CPU says it itself
        info = cpu.read_text()
        assert facts["cpu"] in info and facts["processor"] == facts["cpu"]
        flags = set(info.split())
        assert facts["native_bfloat16"] == bool(flags & {"avx512_bf16", "amx_tile"})
    head = subprocess.run(
        ["git", "-C", str(Path(fashionmlp.__file__).parent), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    if head.returncode == 0:  # run from a checkout (CI's clone): its commit, maybe -dirty
        assert str(facts["git_commit"]).startswith(head.stdout.strip())
    assert git_commit(tmp_path) is None  # not a checkout


def test_the_config_round_trips_with_its_environment(tmp_path: Path) -> None:
    folder = RunFolder.new(tmp_path / "run")
    folder.write_config(SETTINGS, environment(torch.device("cpu"), "data"))
    written = json.loads((folder.path / RUN).read_text())
    assert written["seed"] == 3 and written["environment"]["processes"] == 1
    assert written["environment"]["torch"] == str(torch.__version__)
    assert folder.read_config() == SETTINGS
    (folder.path / RUN).write_text("{not json")
    with pytest.raises(CheckpointError, match="run.json is not valid JSON"):
        folder.read_config()


def test_only_an_unfinished_run_can_be_resumed(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="no interrupted run there"):
        RunFolder.interrupted(tmp_path)
    with RunFolder.new(tmp_path / "run") as folder:
        folder.write_config(SETTINGS, {})
        save_checkpoint(folder.checkpoint, FashionMLP())
    with RunFolder.interrupted(folder.path) as resumed:
        assert resumed.path == folder.path
        resumed.write_results(fit_result())
    with pytest.raises(InvalidArgumentError, match="already finished"):
        RunFolder.interrupted(folder.path)
    assert set(p.name for p in folder.path.iterdir()) <= set(RUN_FILES)


def test_metrics_give_the_final_figures_and_the_time_to_90_percent(tmp_path: Path) -> None:
    figures = metrics(fit_result())
    assert figures["evaluated_on"] == "test" and figures["final_test_accuracy"] == 0.91
    assert figures["seconds_to_90_percent"] == 3.0 and figures["wall_seconds"] == 3.0
    assert [epoch["epoch"] for epoch in figures["epochs"]] == [1, 2]
    assert metrics(fit_result((0.5, 0.6)))["seconds_to_90_percent"] is None


def test_a_finished_run_is_a_model_folder_that_loads_with_its_normalization(
    tmp_path: Path,
) -> None:
    folder = RunFolder.new(tmp_path / "run")
    folder.write_config(SETTINGS, {})
    result = fit_result()
    trained = FashionMLP(normalize=(0.286, 0.353))
    folder.write_results(dataclasses.replace(result, model=trained))
    assert folder.finished and {"config.json", "model.safetensors"} <= set(os.listdir(folder.path))
    loaded = FashionMLP.from_pretrained(folder.path)
    assert loaded.config == trained.config and not loaded.training
    assert torch.equal(loaded.fc1.weight, trained.fc1.weight)


def test_a_claimed_folder_is_refused_to_anyone_else_until_released(tmp_path: Path) -> None:
    path = tmp_path / "run"
    with RunFolder.new(path) as folder:
        folder.write_config(SETTINGS, {})
        save_checkpoint(folder.checkpoint, FashionMLP())
        owner = f"in use by a run of process {os.getpid()} on"
        with pytest.raises(RunFolderError, match=owner):
            RunFolder.new(path, overwrite=True)
        with pytest.raises(RunFolderError, match=owner):
            RunFolder.interrupted(path)
    with RunFolder.interrupted(path):  # released: it can be resumed now
        pass


def test_a_checkpoint_being_written_does_not_make_the_folder_foreign(tmp_path: Path) -> None:
    # What another trainer sees while the owner saves: atomic_write's temporary file beside
    # the run's own files. The owner must be named, not the folder called someone else's.
    path = tmp_path / "run"
    with RunFolder.new(path) as folder:
        folder.write_config(SETTINGS, {})
        save_checkpoint(folder.checkpoint, FashionMLP())
        (path / ".checkpoint.pt.k3x9_q2a").write_bytes(b"half a checkpoint")
        with pytest.raises(RunFolderError, match=f"in use by a run of process {os.getpid()}"):
            RunFolder.new(path)
    # The same file left by a trainer killed mid-write (kill -9) goes with the run it was.
    with pytest.raises(InvalidArgumentError, match="already holds an interrupted run"):
        RunFolder.new(path)
    with RunFolder.new(path, overwrite=True) as again:
        assert os.listdir(again.path) == [".lock"]
    (path / ".notes.txt.k3x9_q2a").write_text("not a run's file")
    with pytest.raises(InvalidArgumentError, match="not a fashionmlp run folder"):
        RunFolder.new(path, overwrite=True)


def test_a_new_run_that_fails_before_its_first_checkpoint_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "run"
    with pytest.raises(RuntimeError), RunFolder.new(path) as folder:
        folder.write_config(SETTINGS, {})
        raise RuntimeError("the data could not be read")
    assert not path.exists()
    path.mkdir()  # a folder of the user's own is kept, empty
    with pytest.raises(RuntimeError), RunFolder.new(path) as folder:
        raise RuntimeError
    assert os.listdir(path) == []
    untrained = {"history": [], "partial": None}
    with pytest.raises(RuntimeError), RunFolder.new(path) as folder:  # failed in epoch 1
        folder.write_config(SETTINGS, {})
        save_checkpoint(folder.checkpoint, FashionMLP(), state=untrained)
        raise RuntimeError("the loss diverged")
    assert os.listdir(path) == []
    for failure, state in (
        (KeyboardInterrupt, untrained),  # interrupted: the command to resume was given
        (RunFolderError, untrained),  # a disk that filled: free some space and resume
        (RuntimeError, {"history": [{"epoch": 1}], "partial": None}),  # an epoch done
    ):
        with pytest.raises(failure), RunFolder.new(path, overwrite=True) as folder:
            folder.write_config(SETTINGS, {})
            save_checkpoint(folder.checkpoint, FashionMLP(), state=state)
            raise failure("stopped")
        assert {"run.json", "checkpoint.pt"} <= set(os.listdir(path)), failure


def test_a_full_disk_while_saving_the_model_leaves_no_partial_file(small_disk: SmallDisk) -> None:
    small_disk.mount("64k")  # far too small for the 2.7 MB of weights
    with RunFolder.new(small_disk.path / "run") as folder:
        with pytest.raises(CheckpointError, match="the disk is full"):
            folder.write_results(fit_result())
        assert os.listdir(folder.path) == [".lock"]


class Saved:
    """A callback that notes the model folders it is told of."""

    def __init__(self) -> None:
        self.folders: list[Path] = []

    def on_model_saved(self, folder: Path) -> None:
        self.folders.append(folder)


@pytest.mark.real_data
def test_train_run_writes_the_folder_keeps_the_best_epoch_and_resumes_from_one_read(
    real_data_root: Path, tmp_path: Path
) -> None:
    from fashionmlp.callbacks import KeepBest, StopTraining
    from fashionmlp.runs import train_run

    config = RunConfig(get_recipe("fast").replace(epochs=3, batch_size=256), seed=1, limit=1024)
    stop = StopTraining("as Ctrl-C would, mid-epoch 2")

    def stop_in_epoch_2(event: object) -> None:
        if getattr(event, "epoch", 0) == 2 and getattr(event, "batch", 0) == 1:
            raise stop

    with RunFolder.new(tmp_path / "run") as folder:
        stopped = train_run(
            folder,
            config,
            root=real_data_root,
            device="cpu",
            callbacks=[stop_in_epoch_2],
            plots=False,
        )
    assert stopped.stopped_at == (2, 2) and not (folder.path / "model.safetensors").exists()
    keep, saved = KeepBest(), Saved()
    with RunFolder.interrupted(folder.path) as resumed:
        settings, checkpoint = resumed.read_checkpoint()
        assert settings == config and checkpoint.epoch == 1
        result = train_run(
            resumed,
            settings,
            root=real_data_root,
            device="cpu",
            callbacks=[keep, saved],
            resume=checkpoint,
            plots=False,
        )
    assert result.finished and saved.folders == [folder.path]
    written = json.loads((folder.path / "metrics.json").read_text())
    assert written["model_epoch"] == keep.best_epoch
    assert written["final"]["accuracy"] == result.history[keep.best_epoch - 1].eval.accuracy
    assert {"config.json", "model.safetensors", "README.md", "run.json"} <= {
        path.name for path in folder.path.iterdir()
    }
