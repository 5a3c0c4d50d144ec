"""Turn a pydantic ``ValidationError`` into ONE located ``ConfigError`` a person can act on.

Role: :func:`translate` picks the problem that comes first in the file and words it: the key
path, what was expected and what was found (never the value of a secret), a suggestion for a
misspelt key or choice, and the allowed keys or an example as the hint. :func:`kind_of` names a
value's YAML type (also used by the loader's own messages).

Imports pydantic (the error and the models' fields), not yaml. Must not import: ccxt, typer,
rich, ``config.load`` (it imports this one).
"""

from __future__ import annotations

import difflib
import re
from datetime import date
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from btccxt_cli.config.env import is_secret_path
from btccxt_cli.config.schema import Config, KeyPath, SourceMap, format_path
from btccxt_cli.errors import ConfigError

__all__ = ["translate", "kind_of"]

_EXAMPLES = {
    ("exchange",): "add exchange: {id: binance}",
    ("symbols",): "add symbols: [BTC/USDT]",
    ("strategy",): "add strategy: {name: sma_cross}",
    ("exchange", "id"): "the ccxt exchange id, e.g. id: binance",
}


def kind_of(value: Any) -> str:
    """How a value reads in a message: ``null``, ``a mapping``, ``a whole number`` ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, str):
        return "text"
    if isinstance(value, int):
        return "a whole number"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, date):
        return "a date"
    return type(value).__name__


def _show(value: Any) -> str:
    if value is None or isinstance(value, (bool, dict, list, tuple)):
        return kind_of(value)
    if isinstance(value, date):
        return f"{kind_of(value)} ({value.isoformat()})"
    text = repr(value)
    return text if len(text) <= 48 else text[:45] + "..."


def _data_path(loc: tuple[Any, ...], data: Any, kind: str) -> KeyPath:
    """Map a pydantic ``loc`` onto the document, dropping union tags and validator names."""
    out: list[str | int] = []
    cur = data
    for i, part in enumerate(loc):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
            out.append(part)
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            cur = cur[part]
            out.append(part)
        elif i == len(loc) - 1 and kind == "missing" and isinstance(part, str):
            out.append(part)
    return tuple(out)


def _model_at(path: KeyPath) -> type[BaseModel] | None:
    model: type[BaseModel] | None = Config
    for part in path:
        if isinstance(part, int):
            continue
        assert model is not None
        info = model.model_fields.get(part)
        model = _find_model(info.annotation) if info is not None else None
        if model is None:
            return None
    return model


def _find_model(tp: Any) -> type[BaseModel] | None:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    for arg in get_args(tp):
        found = _find_model(arg)
        if found is not None:
            return found
    return None


def _suggest(word: str, choices: list[str]) -> str | None:
    lowered = {c.lower(): c for c in choices}
    if word.lower() in lowered:
        return lowered[word.lower()]
    close = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[close[0]] if close else None


_EXPECTED = {
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "finite_number": "expected a finite number",
    "string_type": "expected text",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
    "list_type": "expected a list",
    "tuple_type": "expected a list",
    "path_type": "expected a file path",
    "string_too_short": "must not be empty",
}
_BOUNDS = {
    "greater_than": ("gt", "greater than"),
    "greater_than_equal": ("ge", "at least"),
    "less_than": ("lt", "less than"),
    "less_than_equal": ("le", "at most"),
}


def translate(exc: ValidationError, data: dict[str, Any], source: SourceMap) -> ConfigError:
    """ONE ConfigError for a ValidationError: the problem that comes first in the file."""
    errors = exc.errors(include_url=False)
    # "too short after validation" only echoes a failed item when the input had enough items.
    primary = [e for e in errors if not _is_echo(e)] or errors
    primary = _drop_misspelt_missing(primary, data)
    found = [_one_error(err, data, source, n) for n, err in enumerate(primary)]
    found.sort(key=lambda t: (t[0], t[1]))
    return found[0][2]


def _drop_misspelt_missing(errors: list[Any], data: dict[str, Any]) -> list[Any]:
    """Without a required key that an unknown key beside it misspells (``symbol:`` for
    ``symbols:``): that unknown key's error, at its own line with "did you mean", says it all;
    the missing key's would point at the mapping above it."""
    misspelt: set[KeyPath] = set()
    for err in errors:
        if err["type"] != "extra_forbidden":
            continue
        path = _data_path(tuple(err["loc"]), data, err["type"])
        model = _model_at(path[:-1]) if path else None
        if model is not None and isinstance(path[-1], str):
            close = _suggest(path[-1], list(model.model_fields))
            if close is not None:
                misspelt.add(path[:-1] + (close,))
    if not misspelt:
        return errors
    kept = [e for e in errors if not (
        e["type"] == "missing" and _data_path(tuple(e["loc"]), data, "missing") in misspelt)]
    return kept or errors


def _is_echo(err: Any) -> bool:
    value, ctx = err.get("input"), err.get("ctx") or {}
    return (err["type"] == "too_short" and isinstance(value, (list, tuple))
            and len(value) >= int(ctx.get("min_length", 0)))


def _one_error(err: Any, data: dict[str, Any], source: SourceMap,
               n: int) -> tuple[tuple[float, float], int, ConfigError]:
    kind: str = err["type"]
    path = _data_path(tuple(err["loc"]), data, kind)
    ctx = err.get("ctx") or {}
    value = err.get("input")
    got = "" if is_secret_path(path) else f"; got {_show(value)}"
    hint = ""
    at_key = False
    parent = f"in {format_path(path[:-1])}" if path[:-1] else "at the top level"
    if kind == "missing":
        key = path[-1] if path else "?"
        message = f"missing required key {key!r} {parent}"
        hint = _EXAMPLES.get(path, "")
        if path[:1] == ("symbols",) and key == "symbol":
            hint = "e.g. symbol: BTC/USDT"
        at_key = True
    elif kind == "extra_forbidden":
        key = str(path[-1]) if path else "?"
        model = _model_at(path[:-1])
        allowed = list(model.model_fields) if model is not None else []
        close = _suggest(key, allowed)
        message = f"unknown key {key!r} {parent}"
        if close:
            message += f"; did you mean {close!r}?"
        if allowed:
            hint = "allowed keys: " + ", ".join(allowed)
        at_key = True
    elif kind == "literal_error":
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        message = "expected one of " + ", ".join(choices) + got
        close = _suggest(value, choices) if isinstance(value, str) else None
        if close and close != value:
            message += f"; did you mean {close!r}?"
    elif kind == "value_error":
        message = str(err["msg"]).removeprefix("Value error, ") + got
    elif kind == "too_short" and path == ("symbols",):
        message = "the symbol list is empty"
        hint = "list at least one market, e.g. symbols: [BTC/USDT]"
    elif kind in _BOUNDS:
        name, words = _BOUNDS[kind]
        bound = ctx.get(name)
        shown = f"{bound:g}" if isinstance(bound, float) else str(bound)
        message = f"expected a number {words} {shown}{got}"
    elif kind in _EXPECTED:
        message = _EXPECTED[kind] + got
        if kind in ("list_type", "tuple_type") and path == ("symbols",):
            hint = "write a list, e.g. symbols: [BTC/USDT, ETH/USDT]"
        elif kind in ("model_type", "dict_type") and path:
            model = _model_at(path)
            if model is not None:
                hint = "keys: " + ", ".join(model.model_fields)
    else:
        msg = str(err["msg"])
        message = (msg[:1].lower() + msg[1:]) + got
    error = source.error(path, message, hint=hint, at_key=at_key)
    order = (error.line or float("inf"), error.column or float("inf"))
    return order, n, error
