"""Stop means stop: a run asked to stop ends within its grace period, whatever the strategy does.

backtrader calls the strategy on the run's own (main) thread, so a ``next()`` that blocks (a
sleep, a hung socket, a loop) cannot be interrupted from outside. The first stop request (a
signal, ``--duration``, ``--max-bars``, the kill switch) starts a :class:`StopWatch`: it gives
the run ``grace`` seconds to return; if it has not, it logs one line naming where the run is
stuck (file:line and function, from the run thread's current frame), closes what a normal stop
closes (feeds, live broker, store, events file; open orders follow the broker's
``cancel_on_stop`` rule, as on a normal stop) and hands a summary to ``on_force``, which the CLI
uses to print it and end the process with :data:`EXIT_FORCED`.

No typer or rich here; the process is ended by the caller's ``on_force`` (``os._exit``), never
by this module.
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["EXIT_FORCED", "STOP_GRACE", "StopWatch", "where_stuck", "raised_at", "exit_code_of"]

logger = logging.getLogger(__name__)

EXIT_FORCED = 4
"""Exit code of a run stopped by force: it did not return within the grace period."""

STOP_GRACE = 5.0
"""Default seconds a run gets to return after a stop request (``btccxt run --stop-grace``)."""

SHUTDOWN_BOUND = 20.0
"""Seconds closing a force-stopped run may take (the live broker may cancel orders: 15 s)."""


def where_stuck(thread_id: int | None, strategy_path: Path | None = None) -> tuple[str, str]:
    """(what, where) a thread is doing now: ``("the strategy", "next() at x.py:7: time.sleep(9)")``.

    ``what`` is "the strategy" when a frame of ``strategy_path`` is on the stack (its innermost
    such frame is named, plus the innermost frame of all when that is elsewhere), else
    "start-up or shutdown" with the innermost frame.
    """
    frame = sys._current_frames().get(thread_id) if thread_id is not None else None
    if frame is None:
        return "the run", "its thread has ended"
    stack = traceback.extract_stack(frame)
    inner = stack[-1]

    def show(f: traceback.FrameSummary) -> str:
        code = f": {f.line.strip()}" if f.line else ""
        return f"{f.name}() at {f.filename}:{f.lineno}{code}"

    mine: list[traceback.FrameSummary] = []
    if strategy_path is not None:
        target = strategy_path.resolve()
        mine = [f for f in stack if _same_file(f.filename, target)]
    if mine:
        text = show(mine[-1])
        if mine[-1] is not inner:
            text += f" (inside {inner.name}() at {inner.filename}:{inner.lineno})"
        return "the strategy", text
    return "the run", show(inner)


def _same_file(name: str, target: Path) -> bool:
    try:
        return Path(name).resolve() == target
    except (OSError, ValueError):
        return False


def raised_at(exc: BaseException, strategy_path: Path | None) -> str:
    """``file:line`` where ``exc`` was raised: the strategy's innermost frame, else the last."""
    frames = traceback.extract_tb(exc.__traceback__)
    if strategy_path is not None:
        target = strategy_path.resolve()
        frames = traceback.StackSummary.from_list(
            [f for f in frames if _same_file(f.filename, target)] or frames)
    if not frames:
        return "an unknown place"
    f = frames[-1]
    return f"{f.filename}:{f.lineno} in {f.name}()"


def exit_code_of(exc: SystemExit) -> int:
    """The process exit code ``sys.exit(arg)`` asks for, as Python itself maps it."""
    code = exc.code
    if code is None:
        return 0
    if not isinstance(code, int):  # bool is an int, as for Python
        return 1  # sys.exit("message"): Python prints the message and exits 1
    return int(code) & 0xFF


class StopWatch:
    """Armed before the run (its thread waits); at the first stop request it gives the run
    ``grace`` seconds and forces the stop if the run has not returned.

    ``request()`` only sets an event, so signal handlers may call it (starting a thread inside
    a handler could deadlock on ``threading``'s own locks). ``disarm()`` ends the watch.

    Args:
        grace: seconds the run thread gets to leave the strategy (``returned`` set).
        returned: set when the run thread let go (cerebro returned, start-up unwound).
        finished: set when the run has closed everything after returning.
        thread_id: the run thread, for the stuck line.
        strategy_path: the strategy's file, to name its frame.
        close: closes what a normal stop closes; called on the watch's thread.
        on_force: receives ``(reason_suffix)`` after closing; the CLI ends the process there.
        shutdown_bound: seconds closing may take, after the run returned or in ``close``.
    """

    def __init__(self, *, grace: float, returned: threading.Event, finished: threading.Event,
                 thread_id: int | None, strategy_path: Path | None,
                 close: Callable[[], None], on_force: Callable[[str], None] | None,
                 shutdown_bound: float = SHUTDOWN_BOUND, event: Callable[..., Any] | None = None) -> None:
        self.grace = grace
        self.returned = returned
        self.finished = finished
        self.thread_id = thread_id
        self.strategy_path = strategy_path
        self.close = close
        self.on_force = on_force
        self.shutdown_bound = shutdown_bound
        self.event = event
        self.reason = ""
        self.forced = threading.Event()
        self._requested = threading.Event()
        self._thread: threading.Thread | None = None

    def arm(self) -> StopWatch:
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="btccxt-stopwatch", daemon=True)
            self._thread.start()
        return self

    def request(self, reason: str) -> None:
        """The first stop request starts the grace period (any thread, signal handlers too)."""
        if not self._requested.is_set():
            self.reason = reason
            self._requested.set()

    def disarm(self) -> None:
        """The run is over (or handed to another watch): end the watch without forcing."""
        self.finished.set()
        self._requested.set()

    def join(self, timeout: float) -> None:
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _watch(self) -> None:
        self._requested.wait()
        if self.finished.is_set():
            return
        if self.returned.wait(self.grace):
            if self.finished.wait(self.shutdown_bound):
                return
            what, where = where_stuck(self.thread_id, self.strategy_path)
            self._force(f"closing the run did not finish within {self.shutdown_bound:g} s "
                        f"of {self.reason}: stuck in {where}", close=False)
            return
        what, where = where_stuck(self.thread_id, self.strategy_path)
        self._force(f"{what} did not return within {self.grace:g} s of {self.reason}: "
                    f"stuck in {where}", close=True)

    def _force(self, line: str, *, close: bool) -> None:
        self.forced.set()
        logger.error("%s; stopping by force (exit %d)", line, EXIT_FORCED)
        if self.event is not None:
            try:
                self.event(f"stopped by force: {line}",
                           record={"type": "stop", "event": "forced", "message": line})
            except Exception:
                logger.debug("recording the forced stop", exc_info=True)
        if close:
            closer = threading.Thread(target=self._close, name="btccxt-forceclose", daemon=True)
            closer.start()
            closer.join(self.shutdown_bound)
            if closer.is_alive():
                logger.error("closing the run did not finish within %g s; leaving anyway",
                             self.shutdown_bound)
        if self.on_force is not None:
            self.on_force(line)

    def _close(self) -> None:
        try:
            self.close()
        except Exception:
            logger.exception("closing a force-stopped run")
