"""``fashionmlp export``: a trained model as an ONNX file, for deployment."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .common import stop_if_interrupted

__all__ = ["add_parser", "run"]


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add ``export`` and its options to the subcommands ``commands``."""
    command: argparse.ArgumentParser = commands.add_parser(
        "export",
        help="export a trained model for deployment (ONNX)",
        description="Write a trained model as an ONNX file that takes ToTensor()-style input "
        "(float32 (N, 1, 28, 28) in [0, 1], any N) and returns logits (N, 10), the input "
        "normalization inside. Needs pip install 'fashionmlp[export]'.",
    )
    command.add_argument("run", type=Path, metavar="RUN_OR_WEIGHTS")
    command.add_argument("--format", choices=("onnx",), default="onnx")
    command.add_argument(
        "--out", type=Path, help="file to write (default: RUN/model.onnx, or WEIGHTS.onnx)"
    )
    command.add_argument("--overwrite", action="store_true", help="replace the file if it exists")
    return command


def run(args: argparse.Namespace) -> int:
    """Export the model the options name; return the exit status."""
    from ..export import export_onnx
    from ..model import FashionMLP

    stop_if_interrupted()
    model = FashionMLP.from_pretrained(args.run)
    source: Path = args.run
    out = args.out or (source / "model.onnx" if source.is_dir() else source.with_suffix(".onnx"))
    export_onnx(model, out, overwrite=args.overwrite)
    print(f"Wrote {out}: input 'images' float32 (N, 1, 28, 28) in [0, 1], output 'logits' (N, 10)")
    return 0
