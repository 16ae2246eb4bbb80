from __future__ import annotations

import gzip
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import fashionmlp.data as data_module
from conftest import missing_dataset
from fashionmlp import DatasetError, DatasetNotFoundError
from fashionmlp.data import SYSTEM_DATA_DIRS, load_split, prepare_dataset, raw_folder, read_idx
from idx_files import idx_bytes, write_idx

NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
IMAGES = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8)
LABELS = torch.tensor([0, 9, 3, 3, 1], dtype=torch.uint8)


# --- read_idx on small files the tests write -----------------------------------------


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_valid_files_read_back_exactly(tmp_path: Path, suffix: str) -> None:
    images = read_idx(write_idx(tmp_path / f"img{suffix}", IMAGES), "images", 5)
    labels = read_idx(write_idx(tmp_path / f"lbl{suffix}", LABELS), "labels", 5)
    assert images.dtype == torch.uint8 and torch.equal(images, IMAGES)
    assert labels.dtype == torch.int64 and labels.tolist() == [0, 9, 3, 3, 1]


CORRUPTIONS: dict[str, tuple[Callable[[Path], Path], str, str]] = {
    "wrong magic": (lambda d: write_idx(d / "f", IMAGES, magic=0x0801), "images", "magic number"),
    "labels as images": (lambda d: write_idx(d / "f", LABELS), "images", "magic number"),
    "wrong image size": (
        lambda d: write_idx(d / "f", torch.zeros(5, 32, 32)),
        "images",
        "32x32, expected 28x28",
    ),
    "wrong count": (
        lambda d: write_idx(d / "f", IMAGES[:4]),
        "images",
        "holds 4 images, expected 5",
    ),
    "truncated": (lambda d: _write(d / "f", idx_bytes(IMAGES)[:-100]), "images", "truncated"),
    "trailing data": (
        lambda d: _write(d / "f", idx_bytes(IMAGES) + b"x"),
        "images",
        "trailing data",
    ),
    "label out of range": (
        lambda d: write_idx(d / "f", torch.tensor([0, 10, 1, 2, 3])),
        "labels",
        "holds label 10",
    ),
    "empty file": (lambda d: _write(d / "f", b""), "labels", "too short"),
    "not gzip": (lambda d: _write(d / "f.gz", idx_bytes(LABELS)), "labels", "not a valid gzip"),
    "truncated gzip": (
        lambda d: _write(d / "f.gz", gzip.compress(idx_bytes(IMAGES))[:-20]),
        "images",
        "not a valid gzip",
    ),
    "a folder": (lambda d: _mkdir(d / "f"), "labels", "is a folder"),
    "missing": (lambda d: d / "absent", "labels", "cannot be read"),
}


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


@pytest.mark.parametrize("fault", sorted(CORRUPTIONS))
def test_each_fault_is_a_dataset_error_naming_file_and_fault(tmp_path: Path, fault: str) -> None:
    make, kind, message = CORRUPTIONS[fault]
    path = make(tmp_path)
    with pytest.raises(DatasetError, match=message) as info:
        read_idx(path, kind, 5)  # type: ignore[arg-type]
    assert str(path) in str(info.value)


# --- prepare_dataset: sources, order, and never touching the user's files -------------


@pytest.fixture
def no_system_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data_module, "SYSTEM_DATA_DIRS", ())


@pytest.mark.usefixtures("no_system_copy")
def test_missing_dataset_error_lists_paths_and_both_remedies(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        prepare_dataset(tmp_path)
    message = str(info.value)
    assert str(raw_folder(tmp_path) / "train-images-idx3-ubyte") in message
    assert "apt-get install dataset-fashion-mnist" in message and "download=True" in message
    assert isinstance(info.value, FileNotFoundError)


@pytest.fixture
def debian_dir() -> Path:
    folder = SYSTEM_DATA_DIRS[0]
    if not (folder / "train-images-idx3-ubyte.gz").is_file():
        missing_dataset(f"needs the Debian package dataset-fashion-mnist in {folder}")
    return folder


def test_debian_files_are_laid_out_once_and_then_left_alone(
    tmp_path: Path, debian_dir: Path
) -> None:
    raw = prepare_dataset(tmp_path)
    assert raw == tmp_path / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(NAMES)  # no temporary files left
    expected = gzip.decompress((debian_dir / "t10k-labels-idx1-ubyte.gz").read_bytes())
    assert (raw / "t10k-labels-idx1-ubyte").read_bytes() == expected
    stamps = {p.name: p.stat().st_mtime_ns for p in raw.iterdir()}
    prepare_dataset(tmp_path)
    assert {p.name: p.stat().st_mtime_ns for p in raw.iterdir()} == stamps


def test_gz_files_in_the_root_are_decompressed_beside_themselves(
    tmp_path: Path, debian_dir: Path, no_system_copy: None
) -> None:
    raw = raw_folder(tmp_path)
    raw.mkdir(parents=True)
    for name in NAMES:
        shutil.copy(debian_dir / f"{name}.gz", raw)
    prepare_dataset(tmp_path)
    assert all((raw / name).is_file() and (raw / f"{name}.gz").is_file() for name in NAMES)


def test_a_corrupt_file_in_the_root_is_reported_and_never_replaced(
    tmp_path: Path, debian_dir: Path
) -> None:
    prepare_dataset(tmp_path)
    bad = raw_folder(tmp_path) / "t10k-labels-idx1-ubyte"
    content = bytearray(bad.read_bytes())
    content[100] = (content[100] + 1) % 10  # still a valid label: only the digest can tell
    bad.write_bytes(bytes(content))
    with pytest.raises(DatasetError, match="content differs") as info:
        load_split(tmp_path, "test")
    assert str(bad) in str(info.value)
    assert bad.read_bytes() == bytes(content)


def test_an_unwritable_root_is_a_dataset_error(tmp_path: Path, debian_dir: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(DatasetError, match="choose another data root.*--data-root"):
        prepare_dataset(blocker / "root")


def test_an_unreadable_file_is_a_dataset_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_idx(tmp_path / "labels", LABELS)

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    # Root reads any file whatever its mode bits, so the refusal is simulated.
    monkeypatch.setattr(data_module, "open", refuse, raising=False)
    with pytest.raises(DatasetError, match="labels: cannot be read \\(Permission denied\\)"):
        read_idx(path, "labels")


def test_a_read_only_root_is_a_dataset_error_naming_the_fix(
    tmp_path: Path, debian_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def read_only(*args: object, **kwargs: object) -> None:
        raise PermissionError(30, "Read-only file system")

    monkeypatch.setattr(data_module, "atomic_write", read_only)
    with pytest.raises(DatasetError, match="read-only.*--data-root"):
        prepare_dataset(tmp_path)


def test_download_is_tried_only_when_allowed_and_installs_verified_files(
    tmp_path: Path, debian_dir: Path, no_system_copy: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    fetched: list[str] = []

    def fake_download(url: str, folder: str, filename: str, md5: str) -> None:
        fetched.append(url)
        shutil.copy(debian_dir / filename, Path(folder) / filename)

    monkeypatch.setattr("torchvision.datasets.utils.download_url", fake_download)
    with pytest.raises(DatasetNotFoundError):
        prepare_dataset(tmp_path)
    assert fetched == []
    raw = prepare_dataset(tmp_path, download=True)
    assert len(fetched) == 4 and all(url.startswith("http") for url in fetched)
    assert sorted(p.name for p in raw.iterdir()) == sorted(NAMES)


def test_a_bad_download_leaves_nothing_that_looks_valid(
    tmp_path: Path, no_system_copy: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def half_download(url: str, folder: str, filename: str, md5: str) -> None:
        header = b"".join(n.to_bytes(4, "big") for n in (0x0803, 60_000, 28, 28))
        (Path(folder) / filename).write_bytes(gzip.compress(header + b"\x00" * 5000))

    monkeypatch.setattr("torchvision.datasets.utils.download_url", half_download)
    with pytest.raises(DatasetError, match="truncated") as info:
        prepare_dataset(tmp_path, download=True)
    assert "http://" in str(info.value)
    assert list(raw_folder(tmp_path).iterdir()) == []


def test_a_failed_download_names_the_offline_remedy(
    tmp_path: Path, no_system_copy: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(url: str, folder: str, filename: str, md5: str) -> None:
        raise OSError("Network is unreachable")

    monkeypatch.setattr("torchvision.datasets.utils.download_url", offline)
    with pytest.raises(DatasetNotFoundError, match="apt-get install dataset-fashion-mnist"):
        prepare_dataset(tmp_path, download=True)


def test_a_damaged_file_says_how_to_replace_it_by_where_it_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = raw_folder(tmp_path / "root")
    raw.mkdir(parents=True)
    mine = write_idx(raw / "t10k-labels-idx1-ubyte", torch.zeros(10_000))  # in the data root
    mine.write_bytes(mine.read_bytes()[:-2])  # cut short
    with pytest.raises(
        DatasetError, match=r"truncated.*move t10k-labels-idx1-ubyte out of"
    ) as info:
        data_module._load_verified(mine, data_module._FILES["test"][1])
    assert "apt-get" not in str(info.value) and "--download" not in str(info.value)
    system = tmp_path / "debian"
    system.mkdir()
    monkeypatch.setattr(data_module, "SYSTEM_DATA_DIRS", (system,))
    (system / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip")  # the first one read
    with pytest.raises(DatasetError, match=r"reinstall it \(sudo apt-get install --reinstall"):
        prepare_dataset(tmp_path / "other")
