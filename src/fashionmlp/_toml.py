"""TOML files of settings: the standard library's reader (or its backport), and a small
writer for what settings hold (numbers, text, true/false, lists of numbers, nested tables).
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Mapping
from typing import Any

from .errors import InvalidArgumentError

__all__ = ["dumps", "loads"]


def loads(text: str) -> dict[str, Any]:
    """The TOML document ``text`` as a dict.

    Raises:
        ValueError: ``text`` is not valid TOML.
    """
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib.loads(text)
    else:  # the backport, a dependency on Python 3.10
        import tomli

        return dict(tomli.loads(text))


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def dumps(data: Mapping[str, Any]) -> str:
    """``data`` (a settings object's dict form) as a TOML document: the plain values first,
    then a table for each nested dict.

    Raises:
        InvalidArgumentError: A value is of a kind TOML cannot hold (``None``, say).

    Example:
        >>> from fashionmlp._toml import dumps
        >>> print(dumps({"name": "mine", "lr": 0.004, "model": {"normalize": [0.0, 1.0]}}))
        name = "mine"
        lr = 0.004
        <BLANKLINE>
        [model]
        normalize = [0.0, 1.0]
        <BLANKLINE>
    """
    return _table(data, ())


def _table(data: Mapping[str, Any], path: tuple[str, ...]) -> str:
    lines = [
        f"{_key(key)} = {_value(value)}"
        for key, value in data.items()
        if not isinstance(value, Mapping)
    ]
    text = "\n".join(lines) + ("\n" if lines else "")
    for key, value in data.items():
        if isinstance(value, Mapping):
            header = ".".join(_key(part) for part in (*path, key))
            text += f"\n[{header}]\n" + _table(value, (*path, key))
    return text


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def _string(text: str) -> str:
    # JSON's escapes are TOML's, but for DEL, which TOML wants escaped too.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return repr(value)
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    raise InvalidArgumentError(f"TOML cannot hold {value!r}")
