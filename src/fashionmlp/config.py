"""How to train, as plain data: recipes, a run's settings, the model's config, the dataset's
facts, and the files they are kept in.

Three settings objects describe a run. :class:`FashionMLPConfig` is a model's constructor
arguments; :class:`Recipe` names the model, the optimizer, schedule, batch size,
regularisation and data pipeline; :class:`RunConfig` adds what else decides the result (the
seed, the data used). Each is a frozen dataclass checked when made, by one rule
(:func:`check`): every field holds a value of its declared type (an int passes for a float,
a list of two numbers for a pair, a table for a nested settings object) inside its
:class:`Range`. They turn into JSON-ready dicts (:func:`to_dict`) and back
(:func:`from_dict`, which names every unknown or missing key), and into TOML or JSON files
(:func:`save`, :func:`load`); :func:`override` applies ``FIELD=VALUE`` changes, as
``--set`` does and nanoGPT's ``configurator.py`` did.

Every file the library writes carries its format (:data:`FORMAT_VERSION`) and the version
of fashionmlp that wrote it (:func:`stamped`); every reader takes each older format,
upgrading what it holds to today's (:func:`upgrade`), and refuses a newer one in one line
naming the version that wrote it. Files without a format are 0.1.0's, format 1.

Shipped recipes (all train the seed's ``FashionMLP()`` unchanged):

``seed``
    The seed exactly: SGD lr 0.01, batch 64, torchvision loaders, loss lines every 100
    batches, 5 epochs.
``fast`` (the command line's default)
    Muon for the hidden weight matrices and AdamW for the biases and the output layer
    (:class:`~fashionmlp.optim.Muon`), one-cycle schedules, batch 2048, label smoothing 0.1,
    weight decay 0.2, random horizontal flips, normalization inside the model, the tensor
    backend, and bfloat16 autocast where the device computes it natively. About 90.7% test
    accuracy in 8 epochs.
``long``
    The fast recipe at batch 1024 for 80 epochs, with small random translations: about 92%.

Hyperparameters were chosen on a validation split of 5,000 training images
(``validation_size=5000``), first by a grid and then by ``fashionmlp sweep`` over the space
files in ``benchmarks/spaces/``; the test set was used only to report the final figures.

This module imports neither torch nor anything heavy, so the command line reads and checks
settings before it pays for torch.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import sys
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Final, Literal, TypeVar

from typing_extensions import Self

from ._files import atomic_write, os_error_fix, read_regular_file
from ._version import __version__
from .errors import DeviceError, InvalidArgumentError

__all__ = [
    "CLASSES",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_NORMALIZATION",
    "FASHION_MNIST_STD",
    "FORMAT_VERSION",
    "IMAGE_SIZE",
    "NO_NORMALIZATION",
    "NUM_CLASSES",
    "RECIPES",
    "TEST_IMAGES",
    "TRAIN_IMAGES",
    "Backend",
    "FashionMLPConfig",
    "Range",
    "Recipe",
    "RunConfig",
    "Settings",
    "check",
    "check_device_name",
    "differences",
    "fields",
    "flat",
    "from_dict",
    "get_recipe",
    "load",
    "override",
    "ranged",
    "recipe_from",
    "replace",
    "resolve_name",
    "save",
    "stamped",
    "to_dict",
    "upgrade",
    "value_range",
]

T = TypeVar("T")

# --- the dataset's facts ---------------------------------------------------------------

#: The ten FashionMNIST class names, in label order (label ``i`` is ``CLASSES[i]``).
CLASSES: Final[tuple[str, ...]] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
#: Side of a FashionMNIST image in pixels.
IMAGE_SIZE: Final = 28
#: Number of classes.
NUM_CLASSES: Final = len(CLASSES)
#: The images of each of FashionMNIST's splits.
TRAIN_IMAGES: Final = 60_000
TEST_IMAGES: Final = 10_000
#: Mean pixel value of the training images (after ``ToTensor()``).
FASHION_MNIST_MEAN: Final = 0.2860
#: Standard deviation of the training images' pixels (after ``ToTensor()``).
FASHION_MNIST_STD: Final = 0.3530
#: ``normalize`` for FashionMNIST's own mean and standard deviation.
FASHION_MNIST_NORMALIZATION: Final = (FASHION_MNIST_MEAN, FASHION_MNIST_STD)
#: ``normalize`` that leaves the input as it is: ``(x - 0) / 1`` is ``x``, bit for bit.
NO_NORMALIZATION: Final = (0.0, 1.0)

# --- file formats ----------------------------------------------------------------------

#: The format of the files this version writes. Format 1 is fashionmlp 0.1.0's, whose
#: files name none; in format 2 each file names its format and the version that wrote it.
FORMAT_VERSION: Final = 2
#: The keys :func:`stamped` adds to a file's top level.
FORMAT_KEY, WRITER_KEY = "format_version", "fashionmlp_version"

#: How each settings class's saved form changed, format by format. The key ``(class name,
#: format)`` maps to a function that brings a dict of the format before up to that one,
#: filling a field added since with the value the older version behaved with (as
#: Lightning's checkpoint migrations do). Format 2 changed no field.
UPGRADES: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {}


def stamped(document: Mapping[str, Any]) -> dict[str, Any]:
    """``document`` with this version's format and name first, as every file we write is.

    Example:
        >>> from fashionmlp.config import stamped
        >>> stamped({"lr": 0.01})["format_version"]
        2
    """
    return {FORMAT_KEY: FORMAT_VERSION, WRITER_KEY: __version__, **document}


def file_format(
    document: Mapping[str, Any], source: str, error: type[Exception] = InvalidArgumentError
) -> tuple[dict[str, Any], int]:
    """A file's content without its stamp, and its format (1 when it names none).

    Raises:
        InvalidArgumentError: (or the ``error`` given) The file claims a format newer than
            this version reads (the message names the version that wrote it and the upgrade
            to make), or a malformed one.
    """
    content = dict(document)
    found = content.pop(FORMAT_KEY, 1)
    writer = content.pop(WRITER_KEY, "an unknown version")
    if isinstance(found, bool) or not isinstance(found, int) or found < 1:
        raise error(f"{source}: {FORMAT_KEY} must be a whole number of at least 1, got {found!r}")
    if found > FORMAT_VERSION:
        raise error(
            f"{source} was written by fashionmlp {writer} in file format {found}; this is "
            f"fashionmlp {__version__}, which reads formats up to {FORMAT_VERSION}: upgrade "
            "it (pip install --upgrade fashionmlp)"
        )
    return content, found


def upgrade(cls: type, data: Mapping[str, Any], format: int) -> dict[str, Any]:
    """``data``, a ``cls`` saved in file format ``format``, brought up to today's format."""
    upgraded = dict(data)
    for step in range(format + 1, FORMAT_VERSION + 1):
        change = UPGRADES.get((cls.__name__, step))
        if change is not None:
            upgraded = change(upgraded)
    return upgraded


# --- the rule of every settings object --------------------------------------------------


@dataclass(frozen=True)
class Range:
    """The values a number setting may take: at least (or above) ``low``, at most (or
    below) ``high``; a float must be finite too. Kept in the field's metadata
    (:func:`ranged`), so that the settings object and the command line check the same."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def refuse(self, value: float) -> str | None:
        """Why ``value`` is out of range (``"must be at least 1, got 0"``), or ``None``."""
        fits = not isinstance(value, float) or math.isfinite(value)
        if self.low is not None:
            fits = fits and (value > self.low if self.low_open else value >= self.low)
        if self.high is not None:
            fits = fits and (value < self.high if self.high_open else value <= self.high)
        return None if fits else f"must be {self}, got {_shown(value)}"

    def __str__(self) -> str:
        low, high = _shown(self.low), _shown(self.high)
        if self.low is not None and self.high is not None and not self.low_open:
            return f"in [{low}, {high}{')' if self.high_open else ']'}"
        parts = []
        if self.low is not None:
            parts.append(f"a finite number above {low}" if self.low_open else f"at least {low}")
        if self.high is not None:
            parts.append(f"below {high}" if self.high_open else f"at most {high}")
        return " and ".join(parts)


def ranged(default: Any = dataclasses.MISSING, **bounds: Any) -> Any:
    """A dataclass field whose number must lie in ``Range(**bounds)``: ``epochs: int =
    ranged(low=1)``; :func:`check` enforces it."""
    return dataclasses.field(default=default, metadata={"range": Range(**bounds)})


def value_range(cls: type, name: str) -> Range | None:
    """The :class:`Range` of the field ``name`` of ``cls``, if it has one."""
    fields(cls)  # reads the class's fields once
    found = _FIELD_OBJECTS[cls][name].metadata.get("range")
    return found if isinstance(found, Range) else None


class Settings:
    """What every settings object has: a JSON-ready form and back, checked changes, files.

    A frozen dataclass that inherits this and calls :func:`check` in its ``__post_init__`` is
    a settings object; ``settings_name`` names it in errors.
    """

    settings_name: ClassVar[str] = "settings"

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict (nested settings as dicts, pairs as lists)."""
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, format: int = FORMAT_VERSION) -> Self:
        """The settings :meth:`to_dict` wrote (in file format ``format``): every key present,
        none unknown.

        Raises:
            InvalidArgumentError: A key is missing or unknown, or a value does not fit.
        """
        return from_dict(cls, data, format=format)

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` applied, and checked; a nested settings field may be
        given a dict of its own changes (``recipe.replace(model={"dropout": 0.1})``).

        Raises:
            InvalidArgumentError: A setting is unknown, of the wrong type or out of range.
        """
        return replace(self, changes, what=self._label())

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the settings to ``path``: TOML (``.toml``; nested settings as tables) or
        JSON (``.json``), atomically, stamped with their format.

        Raises:
            InvalidArgumentError: The file cannot be written, or its name ends otherwise.
        """
        return save(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Self:
        """The settings in the TOML or JSON file ``path``, as :meth:`save` writes them (of
        this version or an older one).

        Raises:
            InvalidArgumentError: The file is missing or unreadable, of a newer format, or a
                setting is unknown, missing or mistyped (each named, with the file).
        """
        return load(cls, path)

    def _label(self) -> str:
        """How errors about this object name it."""
        return self.settings_name


_FIELDS: dict[type, dict[str, Any]] = {}
_FIELD_OBJECTS: dict[type, dict[str, dataclasses.Field[Any]]] = {}


def fields(cls: type) -> dict[str, Any]:
    """The fields of a settings class and their declared types, in order (read once per
    class: resolving the annotations is the slow part of making a settings object)."""
    if cls not in _FIELDS:
        hints = typing.get_type_hints(cls)
        objects = {field.name: field for field in dataclasses.fields(cls)}
        _FIELD_OBJECTS[cls] = objects
        _FIELDS[cls] = {name: hints[name] for name in objects}
    return _FIELDS[cls]


def check(settings: object, what: str) -> None:
    """Check every field of ``settings`` against its declared type, in ``__post_init__``.

    Values are brought to their declared form where that loses nothing: an int becomes a
    float for a float field, a list a tuple, a dict the nested settings object it describes.

    Raises:
        InvalidArgumentError: A field holds a value of another type, named with ``what``
            (``"recipe 'fast'"``).
    """
    for name, kind in fields(type(settings)).items():
        value = _convert(getattr(settings, name), kind, f"{what}: {name}")
        limits = value_range(type(settings), name)
        problem = limits.refuse(value) if limits is not None and value is not None else None
        if problem:
            raise InvalidArgumentError(f"{what}: {name} {problem}")
        object.__setattr__(settings, name, value)  # frozen: set once, while being made


def check_positive(name: str, value: int) -> None:
    """Refuse ``value``, an argument called ``name``, unless it is a whole number of at
    least 1.

    Raises:
        InvalidArgumentError: ``value`` is a bool, not an int, or below 1.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"{name} must be a whole number of at least 1, got {value!r}")


def _convert(value: Any, kind: Any, where: str) -> Any:
    """``value`` in the form of the type ``kind``; an error naming ``where`` if it has another."""
    origin, arguments = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):  # an optional setting: X | None
        if value is None and type(None) in arguments:
            return None
        kind = arguments[0] if arguments[1] is type(None) else arguments[1]
        origin, arguments = typing.get_origin(kind), typing.get_args(kind)
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        if isinstance(value, kind):
            return value
        if isinstance(value, Mapping):
            return from_dict(kind, value, what=where)
        raise InvalidArgumentError(f"{where} must be a table of settings, got {value!r}")
    if origin is Literal:  # one of the choices, and of its type (True is not 1)
        if value in arguments and type(value) is type(arguments[0]):
            return value
        wanted = " or ".join(map(repr, arguments))
    elif origin is tuple:
        if isinstance(value, (list, tuple)) and len(value) == len(arguments):
            if all(map(_is_number, value)):
                return tuple(map(float, value))
        wanted = f"a list of {len(arguments)} numbers"
    elif kind is float:
        if _is_number(value):
            return float(value)
        wanted = "a number"
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        wanted = "a whole number"
        if isinstance(value, float) and value.is_integer():  # 8.0 in a file written by hand
            shown = repr(value) if abs(value) < 1e6 else _shown(value)
            raise InvalidArgumentError(f"{where} must be {wanted}, got {shown}; write {int(value)}")
    elif kind is bool or kind is str:
        if isinstance(value, kind):
            return value
        wanted = "true or false" if kind is bool else "text"
    else:  # pragma: no cover - a settings class declared a type this rule does not know
        raise TypeError(f"{where}: settings fields cannot be of type {kind!r}")
    raise InvalidArgumentError(f"{where} must be {wanted}, got {_shown(value)}")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _shown(value: object) -> str:
    """A value as an error shows it: ``1e+09`` rather than ``1000000000.0``."""
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:g}"
    return str(value) if isinstance(value, (int, float)) else repr(value)


def to_dict(settings: object) -> dict[str, Any]:
    """The settings as a JSON-ready dict: nested settings as dicts, pairs as lists."""
    found = {}
    for name in fields(type(settings)):
        value = getattr(settings, name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = to_dict(value)
        found[name] = list(value) if isinstance(value, tuple) else value
    return found


def from_dict(
    cls: type[T],
    data: Mapping[str, Any],
    *,
    what: str | None = None,
    format: int = FORMAT_VERSION,
) -> T:
    """The settings ``data`` describes: every field present, no other key, each of its type.

    ``data`` of an older file ``format`` is first brought up to today's (:func:`upgrade`),
    its nested settings too; a key that format always had is still required.

    Raises:
        InvalidArgumentError: ``data`` is not a mapping, lacks a field or has an unknown
            key (each named), or a value does not fit.
    """
    what = what or _noun(cls)
    if not isinstance(data, Mapping):
        raise InvalidArgumentError(f"{what} must be a table of settings, got {_shown(data)}")
    known = fields(cls)
    if format != FORMAT_VERSION:
        data = upgrade(cls, data, format)
        data = {
            name: (
                upgrade(known[name], value, format)
                if isinstance(value, Mapping) and dataclasses.is_dataclass(known.get(name))
                else value
            )
            for name, value in data.items()
        }
    _refuse_unknown(data, list(known), what)
    missing = [name for name in known if name not in data]
    if missing:
        raise InvalidArgumentError(
            f"{what}: missing {_plural('setting', missing)} {', '.join(map(repr, missing))} "
            "(saved settings name every field)"
        )
    return cls(**{name: data[name] for name in known})


def _noun(cls: type) -> str:
    """How errors name a settings class: ``FashionMLPConfig`` -> ``"model config"``."""
    return str(getattr(cls, "settings_name", cls.__name__))


def _plural(noun: str, names: list[str]) -> str:
    return noun if len(names) == 1 else f"{noun}s"


def _refuse_unknown(data: Mapping[str, Any], known: list[str], what: str) -> None:
    unknown = [name for name in data if name not in known]
    if unknown:
        raise InvalidArgumentError(
            f"{what}: unknown {_plural('setting', unknown)} {', '.join(map(repr, unknown))}; "
            f"the settings are: {', '.join(known)}"
        )


def replace(settings: T, changes: Mapping[str, Any], *, what: str | None = None) -> T:
    """A copy of ``settings`` with ``changes`` applied, and checked.

    A change to a nested settings field may be a dict of its own changes:
    ``replace(recipe, {"model": {"dropout": 0.1}})`` changes the dropout alone.

    Raises:
        InvalidArgumentError: A field is unknown, or a value does not fit.
    """
    what = what or _noun(type(settings))
    _refuse_unknown(changes, list(fields(type(settings))), what)
    resolved = {}
    for name, value in changes.items():
        current = getattr(settings, name)
        if isinstance(value, Mapping) and dataclasses.is_dataclass(current):
            value = replace(current, value, what=f"{what}: {name}")
        resolved[name] = value
    return dataclasses.replace(settings, **resolved)  # type: ignore[type-var]


def override(settings: T, changes: Mapping[str, Any]) -> T:
    """``settings`` with ``FIELD=VALUE`` changes, as ``--set`` and search spaces give them.

    A field is named by its path (``model.dropout``), or, for a field of a nested settings
    object, by its own name alone when no other field has it (``dropout``).

    Raises:
        InvalidArgumentError: A name is unknown or ambiguous, or a value does not fit.
    """
    nested: dict[str, Any] = {}
    for name, value in changes.items():
        *parents, leaf = resolve_name(type(settings), name)
        target = nested
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    return replace(settings, nested)


def resolve_name(cls: type, name: str) -> list[str]:
    """The path of the field ``name`` names (see :func:`override`).

    Raises:
        InvalidArgumentError: No field, or more than one, has that name.
    """
    paths = list(_paths(cls))
    if name.split(".") in paths:
        return name.split(".")
    matches = [path for path in paths if path[-1] == name]
    if len(matches) == 1:
        return matches[0]
    noun = _noun(cls)
    if matches:
        options = " or ".join(".".join(path) for path in matches)
        raise InvalidArgumentError(f"{noun} setting {name!r} is ambiguous: say {options}")
    raise InvalidArgumentError(
        f"unknown {noun} setting {name!r}; the settings are: "
        + ", ".join(".".join(path) for path in paths)
    )


def _paths(cls: type, prefix: tuple[str, ...] = ()) -> Iterator[list[str]]:
    """Every field's path, nested settings' fields included (not the tables themselves)."""
    for name, kind in fields(cls).items():
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            yield from _paths(kind, (*prefix, name))
        else:
            yield [*prefix, name]


def differences(
    saved: Mapping[str, Any], current: Mapping[str, Any], *, prefix: str = ""
) -> list[str]:
    """The settings that differ between two :func:`to_dict` forms, one line each:
    ``"lr: 0.008 saved, 0.001 now"``; nested settings by their path."""
    lines = []
    for name in dict.fromkeys([*saved, *current]):
        old, new = saved.get(name, "(none)"), current.get(name, "(none)")
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            lines += differences(old, new, prefix=f"{prefix}{name}.")
        elif old != new:
            lines.append(f"{prefix}{name}: {json.dumps(old)} saved, {json.dumps(new)} now")
    return lines


def flat(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A :func:`to_dict` form with nested settings by their path, as trackers and tables
    want them.

    Example:
        >>> from fashionmlp.config import flat
        >>> flat({"lr": 0.01, "model": {"dropout": 0.1}})
        {'lr': 0.01, 'model.dropout': 0.1}
    """
    found: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            found |= flat(value, f"{prefix}{key}.")
        else:
            found[f"{prefix}{key}"] = value
    return found


# --- files -------------------------------------------------------------------------------

#: A settings file larger than this is not one of ours (and would only fill the memory).
_MAX_FILE_BYTES = 1 << 20
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def save(settings: object, path: str | os.PathLike[str]) -> Path:
    """Write ``settings`` to ``path``, as TOML (``.toml``) or JSON (``.json``), atomically,
    stamped with its format (:func:`stamped`).

    Raises:
        InvalidArgumentError: ``path`` ends in neither ``.toml`` nor ``.json``, or cannot be
            written (the message says why).
    """
    path = Path(path)
    data = stamped(to_dict(settings))
    if path.suffix == ".toml":
        text = dumps_toml(data)
    elif path.suffix == ".json":
        text = json.dumps(data, indent=2) + "\n"
    else:
        raise InvalidArgumentError(f"{path}: save settings to a .toml or .json file")
    try:
        atomic_write(path, text.encode(), replace=True)
    except OSError as exc:
        raise InvalidArgumentError(f"cannot write {path}: {os_error_fix(exc, 'file')}") from exc
    return path


def load(cls: type[T], path: str | os.PathLike[str]) -> T:
    """The settings of class ``cls`` in the TOML or JSON file ``path`` (see
    :func:`from_dict`), of this version's format or an older one.

    Raises:
        InvalidArgumentError: The file is missing, not a regular file, not valid TOML or
            JSON, of a newer format, or does not describe ``cls`` (an unknown, missing or
            mistyped field, named).
    """
    path = Path(path)
    text = read_regular_file(path, limit=_MAX_FILE_BYTES, error=InvalidArgumentError).decode(
        "utf-8", errors="replace"
    )
    try:
        data = json.loads(text) if path.suffix == ".json" else loads_toml(text)
    except (ValueError, RecursionError) as exc:  # tomllib's and json's errors are ValueErrors
        kind = "JSON" if path.suffix == ".json" else "TOML"
        raise InvalidArgumentError(f"{path}: not valid {kind} ({exc})") from None
    if not isinstance(data, Mapping):
        raise InvalidArgumentError(f"{path}: holds a {type(data).__name__}, not settings")
    content, format = file_format(data, str(path))
    try:
        return from_dict(cls, content, format=format)
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(f"{path}: {exc}") from None


def loads_toml(text: str) -> dict[str, Any]:
    """The TOML document ``text`` as a dict (the standard library's reader, or its backport
    on Python 3.10).

    Raises:
        ValueError: ``text`` is not valid TOML.
    """
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib.loads(text)
    import tomli

    return dict(tomli.loads(text))


def dumps_toml(data: Mapping[str, Any], path: tuple[str, ...] = ()) -> str:
    """``data`` (a settings object's dict form) as a TOML document: the plain values first,
    then a table for each nested dict.

    Raises:
        InvalidArgumentError: A value is of a kind TOML cannot hold (``None``, say).

    Example:
        >>> from fashionmlp.config import dumps_toml
        >>> print(dumps_toml({"name": "mine", "lr": 0.004, "model": {"normalize": [0.0, 1.0]}}))
        name = "mine"
        lr = 0.004
        <BLANKLINE>
        [model]
        normalize = [0.0, 1.0]
        <BLANKLINE>
    """
    lines = [
        f"{_toml_key(key)} = {_toml_value(value)}"
        for key, value in data.items()
        if not isinstance(value, Mapping)
    ]
    text = "\n".join(lines) + ("\n" if lines else "")
    for key, value in data.items():
        if isinstance(value, Mapping):
            header = ".".join(_toml_key(part) for part in (*path, key))
            text += f"\n[{header}]\n" + dumps_toml(value, (*path, key))
    return text


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _toml_string(key)


def _toml_string(text: str) -> str:
    # JSON's escapes are TOML's, but for DEL, which TOML wants escaped too.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return repr(value)
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise InvalidArgumentError(f"TOML cannot hold {value!r}")


# --- device names ------------------------------------------------------------------------

_DEVICE_NAMES = "cpu, cuda, cuda:N, mps or auto"
_DEVICE_GRAMMAR = re.compile(r"auto|cpu|mps|cuda(?::(\d+))?")


def check_device_name(name: str) -> str:
    """``name`` normalized (lower case, no spaces) if it is a device name at all; whether
    this machine has that device is :func:`~fashionmlp.devices.resolve_device`'s question.

    Raises:
        DeviceError: ``name`` is not one of cpu, cuda, cuda:N, mps, auto.

    Example:
        >>> from fashionmlp.config import check_device_name
        >>> check_device_name(" CUDA:1 ")
        'cuda:1'
    """
    normalized = name.strip().lower()
    if _DEVICE_GRAMMAR.fullmatch(normalized) is None:
        raise DeviceError(f"unknown device {normalized!r}; use {_DEVICE_NAMES}")
    return normalized


# --- the model's config ------------------------------------------------------------------


@dataclass(frozen=True)
class FashionMLPConfig(Settings):
    """The constructor arguments of a :class:`~fashionmlp.FashionMLP`: all it takes to
    build it again.

    Saved as the ``config.json`` of :meth:`FashionMLP.save_pretrained
    <fashionmlp.pretrained.PretrainedMixin.save_pretrained>`, in every checkpoint of a
    ``FashionMLP``, and as the ``model`` table of a :class:`~fashionmlp.Recipe`, so that a
    trained model can be rebuilt without knowing how it was made (as nanoGPT's
    ``GPT(GPTConfig(**checkpoint["model_args"]))``).

    Example:
        >>> config = FashionMLPConfig(hidden_features=256, normalize=(0.286, 0.353))
        >>> FashionMLPConfig.from_dict(config.to_dict()) == config
        True
    """

    settings_name: ClassVar[str] = "model config"

    #: Width of every hidden layer.
    hidden_features: int = ranged(512, low=1)
    #: Number of hidden layers (linear + ReLU).
    hidden_layers: int = ranged(2, low=1)
    #: Dropout probability after each hidden ReLU.
    dropout: float = ranged(0.0, low=0, high=1, high_open=True)
    #: ``(mean, std)`` the input is standardized with, ``(x - mean) / std``, inside the
    #: model: the trained model takes plain ``ToTensor()`` input in ``[0, 1]`` whatever it
    #: was trained with. ``(0.0, 1.0)`` (the seed's) leaves the input as it is.
    normalize: tuple[float, float] = NO_NORMALIZATION

    def __post_init__(self) -> None:
        check(self, self.settings_name)
        mean, std = self.normalize
        if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
            raise InvalidArgumentError(
                f"model config: normalize must be (mean, std) with a finite mean and std "
                f"above 0, got {self.normalize}"
            )

    @property
    def normalizes(self) -> bool:
        """Whether :attr:`normalize` changes the input at all."""
        return self.normalize != NO_NORMALIZATION

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """The ``state_dict`` keys of the model this config builds, and their shapes.

        Example:
            >>> FashionMLPConfig(hidden_features=8, hidden_layers=1).parameter_shapes()
            {'fc1.weight': (8, 784), 'fc1.bias': (8,), 'fc2.weight': (10, 8), 'fc2.bias': (10,)}
        """
        widths = [IMAGE_SIZE * IMAGE_SIZE] + [self.hidden_features] * self.hidden_layers
        widths.append(NUM_CLASSES)
        shapes: dict[str, tuple[int, ...]] = {}
        for index, (n_in, n_out) in enumerate(zip(widths, widths[1:]), start=1):
            shapes[f"fc{index}.weight"] = (n_out, n_in)
            shapes[f"fc{index}.bias"] = (n_out,)
        return shapes

    def parameters(self) -> int:
        """The number of parameters of the model this config builds.

        Example:
            >>> FashionMLPConfig().parameters()
            669706
        """
        return sum(math.prod(shape) for shape in self.parameter_shapes().values())


# --- recipes and runs --------------------------------------------------------------------

#: The data pipelines :func:`~fashionmlp.make_loaders` can build.
Backend = Literal["torchvision", "tensor"]
#: The largest learning rate a recipe takes: far above any that trains, and low enough
#: that a step's arithmetic stays within float32.
_MAX_LR = 1e6


@dataclass(frozen=True)
class Recipe(Settings):
    """How to train: every setting :func:`~fashionmlp.fit` needs, as plain data.

    Make a variant with :meth:`replace`, e.g. ``get_recipe("fast").replace(epochs=40)``;
    save one with :meth:`save` and train it with ``fashionmlp train --recipe FILE``.

    Example:
        >>> import pathlib, tempfile
        >>> path = get_recipe("fast").replace(name="mine", epochs=20).save(
        ...     pathlib.Path(tempfile.mkdtemp()) / "mine.toml")
        >>> Recipe.load(path).epochs
        20
    """

    settings_name: ClassVar[str] = "recipe"

    #: A short name, recorded with every run.
    name: str
    #: Passes over the training set.
    epochs: int = ranged(low=1)
    #: Samples per training batch.
    batch_size: int = ranged(low=1)
    #: ``"sgd"``, ``"adamw"``, or ``"muon"``: Muon for the hidden weight matrices and AdamW
    #: for the rest (see :class:`fashionmlp.optim.Muon`).
    optimizer: Literal["sgd", "adamw", "muon"] = "sgd"
    #: Learning rate (the peak of the one-cycle schedule); with ``"muon"``, AdamW's.
    lr: float = ranged(0.01, low=0, low_open=True, high=_MAX_LR)
    #: Muon's learning rate for the hidden weight matrices (``optimizer="muon"``).
    muon_lr: float = ranged(0.02, low=0, low_open=True, high=_MAX_LR)
    #: Muon's decoupled weight decay for the hidden weight matrices.
    muon_weight_decay: float = ranged(0.0, low=0)
    #: Newton-Schulz iterations per Muon step.
    ns_steps: int = ranged(5, low=1, high=100)
    #: SGD momentum.
    momentum: float = ranged(0.0, low=0, high=1)
    #: Nesterov momentum for SGD.
    nesterov: bool = False
    #: Weight decay (decoupled, for AdamW).
    weight_decay: float = ranged(0.0, low=0)
    #: ``"constant"`` or ``"onecycle"`` (stepped every batch).
    schedule: Literal["constant", "onecycle"] = "constant"
    #: Fraction of the one-cycle schedule spent rising to ``lr``.
    warmup: float = ranged(0.25, low=0, high=1, low_open=True, high_open=True)
    #: Label smoothing of the training loss (the reported losses are plain).
    label_smoothing: float = ranged(0.0, low=0, high=1, high_open=True)
    #: The data pipeline.
    backend: Backend = "torchvision"
    #: Random horizontal flips of training images (tensor backend).
    hflip: bool = False
    #: Random translation of training images by up to this many pixels (tensor backend).
    translate: int = ranged(0, low=0, high=27)
    #: ``"off"``, ``"bf16"``, or ``"auto"`` (bf16 where the device computes it natively).
    autocast: Literal["off", "bf16", "auto"] = "off"
    #: Print the seed's loss line every this many batches in the command line (0 for never).
    print_every: int = ranged(0, low=0)
    #: The config of the :class:`~fashionmlp.FashionMLP` trained. Its ``normalize`` is
    #: applied inside the model; a model of your own given to :func:`~fashionmlp.fit` gets
    #: its input standardized by the loaders instead.
    model: FashionMLPConfig = FashionMLPConfig()

    def __post_init__(self) -> None:
        check(self, self._label())
        if self.backend != "tensor" and (self.hflip or self.translate):
            raise InvalidArgumentError(
                f"recipe {self.name!r}: hflip and translate need backend='tensor'"
            )

    def _label(self) -> str:
        return f"recipe {self.name!r}"

    def unused(self) -> dict[str, str]:
        """The settings this recipe does not use, each with why: ``momentum`` is SGD's, the
        ``muon_*`` settings and ``ns_steps`` Muon's, ``warmup`` the one-cycle schedule's.

        Example:
            >>> sorted(get_recipe("fast").unused())
            ['momentum', 'nesterov']
        """
        unused: dict[str, str] = {}
        if self.optimizer != "sgd":
            unused |= dict.fromkeys(("momentum", "nesterov"), "SGD's")
        if self.optimizer != "muon":
            unused |= dict.fromkeys(("muon_lr", "muon_weight_decay", "ns_steps"), "Muon's")
        if self.schedule != "onecycle":
            unused["warmup"] = "the one-cycle schedule's"
        return unused


@dataclass(frozen=True)
class RunConfig(Settings):
    """A run, described once: its recipe and everything else that decides its result
    besides the device. A checkpoint, ``run.json`` and a resume all read this one object.

    Example:
        >>> config = RunConfig(get_recipe("seed"), seed=3)
        >>> RunConfig.from_dict(config.to_dict()) == config
        True
    """

    settings_name: ClassVar[str] = "run settings"

    #: How to train.
    recipe: Recipe
    #: Seeds the model's initialisation, the shuffle and the augmentation.
    seed: int = ranged(0, low=0, high=2**63 - 1)
    #: Use only the first ``limit`` samples of each split.
    limit: int | None = ranged(None, low=1)
    #: Evaluate on this many held-out training images instead of the test set.
    validation_size: int = 0

    def __post_init__(self) -> None:
        check(self, self.settings_name)
        if not 0 <= self.validation_size < TRAIN_IMAGES:
            raise InvalidArgumentError(
                f"validation_size must be between 0 and {TRAIN_IMAGES - 1}, got "
                f"{self.validation_size}"
            )

    @property
    def evaluated_on(self) -> str:
        """``"validation"`` or ``"test"``: what the run's evaluations measure."""
        return "validation" if self.validation_size else "test"

    @property
    def samples(self) -> dict[str, int]:
        """The images the run trains and evaluates on, by split, ``limit`` applied: what its
        figures are about (``--validation 1000 --limit 500`` evaluates 500).

        Example:
            >>> RunConfig(get_recipe("seed"), validation_size=1000, limit=500).samples
            {'train': 500, 'validation': 500}
        """
        train, evaluated = TRAIN_IMAGES - self.validation_size, self.validation_size or TEST_IMAGES
        if self.limit is not None:
            train, evaluated = min(train, self.limit), min(evaluated, self.limit)
        return {"train": train, self.evaluated_on: evaluated}


_SEED = Recipe("seed", epochs=5, batch_size=64, optimizer="sgd", lr=0.01, print_every=100)
_FAST = Recipe(
    "fast",
    epochs=8,
    batch_size=2048,
    optimizer="muon",
    muon_lr=0.04,
    lr=8e-3,
    weight_decay=0.2,
    schedule="onecycle",
    label_smoothing=0.1,
    backend="tensor",
    hflip=True,
    autocast="auto",
    model=FashionMLPConfig(normalize=FASHION_MNIST_NORMALIZATION),
)
_LONG = _FAST.replace(
    name="long", epochs=80, batch_size=1024, lr=4e-3, translate=1, muon_weight_decay=0.1
)

#: The shipped recipes by name.
RECIPES: dict[str, Recipe] = {recipe.name: recipe for recipe in (_SEED, _FAST, _LONG)}


def get_recipe(name: str) -> Recipe:
    """The shipped recipe called ``name``.

    Raises:
        InvalidArgumentError: No recipe has that name (the message lists them).

    Example:
        >>> get_recipe("seed").lr
        0.01
    """
    try:
        return RECIPES[name]
    except KeyError:
        raise InvalidArgumentError(
            f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}, or give a recipe "
            "file (.toml or .json)"
        ) from None


def recipe_from(name_or_path: str | os.PathLike[str]) -> Recipe:
    """A shipped recipe by name, or the recipe in a ``.toml`` or ``.json`` file.

    Raises:
        InvalidArgumentError: No recipe has that name, or the file is not a recipe.
    """
    text = os.fspath(name_or_path)
    if text in RECIPES:
        return RECIPES[text]
    if text.endswith((".toml", ".json")) or os.sep in text:
        return Recipe.load(text)
    return get_recipe(text)
