from __future__ import annotations

import pytest
import torch

from fashionmlp import DeviceError, FashionMLP
from fashionmlp.devices import model_device, resolve_device


def test_cpu_and_auto() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    expected = (
        "cuda"
        if torch.cuda.is_available()
        else ("mps" if torch.backends.mps.is_available() else "cpu")
    )
    assert resolve_device().type == expected


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "cuda:-1", "tpu", ""])
def test_unknown_names_list_the_valid_ones(name: str) -> None:
    with pytest.raises(DeviceError, match="cpu, cuda, cuda:N, mps or auto"):
        resolve_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_missing_cuda_is_named_with_the_fix(name: str) -> None:
    with pytest.raises(ValueError, match="CUDA is not available.*use cpu or auto"):
        resolve_device(name)


def test_model_device() -> None:
    assert model_device(FashionMLP()) == torch.device("cpu")
    assert model_device(torch.nn.ReLU()) == torch.device("cpu")
