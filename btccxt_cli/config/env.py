"""``${VAR}`` references and ``.env`` files: where the config's secrets come from.

Role: :func:`expand_all` replaces every ``${NAME}`` in the parsed YAML data with its value from
the environment, then from a ``.env`` file beside the config (:class:`Environment`; the real
environment wins); ``$${NAME}`` is a literal ``${NAME}``. Credentials (``exchange.api_key``,
``secret``, ``password``: :data:`CREDENTIAL_KEYS`) must be references; an inline one is
accepted with a warning. Credentials are needed only for live orders:
:func:`drop_unset_credentials` lets a paper config whose credential variables are all unset
run without keys, and names the variable (and why) when a live config lacks one. Every resolved secret goes to the ``register`` callback the loader passes
(``log.register_secret``). :func:`read_dotenv` reads ``KEY=VALUE`` files. Errors are located
``ConfigError`` / ``CredentialsError`` that never include a secret's value.

Uses neither yaml nor pydantic itself (``config.schema`` does). Must not import: ccxt, typer,
rich, ``config.load`` or ``config.messages`` (they import this one).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from btccxt_cli.config.schema import KeyPath, SourceMap, format_path
from btccxt_cli.errors import ConfigError, CredentialsError
from btccxt_cli.log import log_early

__all__ = ["CREDENTIAL_KEYS", "Environment", "drop_unset_credentials", "expand_all", "is_secret_path",
           "read_dotenv"]

logger = logging.getLogger(__name__)

CREDENTIAL_KEYS = ("api_key", "secret", "password")
"""Keys of ``exchange`` that hold secrets: only ``${ENV_VAR}`` references belong there."""

_CREDENTIAL_PATHS = frozenset(("exchange", k) for k in CREDENTIAL_KEYS)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_REF = re.compile(r"\$(\$)?\{([^{}]*)(\})?")


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


class Environment:
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


def is_secret_path(path: KeyPath) -> bool:
    """Values here are secrets: registered for redaction, never shown in error messages."""
    return path[:2] in _CREDENTIAL_PATHS or path[:2] in (("exchange", "options"), ("notify", "urls"))


def _ref_names(text: str) -> list[str]:
    return [m.group(2) for m in _REF.finditer(text)
            if not m.group(1) and m.group(3) and _ENV_NAME.match(m.group(2))]


def drop_unset_credentials(data: Any, source: SourceMap, environ: Environment) -> Any:
    """Credentials only where they are used: live orders (``broker.mode: live``).

    Paper trading reads public market data only: when every credential of a paper config is a
    ``${VAR}`` reference to an unset (or empty) variable, the credentials are left out and the
    config loads without keys (logged at INFO). Some set and some not stays an error (a
    half-given key is a mistake). A live config missing one is a located ``CredentialsError``
    that says live orders need it. Runs before :func:`expand_all`, on the parsed data.
    """
    ex = data.get("exchange") if isinstance(data, dict) else None
    if not isinstance(ex, dict):
        return data
    refs = {k: _ref_names(v) for k in CREDENTIAL_KEYS
            if isinstance(v := ex.get(k), str) and "${" in v}
    refs = {k: names for k, names in refs.items() if names}
    if not refs:
        return data
    unset = {k: [n for n in names if not (environ.get(n) or "").strip()] for k, names in refs.items()}
    broker = data.get("broker")
    if isinstance(broker, dict) and broker.get("mode") == "live":
        for key, names in unset.items():
            if names:
                raise source.error(
                    ("exchange", key), f"environment variable {names[0]} is not set, and broker.mode "
                    f"live places real orders with it; export it or add it to {environ.where()}",
                    cls=CredentialsError)
        return data
    given = {k for k in CREDENTIAL_KEYS if ex.get(k) is not None}
    if given != set(refs) or any(unset[k] != refs[k] for k in refs):
        return data  # some credentials given: expand_all checks them all
    names = [n for k in refs for n in refs[k]]
    log_early(logger, logging.INFO, "%s: %s not set; paper trading reads public market data "
              "only, so this run uses no API keys (live orders need them)",
              source.file or "<config>", ", ".join(names))
    return {**data, "exchange": {k: v for k, v in ex.items() if k not in refs}}


def expand_all(data: Any, path: KeyPath, source: SourceMap, environ: Environment,
               register: Callable[[str], None]) -> Any:
    """Expand every ``${VAR}`` in ``data`` (plain YAML data) and register secrets.

    Args:
        data: the parsed document, or a part of it at ``path``.
        path: key path of ``data`` in the document (``()`` for the whole).
        source: positions, for located errors and the inline-secret warning.
        environ: where ``${VAR}`` values come from.
        register: called with every resolved secret (``log.register_secret``; the loader
            passes its own reference so that patching ``config.load.register_secret`` works).

    Raises:
        ConfigError: a malformed reference or an unset variable (``CredentialsError`` under
            ``exchange.api_key/secret/password``, also for an empty one).
    """
    if isinstance(data, dict):
        return {k: expand_all(v, path + (k,), source, environ, register) for k, v in data.items()}
    if isinstance(data, list):
        return [expand_all(v, path + (i,), source, environ, register) for i, v in enumerate(data)]
    is_credential = path in _CREDENTIAL_PATHS
    if not isinstance(data, str):
        if is_credential and data is not None and not isinstance(data, (dict, list)):
            register(str(data))
        return data
    if "${" not in data:
        if is_credential and data.strip():
            register(data)
            line, _ = source.locate(path)
            logger.warning(
                "%s:%s: %s is written inline; move it to an environment variable (or %s) "
                "and write %s: ${NAME}",
                source.file or "<config>", line, format_path(path), environ.where(), path[-1],
            )
        return data
    value = _expand(data, path, source, environ, is_credential)
    if is_secret_path(path):
        register(value)
    return value


def _expand(text: str, path: KeyPath, source: SourceMap, environ: Environment,
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
