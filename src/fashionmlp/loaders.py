"""Train and evaluation loaders over the loaded dataset: the seed's torchvision pipeline, or
the dataset on the device.

Two backends give the same batches, ``x`` float32 ``(B, 1, 28, 28)`` in ``[0, 1]`` and ``y``
int64 ``(B,)``:

``"torchvision"``
    The seed's pipeline: ``datasets.FashionMNIST`` with ``ToTensor()`` in a
    ``DataLoader``. Each sample goes through PIL and back, one at a time, in Python.
``"tensor"``
    Each split decoded once into one uint8 tensor on the target device; a batch is one
    index gather and one division, bitwise equal to what ``ToTensor()`` gives for the same
    samples (:class:`~fashionmlp.tensor_loader.TensorLoader`). Shuffling, augmentation and
    normalization are tensor ops on the device.

Both serve the splits :func:`select_splits` chooses from the loaded data
(:func:`~fashionmlp.load_dataset`), so runs that pass the same data read no file again.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple, Union

import torch
from torch.utils.data import DataLoader, DistributedSampler

from . import devices
from .augment import Augment
from .data import Split, Splits, default_data_root, load_dataset
from .devices import resolve_device
from .errors import InvalidArgumentError
from .config import NO_NORMALIZATION, NUM_CLASSES
from .config import Backend
from .tensor_loader import FashionMNISTTensors, TensorLoader, check_positive

__all__ = ["Loader", "Loaders", "make_loaders", "select_splits", "validation_split"]

#: What :func:`~fashionmlp.make_loaders` returns for either backend.
Loader = Union[DataLoader[Any], TensorLoader]


class Loaders(NamedTuple):
    """The pair :func:`~fashionmlp.make_loaders` returns; unpacks as ``train, test = loaders``."""

    train: Loader
    test: Loader


def select_splits(
    data: Splits, *, limit: int | None = None, validation_size: int = 0
) -> tuple[Split, Split]:
    """The ``(train, evaluation)`` samples that :func:`~fashionmlp.make_loaders` serves.

    The evaluation split is the test set, or, with ``validation_size``, that many held-out
    training images (:func:`validation_split`; the test set is then not needed). ``limit``
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
        train, evaluation = (Split(s.images[:limit], s.labels[:limit]) for s in (train, evaluation))
    return train, evaluation


def make_loaders(
    root: str | os.PathLike[str] | None = None,
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
    """Make the train and test loaders for FashionMNIST under ``root``.

    The default backend is the seed's pipeline: ``torchvision.datasets.FashionMNIST`` with
    ``ToTensor()`` in a ``torch.utils.data.DataLoader``, the training set shuffled and the
    test set not. ``backend="tensor"`` keeps each split as one tensor on ``device`` and
    yields bitwise-equal batches many times faster (see
    :class:`~fashionmlp.tensor_loader.TensorLoader`). Either way the files are found or
    fetched by :func:`~fashionmlp.data.prepare_dataset` and checked before use, each read
    once, unless ``data`` is given: then none is read.

    Args:
        root: Data folder (see :func:`~fashionmlp.data.prepare_dataset` for its layout); default
            :func:`~fashionmlp.default_data_root`.
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
            :data:`~fashionmlp.model_config.FASHION_MNIST_NORMALIZATION`); ``(0.0, 1.0)``,
            the default as in the seed, leaves them as they are.
        num_workers: Worker processes per loader (torchvision backend; the seed uses 0).
        limit: Use only the first ``limit`` samples of each split (for quick runs).
        validation_size: When above 0, hold out this many training images as a validation
            split (see :func:`~fashionmlp.loaders.validation_split`) and return it
            *in place of the test set* as the second loader; the first loader then trains
            on the rest, and the test files are not read. This is how to choose
            hyperparameters without looking at the test set.

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
    _check_options(
        batch_size, test_batch_size, limit, num_workers, validation_size, backend, augment
    )
    mean_std = _mean_std(normalize)
    target = resolve_device(device) if device is not None else torch.device("cpu")
    if data is None:
        data = load_dataset(root, download=download, test=validation_size == 0)
    train, evaluation = select_splits(data, limit=limit, validation_size=validation_size)
    shard = (devices.rank(), devices.world_size()) if devices.is_distributed() else None
    options: dict[str, Any] = {
        "batch_size": batch_size,
        "test_batch_size": test_batch_size,
        "seed": seed,
        "device": target,
        "drop_last": drop_last,
        "normalize": mean_std,
        "shard": shard,
    }
    if backend == "tensor":
        return _tensor_loaders(train, evaluation, augment=augment, **options)
    root = root if root is not None else default_data_root()
    evaluation_is_test = validation_size == 0
    return _torchvision_loaders(
        root, train, evaluation, num_workers=num_workers, test=evaluation_is_test, **options
    )


def _check_options(
    batch_size: int,
    test_batch_size: int | None,
    limit: int | None,
    num_workers: int,
    validation_size: int,
    backend: str,
    augment: Augment | None,
) -> None:
    check_positive("batch_size", batch_size)
    if test_batch_size is not None:
        check_positive("test_batch_size", test_batch_size)
    if limit is not None:
        check_positive("limit", limit)
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
    normalize: tuple[float, float],
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
    normalize: tuple[float, float],
    num_workers: int,
    shard: tuple[int, int] | None,
    test: bool,
) -> Loaders:
    from torchvision import transforms

    steps: list[Any] = [transforms.ToTensor()]
    if normalize != NO_NORMALIZATION:
        steps.append(transforms.Normalize((normalize[0],), (normalize[1],)))
    transform = transforms.Compose(steps)
    if shard is not None:
        # Evaluation takes a rank-strided slice without padding, so every sample counts once.
        rank, world = shard
        evaluation = Split(evaluation.images[rank::world], evaluation.labels[rank::world])
    train_set = _torchvision_dataset(root, train, is_train=True, transform=transform)
    eval_set = _torchvision_dataset(root, evaluation, is_train=not test, transform=transform)
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


def _mean_std(normalize: tuple[float, float]) -> tuple[float, float]:
    try:
        mean, std = (float(value) for value in normalize)
    except (TypeError, ValueError):
        raise InvalidArgumentError(
            f"normalize must be (mean, std), got {normalize!r}; (0.0, 1.0) leaves the input "
            "as it is"
        ) from None
    if not std > 0:
        raise InvalidArgumentError(f"normalize std must be above 0, got {std}")
    return (mean, std)
