"""``fashionmlp predict``: the likeliest classes of image files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import FashionMLPError
from .common import Parser, add_device_option, fail, load_model, stop_if_interrupted, whole_number

__all__ = ["DESCRIPTION", "HELP", "PARSER", "run"]


HELP = "classify image files"
DESCRIPTION = (
    "Classify PNG or JPEG files with a trained model. Each picture is made grayscale, "
    "inverted when its border is light (FashionMNIST shows light garments on black), padded "
    "square and resized to 28x28."
)
PARSER = Parser(add_help=False)
PARSER.add_argument("weights", type=Path, metavar="WEIGHTS")
PARSER.add_argument("images", type=Path, nargs="+", metavar="IMAGE")
PARSER.add_argument(
    "--invert",
    choices=("auto", "always", "never"),
    default="auto",
    help="invert the pictures: auto (when the border is light), always or never",
)
PARSER.add_argument(
    "--top", type=whole_number(1, 10), default=3, help="classes to show per image (default 3)"
)
PARSER.add_argument("--json", action="store_true", help="print JSON")
add_device_option(PARSER)


def run(args: argparse.Namespace) -> int:
    """Classify each image; return 1 if any could not be read, else 0."""
    from ..devices import resolve_device
    from ..prediction import predict

    device = resolve_device(args.device)
    model = load_model(args.weights).to(device)
    invert = {"auto": None, "always": True, "never": False}[args.invert]
    failures = 0
    results: list[dict[str, Any]] = []
    for path in args.images:
        stop_if_interrupted()
        try:
            [ranked] = predict(model, path, top=args.top, invert=invert)
        except FashionMLPError as exc:
            failures += 1
            if args.json:
                results.append({"file": str(path), "error": str(exc)})
            else:
                fail(str(exc))
            continue
        if args.json:
            predictions = [
                {"label": p.label, "class": p.name, "probability": p.probability} for p in ranked
            ]
            results.append({"file": str(path), "predictions": predictions})
        else:
            shown = ", ".join(f"{p.name} {100 * p.probability:.1f}%" for p in ranked)
            print(f"{path}: {shown}", flush=True)
    if args.json:
        print(json.dumps(results, indent=2))
    return 1 if failures else 0
