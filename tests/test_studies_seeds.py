"""Repeated seeds and comparisons: one run folder per seed, the spread of their results
computed by SciPy, and runs and studies side by side."""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path
from typing import Any

import pytest

from fashionmlp import InvalidArgumentError, get_recipe
from fashionmlp.cli import main

stats = pytest.importorskip("scipy.stats")

from fashionmlp.studies import compare, repeat, spread, summarize

#: Two short epochs of the fast recipe on 2,000 images.
SHORT = ["--epochs", "2", "--limit", "2000", "--device", "cpu", "--no-progress"]


def test_the_spread_is_the_sample_deviation_and_the_t_interval() -> None:
    values = [0.9012, 0.9063, 0.9031, 0.8990]
    found = spread(values)
    sem = statistics.stdev(values) / math.sqrt(4)
    assert found.std == pytest.approx(statistics.stdev(values))
    assert found.ci95 == pytest.approx(stats.t.interval(0.95, 3, loc=found.mean, scale=sem))
    assert (found.min, found.max, found.n) == (0.8990, 0.9063, 4)
    one = spread([0.5])
    assert one.ci95 is None and one.to_dict()["std"] is None
    with pytest.raises(InvalidArgumentError):
        spread([])


@pytest.fixture(scope="module")
def seed_study(real_data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("seeds") / "fast"
    arguments = ["train", "--seeds", "0-2", *SHORT, "--data-root", str(real_data_root)]
    assert main([*arguments, "--out", str(out)]) == 0
    return out


@pytest.mark.real_data
def test_seeds_0_2_print_a_mean_and_interval_recomputed_from_the_runs(
    seed_study: Path, real_data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    accuracies = [
        json.loads((seed_study / f"seed-{s}" / "metrics.json").read_text())["final"]["accuracy"]
        for s in range(3)
    ]
    mean, std = statistics.fmean(accuracies), statistics.stdev(accuracies)
    low, high = stats.t.interval(0.95, 2, loc=mean, scale=std / math.sqrt(3))
    summary = json.loads((seed_study / "summary.json").read_text())
    assert summary["seeds"] == [0, 1, 2]
    assert summary["accuracy"]["n"] == 3
    assert summary["accuracy"]["mean"] == pytest.approx(mean)
    assert summary["accuracy"]["std"] == pytest.approx(std)
    assert summary["accuracy"]["ci95"] == pytest.approx([low, high])
    assert summary["accuracy"]["min"] == min(accuracies) and summary["accuracy"]["max"] == max(
        accuracies
    )
    assert set(summary["seconds"]) == {"n", "mean", "std", "min", "max", "ci95"}
    with open(seed_study / "summary.csv", newline="") as handle:
        rows = {row["seed"]: row for row in csv.DictReader(handle)}
    assert float(rows["mean"]["accuracy"]) == pytest.approx(mean)
    assert (seed_study / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
    # Rerun: the finished seeds are kept as they are, and the printed line is the same.
    before = (seed_study / "seed-1" / "model.safetensors").read_bytes()
    arguments = ["train", "--seeds", "0-2", *SHORT, "--data-root", str(real_data_root)]
    assert main([*arguments, "--out", str(seed_study)]) == 0
    printed = capsys.readouterr().out
    assert (seed_study / "seed-1" / "model.safetensors").read_bytes() == before
    assert f"{100 * mean:.2f}% ± {100 * std:.2f} (mean ± std)" in printed
    assert f"95% interval {100 * low:.2f}–{100 * high:.2f}%" in printed


@pytest.mark.real_data
def test_each_seed_is_a_complete_run_folder(seed_study: Path) -> None:
    for seed in range(3):
        folder = seed_study / f"seed-{seed}"
        assert {"config.json", "model.safetensors", "run.json", "metrics.json"} <= {
            path.name for path in folder.iterdir()
        }
        assert json.loads((folder / "run.json").read_text())["seed"] == seed


@pytest.mark.real_data
def test_compare_shows_what_differs_with_the_spread_of_a_study(
    seed_study: Path, real_data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wide = tmp_path / "wide"
    arguments = ["train", *SHORT, "--seed", "5", "--hidden-features", "128", "--no-plots"]
    assert main([*arguments, "--data-root", str(real_data_root), "--out", str(wide)]) == 0
    capsys.readouterr()
    out = tmp_path / "comparison"
    assert main(["compare", str(seed_study), str(wide), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    assert lines[0].split() == ["fast", "wide"]
    assert any(
        line.startswith("model.hidden_features") and "512" in line and "128" in line
        for line in lines
    )
    assert any(line.startswith("seed") and "0,1,2" in line for line in lines)
    assert "(3 seeds)" in printed and "±" in printed and "669,706" in printed
    assert not any(line.startswith("lr ") for line in lines)  # the same in both: not shown
    for name in ("accuracy.png", "loss.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    table = compare([seed_study, wide])
    assert table.entries[0].std is not None and table.entries[1].runs == 1


def test_compare_and_summarize_refuse_what_they_cannot_read(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with pytest.raises(Exception, match="neither a finished run"):
        compare([tmp_path / "a", tmp_path / "b"])
    with pytest.raises(InvalidArgumentError, match="at least two"):
        compare([tmp_path / "a"])
    with pytest.raises(Exception, match="not a finished run"):
        summarize([tmp_path / "a"])
    with pytest.raises(InvalidArgumentError, match="each seed once"):
        repeat(get_recipe("fast"), [1, 1], tmp_path / "s")


def test_seeds_need_an_out_folder_and_no_single_seed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--seeds", "0-2"]) == 2
    assert "--seeds needs --out" in capsys.readouterr().err
    assert main(["train", "--seeds", "0,1", "--seed", "3", "--out", "x"]) == 2
    assert "leave out --seed" in capsys.readouterr().err


class StudyRecorder:
    """A tracker of one's own, with parent and child runs: what the study hooks see."""

    def __init__(self) -> None:
        self.events: list[tuple[object, ...]] = []

    def on_study_start(self, study: Any) -> None:
        self.events.append(("start", study.kind, study.name, study.params["seeds"]))

    def child(self, name: str) -> object:
        events = self.events

        class Child:  # the callback of one seed's run
            def on_fit_start(self, run: Any) -> None:
                events.append(("child", name, run.config.seed))

            def on_model_saved(self, folder: Path) -> None:
                events.append(("saved", folder.name, (folder / "model.safetensors").is_file()))

        return Child()

    def on_study_end(self, end: Any) -> None:
        self.events.append(("end", end.finished, end.figures["accuracy_mean"]))


@pytest.mark.real_data
def test_a_seed_study_tells_its_loggers_of_itself_and_of_each_seed(
    real_data_root: Path, tmp_path: Path
) -> None:
    recorder = StudyRecorder()
    recipe = get_recipe("fast").replace(epochs=1)
    out = tmp_path / "study"
    summary = repeat(
        recipe, [0, 1], out, root=real_data_root, limit=512, loggers=[recorder], plots=False
    )
    assert summary is not None
    assert recorder.events == [
        ("start", "seeds", "fast seeds 0,1", "0,1"),
        ("child", "seed-0", 0),
        ("saved", "seed-0", True),
        ("child", "seed-1", 1),
        ("saved", "seed-1", True),
        ("end", True, summary.accuracy.mean),
    ]


@pytest.mark.real_data
def test_29_2_compare_labels_each_figure_with_what_it_measures(
    real_data_root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tuned = tmp_path / "tuned"  # evaluated on validation; the 0.1.0 fixture, on the test set
    arguments = ["train", "--epochs", "1", "--limit", "500", "--validation", "500", "--no-plots"]
    assert main([*arguments, "--data-root", str(real_data_root), "--out", str(tuned)]) == 0
    capsys.readouterr()
    labels: list[str] = []
    import fashionmlp.plots as plots

    real = plots.plot_curves

    def spy(path: Path, curves: Any, **options: Any) -> Path:
        labels.append(options["ylabel"])
        labels.extend(curves)
        return real(path, curves, **options)

    monkeypatch.setattr(plots, "plot_curves", spy)
    tested = Path(__file__).parent / "fixtures" / "v0.1.0" / "run-fast"
    assert main(["compare", str(tested), str(tuned), "--out", str(tmp_path / "plots")]) == 0
    lines = capsys.readouterr().out.splitlines()
    [accuracy] = [line for line in lines if line.startswith("accuracy ")]
    assert "(test)" in accuracy and "(validation)" in accuracy
    assert not any(line.startswith(("test accuracy", "validation accuracy")) for line in lines)
    labels_of_rows = [line.split("  ")[0] for line in lines]
    assert labels_of_rows.count("epochs") == 1  # the recipe's setting
    assert any(line.startswith("epochs trained") for line in lines)
    assert "test accuracy (%)" not in labels and "accuracy (%)" in labels
    assert "tuned (validation)" in labels and "run-fast (test)" in labels


@pytest.mark.real_data
def test_29_1_a_seed_study_continued_with_other_settings_is_refused_at_the_start(
    real_data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "study"
    common = ["train", "--epochs", "1", "--no-plots", "--data-root", str(real_data_root)]
    assert main([*common, "--seeds", "0-1", "--limit", "400", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["limit"] == 400 and summary["settings"]["validation_size"] == 0
    assert summary["settings"]["recipe"]["epochs"] == 1  # the whole recipe, not its name
    capsys.readouterr()
    for changed in (
        ["--limit", "300"],
        ["--limit", "400", "--validation", "200"],
        ["--limit", "400", "--lr", "0.02"],
    ):
        assert main([*common, "--seeds", "0-2", *changed, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert "a seed study of other settings" in err and "saved" in err and "\n" not in err
        assert not (out / "seed-2").exists()  # refused before anything trained
    assert main([*common, "--seeds", "0-2", "--limit", "300", "--out", str(out)]) == 2
    assert "limit: 400 saved, 300 now" in capsys.readouterr().err
