"""What the loggers share."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..config import flat
from ..errors import InvalidArgumentError

if TYPE_CHECKING:
    from ..config import RunConfig

__all__ = ["check_every", "run_params"]


def check_every(every: int) -> int:
    """``every`` checked: steps between two batch points, 0 for none."""
    if isinstance(every, bool) or not isinstance(every, int) or every < 0:
        raise InvalidArgumentError(f"every must be a whole number, 0 or more, got {every!r}")
    return every


def run_params(config: RunConfig) -> dict[str, Any]:
    """A run's settings as trackers record them: every recipe field by its path (``lr``,
    ``model.hidden_features``), then ``seed``, ``limit`` and ``validation_size``."""
    params = flat(config.recipe.to_dict())
    params |= {"seed": config.seed, "limit": config.limit}
    params["validation_size"] = config.validation_size
    return params
