"""Helpers shared by the commands: one-line errors with exit codes, logging setup."""

from __future__ import annotations

import logging
import math
import sys
from typing import Any, NoReturn

import typer

from btccxt_cli.errors import BtccxtError, ConfigError
from btccxt_cli.log import redact

__all__ = ["fail", "parse_seconds", "setup_run_logging"]


def fail(exc: BtccxtError) -> NoReturn:
    """Print one actionable line (secrets masked) to stderr and exit with the error's code."""
    sys.stderr.write(f"error: {redact(str(exc))}\n")
    raise typer.Exit(exc.exit_code)


def parse_seconds(text: str | None, option: str, *, low: float, high: float,
                  hint: str) -> float | None:
    """A command-line duration in seconds, ``low <= s <= high`` and finite; None stays None.

    Anything else (``inf``, ``nan``, ``1e308``, negative, not a number) is ONE ``ConfigError``
    naming the option, the value and the fix (exit 2), before anything starts.
    """
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and low <= value <= high):
        raise ConfigError(f"{text!r} is not a number of seconds from {low:.10g} to {high:.10g}",
                          key=option, hint=hint)
    return value


def setup_run_logging(cfg: Any, console: Any = None) -> None:
    """Library logs go to stderr (and the config's log file), with secrets masked.

    With a dashboard (``console``), the terminal gets warnings only, printed above the live
    display by Rich; INFO events are in the dashboard's event panel and the log file.
    """
    from btccxt_cli.log import setup_logging

    level = cfg.logging.level
    level = level if isinstance(level, str) else logging.getLevelName(level)
    file = str(cfg.logging.file) if cfg.logging.file else None
    lg = cfg.logging  # rotation and format (docs/config.md: logging)
    more = {"fmt": lg.format, "rotate": lg.rotate, "max_bytes": lg.max_bytes, "backups": lg.backups}
    if console is None:
        setup_logging(level, file=file, **more)
        return
    from rich.logging import RichHandler

    handler = RichHandler(console=console, show_path=False, rich_tracebacks=False,
                          log_time_format="[%X]")
    # Rich prints the time and the level itself: the message alone, not the file's format
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    setup_logging(level, file=file, stream_level="WARNING", handler=handler, **more)
