"""``fashionmlp export``: a trained model as an ONNX file, for deployment."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import InvalidArgumentError
from .common import Parser, load_model, stop_if_interrupted

__all__ = ["DESCRIPTION", "HELP", "PARSER", "run"]


HELP = "export a trained model for deployment (ONNX)"
DESCRIPTION = (
    "Write a trained model as an ONNX file that takes ToTensor()-style input (float32 "
    "(N, 1, 28, 28) in [0, 1], any N) and returns logits (N, 10), the input normalization "
    "inside. Needs pip install 'fashionmlp[export]'."
)
PARSER = Parser(add_help=False)
PARSER.add_argument("run", type=Path, metavar="RUN_OR_WEIGHTS")
PARSER.add_argument("--format", choices=("onnx",), default="onnx")
PARSER.add_argument(
    "--out", type=Path, help="file to write (default: RUN/model.onnx, or WEIGHTS.onnx)"
)
PARSER.add_argument("--overwrite", action="store_true", help="replace the file if it exists")


def run(args: argparse.Namespace) -> int:
    """Export the model the options name; return the exit status."""
    from ..export import export_onnx

    stop_if_interrupted()
    source: Path = args.run
    model = load_model(source)
    out: Path = args.out or (
        source / "model.onnx" if source.is_dir() else source.with_suffix(".onnx")
    )
    _refuse_sources(source, out)
    try:
        export_onnx(model, out, overwrite=args.overwrite)
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(str(exc).replace("overwrite=True", "--overwrite")) from exc
    print(f"Wrote {out}: input 'images' float32 (N, 1, 28, 28) in [0, 1], output 'logits' (N, 10)")
    _write_card(model, source, out)
    return 0


def _write_card(model: Any, source: Path, out: Path) -> None:
    """The model card beside the ONNX file, with the run's figures when ``source`` is a run
    folder; a ``README.md`` there that is not a card of ours is left as it is."""
    from ..errors import CheckpointError
    from ..pretrained import CARD_FILE, write_model_card
    from ..records import EvalResult
    from ..runs import METRICS, RUN, RunFolder, read_document

    facts: dict[str, Any] = {}
    folder = source if source.is_dir() else source.parent
    try:  # a run folder's figures, if it is one: the card is the better for them
        if (folder / METRICS).is_file():
            figures, _ = read_document(folder / METRICS)
            facts = {"evaluation": EvalResult.from_dict(figures["final"])}
            facts["split"] = figures["evaluated_on"]
        if (folder / RUN).is_file():
            facts["recipe"] = RunFolder(folder).read_config().recipe.to_dict()
    except (CheckpointError, ValueError, KeyError, TypeError):
        facts = {}  # damaged records: a card without them, the export stands
    card = model.model_card(str(folder), onnx=out.name, **facts)
    if write_model_card(out.parent, card) is None:
        print(f"Left {out.parent / CARD_FILE} as it is: it is not a model card of fashionmlp's")


def _refuse_sources(source: Path, out: Path) -> None:
    """Refuse an ``--out`` that is one of the files the model is read from."""
    from ..pretrained import CONFIG_FILE, WEIGHTS_FILE
    from ..runs import CHECKPOINT

    read = [source / name for name in (CONFIG_FILE, WEIGHTS_FILE, CHECKPOINT)]
    read = read if source.is_dir() else [source, source.parent / CONFIG_FILE]
    for path in read:
        if out.exists() and path.exists() and out.samefile(path):
            raise InvalidArgumentError(
                f"--out {out} is {path.name}, which the model is read from: export writes "
                "a new file and never replaces what it reads; choose another --out"
            )
