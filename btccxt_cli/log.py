"""Logging helpers: a secret-redaction filter and plain setup. No rich here."""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

__all__ = ["log_early", "register_secret", "register_notify_url", "RedactingFilter", "JsonFormatter",
           "setup_logging", "redact"]

_secrets: set[str] = set()
_lock = threading.Lock()
_pattern: re.Pattern[str] | None = None


def register_secret(value: str | None) -> None:
    """Remember a secret so that it is masked in every log record and message we render."""
    global _pattern
    if not value or len(value) < 4:
        return
    with _lock:
        _secrets.add(value)
        _pattern = re.compile("|".join(re.escape(s) for s in sorted(_secrets, key=len, reverse=True)))


def register_notify_url(url: str) -> None:
    """A notification URL is a secret, and so is each token in it: services put them in the
    user, password, host, path or query (``tgram://BOTTOKEN/CHAT``, ``discord://ID/TOKEN``).
    Parts that look like a host name or a plain word are left readable."""
    register_secret(url)
    rest = url.split("://", 1)[-1]
    userinfo = rest.split("/", 1)[0].rpartition("@")[0]
    if ":" in userinfo:  # mailto://user:PASSWORD@host: the password, whatever it looks like
        register_secret(userinfo.split(":", 1)[1])
    for part in re.split(r"[/@:?&=#,]+", rest):
        if len(part) >= 8 and not re.fullmatch(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+", part) and (
                len(part) >= 16 or not (part.isalpha() and part.islower())):
            register_secret(part)


def redact(text: str) -> str:
    """Mask every registered secret in ``text``."""
    pat = _pattern
    return pat.sub("***", text) if pat is not None and text else text


class RedactingFilter(logging.Filter):
    """Masks registered secrets in the formatted message and arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _pattern is not None:
            msg = record.getMessage()
            red = redact(msg)
            if red != msg:
                record.msg, record.args = red, None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (ISO 8601 UTC), level, logger, message (+ exc_info)."""

    def format(self, record: logging.LogRecord) -> str:
        import json
        from datetime import datetime, timezone

        out = {"time": datetime.fromtimestamp(record.created, tz=timezone.utc)
               .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
               "level": record.levelname, "logger": record.name,
               "message": redact(record.getMessage())}
        if record.exc_info:
            out["exc_info"] = redact(self.formatException(record.exc_info))
        return json.dumps(out, ensure_ascii=False)


def _file_handler(file: str, rotate: str, max_bytes: int, backups: int) -> logging.Handler:
    from logging.handlers import RotatingFileHandler, TimedRotatingFileHandler

    if rotate == "daily":
        return TimedRotatingFileHandler(file, when="midnight", utc=True, backupCount=backups,
                                        encoding="utf-8")
    if rotate == "size":
        return RotatingFileHandler(file, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
    return logging.FileHandler(file, encoding="utf-8")


def _level(level: str | int) -> int:
    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
    return level if isinstance(level, int) else logging.WARNING


def setup_logging(level: str | int = "WARNING", *, file: str | None = None,
                  handler: logging.Handler | None = None, stream_level: str | int | None = None,
                  fmt: str = "text", rotate: str = "size", max_bytes: int = 10 * 1024 * 1024,
                  backups: int = 5) -> None:
    """Attach a stream handler (stderr, or ``handler``) and optionally a file, with redaction.

    ``stream_level`` raises the terminal's threshold above ``level`` (the dashboard shows
    INFO events itself); the file always gets ``level``. The file rotates (``rotate``: size at
    ``max_bytes``, daily at midnight UTC, or none; ``backups`` old files kept). ``fmt="json"``
    writes one JSON object per line to the file and to stderr (not to a given ``handler``).
    """
    root = logging.getLogger("btccxt_cli")
    level = _level(level)
    root.setLevel(level)
    for h in list(root.handlers):
        if getattr(h, "_btccxt", False):
            root.removeHandler(h)
    stream = handler or logging.StreamHandler()
    stream.setLevel(max(level, _level(stream_level)) if stream_level is not None else level)
    handlers: list[logging.Handler] = [stream]
    if file:
        handlers.append(_file_handler(file, rotate, max_bytes, backups))
    for h in handlers:
        h._btccxt = True  # type: ignore[attr-defined]
        h.addFilter(RedactingFilter())
        if fmt == "json" and h is not handler:
            h.setFormatter(JsonFormatter())
        elif h.formatter is None:
            h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(h)
    _release_early()


#: notes logged before the run's logging was set up, at a level it did not show yet
_early: list[tuple[str, int, str, tuple[Any, ...]]] = []


def log_early(logger: logging.Logger, level: int, msg: str, *args: Any) -> None:
    """Log now if ``logger`` shows ``level``; else keep it for the next ``setup_logging`` that
    does (the config is read before the run's logging is set up from it: ``logging.level:
    INFO`` still shows what loading it had to say)."""
    if logger.isEnabledFor(level):
        logger.log(level, msg, *args)
    elif len(_early) < 100:
        _early.append((logger.name, level, msg, args))


def _release_early() -> None:
    kept = []
    for name, level, msg, args in _early:
        lg = logging.getLogger(name)
        if lg.isEnabledFor(level):
            lg.log(level, msg, *args)
        else:
            kept.append((name, level, msg, args))
    _early[:] = kept
