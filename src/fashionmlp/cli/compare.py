"""``fashionmlp compare``: runs and seed studies side by side."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import Parser

__all__ = ["DESCRIPTION", "HELP", "PARSER", "run"]


HELP = "compare finished runs and seed studies side by side"
DESCRIPTION = (
    "Print the settings in which finished run folders and seed studies (fashionmlp train "
    "--seeds) differ, with their accuracy (mean ± std over a study's seeds), parameters, "
    "epochs and wall time, and draw their accuracy and loss per epoch overlaid."
)
PARSER = Parser(add_help=False)
PARSER.add_argument("paths", type=Path, nargs="+", metavar="RUN_OR_STUDY")
PARSER.add_argument(
    "--out",
    type=Path,
    default=Path("comparison"),
    metavar="DIR",
    help="where accuracy.png and loss.png go (default: comparison/)",
)
PARSER.add_argument("--no-plots", action="store_true", help="do not draw the curves")


def run(args: argparse.Namespace) -> int:
    """Compare the paths; return the exit status."""
    from ..studies import compare, plot_comparison

    comparison = compare(args.paths)
    print(comparison.text())
    if not args.no_plots:
        try:
            drawn = plot_comparison(comparison, args.out)
            print(f"Curves: {', '.join(str(path) for path in drawn)}")
        except ImportError as exc:
            print(f"Curves skipped: {exc}")
    return 0
