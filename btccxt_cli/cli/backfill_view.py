"""What ``btccxt backfill`` shows: progress on stderr and a one-line summary per symbol.

Role: :class:`ProgressView` gives each symbol an ``on_progress(done, expected)`` callback: Rich
progress bars on a terminal (with library warnings printed above them), plain lines otherwise.
:func:`describe` words one ``BackfillResult`` (counts, gaps) for the text summary.

rich loads inside ``ProgressView`` only. Must not import: ccxt, backtrader, the simulator,
``cli.backfill`` (it imports this one).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from btccxt_cli.cache.export import iso_utc

if TYPE_CHECKING:
    from btccxt_cli.cache.backfill import BackfillResult

__all__ = ["ProgressView", "describe"]


def describe(r: BackfillResult) -> str:
    """One line: window, counts, duration, and the gaps left (exchange-confirmed or missing)."""
    head = f"{r.exchange} {r.symbol} {r.timeframe} [{iso_utc(r.start_ms)} .. {iso_utc(r.end_ms)}): "
    body = (f"fetched {r.bars_fetched} bars, wrote {r.bars_written}, {r.requests} requests "
            f"({r.retries} retries, {r.rate_limit_waits} rate-limit waits), {r.seconds:.2f} s; "
            f"cached {r.cached_bars} bars")
    g = r.gaps
    if g is None:  # the run failed before the cache could be read back
        gaps = "gaps not known"
    elif not g.exchange and not g.missing:
        gaps = "no gaps"
    else:
        parts = []
        if g.exchange:
            parts.append(f"exchange has no bars for {g.exchange_bars} "
                         f"({_ranges_text(g.exchange)})")
        if g.missing:
            parts.append(f"still missing {g.missing_bars} ({_ranges_text(g.missing)}): "
                         "rerun to resume")
        gaps = "; ".join(parts)
    return f"{head}{body}; {gaps}" + ("; interrupted" if r.interrupted else "")


def _ranges_text(ranges: tuple[tuple[int, int], ...], most: int = 3) -> str:
    shown = ", ".join(f"{iso_utc(a)}..{iso_utc(b)}" for a, b in ranges[:most])
    return shown + (f" and {len(ranges) - most} more" if len(ranges) > most else "")


class ProgressView:
    """``progress(label)`` gives an ``on_progress(done, expected)`` callback per symbol.

    Rich progress bars on a terminal (stderr), plain lines otherwise: one after the first page,
    one per 10 %, one at the end.
    """

    def __init__(self, json_out: bool) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self.rich = self.console.is_terminal
        self.json_out = json_out
        self.progress: Any = None

    def __enter__(self) -> Callable[[str], Callable[[int, int], None]]:
        if self.rich:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(bar_width=24),
                                     MofNCompleteColumn(), _RateColumn(), TextColumn("ETA"),
                                     TimeRemainingColumn(), console=self.console)
            self._log_through_console()
            self.progress.start()
        return self._callback

    def _callback(self, label: str) -> Callable[[int, int], None]:
        if self.progress is not None:
            task = self.progress.add_task(label, total=None)

            def rich_cb(done: int, expected: int) -> None:
                self.progress.update(task, total=max(expected, 1) if expected else 1,
                                     completed=done if expected else 1)

            return rich_cb
        state = {"step": -1, "pages": 0}

        def plain_cb(done: int, expected: int) -> None:
            if expected == 0:
                sys.stderr.write(f"{label}: nothing to fetch\n")
                sys.stderr.flush()
                return
            step = done * 10 // expected
            first_page = done > 0 and state["pages"] == 0
            if done > 0:
                state["pages"] += 1
            if step != state["step"] or first_page:
                state["step"] = step
                sys.stderr.write(f"{label}: {done}/{expected} bars ({done * 100 // expected}%)\n")
                sys.stderr.flush()

        return plain_cb

    def _log_through_console(self) -> None:
        """Library warnings (retries, rate limits) print above the bars, not through them."""
        from rich.logging import RichHandler

        from btccxt_cli.log import setup_logging

        self._level = logging.getLogger("btccxt_cli").level or logging.WARNING
        handler = RichHandler(console=self.console, show_path=False, rich_tracebacks=False)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        setup_logging(self._level, handler=handler)

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()
            from btccxt_cli.log import setup_logging

            setup_logging(self._level)


class _RateColumn:
    """Bars per second (rich ``ProgressColumn``), built lazily so rich loads with the command."""

    def __new__(cls) -> Any:
        from rich.progress import ProgressColumn
        from rich.table import Column
        from rich.text import Text

        class RateColumn(ProgressColumn):
            def render(self, task: Any) -> Text:
                speed = task.finished_speed or task.speed
                return Text(f"{speed:,.0f} bars/s" if speed else "-- bars/s")

        return RateColumn(table_column=Column(no_wrap=True, min_width=14, justify="right"))
