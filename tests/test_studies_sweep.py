"""Sweeps on Optuna: search spaces, trials judged on validation alone, pruning, storages
shared by worker processes (the study folder's journal, a real PostgreSQL), workers that
die, and bad input."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import SmallDisk, interrupt_at, start_cli
from fashionmlp import FashionMLPError, InvalidArgumentError, Recipe, get_recipe
from fashionmlp.cli import main
from fashionmlp.data import raw_folder

optuna = pytest.importorskip("optuna")

import importlib

from fashionmlp.studies import DEFAULT_SPACE, SearchSpace, sweep
from fashionmlp.studies.sweep import open_storage, retry_orphans, worker_name

#: A space wide enough that bad trials are plainly below the median, so pruning shows.
WIDE = """
[lr]
type = "log-float"
low = 1e-4
high = 3e-2

[muon_lr]
type = "log-float"
low = 1e-3
high = 0.1
"""

#: A quick trial: four epochs of 3,000 images, judged on 1,000 held-out ones.
QUICK = ["--epochs", "4", "--limit", "3000", "--validation", "1000", "--device", "cpu"]
#: A longer one, for a kill to land in: eight epochs.
LONGER = ["--epochs", "8", *QUICK[2:]]


@pytest.fixture
def train_only_root(real_data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data root with the training files alone, and no other copy to find: a sweep that
    opened the test set would fail. Worker processes are told too, through the environment."""
    root = tmp_path / "data"
    raw_folder(root).mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        shutil.copy(raw_folder(real_data_root) / name, raw_folder(root) / name)
    monkeypatch.setattr("fashionmlp.data.SYSTEM_DATA_DIRS", ())
    monkeypatch.setenv("FASHIONMLP_SYSTEM_DATA", str(tmp_path / "nowhere"))
    return root


def trials_csv(folder: Path) -> list[dict[str, str]]:
    with open(folder / "trials.csv", newline="") as handle:
        return list(csv.DictReader(handle))


# --- search spaces -------------------------------------------------------------------------


def test_a_space_file_names_recipe_fields_and_their_ranges(tmp_path: Path) -> None:
    (tmp_path / "space.toml").write_text(
        WIDE + '\n["model.dropout"]\ntype = "float"\nlow = 0.0\nhigh = 0.3\n'
        '\n[batch_size]\ntype = "choice"\nchoices = [1024, 2048]\n'
    )
    space = SearchSpace.load(tmp_path / "space.toml")
    assert [p.field for p in space.params] == ["lr", "muon_lr", "model.dropout", "batch_size"]
    assert SearchSpace.from_dict(space.to_dict()) == space
    DEFAULT_SPACE.check(get_recipe("fast"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[colour]\ntype = "float"\nlow = 0\nhigh = 1', "unknown recipe setting 'colour'"),
        ('[lr]\ntype = "float"\nlow = 0.1\nhigh = 0.01', r"low \(0.1\) must be below high"),
        ('[lr]\ntype = "gaussian"\nlow = 0\nhigh = 1', "type must be one of"),
        ('[lr]\ntype = "log-float"\nlow = 0\nhigh = 1', "needs low above 0"),
        ('[epochs]\ntype = "float"\nlow = 1\nhigh = 9', "not a number to range over with float"),
        ('[dropout]\ntype = "float"\nlow = 0\nhigh = 1', r"dropout = 1.0 does not fit"),
        ('[lr]\ntype = "float"\nlow = 0.1', "takes exactly high, low, type"),
        ("[lr", "not valid TOML"),
        ("lr = 3", "is not a parameter's table"),
    ],
)
def test_a_bad_space_file_is_refused_in_one_line_naming_it(
    tmp_path: Path, text: str, message: str
) -> None:
    (tmp_path / "space.toml").write_text(text)
    with pytest.raises(InvalidArgumentError, match=message) as info:
        SearchSpace.load(tmp_path / "space.toml")
    assert len(str(info.value).splitlines()) == 1


# --- sweeps ----------------------------------------------------------------------------------


@pytest.mark.real_data
def test_twelve_trials_with_two_workers_prune_and_never_open_the_test_set(
    train_only_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "space.toml").write_text(WIDE)
    out = tmp_path / "study"
    arguments = [
        "sweep",
        "--trials",
        "12",
        "--workers",
        "2",
        "--space",
        str(tmp_path / "space.toml"),
    ]
    arguments += [*QUICK, "--data-root", str(train_only_root), "--out", str(out)]
    assert main(arguments) == 0
    rows = trials_csv(out)
    states = [row["state"] for row in rows]
    finished = [state for state in states if state in ("COMPLETE", "PRUNED")]
    assert 12 <= len(finished) <= 12 + 2 - 1 and set(states) <= {"COMPLETE", "PRUNED"}
    assert "PRUNED" in states  # the median pruner at work
    pruned = [row for row in rows if row["state"] == "PRUNED"]
    assert all(row["epoch_4"] == "" for row in pruned)  # stopped before their last epoch
    baseline = [row for row in rows if row["baseline"] == "true"]
    fast = get_recipe("fast")
    assert [row["number"] for row in baseline] == ["0"]  # the recipe itself, tried first
    assert (float(baseline[0]["lr"]), float(baseline[0]["muon_lr"])) == (fast.lr, fast.muon_lr)
    printed = capsys.readouterr().out
    assert "Best validation accuracy" in printed and "pruned" in printed
    best = Recipe.load(out / "best-recipe.toml")
    assert best.name == "fast-best" and best.epochs == 4


@pytest.mark.real_data
def test_the_best_recipe_trains_with_train_recipe_file(
    real_data_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "study"
    sweep(
        get_recipe("fast").replace(epochs=2),
        out,
        trials=2,
        limit=2000,
        validation_size=500,
        device="cpu",
        root=real_data_root,
        pruner="none",
    )
    run = ["train", "--recipe", str(out / "best-recipe.toml"), "--limit", "1000", "--no-plots"]
    run += ["--device", "cpu", "--data-root", str(real_data_root), "--out", str(tmp_path / "run")]
    assert main(run) == 0
    assert (tmp_path / "run" / "model.safetensors").is_file()


@pytest.mark.real_data
def test_train_best_trains_the_best_recipe_into_a_run_folder_judged_on_the_test_set(
    real_data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "study"
    command = ["sweep", "--trials", "2", "--epochs", "1", "--limit", "1000"]
    command += ["--validation", "500", "--device", "cpu", "--pruner", "none", "--train-best"]
    assert main([*command, "--data-root", str(real_data_root), "--out", str(out)]) == 0
    best = Recipe.load(out / "best-recipe.toml")
    run = json.loads((out / "best-run" / "run.json").read_text())
    assert run["recipe"] == best.to_dict() and run["validation_size"] == 0
    metrics = json.loads((out / "best-run" / "metrics.json").read_text())
    assert metrics["evaluated_on"] == "test" and metrics["final"]["total"] == 1000
    assert f"test accuracy {100 * metrics['final']['accuracy']:.2f}%" in capsys.readouterr().out


@pytest.mark.real_data
def test_rerunning_continues_the_study_and_another_space_is_refused(
    real_data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "study"
    common = ["--epochs", "2", "--limit", "2000", "--validation", "500", "--device", "cpu"]
    common += ["--pruner", "none", "--data-root", str(real_data_root), "--out", str(out)]
    assert main(["sweep", "--trials", "2", *common]) == 0
    assert main(["sweep", "--trials", "3", *common]) == 0
    assert len(trials_csv(out)) == 3  # one more, not three more
    assert main(["sweep", "--trials", "3", *common]) == 0
    assert len(trials_csv(out)) == 3  # finished: nothing more to run
    capsys.readouterr()
    (tmp_path / "space.toml").write_text(WIDE)
    assert main(["sweep", "--trials", "4", "--space", str(tmp_path / "space.toml"), *common]) == 2
    err = capsys.readouterr().err
    assert "exists with other settings" in err and len(err.strip().splitlines()) == 1
    assert main(["sweep", "--trials", "4", "--epochs", "3", *common[2:]]) == 2  # another recipe
    assert "recipe.epochs: 2 saved, 3 now" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--storage", "mongodb://nowhere/db"], "is not a database URL Optuna takes"),
        (["--storage", "postgresql://x@127.0.0.1:1/db"], "cannot open storage"),
        (["--storage", "sqlite:////no/such/folder/x.db"], "cannot open storage"),
        (["--validation", "0"], "--validation: must be at least 1"),
        (["--workers", "0"], "--workers: must be at least 1"),
        (["--set", "colour=red"], "unknown recipe setting 'colour'"),
    ],
)
def test_bad_sweep_input_is_one_line_and_a_non_zero_exit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    pytest.importorskip("psycopg")
    try:
        status = main(["sweep", "--trials", "1", "--out", str(tmp_path / "s"), *arguments])
    except SystemExit as exit_:  # argparse's
        status = int(exit_.code or 0)
    err = capsys.readouterr().err
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_a_storage_url_keeps_its_password_out_of_messages() -> None:
    from fashionmlp.studies.sweep import describe_storage

    assert describe_storage("postgresql://ann:secret@db:5432/x") == "postgresql://ann:***@db:5432/x"


# --- many processes, one study: PostgreSQL, and workers that die -----------------------------


def start_sweep(*arguments: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return start_cli("sweep", *arguments, env=env)


def study_trials(url: str, name: str) -> list[Any]:
    study = optuna.load_study(study_name=name, storage=open_storage(url, Path(".")))
    return list(study.get_trials(deepcopy=False))


@pytest.mark.real_data
def test_two_processes_share_one_study_through_a_real_postgresql(
    real_data_root: Path, tmp_path: Path, postgres_url: str
) -> None:
    pytest.importorskip("psycopg")
    common = ["--trials", "3", "--epochs", "2", *QUICK[2:], "--storage", postgres_url]
    common += ["--study", "shared"]
    common += ["--data-root", str(real_data_root)]
    first = start_sweep(*common, "--out", str(tmp_path / "a"))
    second = start_sweep(*common, "--out", str(tmp_path / "b"))
    for process in (first, second):
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err
    trials = study_trials(postgres_url, "shared")
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert 3 <= len(finished) <= 3 + 2 - 1  # the two processes are the study's two workers
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in trials)  # none lost or hanging
    assert sorted(t.number for t in trials) == list(range(len(trials)))  # none run twice
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(workers) == 2  # both took part
    assert {row["number"] for row in trials_csv(tmp_path / "b")} == {str(t.number) for t in trials}


def wait_for_running_trial(url: str, name: str, deadline: float) -> Any:
    while time.monotonic() < deadline:
        try:
            running = [  # its worker named: the objective has begun
                t
                for t in study_trials(url, name)
                if t.state.name == "RUNNING" and "worker" in t.user_attrs
            ]
        except Exception:  # the study is not made yet
            running = []
        if running:
            return running[0]
        time.sleep(0.2)
    raise AssertionError("no trial started")


@pytest.mark.real_data
def test_a_worker_killed_mid_trial_has_its_trial_failed_retried_and_the_study_finished(
    real_data_root: Path, tmp_path: Path, postgres_url: str
) -> None:
    pytest.importorskip("psycopg")
    common = ["--trials", "2", *LONGER, "--storage", postgres_url, "--study", "killed"]
    common += ["--heartbeat", "1", "--pruner", "none", "--data-root", str(real_data_root)]
    victim = start_sweep(*common, "--out", str(tmp_path / "a"))
    try:
        trial = wait_for_running_trial(postgres_url, "killed", time.monotonic() + 300)
        assert trial.user_attrs["worker"].endswith(f":{victim.pid}")
        victim.kill()  # kill -9, mid-trial
        victim.wait(timeout=60)
    finally:
        victim.kill()
    time.sleep(3)  # past the grace period of two heartbeats
    survivor = start_sweep(*common, "--out", str(tmp_path / "b"))
    _, err = survivor.communicate(timeout=600)
    assert survivor.returncode == 0, err
    trials = study_trials(postgres_url, "killed")
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert [t.number for t in failed] == [trial.number]  # the killed one, failed once
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == trial.number]
    assert retries and retries[0].params == trial.params  # run again, same parameters
    others = [t for t in trials if t.number != trial.number]
    assert all(t.state.name == "COMPLETE" for t in others)  # the other trials untouched
    assert len([t for t in trials if t.state.name == "COMPLETE"]) >= 2


@pytest.mark.real_data
def test_a_killed_worker_of_the_journal_storage_is_retried_on_the_next_run(
    real_data_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "study"
    common = ["--trials", "3", *LONGER, "--pruner", "none", "--data-root", str(real_data_root)]
    victim = start_sweep(*common, "--out", str(out))
    try:
        deadline = time.monotonic() + 300
        while not (out / "study.log").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        storage = open_storage(None, out)
        while time.monotonic() < deadline:
            study = optuna.load_study(study_name="fashionmlp", storage=storage)
            running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
            if any("worker" in t.user_attrs for t in running):  # its objective has begun
                break
            time.sleep(0.2)
        victim.kill()
        victim.wait(timeout=60)
    finally:
        victim.kill()
    assert main(["sweep", *common, "--out", str(out)]) == 0
    rows = trials_csv(out)
    assert [row["state"] for row in rows].count("FAIL") == 1
    retried = [row for row in rows if row["retry_of"]]
    assert len(retried) == 1 and retried[0]["state"] == "COMPLETE"
    assert len([row for row in rows if row["state"] == "COMPLETE"]) == 3


@pytest.mark.real_data
def test_ctrl_c_stops_a_sweep_cleanly_and_the_study_resumes(
    real_data_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "study"
    common = ["--trials", "3", *QUICK, "--pruner", "none", "--data-root", str(real_data_root)]
    process = start_sweep(*common, "--out", str(out))
    err = interrupt_at(process, "Trial 0:")
    assert process.returncode == 130, err
    assert "Traceback" not in err and "run the same command to continue" in err
    assert main(["sweep", *common, "--out", str(out)]) == 0
    finished = [row for row in trials_csv(out) if row["state"] == "COMPLETE"]
    assert len(finished) == 3


def test_orphans_are_running_trials_whose_worker_is_gone_or_never_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = optuna.create_study(storage=open_storage(None, tmp_path), study_name="s")
    live, dead, unnamed = study.ask(), study.ask(), study.ask()
    live.set_user_attr("worker", worker_name())
    dead.set_user_attr("worker", f"{socket.gethostname()}:{2**22 + 12345}")  # no such pid
    assert retry_orphans(study) == [dead.number]  # the unnamed one may be starting still
    sweep_module = importlib.import_module(
        "fashionmlp.studies.sweep"
    )  # the package names its function sweep too
    monkeypatch.setattr(sweep_module, "_UNNAMED_GRACE", 0.0)
    assert retry_orphans(study) == [unnamed.number]  # named by now, had it lived
    states = {t.number: t.state.name for t in study.get_trials()}
    assert states[live.number] == "RUNNING" and states[dead.number] == "FAIL"
    queued = [t for t in study.get_trials() if t.state.name == "WAITING"]
    assert sorted(t.user_attrs["retry_of"] for t in queued) == [dead.number, unnamed.number]


def test_a_space_may_tune_the_augmentation_and_starts_from_the_recipes_own_point() -> None:
    space = SearchSpace.from_dict(
        {
            "translate": {"type": "choice", "choices": [0, 1, 2]},
            "hflip": {"type": "choice", "choices": [True, False]},
        }
    )
    space.check(get_recipe("long"))
    assert space.point(get_recipe("long")) == {"translate": 1, "hflip": True}
    narrow = SearchSpace.from_dict({"lr": {"type": "float", "low": 0.1, "high": 0.2}})
    assert narrow.point(get_recipe("fast")) is None  # fast's lr 0.008 is outside: no baseline


def test_29_10_an_int_range_in_a_space_file_is_taken(tmp_path: Path) -> None:
    path = tmp_path / "space.toml"
    path.write_text('[batch_size]\ntype = "int"\nlow = 256\nhigh = 2048\n')
    space = SearchSpace.load(path)
    space.check(get_recipe("fast"))
    assert space.params[0].to_dict() == {"type": "int", "low": 256, "high": 2048}


@pytest.mark.parametrize("name", ["trials", "workers", "heartbeat"])
def test_sweep_refuses_counts_below_1_before_touching_the_folder(name: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match=f"{name} must be a whole number of at least 1"):
        sweep(get_recipe("fast"), tmp_path / "study", validation_size=100, **{name: 0})
    assert not (tmp_path / "study").exists()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "sqlite+pysqlite://"])
def test_29_9_an_in_memory_database_is_refused_in_one_line(url: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError) as refused:
        open_storage(url, tmp_path)
    message = str(refused.value)
    assert "in memory" in message and "sqlite:///study.db" in message and "\n" not in message


@pytest.mark.real_data
def test_29_14_the_same_sweep_with_one_worker_draws_the_same_trials(
    real_data_root: Path, tmp_path: Path
) -> None:
    drawn = []
    for name in ("first", "second"):
        result = sweep(
            get_recipe("fast").replace(epochs=1),
            tmp_path / name,
            trials=3,
            limit=500,
            validation_size=200,
            device="cpu",
            root=real_data_root,
            pruner="none",
            seed=7,
        )
        drawn.append(
            [
                {k: v for k, v in row.items() if k not in ("value", "seconds")}
                for row in trials_csv(result.folder)
            ]
        )
    assert drawn[0] == drawn[1] and len(drawn[0]) == 3


def test_29_12_of_two_workers_retrying_one_dead_workers_trial_the_loser_moves_on(
    tmp_path: Path,
) -> None:
    first = optuna.create_study(storage=open_storage(None, tmp_path), study_name="s")
    dead = first.ask()
    dead.set_user_attr("worker", f"{socket.gethostname()}:{2**22 + 12345}")  # no such pid
    second = optuna.load_study(storage=open_storage(None, tmp_path), study_name="s")
    # The second worker looked a moment before the first retried it: it sees it running still.
    seen = second.get_trials(deepcopy=True)
    assert retry_orphans(first) == [dead.number]
    second.get_trials = lambda *args, **kwargs: [t for t in seen if t.state.name == "RUNNING"]
    assert retry_orphans(second) == []  # lost the race: no error, no second retry
    queued = [t for t in first.get_trials() if t.state.name == "WAITING"]
    assert [t.user_attrs["retry_of"] for t in queued] == [dead.number]


@pytest.mark.real_data
def test_29_13_a_second_study_in_one_folder_is_refused_and_the_first_kept(
    real_data_root: Path, tmp_path: Path
) -> None:
    options: dict[str, Any] = {"trials": 1, "limit": 300, "validation_size": 100, "device": "cpu"}
    recipe = get_recipe("fast").replace(epochs=1)
    sweep(recipe, tmp_path, study="first", root=real_data_root, **options)
    kept = (tmp_path / "trials.csv").read_bytes(), (tmp_path / "study.json").read_bytes()
    with pytest.raises(InvalidArgumentError, match="holds the records of study 'first'"):
        sweep(recipe, tmp_path, study="second", root=real_data_root, **options)
    assert ((tmp_path / "trials.csv").read_bytes(), (tmp_path / "study.json").read_bytes()) == kept


@pytest.mark.real_data
def test_29_4_a_study_continued_with_another_space_keeps_every_trials_parameters(
    real_data_root: Path, tmp_path: Path
) -> None:
    options: dict[str, Any] = {"limit": 300, "validation_size": 100, "device": "cpu"}
    options |= {"root": real_data_root, "pruner": "none"}
    recipe = get_recipe("fast").replace(epochs=1)
    rates = SearchSpace.from_dict({"lr": {"type": "log-float", "low": 1e-3, "high": 1e-2}})
    decay = SearchSpace.from_dict({"weight_decay": {"type": "float", "low": 0.0, "high": 0.3}})
    sweep(recipe, tmp_path, space=rates, trials=2, **options)
    sweep(recipe, tmp_path, space=decay, trials=3, continue_study=True, **options)
    rows = trials_csv(tmp_path)
    assert len(rows) == 3 and {"lr", "weight_decay"} <= set(rows[0])
    assert all(row["lr"] for row in rows[:2]) and rows[2]["weight_decay"] and not rows[2]["lr"]


def test_29_11_a_sweep_whose_every_worker_died_raises_and_the_guide_guards_its_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each worker fails at its start (no dataset where it looks): the sweep did nothing.
    monkeypatch.setenv("FASHIONMLP_SYSTEM_DATA", str(tmp_path / "no-debian-copy"))
    with pytest.raises(FashionMLPError, match="every worker process ended early"):
        sweep(get_recipe("fast"), tmp_path / "study", trials=2, workers=2, root=tmp_path / "none")
    guide = (Path(__file__).parent.parent / "docs" / "studies.rst").read_text()
    example = guide[guide.index("From Python\n~~~~~~~~~~~") :][:800]
    assert 'if __name__ == "__main__":' in example and "workers=2" in example


def children_of(pid: int) -> list[int]:
    """The live child processes of ``pid`` (Linux's /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


@pytest.mark.real_data
@pytest.mark.parametrize(("signal_number", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_29_8_a_signal_to_a_sweep_of_two_workers_stops_them_all_and_writes_the_records(
    signal_number: int, status: int, real_data_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "study"
    common = ["--trials", "6", *LONGER, "--workers", "2", "--pruner", "none"]
    process = start_sweep(*common, "--data-root", str(real_data_root), "--out", str(out))
    try:
        deadline = time.monotonic() + 120
        while (
            (out / "study.log").read_text().count('"worker"') < 2
            if (out / "study.log").exists()
            else True
        ):
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.1)
        workers = children_of(process.pid)
        process.send_signal(signal_number)  # to the sweep's own process alone, as kill does
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == status, err
    assert "Traceback" not in err and err.strip().endswith("run the same command to continue it")
    assert [row["state"] for row in trials_csv(out)].count("COMPLETE") < 6  # it stopped
    time.sleep(0.5)
    assert not [
        pid for pid in workers if Path(f"/proc/{pid}").exists() and children_of(1).count(pid)
    ]
    assert children_of(process.pid) == []


@pytest.mark.real_data
def test_29_8_a_killed_worker_does_not_ask_to_rerun_a_study_the_other_finished(
    real_data_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "study"
    common = ["--trials", "3", *QUICK, "--workers", "2", "--pruner", "none"]
    process = start_sweep(*common, "--data-root", str(real_data_root), "--out", str(out))
    try:
        deadline = time.monotonic() + 120
        journal = out / "study.log"
        while not journal.exists() or journal.read_text().count('"worker"') < 2:
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.1)
        workers = [
            pid
            for pid in children_of(process.pid)
            if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        os.kill(workers[0], signal.SIGKILL)
        _, err = process.communicate(timeout=300)
    finally:
        process.kill()
    assert process.returncode == 1, err
    assert "ended early (status 137)" in err and "it has all its trials" in err, err
    assert "run the same command" not in err


@pytest.mark.real_data
def test_29_7_a_journal_torn_by_a_full_disk_is_set_aside_and_the_study_goes_on(
    real_data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "study"
    common = ["--trials", "1", "--epochs", "1", "--limit", "300", "--validation", "100"]
    common += ["--pruner", "none", "--device", "cpu", "--data-root", str(real_data_root)]
    assert main(["sweep", *common, "--out", str(out)]) == 0
    whole = (out / "study.log").read_bytes()
    torn = b'{"op_code": 5, "worker_id": "x", "trial_id": 1, "param_na'  # a write cut short
    (out / "study.log").write_bytes(whole + torn)
    capsys.readouterr()
    assert main(["sweep", *common[:1], "2", *common[2:], "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "torn record" in err and "study.log.torn" in err and len(err.strip().splitlines()) == 1
    assert (out / "study.log.torn").read_bytes() == torn
    assert (out / "study.log").read_bytes().startswith(whole)
    assert [row["state"] for row in trials_csv(out)] == ["COMPLETE", "COMPLETE"]


@pytest.mark.real_data
def test_29_7_a_full_disk_in_a_sweep_is_one_line_and_the_study_opens_again(
    real_data_root: Path, small_disk: SmallDisk, capsys: pytest.CaptureFixture[str]
) -> None:
    out = small_disk.path / "study"
    common = ["--trials", "2", "--epochs", "2", "--limit", "300", "--validation", "100"]
    common += ["--pruner", "none", "--device", "cpu", "--data-root", str(real_data_root)]
    small_disk.mount("12k")
    assert main(["sweep", *common, "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert "the disk is full" in err and len(err.splitlines()) == 1 and "Traceback" not in err
    small_disk.mount("4m")
    assert main(["sweep", *common, "--out", str(out)]) == 0
    assert [row["state"] for row in trials_csv(out)].count("COMPLETE") == 2
