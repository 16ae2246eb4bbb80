from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

import seed_code
from conftest import synthetic_loader
from fashionmlp import (
    Augment,
    DatasetError,
    FashionMLP,
    InvalidArgumentError,
    evaluate,
    make_loaders,
    train_epoch,
)
from fashionmlp.config import (
    FASHION_MNIST_MEAN,
    FASHION_MNIST_NORMALIZATION,
    FASHION_MNIST_STD,
)
from fashionmlp.data import FashionMNISTTensors, TensorLoader, load_split, validation_split
from strategies import batch_sizes


def tensors(samples: int, *, seed: int = 0) -> FashionMNISTTensors:
    generator = torch.Generator().manual_seed(seed)
    return FashionMNISTTensors(
        torch.randint(0, 256, (samples, 28, 28), dtype=torch.uint8, generator=generator),
        torch.randint(0, 10, (samples,), generator=generator),
    )


# --- the torchvision backend: the seed's pipeline ---------------------------------------


@pytest.mark.real_data
def test_loaders_are_the_seeds_torchvision_pipeline(real_data_root: Path) -> None:
    train, test = make_loaders(real_data_root, 64)
    assert isinstance(train, DataLoader) and isinstance(train.dataset, datasets.FashionMNIST)
    assert len(train.dataset) == 60_000 and len(test.dataset) == 10_000
    assert len(train) == 938 and len(test) == 157 and train.batch_size == 64
    x, y = next(iter(test))
    assert x.shape == (64, 1, 28, 28) and x.dtype == torch.float32
    assert y.shape == (64,) and y.dtype == torch.int64
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    reference = datasets.FashionMNIST(
        str(real_data_root), train=False, transform=transforms.ToTensor()
    )
    assert torch.equal(x[3], reference[3][0]) and int(y[3]) == reference[3][1]  # not shuffled


@pytest.mark.real_data
@pytest.mark.parametrize("backend", ["torchvision", "tensor"])
def test_seed_makes_the_shuffle_reproducible(real_data_root: Path, backend: Any) -> None:
    def first_labels(seed: int) -> list[int]:
        train, _ = make_loaders(real_data_root, 64, seed=seed, backend=backend)
        return next(iter(train))[1].tolist()

    assert first_labels(1) == first_labels(1)
    assert first_labels(1) != first_labels(2)


@pytest.mark.real_data
def test_limit_takes_the_first_samples(real_data_root: Path) -> None:
    train, test = make_loaders(real_data_root, 100, limit=250, test_batch_size=1000)
    assert (len(train.dataset), len(train)) == (250, 3)
    assert (len(test.dataset), len(test)) == (250, 1)
    images, labels = load_split(real_data_root, "test")
    assert images.shape == (10_000, 28, 28) and labels.shape == (10_000,)
    assert torch.bincount(labels).tolist() == [1000] * 10


@pytest.fixture
def corrupt_root(real_data_root: Path, tmp_path: Path) -> Path:
    """A copy of the real dataset whose test labels hold an 11."""
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for source in (real_data_root / "FashionMNIST" / "raw").iterdir():
        if not source.name.endswith(".gz"):
            (raw / source.name).write_bytes(source.read_bytes())
    labels = bytearray((raw / "t10k-labels-idx1-ubyte").read_bytes())
    labels[-1] = 11
    (raw / "t10k-labels-idx1-ubyte").write_bytes(bytes(labels))
    return tmp_path


@pytest.mark.real_data
@pytest.mark.parametrize("backend", ["torchvision", "tensor"])
def test_both_backends_refuse_a_corrupt_file_naming_it(corrupt_root: Path, backend: Any) -> None:
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte: holds label 11"):
        make_loaders(corrupt_root, backend=backend)


@pytest.mark.real_data
def test_the_command_line_refuses_a_corrupt_file_in_one_line(
    corrupt_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fashionmlp.cli import main

    assert main(["train", "--data-root", str(corrupt_root), "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "holds label 11" in err


@pytest.mark.real_data
@pytest.mark.parametrize("backend", ["torchvision", "tensor"])
def test_a_validation_split_replaces_the_test_set(real_data_root: Path, backend: Any) -> None:
    train, held_out = make_loaders(
        real_data_root, 1000, backend=backend, validation_size=5000, test_batch_size=1000
    )
    assert len(train.dataset) == 55_000 and len(held_out.dataset) == 5000
    images, labels = load_split(real_data_root, "train")
    _, index = validation_split(labels, 5000)
    x, y = (torch.cat(parts) for parts in zip(*held_out))
    assert torch.equal(y, labels[index]) and torch.bincount(y).tolist() == [500] * 10
    assert torch.equal(x[:, 0], images[index].float() / 255)


def test_validation_split_is_stratified_disjoint_and_fixed() -> None:
    labels = torch.arange(1000) % 10
    train, held_out = validation_split(labels, 105)
    assert len(held_out) == 105 and len(train) == 895
    assert set(train.tolist()).isdisjoint(held_out.tolist())
    assert sorted(train.tolist() + held_out.tolist()) == list(range(1000))
    assert torch.bincount(labels[held_out]).tolist() == [11] * 5 + [10] * 5
    assert torch.equal(held_out, validation_split(labels, 105)[1])
    with pytest.raises(InvalidArgumentError, match="only 100"):
        validation_split(labels, 1020)


@pytest.mark.parametrize(
    "arguments",
    [
        {"batch_size": 0},
        {"batch_size": -3},
        {"batch_size": True},
        {"batch_size": 2.5},
        {"test_batch_size": 0},
        {"limit": 0},
        {"num_workers": -1},
        {"backend": "magic"},
        {"augment": Augment(hflip=True)},
        {"device": "tpu"},
        {"normalize": (0.5, 0.0)},
        {"validation_size": -1},
        {"validation_size": 60_000},
    ],
)
def test_bad_arguments_are_refused_before_any_work(
    tmp_path: Path, arguments: dict[str, object]
) -> None:
    with pytest.raises(InvalidArgumentError):
        make_loaders(tmp_path, **arguments)  # type: ignore[arg-type]
    assert not (tmp_path / "FashionMNIST").exists()


# --- the tensor backend: the same batches, made on the device ---------------------------


@pytest.mark.real_data
def test_tensor_batches_are_bitwise_equal_to_totensor_in_the_same_order(
    real_data_root: Path,
) -> None:
    _, seed_test = make_loaders(real_data_root, 64)
    _, fast_test = make_loaders(real_data_root, 64, backend="tensor", test_batch_size=64)
    assert len(seed_test) == len(fast_test) == 157
    for (xa, ya), (xb, yb) in zip(seed_test, fast_test, strict=True):
        assert xa.dtype == xb.dtype == torch.float32 and ya.dtype == yb.dtype == torch.int64
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    reference = datasets.FashionMNIST(
        str(real_data_root), train=True, transform=transforms.ToTensor()
    )
    images, labels = load_split(real_data_root, "train")
    fast_set = FashionMNISTTensors(images, labels)
    for index in (0, 1, 31_337, 59_999):
        assert torch.equal(fast_set[index][0], reference[index][0])
        assert fast_set[index][1] == reference[index][1]


@pytest.mark.real_data
def test_one_epoch_from_the_same_start_gives_the_same_weights(real_data_root: Path) -> None:
    seed_train, _ = make_loaders(real_data_root, 64, limit=6400)
    images, labels = load_split(real_data_root, "train")
    fast_train = TensorLoader(FashionMNISTTensors(images[:6400], labels[:6400]), 64)
    seed_order = DataLoader(seed_train.dataset, batch_size=64)  # the same order: unshuffled
    torch.manual_seed(0)
    start = FashionMLP().state_dict()
    weights = []
    for loader in (seed_order, fast_train):
        model = FashionMLP()
        model.load_state_dict(start)
        train_epoch(
            loader, model, nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.01)
        )
        weights.append(model.state_dict())
    for name in start:
        assert torch.equal(weights[0][name], weights[1][name]), name


def test_it_behaves_like_a_dataloader() -> None:
    data = tensors(130)
    loader = TensorLoader(data, 32, shuffle=True, generator=torch.Generator().manual_seed(0))
    assert (len(loader), len(loader.dataset), loader.batch_size, loader.drop_last) == (
        5,
        130,
        32,
        False,
    )
    epochs = [torch.cat([y for _, y in loader]) for _ in range(2)]
    assert [len(x) for x, _ in loader] == [32, 32, 32, 32, 2]
    assert all(sorted(e.tolist()) == sorted(data.targets.tolist()) for e in epochs)  # each once
    assert not torch.equal(epochs[0], epochs[1])  # reshuffled every epoch
    dropping = TensorLoader(data, 32, drop_last=True)
    assert len(dropping) == 4 and [len(x) for x, _ in dropping] == [32] * 4
    unshuffled = torch.cat([y for _, y in TensorLoader(data, 50)])
    assert torch.equal(unshuffled, data.targets)


@settings(max_examples=30, deadline=None)
@given(samples=st.integers(1, 150), batch_size=st.integers(1, 64), drop_last=st.booleans())
def test_batch_counts_match_dataloader(samples: int, batch_size: int, drop_last: bool) -> None:
    data = tensors(samples)
    ours = TensorLoader(data, batch_size, shuffle=True, drop_last=drop_last)
    theirs = DataLoader(data, batch_size=batch_size, shuffle=True, drop_last=drop_last)
    assert len(ours) == len(theirs) == len(list(ours))
    assert [len(y) for _, y in ours] == [len(y) for _, y in theirs]


@pytest.mark.real_data
def test_the_seeds_own_training_function_runs_unchanged_on_it(
    real_data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train, _ = make_loaders(real_data_root, 64, backend="tensor", seed=0, limit=6464)
    model = FashionMLP()
    seed_code.training(
        train, model, nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.01)
    )
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].endswith("[0/6464]") and lines[1].endswith("[6400/6464]")


@pytest.mark.real_data
def test_the_test_loader_evaluates_in_one_large_chunk(real_data_root: Path) -> None:
    _, test = make_loaders(real_data_root, 64, backend="tensor")
    assert len(test) == 1 and test.batch_size == 10_000
    assert evaluate(test, FashionMLP()).total == 10_000


def test_generator_must_be_on_the_datas_device() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a second device type to mismatch")
    with pytest.raises(InvalidArgumentError, match="generator"):
        TensorLoader(tensors(4), 2, generator=torch.Generator(device="cuda"))


def test_tensors_dataset_checks_its_inputs() -> None:
    with pytest.raises(InvalidArgumentError, match="uint8"):
        FashionMNISTTensors(torch.zeros(3, 28, 28), torch.zeros(3))
    with pytest.raises(InvalidArgumentError, match="targets"):
        FashionMNISTTensors(torch.zeros(3, 28, 28, dtype=torch.uint8), torch.zeros(4))


# --- augmentation and normalization ------------------------------------------------------


def _shifted(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``image`` (28, 28) moved down by dy and right by dx, zero-filled."""
    out = torch.zeros_like(image)
    rows, cols = slice(max(dy, 0), 28 + min(dy, 0)), slice(max(dx, 0), 28 + min(dx, 0))
    src_rows, src_cols = slice(max(-dy, 0), 28 + min(-dy, 0)), slice(max(-dx, 0), 28 + min(-dx, 0))
    out[rows, cols] = image[src_rows, src_cols]
    return out


@settings(max_examples=25, deadline=None)
@given(batch=batch_sizes, k=st.integers(0, 3), hflip=st.booleans(), seed=st.integers(0, 2**16))
def test_augment_gives_shifted_or_mirrored_copies_of_each_image(
    batch: int, k: int, hflip: bool, seed: int
) -> None:
    x = torch.rand(batch, 1, 28, 28, generator=torch.Generator().manual_seed(seed))
    out = Augment(hflip=hflip, translate=k)(x, torch.Generator().manual_seed(seed))
    assert out.shape == x.shape and out.dtype == x.dtype
    for original, augmented in zip(x[:, 0], out[:, 0]):
        candidates = [original, original.flip(1)] if hflip else [original]
        assert any(
            torch.equal(augmented, _shifted(image, dy, dx))
            for image in candidates
            for dy, dx in itertools.product(range(-k, k + 1), repeat=2)
        )


def test_augment_is_random_per_image_and_reproducible() -> None:
    x = torch.rand(256, 1, 28, 28)
    augment = Augment(hflip=True, translate=2)
    first = augment(x, torch.Generator().manual_seed(1))
    assert torch.equal(first, augment(x, torch.Generator().manual_seed(1)))
    unchanged = sum(torch.equal(a, b) for a, b in zip(first, x))
    assert 0 < unchanged < 256 // 4  # some left alone (no shift, no flip), most changed
    with pytest.raises(InvalidArgumentError, match="translate"):
        Augment(translate=28)


@pytest.mark.real_data
def test_augmentation_applies_to_training_batches_only(real_data_root: Path) -> None:
    plain_train, _ = make_loaders(real_data_root, 64, backend="tensor", seed=5, limit=640)
    train, test = make_loaders(
        real_data_root,
        64,
        backend="tensor",
        seed=5,
        limit=640,
        augment=Augment(hflip=True, translate=2),
    )
    assert isinstance(train, TensorLoader) and isinstance(test, TensorLoader)
    assert train.augment is not None and test.augment is None
    (xa, ya), (xb, yb) = next(iter(plain_train)), next(iter(train))
    assert torch.equal(ya, yb) and not torch.equal(xa, xb)


@pytest.mark.real_data
def test_normalize_matches_torchvision_normalize(real_data_root: Path) -> None:
    _, seed_test = make_loaders(real_data_root, 500, normalize=FASHION_MNIST_NORMALIZATION)
    _, fast_test = make_loaders(
        real_data_root,
        500,
        backend="tensor",
        normalize=FASHION_MNIST_NORMALIZATION,
        test_batch_size=500,
    )
    (xa, _), (xb, _) = next(iter(seed_test)), next(iter(fast_test))
    assert torch.equal(xa, xb)
    images, _ = load_split(real_data_root, "train")
    pixels = images.double() / 255
    assert FASHION_MNIST_MEAN == pytest.approx(float(pixels.mean()), abs=1e-4)
    assert FASHION_MNIST_STD == pytest.approx(float(pixels.std()), abs=1e-4)


# --- speed opt-ins, exercised on the CPU ---------------------------------------------------


def test_bf16_autocast_trains_and_evaluates() -> None:
    model = FashionMLP(hidden_features=32)
    dtypes: list[torch.dtype] = []
    model.register_forward_hook(lambda module, args, output: dtypes.append(output.dtype))
    loader = synthetic_loader(128, 32)
    stats = train_epoch(
        loader,
        model,
        nn.CrossEntropyLoss(),
        torch.optim.SGD(model.parameters(), lr=0.1),
        autocast=torch.bfloat16,
    )
    result = evaluate(loader, model, nn.CrossEntropyLoss(), autocast=torch.bfloat16)
    assert set(dtypes) == {torch.bfloat16}
    assert math.isfinite(stats.loss) and result.loss is not None and math.isfinite(result.loss)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # weights stay float32


def test_a_compiled_model_trains_and_evaluates() -> None:
    model = FashionMLP(hidden_features=16)
    compiled: Any = torch.compile(model, backend="aot_eager", dynamic=False)
    loader = synthetic_loader(128, 32)
    before = model.fc1.weight.detach().clone()
    stats = train_epoch(
        loader,
        compiled,
        nn.CrossEntropyLoss(),
        torch.optim.SGD(compiled.parameters(), lr=0.1),
        non_blocking=True,
    )
    assert stats.batches == 4 and not torch.equal(before, model.fc1.weight)
    assert evaluate(loader, compiled).total == 128


@pytest.mark.real_data
def test_without_a_root_the_default_data_root_is_used(
    real_data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FASHIONMLP_DATA", str(real_data_root))
    for backend in ("torchvision", "tensor"):
        train, test = make_loaders(limit=10, backend=backend)  # type: ignore[arg-type]
        assert len(train.dataset) == len(test.dataset) == 10
