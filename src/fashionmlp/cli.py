"""The ``fashionmlp`` command line: a thin front end over the public API.

Commands: ``train`` (a recipe, to a run folder), ``evaluate`` (a run or weights on the test
set), ``predict`` (image files) and ``export`` (ONNX). Every failure the library reports
becomes one line on stderr and an exit status: 2 for a mistake on the command line, 1 for a
failed run, 130 or 143 when stopped by Ctrl-C or SIGTERM; ``--debug`` shows the traceback
instead.

Parsing imports nothing heavy: ``fashionmlp --help``, ``--version`` and a usage mistake
answer without importing torch; each command imports what it uses.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

from . import __version__
from .devices import check_device_name
from .errors import DeviceError, FashionMLPError, InvalidArgumentError

if TYPE_CHECKING:
    import torch

    from .callbacks import BatchEvent
    from .evaluation import EvalResult
    from .recipes import Recipe
    from .runs import RunFolder
    from .state import RunConfig

__all__ = ["RECIPE_NAMES", "build_parser", "main", "run"]

#: The shipped recipes' names, for ``--recipe`` (``fashionmlp.recipes.RECIPES`` has the
#: recipes; the parser does not import them, and a test keeps the two in step).
RECIPE_NAMES = ("fast", "seed", "long")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line naming the fix, not the whole usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _whole_number(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` to ``high``, with a one-line error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if high is None and value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        if high is not None and not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {value}")
        return value

    return parse


_positive_int = _whole_number(1)
_seed = _whole_number(0, 2**63 - 1)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _positive_float(text: str) -> float:
    value = _number(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text}")
    return value


def _fraction(text: str) -> float:
    value = _number(text)
    if not 0 <= value < 1:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, got {text}")
    return value


def _setting(text: str) -> tuple[str, Any]:
    """``FIELD=VALUE``; the value read as JSON (a number, true/false), else as text."""
    name, equals, raw = text.partition("=")
    if not equals or not name.strip():
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE, got {text!r}")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return name.strip(), value


def _device_name(text: str) -> str:
    try:
        return check_device_name(text)
    except DeviceError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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
        help="train FashionMLP with a recipe and evaluate it after every epoch",
        description="Train a FashionMLP with a recipe, evaluate it after every epoch, and "
        "write a run folder (the model, its settings, metrics, plots).",
    )
    train.add_argument(
        "--recipe",
        choices=RECIPE_NAMES,
        default=None,
        help="fast (default): about 90.7%% test accuracy in 8 epochs (7 s on 2 CPU cores with "
        "native bfloat16, 21 s in float32); "
        "seed: the seed exactly; long: the best accuracy",
    )
    train.add_argument("--epochs", type=_positive_int, help="override the recipe's epochs")
    train.add_argument("--batch-size", type=_positive_int, help="override the recipe's batch size")
    train.add_argument("--lr", type=_positive_float, help="override the recipe's learning rate")
    train.add_argument(
        "--backend", choices=("torchvision", "tensor"), help="override the recipe's data pipeline"
    )
    train.add_argument(
        "--hidden-features", type=_positive_int, metavar="N", help="width of each hidden layer"
    )
    train.add_argument(
        "--hidden-layers", type=_positive_int, metavar="N", help="number of hidden layers"
    )
    train.add_argument(
        "--dropout", type=_fraction, metavar="P", help="dropout after each hidden layer, in [0, 1)"
    )
    train.add_argument(
        "--set",
        type=_setting,
        action="append",
        metavar="FIELD=VALUE",
        help="set any recipe field, e.g. --set weight_decay=0.1 --set hflip=false "
        "(repeatable; values are JSON: numbers, true/false, or text)",
    )
    train.add_argument("--seed", type=_seed, help="random seed (default: drawn and recorded)")
    train.add_argument(
        "--limit", type=_positive_int, help="use only the first N samples of each split"
    )
    train.add_argument(
        "--validation",
        type=_positive_int,
        metavar="N",
        help="hold out N training images and evaluate on them instead of the test set",
    )
    train.add_argument(
        "--resume",
        type=Path,
        metavar="RUN",
        help="continue the interrupted run in folder RUN (its settings are kept)",
    )
    train.add_argument(
        "--out", type=Path, help="run folder to write (default: runs/<date>-<time>-<random>)"
    )
    train.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    train.add_argument(
        "--no-progress", action="store_true", help="plain lines instead of a progress bar"
    )
    train.add_argument("--no-plots", action="store_true", help="do not write the PNG plots")
    train.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write TensorBoard event files to RUN/tensorboard "
        "(pip install 'fashionmlp[tensorboard]'; then: tensorboard --logdir runs)",
    )
    train.add_argument(
        "--log-every",
        type=_positive_int,
        default=50,
        metavar="N",
        help="steps between two batch-loss points in TensorBoard (default 50)",
    )
    train.add_argument(
        "--no-finite-check",
        action="store_true",
        help="keep training when the loss becomes NaN or infinite (default: stop)",
    )
    _data_options(train)
    _device_option(train)

    evaluate_command = commands.add_parser(
        "evaluate",
        help="evaluate a trained model on the test set",
        description="Evaluate a finished run, a saved model folder or a checkpoint file on "
        "the test set: accuracy, per-class accuracy and the confusion matrix.",
    )
    evaluate_command.add_argument("run", type=Path, metavar="RUN_OR_WEIGHTS")
    evaluate_command.add_argument("--json", action="store_true", help="print JSON")
    _data_options(evaluate_command)
    _device_option(evaluate_command)

    predict_command = commands.add_parser(
        "predict",
        help="classify image files",
        description="Classify PNG or JPEG files with a trained model. Each picture is "
        "made grayscale, inverted when its border is light (FashionMNIST shows light "
        "garments on black), padded square and resized to 28x28.",
    )
    predict_command.add_argument("weights", type=Path, metavar="WEIGHTS")
    predict_command.add_argument("images", type=Path, nargs="+", metavar="IMAGE")
    predict_command.add_argument(
        "--invert",
        choices=("auto", "always", "never"),
        default="auto",
        help="invert the pictures: auto (when the border is light), always or never",
    )
    predict_command.add_argument(
        "--top", type=_whole_number(1, 10), default=3, help="classes to show per image (default 3)"
    )
    predict_command.add_argument("--json", action="store_true", help="print JSON")
    _device_option(predict_command)

    export_command = commands.add_parser(
        "export",
        help="export a trained model for deployment (ONNX)",
        description="Write a trained model as an ONNX file that takes ToTensor()-style input "
        "(float32 (N, 1, 28, 28) in [0, 1], any N) and returns logits (N, 10), the input "
        "normalization inside. Needs pip install 'fashionmlp[export]'.",
    )
    export_command.add_argument("run", type=Path, metavar="RUN_OR_WEIGHTS")
    export_command.add_argument("--format", choices=("onnx",), default="onnx")
    export_command.add_argument(
        "--out", type=Path, help="file to write (default: RUN/model.onnx, or WEIGHTS.onnx)"
    )
    export_command.add_argument(
        "--overwrite", action="store_true", help="replace the file if it exists"
    )
    return parser


def _data_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="dataset folder (default: $FASHIONMLP_DATA, else ~/.cache/fashionmlp)",
    )
    command.add_argument(
        "--download",
        action="store_true",
        help="download the dataset if no local copy is found (needs internet)",
    )


def _device_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--device",
        type=_device_name,
        default="auto",
        help="cpu, cuda, cuda:N, mps or auto (default auto)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit status.

    The status is 0 for success, 2 for a mistake on the command line (found by argparse, or
    once the options are checked: an option value the library refuses, a device this
    machine lacks, a run folder that cannot be used as asked), 1 for a failed run, and
    130 or 143 when stopped by a signal; Ctrl-C at any moment gives one line, not a
    traceback.
    """
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        with _startup_signals():
            return _COMMANDS[args.command](args)
    except _Interrupted as exc:
        if debug:
            raise
        _fail("interrupted")
        return 128 + exc.signal_number
    except InvalidArgumentError as exc:
        if debug:
            raise
        _fail(str(exc))
        return 2
    except FashionMLPError as exc:
        if debug:
            raise
        _fail(str(exc))
        return 1
    except KeyboardInterrupt:
        if debug:
            raise
        _fail("interrupted")
        return 128 + signal.SIGINT


class _Interrupted(KeyboardInterrupt):
    """A signal received while the command started up, raised at a safe point."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(signal_number)
        self.signal_number = signal_number


_received: int | None = None


@contextlib.contextmanager
def _startup_signals() -> Iterator[None]:
    """Ctrl-C and SIGTERM while a command starts up: recorded, acted on at safe points.

    Python raises KeyboardInterrupt wherever the main thread is; inside the import of a C
    extension (torch, numpy) that can leave a half-imported module or abort the process.
    So until training installs its own handling (StopOnSignal), a signal is only recorded
    here and :func:`_stop_if_interrupted` raises it between steps. A second Ctrl-C leaves
    at once.
    """
    global _received
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def record(number: int, frame: FrameType | None) -> None:
        global _received
        if _received == signal.SIGINT == number:
            sys.stderr.write("fashionmlp: error: interrupted\n")
            os._exit(128 + signal.SIGINT)
        _received = number

    _received = None
    previous = {number: signal.signal(number, record) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _stop_if_interrupted() -> None:
    """Raise the signal recorded during start-up, if any: this is a safe point."""
    if _received is not None:
        raise _Interrupted(_received)


def run() -> NoReturn:
    """The ``fashionmlp`` program: :func:`main`, then exit with its status.

    Once the command is over, a late Ctrl-C is ignored, so that it cannot turn the status
    just decided into a traceback while the interpreter shuts down. Under ``torchrun`` the
    process exits at once (``os._exit``), skipping the interpreter's shutdown.
    """
    status = main()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Under torchrun, leave without the interpreter's shutdown: gloo's threads live to
        # the end of the process, and one still releasing the last collective's tensors
        # when Python finalizes needs the GIL, which then aborts the process (exit -6,
        # "terminate called without an active exception") after a complete run. Every
        # file of the run is closed by now; only the standard streams need flushing.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


def _fail(message: str) -> None:
    print(f"fashionmlp: error: {' '.join(message.split())}", file=sys.stderr)


def _plural(count: int, noun: str, nouns: str) -> str:
    return f"{count} {noun if count == 1 else nouns}"


def _optimizer_summary(recipe: Recipe) -> str:
    """``sgd lr 0.01``; a Muon recipe has two rates: the hidden matrices' and AdamW's."""
    if recipe.optimizer == "muon":
        return f"muon lr {recipe.muon_lr} (hidden weights), adamw lr {recipe.lr} (the rest)"
    return f"{recipe.optimizer} lr {recipe.lr}"


# --- train -------------------------------------------------------------------------------


def _train(args: argparse.Namespace) -> int:
    from . import distributed
    from .devices import resolve_device

    # Under torchrun every process runs this; rank 0 alone prints and writes files.
    device = distributed.init_from_environment(resolve_device(args.device))
    try:
        main = distributed.is_main_process()
        config = None if args.resume is not None else _new_run_config(args)
        _stop_if_interrupted()
        with _claim_run_folder(args, main) as folder:
            _stop_if_interrupted()
            return _train_in(folder, config or folder.read_config(), device, args, main=main)
    finally:
        distributed.shutdown()


def _new_run_config(args: argparse.Namespace) -> RunConfig:
    """The settings of a new run, checked before anything is written."""
    import random

    from . import distributed
    from .state import RunConfig

    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    return RunConfig(
        _recipe_from(args),
        seed=distributed.broadcast_from_main(seed),  # every rank needs rank 0's
        limit=args.limit,
        validation_size=args.validation or 0,
    )


def _claim_run_folder(args: argparse.Namespace, main: bool) -> RunFolder:
    """The run's folder, claimed by rank 0 (the only one that writes) for the run's life."""
    from . import distributed
    from .runs import RunFolder

    if args.resume is not None:
        _refuse_settings_beside_resume(args)
        return RunFolder.interrupted(args.resume) if main else RunFolder(args.resume)
    folder = RunFolder.new(args.out, overwrite=args.overwrite) if main else RunFolder(".")
    path = distributed.broadcast_from_main(folder.path)  # the name rank 0 chose
    return folder if main else RunFolder(path)


def _train_in(
    folder: RunFolder,
    config: RunConfig,
    device: torch.device,
    args: argparse.Namespace,
    *,
    main: bool,
) -> int:
    from .callbacks import CallbackLike, LossHistory, PrintLoss, ProgressBar, StopOnSignal
    from .data import default_data_root
    from .fitting import fit
    from .loaders import select_splits
    from .loggers import CSVLogger, TensorBoardLogger
    from .runs import METRICS_CSV, TENSORBOARD, environment
    from .state import EpochReport

    data_root = args.data_root or default_data_root()
    recipe = config.recipe
    if main:
        folder.write_config(config, environment(device, data_root))
    _stop_if_interrupted()
    say = print if main else _silent
    say(
        f"{'Resuming' if args.resume else 'Training'} FashionMLP with recipe {recipe.name!r} "
        f"on {device}: {_plural(recipe.epochs, 'epoch', 'epochs')}, batch {recipe.batch_size}, "
        f"{_optimizer_summary(recipe)}, seed {config.seed}; run folder {folder.path}",
        flush=True,
    )
    batch_losses = LossHistory()
    # Loggers write from rank 0 only; metrics.csv continues a resumed run's rows.
    loggers: list[CSVLogger | TensorBoardLogger] = [CSVLogger(folder.path / METRICS_CSV)]
    if args.tensorboard:
        loggers.append(TensorBoardLogger(folder.path / TENSORBOARD, every=args.log_every))
    callbacks: list[CallbackLike] = [batch_losses, *loggers]
    progress = None
    if not main:
        pass
    elif recipe.log_every:
        callbacks += [_epoch_header, PrintLoss(recipe.log_every)]
    elif not args.no_progress and sys.stderr.isatty():
        try:
            progress = ProgressBar()
            callbacks.append(progress)
        except ImportError:
            pass  # tqdm is optional: plain per-epoch lines are printed either way

    def report(epoch: EpochReport) -> None:
        if progress is not None:
            progress.close()
        evaluated_on = config.evaluated_on
        loss = f", {evaluated_on} loss {epoch.eval.loss:.4f}" if epoch.eval.loss is not None else ""
        say(
            f"Epoch {epoch.epoch}/{epoch.epochs}: train loss {epoch.train.loss:.4f}, "
            f"{evaluated_on} accuracy {100 * epoch.eval.accuracy:.2f}%{loss}, "
            f"{epoch.train.seconds:.1f} s (total {epoch.seconds:.1f} s)",
            flush=True,
        )

    stop = StopOnSignal()
    resume_hint = f"resume with: fashionmlp train --resume {folder.path}"
    try:
        with stop.installed(), contextlib.ExitStack() as closing:
            for logger in loggers:
                closing.callback(logger.close)
            if progress is not None:  # a stopped run's bar ends before the message below
                closing.callback(progress.close)
            stop.received = stop.received or _received  # one that came just before
            result = fit(
                recipe,
                data_root,
                device=device,
                seed=config.seed,
                download=args.download,
                limit=config.limit,
                validation_size=config.validation_size,
                callbacks=[*callbacks, stop],
                epoch_callbacks=[report],
                checkpoint_path=folder.checkpoint,
                resume_from=folder.checkpoint if args.resume is not None else None,
                check_finite=not args.no_finite_check,
            )
    except KeyboardInterrupt:  # a second Ctrl-C: stopped at once, nothing more saved
        if not folder.checkpoint.exists():
            raise  # nothing to resume: the failed start is undone, "interrupted" is all
        if main:
            _fail(
                f"interrupted again: stopped at once, without saving the current epoch's "
                f"progress; the last checkpoint, {folder.checkpoint}, is intact; {resume_hint}"
            )
        return 128 + signal.SIGINT
    if result.stopped_at is not None:
        if main:
            epoch, batches = result.stopped_at
            _fail(
                f"interrupted during epoch {epoch} after "
                f"{_plural(batches, 'batch', 'batches')}; the run is saved in "
                f"{folder.checkpoint}; {resume_hint}"
            )
        return 128 + (stop.received or signal.SIGINT)
    if not main:
        return 0
    folder.write_results(result)
    if not args.no_plots:
        _, evaluated = select_splits(
            data_root, limit=config.limit, validation_size=config.validation_size
        )
        try:
            drawn = folder.write_plots(result, batch_losses.pairs, evaluated)
            print(f"Plots: {', '.join(path.name for path in drawn)}")
        except ImportError as exc:
            print(f"Plots skipped: {exc}")
    final = result.final
    print(
        f"Final {config.evaluated_on} accuracy {100 * final.accuracy:.2f}% after "
        f"{_plural(len(result.history), 'epoch', 'epochs')} in {result.history[-1].seconds:.1f} s; "
        f"the model is in {folder.path} (FashionMLP.from_pretrained)"
    )
    return 0


def _silent(*args: object, **kwargs: object) -> None:
    """``print`` for the ranks other than 0."""


def _epoch_header(event: BatchEvent) -> None:
    """The seed tutorial's epoch header, printed before the epoch's first loss line."""
    if event.batch == 0:
        print(f"Epoch {event.epoch}\n-------------------------------", flush=True)


def _recipe_from(args: argparse.Namespace) -> Recipe:
    from .recipes import get_recipe

    recipe = get_recipe(args.recipe or "fast")
    overrides = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "backend": args.backend,
        "hidden_features": args.hidden_features,
        "hidden_layers": args.hidden_layers,
        "dropout": args.dropout,
    }
    changes = {key: value for key, value in overrides.items() if value is not None}
    changes.update(args.set or [])
    if changes.get("backend") == "torchvision":
        # Augmentation lives in the tensor backend; the recipe's own is dropped, while one
        # asked for with --set is refused by the recipe's checks.
        changes.setdefault("hflip", False)
        changes.setdefault("translate", 0)
    return recipe.replace(**changes) if changes else recipe


#: The options a resumed run takes from its folder instead of the command line.
_RUN_SETTINGS = (
    "recipe",
    "epochs",
    "batch_size",
    "lr",
    "backend",
    "hidden_features",
    "hidden_layers",
    "dropout",
    "set",
    "seed",
    "limit",
    "validation",
)


def _refuse_settings_beside_resume(args: argparse.Namespace) -> None:
    given = [
        f"--{name.replace('_', '-')}"
        for name in (*_RUN_SETTINGS, "out")
        if getattr(args, name) is not None
    ]
    if args.overwrite:
        given.append("--overwrite")
    if given:
        raise InvalidArgumentError(
            f"--resume keeps the run's own settings; leave out {', '.join(given)}"
        )


# --- evaluate, predict, export ------------------------------------------------------------


def _evaluate(args: argparse.Namespace) -> int:
    import torch

    from .devices import resolve_device
    from .evaluation import evaluate
    from .loaders import make_loaders
    from .model import CLASSES, FashionMLP

    _stop_if_interrupted()
    device = resolve_device(args.device)
    model = FashionMLP.from_pretrained(args.run).to(device)
    note = _evaluated_differently(args.run)
    _, test = make_loaders(args.data_root, backend="tensor", device=device, download=args.download)
    result = evaluate(test, model, torch.nn.CrossEntropyLoss())
    if note:
        print(f"note: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps({"weights": str(args.run), "classes": list(CLASSES), **result.to_dict()}))
    else:
        print(_evaluation_text(result))
    return 0


def _evaluated_differently(run: Path) -> str | None:
    """What to say when the run reported its accuracy on other images than the test set."""
    from .runs import RUN, RunFolder

    if not (run / RUN).is_file():
        return None
    config = RunFolder(run).read_config()
    if config.validation_size:
        return (
            f"this run reported accuracy on {config.validation_size} held-out training images "
            "(--validation); this is the whole test set, which it never saw"
        )
    if config.limit is not None and config.limit < 10_000:
        return (
            f"this run (--limit {config.limit}) reported accuracy on the first {config.limit} "
            "test images; this is the whole test set of 10000"
        )
    return None


def _evaluation_text(result: EvalResult) -> str:
    from .model import CLASSES

    lines = [
        f"Test accuracy {100 * result.accuracy:.2f}% ({result.correct}/{result.total}), "
        f"test loss {result.loss:.4f}",
        "",
        f"{'class':<14}{'accuracy':>9}",
    ]
    lines += [
        f"{name:<14}{100 * accuracy:>8.1f}%"
        for name, accuracy in zip(CLASSES, result.per_class_accuracy)
    ]
    short = [name.split("/")[0][:7] for name in CLASSES]
    lines += ["", "Confusion matrix (rows: true class, columns: predicted class)"]
    lines.append(" " * 14 + "".join(f"{name:>8}" for name in short))
    lines += [
        f"{name:<14}" + "".join(f"{count:>8}" for count in row)
        for name, row in zip(CLASSES, result.confusion_matrix)
    ]
    return "\n".join(lines)


def _predict(args: argparse.Namespace) -> int:
    from .devices import resolve_device
    from .model import FashionMLP
    from .prediction import predict

    device = resolve_device(args.device)
    model = FashionMLP.from_pretrained(args.weights).to(device)
    invert = {"auto": None, "always": True, "never": False}[args.invert]
    failures = 0
    results: list[dict[str, Any]] = []
    for path in args.images:
        _stop_if_interrupted()
        try:
            [ranked] = predict(model, path, top=args.top, invert=invert)
        except FashionMLPError as exc:
            failures += 1
            if args.json:
                results.append({"file": str(path), "error": str(exc)})
            else:
                _fail(str(exc))
            continue
        if args.json:
            results.append(
                {
                    "file": str(path),
                    "predictions": [
                        {"label": p.label, "class": p.name, "probability": p.probability}
                        for p in ranked
                    ],
                }
            )
        else:
            shown = ", ".join(f"{p.name} {100 * p.probability:.1f}%" for p in ranked)
            print(f"{path}: {shown}", flush=True)
    if args.json:
        print(json.dumps(results, indent=2))
    return 1 if failures else 0


def _export(args: argparse.Namespace) -> int:
    from .export import export_onnx
    from .model import FashionMLP

    _stop_if_interrupted()
    model = FashionMLP.from_pretrained(args.run)
    run: Path = args.run
    out = args.out or (run / "model.onnx" if run.is_dir() else run.with_suffix(".onnx"))
    export_onnx(model, out, overwrite=args.overwrite)
    print(f"Wrote {out}: input 'images' float32 (N, 1, 28, 28) in [0, 1], output 'logits' (N, 10)")
    return 0


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "train": _train,
    "evaluate": _evaluate,
    "predict": _predict,
    "export": _export,
}
