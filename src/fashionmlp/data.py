"""The data: the FashionMNIST files found, checked and read, and the loaders over them.

The raw files live under ``root`` in torchvision's layout::

    root/FashionMNIST/raw/train-images-idx3-ubyte
    root/FashionMNIST/raw/train-labels-idx1-ubyte
    root/FashionMNIST/raw/t10k-images-idx3-ubyte
    root/FashionMNIST/raw/t10k-labels-idx1-ubyte

:func:`~fashionmlp.data.prepare_dataset` puts them there from, in this order: the files already there (or
their ``.gz`` beside them); the Debian package ``dataset-fashion-mnist``
(``/usr/share/datasets/fashion-mnist/``); torchvision's download mirrors when
``download=True``. Every file is checked before use (IDX header, sizes, label range and the
SHA-256 of its decompressed content), and nothing already in ``root`` is ever overwritten or
deleted. :func:`load_dataset` reads both splits once; every loader is made from what it
read, so many runs in one process read no file again.

Two backends give the same batches, ``x`` float32 ``(B, 1, 28, 28)`` in ``[0, 1]`` and ``y``
int64 ``(B,)``:

``"torchvision"``
    The seed's pipeline: ``datasets.FashionMNIST`` with ``ToTensor()`` in a
    ``DataLoader``. Each sample goes through PIL and back, one at a time, in Python.
``"tensor"``
    Each split held as one uint8 tensor on the target device; a batch is a slice of one
    gather per epoch and one division, bitwise equal to what ``ToTensor()`` gives for the
    same samples (:class:`~fashionmlp.data.TensorLoader`). Shuffling, augmentation (:class:`Augment`) and
    normalization are tensor ops on the device.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import struct
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple, Union

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ._files import atomic_write, check_name, os_error_fix
from .config import (
    CLASSES,
    IMAGE_SIZE,
    NO_NORMALIZATION,
    NUM_CLASSES,
    TRAIN_IMAGES,
    Backend,
    RunConfig,
    check_positive,
)
from .devices import is_distributed, rank, resolve_device, world_size
from .errors import DatasetError, DatasetNotFoundError, InvalidArgumentError

__all__ = [
    "SYSTEM_DATA_DIRS",
    "Augment",
    "FashionMNISTTensors",
    "Loader",
    "Loaders",
    "Split",
    "Splits",
    "TensorLoader",
    "default_data_root",
    "load_dataset",
    "load_split",
    "make_loaders",
    "pixels_to_float",
    "prepare_dataset",
    "raw_folder",
    "read_idx",
    "select_splits",
    "standardize",
    "validation_split",
]

#: Folders searched for the Debian package's compressed files, in order (or those
#: ``$FASHIONMLP_SYSTEM_DATA`` lists, separated by ``os.pathsep``, for a copy elsewhere).
SYSTEM_DATA_DIRS: tuple[Path, ...] = tuple(
    map(
        Path,
        filter(
            None,
            os.getenv("FASHIONMLP_SYSTEM_DATA", "/usr/share/datasets/fashion-mnist").split(
                os.pathsep
            ),
        ),
    )
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
    shape = list(struct.unpack(f">{dims}I", data[4:header_size]))  # big-endian 32-bit sizes
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


def _load_verified(path: Path, spec: _RawFile) -> torch.Tensor:
    """One file read and checked (the one place a split's file is read)."""
    return _verify(path, spec, _read_bytes(path))


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


# --- the splits a run serves ---------------------------------------------------------------


def select_splits(
    data: Splits, *, limit: int | None = None, validation_size: int = 0
) -> tuple[Split, Split]:
    """The ``(train, evaluation)`` samples that :func:`~fashionmlp.make_loaders` serves.

    The evaluation split is the test set, or, with ``validation_size``, that many held-out
    training images (:func:`~fashionmlp.data.validation_split`; the test set is then not needed). ``limit``
    keeps the first ``limit`` samples of each.

    Raises:
        InvalidArgumentError: The test set is needed but ``data`` was loaded without it.
    """
    train = data.train
    if validation_size:
        kept, held_out = validation_split(train.labels, validation_size)
        evaluation = Split(train.images[held_out], train.labels[held_out])
        train = Split(train.images[kept], train.labels[kept])
    elif data.test is None:
        raise InvalidArgumentError(
            "the data was loaded without its test set (load_dataset(test=False)); load it "
            "with load_dataset(), or evaluate on a validation split (validation_size=...)"
        )
    else:
        evaluation = data.test
    if limit is not None:
        train = Split(train.images[:limit], train.labels[:limit])
        evaluation = Split(evaluation.images[:limit], evaluation.labels[:limit])
    return train, evaluation


def validation_split(labels: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split sample indices into ``(train, validation)``, stratified and always the same.

    The validation part takes ``size // 10`` images of every class (the remainder from
    the first classes), drawn by a generator seeded with 0 whatever the run's seed, so
    every run that holds out ``size`` images holds out the same ones and tuning compares
    like with like. Both index tensors are sorted.

    Example:
        >>> from fashionmlp.data import validation_split
        >>> labels = torch.arange(100) % 10
        >>> train, validation = validation_split(labels, 20)
        >>> len(train), len(validation), torch.bincount(labels[validation]).tolist()
        (80, 20, [2, 2, 2, 2, 2, 2, 2, 2, 2, 2])
    """
    labels = labels.cpu()
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    per_class, extra = divmod(size, NUM_CLASSES)
    chosen = []
    for label in range(NUM_CLASSES):
        members = order[labels[order] == label]
        take = per_class + (1 if label < extra else 0)
        if take > len(members):
            raise InvalidArgumentError(
                f"validation_size {size} needs {take} images of class {label}, "
                f"but there are only {len(members)}"
            )
        chosen.append(members[:take])
    validation = torch.cat(chosen).sort().values
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[validation] = False
    return keep.nonzero().squeeze(1), validation


# --- batches as tensor ops ------------------------------------------------------------------


def standardize(x: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """``(x - mean) / std``: the arithmetic of ``transforms.Normalize``, bit for bit."""
    return (x - mean) / std


@dataclass(frozen=True)
class Augment:
    """Random augmentation of a training batch, done as batched tensor ops on its device.

    Args:
        hflip: Mirror each image left-right with probability 1/2.
        translate: Shift each image by up to this many pixels along each axis (filling
            with zeros, i.e. background), independently per image.

    Example:
        >>> import torch
        >>> x = torch.rand(8, 1, 28, 28)
        >>> Augment(hflip=True, translate=2)(x, torch.Generator().manual_seed(0)).shape
        torch.Size([8, 1, 28, 28])
    """

    hflip: bool = False
    translate: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.translate < IMAGE_SIZE:
            raise InvalidArgumentError(
                f"translate must be between 0 and {IMAGE_SIZE - 1} pixels, got {self.translate}"
            )

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Return an augmented copy of the batch ``x`` shaped ``(B, 1, 28, 28)``."""
        batch = len(x)
        if self.hflip:
            flip = torch.rand(batch, generator=generator, device=x.device) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        if self.translate:
            k = self.translate
            padded = F.pad(x, (k, k, k, k))
            shifts = torch.randint(0, 2 * k + 1, (2, batch), generator=generator, device=x.device)
            offsets = torch.arange(IMAGE_SIZE, device=x.device)
            rows = (shifts[0, :, None] + offsets)[:, :, None]  # (B, 28, 1)
            cols = (shifts[1, :, None] + offsets)[:, None, :]  # (B, 1, 28)
            samples = torch.arange(batch, device=x.device)[:, None, None]
            x = padded[samples, 0, rows, cols].unsqueeze(1)
        return x


class FashionMNISTTensors(Dataset[tuple[torch.Tensor, int]]):
    """One split held as two tensors on a device; indexing gives what torchvision's does.

    ``dataset[i]`` is ``(image float32 (1, 28, 28), label int)``, the pair
    ``datasets.FashionMNIST(..., transform=ToTensor())[i]`` gives.

    Attributes:
        data: ``uint8 (N, 28, 28)`` images (torchvision's name).
        targets: ``int64 (N,)`` labels.
        classes: The class names.
    """

    def __init__(self, data: torch.Tensor, targets: torch.Tensor) -> None:
        if data.dtype != torch.uint8 or data.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
            raise InvalidArgumentError(
                f"data must be uint8 (N, 28, 28), got {data.dtype} {tuple(data.shape)}"
            )
        if targets.shape != (len(data),):
            raise InvalidArgumentError(
                f"targets must be ({len(data)},) to match data, got {tuple(targets.shape)}"
            )
        self.data = data
        self.targets = targets.to(device=data.device, dtype=torch.int64)
        self.classes = list(CLASSES)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return pixels_to_float(self.data[index].unsqueeze(0)), int(self.targets[index])


class TensorLoader:
    """Batches from a :class:`~fashionmlp.data.FashionMNISTTensors` made with
    tensor ops, on its device.

    It behaves like a ``DataLoader`` where training code looks: ``len(loader)`` is the
    number of batches, ``loader.dataset`` the dataset, ``loader.batch_size`` and
    ``loader.drop_last`` are there, and each ``iter()`` is a new epoch (reshuffled when
    ``shuffle`` is true).

    Args:
        dataset: The split to serve.
        batch_size: Samples per batch.
        shuffle: Draw a new random order every epoch from ``generator``.
        drop_last: Leave out the last, smaller batch.
        generator: Random source for the order and augmentation; must be on the
            dataset's device. Default: one seeded from torch's global generator.
        augment: Applied to every batch (for training).
        normalize: ``(mean, std)`` to standardize every batch with; ``(0.0, 1.0)`` (the
            default) leaves it as it is.
        shard: ``(rank, world_size)``: serve only this rank's share, as
            ``DistributedSampler`` does. Shuffled, each epoch's permutation is the same on
            every rank (the generators are seeded alike) and rank ``r`` takes every
            ``world_size``-th sample from position ``r``, the permutation's first samples
            repeated to even the shares out when the size does not divide; unshuffled,
            the shares are left uneven so that every sample counts exactly once.
    """

    def __init__(
        self,
        dataset: FashionMNISTTensors,
        batch_size: int = 64,
        *,
        shuffle: bool = False,
        drop_last: bool = False,
        generator: torch.Generator | None = None,
        augment: Augment | None = None,
        normalize: tuple[float, float] = NO_NORMALIZATION,
        shard: tuple[int, int] | None = None,
    ) -> None:
        check_positive("batch_size", batch_size)
        if shard is not None and not 0 <= shard[0] < shard[1]:
            raise InvalidArgumentError(
                f"shard must be (rank, world_size) with 0 <= rank < world_size, got {shard}"
            )
        device = dataset.data.device
        if generator is None:
            # Like DataLoader: an unseeded loader draws its seed from the global RNG.
            generator = torch.Generator(device=device).manual_seed(_drawn_seed())
        elif generator.device.type != device.type:
            raise InvalidArgumentError(
                f"generator is on {generator.device} but the data is on {device}; "
                f"make it with torch.Generator(device={str(device)!r})"
            )
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.generator = generator
        self.augment = augment
        self.normalize = normalize
        self.shard = shard

    def __len__(self) -> int:
        count = self._samples() / self.batch_size
        return math.floor(count) if self.drop_last else math.ceil(count)

    def _samples(self) -> int:
        """Samples this loader serves per epoch (this rank's share when sharded)."""
        size = len(self.dataset)
        if self.shard is None:
            return size
        rank, world = self.shard
        # Shuffled (training) shards are evened out as DistributedSampler does; the
        # unshuffled (evaluation) ones are not, so that every sample counts once.
        return math.ceil(size / world) if self.shuffle else len(range(rank, size, world))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        data, targets = self.dataset.data, self.dataset.targets
        size = len(data)
        order: torch.Tensor | None = None
        if self.shuffle:
            # Every rank draws the same permutation from its identically seeded generator.
            order = torch.randperm(size, generator=self.generator, device=data.device)
        if self.shard is not None:
            rank, world = self.shard
            if order is None:
                order = torch.arange(size, device=data.device)
            elif size % world:
                order = torch.cat([order, order[: world - size % world]])  # even shards
            order = order[rank::world]
        if order is not None:
            # One gather for the whole epoch (47 MB of uint8 for the training set), so
            # each batch below is a free slice rather than a gather of its own.
            data, targets = data[order], targets[order]
            size = len(order)
        stop = size - size % self.batch_size if self.drop_last else size
        for start in range(0, stop, self.batch_size):
            images = data[start : start + self.batch_size]
            labels = targets[start : start + self.batch_size]
            x = pixels_to_float(images.unsqueeze(1))
            if self.augment is not None:
                x = self.augment(x, self.generator)
            if self.normalize != NO_NORMALIZATION:
                x = standardize(x, *self.normalize)
            yield x, labels


def pixels_to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels as float32 in ``[0, 1]``, bitwise what ``ToTensor()`` makes of them.

    The same arithmetic as ``ToTensor()``: convert to float32, then divide by 255.

    Example:
        >>> from fashionmlp.data import pixels_to_float
        >>> pixels_to_float(torch.tensor([0, 51, 255], dtype=torch.uint8))
        tensor([0.0000, 0.2000, 1.0000])
    """
    return images.to(torch.float32).div(255)


# --- the loaders --------------------------------------------------------------------------------

#: What :func:`~fashionmlp.make_loaders` returns for either backend.
Loader = Union[DataLoader[Any], TensorLoader]


class Loaders(NamedTuple):
    """The pair :func:`~fashionmlp.make_loaders` returns; unpacks as ``train, test = loaders``."""

    train: Loader
    test: Loader


def make_loaders(
    root: str | os.PathLike[str] | RunConfig | None = None,
    batch_size: int = 64,
    *,
    download: bool = False,
    data: Splits | None = None,
    seed: int | None = None,
    backend: Backend = "torchvision",
    device: torch.device | str | None = None,
    test_batch_size: int | None = None,
    drop_last: bool = False,
    augment: Augment | None = None,
    normalize: tuple[float, float] = NO_NORMALIZATION,
    num_workers: int = 0,
    limit: int | None = None,
    validation_size: int = 0,
) -> Loaders:
    """Make the train and test loaders for FashionMNIST under ``root``, or those of a run.

    The default backend is the seed's pipeline: ``torchvision.datasets.FashionMNIST`` with
    ``ToTensor()`` in a ``torch.utils.data.DataLoader``, the training set shuffled and the
    test set not. ``backend="tensor"`` keeps each split as one tensor on ``device`` and
    yields bitwise-equal batches many times faster (see :class:`~fashionmlp.data.TensorLoader`). Either way
    the files are found or fetched by :func:`~fashionmlp.data.prepare_dataset` and checked before use, each
    read once, unless ``data`` is given: then none is read.

    ``make_loaders(config, data)`` makes the loaders of the run a
    :class:`~fashionmlp.RunConfig` describes: its recipe's batch size, backend and
    augmentation, its seed, limit and validation split (all checked when the config was
    made); only ``data``, ``download``, ``device`` and ``normalize`` apply beside it.

    Args:
        root: Data folder (see :func:`~fashionmlp.data.prepare_dataset` for its layout); default
            :func:`~fashionmlp.default_data_root`. Or a run's config.
        batch_size: Samples per training batch (the seed's 64).
        download: Allow torchvision's download when no local copy exists.
        data: The dataset already loaded (:func:`~fashionmlp.load_dataset`): ``root`` and
            ``download`` are then unused.
        seed: Makes the training order (and augmentation) reproducible; ``None`` draws
            from torch's global generator, like a plain ``DataLoader``. The two backends
            shuffle differently for the same seed.
        backend: ``"torchvision"`` (the seed's) or ``"tensor"``.
        device: Where the tensor backend keeps the data and makes batches (default CPU);
            with the torchvision backend a CUDA device turns on pinned memory.
        test_batch_size: Samples per test batch; defaults to ``batch_size`` for the
            torchvision backend and to the whole test set (one chunk) for the tensor one.
        drop_last: Leave out the last, smaller training batch.
        augment: Training-batch augmentation (tensor backend only).
        normalize: ``(mean, std)`` to standardize both splits with (FashionMNIST's is
            :data:`~fashionmlp.config.FASHION_MNIST_NORMALIZATION`); ``(0.0, 1.0)``,
            the default as in the seed, leaves them as they are.
        num_workers: Worker processes per loader (torchvision backend; the seed uses 0).
        limit: Use only the first ``limit`` samples of each split (for quick runs).
        validation_size: When above 0, hold out this many training images as a validation
            split (see :func:`~fashionmlp.data.validation_split`) and return it *in place of the test set* as
            the second loader; the first loader then trains on the rest, and the test files
            are not read. This is how to choose hyperparameters without looking at the test
            set.

    Under ``torchrun`` each process gets its shard: of the training set, a different part
    every epoch; of the evaluation set, every ``world_size``-th sample from its rank.

    Raises:
        InvalidArgumentError: An argument is out of range or does not fit the backend.
        DatasetError: The dataset is missing or corrupt.

    Example:
        .. code-block:: python

            train, test = make_loaders("data", seed=0)
            x, y = next(iter(train))  # x: (64, 1, 28, 28) float32, y: (64,) int64
            fast_train, fast_test = make_loaders("data", backend="tensor", device="cuda")
    """
    if isinstance(root, RunConfig):
        recipe = root.recipe
        batch_size, seed, backend = recipe.batch_size, root.seed, recipe.backend
        limit, validation_size = root.limit, root.validation_size
        if recipe.hflip or recipe.translate:
            augment = Augment(hflip=recipe.hflip, translate=recipe.translate)
        root = None
    else:
        _check_options(batch_size, test_batch_size, limit, num_workers, validation_size)
        if augment is not None and backend != "tensor":
            raise InvalidArgumentError("augment needs backend='tensor'")
        if backend not in ("torchvision", "tensor"):
            raise InvalidArgumentError(
                f"unknown backend {backend!r}; use 'torchvision' or 'tensor'"
            )
    mean, std = _mean_std(normalize)
    target = resolve_device(device) if device is not None else torch.device("cpu")
    if data is None:
        data = load_dataset(root, download=download, test=validation_size == 0)
    train, evaluation = select_splits(data, limit=limit, validation_size=validation_size)
    shard = (rank(), world_size()) if is_distributed() else None
    if backend == "tensor":
        generator = torch.Generator(device=target)
        # like DataLoader: an unseeded loader draws its seed from the global generator
        generator.manual_seed(seed if seed is not None else _drawn_seed())
        test_set = FashionMNISTTensors(evaluation.images.to(target), evaluation.labels.to(target))
        return Loaders(
            TensorLoader(
                FashionMNISTTensors(train.images.to(target), train.labels.to(target)),
                batch_size,
                shuffle=True,
                drop_last=drop_last,
                generator=generator,
                augment=augment,
                normalize=(mean, std),
                shard=shard,
            ),
            TensorLoader(
                test_set, test_batch_size or len(test_set), normalize=(mean, std), shard=shard
            ),
        )
    from torchvision import transforms

    steps: list[Any] = [transforms.ToTensor()]
    if (mean, std) != NO_NORMALIZATION:
        steps.append(transforms.Normalize((mean,), (std,)))
    transform = transforms.Compose(steps)
    folder = root if root is not None else default_data_root()
    sampler: DistributedSampler[Any] | None = None
    train_set = _torchvision_dataset(folder, train, is_train=True, transform=transform)
    if shard is not None:
        # Evaluation takes a rank-strided slice without padding, so every sample counts once;
        # DistributedSampler reshuffles the training set from the epoch number (train_epoch
        # calls set_epoch).
        own, world = shard
        evaluation = Split(evaluation.images[own::world], evaluation.labels[own::world])
        sampler = DistributedSampler(train_set, seed=seed or 0, drop_last=drop_last)
    evaluated = _torchvision_dataset(
        folder, evaluation, is_train=validation_size > 0, transform=transform
    )
    pin_memory = target.type == "cuda"
    return Loaders(
        DataLoader(
            train_set,
            batch_size=batch_size,
            shuffle=sampler is None,
            sampler=sampler,
            drop_last=drop_last,
            generator=None if seed is None else torch.Generator().manual_seed(seed),
            num_workers=num_workers,
            pin_memory=pin_memory,
        ),
        DataLoader(
            evaluated,
            batch_size=test_batch_size or batch_size,
            num_workers=num_workers,
            pin_memory=pin_memory,
        ),
    )


def _drawn_seed() -> int:
    """A seed drawn from torch's global generator, as a ``DataLoader`` without one draws."""
    return int(torch.empty((), dtype=torch.int64).random_().item())


def _check_options(
    batch_size: int,
    test_batch_size: int | None,
    limit: int | None,
    num_workers: int,
    validation_size: int,
) -> None:
    for name, value in (("batch_size", batch_size), ("test_batch_size", test_batch_size)):
        if value is not None:
            check_positive(name, value)
    if limit is not None:
        check_positive("limit", limit)
    if num_workers < 0:
        raise InvalidArgumentError(f"num_workers must be 0 or more, got {num_workers}")
    if not 0 <= validation_size < TRAIN_IMAGES:
        raise InvalidArgumentError(
            f"validation_size must be between 0 and 59999 training images, got {validation_size}"
        )


def _torchvision_dataset(
    root: str | os.PathLike[str], split: Split, *, is_train: bool, transform: Any
) -> Any:
    """torchvision's ``FashionMNIST`` serving ``split``, the tensors already read and checked.

    torchvision's constructor would read the files again without checking them; its
    ``__getitem__`` needs only ``data``, ``targets`` and the transforms, which
    ``VisionDataset.__init__`` sets up, so those are filled in directly.
    """
    from torchvision import datasets

    dataset = datasets.FashionMNIST.__new__(datasets.FashionMNIST)
    datasets.VisionDataset.__init__(dataset, str(root), transform=transform)
    dataset.train = is_train
    dataset.data, dataset.targets = split.images, split.labels
    return dataset


def _mean_std(normalize: tuple[float, float]) -> tuple[float, float]:
    try:
        mean, std = map(float, normalize)
    except (TypeError, ValueError):
        raise InvalidArgumentError(
            f"normalize must be (mean, std), got {normalize!r}; (0.0, 1.0) leaves the input "
            "as it is"
        ) from None
    if not std > 0:
        raise InvalidArgumentError(f"normalize std must be above 0, got {std}")
    return (mean, std)
