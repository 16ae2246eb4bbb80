"""Search spaces: the ranges of recipe fields a sweep draws from, as a small TOML file.

Each parameter is a table named after a :class:`~fashionmlp.Recipe` field (a nested one by
its path, ``["model.dropout"]``, or by its own name where no other field has it)::

    [lr]
    type = "log-float"     # float, log-float, int or choice
    low = 0.002
    high = 0.02

    [label_smoothing]
    type = "float"
    low = 0.0
    high = 0.2

    [batch_size]
    type = "choice"
    choices = [1024, 2048]

Every parameter is checked against the recipe's own field when the space is made: the
field must exist, the kind fit its type (a number range for a number, ``choice`` for
anything), ``low`` be below ``high`` and both in the field's range; one line names what is
wrong.
"""

from __future__ import annotations

import math
import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .. import config
from .._files import read_regular_file
from ..config import Recipe
from ..errors import InvalidArgumentError

__all__ = ["DEFAULT_SPACE", "Param", "SearchSpace"]

Kind = Literal["float", "log-float", "int", "choice"]
_KINDS: tuple[str, ...] = typing.get_args(Kind)


@dataclass(frozen=True)
class Param:
    """One recipe field's range in a :class:`SearchSpace`."""

    #: The field's path, ``"lr"`` or ``"model.dropout"``.
    field: str
    #: ``"float"`` (uniform), ``"log-float"`` (uniform in its logarithm), ``"int"`` or
    #: ``"choice"``.
    kind: Kind
    #: The least value (number kinds).
    low: float | None = None
    #: The greatest value (number kinds).
    high: float | None = None
    #: The values to choose from (``"choice"``).
    choices: tuple[Any, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The parameter's table in a space file."""
        if self.kind == "choice":
            return {"type": self.kind, "choices": list(self.choices)}
        return {"type": self.kind, "low": self.low, "high": self.high}

    def holds(self, value: Any) -> bool:
        """Whether ``value`` is one this parameter may draw."""
        if self.kind == "choice":
            return value in self.choices
        assert self.low is not None and self.high is not None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return self.low <= value <= self.high and (self.kind != "int" or value == int(value))

    def suggest(self, trial: Any) -> Any:
        """The value an Optuna ``trial`` draws for this parameter."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.field, list(self.choices))
        assert self.low is not None and self.high is not None
        if self.kind == "int":
            return trial.suggest_int(self.field, int(self.low), int(self.high))
        log = self.kind == "log-float"
        return trial.suggest_float(self.field, self.low, self.high, log=log)


@dataclass(frozen=True)
class SearchSpace:
    """The recipe fields a sweep tunes and their ranges.

    Example:
        >>> from fashionmlp import get_recipe
        >>> from fashionmlp.studies import SearchSpace
        >>> space = SearchSpace.from_dict({"lr": {"type": "log-float", "low": 1e-3, "high": 1e-2}})
        >>> space.check(get_recipe("fast"))
        >>> [param.field for param in space.params]
        ['lr']
    """

    params: tuple[Param, ...]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "search space") -> SearchSpace:
        """The space a parsed space file describes (tables of parameters, nested or not).

        Raises:
            InvalidArgumentError: A table is not a parameter, or a field is unknown.
        """
        params = [_param(name, table, where) for name, table in _tables(data, where)]
        if not params:
            raise InvalidArgumentError(f"{where}: names no parameter to tune")
        space = cls(tuple(params))
        space.check(_any_recipe())
        return space

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SearchSpace:
        """The space in the TOML file ``path``.

        Raises:
            InvalidArgumentError: The file is missing, not valid TOML, or names an unknown
                field or a range that does not fit (each named, with the file).
        """
        path = Path(path)
        text = read_regular_file(path, limit=1 << 20, error=InvalidArgumentError)
        try:
            data = config.loads_toml(text.decode("utf-8", errors="replace"))
        except ValueError as exc:
            raise InvalidArgumentError(f"{path}: not valid TOML ({exc})") from None
        return cls.from_dict(data, where=str(path))

    def to_dict(self) -> dict[str, Any]:
        """The space as a space file's tables (what :meth:`from_dict` reads)."""
        return {param.field: param.to_dict() for param in self.params}

    def point(self, recipe: Recipe) -> dict[str, Any] | None:
        """``recipe``'s own values of the space's fields, or ``None`` when one is outside
        its range (the point a sweep tries first, as its baseline)."""
        values = config.flat(recipe.to_dict())
        point = {param.field: values[param.field] for param in self.params}
        holds = all(param.holds(point[param.field]) for param in self.params)
        return point if holds else None

    def check(self, recipe: Recipe) -> None:
        """Refuse a parameter whose values ``recipe`` would refuse (each is tried).

        Raises:
            InvalidArgumentError: A value the space may draw does not fit the recipe.
        """
        for param in self.params:
            values = param.choices if param.kind == "choice" else (param.low, param.high)
            for value in values:
                try:
                    config.override(recipe, {param.field: value})
                except InvalidArgumentError as exc:
                    raise InvalidArgumentError(
                        f"search space: {param.field} = {value!r} does not fit recipe "
                        f"{recipe.name!r} ({exc})"
                    ) from None

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Each field's value for an Optuna ``trial``."""
        return {param.field: param.suggest(trial) for param in self.params}


def _tables(data: Mapping[str, Any], where: str, prefix: str = "") -> list[tuple[str, Any]]:
    """Each parameter's table, by field path: tables with a ``type``, nested ones looked in."""
    found = []
    for name, table in data.items():
        if not isinstance(table, Mapping):
            raise InvalidArgumentError(
                f"{where}: {prefix}{name} = {table!r} is not a parameter's table "
                "(give [name] with type = float, log-float, int or choice)"
            )
        if "type" in table:
            found.append((f"{prefix}{name}", table))
        else:
            found += _tables(table, where, f"{prefix}{name}.")
    return found


def _param(name: str, table: Mapping[str, Any], where: str) -> Param:
    try:
        path = ".".join(config.resolve_name(Recipe, name))
    except InvalidArgumentError as exc:  # an unknown field: named, with the file it is in
        raise InvalidArgumentError(f"{where}: {exc}") from None
    kind = table.get("type")
    if kind not in _KINDS:
        raise InvalidArgumentError(
            f"{where}: {name}: type must be one of {', '.join(_KINDS)}, got {kind!r}"
        )
    expected = {"type", "choices"} if kind == "choice" else {"type", "low", "high"}
    if set(table) != expected:
        raise InvalidArgumentError(
            f"{where}: {name} ({kind}) takes exactly {', '.join(sorted(expected))}; got "
            f"{', '.join(sorted(table))}"
        )
    if kind == "choice":
        choices = table["choices"]
        if not isinstance(choices, list) or not choices:
            raise InvalidArgumentError(f"{where}: {name}: choices must be a non-empty list")
        return Param(path, "choice", choices=tuple(choices))
    low, high = table["low"], table["high"]
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high))
    if not numbers or not (math.isfinite(low) and math.isfinite(high)):
        raise InvalidArgumentError(f"{where}: {name}: low and high must be numbers")
    if low >= high:
        raise InvalidArgumentError(f"{where}: {name}: low ({low}) must be below high ({high})")
    if kind == "log-float" and low <= 0:
        raise InvalidArgumentError(f"{where}: {name}: a log-float range needs low above 0")
    if kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
        raise InvalidArgumentError(f"{where}: {name}: an int range needs whole numbers")
    _check_kind(name, path, kind, where)
    number = int if kind == "int" else float  # an int range's bounds are whole numbers
    return Param(path, kind, low=number(low), high=number(high))


def _check_kind(name: str, path: str, kind: str, where: str) -> None:
    """A number range must range over a number field: a float one, or an int one for int."""
    owner: Any = Recipe
    *parents, leaf = path.split(".")
    for parent in parents:
        owner = config.fields(owner)[parent]
    field_type = config.fields(owner)[leaf]
    fits = field_type is float or (field_type is int and kind == "int")
    if not fits:
        wanted = "int or choice" if field_type is int else "choice"
        raise InvalidArgumentError(
            f"{where}: {name} is not a number to range over with {kind}; give it type = {wanted}"
        )


def _any_recipe() -> Recipe:
    """A recipe whose fields every space is checked against by name and type (each value is
    checked against the sweep's own recipe later)."""
    return _FIELDS_ONLY


# The tensor backend, so that the augmentation fields (hflip, translate) can be named.
_FIELDS_ONLY = Recipe(
    "space", epochs=1, batch_size=1, optimizer="muon", schedule="onecycle", backend="tensor"
)

#: The default space of a sweep of the ``fast`` recipe: its rates, regularisation and
#: smoothing around the values chosen before.
DEFAULT_SPACE = SearchSpace(
    (
        Param("lr", "log-float", low=2e-3, high=2e-2),
        Param("muon_lr", "log-float", low=0.01, high=0.1),
        Param("weight_decay", "float", low=0.0, high=0.4),
        Param("muon_weight_decay", "float", low=0.0, high=0.2),
        Param("label_smoothing", "float", low=0.0, high=0.2),
    )
)
