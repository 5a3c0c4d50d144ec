"""Logging helpers: a secret-redaction filter and plain setup. No rich here."""

from __future__ import annotations

import logging
import re
import threading

__all__ = ["register_secret", "RedactingFilter", "setup_logging", "redact"]

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


def _level(level: str | int) -> int:
    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
    return level if isinstance(level, int) else logging.WARNING


def setup_logging(level: str | int = "WARNING", *, file: str | None = None,
                  handler: logging.Handler | None = None, stream_level: str | int | None = None) -> None:
    """Attach a stream handler (stderr, or ``handler``) and optionally a file, with redaction.

    ``stream_level`` raises the terminal's threshold above ``level`` (the dashboard shows
    INFO events itself); the file always gets ``level``.
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
        handlers.append(logging.FileHandler(file))
    for h in handlers:
        h._btccxt = True  # type: ignore[attr-defined]
        h.addFilter(RedactingFilter())
        if h.formatter is None:
            h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(h)
