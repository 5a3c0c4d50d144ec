"""Read a YAML config: keep every key's line and column, expand ``${ENV}``, validate, apply rules.

Role: the one place that turns a file into a ``Config`` or into ONE ``ConfigError`` that names the
file, line, column, key path, what was expected and (for misspelt keys) a suggestion. Everything
that can go wrong here (YAML syntax, unknown keys, wrong types, bad values, missing environment
variables, cross-field rules) ends as a ``ConfigError`` (``CredentialsError`` for credentials).

Secrets: credentials are read only from ``${VAR}`` references, looked up in the environment and
then in a ``.env`` file beside the config (the real environment wins). Every resolved secret is
passed to ``log.register_secret`` so log records mask it; error messages never include it.

Must not import: ccxt, typer, rich.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from btccxt_cli.config import rules
from btccxt_cli.config.schema import Config, KeyPath, SourceMap, format_path
from btccxt_cli.errors import ConfigError, CredentialsError
from btccxt_cli.log import register_secret

__all__ = ["load_config", "loads_config", "parse_yaml", "read_dotenv", "CREDENTIAL_KEYS"]

logger = logging.getLogger(__name__)

CREDENTIAL_KEYS = ("api_key", "secret", "password")
"""Keys of ``exchange`` that hold secrets: only ``${ENV_VAR}`` references belong there."""

_CREDENTIAL_PATHS = frozenset(("exchange", k) for k in CREDENTIAL_KEYS)
_MAX_NODES = 100_000  # guards against alias bombs ("billion laughs")
_MAX_DEPTH = 64
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_REF = re.compile(r"\$(\$)?\{([^{}]*)(\})?")

_EXAMPLES = {
    ("exchange",): "add exchange: {id: binance}",
    ("symbols",): "add symbols: [BTC/USDT]",
    ("strategy",): "add strategy: {name: sma_cross}",
    ("exchange", "id"): "the ccxt exchange id, e.g. id: binance",
}


# --------------------------------------------------------------------------- public API


def load_config(path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None) -> Config:
    """Read, validate and check the config file at ``path``.

    Args:
        path: the YAML file.
        env: environment for ``${VAR}`` references (default ``os.environ``). A ``.env`` file
            beside the config fills in names that ``env`` lacks.

    Returns:
        The frozen ``Config``; ``config.source`` maps keys to lines. Relative paths in it
        (strategy.path, logging.file, events.file) are resolved against the config's folder.

    Raises:
        ConfigError: anything wrong with the file (``CredentialsError`` for credentials).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", file=str(p),
                          hint="pass the path of a YAML config, e.g. configs/demo.yaml") from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a YAML file", file=str(p)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", file=str(p)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror or exc}", file=str(p)) from None
    return loads_config(text, file=str(p), env=env, base_dir=p.parent, env_file=p.parent / ".env")


def loads_config(text: str, *, file: str | None = None, env: Mapping[str, str] | None = None,
                 base_dir: Path | None = None, env_file: Path | None = None) -> Config:
    """Like ``load_config`` for YAML text already in memory.

    Args:
        text: the YAML document.
        file: name used in error messages.
        env: environment for ``${VAR}`` references (default ``os.environ``).
        base_dir: folder that relative paths are resolved against (default: left relative).
        env_file: a ``.env`` file to read (real environment wins); None reads none.
    """
    data, source = parse_yaml(text, file=file)
    environ = _Environment(os.environ if env is None else env, env_file)
    data = _expand_all(data, (), source, environ)
    if base_dir is not None:
        _resolve_paths(data, base_dir)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise _translate(exc, data, source) from None
    config.with_source(source)
    rules.check_config(config)
    _check_files(config)
    return config


def parse_yaml(text: str, *, file: str | None = None) -> tuple[dict[str, Any], SourceMap]:
    """Parse one YAML document into plain data plus the position of every key and value.

    Raises ``ConfigError`` for malformed YAML, an empty document, a top level that is not a
    mapping, non-text or duplicate keys, recursive aliases and oversized documents.
    """
    loader: yaml.SafeLoader | None = None
    try:
        loader = yaml.SafeLoader(text)  # checks for unprintable characters at once
        walker = _Walker(loader, file)
        node = loader.get_single_node()
        if node is None:
            raise ConfigError("the file is empty", file=file, line=1, column=1,
                              hint="a config needs at least exchange, symbols and strategy")
        data = walker.value(node, (), 0)
    except yaml.MarkedYAMLError as exc:
        raise _yaml_error(exc, file, text) from None
    except yaml.YAMLError as exc:  # ReaderError (bad characters) carries a position, no mark
        line = column = None
        position = getattr(exc, "position", None)
        if isinstance(position, int):
            line = text.count("\n", 0, position) + 1
            column = position - (text.rfind("\n", 0, position) + 1) + 1
        reason = getattr(exc, "reason", None) or str(exc).splitlines()[0]
        raise ConfigError(f"invalid YAML: {reason}", file=file, line=line, column=column) from None
    except RecursionError:
        raise ConfigError("invalid YAML: nested too deeply", file=file, line=1, column=1) from None
    finally:
        if loader is not None:
            loader.dispose()
    source = SourceMap(file=file, keys=walker.keys, values=walker.values,
                       scalars=frozenset(walker.scalars))
    if not isinstance(data, dict):
        raise source.error((), f"expected a mapping at the top level; got {_kind(data)}",
                           hint="a config needs at least exchange, symbols and strategy")
    return data, source


def read_dotenv(path: Path) -> dict[str, str]:
    """Read ``KEY=VALUE`` lines (``# comments``, optional ``export`` and quotes); missing file -> {}.

    Malformed lines are skipped with a warning naming the line (never its content).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    out: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not _ENV_NAME.match(name):
            logger.warning("%s:%d: ignoring a line that is not NAME=VALUE", path, lineno)
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            value = re.split(r"\s+#", value, maxsplit=1)[0].rstrip()
        out[name] = value
    return out


# --------------------------------------------------------------------------- YAML walking


def _mark(node: Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _yaml_error(exc: yaml.MarkedYAMLError, file: str | None, text: str) -> ConfigError:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or "cannot parse"
    context = f" ({exc.context})" if exc.context else ""
    line = text.splitlines()[mark.line] if mark and mark.line < len(text.splitlines()) else ""
    hint = ""
    if "\\t" in problem or "\t" in problem:
        hint = "YAML indents with spaces, not tabs"
    elif "${" in line:
        hint = 'quote ${VAR} references, e.g. secret: "${BINANCE_SECRET}"'
    elif "mapping values are not allowed" in problem:
        hint = "check the indentation, or quote a value that contains ': '"
    elif "expected a single document" in problem or "but found another document" in problem:
        hint = "a config is one YAML document; remove the extra '---'"
    return ConfigError(
        f"invalid YAML{context}: {problem}", file=file,
        line=mark.line + 1 if mark else None, column=mark.column + 1 if mark else None, hint=hint,
    )


class _Walker:
    """Builds plain data from a composed node tree, recording the position of each key and value."""

    def __init__(self, loader: yaml.SafeLoader, file: str | None) -> None:
        self.loader = loader
        self.file = file
        self.keys: dict[KeyPath, tuple[int, int]] = {}
        self.values: dict[KeyPath, tuple[int, int]] = {}
        self.scalars: set[KeyPath] = set()
        self._count = 0
        self._open: set[int] = set()

    def _error(self, node: Node, path: KeyPath, message: str, hint: str = "") -> ConfigError:
        line, column = _mark(node)
        return ConfigError(message, file=self.file, line=line, column=column,
                           key=format_path(path) or None, hint=hint)

    def _construct(self, node: Node, path: KeyPath) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.MarkedYAMLError:
            raise
        except Exception as exc:  # e.g. a timestamp like 2024-13-45 that the regex accepts
            raise self._error(node, path, f"cannot read this value ({type(exc).__name__})") from None

    def value(self, node: Node, path: KeyPath, depth: int) -> Any:
        self._count += 1
        if self._count > _MAX_NODES:
            raise self._error(node, path, "document too large (more than "
                              f"{_MAX_NODES} values after expanding aliases)")
        if depth > _MAX_DEPTH:
            raise self._error(node, path, f"nested more than {_MAX_DEPTH} levels deep")
        self.values[path] = _mark(node)
        if isinstance(node, ScalarNode):
            self.scalars.add(path)
            return self._construct(node, path)
        if id(node) in self._open:
            raise self._error(node, path, "recursive alias: a value cannot contain itself")
        self._open.add(id(node))
        try:
            if isinstance(node, MappingNode) and node.tag == _MAP_TAG:
                return self._mapping(node, path, depth)
            if isinstance(node, SequenceNode) and node.tag == _SEQ_TAG:
                return [self.value(item, path + (i,), depth + 1) for i, item in enumerate(node.value)]
            return self._construct(node, path)  # !!set, !!omap ...: no positions inside
        finally:
            self._open.discard(id(node))

    def _key(self, knode: Node, path: KeyPath) -> str:
        if not isinstance(knode, ScalarNode):
            raise self._error(knode, path, "a key must be plain text, not a list or mapping")
        key = self._construct(knode, path)
        if not isinstance(key, str):
            shown = knode.value if len(knode.value) <= 40 else knode.value[:37] + "..."
            raise self._error(knode, path, f"key {shown!r} is read as {_kind(key)}, not text",
                              hint=f"quote it: '{shown}':")
        return key

    def _mapping(self, node: MappingNode, path: KeyPath, depth: int) -> dict[str, Any]:
        # Duplicates among the mapping's own keys are errors; keys brought in by a '<<' merge
        # are overridden silently, as YAML specifies.
        seen: dict[str, Node] = {}
        for knode, _ in node.value:
            if knode.tag == _MERGE_TAG:
                continue
            key = self._key(knode, path)
            if key in seen:
                first = _mark(seen[key])[0]
                where = f"in {format_path(path)}" if path else "at the top level"
                raise self._error(knode, path + (key,),
                                  f"duplicate key {key!r} {where} (first set on line {first})",
                                  hint="keep one of them")
            seen[key] = knode
        self.loader.flatten_mapping(node)
        out: dict[str, Any] = {}
        for knode, vnode in node.value:
            key = self._key(knode, path)
            kpath = path + (key,)
            self.keys[kpath] = _mark(knode)
            out[key] = self.value(vnode, kpath, depth + 1)
        return out


# --------------------------------------------------------------------------- environment


class _Environment:
    """Real environment first, then the ``.env`` file (read once, on first need)."""

    def __init__(self, env: Mapping[str, str], env_file: Path | None) -> None:
        self.env = env
        self.env_file = env_file
        self._dotenv: dict[str, str] | None = None

    def get(self, name: str) -> str | None:
        if name in self.env:
            return self.env[name]
        if self.env_file is None:
            return None
        if self._dotenv is None:
            self._dotenv = read_dotenv(self.env_file)
        return self._dotenv.get(name)

    def where(self) -> str:
        return str(self.env_file.resolve()) if self.env_file is not None else ".env"


def _is_secret_path(path: KeyPath) -> bool:
    return path[:2] in _CREDENTIAL_PATHS or path[:2] == ("exchange", "options")


def _expand_all(data: Any, path: KeyPath, source: SourceMap, environ: _Environment) -> Any:
    if isinstance(data, dict):
        return {k: _expand_all(v, path + (k,), source, environ) for k, v in data.items()}
    if isinstance(data, list):
        return [_expand_all(v, path + (i,), source, environ) for i, v in enumerate(data)]
    is_credential = path in _CREDENTIAL_PATHS
    if not isinstance(data, str):
        if is_credential and data is not None and not isinstance(data, (dict, list)):
            register_secret(str(data))
        return data
    if "${" not in data:
        if is_credential and data.strip():
            register_secret(data)
            line, _ = source.locate(path)
            logger.warning(
                "%s:%s: %s is written inline; move it to an environment variable (or %s) "
                "and write %s: ${NAME}",
                source.file or "<config>", line, format_path(path), environ.where(), path[-1],
            )
        return data
    value = _expand(data, path, source, environ, is_credential)
    if _is_secret_path(path):
        register_secret(value)
    return value


def _expand(text: str, path: KeyPath, source: SourceMap, environ: _Environment,
            is_credential: bool) -> str:
    cls = CredentialsError if is_credential else ConfigError

    def sub(m: re.Match[str]) -> str:
        escaped, name, closed = m.group(1), m.group(2), m.group(3)
        if escaped:  # "$${X}" is a literal "${X}"
            return "${" + name + (closed or "")
        if not closed or not _ENV_NAME.match(name):
            raise source.error(path, "malformed ${...} reference", cls=cls,
                               hint="write ${NAME} with letters, digits and _ (e.g. ${BINANCE_SECRET})")
        value = environ.get(name)
        if value is None:
            raise source.error(
                path, f"environment variable {name} is not set; export it or add it to {environ.where()}",
                cls=cls)
        if is_credential and not value.strip():
            raise source.error(
                path, f"environment variable {name} is empty; export it or add it to {environ.where()}",
                cls=cls)
        return value

    return _REF.sub(sub, text)


def _resolve_paths(data: dict[str, Any], base_dir: Path) -> None:
    for section in ("strategy", "logging", "events"):
        key = "path" if section == "strategy" else "file"
        block = data.get(section)
        if isinstance(block, dict) and isinstance(block.get(key), str) and block[key].strip():
            p = Path(block[key]).expanduser()
            block[key] = str(p if p.is_absolute() else base_dir / p)


def _check_files(config: Config) -> None:
    path = config.strategy.path
    if path is not None and not path.is_file():
        raise config.source.error(("strategy", "path"), f"strategy file not found: {path}",
                                  hint="paths are relative to the config file; or use name: for "
                                  "a module in strategies/")


# --------------------------------------------------------------------------- pydantic errors


def _kind(value: Any) -> str:
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
        return _kind(value)
    if isinstance(value, date):
        return f"{_kind(value)} ({value.isoformat()})"
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


def _translate(exc: ValidationError, data: dict[str, Any], source: SourceMap) -> ConfigError:
    """ONE ConfigError for a ValidationError: the problem that comes first in the file."""
    errors = exc.errors(include_url=False)
    # "too short after validation" only echoes a failed item when the input had enough items.
    primary = [e for e in errors if not _is_echo(e)] or errors
    found = [_one_error(err, data, source, n) for n, err in enumerate(primary)]
    found.sort(key=lambda t: (t[0], t[1]))
    return found[0][2]


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
    got = "" if _is_secret_path(path) else f"; got {_show(value)}"
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

