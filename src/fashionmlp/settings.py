"""One strict rule for every settings object: checked types, JSON and TOML, no unknown keys.

The settings objects (:class:`~fashionmlp.FashionMLPConfig`, :class:`~fashionmlp.Recipe`,
:class:`~fashionmlp.RunConfig`) are frozen dataclasses whose ``__post_init__`` calls
:func:`~fashionmlp.settings.check`: every field must hold a value of its declared type (an
int passes for a float, a list of two numbers for a pair, a dict for a nested settings
object) and lie in its :class:`~fashionmlp.settings.Range`. Turned into JSON-ready dicts by
:func:`~fashionmlp.settings.to_dict` and back by :func:`~fashionmlp.settings.from_dict`,
which refuses unknown and missing keys by name, they are saved to and loaded from TOML or
JSON files by :func:`~fashionmlp.settings.save` and :func:`~fashionmlp.settings.load`.
:func:`~fashionmlp.settings.override` applies ``FIELD=VALUE`` changes (as ``--set`` does),
checking that each field exists and each value has its type, as nanoGPT's
``configurator.py`` does.

The module imports neither torch nor anything heavy, so the command line can read and
check settings before it pays for torch.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from typing_extensions import Self

from . import _toml as toml
from ._files import atomic_write, os_error_fix, read_regular_file
from .errors import InvalidArgumentError

__all__ = [
    "Range",
    "Settings",
    "check",
    "differences",
    "fields",
    "flat",
    "from_dict",
    "load",
    "override",
    "ranged",
    "replace",
    "resolve_name",
    "save",
    "to_dict",
]

T = TypeVar("T")

#: A settings file larger than this is not one of ours (and would only fill the memory).
_MAX_FILE_BYTES = 1 << 20


@dataclass(frozen=True)
class Range:
    """The values a number setting may take: at least (or above) ``low``, at most (or
    below) ``high``; a float must be finite too. Kept in the field's metadata
    (:func:`~fashionmlp.settings.ranged`), so that the settings object and the command line
    check the same."""

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
    ranged(low=1)``; :func:`~fashionmlp.settings.check` enforces it."""
    return dataclasses.field(default=default, metadata={"range": Range(**bounds)})


def value_range(cls: type, name: str) -> Range | None:
    """The :class:`Range` of the field ``name`` of ``cls``, if it has one."""
    [field] = [field for field in dataclasses.fields(cls) if field.name == name]
    found = field.metadata.get("range")
    return found if isinstance(found, Range) else None


class Settings:
    """What every settings object has: a JSON-ready form and back, checked changes, files.

    A frozen dataclass that inherits this and calls :func:`~fashionmlp.settings.check` in
    its ``__post_init__`` is a settings object; ``settings_name`` names it in errors.
    """

    settings_name: ClassVar[str] = "settings"

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict (nested settings as dicts, pairs as lists)."""
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """The settings :meth:`to_dict` wrote: every key present, none unknown.

        Raises:
            InvalidArgumentError: A key is missing or unknown, or a value does not fit.
        """
        return from_dict(cls, data)

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` applied, and checked; a nested settings field may be
        given a dict of its own changes (``recipe.replace(model={"dropout": 0.1})``).

        Raises:
            InvalidArgumentError: A setting is unknown, of the wrong type or out of range.
        """
        return replace(self, changes, what=self._label())

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the settings to ``path``: TOML (``.toml``; nested settings as tables) or
        JSON (``.json``), atomically.

        Raises:
            InvalidArgumentError: The file cannot be written, or its name ends otherwise.
        """
        return save(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Self:
        """The settings in the TOML or JSON file ``path``, as :meth:`save` writes them.

        Raises:
            InvalidArgumentError: The file is missing or unreadable, or a setting is
                unknown, missing or mistyped (each named, with the file).
        """
        return load(cls, path)

    def _label(self) -> str:
        """How errors about this object name it."""
        return self.settings_name


_FIELDS: dict[type, dict[str, Any]] = {}


def fields(cls: type) -> dict[str, Any]:
    """The fields of a settings class and their declared types, in order (read once per
    class: resolving the annotations is the slow part of making a settings object)."""
    if cls not in _FIELDS:
        hints = typing.get_type_hints(cls)
        _FIELDS[cls] = {field.name: hints[field.name] for field in dataclasses.fields(cls)}
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


def _convert(value: Any, kind: Any, where: str) -> Any:
    """``value`` in the form of the type ``kind``; an error naming ``where`` if it has another."""
    origin, arguments = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in arguments:
            return None
        [kind] = [argument for argument in arguments if argument is not type(None)]
        origin, arguments = typing.get_origin(kind), typing.get_args(kind)
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        if isinstance(value, kind):
            return value
        if isinstance(value, Mapping):
            return from_dict(kind, value, what=where)
        raise InvalidArgumentError(f"{where} must be a table of settings, got {value!r}")
    if origin is Literal:
        if value in arguments and type(value) in {type(a) for a in arguments}:
            return value
        wanted = " or ".join(map(repr, arguments))
    elif origin is tuple:
        numbers = isinstance(value, (list, tuple)) and len(value) == len(arguments)
        if numbers and all(_is_number(item) for item in value):
            return tuple(float(item) for item in value)
        wanted = f"a list of {len(arguments)} numbers"
    elif kind is float:
        if _is_number(value):
            return float(value)
        wanted = "a number"
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        wanted = "a whole number"
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

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return to_dict(value)
        return list(value) if isinstance(value, tuple) else value

    return {name: plain(getattr(settings, name)) for name in fields(type(settings))}


def from_dict(cls: type[T], data: Mapping[str, Any], *, what: str | None = None) -> T:
    """The settings ``data`` describes: every field present, no other key, each of its type.

    Raises:
        InvalidArgumentError: ``data`` is not a mapping, lacks a field or has an unknown
            key (each named), or a value does not fit.
    """
    what = what or _noun(cls)
    if not isinstance(data, Mapping):
        raise InvalidArgumentError(f"{what} must be a table of settings, got {_shown(data)}")
    known = list(fields(cls))
    _refuse_unknown(data, known, what)
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
    known = list(fields(type(settings)))
    _refuse_unknown(changes, known, what or _noun(type(settings)))
    resolved = {}
    for name, value in changes.items():
        current = getattr(settings, name)
        if isinstance(value, Mapping) and dataclasses.is_dataclass(current):
            value = replace(current, value, what=f"{what or _noun(type(settings))}: {name}")
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
    """The path of the field ``name`` names (see :func:`~fashionmlp.settings.override`).

    Raises:
        InvalidArgumentError: No field, or more than one, has that name.
    """
    paths = list(_paths(cls))
    if name in (".".join(path) for path in paths):
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
    """The settings that differ between two :func:`~fashionmlp.settings.to_dict` forms, one
    line each:
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
    """A :func:`~fashionmlp.settings.to_dict` form with nested settings by their path, as
    trackers and tables want them.

    Example:
        >>> from fashionmlp.settings import flat
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


# --- files ------------------------------------------------------------------------------


def save(settings: object, path: str | os.PathLike[str]) -> Path:
    """Write ``settings`` to ``path``, as TOML (``.toml``) or JSON (``.json``), atomically.

    Raises:
        InvalidArgumentError: ``path`` ends in neither ``.toml`` nor ``.json``, or cannot be
            written (the message says why).
    """
    path = Path(path)
    data = to_dict(settings)
    if path.suffix == ".toml":
        text = toml.dumps(data)
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
    :func:`~fashionmlp.settings.from_dict`).

    Raises:
        InvalidArgumentError: The file is missing, not a regular file, not valid TOML or
            JSON, or does not describe ``cls`` (an unknown, missing or mistyped field, named).
    """
    path = Path(path)
    text = read_regular_file(path, limit=_MAX_FILE_BYTES, error=InvalidArgumentError).decode(
        "utf-8", errors="replace"
    )
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            data = toml.loads(text)
    except (ValueError, RecursionError) as exc:  # tomllib's and json's errors are ValueErrors
        kind = "JSON" if path.suffix == ".json" else "TOML"
        raise InvalidArgumentError(f"{path}: not valid {kind} ({exc})") from None
    try:
        return from_dict(cls, data)
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(f"{path}: {exc}") from None
