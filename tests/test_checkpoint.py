from __future__ import annotations

import errno
import json
import math
import os
import pickle
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import resave
from fashionmlp import (
    CheckpointError,
    FashionMLP,
    MissingExtraError,
    load_checkpoint,
    save_checkpoint,
)
from fashionmlp.pretrained import write_pretrained


def test_round_trip_restores_weights_optimizer_epoch_and_config(tmp_path: Path) -> None:
    model = FashionMLP(hidden_features=16)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.rand(4, 784)).sum().backward()
    optimizer.step()
    path = save_checkpoint(tmp_path / "c.pt", model, optimizer, epoch=4, config={"lr": 0.1})

    restored = FashionMLP(hidden_features=16)
    restored_optimizer = torch.optim.SGD(restored.parameters(), lr=0.5, momentum=0.9)
    checkpoint = load_checkpoint(path, restored, restored_optimizer)
    assert checkpoint.epoch == 4 and checkpoint.config == {"lr": 0.1}
    for a, b in zip(model.state_dict().values(), restored.state_dict().values()):
        assert torch.equal(a, b)
    assert restored_optimizer.param_groups[0]["lr"] == 0.1
    assert sorted(os.listdir(tmp_path)) == ["c.pt"]  # no temporary file left


def test_a_config_that_would_not_load_is_refused_at_save(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="JSON-like"):
        save_checkpoint(tmp_path / "c.pt", FashionMLP(), config={"path": Path("x")})
    assert not (tmp_path / "c.pt").exists()


def test_a_checkpoint_gets_the_usual_permissions(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "c.pt", FashionMLP(hidden_features=4))
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_bare_state_dict_loads(tmp_path: Path) -> None:
    model = FashionMLP()
    torch.save(model.state_dict(), tmp_path / "w.pt")
    other = FashionMLP()
    load_checkpoint(tmp_path / "w.pt", other)
    assert torch.equal(other.fc1.weight, model.fc1.weight)


def test_a_failed_write_leaves_the_previous_checkpoint_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save_checkpoint(tmp_path / "c.pt", FashionMLP(), epoch=1)
    before = path.read_bytes()

    def disk_full(descriptor: int) -> None:  # the disk fills as the new file is flushed
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(CheckpointError, match="the disk is full: free some space"):
        save_checkpoint(path, FashionMLP(), epoch=2)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["c.pt"]


class _RunsCode:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("touch pwned",))


def test_a_file_that_would_run_code_is_refused_without_running_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with open(tmp_path / "evil.pt", "wb") as handle:
        pickle.dump({"model": _RunsCode()}, handle, protocol=2)
    with pytest.raises(CheckpointError, match=r"\(posix.system\).*refused"):
        load_checkpoint(tmp_path / "evil.pt", FashionMLP())
    assert not (tmp_path / "pwned").exists()


def test_another_architecture_is_named(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "c.pt", FashionMLP(hidden_features=32))
    with pytest.raises(CheckpointError, match="does not fit this model.*size mismatch"):
        load_checkpoint(path, FashionMLP())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "c.pt: no such file or folder"),
        (b"", r"not a fashionmlp checkpoint or weights file \(it looks like an empty file\)"),
        ("truncate", r"\(it looks like a truncated zip archive\)"),
        ([1, 2, 3], "not a checkpoint"),
        ({"a": 1}, "not a fashionmlp checkpoint"),
    ],
)
def test_unreadable_files_are_clear_errors(tmp_path: Path, content: object, message: str) -> None:
    path = tmp_path / "c.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content == "truncate":
        save_checkpoint(path, FashionMLP())
        path.write_bytes(path.read_bytes()[:1000])
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path, FashionMLP())


@pytest.mark.parametrize(
    ("damage", "named"), [({"epoch": "one"}, "epoch"), ({"model": {"w": 1}}, "model")]
)
def test_a_damaged_checkpoint_of_ours_names_what_is_wrong(
    tmp_path: Path, damage: dict[str, object], named: str
) -> None:
    path = save_checkpoint(tmp_path / "c.pt", FashionMLP(hidden_features=8))
    resave(path, {**torch.load(path, weights_only=True), **damage})
    with pytest.raises(CheckpointError, match=rf"damaged fashionmlp checkpoint \({named} "):
        load_checkpoint(path, FashionMLP(hidden_features=8))


def test_resuming_an_optimizer_needs_its_state(tmp_path: Path) -> None:
    model = FashionMLP(hidden_features=8)
    path = save_checkpoint(tmp_path / "c.pt", model)
    with pytest.raises(CheckpointError, match="no optimizer state"):
        load_checkpoint(path, model, torch.optim.SGD(model.parameters(), lr=0.1))


def test_another_kind_of_optimizers_state_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    model = FashionMLP(hidden_features=8)
    sgd = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    path = save_checkpoint(tmp_path / "c.pt", model, sgd)
    adamw = torch.optim.AdamW(model.parameters(), lr=0.003)
    # Loaded as torch would load it, AdamW's first step would fail with KeyError: 'betas'.
    with pytest.raises(
        CheckpointError, match=r"another kind of optimizer's \(it has no betas, eps"
    ):
        load_checkpoint(path, model, adamw)
    assert adamw.param_groups[0]["lr"] == 0.003 and "betas" in adamw.param_groups[0]
    model(torch.rand(2, 784)).sum().backward()
    adamw.step()  # still whole
    payload = torch.load(path, weights_only=True)
    payload["optimizer"]["param_groups"][0].pop("params")
    resave(path, payload)
    with pytest.raises(CheckpointError, match=r"optimizer state does not fit .*KeyError"):
        load_checkpoint(path, model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))


# --- pretrained folders: save_pretrained / from_pretrained -------------------------------


def trained_variant() -> FashionMLP:
    torch.manual_seed(3)
    return FashionMLP(hidden_features=64, hidden_layers=3, dropout=0.1, normalize=(0.3, 0.4))


def test_save_pretrained_round_trips_to_identical_outputs(tmp_path: Path) -> None:
    model = trained_variant()
    folder = model.save_pretrained(tmp_path / "model")
    assert sorted(os.listdir(folder)) == ["README.md", "config.json", "model.safetensors"]
    loaded = FashionMLP.from_pretrained(folder)
    assert not loaded.training and loaded.config == model.config
    x = torch.rand(16, 1, 28, 28)
    assert torch.equal(loaded(x), model.eval()(x))
    (folder / "README.md").unlink()  # the card is for people: the model is the same without
    assert torch.equal(FashionMLP.from_pretrained(folder)(x), loaded(x))
    weights = load_file(folder / "model.safetensors")  # the ecosystem's own reader
    assert weights.keys() == model.state_dict().keys()
    assert torch.equal(weights["fc4.weight"], model.fc4.weight)
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "fashionmlp" and config["normalize"] == [0.3, 0.4]
    assert torch.equal(FashionMLP.from_pretrained(folder / "model.safetensors")(x), loaded(x))


def test_a_checkpoint_of_ours_rebuilds_its_model(tmp_path: Path) -> None:
    model = trained_variant()
    save_checkpoint(tmp_path / "run.pt", model, epoch=2)
    loaded = FashionMLP.from_pretrained(tmp_path / "run.pt")
    assert loaded.config == model.config and torch.equal(loaded.fc1.bias, model.fc1.bias)
    torch.save(model.state_dict(), tmp_path / "bare.pt")
    with pytest.raises(CheckpointError, match="bare.pt holds weights but not the model's config"):
        FashionMLP.from_pretrained(tmp_path / "bare.pt")


def broken(folder: Path, fault: str) -> Path:
    """A saved model folder with one fault.

    The faults of content are written with valid checksums (by write_pretrained), as a
    writer that got them wrong would write them, so that the checks behind the checksums
    are the ones that refuse them; the faults of damage change the files on disk.
    """
    trained_variant().save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    weights = load_file(folder / "model.safetensors")
    if fault == "wrong shape":
        write_pretrained(folder, config, {**weights, "fc1.weight": torch.zeros(64, 700)})
    elif fault == "missing key":
        write_pretrained(folder, config, {k: v for k, v in weights.items() if k != "fc2.bias"})
    elif fault == "extra key":
        write_pretrained(folder, config, {**weights, "fc9.weight": torch.zeros(2)})
    elif fault == "no checksum":
        document = {k: v for k, v in config.items() if k != "weights_sha256"}
        (folder / "config.json").write_text(json.dumps(document))
    elif fault == "a weight changed on disk":
        data = bytearray((folder / "model.safetensors").read_bytes())
        data[-100] ^= 0x01  # the lowest bit of a byte of the last tensor
        (folder / "model.safetensors").write_bytes(bytes(data))
    elif fault == "a setting changed on disk":
        text = (folder / "config.json").read_text().replace('"dropout": 0.1', '"dropout": 0.2')
        (folder / "config.json").write_text(text)
    elif fault == "NaN weights":
        nan = torch.full_like(weights["fc2.bias"], math.nan)
        write_pretrained(folder, config, {**weights, "fc2.bias": nan})
    elif fault == "truncated weights":
        data = (folder / "model.safetensors").read_bytes()
        (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif fault == "config not JSON":
        (folder / "config.json").write_text("{hidden_features: 64")
    elif fault == "config of another model":
        (folder / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))
    elif fault == "config out of range":
        write_pretrained(folder, {**config, "hidden_layers": 0}, weights)
    elif fault == "config of absurd depth":  # found by Hypothesis: it filled the memory
        write_pretrained(folder, {**config, "hidden_layers": 2**40}, weights)
    elif fault == "config missing a setting":
        write_pretrained(folder, {k: v for k, v in config.items() if k != "normalize"}, weights)
    elif fault == "config missing":
        (folder / "config.json").unlink()
    elif fault == "a pickle as weights":
        with open(folder / "model.safetensors", "wb") as handle:
            pickle.dump({"fc1.weight": _RunsCode()}, handle)
    return folder


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("wrong shape", r"model.safetensors does not fit.*of another size \['fc1.weight'\]"),
        ("missing key", r"model.safetensors does not fit.*missing \['fc2.bias'\]"),
        ("extra key", r"model.safetensors does not fit.*unexpected \['fc9.weight'\]"),
        ("truncated weights", r"model.safetensors does not match the checksum in config.json"),
        ("config not JSON", r"config.json is not valid JSON"),
        ("config of another model", r"config.json is not a FashionMLP config \(model_type 'bert'"),
        ("config out of range", r"config.json does not describe a FashionMLP.*hidden_layers"),
        ("config of absurd depth", r"holds 8 tensors, too few for the 1099511627776 hidden"),
        ("config missing", r"config.json is missing"),
        ("config missing a setting", r"config.json does not describe.*missing setting 'normalize'"),
        ("a pickle as weights", r"model.safetensors is not a readable safetensors file"),
        ("no checksum", r"config.json holds no weights_sha256 checksum"),
        ("a weight changed on disk", r"model.safetensors does not match the checksum in config"),
        ("a setting changed on disk", r"config.json does not match the checksum in model.safe"),
        ("NaN weights", r"holds NaN or infinite weights \(fc2.bias\)"),
    ],
)
def test_broken_model_folders_are_named_errors_that_run_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    folder = broken(tmp_path / "model", fault)
    with pytest.raises(CheckpointError, match=message):
        FashionMLP.from_pretrained(folder)
    assert not (tmp_path / "pwned").exists()


def test_folders_without_a_model_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such file or folder"):
        FashionMLP.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="holds no model.safetensors"):
        FashionMLP.from_pretrained(tmp_path)
    save_checkpoint(tmp_path / "checkpoint.pt", FashionMLP())
    with pytest.raises(CheckpointError, match="unfinished run.*finish it.*checkpoint.pt"):
        FashionMLP.from_pretrained(tmp_path)


class LocalHub:
    """Stands in for the Hugging Face Hub, offline: an upload lands in a local cache laid
    out exactly as huggingface_hub's own (refs/main naming a snapshot folder)."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache
        self.uploads: list[str] = []

    def create_repo(self, repo_id: str, **options: object) -> None:
        (self.cache / f"models--{repo_id.replace('/', '--')}" / "refs").mkdir(
            parents=True, exist_ok=True
        )

    def upload_folder(self, *, repo_id: str, folder_path: str, **options: object) -> str:
        repo = self.cache / f"models--{repo_id.replace('/', '--')}"
        commit = f"{len(self.uploads):040x}"
        shutil.copytree(folder_path, repo / "snapshots" / commit)
        (repo / "refs" / "main").write_text(commit)
        self.uploads.append(repo_id)
        return f"https://huggingface.co/{repo_id}/commit/{commit}"


def test_push_to_hub_then_from_pretrained_by_repo_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    huggingface_hub = pytest.importorskip("huggingface_hub")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # never the network
    hub = LocalHub(tmp_path / "cache")
    monkeypatch.setattr(
        huggingface_hub.HfApi, "create_repo", lambda self, repo_id, **o: hub.create_repo(repo_id)
    )
    monkeypatch.setattr(
        huggingface_hub.HfApi, "upload_folder", lambda self, **o: hub.upload_folder(**o)
    )
    model = trained_variant()
    url = model.push_to_hub("someone/fashionmlp-test")
    assert url.endswith("commit/" + "0" * 40) and hub.uploads == ["someone/fashionmlp-test"]
    loaded = FashionMLP.from_pretrained(
        "someone/fashionmlp-test", cache_dir=tmp_path / "cache", local_files_only=True
    )
    x = torch.rand(4, 784)
    assert torch.equal(loaded(x), model.eval()(x))
    with pytest.raises(CheckpointError, match="someone/other: no such local file or folder.*Hub"):
        FashionMLP.from_pretrained("someone/other", cache_dir=tmp_path / "cache")


def test_the_hub_without_its_extra_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # as if not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'fashionmlp\[hub\]'"):
        FashionMLP.from_pretrained("someone/model")
    with pytest.raises(ImportError):  # a MissingExtraError is an ImportError too
        FashionMLP().push_to_hub("someone/model")
