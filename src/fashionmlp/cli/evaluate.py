"""``fashionmlp evaluate``: a finished run, a model folder or a checkpoint on the test set."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import CLASSES
from .common import Parser, add_data_options, add_device_option, load_model, stop_if_interrupted

if TYPE_CHECKING:
    from ..records import EvalResult

__all__ = ["DESCRIPTION", "HELP", "PARSER", "run"]


HELP = "evaluate a trained model on the test set"
DESCRIPTION = (
    "Evaluate a finished run, a saved model folder or a checkpoint file on the test set: "
    "accuracy, top-k, macro precision, recall and F1, NLL, calibration, per-class figures and "
    "the confusion matrix."
)
PARSER = Parser(add_help=False)
PARSER.add_argument("run", type=Path, metavar="RUN_OR_WEIGHTS")
PARSER.add_argument("--json", action="store_true", help="print JSON")
add_data_options(PARSER)
add_device_option(PARSER)


def run(args: argparse.Namespace) -> int:
    """Evaluate the model the options name; return the exit status."""
    import torch

    from ..data import make_loaders
    from ..devices import resolve_device
    from ..train import evaluate

    stop_if_interrupted()
    device = resolve_device(args.device)
    model = load_model(args.run).to(device)
    note = _evaluated_differently(args.run)
    _, test = make_loaders(args.data_root, backend="tensor", device=device, download=args.download)
    result = evaluate(test, model, torch.nn.CrossEntropyLoss())
    if note:
        print(f"note: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps({"weights": str(args.run), "classes": list(CLASSES), **result.to_dict()}))
    else:
        print(evaluation_text(result))
    return 0


def _evaluated_differently(run: Path) -> str | None:
    """What to say when the run reported its accuracy on other images than the test set."""
    from ..runs import RUN, RunFolder

    if not (run / RUN).is_file():
        return None
    config = RunFolder(run).read_config()
    evaluated = config.samples[config.evaluated_on]
    if config.validation_size:
        return (
            f"this run reported accuracy on {evaluated} held-out training images "
            "(--validation); this is the whole test set, which it never saw"
        )
    if evaluated < 10_000:
        return (
            f"this run (--limit {config.limit}) reported accuracy on the first {evaluated} "
            "test images; this is the whole test set of 10000"
        )
    return None


def evaluation_text(result: EvalResult) -> str:
    """The evaluation as ``fashionmlp evaluate`` prints it: accuracy, the summary figures,
    each class's precision, recall and F1, the confusion matrix."""
    top_k = ", ".join(f"top-{k} {100 * value:.2f}%" for k, value in result.top_k_accuracy.items())
    lines = [
        f"Test accuracy {100 * result.accuracy:.2f}% ({result.correct}/{result.total}), "
        f"test loss {result.loss:.4f}",
        f"{top_k}; macro precision {100 * result.macro_precision:.2f}%, recall "
        f"{100 * result.macro_recall:.2f}%, F1 {100 * result.macro_f1:.2f}%",
        f"negative log-likelihood {result.nll:.4f}, expected calibration error "
        f"{100 * (result.ece or 0):.2f}%",
        "",
        f"{'class':<14}{'precision':>10}{'recall':>9}{'F1':>9}",
    ]
    lines += [
        f"{name:<14}{100 * p:>9.1f}%{100 * r:>8.1f}%{100 * f:>8.1f}%"
        for name, p, r, f in zip(CLASSES, result.precision, result.recall, result.f1)
    ]
    short = [name.split("/")[0][:7] for name in CLASSES]
    lines += ["", "Confusion matrix (rows: true class, columns: predicted class)"]
    lines.append(" " * 14 + "".join(f"{name:>8}" for name in short))
    lines += [
        f"{name:<14}" + "".join(f"{count:>8}" for count in row)
        for name, row in zip(CLASSES, result.confusion_matrix)
    ]
    return "\n".join(lines)
