"""The Bars table's columns: what each shows, how wide it is, and which give way first.

Pure: imports only ``model`` and rich. A ``ColumnMemory`` remembers the widest cell seen per
column so that columns keep their width from one refresh to the next; ``fit`` picks the
columns that fit a width in a fixed order of importance. Symbol, timeframe, state and close
are always shown whole.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from rich.console import Group
from rich.text import Text

from btccxt_cli.model import FeedStatus

__all__ = ["Column", "COLUMNS", "ColumnMemory", "fit", "line_of", "price", "sparkline", "table",
           "GAP", "STATE_STYLE"]

_BLOCKS = "▁▂▃▄▅▆▇█"
GAP = 2  # spaces between two columns
SPARK = 12  # width of the trend column
STATE_STYLE = {"LIVE": "green", "DELAYED": "yellow", "CONNECTED": "cyan",
               "DISCONNECTED": "bold red", "NOTSUBSCRIBED": "red", "OVER": "dim"}


def sparkline(values: list[float], width: int = 16) -> str:
    """A tiny price chart of the last ``width`` values."""
    vals = values[-width:]
    if not vals:
        return ""
    lo, hi = min(vals), max(vals)
    if hi == lo:
        return _BLOCKS[3] * len(vals)
    return "".join(_BLOCKS[int((v - lo) / (hi - lo) * (len(_BLOCKS) - 1))] for v in vals)


def price(v: float | None, decimals: int | None, digits: int = 8) -> str:
    """A price or amount with the market's decimals (``digits`` significant when unknown)."""
    if v is None:
        return "-"
    if decimals is not None:
        return f"{v:.{max(0, decimals)}f}"
    return f"{v:.{digits}g}"


def _bar_time(f: FeedStatus) -> str:
    b = f.last_bar
    return "-" if b is None else datetime.fromtimestamp(b.ts / 1000, tz=timezone.utc).strftime("%H:%M:%S")


def _ohlc(i: int) -> Callable[[FeedStatus, list[float]], str]:
    def cell(f: FeedStatus, closes: list[float]) -> str:
        return price(None if f.last_bar is None else f.last_bar[i], f.price_decimals)
    return cell


def _skips(f: FeedStatus, closes: list[float]) -> str:
    """Bars skipped (REST covered them without a row), and ``/Nr`` when N bars were revised."""
    return str(f.skipped) + (f"/{f.revised}r" if f.revised else "")


def _count(kind: str) -> Callable[[FeedStatus, list[float]], str]:
    return lambda f, closes: str(f.bars.get(kind, 0))


@dataclass(frozen=True)
class Column:
    """One column: ``rank`` 0 is always shown; higher ranks give way first. ``cell`` makes the
    text of one row (a ``FeedStatus`` and its closes here; other tables pass their own)."""

    key: str
    header: str
    rank: int
    cell: Callable[[Any, Any], str]
    left: bool = False
    seed: int = 0  # width reserved from the start (e.g. the longest common state)


# display order; ``rank`` is the order of importance (ties give way together)
COLUMNS: tuple[Column, ...] = (
    Column("symbol", "symbol", 0, lambda f, c: f.symbol, left=True),
    Column("tf", "tf", 0, lambda f, c: f.timeframe),
    Column("state", "state", 0, lambda f, c: f.state, left=True, seed=len("DISCONNECTED")),
    Column("time", "bar UTC", 1, lambda f, c: _bar_time(f), seed=8),
    Column("open", "open", 9, _ohlc(1)),
    Column("high", "high", 6, _ohlc(2)),
    Column("low", "low", 6, _ohlc(3)),
    Column("close", "close", 0, _ohlc(4)),
    Column("volume", "volume", 10, lambda f, c: price(None if f.last_bar is None else f.last_bar.volume,
                                                       f.amount_decimals, 6)),
    Column("backfill", "hist", 7, _count("backfill")),
    Column("live", "live", 2, _count("live")),
    Column("gapfill", "gap", 7, _count("gapfill")),
    Column("age", "age", 3, lambda f, c: "-" if f.last_message_age_s is None
           else f"{f.last_message_age_s:.1f}s", seed=5),
    Column("reconnects", "reconn", 4, lambda f, c: str(f.reconnects)),
    Column("latency", "lat ms", 8, lambda f, c: "-" if f.latency_ms_last is None
           else f"{f.latency_ms_last:.0f}"),
    Column("skipped", "skip", 8, _skips),
    Column("trend", "trend", 5, lambda f, c: sparkline(c, SPARK), left=True, seed=SPARK),
)


class ColumnMemory:
    """The widest cell seen per column (headers and seeds included); widths never shrink."""

    def __init__(self) -> None:
        self.widths: dict[str, int] = {c.key: max(len(c.header), c.seed) for c in COLUMNS}

    def cells(self, feeds: list[FeedStatus], closes: dict[str, list[float]]) -> list[list[str]]:
        """Every feed's cells in ``COLUMNS`` order, remembering their widths."""
        rows = [[c.cell(f, closes.get(f.symbol, [])) for c in COLUMNS] for f in feeds]
        for row in rows:
            for c, text in zip(COLUMNS, row, strict=True):
                if len(text) > self.widths[c.key]:
                    self.widths[c.key] = len(text)
        return rows


def fit(widths: dict[str, int], width: int, columns: Sequence[Column] = COLUMNS) -> list[Column]:
    """The columns that fit ``width``: every rank-0 column, then whole ranks in order while
    they fit (the first rank that does not fit ends the list, so the order never changes)."""
    chosen = [c for c in columns if c.rank == 0]

    def total(cols: list[Column]) -> int:
        return sum(widths[c.key] for c in cols) + GAP * (len(cols) - 1)

    for rank in sorted({c.rank for c in columns} - {0}):
        more = chosen + [c for c in columns if c.rank == rank]
        if total(more) > width:
            break
        chosen = more
    return [c for c in columns if c in chosen]  # display order


def table(title: str, rows: list[list[str]], cols: list[Column], widths: dict[str, int]) -> Group:
    """The Bars table with exactly ``cols`` at their remembered widths: one ``Text`` per line.

    Built line by line (the widths are known), not with ``rich.table.Table``, whose per-cell
    layout costs ~10x more per frame (bench/dashboard.py).
    """
    total = sum(widths[c.key] for c in cols) + GAP * (len(cols) - 1)
    index = {c.key: i for i, c in enumerate(COLUMNS)}
    lines = [Text(title, style="italic", no_wrap=True, overflow="ellipsis"),
             line_of([c.header for c in cols], cols, widths, header=True),
             Text("─" * total, style="dim", no_wrap=True)]
    lines += [line_of([row[index[c.key]] for c in cols], cols, widths) for row in rows]
    return Group(*lines)


def _state_style(c: Column, text: str) -> str:
    return STATE_STYLE.get(text, "") if c.key == "state" else ""


def line_of(cells: list[str], cols: list[Column], widths: dict[str, int], *, header: bool = False,
            style_of: Callable[[Column, str], str] = _state_style) -> Text:
    """One row of ``cells`` at the columns' widths, ``GAP`` apart (headers bold)."""
    line = Text(no_wrap=True, overflow="ellipsis")
    for i, (c, text) in enumerate(zip(cols, cells, strict=True)):
        if i:
            line.append(" " * GAP)
        w = widths[c.key]
        cell = text.ljust(w) if c.left else text.rjust(w)
        line.append(cell, style="bold" if header else style_of(c, text))
    return line
