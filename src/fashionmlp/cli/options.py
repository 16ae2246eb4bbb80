"""The options the commands share, and the recipe's options, derived from its fields.

Every field of :class:`~fashionmlp.Recipe` (and of its ``model`` table) is a flag of its own
name, ``--batch-size``, ``--hidden-features``, typed and checked from the field itself:
its declared type (a number, true or false with ``--no-...``, one of the choices, a pair),
its range and its documentation, so that a new recipe field needs no edit here.
``--set FIELD=VALUE`` sets any field too. Nothing here imports torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import math
import re
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, NoReturn

from .. import config
from ..config import RECIPES, Recipe, check_device_name, recipe_from
from ..errors import DeviceError, InvalidArgumentError

__all__ = [
    "Parser",
    "add_data_options",
    "add_device_option",
    "add_recipe_options",
    "recipe_changes",
    "recipe_destinations",
    "seed_list",
    "whole_number",
]


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line naming the fix, not the whole usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def whole_number(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` to ``high``, with a one-line error."""
    limits = config.Range(low=low, high=high)
    return _parser_of(int, limits)


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


def _plain(text: str) -> str:
    """A field's documentation as help text: Sphinx's markup taken out, ``%`` escaped."""
    text = re.sub(r":\w+:`~?(?:[\w.]*\.)?([^`]+)`", r"\1", text)  # :class:`~a.B` -> B
    return re.sub(r"``(.+?)``", r"\1", text).replace("%", "%%")


def recipe_destinations() -> dict[str, str]:
    """Each recipe flag's argparse destination and the field path it sets."""
    return {"recipe_" + path.replace(".", "_"): path for path, _, _ in _recipe_fields()}


def add_recipe_options(command: argparse.ArgumentParser) -> None:
    """``--recipe NAME|FILE``, a flag per recipe field, and ``--set FIELD=VALUE``."""
    group = command.add_argument_group(
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
    fields = _recipe_fields()
    docs = {owner: field_docs(owner) for owner in {owner for _, _, owner in fields}}
    for (path, kind, owner), dest in zip(fields, recipe_destinations()):
        name = path.rsplit(".", 1)[-1]
        flag = "--" + name.replace("_", "-")
        help_text = _plain(docs[owner].get(name, ""))
        options: dict[str, Any] = {"dest": dest, "default": None, "help": help_text}
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(kind) is Literal:
            options["choices"] = typing.get_args(kind)
        elif typing.get_origin(kind) is tuple:
            options.update(type=_pair, metavar="MEAN,STD")
        else:
            limits = config.value_range(owner, name)
            metavar = "N" if kind is int else ("TEXT" if kind is str else "X")
            options.update(
                type=_parser_of(kind, limits) if kind in (int, float) else kind, metavar=metavar
            )
        group.add_argument(flag, **options)
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
    changes = {
        path: getattr(args, dest)
        for dest, path in recipe_destinations().items()
        if getattr(args, dest) is not None
    }
    changes.update(args.set or [])
    return changes


def chosen_recipe(args: argparse.Namespace) -> Recipe:
    """The recipe the command line names (``fast`` by default) with its changes (see
    :func:`~fashionmlp.config.override`).

    Augmentation lives in the tensor backend: switching to the torchvision one drops the
    recipe's own, while one asked for beside it is refused by the recipe's checks.
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


def add_data_options(command: argparse.ArgumentParser) -> None:
    """``--data-root`` and ``--download``."""
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


def add_device_option(command: argparse.ArgumentParser) -> None:
    """``--device``."""
    command.add_argument(
        "--device",
        type=_device_name,
        default="auto",
        help="cpu, cuda, cuda:N, mps or auto (default auto)",
    )


def field_docs(cls: type) -> dict[str, str]:
    """Each field's documentation: the ``#:`` comment lines above it in the class's source,
    as Sphinx reads them (empty when the source cannot be had)."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    docs: dict[str, str] = {}
    comment: list[str] = []
    for line in source.splitlines():
        stripped = line.strip()
        if stripped.startswith("#:"):
            comment.append(stripped[2:].strip())
            continue
        field = re.match(r"(\w+)\s*:", stripped)
        if field and comment:
            docs[field.group(1)] = " ".join(comment)
        comment = []
    return docs


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
