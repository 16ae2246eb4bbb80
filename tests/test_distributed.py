from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from conftest import interruptible_run_options
from fashionmlp import (
    FashionMLP,
    devices,
    evaluate,
    make_loaders,
)
from fashionmlp.data import FashionMNISTTensors, TensorLoader

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
TORCHRUN_SIGTERM_STATUS = 1


def start_torchrun(arguments: list[str]) -> subprocess.Popen[str]:
    """torchrun in a process group of its own, so that every worker can be killed."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two ranks share two cores
    return subprocess.Popen(
        [*TORCHRUN, *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )


def kill_group(process: subprocess.Popen[str]) -> None:
    """Kill torchrun and every worker it started, however the test ended."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_torchrun(arguments: list[str], timeout: int = 100) -> subprocess.CompletedProcess[str]:
    process = start_torchrun(arguments)
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        kill_group(process)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def shard_ids(samples: int, world: int, *, shuffle: bool) -> list[list[int]]:
    """The sample ids each rank's TensorLoader serves in one epoch."""
    data = FashionMNISTTensors(
        torch.zeros(samples, 28, 28, dtype=torch.uint8), torch.arange(samples)
    )
    served = []
    for rank in range(world):
        loader = TensorLoader(
            data,
            7,
            shuffle=shuffle,
            shard=(rank, world),
            generator=torch.Generator().manual_seed(3),
        )
        served.append(torch.cat([y for _, y in loader]).tolist())
        assert len(loader) == -(-len(served[-1]) // 7)
    return served


def test_training_shards_cover_the_dataset_once_per_epoch() -> None:
    served = shard_ids(120, 3, shuffle=True)
    assert [len(ids) for ids in served] == [40, 40, 40]
    assert sorted(sum(served, [])) == list(range(120))
    uneven = shard_ids(100, 3, shuffle=True)  # evened out by repeating two samples
    assert [len(ids) for ids in uneven] == [34, 34, 34]
    assert set(sum(uneven, [])) == set(range(100))


def test_evaluation_shards_are_strided_and_unpadded() -> None:
    served = shard_ids(100, 3, shuffle=False)
    assert served[1] == list(range(1, 100, 3))
    assert sorted(sum(served, [])) == list(range(100))


def test_single_process_helpers() -> None:
    assert not devices.is_distributed()
    assert (devices.rank(), devices.world_size()) == (0, 1)
    assert devices.is_main_process() and devices.max_over_ranks(5) == 5
    value = torch.tensor([1.5])
    assert devices.reduce_sum(value) is value
    assert devices.all_finite(value) and not devices.all_finite(torch.tensor(float("nan")))
    assert devices.init_from_environment(torch.device("cpu")) == torch.device("cpu")
    devices.shutdown()  # no group joined: nothing to leave


@pytest.mark.real_data
def test_two_ranks_train_identically_and_evaluate_like_one(
    real_data_root: Path, tmp_path: Path
) -> None:
    worker = Path(__file__).with_name("ddp_worker.py")
    run = run_torchrun([str(worker), str(real_data_root), str(tmp_path), "2560"])
    assert run.returncode == 0, run.stderr[-12000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["world_size"] == 2
    for backend in ("tensor", "torchvision"):
        ranks = report[backend]
        assert ranks["identical_weights"], backend
        assert ranks["train"]["samples"] == 2560  # global: both shards together
        assert ranks["batches_per_rank"] == 20  # 1280 samples per rank, batches of 64

        model = FashionMLP()
        model.load_state_dict(torch.load(tmp_path / f"{backend}.pt", weights_only=True))
        _, test = make_loaders(real_data_root, 64, backend=backend, limit=2560)
        single = evaluate(test, model, nn.CrossEntropyLoss(), keep_predictions=True)
        assert single.predictions is not None
        assert ranks["predictions"] == single.predictions.tolist()  # gathered in order
        distributed_result = ranks["eval"]
        assert distributed_result["total"] == single.total == 2560
        assert distributed_result["correct"] == single.correct
        assert [tuple(row) for row in distributed_result["confusion_matrix"]] == list(
            single.confusion_matrix
        )
        assert distributed_result["loss"] == pytest.approx(single.loss, rel=1e-6)


@pytest.fixture(scope="module")
def torchrun_run(
    real_data_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str]:
    """An uninterrupted two-process ``fashionmlp train``: its folder and what it printed."""
    out = tmp_path_factory.mktemp("torchrun") / "run"
    arguments = [*interruptible_run_options(real_data_root), "--tensorboard", "--out", str(out)]
    run = run_torchrun(["-m", "fashionmlp", "train", *arguments])
    assert run.returncode == 0, run.stderr[-12000:]
    return out, run.stdout


@pytest.mark.real_data
def test_the_command_line_runs_unchanged_under_torchrun(torchrun_run: tuple[Path, str]) -> None:
    out, printed = torchrun_run
    assert printed.count("Epoch 3/3:") == 1  # rank 0 alone prints
    assert printed.count("Training FashionMLP") == 1
    config = json.loads((out / "run.json").read_text())
    assert config["environment"]["processes"] == 2
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["final"]["total"] == 6_400  # --limit: the first 6,400 test images
    assert [e["train"]["samples"] for e in metrics["epochs"]] == [6_400] * 3
    assert {p.name for p in out.iterdir()} == {
        "config.json",
        "run.json",
        "checkpoint.pt",
        "model.safetensors",
        "metrics.json",
        "metrics.csv",
        "README.md",
        "tensorboard",
        ".lock",
    }
    # One set of log files, each row written once: only rank 0 writes.
    with open(out / "metrics.csv", newline="") as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["1", "2", "3"]
    assert len(list((out / "tensorboard").iterdir())) == 1


@pytest.mark.real_data
def test_an_interrupted_torchrun_run_resumes_to_the_uninterrupted_weights(
    real_data_root: Path, tmp_path: Path, torchrun_run: tuple[Path, str]
) -> None:
    common = ["-m", "fashionmlp", "train", *interruptible_run_options(real_data_root)]
    part = tmp_path / "part"
    process = start_torchrun([*common, "--out", str(part)])
    try:
        assert process.stdout is not None
        seen = []
        for line in process.stdout:
            seen.append(line)
            if line.startswith("Epoch 1/3:"):
                break
        # The job held still at that line while torchrun is told (it passes SIGTERM on to
        # every worker), so that the signal lands in epoch 2, not after the last.
        os.killpg(process.pid, signal.SIGSTOP)
        process.send_signal(signal.SIGTERM)
        os.killpg(process.pid, signal.SIGCONT)
        _, err = process.communicate(timeout=100)
    finally:
        kill_group(process)
    assert seen and seen[-1].startswith("Epoch 1/3:"), "".join(seen) + err[-3000:]
    assert f"resume with: fashionmlp train --resume {part}" in err, err[-3000:]
    assert not (part / "model.safetensors").exists(), err[-3000:]
    # torchrun's own agent reports a SIGTERM as a failure of the whole job (exit 1); the
    # workers exited 143 with the one-line message above.
    assert process.returncode == TORCHRUN_SIGTERM_STATUS, err[-3000:]

    resumed = run_torchrun(
        [
            *common[:3],
            "--resume",
            str(part),
            "--device",
            "cpu",
            "--no-plots",
            "--data-root",
            str(real_data_root),
        ]
    )
    assert resumed.returncode == 0, resumed.stderr[-12000:]
    expected = load_file(torchrun_run[0] / "model.safetensors")
    got = load_file(part / "model.safetensors")
    assert all(torch.equal(expected[key], got[key]) for key in expected)
