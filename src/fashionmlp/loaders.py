"""Train and test loaders: the seed's torchvision pipeline, or the dataset on the device.

Two backends give the same batches, ``x`` float32 ``(B, 1, 28, 28)`` in ``[0, 1]`` and ``y``
int64 ``(B,)``:

``"torchvision"``
    The seed's pipeline: ``datasets.FashionMNIST`` with ``ToTensor()`` in a
    ``DataLoader``. Each sample goes through PIL and back, one at a time, in Python.
``"tensor"``
    Each split decoded once into one uint8 tensor on the target device; a batch is one
    index gather and one division, bitwise equal to what ``ToTensor()`` gives for the same
    samples. Shuffling, augmentation and normalization are tensor ops on the device.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final, Literal, NamedTuple, Union

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from . import distributed
from .data import default_data_root, load_split
from .devices import resolve_device
from .errors import InvalidArgumentError
from .model import CLASSES, IMAGE_SIZE, NUM_CLASSES, standardize

__all__ = [
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "Augment",
    "Backend",
    "FashionMNISTTensors",
    "Loader",
    "Loaders",
    "Split",
    "TensorLoader",
    "make_loaders",
    "pixels_to_float",
    "select_splits",
    "validation_split",
]

#: Mean pixel value of the training images (after ``ToTensor()``).
FASHION_MNIST_MEAN: Final = 0.2860
#: Standard deviation of the training images' pixels (after ``ToTensor()``).
FASHION_MNIST_STD: Final = 0.3530

#: The data pipelines :func:`~fashionmlp.make_loaders` can build.
Backend = Literal["torchvision", "tensor"]
Batch = tuple[torch.Tensor, torch.Tensor]


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
    """Batches from a :class:`FashionMNISTTensors` made with tensor ops, on its device.

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
        normalize: ``(mean, std)`` to subtract and divide by, or ``None``.
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
        normalize: tuple[float, float] | None = None,
        shard: tuple[int, int] | None = None,
    ) -> None:
        _check_positive("batch_size", batch_size)
        if shard is not None and not 0 <= shard[0] < shard[1]:
            raise InvalidArgumentError(
                f"shard must be (rank, world_size) with 0 <= rank < world_size, got {shard}"
            )
        device = dataset.data.device
        if generator is None:
            # Like DataLoader: an unseeded loader draws its seed from the global RNG.
            seed = int(torch.empty((), dtype=torch.int64).random_().item())
            generator = torch.Generator(device=device).manual_seed(seed)
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

    def __iter__(self) -> Iterator[Batch]:
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
            if self.normalize is not None:
                x = standardize(x, *self.normalize)
            yield x, labels


def pixels_to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels as float32 in ``[0, 1]``, bitwise what ``ToTensor()`` makes of them.

    The same arithmetic as ``ToTensor()``: convert to float32, then divide by 255.

    Example:
        >>> from fashionmlp.loaders import pixels_to_float
        >>> pixels_to_float(torch.tensor([0, 51, 255], dtype=torch.uint8))
        tensor([0.0000, 0.2000, 1.0000])
    """
    return images.to(torch.float32).div(255)


#: What :func:`~fashionmlp.make_loaders` returns for either backend.
Loader = Union[DataLoader[Any], TensorLoader]


class Loaders(NamedTuple):
    """The pair :func:`~fashionmlp.make_loaders` returns; unpacks as ``train, test = loaders``."""

    train: Loader
    test: Loader


class Split(NamedTuple):
    """One split's images and labels, as read and checked from the files."""

    #: uint8 ``(N, 28, 28)`` images.
    images: torch.Tensor
    #: int64 ``(N,)`` labels.
    labels: torch.Tensor


def select_splits(
    root: str | os.PathLike[str] | None = None,
    *,
    download: bool = False,
    limit: int | None = None,
    validation_size: int = 0,
) -> tuple[Split, Split]:
    """The ``(train, evaluation)`` samples that :func:`~fashionmlp.make_loaders` serves.

    Reads each split's files once (see :func:`~fashionmlp.data.load_split`). The evaluation
    split is the test set, or, with ``validation_size``, that many held-out training images
    (:func:`validation_split`; the test set is then never read). ``limit`` keeps the first
    ``limit`` samples of each.
    """
    root = root if root is not None else default_data_root()
    train = Split(*load_split(root, "train", download=download))
    if validation_size:
        kept, held_out = validation_split(train.labels, validation_size)
        evaluation = Split(train.images[held_out], train.labels[held_out])
        train = Split(train.images[kept], train.labels[kept])
    else:
        evaluation = Split(*load_split(root, "test", download=download))
    if limit is not None:
        train, evaluation = (Split(s.images[:limit], s.labels[:limit]) for s in (train, evaluation))
    return train, evaluation


def make_loaders(
    root: str | os.PathLike[str] | None = None,
    batch_size: int = 64,
    *,
    download: bool = False,
    seed: int | None = None,
    backend: Backend = "torchvision",
    device: torch.device | str | None = None,
    test_batch_size: int | None = None,
    drop_last: bool = False,
    augment: Augment | None = None,
    normalize: bool | tuple[float, float] = False,
    num_workers: int = 0,
    limit: int | None = None,
    validation_size: int = 0,
) -> Loaders:
    """Make the train and test loaders for FashionMNIST under ``root``.

    The default backend is the seed's pipeline: ``torchvision.datasets.FashionMNIST`` with
    ``ToTensor()`` in a ``torch.utils.data.DataLoader``, the training set shuffled and the
    test set not. ``backend="tensor"`` keeps each split as one tensor on ``device`` and
    yields bitwise-equal batches many times faster (see :class:`TensorLoader`). Either way
    the files are found or fetched by :func:`~fashionmlp.prepare_dataset` and checked
    before use, and each split's files are read once.

    Args:
        root: Data folder (see :func:`~fashionmlp.prepare_dataset` for its layout); default
            :func:`~fashionmlp.default_data_root`.
        batch_size: Samples per training batch (the seed's 64).
        download: Allow torchvision's download when no local copy exists.
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
        normalize: ``True`` for FashionMNIST's mean and standard deviation, or a
            ``(mean, std)`` pair; applied to both splits. Off by default, as in the seed.
        num_workers: Worker processes per loader (torchvision backend; the seed uses 0).
        limit: Use only the first ``limit`` samples of each split (for quick runs).
        validation_size: When above 0, hold out this many training images as a validation
            split (see :func:`~fashionmlp.loaders.validation_split`) and return it
            *in place of the test set*
            as the second loader; the first loader then trains on the rest. This is how
            to choose hyperparameters without looking at the test set.

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
    _check_positive("batch_size", batch_size)
    if test_batch_size is not None:
        _check_positive("test_batch_size", test_batch_size)
    if limit is not None:
        _check_positive("limit", limit)
    if num_workers < 0:
        raise InvalidArgumentError(f"num_workers must be 0 or more, got {num_workers}")
    if not 0 <= validation_size < 60_000:
        raise InvalidArgumentError(
            f"validation_size must be between 0 and 59999 training images, got {validation_size}"
        )
    if backend not in ("torchvision", "tensor"):
        raise InvalidArgumentError(f"unknown backend {backend!r}; use 'torchvision' or 'tensor'")
    if augment is not None and backend != "tensor":
        raise InvalidArgumentError("augment needs backend='tensor'")
    target = resolve_device(device) if device is not None else torch.device("cpu")
    mean_std = _mean_std(normalize)
    train, evaluation = select_splits(
        root, download=download, limit=limit, validation_size=validation_size
    )
    shard = (distributed.rank(), distributed.world_size()) if distributed.is_distributed() else None
    if backend == "tensor":
        return _tensor_loaders(
            train,
            evaluation,
            batch_size=batch_size,
            test_batch_size=test_batch_size,
            seed=seed,
            device=target,
            drop_last=drop_last,
            augment=augment,
            normalize=mean_std,
            shard=shard,
        )
    return _torchvision_loaders(
        root if root is not None else default_data_root(),
        train,
        evaluation,
        batch_size=batch_size,
        test_batch_size=test_batch_size,
        seed=seed,
        device=target,
        drop_last=drop_last,
        normalize=mean_std,
        num_workers=num_workers,
        shard=shard,
        evaluation_is_test=validation_size == 0,
    )


def _tensor_loaders(
    train: Split,
    evaluation: Split,
    *,
    batch_size: int,
    test_batch_size: int | None,
    seed: int | None,
    device: torch.device,
    drop_last: bool,
    augment: Augment | None,
    normalize: tuple[float, float] | None,
    shard: tuple[int, int] | None,
) -> Loaders:
    generator = torch.Generator(device=device)
    generator.manual_seed(
        seed if seed is not None else int(torch.empty((), dtype=torch.int64).random_().item())
    )
    train_set = FashionMNISTTensors(train.images.to(device), train.labels.to(device))
    test_set = FashionMNISTTensors(evaluation.images.to(device), evaluation.labels.to(device))
    return Loaders(
        TensorLoader(
            train_set,
            batch_size,
            shuffle=True,
            drop_last=drop_last,
            generator=generator,
            augment=augment,
            normalize=normalize,
            shard=shard,
        ),
        TensorLoader(test_set, test_batch_size or len(test_set), normalize=normalize, shard=shard),
    )


def _torchvision_loaders(
    root: str | os.PathLike[str],
    train: Split,
    evaluation: Split,
    *,
    batch_size: int,
    test_batch_size: int | None,
    seed: int | None,
    device: torch.device,
    drop_last: bool,
    normalize: tuple[float, float] | None,
    num_workers: int,
    shard: tuple[int, int] | None,
    evaluation_is_test: bool,
) -> Loaders:
    from torchvision import transforms

    steps: list[Any] = [transforms.ToTensor()]
    if normalize is not None:
        steps.append(transforms.Normalize((normalize[0],), (normalize[1],)))
    transform = transforms.Compose(steps)
    if shard is not None:
        # Evaluation takes a rank-strided slice without padding, so every sample counts once.
        rank, world = shard
        evaluation = Split(evaluation.images[rank::world], evaluation.labels[rank::world])
    train_set = _torchvision_dataset(root, train, is_train=True, transform=transform)
    eval_set = _torchvision_dataset(
        root, evaluation, is_train=not evaluation_is_test, transform=transform
    )
    sampler: DistributedSampler[Any] | None = None
    if shard is not None:
        # DistributedSampler reshuffles from the epoch number (train_epoch calls set_epoch).
        sampler = DistributedSampler(train_set, seed=seed or 0, drop_last=drop_last)
    pin_memory = device.type == "cuda"
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
            eval_set,
            batch_size=test_batch_size or batch_size,
            num_workers=num_workers,
            pin_memory=pin_memory,
        ),
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


def validation_split(labels: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split sample indices into ``(train, validation)``, stratified and always the same.

    The validation part takes ``size // 10`` images of every class (the remainder from
    the first classes), drawn by a generator seeded with 0 whatever the run's seed, so
    every run that holds out ``size`` images holds out the same ones and tuning compares
    like with like. Both index tensors are sorted.

    Example:
        >>> from fashionmlp.loaders import validation_split
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


def _mean_std(normalize: bool | tuple[float, float]) -> tuple[float, float] | None:
    if normalize is True:
        return (FASHION_MNIST_MEAN, FASHION_MNIST_STD)
    if normalize is False:
        return None
    mean, std = normalize
    if not std > 0:
        raise InvalidArgumentError(f"normalize std must be above 0, got {std}")
    return (float(mean), float(std))


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"{name} must be a whole number of at least 1, got {value!r}")
