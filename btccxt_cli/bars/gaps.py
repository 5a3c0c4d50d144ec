"""Gap detection, REST fetch plans and the gap report of a bar series.

Pure code: lists of bar-open timestamps in, ranges out. No I/O, no clock, no ccxt.

Conventions (used by ``cache/`` and ``btccxt backfill``):

* Bars open on a ``BarGrid`` (``btccxt_cli.timeframes``): every ``tf`` argument takes a grid,
  or a bar length in ms for bars aligned to the epoch (a multiple of ``tf_ms`` since 1970).
  Weeks opening on Monday and calendar months need the grid (``timeframes.bar_grid``).
* A *range* ``(first, last)`` lists bar opens, both ends INCLUSIVE: ``(0, 120_000)`` with
  1m bars is the three bars opening at 0, 60 000 and 120 000.
* A *window* ``[start, end)`` is half-open in milliseconds, like ``OhlcvCache.read``:
  the bars whose open lies in it.

A gap is either confirmed by the exchange (it answered a request covering those bars with no
rows: before a listing, during an outage of its own) or still missing (never fetched, the fetch
failed, the run was interrupted). ``GapReport`` keeps the two apart: only the second kind is
worth a rerun.

Must not import anything outside the standard library and ``btccxt_cli.timeframes``.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from btccxt_cli.timeframes import BarGrid, as_grid

__all__ = [
    "Range",
    "align_up",
    "align_down",
    "range_bars",
    "find_gaps",
    "merge_ranges",
    "subtract_ranges",
    "intersect_ranges",
    "clip_ranges",
    "plan_requests",
    "GapReport",
    "gap_report",
    "HISTORY_ROWS",
    "served_history",
    "shortfall_text",
]

Range = tuple[int, int]
"""``(first_open_ms, last_open_ms)``, both inclusive."""

Tf = int | BarGrid
"""A bar grid, or a bar length in ms (epoch-aligned bars)."""


def align_up(ts_ms: int, tf: Tf) -> int:
    """The first bar open at or after ``ts_ms``."""
    return as_grid(tf).ceil(ts_ms)


def align_down(ts_ms: int, tf: Tf) -> int:
    """The open of the bar containing ``ts_ms``."""
    return as_grid(tf).open_of(ts_ms)


def range_bars(r: Range, tf: Tf) -> int:
    """How many bars the inclusive range ``r`` holds."""
    return as_grid(tf).count(r[0], r[1])


def _window(start_ms: int, end_ms: int, grid: BarGrid) -> Range | None:
    """The bar opens in the half-open window ``[start, end)`` as an inclusive range."""
    first, last = grid.ceil(start_ms), grid.open_of(end_ms - 1)
    return (first, last) if first <= last else None


def find_gaps(timestamps: Sequence[int], tf: Tf, start_ms: int, end_ms: int) -> list[Range]:
    """Bar opens in ``[start_ms, end_ms)`` that ``timestamps`` lacks, as inclusive ranges.

    Args:
        timestamps: bar opens in ascending order (duplicates and values outside the window are
            ignored; a value off the bar grid counts for the bar that contains it).
        tf: the bar grid (or bar length in ms).
        start_ms: window start (inclusive; rounded up to a bar open).
        end_ms: window end (exclusive).

    >>> find_gaps([0, 60_000, 240_000], 60_000, 0, 360_000)
    [(120000, 180000), (300000, 300000)]
    """
    grid = as_grid(tf)
    win = _window(start_ms, end_ms, grid)
    if win is None:
        return []
    first, last = win
    lo = bisect.bisect_left(timestamps, first)
    hi = bisect.bisect_left(timestamps, last + 1)
    gaps: list[Range] = []
    expected = first
    step, off = grid.step_ms, grid.offset_ms
    if grid.regular:  # bars of one length: integer steps (the common, long case)
        for i in range(lo, hi):
            ts = timestamps[i]
            ts -= (ts - off) % step
            if ts > expected:
                gaps.append((expected, ts - step))
            if ts >= expected:
                expected = ts + step
    else:
        for i in range(lo, hi):
            ts = grid.open_of(timestamps[i])
            if ts > expected:
                gaps.append((expected, grid.prev_open(ts)))
            if ts >= expected:
                expected = grid.next_open(ts)
    if expected <= last:
        gaps.append((expected, last))
    return gaps


def merge_ranges(ranges: Iterable[Range], tf: Tf) -> list[Range]:
    """Sort and merge overlapping or adjacent (next opens one bar later) ranges."""
    grid = as_grid(tf)
    out: list[Range] = []
    for a, b in sorted(r for r in ranges if r[0] <= r[1]):
        if out and a <= grid.next_open(out[-1][1]):
            if b > out[-1][1]:
                out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def subtract_ranges(ranges: Iterable[Range], remove: Iterable[Range], tf: Tf) -> list[Range]:
    """``ranges`` without the bars in ``remove`` (both merged first)."""
    grid = as_grid(tf)
    rem = merge_ranges(remove, grid)
    out: list[Range] = []
    for a, b in merge_ranges(ranges, grid):
        cur = a
        for ra, rb in rem:
            if rb < cur:
                continue
            if ra > b:
                break
            if ra > cur:
                out.append((cur, grid.prev_open(ra)))
            cur = max(cur, grid.next_open(rb))
            if cur > b:
                break
        if cur <= b:
            out.append((cur, b))
    return out


def intersect_ranges(ranges: Iterable[Range], other: Iterable[Range], tf: Tf) -> list[Range]:
    """The bars in both ``ranges`` and ``other``."""
    a_list, b_list = merge_ranges(ranges, tf), merge_ranges(other, tf)
    out: list[Range] = []
    i = j = 0
    while i < len(a_list) and j < len(b_list):
        lo = max(a_list[i][0], b_list[j][0])
        hi = min(a_list[i][1], b_list[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a_list[i][1] < b_list[j][1]:
            i += 1
        else:
            j += 1
    return out


def clip_ranges(ranges: Iterable[Range], tf: Tf, start_ms: int, end_ms: int) -> list[Range]:
    """``ranges`` limited to the bars opening in ``[start_ms, end_ms)``."""
    grid = as_grid(tf)
    win = _window(start_ms, end_ms, grid)
    return intersect_ranges(ranges, [win], grid) if win else []


def plan_requests(ranges: Iterable[Range], tf: Tf, limit: int) -> list[tuple[int, int]]:
    """Split missing ranges into request windows ``[since, until)`` of at most ``limit`` bars.

    Each window is what one ``fetch_ohlcv(symbol, tf, since=since, limit=bars,
    params={"until": until - 1})`` asks for; a window never holds more bar slots than the
    exchange returns per request, so an answer lacking a slot proves the exchange has no bar there.
    """
    if limit <= 0:
        raise ValueError("limit must be positive")
    grid = as_grid(tf)
    out: list[tuple[int, int]] = []
    for a, b in merge_ranges(ranges, grid):
        end = grid.next_open(b)
        s = a
        while s < end:
            e = min(end, grid.shift(s, limit))
            out.append((s, e))
            s = e
    return out


HISTORY_ROWS: dict[str, int] = {"kraken": 720}
"""Exchanges that serve only their newest N bars of a timeframe, however far back one asks
(kraken's ``OHLC`` answers hold the newest 720 rows, the forming one included)."""


def served_history(exchange_id: str | None) -> int | None:
    """How many of its newest bars ``exchange_id`` serves at all (None: no known limit)."""
    return HISTORY_ROWS.get(exchange_id or "")


def shortfall_text(exchange_id: str | None, timeframe: str, got: int, asked: int,
                   *, oldest_served: bool = False) -> str:
    """The one line saying that ``got`` bars came of the ``asked``.

    ``oldest_served``: the shortfall is at the old end (the first bars asked for never came),
    which on an exchange of ``HISTORY_ROWS`` is its limit, not bars it lacks.

    >>> shortfall_text("kraken", "1m", 719, 1000, oldest_served=True)
    'kraken serves only its newest 720 1m bars: got 719 of 1000'
    """
    limit = served_history(exchange_id)
    if oldest_served and limit is not None:
        return f"{exchange_id} serves only its newest {limit} {timeframe} bars: got {got} of {asked}"
    who = exchange_id or "the exchange"
    return f"{who} has fewer {timeframe} bars than asked: got {got} of {asked}"


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class GapReport:
    """Which bars of ``[start_ms, end_ms)`` a series lacks, and why.

    Attributes:
        tf_ms: the bar grid (or the bar length in ms of epoch-aligned bars).
        start_ms, end_ms: the window examined (``end_ms`` exclusive).
        exchange: ranges the exchange confirmed it has no bars for (answered with no rows);
            a rerun skips them.
        missing: ranges still missing (never fetched, failed, interrupted); a rerun fetches them.
    """

    tf_ms: Tf
    start_ms: int
    end_ms: int
    exchange: tuple[Range, ...] = field(default_factory=tuple)
    missing: tuple[Range, ...] = field(default_factory=tuple)

    @property
    def exchange_bars(self) -> int:
        return sum(range_bars(r, self.tf_ms) for r in self.exchange)

    @property
    def missing_bars(self) -> int:
        return sum(range_bars(r, self.tf_ms) for r in self.missing)

    @property
    def complete(self) -> bool:
        """Nothing is missing that the exchange might still have."""
        return not self.missing

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: ranges as ``{"start": ms, "end": ms, "bars": n, "start_iso", "end_iso"}``."""

        def rows(ranges: tuple[Range, ...]) -> list[dict[str, object]]:
            return [{"start": a, "end": b, "bars": range_bars((a, b), self.tf_ms),
                     "start_iso": _iso(a), "end_iso": _iso(b)} for a, b in ranges]

        return {"exchange_gaps": rows(self.exchange), "exchange_gap_bars": self.exchange_bars,
                "missing_gaps": rows(self.missing), "missing_bars": self.missing_bars,
                "complete": self.complete}


def gap_report(timestamps: Sequence[int], empty: Iterable[Range], tf: Tf, start_ms: int,
               end_ms: int) -> GapReport:
    """Gaps of ``timestamps`` in ``[start_ms, end_ms)``, split by the confirmed-empty ``empty``."""
    gaps = find_gaps(timestamps, tf, start_ms, end_ms)
    empty_l = list(empty)
    return GapReport(tf, start_ms, end_ms,
                     exchange=tuple(intersect_ranges(gaps, empty_l, tf)),
                     missing=tuple(subtract_ranges(gaps, empty_l, tf)))
