"""Shared fixtures: the real dataset, and small synthetic loaders."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from fashionmlp import DatasetNotFoundError, default_data_root, prepare_dataset
from fashionmlp.data import raw_folder


@pytest.fixture(scope="session")
def real_data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root holding the real FashionMNIST; in CI its absence fails the test.

    Uses the user's own copy when it is complete (read only), else lays the Debian
    package's files out in a temporary root.
    """
    user_root = default_data_root()
    names = (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    )
    if all((raw_folder(user_root) / name).is_file() for name in names):
        return user_root
    root = tmp_path_factory.mktemp("fashion-mnist")
    try:
        prepare_dataset(root)
    except DatasetNotFoundError as exc:
        message = f"the real FashionMNIST is needed: {exc}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return root


def synthetic_loader(
    samples: int, batch_size: int, *, seed: int = 0
) -> DataLoader[tuple[torch.Tensor, ...]]:
    """A DataLoader over random images and labels, for tests that need no real data."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(samples, 1, 28, 28, generator=generator)
    labels = torch.randint(0, 10, (samples,), generator=generator)
    return DataLoader(TensorDataset(images, labels), batch_size=batch_size)


@pytest.fixture
def item_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records each ``Tensor.item()`` called from fashionmlp's own code (a device read).

    DataLoader calls ``item()`` on a CPU tensor for its worker seed; that is no device
    sync and is not counted.
    """
    reads: list[str] = []
    original = torch.Tensor.item

    def counting_item(self: torch.Tensor) -> Any:
        caller = sys._getframe(1).f_code.co_filename
        if f"{os.sep}fashionmlp{os.sep}" in caller:
            reads.append(caller)
        return original(self)

    monkeypatch.setattr(torch.Tensor, "item", counting_item)
    return reads


def interruptible_run_options(data_root: Path) -> list[str]:
    """``fashionmlp train`` options for the interruption tests.

    The seed's recipe on the tensor backend: epochs of 400 small batches, long enough for a
    signal to land mid-epoch, short enough for the suite.
    """
    return [
        "--recipe",
        "seed",
        "--backend",
        "tensor",
        "--epochs",
        "3",
        "--limit",
        "25600",
        "--seed",
        "8",
        "--device",
        "cpu",
        "--no-plots",
        "--data-root",
        str(data_root),
    ]
