"""Where btccxt keeps its files, and the one check for every file path a user names.

Policy (documented in docs/config.md, "Files and folders"): btccxt creates missing folders only
inside its own data folder (``data_dir()``). Any other path a user names, for a log, events
file, cache, orders database or export, must have an existing parent folder; a missing parent,
a parent that is a file, a path that is a folder or a folder we may not write to is refused
with one line naming the path, the option it came from and the fix, before any work starts.

Within one command (``begin_command``, called by the CLI for each invocation) every file a
user names has one role: the config, the strategy file and each output (log, events, cache,
orders database, trades, report, export) are claimed as they are checked, and an output that
is another of them is refused. So a log, events or report file named like the config (or the
cache) never appends to, overwrites or rotates away the user's file.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from btccxt_cli.errors import ConfigError

__all__ = ["data_dir", "check_output_file", "begin_command", "claim"]


def data_dir() -> Path:
    """btccxt's data folder: ``$XDG_DATA_HOME/btccxt`` (default ``~/.local/share/btccxt``),
    ``~/Library/Application Support/btccxt`` on macOS, ``%LOCALAPPDATA%\\btccxt`` on Windows.
    Nothing is created here."""
    home = Path.home()
    if sys.platform == "darwin":
        base = home / "Library" / "Application Support"
    elif sys.platform.startswith("win"):
        base = Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
    else:
        xdg = os.environ.get("XDG_DATA_HOME", "")
        # the XDG spec says relative paths are invalid and must be ignored
        base = Path(xdg) if xdg and os.path.isabs(xdg) else home / ".local" / "share"
    return base / "btccxt"


#: resolved path -> its role ("config file", "events file" ...) in the current command; None
#: outside a command (library use: nothing is claimed)
_claimed: dict[str, str] | None = None


def begin_command() -> None:
    """A CLI command starts: no file has a role yet."""
    global _claimed
    _claimed = {}


def _key(path: str | os.PathLike[str]) -> str:
    return str(Path(path).expanduser().resolve())


def claim(path: str | os.PathLike[str], what: str) -> None:
    """``path`` is the ``what`` of this command (an output named like it is refused)."""
    if _claimed is not None:
        _claimed.setdefault(_key(path), what)


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def check_output_file(path: str | os.PathLike[str], *, what: str, option: str,
                      file: str | None = None, line: int | None = None,
                      create_in: tuple[Path, ...] = ()) -> Path:
    """Check that ``path`` can be written as a file, and return it (``~`` expanded).

    ``what`` names the file for a person ("events file"), ``option`` where the path came from
    (``--events`` or ``events.file``); ``file``/``line`` locate a config value. A missing parent
    folder is created only inside ``data_dir()`` or one of ``create_in``; anywhere else it is a
    ``ConfigError`` (exit 2) with a hint. Nothing else is touched.
    """
    p = Path(path).expanduser()
    where = {"file": file, "line": line, "key": option}

    def refuse(message: str, hint: str) -> ConfigError:
        return ConfigError(message, hint=hint, **where)  # type: ignore[arg-type]

    if str(path) == "" or p.name in ("", ".", ".."):
        example = {"log file": "run.log", "OHLCV cache": "ohlcv.sqlite", "cache": "ohlcv.sqlite",
                   "orders database": "orders.sqlite", "report file": "report.html",
                   "trades file": "trades.csv"}.get(what, "out.jsonl")
        raise refuse(f"{what} path {str(path)!r} is not a file name", f"name a file, e.g. {example}")
    if _claimed is not None:  # in a command: one role per file
        key = _key(p)
        other = _claimed.setdefault(key, what)
        if other != what:
            raise refuse(f"{what} {str(p)!r} is the {other} of this command",
                         f"name another file for the {what}")
    if p.is_dir():
        raise refuse(f"{what} {str(p)!r} is a folder", f"name a file inside it, e.g. {p / 'out'}")
    parent = p.parent
    if parent.exists():
        if not parent.is_dir():
            raise refuse(f"{what} {str(p)!r}: {str(parent)!r} is a file, not a folder",
                         "choose a path in an existing folder")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise refuse(f"{what} {str(p)!r}: no permission to write in {str(parent)!r}",
                         "choose a folder you can write to")
        if p.exists() and not os.access(p, os.W_OK):
            raise refuse(f"{what} {str(p)!r} is not writable", "fix its permissions or choose another file")
        return p
    if any(_inside(parent, d) for d in (data_dir(), *create_in)):
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise refuse(f"{what} {str(p)!r}: cannot create {str(parent)!r} ({exc.strerror})",
                         "choose a folder you can write to") from None
        return p
    raise refuse(f"{what} {str(p)!r}: folder {str(parent)!r} does not exist",
                 f"create it first (mkdir -p {parent}) or choose an existing folder")
