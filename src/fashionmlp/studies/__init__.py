"""Studies: many runs of a recipe. Sweeps of its settings on Optuna (:func:`sweep`),
repeats over seeds with their spread (:func:`repeat`), and comparisons of runs and studies
(:func:`compare`).

Optuna is the ``sweep`` extra (``pip install 'fashionmlp[sweep]'``), SciPy (for the
confidence interval) the ``stats`` extra; both are imported when first needed.
"""

from __future__ import annotations

from .. import _register_moved
from .compare import Comparison, Entry, compare, plot_comparison
from .seeds import SeedSummary, Spread, repeat, spread, summarize
from .space import DEFAULT_SPACE, Param, SearchSpace
from .sweep import SweepResult, sweep

__all__ = [
    "DEFAULT_SPACE",
    "Comparison",
    "Entry",
    "Param",
    "SearchSpace",
    "SeedSummary",
    "Spread",
    "SweepResult",
    "compare",
    "plot_comparison",
    "repeat",
    "spread",
    "summarize",
    "sweep",
]

_register_moved(__name__.rpartition(".")[2])  # studies.report and studies.storage
