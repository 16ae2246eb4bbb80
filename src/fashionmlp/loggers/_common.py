"""What the loggers share."""

from __future__ import annotations

from ..errors import InvalidArgumentError

__all__ = ["check_every"]


def check_every(every: int) -> int:
    """``every`` checked: steps between two batch points, 0 for none."""
    if isinstance(every, bool) or not isinstance(every, int) or every < 0:
        raise InvalidArgumentError(f"every must be a whole number, 0 or more, got {every!r}")
    return every
