"""Random augmentation of training batches, as batched tensor ops on their device."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .errors import InvalidArgumentError
from .config import IMAGE_SIZE

__all__ = ["Augment"]


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
