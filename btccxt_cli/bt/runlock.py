"""One live run per orders database, account and run scope (``docs/orders.md``, "Run scope").

Two runs on one account and one orders database would adopt each other's orders (a run adopts
the live orders of its scope), tell them to their own strategy and cancel them with their kill
switch. So a live run takes an advisory lock (``fcntl.flock``, released by the kernel when the
process dies, so a crash never leaves a stale lock) on a small file beside the database,
``<db>.<hash of account and scope>.lock``, holding the pid, start time and scope of its owner.
A second run on the same scope is refused with one line naming the first run and the YAML key
that lets it run beside it (``broker.run_scope``: another scope).

No lock for ``:memory:`` databases, nor where ``fcntl`` does not exist (Windows: the scopes
still keep the orders apart).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from btccxt_cli.errors import ConfigError

__all__ = ["RunLock", "default_scope", "lock_path"]

logger = logging.getLogger(__name__)


def default_scope(config_path: str | Path | None, strategy: str) -> str:
    """The default ``broker.run_scope``: the config file (resolved) and the strategy's name,
    so two configs, or two strategies, keep their orders apart."""
    where = str(Path(config_path).resolve()) if config_path else ""
    return f"{where}#{strategy}" if where else strategy


def lock_path(db_path: str | Path, account: str, scope: str) -> Path:
    digest = hashlib.sha256(f"{account}\n{scope}".encode()).hexdigest()[:12]
    p = Path(db_path)
    return p.with_name(f"{p.name}.{digest}.lock")


class RunLock:
    """The advisory lock of one live run (``acquire`` once; ``release`` at stop)."""

    def __init__(self, db_path: str | Path, account: str, scope: str, *, started_ms: int) -> None:
        self.db_path = str(db_path)
        self.path = None if self.db_path == ":memory:" else lock_path(db_path, account, scope)
        self.scope = scope
        self.started_ms = started_ms
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock, or raise ``ConfigError`` (exit 2) naming the run that holds it."""
        try:
            import fcntl
        except ImportError:  # Windows
            return
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held open while running
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            other = _read(f.read())
            f.close()
            started = other.get("started_ms")
            when = (datetime.fromtimestamp(started / 1000, tz=timezone.utc).strftime(
                "%Y-%m-%d %H:%M:%S UTC") if isinstance(started, (int, float)) else "?")
            raise ConfigError(
                f"another live run (pid {other.get('pid', '?')}, started {when}) uses the orders "
                f"database {self.db_path} with this account "
                f"and run scope {self.scope!r}; two runs would adopt and cancel each other's orders",
                hint="stop it first, or give this run its own broker.run_scope in the config") from None
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "started_ms": self.started_ms, "scope": self.scope}))
        f.flush()
        self._file = f

    def release(self) -> None:
        f, self._file = self._file, None
        if f is None:
            return
        try:
            f.seek(0)
            f.truncate()
        except OSError:
            logger.debug("clearing the run lock", exc_info=True)
        f.close()  # closing the descriptor releases the flock


def _read(text: str) -> dict[str, Any]:
    try:
        out = json.loads(text)
    except ValueError:
        return {}
    return out if isinstance(out, dict) else {}
