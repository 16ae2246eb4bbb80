"""Classifying images: any PNG or JPEG made into a FashionMNIST-style 28x28 input.

FashionMNIST images are a light garment on a dark background, the garment filling the
square frame. :func:`~fashionmlp.image_to_tensor` brings any picture to that convention:

1. JPEG orientation tags are applied; transparent pixels are laid on white (a product
   photo's background); the picture becomes grayscale with values in ``[0, 1]``
   (16-bit pictures are scaled by 65535, or by 255 when no value exceeds 255; 32-bit
   integer and float pictures are scaled from their minimum to their maximum).
2. **Inversion rule** (``invert=None``): when the mean of the one-pixel border is above
   0.5 the background is light, so the picture is inverted; otherwise it is left as it
   is. ``invert=True`` or ``False`` decides it yourself.
3. The picture is padded to a square with its background value and resized to 28x28
   with antialiasing.

Pillow is imported only when an image is read.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import torch
from torch import nn

from ._files import read_regular_file
from .config import CLASSES, IMAGE_SIZE
from .data import pixels_to_float
from .devices import model_device
from .errors import ImageError, InvalidArgumentError
from .train import eval_mode

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

__all__ = [
    "ImageLike",
    "Prediction",
    "image_to_tensor",
    "load_image",
    "predict",
    "predict_probabilities",
]

#: What :func:`~fashionmlp.predict` takes: an image file, a PIL image, or a tensor of one or
#: more 28x28 images.
ImageLike = Union[str, "os.PathLike[str]", "PILImage", torch.Tensor]

_MAX_PIXELS = 50_000_000  # far above any photo; refuses decompression bombs early
_MAX_FILE_BYTES = 256 * 2**20  # far above any photo of _MAX_PIXELS, compressed


@dataclass(frozen=True)
class Prediction:
    """One class and its probability."""

    #: The class index, ``0..9``.
    label: int
    #: The class name, ``CLASSES[label]``.
    name: str
    #: The softmax probability.
    probability: float


def image_to_tensor(image: PILImage, *, invert: bool | None = None) -> torch.Tensor:
    """Make ``image`` a float32 ``(1, 28, 28)`` tensor in FashionMNIST's convention.

    See the module's description for the steps and the inversion rule.

    Raises:
        ImageError: The image is animated, empty, or of a mode that has no grayscale.

    Example:
        >>> from PIL import Image
        >>> photo = Image.new("RGB", (300, 200), "white")  # a white background...
        >>> photo.paste((40, 40, 40), (100, 50, 200, 150))  # ...with a dark garment
        >>> x = image_to_tensor(photo)
        >>> x.shape, float(x[0, 0, 0]), float(x[0, 14, 14]) > 0.8
        (torch.Size([1, 28, 28]), 0.0, True)
    """
    from PIL import Image, ImageOps

    if getattr(image, "n_frames", 1) > 1:
        raise ImageError("is animated; give a single still image")
    if image.width < 1 or image.height < 1:
        raise ImageError("has no pixels")
    image = ImageOps.exif_transpose(image)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "La", "RGBa", "PA"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    pixels = _grayscale(image)
    border = torch.cat([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    if invert if invert is not None else float(border.mean()) > 0.5:
        pixels = 1.0 - pixels
        border = 1.0 - border
    return _square_resize(pixels, float(border.median()))


def load_image(path: str | os.PathLike[str], *, invert: bool | None = None) -> torch.Tensor:
    """Read an image file and return it as :func:`~fashionmlp.image_to_tensor` does.

    Raises:
        ImageError: The file is missing, empty, truncated, not an image, too large
            (a decompression bomb) or unusable; the message names the file.
    """
    from PIL import Image, UnidentifiedImageError

    data = _read_image_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # From memory: Pillow reads a chunk's declared length at once, and a damaged
            # length asks a real file for gigabytes; an in-memory stream gives what it has.
            with Image.open(io.BytesIO(data)) as image:
                if image.width * image.height > _MAX_PIXELS:
                    raise ImageError(
                        f"declares {image.width}x{image.height} pixels, more than the "
                        f"{_MAX_PIXELS:,} allowed; scale it down first"
                    )
                image.load()
                return image_to_tensor(image, invert=invert)
    except ImageError as exc:
        raise ImageError(f"{path}: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"{path}: not an image Pillow can read (PNG or JPEG expected)") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{path}: too large to decode safely ({exc})") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        # Pillow reports truncated and corrupt data with these.
        raise ImageError(f"{path}: cannot be decoded ({exc}); the file is damaged") from exc


def _read_image_file(path: str | os.PathLike[str]) -> bytes:
    """The file's bytes; a FIFO, a device or a folder is refused before a byte is read."""
    return read_regular_file(Path(path), limit=_MAX_FILE_BYTES, error=ImageError, what="image file")


def predict(
    model: nn.Module,
    images: ImageLike | Sequence[ImageLike],
    *,
    top: int = 3,
    invert: bool | None = None,
) -> list[list[Prediction]]:
    """The ``top`` most probable classes for each image, most probable first.

    Args:
        model: A trained classifier (e.g. ``FashionMLP.from_pretrained(...)``); put back in
            its mode after.
        images: Image files (paths) and PIL images, both converted by
            :func:`~fashionmlp.image_to_tensor`, or tensors already in FashionMNIST's
            convention (see :func:`~fashionmlp.predict_probabilities`), or NumPy arrays (of
            28x28 pixels, taken as tensors are; of any other shape, ``(H, W)`` or
            ``(H, W, 3)``, as pictures), or a sequence of these.
        top: How many classes to return per image.
        invert: Passed to :func:`~fashionmlp.image_to_tensor` for files and PIL images.

    Raises:
        InvalidArgumentError: A tensor has the wrong shape, dtype or range, or ``top`` is
            not between 1 and 10.
        ImageError: A file cannot be read as an image.

    Example:
        >>> import torch
        >>> from fashionmlp import FashionMLP, predict
        >>> [best, *_] = predict(FashionMLP(), torch.rand(28, 28))[0]
        >>> best.name in CLASSES
        True
    """
    if not 1 <= top <= len(CLASSES):
        raise InvalidArgumentError(f"top must be between 1 and {len(CLASSES)}, got {top}")
    probabilities = predict_probabilities(model, images, invert=invert)
    values, labels = probabilities.topk(top, dim=1)
    return [
        [Prediction(label, CLASSES[label], probability) for label, probability in zip(row, p)]
        for row, p in zip(labels.tolist(), values.tolist())
    ]


def predict_probabilities(
    model: nn.Module,
    images: ImageLike | Sequence[ImageLike],
    *,
    invert: bool | None = None,
    logits: bool = False,
) -> torch.Tensor:
    """Class probabilities (or logits) of each image, as a float32 ``(N, 10)`` CPU tensor.

    Tensors are taken as ``ToTensor()`` makes them: float in ``[0, 1]`` (a model that
    needs standardized input standardizes it itself, as a trained
    :class:`~fashionmlp.FashionMLP` does), or uint8 pixels in ``0..255``, scaled by 1/255
    exactly as ``ToTensor()`` scales them; shaped ``(28, 28)``, ``(1, 28, 28)``,
    ``(N, 28, 28)`` or ``(N, 1, 28, 28)``. Files and PIL images go through
    :func:`~fashionmlp.image_to_tensor`.

    Raises:
        InvalidArgumentError: A tensor has another shape, an integer dtype other than
            uint8, values far outside ``[0, 1]`` (more than 0.05 beyond), or NaN.
        ImageError: A file cannot be read as an image.

    Example:
        >>> import torch
        >>> from fashionmlp import FashionMLP
        >>> from fashionmlp.prediction import predict_probabilities
        >>> pixels = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8)
        >>> predict_probabilities(FashionMLP(), pixels).shape
        torch.Size([5, 10])
    """
    items = [images] if isinstance(images, (str, os.PathLike, torch.Tensor)) else images
    if not isinstance(items, Sequence):
        items = [items]
    if not items:
        return torch.empty(0, len(CLASSES))
    batch = torch.cat([_as_batch(item, invert) for item in items])
    with eval_mode(model):
        out: torch.Tensor = model(batch.to(model_device(model))).float()
    return (out if logits else out.softmax(dim=1)).cpu()


#: How far beyond [0, 1] a float input may stray (rounding in a user's own scaling).
_RANGE_SLACK = 0.05


def _as_batch(item: Any, invert: bool | None) -> torch.Tensor:
    if isinstance(item, (str, os.PathLike)):
        return load_image(item, invert=invert).unsqueeze(0)
    if type(item).__module__ == "numpy" and hasattr(item, "__array__"):
        item = _from_array(item, invert)
    if not isinstance(item, torch.Tensor):
        if not hasattr(item, "getbbox"):  # what PIL images have: anything else is no image
            raise ImageError(
                f"cannot predict a {type(item).__name__}; give image files, PIL images, "
                "NumPy arrays or tensors"
            )
        return image_to_tensor(item, invert=invert).unsqueeze(0)
    if item.device.type == "meta":
        raise InvalidArgumentError(
            "image tensor is on the meta device, so it has no values; give one with pixels"
        )
    if (
        item.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE)
        or item.dim() not in (2, 3, 4)
        or (item.dim() == 4 and item.shape[1] != 1)
    ):
        raise InvalidArgumentError(
            f"image tensor of shape {tuple(item.shape)}; expected (28, 28), (1, 28, 28), "
            "(N, 28, 28) or (N, 1, 28, 28)"
        )
    x: torch.Tensor
    if item.dtype == torch.uint8:
        x = pixels_to_float(item)
    elif item.is_floating_point():
        x = item.to(torch.float32)
        if x.numel():
            low, high = (float(value) for value in torch.aminmax(x))
            if math.isnan(low) or math.isnan(high):
                raise InvalidArgumentError("image tensor holds NaN; give finite pixel values")
            if low < -_RANGE_SLACK or high > 1 + _RANGE_SLACK:
                raise InvalidArgumentError(
                    f"image tensor values run from {low:g} to {high:g}; expected [0, 1], as "
                    "ToTensor() makes them (uint8 pixels in 0..255 are accepted too). A "
                    "FashionMLP standardizes its input itself: do not normalize it first"
                )
    else:
        raise InvalidArgumentError(
            f"image tensor of dtype {item.dtype}; give float pixels in [0, 1] or uint8 "
            "pixels in 0..255"
        )
    return x.reshape(-1, 1, IMAGE_SIZE, IMAGE_SIZE)


def _from_array(array: Any, invert: bool | None) -> Any:
    """A NumPy array as the tensor of pixels it is, or the picture it shows.

    Arrays shaped like FashionMNIST images (``(28, 28)``, ``(N, 28, 28)``, ...) are taken
    as tensors are; any other 2-D or 3-D array (a photo, ``(H, W)`` or ``(H, W, 3)``) as a
    PIL image would be.
    """
    import numpy as np
    from PIL import Image

    array = np.ascontiguousarray(array)
    if array.shape[-2:] == (IMAGE_SIZE, IMAGE_SIZE) or array.dtype.kind not in "uif":
        try:
            return torch.from_numpy(array)
        except TypeError as exc:  # an array of objects, strings, ...
            raise InvalidArgumentError(
                f"cannot use an array of dtype {array.dtype}: {exc}"
            ) from None
    try:
        return Image.fromarray(array)
    except (TypeError, ValueError) as exc:
        raise ImageError(
            f"an array of shape {array.shape} and dtype {array.dtype} is not a picture PIL "
            f"can take ({exc}); give (H, W) or (H, W, 3) pixels"
        ) from None


def _grayscale(image: PILImage) -> torch.Tensor:
    """The picture's luminance as a float tensor ``(H, W)`` in ``[0, 1]``."""
    import numpy as np

    if image.mode.startswith("I;16"):
        array = np.asarray(image, dtype=np.float64)
        # Some writers keep 8-bit values in a 16-bit container; scale those as 8-bit.
        array /= 255.0 if array.max() <= 255 else 65535.0
    elif image.mode in ("I", "F"):
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        array = (array - low) / (high - low) if high > low else np.zeros_like(array)
    else:
        try:
            array = np.asarray(image.convert("L"), dtype=np.float64) / 255.0
        except (ValueError, OSError) as exc:
            raise ImageError(f"has mode {image.mode}, which has no grayscale form") from exc
    return torch.from_numpy(np.ascontiguousarray(array)).float()


def _square_resize(pixels: torch.Tensor, background: float) -> torch.Tensor:
    """Pad ``(H, W)`` to a square with ``background``, resize to ``(1, 28, 28)``."""
    height, width = pixels.shape
    side = max(height, width)
    if side * side > _MAX_PIXELS:
        # A long thin strip has few pixels but a huge square: shrink it first, so that the
        # square stays within the pixel limit (a 20000x1 strip would square to 1.6 GB).
        scale = math.sqrt(_MAX_PIXELS) / side
        height, width = max(1, round(height * scale)), max(1, round(width * scale))
        pixels = torch.nn.functional.interpolate(
            pixels[None, None], size=(height, width), mode="bilinear", antialias=True
        )[0, 0]
        side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    square = torch.full((side, side), background)
    square[top : top + height, left : left + width] = pixels
    resized = torch.nn.functional.interpolate(
        square[None, None],
        size=(IMAGE_SIZE, IMAGE_SIZE),
        mode="bilinear",
        antialias=side > IMAGE_SIZE,
        align_corners=False,
    )
    return resized[0].clamp(0.0, 1.0)
