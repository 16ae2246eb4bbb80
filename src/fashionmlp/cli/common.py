"""What the commands share: the parser and the options many take (a recipe's, derived from
its fields), one-line failures, signals during start-up, and reading a trained model.

Nothing here imports torch, so ``fashionmlp --help`` and a usage mistake answer at once.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import inspect
import json
import math
import os
import re
import sys
import threading
import typing
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal, NoReturn

from .. import config
from ..callbacks import signals_handled
from ..config import RECIPES, Recipe, check_device_name, recipe_from
from ..errors import DeviceError, InvalidArgumentError
from ..loggers import TRACKERS

if TYPE_CHECKING:
    from ..model import FashionMLP


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line naming the fix, not the whole usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def number(kind: type, **bounds: Any) -> Callable[[str], Any]:
    """An argparse type: a number of ``kind`` in ``Range(**bounds)``, a one-line error."""
    return _parser_of(kind, config.Range(**bounds))


def whole_number(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` to ``high``."""
    return number(int, low=low, high=high)


def _parser_of(kind: type, limits: config.Range | None) -> Callable[[str], Any]:
    """An argparse type reading a number of ``kind`` and checking it against ``limits``."""
    word = "a whole number" if kind is int else "a number"

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {word}, got {text!r}") from None
        problem = limits.refuse(value) if limits is not None else None
        if kind is float and problem is None and not math.isfinite(value):
            problem = f"must be a finite number, got {text}"
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


def _pair(text: str) -> tuple[float, float]:
    """``MEAN,STD``: two numbers."""
    try:
        first, second = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MEAN,STD (two numbers), got {text!r}") from None
    return (first, second)


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


def _recipe_name_or_file(text: str) -> str:
    if text in RECIPES or text.endswith((".toml", ".json")) or "/" in text:
        return text
    raise argparse.ArgumentTypeError(
        f"invalid choice: {text!r} (choose from {', '.join(RECIPES)}, or give a recipe file "
        "ending in .toml or .json)"
    )


def _device_name(text: str) -> str:
    try:
        return check_device_name(text)
    except DeviceError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# --- the recipe's options, one per field --------------------------------------------------


def _recipe_fields(cls: type | None = None, prefix: str = "") -> list[tuple[str, Any, type]]:
    """``(path, type, cls)`` of every recipe field, the model's included, in order."""
    cls = cls or Recipe  # looked up when called, so a test can give a wider one
    found = []
    for name, kind in config.fields(cls).items():
        if dataclasses.is_dataclass(kind):
            found += _recipe_fields(kind, f"{prefix}{name}.")  # type: ignore[arg-type]
        else:
            found.append((f"{prefix}{name}", kind, cls))
    return found


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Each field's documentation: the ``#:`` comment lines above it in the class's source,
    as Sphinx reads them, Sphinx's markup taken out (empty when the source cannot be had).

    The class is found by its name in its file's text, not by :func:`inspect.getsource`,
    which parses the whole file: the command line would start a quarter second later.
    """
    try:
        lines = Path(inspect.getsourcefile(cls) or "").read_text().splitlines()
    except (OSError, TypeError):
        return {}
    starts = [i for i, line in enumerate(lines) if re.match(rf"\s*class {cls.__name__}\b", line)]
    if not starts:
        return {}
    indent = len(lines[starts[0]]) - len(lines[starts[0]].lstrip())
    docs: dict[str, str] = {}
    comment: list[str] = []
    for line in lines[starts[0] + 1 :]:
        stripped = line.strip()
        if stripped and len(line) - len(line.lstrip()) <= indent:
            break  # the class has ended
        if stripped.startswith("#:"):
            comment.append(stripped[2:].strip())
            continue
        field = re.match(r"(\w+)\s*:", stripped)
        if field and comment:
            text = re.sub(r":\w+:`~?(?:[\w.]*\.)?([^`]+)`", r"\1", " ".join(comment))
            docs[field.group(1)] = re.sub(r"``(.+?)``", r"\1", text).replace("%", "%%")
        comment = []
    return docs


def add_recipe_options(parser: argparse.ArgumentParser) -> None:
    """``--recipe NAME|FILE``, a flag per recipe field (``--batch-size``,
    ``--hidden-features``, ``--no-hflip``: typed, ranged and documented by the field
    itself), and ``--set FIELD=VALUE``."""
    group = parser.add_argument_group(
        "recipe", "Each option overrides the recipe's field of the same name."
    )
    group.add_argument(
        "--recipe",
        type=_recipe_name_or_file,
        metavar="NAME|FILE",
        help="fast (default): about 90.7%% test accuracy in 8 epochs (7 s on 2 CPU cores "
        "with native bfloat16, 21 s in float32); seed: the seed exactly; long: the best "
        "accuracy; or a recipe file (.toml or .json, as Recipe.save writes it)",
    )
    for path, kind, owner in _recipe_fields():
        name = path.rsplit(".", 1)[-1]
        help_text = field_docs(owner).get(name, "")
        # The field's path is the option's destination: recipe_changes reads it back.
        options: dict[str, Any] = {"dest": f"recipe:{path}", "default": None, "help": help_text}
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(kind) is Literal:
            options["choices"] = typing.get_args(kind)
        elif typing.get_origin(kind) is tuple:
            options.update(type=_pair, metavar="MEAN,STD")
        elif kind in (int, float):
            limits = config.value_range(owner, name)
            options.update(type=_parser_of(kind, limits), metavar="N" if kind is int else "X")
        else:
            options.update(type=kind, metavar="TEXT")
        group.add_argument("--" + name.replace("_", "-"), **options)
    group.add_argument(
        "--set",
        type=_setting,
        action="append",
        metavar="FIELD=VALUE",
        help="set any recipe field, e.g. --set weight_decay=0.1 --set model.dropout=0.1 "
        "(repeatable; values are JSON: numbers, true/false, or text)",
    )


def recipe_changes(args: argparse.Namespace) -> dict[str, Any]:
    """The recipe fields the command line set: the flags given, then ``--set``'s."""
    given = vars(args).items()
    changes = {
        name[7:]: value for name, value in given if name[:7] == "recipe:" and value is not None
    }
    changes.update(args.set or [])
    return changes


def chosen_recipe(args: argparse.Namespace) -> Recipe:
    """The recipe the command line names (``fast`` by default) with its changes (see
    :func:`~fashionmlp.config.override`).

    Augmentation lives in the tensor backend: switching to the torchvision one drops the
    recipe's own, while one asked for beside it is refused by the recipe's checks. A field
    the recipe does not use (``--momentum`` with Muon) is refused, naming what uses it.
    """
    recipe = recipe_from(args.recipe or "fast")
    changes = recipe_changes(args)
    if changes.get("backend") == "torchvision":
        changes = {"hflip": False, "translate": 0, **changes}
    recipe = config.override(recipe, changes) if changes else recipe
    unused = recipe.unused()
    for name in changes:
        field = name.rsplit(".", 1)[-1]
        if field in unused:
            raise InvalidArgumentError(
                f"recipe {recipe.name!r} does not use {field}, which is {unused[field]} "
                f"(its optimizer is {recipe.optimizer}, its schedule {recipe.schedule}); "
                f"leave it out, or change what uses it"
            )
    return recipe


# --- options many commands take ----------------------------------------------------------


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """``--data-root`` and ``--download``."""
    parser.add_argument(
        "--data-root",
        type=Path,
        help="dataset folder (default: $FASHIONMLP_DATA, else ~/.cache/fashionmlp)",
    )
    parser.add_argument(
        "--download",
        action="store_true",
        help="download the dataset if no local copy is found (needs internet)",
    )


def add_device_option(parser: argparse.ArgumentParser) -> None:
    """``--device``."""
    parser.add_argument(
        "--device",
        type=_device_name,
        default="auto",
        help="cpu, cuda, cuda:N, mps or auto (default auto)",
    )


def add_tracker_options(parser: argparse.ArgumentParser) -> None:
    """``--NAME [URI]`` and ``--NAME-experiment`` for each tracker of
    :data:`~fashionmlp.loggers.TRACKERS`; a malformed URI is refused here, before anything
    runs."""
    group = parser.add_argument_group("tracking")
    for name, (_, extra) in TRACKERS.items():
        group.add_argument(
            f"--{name}",
            nargs="?",
            const="",
            type=_tracking_uri(name),
            metavar="URI",
            help=f"also log to {name}: a tracking URI; without one, its default store "
            f"(pip install 'fashionmlp[{extra}]')",
        )
        group.add_argument(
            f"--{name}-experiment",
            default="fashionmlp",
            metavar="NAME",
            help=f"the {name} experiment (default fashionmlp)",
        )


def _tracking_uri(name: str) -> Callable[[str], str]:
    def check(text: str) -> str:
        from ..loggers import tracker

        try:
            return str(tracker(name).check_uri(text or None))
        except InvalidArgumentError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return check


def trackers(
    args: argparse.Namespace, run_name: str | None, saved: dict[str, Any] | None = None
) -> list[object]:
    """The trackers the options ask for (``--mlflow``, ...), or, for a resumed run, those
    whose state its checkpoint holds (they continue their runs, with or without the option)."""
    from ..loggers import tracker

    made = []
    for name, (where, _) in TRACKERS.items():
        state = (saved or {}).get(where.rpartition(":")[2])  # saved by its class's name
        uri = state["tracking_uri"] if state else getattr(args, name)
        if uri is not None:
            experiment = state["experiment"] if state else getattr(args, f"{name}_experiment")
            every = getattr(args, "log_every", 50)
            made.append(
                tracker(name)(
                    uri, experiment=experiment, run_name=run_name, every=every, log_model=False
                )
            )
    return made


def seed_list(text: str) -> list[int]:
    """``0-4`` or ``0,3,7``: the seeds, each once, in order."""
    try:
        if "-" in text and "," not in text:
            first, last = (int(part) for part in text.split("-"))
            seeds = list(range(first, last + 1))
        else:
            seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected A-B or A,B,C (whole numbers), got {text!r}"
        ) from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"expected distinct seeds of 0 or more, got {text!r}")
    return seeds


# --- failures, signals, warnings ----------------------------------------------------------


def fail(message: str) -> None:
    """Say what failed, on one line of stderr."""
    print(f"fashionmlp: error: {' '.join(message.split())}", file=sys.stderr)


def plural(count: int, noun: str, nouns: str) -> str:
    """``1 epoch``, ``3 epochs``."""
    return f"{count} {noun if count == 1 else nouns}"


class Interrupted(KeyboardInterrupt):
    """A signal received while the command started up, raised at a safe point."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(signal_number)
        self.signal_number = signal_number


_received: int | None = None


def received() -> int | None:
    """The signal received during start-up and not yet acted on, if any."""
    return _received


@contextlib.contextmanager
def startup_signals() -> Iterator[None]:
    """Ctrl-C and SIGTERM while a command starts up: recorded, acted on at safe points.

    Python raises KeyboardInterrupt wherever the main thread is; inside the import of a C
    extension (torch, numpy) that can leave a half-imported module or abort the process.
    So until training installs its own handling (StopOnSignal), a signal is only recorded
    here and :func:`stop_if_interrupted` raises it between steps. A second signal (Ctrl-C
    or SIGTERM) leaves at once.
    """
    global _received
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def record(number: int, frame: FrameType | None) -> None:
        global _received
        if _received is not None:  # asked twice: whatever the command is doing, it ends now
            sys.stderr.write("fashionmlp: error: interrupted\n")
            os._exit(128 + number)
        _received = number

    _received = None
    with signals_handled(record):
        yield


def stop_if_interrupted() -> None:
    """Raise the signal recorded during start-up, if any: this is a safe point."""
    if _received is not None:
        raise Interrupted(_received)


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """Show the library's own warnings (a tracking server that stopped answering, say) as
    one line, as its errors are; other warnings as Python shows them."""
    with warnings.catch_warnings():
        previous = warnings.showwarning

        def show(
            message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any
        ) -> None:
            if category.__module__.startswith("fashionmlp"):
                print(f"fashionmlp: warning: {message}", file=sys.stderr, flush=True)
            else:
                previous(message, category, *args, **kwargs)

        warnings.showwarning = show
        yield


def load_model(path: Path) -> FashionMLP:
    """The model a command reads (``FashionMLP.from_pretrained``), an unfinished run folder
    refused in the command line's words: still training, or to be resumed."""
    from .._files import check_name
    from ..errors import CheckpointError
    from ..model import FashionMLP
    from ..runs import CHECKPOINT, WEIGHTS, RunFolder

    check_name(path, error=CheckpointError)
    if path.is_dir() and (path / CHECKPOINT).is_file() and not (path / WEIGHTS).is_file():
        owner = RunFolder(path).owner()
        last = path / CHECKPOINT
        if owner is not None:
            raise CheckpointError(
                f"{path} is in use by a run of {owner}: it is still training; use it once it "
                f"finishes (or its last checkpoint, {last})"
            )
        raise CheckpointError(
            f"{path} holds an unfinished run: finish it with fashionmlp train --resume {path}, "
            f"or use its last checkpoint, {last}"
        )
    return FashionMLP.from_pretrained(path)
