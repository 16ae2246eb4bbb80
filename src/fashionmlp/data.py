"""Find, check and load the FashionMNIST files.

The raw files live under ``root`` in torchvision's layout::

    root/FashionMNIST/raw/train-images-idx3-ubyte
    root/FashionMNIST/raw/train-labels-idx1-ubyte
    root/FashionMNIST/raw/t10k-images-idx3-ubyte
    root/FashionMNIST/raw/t10k-labels-idx1-ubyte

:func:`prepare_dataset` puts them there from, in this order: the files already there
(or their ``.gz`` beside them); the Debian package ``dataset-fashion-mnist``
(``/usr/share/datasets/fashion-mnist/``); torchvision's download mirrors when
``download=True``. Every file is checked before use (IDX header, sizes, label range and
the SHA-256 of its decompressed content), and nothing already in ``root`` is ever
overwritten or deleted.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, NamedTuple

import torch

from ._files import atomic_write, check_name, os_error_fix
from .errors import DatasetError, DatasetNotFoundError
from .config import IMAGE_SIZE, NUM_CLASSES

__all__ = [
    "SYSTEM_DATA_DIRS",
    "Split",
    "Splits",
    "default_data_root",
    "load_dataset",
    "load_split",
    "prepare_dataset",
    "raw_folder",
    "read_idx",
]

#: Folders searched for the Debian package's compressed files, in order (or those
#: ``$FASHIONMLP_SYSTEM_DATA`` lists, separated by ``os.pathsep``, for a copy elsewhere).
SYSTEM_DATA_DIRS: tuple[Path, ...] = tuple(
    Path(folder)
    for folder in os.environ.get(
        "FASHIONMLP_SYSTEM_DATA", "/usr/share/datasets/fashion-mnist"
    ).split(os.pathsep)
    if folder
)

_IMAGES_MAGIC: Final = 0x00000803  # unsigned bytes, 3 dimensions
_LABELS_MAGIC: Final = 0x00000801  # unsigned bytes, 1 dimension


@dataclass(frozen=True)
class _RawFile:
    name: str
    kind: Literal["images", "labels"]
    count: int
    sha256: str  # of the decompressed bytes; Debian recompresses, so the .gz digests differ


_FILES: Final = {
    "train": (
        _RawFile(
            "train-images-idx3-ubyte",
            "images",
            60_000,
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        ),
        _RawFile(
            "train-labels-idx1-ubyte",
            "labels",
            60_000,
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        ),
    ),
    "test": (
        _RawFile(
            "t10k-images-idx3-ubyte",
            "images",
            10_000,
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        ),
        _RawFile(
            "t10k-labels-idx1-ubyte",
            "labels",
            10_000,
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        ),
    ),
}
#: Where a data root is chosen, for messages that advise choosing another.
_DATA_ROOT = "data root (root=..., or --data-root on the command line)"
_HOW_TO_GET = (
    "install the Debian package (sudo apt-get install dataset-fashion-mnist), "
    "or allow the download (download=True, or --download on the command line)"
)


def default_data_root() -> Path:
    """Where the dataset goes when no root is given.

    ``$FASHIONMLP_DATA`` if set, else ``$XDG_CACHE_HOME/fashionmlp`` (``~/.cache/fashionmlp``).
    """
    if env := os.environ.get("FASHIONMLP_DATA"):
        return Path(env)
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "fashionmlp"


def raw_folder(root: str | os.PathLike[str]) -> Path:
    """The folder torchvision reads: ``root/FashionMNIST/raw``."""
    return Path(root) / "FashionMNIST" / "raw"


def read_idx(
    path: str | os.PathLike[str],
    kind: Literal["images", "labels"],
    count: int | None = None,
    *,
    data: bytes | None = None,
) -> torch.Tensor:
    """Read one IDX file (plain or ``.gz``) and check it is a FashionMNIST file of ``kind``.

    Checks the magic number, the dimensions (``28x28`` for images), the item count
    (``count``, when given), that the file is exactly as long as its header says and,
    for labels, that every label is in ``0..9``.

    Args:
        path: The file; named in every error. Read unless ``data`` is given.
        kind: ``"images"`` (returns ``uint8 (N, 28, 28)``) or ``"labels"``
            (returns ``int64 (N,)``).
        count: The number of items the file must hold.
        data: The file's decompressed bytes, when the caller has read them already.

    Raises:
        DatasetError: The file cannot be read or is not what ``kind`` says.
    """
    if data is None:
        data = _read_bytes(Path(path))
    path = os.fspath(path)  # named as given: it may be a URL the bytes came from
    magic, dims = (_IMAGES_MAGIC, 3) if kind == "images" else (_LABELS_MAGIC, 1)
    header_size = 4 * (1 + dims)
    found_magic = int.from_bytes(data[0:4], "big")
    if len(data) >= 4 and found_magic != magic:
        raise DatasetError(
            f"{path}: wrong IDX magic number 0x{found_magic:08x}, expected 0x{magic:08x} "
            f"for {kind}; this is not a FashionMNIST {kind} file"
        )
    if len(data) < header_size:
        raise DatasetError(
            f"{path}: too short for an IDX {kind} file ({len(data)} bytes); "
            "the file is truncated or empty"
        )
    shape = [int.from_bytes(data[4 * i : 4 * i + 4], "big") for i in range(1, dims + 1)]
    if kind == "images" and shape[1:] != [IMAGE_SIZE, IMAGE_SIZE]:
        raise DatasetError(
            f"{path}: images are {shape[1]}x{shape[2]}, expected {IMAGE_SIZE}x{IMAGE_SIZE}"
        )
    if count is not None and shape[0] != count:
        raise DatasetError(f"{path}: holds {shape[0]} {kind}, expected {count}")
    expected_size = header_size + math.prod(shape)
    if len(data) != expected_size:
        raise DatasetError(
            f"{path}: is {len(data)} bytes but its header promises {expected_size}; "
            "the file is truncated or has trailing data"
        )
    values = torch.frombuffer(bytearray(data), dtype=torch.uint8, offset=header_size)
    if kind == "images":
        return values.view(*shape)
    if values.numel() and int(values.max()) >= NUM_CLASSES:
        raise DatasetError(
            f"{path}: holds label {int(values.max())}; FashionMNIST labels are 0..{NUM_CLASSES - 1}"
        )
    return values.long()


class Split(NamedTuple):
    """One split's images and labels, as read and checked from the files."""

    #: uint8 ``(N, 28, 28)`` images.
    images: torch.Tensor
    #: int64 ``(N,)`` labels.
    labels: torch.Tensor


class Splits(NamedTuple):
    """The dataset, read and checked once: what :func:`~fashionmlp.load_dataset` returns, and what
    :func:`~fashionmlp.fit` and :func:`~fashionmlp.make_loaders` take as ``data=``."""

    #: The 60,000 training images.
    train: Split
    #: The 10,000 test images, or ``None`` when loaded without them (``test=False``).
    test: Split | None


def load_dataset(
    root: str | os.PathLike[str] | None = None, *, download: bool = False, test: bool = True
) -> Splits:
    """Both splits of FashionMNIST, read and checked once, on the CPU.

    Pass the result to :func:`~fashionmlp.fit` or :func:`~fashionmlp.make_loaders` as
    ``data=``, and many runs in one process read the files once.

    Args:
        root: The data root (default :func:`default_data_root`); the files are found or
            fetched by :func:`~fashionmlp.data.prepare_dataset`.
        download: Allow the download when no local copy exists.
        test: Also read the test set. ``False`` never opens the test files (a
            hyperparameter search judges on a validation split, and must not see them).

    Raises:
        DatasetNotFoundError: A file is in none of the sources.
        DatasetError: A file is corrupt.

    Example:
        .. code-block:: python

            data = load_dataset()
            results = [fit(get_recipe("fast"), data=data, seed=seed) for seed in range(5)]
    """
    root = root if root is not None else default_data_root()
    train = Split(*load_split(root, "train", download=download))
    return Splits(train, Split(*load_split(root, "test", download=download)) if test else None)


def prepare_dataset(
    root: str | os.PathLike[str], *, download: bool = False, test: bool = True
) -> Path:
    """Make the raw files present and valid under ``root``; return their folder.

    Sources, in order: files already in ``root/FashionMNIST/raw`` (or their ``.gz``
    there); the Debian package's files in :data:`~fashionmlp.data.SYSTEM_DATA_DIRS`; torchvision's
    mirrors if ``download`` is true. New files are written to a temporary name,
    verified, then renamed, so an interrupted run never leaves a file that looks valid.
    Files already present are verified and never replaced. With ``test=False`` only the
    two training files are looked for.

    Raises:
        DatasetNotFoundError: A file is in none of the sources (the message lists where
            it looked and how to get the data).
        DatasetError: A file is present but corrupt, or ``root`` is not writable.
    """
    check_name(root, error=DatasetError)
    raw = raw_folder(root)
    for spec in _FILES["train"] + (_FILES["test"] if test else ()):
        if (raw / spec.name).exists():
            continue
        source = _find_compressed(raw, spec.name)
        if source is not None:
            _install(raw, spec, _read_bytes(source), origin=source)
        elif download:
            _download(raw, spec)
        else:
            looked = [raw / spec.name, raw / f"{spec.name}.gz"] + [
                folder / f"{spec.name}.gz" for folder in SYSTEM_DATA_DIRS
            ]
            raise DatasetNotFoundError(
                f"FashionMNIST file {spec.name} not found; looked in: "
                + ", ".join(str(p) for p in looked)
                + f". To get it: {_HOW_TO_GET}"
            )
    return raw


def load_split(
    root: str | os.PathLike[str], split: Literal["train", "test"], *, download: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return one split as ``(images uint8 (N, 28, 28), labels int64 (N,))``, fully checked.

    Calls :func:`~fashionmlp.data.prepare_dataset` first, so the same sources and errors apply.
    """
    raw = prepare_dataset(root, download=download, test=split == "test")
    images_spec, labels_spec = _FILES[split]
    images = _load_verified(raw / images_spec.name, images_spec)
    labels = _load_verified(raw / labels_spec.name, labels_spec)
    return images, labels


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed if it ends in ``.gz``; every failure a DatasetError."""
    try:
        if path.is_dir():
            raise DatasetError(f"{path}: is a folder, expected a file; move it out of the way")
        with open(path, "rb") as handle:
            raw = handle.read()
        if path.suffix == ".gz":
            return gzip.decompress(raw)
        return raw
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DatasetError(
            f"{path}: not a valid gzip file ({exc}); it is corrupt or truncated: {_remedy(path)}"
        ) from exc
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read ({exc.strerror or exc})") from exc


def _find_compressed(raw: Path, name: str) -> Path | None:
    for folder in (raw, *SYSTEM_DATA_DIRS):
        candidate = folder / f"{name}.gz"
        if candidate.is_file():
            return candidate
    return None


def _verify(path: Path | str, spec: _RawFile, data: bytes) -> torch.Tensor:
    try:
        values = read_idx(path, spec.kind, spec.count, data=data)
    except DatasetError as exc:
        raise DatasetError(f"{exc}: {_remedy(path)}") from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != spec.sha256:
        raise DatasetError(
            f"{path}: content differs from the published FashionMNIST file "
            f"(SHA-256 {digest[:12]}…, expected {spec.sha256[:12]}…); the file is corrupt: "
            f"{_remedy(path)}"
        )
    return values


def _remedy(origin: Path | str) -> str:
    """How to replace a damaged file, by where it came from."""
    if isinstance(origin, str):  # a download's URL
        return "the download was damaged; run again to download it afresh"
    if origin.parent in SYSTEM_DATA_DIRS:
        return (
            "the Debian package's copy is damaged; reinstall it "
            "(sudo apt-get install --reinstall dataset-fashion-mnist)"
        )
    return (
        f"move {origin.name} out of {origin.parent} (or delete it) and run again, and a fresh "
        "copy is laid out there (nothing of yours is ever replaced by the library itself)"
    )


def _load_verified(path: Path, spec: _RawFile) -> torch.Tensor:
    return _verify(path, spec, _read_bytes(path))


def _install(raw: Path, spec: _RawFile, data: bytes, *, origin: Path | str) -> None:
    """Verify ``data`` and write it as ``raw/spec.name`` without replacing anything."""
    _verify(origin, spec, data)
    target = raw / spec.name
    try:
        raw.mkdir(parents=True, exist_ok=True)
        atomic_write(target, data, replace=False)
    except OSError as exc:
        raise DatasetError(f"cannot write {target}: {os_error_fix(exc, _DATA_ROOT)}") from exc


def _download(raw: Path, spec: _RawFile) -> None:
    from torchvision.datasets import FashionMNIST
    from torchvision.datasets.utils import download_url

    md5 = dict(FashionMNIST.resources)[f"{spec.name}.gz"]
    failures = []
    with tempfile.TemporaryDirectory(prefix=".download-", dir=_writable(raw)) as tmp:
        for mirror in FashionMNIST.mirrors:
            url = f"{mirror}{spec.name}.gz"
            try:
                download_url(url, tmp, filename=f"{spec.name}.gz", md5=md5)
            except Exception as exc:  # network errors come in many types; all mean "try next"
                failures.append(f"{url}: {exc}")
                continue
            downloaded = Path(tmp) / f"{spec.name}.gz"
            _install(raw, spec, _read_bytes(downloaded), origin=url)
            return
    raise DatasetNotFoundError(
        f"could not download {spec.name}: " + "; ".join(failures) + ". Without internet, "
        "install the Debian package (sudo apt-get install dataset-fashion-mnist)"
    )


def _writable(raw: Path) -> Path:
    try:
        raw.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"cannot create {raw}: {os_error_fix(exc, _DATA_ROOT)}") from exc
    return raw
