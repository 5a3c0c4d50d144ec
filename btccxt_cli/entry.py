"""The ``btccxt`` console script: catches a stop signal from the first moment it can.

Loading the CLI (typer, click, rich) takes a few hundred milliseconds before any command can
install its own handlers. A supervisor that sends SIGTERM, or a user who presses Ctrl-C, in that
window would kill the process by the signal (exit 143 or 130). Here SIGINT and SIGTERM are
recorded while the CLI loads; a signal seen then ends the command as a normal stop (exit 0,
one line), before anything has started. Only the standard library is imported before that.
"""

from __future__ import annotations

import signal
import sys
from typing import Any

__all__ = ["main"]

_early: list[int] = []


def _record(signum: int, frame: Any) -> None:
    _early.append(signum)


def _install() -> dict[int, Any]:
    """Record SIGINT/SIGTERM instead of dying; return the handlers to restore."""
    return {s: signal.signal(s, _record) for s in (signal.SIGINT, signal.SIGTERM)}


def _stopped_early() -> int | None:
    return _early[0] if _early else None


def main(argv: list[str] | None = None) -> None:
    """Load the CLI with stop signals recorded, then run it (or stop if one came)."""
    previous = _install()
    from btccxt_cli.cli.app import main as app_main

    for s, handler in previous.items():
        signal.signal(s, handler)
    signum = _stopped_early()
    if signum is not None:
        sys.stdout.write(f"stopped: signal {signal.Signals(signum).name} during start-up\n")
        sys.stdout.flush()
        sys.exit(0)
    app_main(argv)
