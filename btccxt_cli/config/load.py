"""Read a YAML config: keep every key's line and column, expand ``${ENV}``, validate, apply rules.

Role: the one place that turns a file into a ``Config`` or into ONE ``ConfigError`` that names the
file, line, column, key path, what was expected and (for misspelt keys) a suggestion. Everything
that can go wrong here (YAML syntax, unknown keys, wrong types, bad values, missing environment
variables, cross-field rules) ends as a ``ConfigError`` (``CredentialsError`` for credentials).

Secrets: credentials are read only from ``${VAR}`` references, looked up in the environment and
then in a ``.env`` file beside the config (the real environment wins). Every resolved secret is
passed to ``log.register_secret`` so log records mask it; error messages never include it.

Modules: ``load`` (this one: the entry points, YAML with positions, relative paths), ``env``
(``${VAR}`` and ``.env``), ``messages`` (pydantic errors as one located message).
``read_dotenv`` and ``CREDENTIAL_KEYS`` are re-exported from ``env``.

Must not import: ccxt, typer, rich.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from btccxt_cli.config import rules
from btccxt_cli.config.env import (
    CREDENTIAL_KEYS,
    Environment,
    drop_unset_credentials,
    expand_all,
    read_dotenv,
)
from btccxt_cli.config.messages import kind_of, translate
from btccxt_cli.config.schema import Config, KeyPath, SourceMap, format_path
from btccxt_cli.errors import ConfigError
from btccxt_cli.log import register_secret
from btccxt_cli.paths import check_output_file, claim

__all__ = ["load_config", "loads_config", "parse_yaml", "read_config_text", "read_dotenv",
           "CREDENTIAL_KEYS"]

logger = logging.getLogger(__name__)

_MAX_NODES = 100_000  # guards against alias bombs ("billion laughs")
_MAX_DEPTH = 64
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"


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
    text = read_config_text(p)
    return loads_config(text, file=str(p), env=env, base_dir=p.parent, env_file=p.parent / ".env")


_FD_PATH = re.compile(r"/(dev/fd|proc/self/fd)/\d+|/dev/stdin")
"""A descriptor the shell opened for us (``<(cat x.yaml)``, ``< x.yaml``): a pipe is fine there."""

_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def read_config_text(path: Path) -> str:
    """The text of the config file at ``path``, or ONE ``ConfigError`` naming it.

    Only a regular file (or a symlink to one) is opened: a FIFO would block until a writer
    came, ``/dev/zero`` would never end. A pipe is read only when the path is a descriptor
    the shell passed (``/dev/fd/N``, ``/proc/self/fd/N``, ``/dev/stdin``: process substitution).
    """
    try:
        st = path.stat()  # follows symlinks
    except FileNotFoundError:
        raise ConfigError("file not found", file=str(path),
                          hint="pass the path of a YAML config, e.g. configs/demo.yaml") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror or exc}", file=str(path)) from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError("is a directory, not a YAML file", file=str(path))
    if not stat.S_ISREG(st.st_mode) and not (
            stat.S_ISFIFO(st.st_mode) and _FD_PATH.fullmatch(str(path))):
        kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
        raise ConfigError(f"is {kind}, not a YAML file", file=str(path),
                          hint="pass the path of a regular file; process substitution "
                          "<(cat config.yaml) works too")
    try:
        return path.read_text(encoding="utf-8")
    except IsADirectoryError:
        raise ConfigError("is a directory, not a YAML file", file=str(path)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text ({exc.reason} at byte {exc.start})",
                          file=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror or exc}", file=str(path)) from None


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
    environ = Environment(os.environ if env is None else env, env_file)
    data = drop_unset_credentials(data, source, environ)  # paper trading needs no keys
    # register_secret is looked up here, at call time, so patching load.register_secret works
    data = expand_all(data, (), source, environ, register_secret)
    if base_dir is not None:
        _resolve_paths(data, base_dir)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise translate(exc, data, source) from None
    config.with_source(source)
    rules.check_config(config)
    _check_files(config, base_dir)
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
        raise source.error((), f"expected a mapping at the top level; got {kind_of(data)}",
                           hint="a config needs at least exchange, symbols and strategy")
    return data, source


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
            raise self._error(knode, path, f"key {shown!r} is read as {kind_of(key)}, not text",
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


def _resolve_paths(data: dict[str, Any], base_dir: Path) -> None:
    for section in ("strategy", "logging", "events"):
        key = "path" if section == "strategy" else "file"
        block = data.get(section)
        if isinstance(block, dict) and isinstance(block.get(key), str) and block[key].strip():
            p = Path(block[key]).expanduser()
            block[key] = str(p if p.is_absolute() else base_dir / p)


def _check_files(config: Config, base_dir: Path | None = None) -> None:
    if base_dir is not None and config.source.file:  # a file on disk: no output may be it
        claim(config.source.file, "config file")
    path = config.strategy.path
    if path is not None and path.is_file():
        claim(path, "strategy file")
    if path is not None and path.is_dir():
        raise config.source.error(("strategy", "path"), f"strategy path {path} is a folder",
                                  hint="name the .py file in it that holds the strategy")
    if path is not None and not path.is_file():
        raise config.source.error(("strategy", "path"), f"strategy file not found: {path}",
                                  hint="paths are relative to the config file; or use name: for "
                                  "a module in strategies/")
    # (key, path, what, relative to the config file here: logging/events already are)
    outputs: list[tuple[KeyPath, Path | None, str, bool]] = [
        (("logging", "file"), config.logging.file, "log file", False),
        (("events", "file"), config.events.file, "events file", False),
    ]
    if config.broker.mode == "live" and str(config.broker.orders_db) != ":memory:":
        outputs.append((("broker", "orders_db"), config.broker.orders_db, "orders database", True))
    if isinstance(config.feed.cache, str):
        outputs.append((("feed", "cache"), Path(config.feed.cache), "OHLCV cache", True))
    for key, out, what, relative in outputs:
        if out is None:
            continue
        if relative and base_dir is not None and not out.expanduser().is_absolute():
            out = base_dir / out  # as the runner resolves them
        _check_output(config, key, out, what)


def _check_output(config: Config, key: KeyPath, path: Path, what: str) -> None:
    """The one output-path policy (``paths.check_output_file``), located at the config's line."""
    try:
        check_output_file(path, what=what, option="")
    except ConfigError as exc:
        raise config.source.error(key, exc.message, hint=exc.hint) from None
