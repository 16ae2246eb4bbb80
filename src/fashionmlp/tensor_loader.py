"""The tensor backend: each split held as one tensor on the device, batches made by slicing.

A batch is one slice of an epoch's single gather and one division, bitwise equal to what
``ToTensor()`` gives for the same samples; shuffling, augmentation and normalization are
tensor ops on the device.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import Dataset

from .augment import Augment
from .errors import InvalidArgumentError
from .model import standardize
from .config import CLASSES, IMAGE_SIZE, NO_NORMALIZATION

__all__ = ["FashionMNISTTensors", "TensorLoader", "check_positive", "pixels_to_float"]

Batch = tuple[torch.Tensor, torch.Tensor]


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
    """Batches from a :class:`~fashionmlp.tensor_loader.FashionMNISTTensors` made with
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
            if self.normalize != NO_NORMALIZATION:
                x = standardize(x, *self.normalize)
            yield x, labels


def pixels_to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels as float32 in ``[0, 1]``, bitwise what ``ToTensor()`` makes of them.

    The same arithmetic as ``ToTensor()``: convert to float32, then divide by 255.

    Example:
        >>> from fashionmlp.tensor_loader import pixels_to_float
        >>> pixels_to_float(torch.tensor([0, 51, 255], dtype=torch.uint8))
        tensor([0.0000, 0.2000, 1.0000])
    """
    return images.to(torch.float32).div(255)


def check_positive(name: str, value: int) -> None:
    """Refuse ``value`` unless it is a whole number of at least 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"{name} must be a whole number of at least 1, got {value!r}")
