from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from fashionmlp import CheckpointError, FashionMLP, load_checkpoint, save_checkpoint


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

    def crash(obj: object, f: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(CheckpointError, match="No space left"):
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
        (None, "does not exist"),
        (b"", "not a readable"),
        ("truncate", "not a readable"),
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


def test_resuming_an_optimizer_needs_its_state(tmp_path: Path) -> None:
    model = FashionMLP(hidden_features=8)
    path = save_checkpoint(tmp_path / "c.pt", model)
    with pytest.raises(CheckpointError, match="no optimizer state"):
        load_checkpoint(path, model, torch.optim.SGD(model.parameters(), lr=0.1))
