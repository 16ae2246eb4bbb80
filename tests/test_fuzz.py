"""Random and mutated bytes as dataset files and as images: only our errors, never a crash.

Each property runs a few hundred examples; every example is small, so the whole module
takes seconds. The deadline only catches a hang: it is far above what any example takes,
even on a busy machine (one took 2.2 s there).
"""

from __future__ import annotations

import gzip
import io
import json
import tempfile
from pathlib import Path

import torch
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from fashionmlp import (
    CheckpointError,
    DatasetError,
    FashionMLP,
    FashionMLPError,
    ImageError,
    load_checkpoint,
    load_image,
    save_checkpoint,
)
from fashionmlp.data import read_idx
from idx_files import idx_bytes

FUZZ = settings(
    max_examples=300, deadline=20_000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

VALID_IMAGES = idx_bytes(torch.randint(0, 256, (4, 28, 28), dtype=torch.uint8))
VALID_LABELS = idx_bytes(torch.tensor([0, 9, 4, 2], dtype=torch.uint8))


@st.composite
def mutated(draw: st.DrawFn, valid: bytes) -> bytes:
    """``valid`` with some bytes changed, then perhaps cut short or extended."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 8))):
        position = draw(st.integers(0, len(data) - 1))
        data[position] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(data)))
    tail = draw(st.binary(max_size=64))
    return bytes(data[:cut]) + tail if draw(st.booleans()) else bytes(data)


def idx_candidates() -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=4096), mutated(VALID_IMAGES), mutated(VALID_LABELS))


def _check_idx(path: Path, data: bytes, compress: bool) -> None:
    path.write_bytes(gzip.compress(data) if compress else data)
    for kind in ("images", "labels"):
        try:
            values = read_idx(path, kind)  # type: ignore[arg-type]
        except DatasetError:
            continue
        assert values.dtype == (torch.uint8 if kind == "images" else torch.int64)


@FUZZ
@given(data=idx_candidates(), compress=st.booleans())
def test_fuzzed_idx_files_raise_only_dataset_errors(
    tmp_path: Path, data: bytes, compress: bool
) -> None:
    _check_idx(tmp_path / ("f.gz" if compress else "f"), data, compress)


@FUZZ
@given(data=st.one_of(st.binary(max_size=512), mutated(gzip.compress(VALID_LABELS))))
def test_fuzzed_gzip_streams_raise_only_dataset_errors(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "f.gz"
    path.write_bytes(data)
    for kind in ("images", "labels"):
        try:
            read_idx(path, kind)  # type: ignore[arg-type]
        except DatasetError:
            pass


def _encoded(fmt: str, mode: str) -> bytes:
    buffer = io.BytesIO()
    image = Image.new("RGB", (23, 17), "white")
    image.paste((10, 80, 200), (5, 5, 15, 12))
    image.convert(mode).save(buffer, format=fmt)
    return buffer.getvalue()


SAMPLES = [
    _encoded("PNG", "RGBA"),
    _encoded("PNG", "P"),
    _encoded("PNG", "I;16"),
    _encoded("JPEG", "RGB"),
    _encoded("JPEG", "CMYK"),
    _encoded("GIF", "P"),
    _encoded("BMP", "RGB"),
]


@FUZZ
@given(
    data=st.one_of(
        st.binary(max_size=2048), st.sampled_from(SAMPLES).flatmap(lambda valid: mutated(valid))
    )
)
def test_fuzzed_images_raise_only_image_errors(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "picture"
    path.write_bytes(data)
    try:
        x = load_image(path)
    except ImageError as exc:
        assert str(path) in str(exc)
        return
    assert x.shape == (1, 28, 28) and torch.isfinite(x).all()


def _small_model_files() -> tuple[bytes, bytes, bytes]:
    """A checkpoint, a model.safetensors and its config.json, of a small FashionMLP."""
    with tempfile.TemporaryDirectory() as folder:
        model = FashionMLP(hidden_features=4, hidden_layers=1, normalize=(0.3, 0.4))
        save_checkpoint(Path(folder) / "c.pt", model, epoch=1)
        model.save_pretrained(folder)
        return tuple(  # type: ignore[return-value]
            (Path(folder) / name).read_bytes()
            for name in ("c.pt", "model.safetensors", "config.json")
        )


CHECKPOINT, SAFETENSORS, CONFIG = _small_model_files()

_ODD_VALUES = st.one_of(
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.none(),
    st.lists(st.floats(allow_nan=True), max_size=3),
)


def _json_config(data: st.DataObject) -> bytes:
    """A config.json of the right shape with odd values: huge layers, NaN, text, nothing."""
    document = json.loads(CONFIG)
    for key in ("hidden_features", "hidden_layers", "dropout", "normalize"):
        if data.draw(st.booleans()):
            document[key] = data.draw(_ODD_VALUES)
    return json.dumps(document).encode()


@FUZZ
@given(data=st.one_of(st.binary(max_size=2048), mutated(CHECKPOINT), mutated(SAFETENSORS)))
def test_fuzzed_weights_files_raise_only_our_errors(tmp_path: Path, data: bytes) -> None:
    for name in ("w.pt", "w.safetensors"):
        path = tmp_path / name
        path.write_bytes(data)
        (tmp_path / "config.json").write_bytes(CONFIG)
        for load in (
            lambda: FashionMLP.from_pretrained(path),
            lambda: load_checkpoint(path, FashionMLP(hidden_features=4, hidden_layers=1)),
        ):
            try:
                load()
            except FashionMLPError:
                pass


@FUZZ
@given(
    weights=st.one_of(st.just(SAFETENSORS), mutated(SAFETENSORS)),
    config=st.one_of(st.binary(max_size=256), mutated(CONFIG), st.builds(_json_config, st.data())),
)
def test_fuzzed_model_folders_raise_only_our_errors(
    tmp_path: Path, weights: bytes, config: bytes
) -> None:
    (tmp_path / "model.safetensors").write_bytes(weights)
    (tmp_path / "config.json").write_bytes(config)
    try:
        model = FashionMLP.from_pretrained(tmp_path)
    except FashionMLPError:
        return
    assert model(torch.rand(2, 784)).shape == (2, 10)


# --- damage on disk: a byte changed in a file of ours is always found ------------------------


def _run_files() -> dict[str, bytes]:
    """A resumable checkpoint (weights, optimizer and schedule) and a model folder's files."""
    with tempfile.TemporaryDirectory() as folder:
        model = FashionMLP(hidden_features=4, hidden_layers=1, normalize=(0.3, 0.4))
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        model(torch.rand(2, 784)).sum().backward()
        optimizer.step()
        save_checkpoint(Path(folder) / "checkpoint.pt", model, optimizer, epoch=1)
        model.save_pretrained(folder)
        return {
            name: (Path(folder) / name).read_bytes()
            for name in ("checkpoint.pt", "model.safetensors", "config.json")
        }


RUN_FILES = _run_files()


@st.composite
def flipped(draw: st.DrawFn) -> tuple[str, bytes]:
    """One of our files with one to eight bytes changed (each to another value)."""
    name = draw(st.sampled_from(sorted(RUN_FILES)))
    data = bytearray(RUN_FILES[name])
    for _ in range(draw(st.integers(1, 8))):
        position = draw(st.integers(0, len(data) - 1))
        data[position] ^= draw(st.integers(1, 255))
    return name, bytes(data)


@FUZZ
@given(damage=flipped())
def test_a_changed_byte_in_a_checkpoint_or_model_folder_is_always_refused(
    tmp_path: Path, damage: tuple[str, bytes]
) -> None:
    for name, data in RUN_FILES.items():
        (tmp_path / name).write_bytes(data)
    name, data = damage
    if data == RUN_FILES[name]:  # two flips of one byte that undid each other
        return
    (tmp_path / name).write_bytes(data)
    source = tmp_path / ("checkpoint.pt" if name == "checkpoint.pt" else "")
    try:
        FashionMLP.from_pretrained(source)
    except CheckpointError:
        return
    raise AssertionError(f"{name} with a changed byte loaded without a word")
