"""MLflow tracking, read back with MLflow's own client: a SQLite store, a resumed run that
stays one MLflow run, a real ``mlflow server``, and a server that is down or misnamed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import fashionmlp.devices as devices_module
from conftest import interruptible_run_options
from fashionmlp import InvalidArgumentError, RunConfig, fit, get_recipe
from fashionmlp.cli import main
from fashionmlp.cli.train import RunConsole

pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient

from fashionmlp.loggers import MLflowLogger


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in ``tmp_path``: a SQLite store puts its artifacts in ``./mlruns``."""
    monkeypatch.chdir(tmp_path)


#: A short run of the default recipe on real images, for the CLI tests.
SHORT = ["--epochs", "2", "--limit", "2000", "--seed", "0", "--device", "cpu", "--no-plots"]


def only_run(client: MlflowClient, experiment: str = "fashionmlp") -> Any:
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r}"
    runs = client.search_runs([found.experiment_id])
    assert len(runs) == 1, [run.info.run_name for run in runs]
    return runs[0]


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in client.get_metric_history(run_id, key)]


def artifacts(client: MlflowClient, run_id: str) -> set[str]:
    return {info.path for info in client.list_artifacts(run_id, "model")}


@pytest.mark.real_data
def test_a_run_logs_settings_epochs_batches_the_model_and_its_status(
    real_data_root: Path, tmp_path: Path
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    recipe = get_recipe("fast").replace(epochs=2, batch_size=250)  # 8 steps an epoch
    config = RunConfig(recipe, seed=3, limit=2000)
    logger = MLflowLogger(uri, experiment="unit", run_name="fast-2", every=5)
    result = fit(config, root=real_data_root, device="cpu", callbacks=[logger])

    client = MlflowClient(tracking_uri=uri)
    run = only_run(client, "unit")
    assert run.info.run_id == logger.run_id and run.info.run_name == "fast-2"
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["lr"] == str(config.recipe.lr) and params["seed"] == "3"
    assert params["model.hidden_features"] == "512" and params["limit"] == "2000"
    tags = run.data.tags
    assert tags["fashionmlp.recipe"] == "fast" and tags["fashionmlp.seed"] == "3"
    assert tags["fashionmlp.device"] == "cpu" and tags["fashionmlp.precision"] in (
        "float32",
        "bfloat16",
    )
    assert tags["fashionmlp.version.torch"] and tags["fashionmlp.version.fashionmlp"]

    steps = [report.step for report in result.history]
    accuracy = history(client, logger.run_id, "test_accuracy")
    assert accuracy == [(s, pytest.approx(r.eval.accuracy)) for s, r in zip(steps, result.history)]
    for key in ("train_loss", "test_loss", "lr", "test_macro_f1", "test_top5_accuracy"):
        assert [step for step, _ in history(client, logger.run_id, key)] == steps
    for key in ("test_nll", "test_ece", "test_macro_precision", "test_macro_recall"):
        assert len(history(client, logger.run_id, key)) == 2
    batches = [step for step, _ in history(client, logger.run_id, "train_batch_loss")]
    assert steps == [8, 16] and batches == [0, 5, 10, 15]
    assert artifacts(client, logger.run_id) == {
        "model/config.json",
        "model/model.safetensors",
        "model/README.md",
    }
    card = Path(client.download_artifacts(logger.run_id, "model/README.md", str(tmp_path)))
    assert f"{100 * result.final.accuracy:.2f}%" in card.read_text()


def csv_epochs(folder: Path) -> list[str]:
    import csv

    with open(folder / "metrics.csv", newline="") as handle:
        return [row["epoch"] for row in csv.DictReader(handle)]


@pytest.mark.real_data
def test_a_run_stopped_after_epoch_1_and_resumed_is_one_mlflow_run(
    real_data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "run"
    options = [*interruptible_run_options(real_data_root), "--epochs", "2", "--out", str(out)]
    # A real Ctrl-C as epoch 1 ends, taken by the run's own handler; in this process, as a
    # process of its own would add only its start-up.
    say = RunConsole.on_epoch_end

    def say_and_interrupt(console: RunConsole, report: Any) -> None:
        say(console, report)
        if report.epoch == 1:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(RunConsole, "on_epoch_end", say_and_interrupt)
    assert main(["train", *options, "--mlflow", uri, "--log-every", "100"]) == 130
    monkeypatch.undo()
    client = MlflowClient(tracking_uri=uri)
    stopped = only_run(client)
    assert stopped.info.status == "KILLED"
    assert [value for _, value in history(client, stopped.info.run_id, "epoch")] == [1.0]

    # The resume is told nothing of MLflow: the checkpoint names the run and its store.
    resumed = ["train", "--resume", str(out), "--data-root", str(real_data_root), "--no-plots"]
    assert main(resumed) == 0
    run = only_run(client)
    assert run.info.run_id == stopped.info.run_id and run.info.status == "FINISHED"
    epochs = history(client, run.info.run_id, "epoch")
    assert [value for _, value in epochs] == [1.0, 2.0]
    metrics = json.loads((out / "metrics.json").read_text())
    assert [step for step, _ in epochs] == [epoch["step"] for epoch in metrics["epochs"]]
    accuracy = history(client, run.info.run_id, "test_accuracy")
    assert [value for _, value in accuracy] == [
        pytest.approx(epoch["eval"]["accuracy"]) for epoch in metrics["epochs"]
    ]
    batches = [step for step, _ in history(client, run.info.run_id, "train_batch_loss")]
    assert batches == [0, 100]  # 2 epochs of 100 steps, each point once
    assert artifacts(client, run.info.run_id) == {
        "model/config.json",
        "model/model.safetensors",
        "model/README.md",
    }


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """A real ``mlflow server`` on a free local port, its backend store SQLite: a team's
    shared server. It needs the full ``mlflow`` package (``make servers`` installs it);
    missing, the test fails in CI and is skipped elsewhere."""
    command = shutil.which("mlflow", path=str(Path(sys.executable).parent))
    if command is None:
        if os.environ.get("CI"):
            pytest.fail("the mlflow server is needed: pip install mlflow", pytrace=False)
        pytest.skip("the full mlflow package (its server) is not installed: pip install mlflow")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [
            command,
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "server-artifacts"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "server.log", "w"),  # noqa: SIM115 (closed with the process)
        start_new_session=True,  # its own process group, its workers killed with it
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "mlflow server did not start"
            time.sleep(0.5)
        yield url
    finally:  # a throwaway server: no need to wait for its workers' graceful stop
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)


@pytest.mark.real_data
def test_a_run_logs_to_a_real_mlflow_server(
    real_data_root: Path, tmp_path: Path, mlflow_server: str
) -> None:
    out = tmp_path / "run"
    command = ["train", *SHORT, "--data-root", str(real_data_root), "--out", str(out)]
    assert main([*command, "--mlflow", mlflow_server, "--mlflow-experiment", "team"]) == 0
    client = MlflowClient(tracking_uri=mlflow_server)
    run = only_run(client, "team")
    assert run.info.status == "FINISHED" and run.data.params["epochs"] == "2"
    metrics = json.loads((out / "metrics.json").read_text())
    assert run.data.metrics["test_accuracy"] == pytest.approx(metrics["final"]["accuracy"])
    assert [step for step, _ in history(client, run.info.run_id, "test_accuracy")] == [
        epoch["step"] for epoch in metrics["epochs"]
    ]
    assert artifacts(client, run.info.run_id) == {
        "model/config.json",
        "model/model.safetensors",
        "model/README.md",
    }
    # The artifacts went through the server into its store, not to a local folder.
    stored = {p.name for p in (tmp_path / "server-artifacts").rglob("*") if p.is_file()}
    assert {"config.json", "model.safetensors", "README.md"} <= stored


@pytest.mark.real_data
def test_an_unreachable_server_loses_nothing_but_the_tracking(
    real_data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    command = ["train", *SHORT, "--data-root", str(real_data_root), "--out", str(out)]
    assert main([*command, "--mlflow", "http://127.0.0.1:1"]) == 0
    err = capsys.readouterr().err
    warned = [line for line in err.splitlines() if "MLflow" in line]
    assert len(warned) == 1, err
    assert warned[0].startswith("fashionmlp: warning: MLflow at http://127.0.0.1:1 did not take")
    assert "the run goes on" in warned[0] and "Traceback" not in err
    metrics = json.loads((out / "metrics.json").read_text())
    assert [epoch["epoch"] for epoch in metrics["epochs"]] == [1, 2]
    assert csv_epochs(out) == ["1", "2"]
    assert (out / "model.safetensors").is_file()


@pytest.mark.parametrize("uri", ["mlflow.db://x", "sqlite://mlflow.db", "htp://host:5000"])
def test_a_malformed_uri_is_refused_before_anything_runs(
    tmp_path: Path, uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as stopped:
        main(["train", "--out", str(out), "--mlflow", uri])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert f"{uri!r} is not an MLflow tracking URI" in err and "Traceback" not in err
    assert not out.exists()
    with pytest.raises(InvalidArgumentError, match="not an MLflow tracking URI"):
        MLflowLogger(uri)


@pytest.mark.real_data
def test_seeds_log_one_parent_run_with_a_child_per_seed(
    real_data_root: Path, tmp_path: Path
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "seeds"
    command = ["train", "--epochs", "1", "--limit", "2000", "--device", "cpu", "--no-plots"]
    command += ["--seeds", "0-1", "--out", str(out)]
    assert main([*command, "--data-root", str(real_data_root), "--mlflow", uri]) == 0
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("fashionmlp")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(r.data.params["seed"] for r in children) == ["0", "1"]
    summary = json.loads((out / "summary.json").read_text())
    assert parents[0].data.metrics["accuracy_mean"] == pytest.approx(summary["accuracy"]["mean"])


@pytest.mark.real_data
def test_a_sweep_logs_one_parent_run_with_a_child_per_trial(
    real_data_root: Path, tmp_path: Path
) -> None:
    pytest.importorskip("optuna")
    from fashionmlp.studies import sweep

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = sweep(
        get_recipe("fast").replace(epochs=2),
        tmp_path / "study",
        trials=2,
        root=real_data_root,
        device="cpu",
        limit=2000,
        validation_size=500,
        loggers=[MLflowLogger(uri)],
    )
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("fashionmlp")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.info.status == "FINISHED" and "space.lr" in parent.data.params
    assert parent.data.metrics["best_validation_accuracy"] == pytest.approx(result.best_value)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.info.run_name for r in children) == ["trial 0", "trial 1"]
    assert {r.data.tags["optuna.state"] for r in children} <= {"COMPLETE", "PRUNED"}
    assert all("validation_accuracy" in r.data.metrics for r in children)


def test_under_torchrun_only_the_first_process_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_loggers import report

    monkeypatch.setattr(devices_module, "rank", lambda: 1)  # as on rank 1 under torchrun
    logger = MLflowLogger(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert logger.start_run({"lr": 0.1}) is None
    logger.on_epoch_end(report(1))
    logger.end_run()
    assert not (tmp_path / "mlflow.db").exists()
