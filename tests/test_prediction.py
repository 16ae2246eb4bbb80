from __future__ import annotations

import io
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from PIL import Image

from fashionmlp import (
    CLASSES,
    FashionMLP,
    ImageError,
    InvalidArgumentError,
    image_to_tensor,
    load_image,
    predict,
    predict_probabilities,
)


def garment(size: tuple[int, int], *, light_background: bool, mode: str = "RGB") -> Image.Image:
    """A rectangle 'garment' in the middle of a plain background."""
    background, ink = ("white", (30, 30, 30)) if light_background else ("black", (220, 220, 220))
    image = Image.new("RGB", size, background)
    w, h = size
    image.paste(ink, (w // 4, h // 4, max(w * 3 // 4, w // 4 + 1), max(h * 3 // 4, h // 4 + 1)))
    return image.convert(mode)


@pytest.mark.parametrize("light_background", [True, False])
def test_any_photo_comes_out_light_on_dark(light_background: bool) -> None:
    x = image_to_tensor(garment((300, 200), light_background=light_background))
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32
    assert float(x[0, 0].max()) < 0.05 and float(x[0, 14, 14]) > 0.8


def test_invert_can_be_forced_either_way() -> None:
    photo = garment((64, 64), light_background=True)
    assert float(image_to_tensor(photo, invert=False)[0, 0, 0]) > 0.95
    assert float(image_to_tensor(photo, invert=True)[0, 0, 0]) < 0.05


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "CMYK", "1", "I", "F", "I;16"])
def test_every_mode_becomes_a_grayscale_28x28(mode: str) -> None:
    x = image_to_tensor(garment((90, 60), light_background=True, mode=mode))
    assert x.shape == (1, 28, 28) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert float(x[0, 14, 14]) > float(x[0, 0, 0]) + 0.5  # garment light, background dark


def test_transparent_background_counts_as_a_product_photo() -> None:
    image = Image.new("RGBA", (50, 50), (0, 0, 0, 0))
    image.paste((20, 20, 20, 255), (15, 15, 35, 35))
    x = image_to_tensor(image)
    assert float(x[0, 0, 0]) < 0.05 and float(x[0, 14, 14]) > 0.8


def test_sixteen_bit_images_keep_their_range() -> None:
    array = np.full((40, 40), 1000, dtype=np.uint16)
    array[10:30, 10:30] = 60000
    x = image_to_tensor(Image.fromarray(array))
    assert float(x[0, 14, 14]) == pytest.approx(60000 / 65535, abs=0.01)


@settings(max_examples=30, deadline=None)
@given(width=st.integers(1, 400), height=st.integers(1, 400))
def test_any_size_is_padded_square_and_resized(width: int, height: int) -> None:
    x = image_to_tensor(garment((width, height), light_background=bool(width % 2)))
    assert x.shape == (1, 28, 28) and torch.isfinite(x).all()


def _save(image: Image.Image, path: Path, **options: object) -> Path:
    image.save(path, **options)
    return path


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("rgb.jpg", lambda p: _save(garment((120, 160), light_background=True), p, quality=90)),
        ("rgba.png", lambda p: _save(garment((60, 60), light_background=True, mode="RGBA"), p)),
        ("deep.png", lambda p: _save(Image.fromarray(np.full((30, 30), 40000, np.uint16)), p)),
        ("tiny.png", lambda p: _save(garment((2, 3), light_background=False), p)),
        ("huge.jpg", lambda p: _save(garment((4000, 3000), light_background=True), p)),
    ],
)
def test_files_of_every_kind_load(tmp_path: Path, name: str, make: object) -> None:
    path = make(tmp_path / name)  # type: ignore[operator]
    x = load_image(path)
    assert x.shape == (1, 28, 28)


def test_a_decompression_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    path = _save(Image.new("1", (8_000, 8_000)), tmp_path / "bomb.png")
    with pytest.raises(ImageError, match="bomb.png: declares 8000x8000 pixels"):
        load_image(path)
    path = _save(Image.new("1", (12_000, 12_000)), tmp_path / "bigger.png")
    with pytest.raises(ImageError, match="bigger.png: too large to decode safely"):
        load_image(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "not an image"), (b"hello, not a picture", "not an image"), (None, "no such file")],
)
def test_unreadable_files_are_named(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "x.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageError, match=message) as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_a_chunk_claiming_gigabytes_is_refused_without_allocating_them(tmp_path: Path) -> None:
    # Found by Hypothesis: an IDAT chunk declaring 2.5 GiB made Pillow ask the file for
    # all of it at once, and a few such files filled the machine's memory.
    buffer = io.BytesIO()
    Image.new("RGBA", (23, 17)).save(buffer, format="PNG")
    header = buffer.getvalue()[:33]  # signature and IHDR chunk
    path = tmp_path / "liar.png"
    path.write_bytes(header + (0xA000_0000).to_bytes(4, "big") + b"IDAT\x00\x00")
    tracemalloc.start()
    try:
        with pytest.raises(ImageError, match="liar.png"):
            load_image(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20


def test_only_regular_files_are_read() -> None:
    with pytest.raises(ImageError, match="/dev/zero: is not a regular file"):
        load_image("/dev/zero")


_STRIP_UNDER_A_MEMORY_LIMIT = """
import resource, sys
from PIL import Image
from fashionmlp import image_to_tensor

strip = Image.new("L", (60_000, 2), 0)  # 120,000 pixels; squared, 14 GB of floats
strip.paste(255, (30_000, 0, 60_000, 2))
with open("/proc/self/status") as status:
    used = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize"))
resource.setrlimit(resource.RLIMIT_AS, (used + 2**30, resource.RLIM_INFINITY))
x = image_to_tensor(strip, invert=False)
print(float(x[0, :, :14].sum()), float(x[0, :, 14:].sum()), float(x[0, 0].max()))
"""


def test_a_long_thin_strip_is_shrunk_before_it_is_squared() -> None:
    # Found by Hypothesis: a JPEG 20736 pixels wide and a few high passed the pixel limit
    # but its padded square asked torch for 1.7 GB.
    run = subprocess.run(
        [sys.executable, "-c", _STRIP_UNDER_A_MEMORY_LIMIT],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    left, right, top = map(float, run.stdout.split())
    # A thin line across a dark square: light on its right half only, nothing at the top.
    assert right > 0.02 and left < right / 50 and top == 0.0


def test_truncated_and_animated_files_are_named(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    garment((200, 200), light_background=True).save(buffer, format="PNG")
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageError, match="cut.png"):
        load_image(truncated)
    frames = [garment((20, 20), light_background=b) for b in (True, False)]
    animated = tmp_path / "anim.gif"
    frames[0].save(animated, save_all=True, append_images=frames[1:])
    with pytest.raises(ImageError, match="anim.gif: is animated"):
        load_image(animated)


def test_predict_ranks_classes_for_tensors_and_pictures() -> None:
    torch.manual_seed(0)
    model = FashionMLP().train()
    batch = torch.rand(5, 1, 28, 28)
    ranked = predict(model, [batch, torch.rand(28, 28), garment((40, 40), light_background=True)])
    assert len(ranked) == 7 and all(len(r) == 3 for r in ranked)
    assert model.training  # mode restored
    for row in ranked:
        probabilities = [p.probability for p in row]
        assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1
        assert all(p.name == CLASSES[p.label] for p in row)
    expected = model.eval()(batch).softmax(1).argmax(1).tolist()
    assert [r[0].label for r in ranked[:5]] == expected
    assert len(predict(model, torch.rand(28, 28), top=10)[0]) == 10


def test_predict_refuses_wrong_shapes_and_top() -> None:
    with pytest.raises(InvalidArgumentError, match=r"\(3, 32, 32\)"):
        predict(FashionMLP(), torch.rand(3, 32, 32))
    with pytest.raises(InvalidArgumentError, match="top"):
        predict(FashionMLP(), torch.rand(28, 28), top=11)


def test_uint8_pixels_are_scaled_as_totensor_scales_them() -> None:
    torch.manual_seed(0)
    model = FashionMLP(normalize=(0.286, 0.353))
    pixels = torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8)
    assert predict(model, pixels) == predict(model, pixels / 255)
    assert torch.equal(
        predict_probabilities(model, pixels), predict_probabilities(model, pixels.float() / 255)
    )


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        (torch.zeros(2, 28, 28, dtype=torch.int32), "dtype torch.int32"),
        (torch.full((2, 28, 28), 255.0), r"values run from 255 to 255; expected \[0, 1\]"),
        (torch.full((28, 28), -0.8), "do not normalize it first"),
        (torch.full((28, 28), float("nan")), "NaN"),
        (torch.zeros(2, 3, 28, 28), r"shape \(2, 3, 28, 28\)"),
    ],
)
def test_tensors_the_model_would_misread_are_refused(tensor: torch.Tensor, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        predict(FashionMLP(), tensor)


def test_probabilities_and_logits_come_back_as_one_tensor(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = FashionMLP()
    path = _save(garment((64, 64), light_background=True), tmp_path / "shirt.png")
    x = torch.rand(3, 28, 28)
    probabilities = predict_probabilities(model, [x, path, str(path)])
    assert probabilities.shape == (5, 10) and probabilities.dtype == torch.float32
    assert torch.allclose(probabilities.sum(1), torch.ones(5))
    logits = predict_probabilities(model, x, logits=True)
    assert torch.equal(logits, model.eval()(x.unsqueeze(1)).detach())
    # The same file, by Path or by str (rows of one batch may differ in the last bits).
    assert torch.allclose(probabilities[3], probabilities[4], rtol=0, atol=1e-6)
    assert predict(model, path)[0][0].label == int(probabilities[3].argmax())
    assert predict_probabilities(model, []).shape == (0, 10)
