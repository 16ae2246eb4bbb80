"""The ``fashionmlp`` command line: a thin front end over the public API.

Commands: ``train`` (a recipe, to a run folder), ``evaluate`` (a run or weights on the
test set) and ``predict`` (image files). Every failure the library reports becomes one
line on stderr and a non-zero exit status (1 for a failed run, 2 for a bad command line);
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import random
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

import torch

from . import __version__, distributed
from .callbacks import BatchEvent, CallbackLike, LossHistory, PrintLoss, ProgressBar
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .data import default_data_root, load_split
from .devices import model_device, resolve_device
from .errors import CheckpointError, FashionMLPError, InvalidArgumentError
from .evaluate import EvalResult, evaluate
from .loaders import FASHION_MNIST_MEAN, FASHION_MNIST_STD, make_loaders, validation_split
from .model import CLASSES, FashionMLP
from .predict import load_image, predict
from .recipes import RECIPES, EpochReport, FitResult, Recipe, StopTraining, fit, get_recipe
from .train import autocast_context

__all__ = ["build_parser", "main"]

CHECKPOINT = "checkpoint.pt"  # everything needed to resume, rewritten after every epoch
WEIGHTS = "model.pt"  # the finished run's weights and settings; its presence marks "finished"


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


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text}")
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
        help="train FashionMLP with a recipe and evaluate it after every epoch",
        description="Train the seed's FashionMLP with a recipe, evaluate it after every "
        "epoch, and write a run folder (weights, config, metrics, plots).",
    )
    train.add_argument(
        "--recipe",
        choices=sorted(RECIPES),
        default=None,
        help="fast (default): ~90%% test accuracy in a minute; seed: the seed exactly; "
        "long: the best accuracy",
    )
    train.add_argument("--epochs", type=_positive_int, help="override the recipe's epochs")
    train.add_argument("--batch-size", type=_positive_int, help="override the recipe's batch size")
    train.add_argument("--lr", type=_positive_float, help="override the recipe's learning rate")
    train.add_argument(
        "--backend", choices=("torchvision", "tensor"), help="override the recipe's data pipeline"
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
    train.add_argument("--out", type=Path, help="run folder to write (default: runs/<date>-<time>)")
    train.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    train.add_argument(
        "--no-progress", action="store_true", help="plain lines instead of a progress bar"
    )
    train.add_argument("--no-plots", action="store_true", help="do not write the PNG plots")
    train.add_argument(
        "--no-finite-check",
        action="store_true",
        help="keep training when the loss becomes NaN or infinite (default: stop)",
    )
    _data_options(train)
    _device_option(train)

    evaluate_command = commands.add_parser(
        "evaluate",
        help="evaluate a run's weights on the test set",
        description="Evaluate a finished run (or a weights file) on the test set: "
        "accuracy, per-class accuracy and the confusion matrix.",
    )
    evaluate_command.add_argument("run", type=Path, metavar="RUN_OR_WEIGHTS")
    evaluate_command.add_argument("--json", action="store_true", help="print JSON")
    _data_options(evaluate_command)
    _device_option(evaluate_command)

    predict_command = commands.add_parser(
        "predict",
        help="classify image files",
        description="Classify PNG or JPEG files with trained weights. Each picture is "
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
        "--top", type=_positive_int, default=3, help="classes to show per image (default 3)"
    )
    predict_command.add_argument("--json", action="store_true", help="print JSON")
    _device_option(predict_command)
    return parser


def _data_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help=f"dataset folder (default: $FASHIONMLP_DATA or {default_data_root()})",
    )
    command.add_argument(
        "--download",
        action="store_true",
        help="download the dataset if no local copy is found (needs internet)",
    )


def _device_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:N, mps or auto (default auto)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    args = build_parser().parse_args(argv)
    commands = {"train": _train, "evaluate": _evaluate, "predict": _predict}
    try:
        return commands[args.command](args)
    except FashionMLPError as exc:
        if args.debug:
            raise
        _fail(str(exc))
        return 1
    except KeyboardInterrupt:
        if args.debug:
            raise
        _fail("interrupted")
        return 130


def _fail(message: str) -> None:
    print(f"fashionmlp: error: {' '.join(message.split())}", file=sys.stderr)


# --- train -------------------------------------------------------------------------------


def _train(args: argparse.Namespace) -> int:
    # Under torchrun every process runs this; rank 0 alone prints and writes files.
    device = distributed.init_from_environment(resolve_device(args.device))
    try:
        return _train_on(device, args, main=distributed.is_main_process())
    finally:
        distributed.shutdown()


def _train_on(device: torch.device, args: argparse.Namespace, *, main: bool) -> int:
    data_root = args.data_root or default_data_root()
    if args.resume is not None:
        out, recipe, settings = _resumable_run(args)
        resume_from: Path | None = out / CHECKPOINT
    else:
        out = _new_run_folder(args.out, overwrite=args.overwrite) if main else Path()
        recipe = _recipe_from(args)
        seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
        settings = {
            "seed": distributed.broadcast_from_main(seed),  # every rank needs rank 0's
            "limit": args.limit,
            "validation_size": args.validation or 0,
        }
        resume_from = None
    evaluated_on = "validation" if settings["validation_size"] else "test"
    config: dict[str, Any] = {
        "recipe": recipe.to_dict(),
        **settings,
        "device": str(device),
        "data_root": str(data_root),
        "fashionmlp": __version__,
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "processes": distributed.world_size(),
    }
    if main:
        (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    say = print if main else _silent

    verb = "Resuming" if resume_from else "Training"
    say(
        f"{verb} FashionMLP with recipe {recipe.name!r} on {device}: {recipe.epochs} epochs, "
        f"batch {recipe.batch_size}, {recipe.optimizer} lr {recipe.lr}, seed {settings['seed']}; "
        f"run folder {out}",
        flush=True,
    )
    batch_losses = LossHistory()
    callbacks: list[CallbackLike] = [batch_losses]
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
        loss = f", {evaluated_on} loss {epoch.eval.loss:.4f}" if epoch.eval.loss is not None else ""
        say(
            f"Epoch {epoch.epoch}/{epoch.epochs}: train loss {epoch.train.loss:.4f}, "
            f"{evaluated_on} accuracy {100 * epoch.eval.accuracy:.2f}%{loss}, "
            f"{epoch.train.seconds:.1f} s (total {epoch.seconds:.1f} s)",
            flush=True,
        )

    stop = _StopOnSignal()
    with stop.installed():
        result = fit(
            recipe,
            data_root,
            device=device,
            seed=settings["seed"],
            download=args.download,
            limit=settings["limit"],
            validation_size=settings["validation_size"],
            callbacks=[*callbacks, stop],
            epoch_callbacks=[report],
            checkpoint_path=out / CHECKPOINT,
            resume_from=resume_from,
            check_finite=not args.no_finite_check,
        )
    if result.stopped_at is not None:
        if progress is not None:
            progress.close()
        if main:
            _fail(_interrupted_message(out, *result.stopped_at))
        return 128 + (stop.received or signal.SIGINT)
    if not main:
        return 0
    save_checkpoint(out / WEIGHTS, result.model, epoch=len(result.history), config=config)
    metrics = _metrics(result, evaluated_on)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    if not args.no_plots:
        _write_plots(out, result, batch_losses, data_root, settings)
    final = result.final
    print(
        f"Final {evaluated_on} accuracy {100 * final.accuracy:.2f}% after {len(result.history)} "
        f"epochs in {result.history[-1].seconds:.1f} s; weights in {out / WEIGHTS}"
    )
    return 0


class _Interrupted(StopTraining):
    """Raised at a batch boundary after SIGINT or SIGTERM; fit() saves that point."""


class _StopOnSignal:
    """Turns SIGINT/SIGTERM into a stop at the next batch boundary.

    The handler only records the signal; this callback raises after the batch's optimizer
    step, so no step or checkpoint write is ever cut in half. A second Ctrl-C stops at once.
    """

    def __init__(self) -> None:
        self.received: int | None = None

    def on_batch_end(self, event: BatchEvent) -> None:
        # Under torchrun all ranks must stop at the same batch, or the others would wait
        # forever in the next gradient all-reduce: they agree on it here, every batch.
        received = distributed.max_over_ranks(self.received or 0)
        if received:
            self.received = received
            raise _Interrupted(
                f"signal {received} after batch {event.batch} of epoch {event.epoch}"
            )

    def _handle(self, signal_number: int, frame: object) -> None:
        if self.received == signal.SIGINT == signal_number:
            raise KeyboardInterrupt
        self.received = signal_number

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Handle both signals inside the block; the previous handlers come back after."""
        previous = {
            number: signal.signal(number, self._handle)
            for number in (signal.SIGINT, signal.SIGTERM)
        }
        for number in previous:
            # The handler only records the signal, so let interrupted system calls resume
            # (a gloo transfer cut short by EINTR could fail the whole process group).
            signal.siginterrupt(number, False)
        try:
            yield
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)


def _silent(*args: object, **kwargs: object) -> None:
    """``print`` for the ranks other than 0."""


def _interrupted_message(out: Path, epoch: int, batches: int) -> str:
    return (
        f"interrupted during epoch {epoch} after {batches} batch(es); the run is saved in "
        f"{out / CHECKPOINT}; resume with: fashionmlp train --resume {out}"
    )


def _epoch_header(event: BatchEvent) -> None:
    """The seed tutorial's epoch header, printed before the epoch's first loss line."""
    if event.batch == 0:
        print(f"Epoch {event.epoch}\n-------------------------------", flush=True)


def _recipe_from(args: argparse.Namespace) -> Recipe:
    recipe = get_recipe(args.recipe or "fast")
    overrides = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "backend": args.backend,
    }
    changes = {key: value for key, value in overrides.items() if value is not None}
    if changes.get("backend") == "torchvision" and (recipe.hflip or recipe.translate):
        changes.update(hflip=False, translate=0)  # augmentation lives in the tensor backend
    return recipe.replace(**changes) if changes else recipe


def _resumable_run(args: argparse.Namespace) -> tuple[Path, Recipe, dict[str, Any]]:
    run: Path = args.resume
    given = [
        f"--{name.replace('_', '-')}"
        for name in (
            "recipe",
            "epochs",
            "batch_size",
            "lr",
            "backend",
            "seed",
            "limit",
            "validation",
            "out",
        )
        if getattr(args, name) is not None
    ]
    if given:
        raise InvalidArgumentError(
            f"--resume keeps the run's own settings; leave out {', '.join(given)}"
        )
    if not (run / CHECKPOINT).is_file() or not (run / "config.json").is_file():
        raise InvalidArgumentError(
            f"--resume {run}: no interrupted run there (it needs {CHECKPOINT} and config.json)"
        )
    if (run / WEIGHTS).exists():
        raise InvalidArgumentError(f"--resume {run}: that run already finished")
    try:
        config = json.loads((run / "config.json").read_text())
        recipe = Recipe.from_dict(config["recipe"])
        settings = {key: config[key] for key in ("seed", "limit", "validation_size")}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"--resume {run}: config.json is unreadable ({exc})") from exc
    return run, recipe, settings


RUN_FILES = (
    CHECKPOINT,
    WEIGHTS,
    "config.json",
    "metrics.json",
    "loss.png",
    "accuracy.png",
    "confusion_matrix.png",
    "misclassified.png",
)


def _new_run_folder(out: Path | None, *, overwrite: bool) -> Path:
    """The run folder, created, and empty of an earlier run's files.

    A new run goes into a folder that does not exist or is empty. An earlier run's
    folder is reused only with ``overwrite``, and then only its own files are removed;
    a folder with anything else in it is never written into.
    """
    if out is None:
        out = Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")
        out.parent.mkdir(exist_ok=True)
    elif not out.parent.is_dir():
        raise InvalidArgumentError(
            f"--out {out}: its parent folder {out.parent} does not exist; create it first"
        )
    if out.exists() and not out.is_dir():
        raise InvalidArgumentError(f"--out {out} is a file, not a folder; choose another --out")
    contents = {path.name for path in out.iterdir()} if out.is_dir() else set()
    if contents:
        if not contents <= set(RUN_FILES) or "config.json" not in contents:
            raise InvalidArgumentError(
                f"--out {out} is not empty and is not a fashionmlp run folder; "
                "choose a new or empty folder"
            )
        if not overwrite:
            state = "a finished run" if WEIGHTS in contents else "an interrupted run"
            hint = "" if WEIGHTS in contents else f" (or continue it with --resume {out})"
            raise InvalidArgumentError(
                f"--out {out} already holds {state}; choose another --out or pass "
                f"--overwrite to replace it{hint}"
            )
        for name in contents:  # only the run's own files, checked above
            (out / name).unlink()
    try:
        out.mkdir(exist_ok=True)
    except OSError as exc:
        raise InvalidArgumentError(f"cannot create --out {out} ({exc.strerror or exc})") from exc
    return out


def _metrics(result: FitResult, evaluated_on: str) -> dict[str, Any]:
    reached = [r.seconds for r in result.history if r.eval.accuracy >= 0.90]
    return {
        "evaluated_on": evaluated_on,
        "epochs": [report.to_dict() for report in result.history],
        "final": result.final.to_dict(),
        f"final_{evaluated_on}_accuracy": result.final.accuracy,
        "wall_seconds": result.history[-1].seconds,
        "seconds_to_90_percent": reached[0] if reached else None,
        "precision": result.config["precision"],
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _write_plots(
    out: Path,
    result: FitResult,
    batch_losses: LossHistory,
    data_root: Path,
    settings: dict[str, Any],
) -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("Plots skipped: install matplotlib (pip install 'fashionmlp[plots]')")
        return
    from . import plots

    history = result.history
    per_epoch = history[-1].train.batches
    # After a resume, this process saw only the later epochs' batches.
    offset = (len(history) - len(batch_losses) // per_epoch) * per_epoch
    recipe = Recipe.from_dict(result.config["recipe"])
    plots.plot_losses(
        out / "loss.png",
        [(step + offset, loss) for step, loss in batch_losses.pairs],
        history,
        label_smoothing=recipe.label_smoothing,
    )
    plots.plot_accuracy(out / "accuracy.png", history)
    plots.plot_confusion_matrix(out / "confusion_matrix.png", result.final.confusion_matrix)
    images, labels = _evaluation_images(data_root, settings)
    autocast = torch.bfloat16 if result.config["precision"] == "bfloat16" else None
    predicted = _predicted_labels(result.model, images, recipe.normalize, autocast)
    plots.plot_misclassified(out / "misclassified.png", images, labels, predicted)
    print(f"Plots: {', '.join(p.name for p in sorted(out.glob('*.png')))}")


def _evaluation_images(
    data_root: Path, settings: dict[str, Any]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The images the run was evaluated on, in the loaders' order."""
    if settings["validation_size"]:
        images, labels = load_split(data_root, "train")
        _, index = validation_split(labels, settings["validation_size"])
        images, labels = images[index], labels[index]
    else:
        images, labels = load_split(data_root, "test")
    limit = settings["limit"]
    return (images[:limit], labels[:limit]) if limit else (images, labels)


@torch.no_grad()
def _predicted_labels(
    model: torch.nn.Module, images: torch.Tensor, normalize: bool, autocast: torch.dtype | None
) -> torch.Tensor:
    """Predicted labels computed as the run's evaluation computed them."""
    model.eval()
    x = images.unsqueeze(1).float().div(255)
    if normalize:
        x = (x - FASHION_MNIST_MEAN) / FASHION_MNIST_STD
    device = model_device(model)
    with autocast_context(device, autocast):
        chunks = [model(chunk.to(device)).argmax(1).cpu() for chunk in torch.split(x, 5000)]
    return torch.cat(chunks)


# --- evaluate and predict ----------------------------------------------------------------


def _load_trained(path: Path, device: torch.device) -> tuple[FashionMLP, Checkpoint, bool]:
    """The model in a run folder or weights file, and whether it expects normalized input."""
    if path.is_dir():
        candidates = [path / WEIGHTS, path / CHECKPOINT]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise CheckpointError(f"{path} holds no {WEIGHTS} or {CHECKPOINT}; is it a run folder?")
        path = found
    model = FashionMLP()
    checkpoint = load_checkpoint(path, model)
    normalize = bool(checkpoint.config.get("recipe", {}).get("normalize", False))
    return model.to(device), checkpoint, normalize


def _evaluate(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    model, _, normalize = _load_trained(args.run, device)
    _, test = make_loaders(
        args.data_root or default_data_root(),
        backend="tensor",
        device=device,
        download=args.download,
        normalize=normalize,
    )
    result = evaluate(test, model, torch.nn.CrossEntropyLoss())
    if args.json:
        print(json.dumps({"weights": str(args.run), "classes": list(CLASSES), **result.to_dict()}))
    else:
        print(_evaluation_text(result))
    return 0


def _evaluation_text(result: EvalResult) -> str:
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
    device = resolve_device(args.device)
    model, _, normalize = _load_trained(args.weights, device)
    invert = {"auto": None, "always": True, "never": False}[args.invert]
    mean_std = (FASHION_MNIST_MEAN, FASHION_MNIST_STD) if normalize else None
    failures = 0
    results: list[dict[str, Any]] = []
    for path in args.images:
        try:
            image = load_image(path, invert=invert)
            [ranked] = predict(model, image, top=args.top, normalize=mean_std)
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
