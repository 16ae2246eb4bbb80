"""The ``fashionmlp`` command line: a thin front end over the public API.

Every failure the library reports becomes one line on stderr and a non-zero exit
status (1 for a failed run, 2 for a bad command line); ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

import torch
from torch import nn

from . import __version__
from .callbacks import PrintLoss
from .checkpoint import save_checkpoint
from .data import default_data_root
from .loaders import make_loaders
from .devices import resolve_device
from .errors import FashionMLPError, InvalidArgumentError
from .evaluate import evaluate
from .model import FashionMLP
from .train import train_epoch

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line naming the fix, not the whole usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"must be between 0 and 2**63 - 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``fashionmlp`` command."""
    parser = _Parser(prog="fashionmlp", description="Train and evaluate an MLP on FashionMNIST.")
    parser.add_argument("--version", action="version", version=f"fashionmlp {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback when something fails"
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    train = commands.add_parser(
        "train",
        help="train the seed's MLP and evaluate it after every epoch",
        description="Train FashionMLP as the seed does (CrossEntropyLoss, SGD) and "
        "evaluate it on the test set after every epoch; writes a run folder.",
    )
    train.add_argument("--epochs", type=_positive_int, default=5, help="epochs (default 5)")
    train.add_argument(
        "--batch-size", type=_positive_int, default=64, help="samples per batch (default 64)"
    )
    train.add_argument(
        "--lr", type=_positive_float, default=0.01, help="SGD learning rate (default 0.01)"
    )
    train.add_argument(
        "--seed", type=_seed, default=None, help="random seed (default: drawn and recorded)"
    )
    train.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help=f"dataset folder (default: $FASHIONMLP_DATA or {default_data_root()})",
    )
    train.add_argument(
        "--download",
        action="store_true",
        help="download the dataset if no local copy is found (needs internet)",
    )
    train.add_argument(
        "--out", type=Path, default=None, help="run folder to write (default: runs/<time>)"
    )
    train.add_argument(
        "--overwrite", action="store_true", help="replace a finished run in --out"
    )
    train.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:N, mps or auto (default auto)"
    )
    train.add_argument(
        "--backend",
        choices=("torchvision", "tensor"),
        default="torchvision",
        help="data pipeline: the seed's torchvision DataLoader (default) or the "
        "device-resident tensor loader (same batches, much faster)",
    )
    train.add_argument(
        "--limit",
        type=_positive_int,
        default=None,
        help="use only the first N samples of each split (for a quick check)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return _train(args)
    except FashionMLPError as exc:
        if args.debug:
            raise
        print(f"fashionmlp: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("fashionmlp: interrupted", file=sys.stderr)
        return 130


def _train(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    out = _run_folder(args.out, overwrite=args.overwrite)
    data_root = args.data_root or default_data_root()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    config: dict[str, Any] = {
        "recipe": "seed",
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": seed,
        "device": str(device),
        "data_root": str(data_root),
        "backend": args.backend,
        "limit": args.limit,
        "fashionmlp": __version__,
        "torch": str(torch.__version__),
        "python": platform.python_version(),
    }
    torch.manual_seed(seed)
    train_loader, test_loader = make_loaders(
        data_root,
        args.batch_size,
        download=args.download,
        seed=seed,
        backend=args.backend,
        device=device,
        limit=args.limit,
    )
    model = FashionMLP().to(device)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    print(
        f"Training FashionMLP on {device} for {args.epochs} epoch(s): batch {args.batch_size}, "
        f"SGD lr {args.lr}, seed {seed}; data in {data_root}; run folder {out}"
    )
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    non_blocking = device.type == "cuda"  # the torchvision backend pins memory there
    history: list[dict[str, Any]] = []
    started = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        print(f"Epoch {epoch}\n-------------------------------")
        stats = train_epoch(
            train_loader,
            model,
            loss_fn,
            optimizer,
            callbacks=[PrintLoss(100)],
            epoch=epoch,
            non_blocking=non_blocking,
        )
        result = evaluate(test_loader, model, loss_fn, non_blocking=non_blocking)
        print(
            f"Epoch {epoch}: train loss {stats.loss:.4f}, test accuracy "
            f"{100 * result.accuracy:.2f}%, test loss {result.loss:.4f} ({stats.seconds:.1f} s)"
        )
        history.append(
            {
                "epoch": epoch,
                "train_loss": stats.loss,
                "test_loss": result.loss,
                "test_accuracy": result.accuracy,
                "seconds": stats.seconds,
            }
        )
    weights = save_checkpoint(out / "model.pt", model, optimizer, epoch=args.epochs, config=config)
    metrics = {
        "epochs": history,
        "test": result.to_dict(),
        "wall_seconds": time.perf_counter() - started,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"Test accuracy {100 * result.accuracy:.2f}%; weights saved to {weights}")
    return 0


def _run_folder(out: Path | None, *, overwrite: bool) -> Path:
    """The run folder, created; refuses to replace a finished run unless ``overwrite``."""
    if out is None:
        out = Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")
        out.parent.mkdir(exist_ok=True)
    elif not out.parent.is_dir():
        raise InvalidArgumentError(
            f"--out {out}: its parent folder {out.parent} does not exist; create it first"
        )
    if out.exists() and not out.is_dir():
        raise InvalidArgumentError(f"--out {out} is a file, not a folder; choose another --out")
    if (out / "model.pt").exists() and not overwrite:
        raise InvalidArgumentError(
            f"--out {out} already holds a finished run; choose another --out "
            "or pass --overwrite to replace it"
        )
    try:
        out.mkdir(exist_ok=True)
    except OSError as exc:
        raise InvalidArgumentError(f"cannot create --out {out} ({exc.strerror or exc})") from exc
    return out
