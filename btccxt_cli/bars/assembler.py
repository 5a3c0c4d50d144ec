"""Closed-bar assembly: every bar exactly once, in order, with the exchange's final values.

Pure code, no I/O, no clock reads: callers pass the exchange's ``now`` in milliseconds.
Shared by the rest, threaded and websocket modes (each mode only does the I/O).

Rules (see ``docs/data-core.md``):

* A *live* update (WebSocket) carries the latest state of a candle. It is final when the
  exchange flagged it closed (binance ``x``, okx ``confirm``), or, for sources without
  flags, when a candle with a later timestamp arrives for the same series.
* A *REST* answer is authoritative: a row is final when the answer holds a later row, or
  when the exchange clock has passed the row's end by ``settle_ms``. Timestamps that the
  answer covers but does not contain are bars the exchange does not have (no trades); they
  are skipped, not waited for, and noted (``take_notes``: the caller tells them), as is a
  final REST row that differs from a final seen or a bar released. ``drop_newest`` removes
  the newest row of every answer.
* Bars are released strictly in order. A hole before a known later bar is a *gap*: the
  caller must fetch it from REST (``rest_due``) before anything newer is released.
* Duplicate, stale and out-of-order updates are absorbed: anything at or before the last
  released bar is ignored, a non-final update never overwrites a final one, and an update
  whose volume went down is treated as stale (volume only grows while a bar forms).

Bar times come from a ``BarGrid`` (``btccxt_cli.timeframes``): weeks and months do not open
on multiples of their length since 1970, so "the next bar" is always the grid's next open.

Must not import anything outside the standard library, ``btccxt_cli.model`` and
``btccxt_cli.timeframes``.
"""

from __future__ import annotations

import bisect
import logging
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from btccxt_cli.model import BarSource, Candle
from btccxt_cli.timeframes import BarGrid, as_grid

__all__ = ["BarAssembler", "Emitted"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Emitted:
    """A bar released to the strategy and how it became known."""

    candle: Candle
    source: BarSource


class BarAssembler:
    """Per-series state machine turning candle updates into closed bars.

    Args:
        tf: where bars open: a ``BarGrid``, or a bar length in ms (bars aligned to the epoch).
        last_ts: open time of the last bar already delivered (bars at or before it are
            ignored); ``None`` releases the first closed bar seen.
        flagged: the live source reports closed flags. Then a later candle does *not*
            close an earlier one by itself (the flag or a REST read does), which keeps
            reordered updates from releasing an early snapshot.
    """

    def __init__(self, tf: int | BarGrid, *, last_ts: int | None = None, flagged: bool = False) -> None:
        self.grid = as_grid(tf)
        self.last_ts = last_ts
        self.flagged = flagged
        self._pending: dict[int, Candle] = {}  # forming / unconfirmed live updates
        self._closed: dict[int, tuple[Candle, BarSource]] = {}  # final, waiting for release
        self._covered: list[tuple[int, int]] = []  # REST-covered [start, end] inclusive, merged
        self._max_seen = -1  # newest timestamp seen from any source
        # the latest ranges the exchange has no bars for (bounded: a live run lasts for days)
        self.skipped: deque[tuple[int, int]] = deque(maxlen=1000)
        self.skipped_bars = 0  # bars skipped in all (every range, not only those kept)
        self.revised = 0  # REST rows that disagreed with a final seen or a released bar
        # what happened since the caller last took them (``take_notes``): ("skipped", first,
        # last, bars) and ("revised", ts, was, now, released)
        self.notes: list[tuple] = []
        self._released: deque[Candle] = deque(maxlen=64)  # the newest released bars

    @property
    def grid(self) -> BarGrid:
        return self._grid

    @grid.setter
    def grid(self, grid: BarGrid) -> None:
        self._grid = grid
        self.tf_ms = grid.nominal_ms
        # bars of one length (all but months): plain additions on the hot paths
        self._step = grid.step_ms if grid.regular else 0

    def _next(self, t: int) -> int:
        """Open of the bar after the one opened at ``t``."""
        step = self._step
        return t + step if step else self._grid.next_open(t)

    def close_of(self, t: int) -> int:
        """End (the next bar's open) of the bar opened at ``t``."""
        return self._next(t)

    def _prev(self, t: int) -> int:
        """Open of the bar before the one opened at ``t``."""
        step = self._step
        return t - step if step else self._grid.prev_open(t)

    # ------------------------------------------------------------------ inputs
    def on_live(self, candles: Iterable[Candle], *, closed: bool | Sequence[bool] = False,
                source: BarSource = BarSource.LIVE) -> list[Emitted]:
        """Feed live updates (in arrival order); ``closed`` flags them final (one or per candle)."""
        flags = closed if isinstance(closed, Sequence) else None
        for i, c in enumerate(candles):
            is_final = flags[i] if flags is not None else bool(closed)
            self._take_live(c, is_final, source)
        if not self.flagged and self._pending:
            newest = self._max_seen
            for ts in [t for t in self._pending if t < newest]:
                self._closed.setdefault(ts, (self._pending.pop(ts), source))
        return self._drain()

    def on_rest(self, rows: Iterable[Candle], *, since: int, now_ms: int, settle_ms: int = 0,
                drop_newest: bool = False, source: BarSource = BarSource.GAPFILL) -> list[Emitted]:
        """Feed one REST answer to a request that started at ``since`` (bar open, ms)."""
        bars = sorted({c.ts: c for c in rows}.values())
        if drop_newest and bars:
            bars.pop()
        if not bars:
            return self._drain()
        newest = bars[-1].ts
        self._max_seen = max(self._max_seen, newest)
        last_final = None
        for i, c in enumerate(bars):
            final = i < len(bars) - 1 or self._next(c.ts) + settle_ms <= now_ms
            if not final:
                break
            last_final = c.ts
            if self.last_ts is not None and c.ts <= self.last_ts:
                if self._released and c.ts >= self._released[0].ts:
                    self._check_released(c)
                continue
            self._pending.pop(c.ts, None)
            known = self._closed.get(c.ts)
            if known is None:
                self._closed[c.ts] = (c, source)
            elif known[0] != c:
                # the live final and REST disagree: REST is the exchange's record
                self.revised += 1
                self.notes.append(("revised", c.ts, known[0], c, False))
                self._closed[c.ts] = (c, known[1])
        if last_final is not None:
            self._cover(since, last_final)
        return self._drain()

    def start_at(self, ts: int) -> None:
        """Before any release: the first bar to release is the one opened at ``ts`` (the bars
        before it are not asked for). No-op once a bar was released, or for an earlier ``ts``."""
        if self._released or self.last_ts is None:
            return
        first = self._prev(ts)
        if first <= self.last_ts:
            return
        self.last_ts = first
        self._pending = {t: v for t, v in self._pending.items() if t > first}
        self._closed = {t: v for t, v in self._closed.items() if t > first}

    def forget_forming(self) -> None:
        """The live source lost updates (its socket dropped): the bars still forming are not
        known whole. Without closed flags a later candle would close them with the state they
        had before the loss; forgotten, they come again from the next updates (each carries the
        candle's whole state) or from REST (a gap). Finals already known stay."""
        self._pending.clear()

    def take_notes(self) -> list[tuple]:
        """The skips and revisions since the last call (oldest first), forgotten here."""
        notes, self.notes = self.notes, []
        return notes

    # ------------------------------------------------------------------ queries
    @property
    def expected(self) -> int | None:
        """Open time of the next bar to release (None until the first release)."""
        return None if self.last_ts is None else self._next(self.last_ts)

    def has_gap(self) -> bool:
        """True when a later bar is known but the next expected one is missing."""
        exp = self.expected
        if exp is None or exp in self._closed:
            return False
        if exp in self._pending:  # present, just not final yet
            return False
        return self._max_seen > exp

    def rest_due(self, grace_ms: int) -> int | None:
        """Exchange time (ms) at which a REST read from ``expected`` is needed; None if never.

        Immediately (``0``) when there is a gap; otherwise when the expected bar's end plus
        ``grace_ms`` passes without it becoming final (confirmation, or REST fallback).
        """
        exp = self.expected
        if exp is None:
            return None
        if self.has_gap():
            return 0
        return self._next(exp) + grace_ms

    @property
    def pending_opens(self) -> list[int]:
        """Open times of the bars seen live but not final yet (the forming bar), oldest first."""
        return sorted(self._pending)

    def pending_count(self) -> int:
        return len(self._pending) + len(self._closed)

    # ------------------------------------------------------------------ internals
    def _take_live(self, c: Candle, final: bool, source: BarSource) -> None:
        last = self.last_ts
        if last is not None and c.ts <= last:
            return
        if c.ts > self._max_seen:
            self._max_seen = c.ts
        if c.ts in self._closed:
            return  # a final value is already known; later updates are stale or duplicates
        if final:
            self._pending.pop(c.ts, None)
            self._closed[c.ts] = (c, source)
            return
        prev = self._pending.get(c.ts)
        if prev is not None and c.volume < prev.volume:
            return  # stale, reordered update
        self._pending[c.ts] = c

    def _check_released(self, c: Candle) -> None:
        """A final REST row for a bar already released: the strategy saw other values?"""
        rel = self._released
        for i in range(len(rel) - 1, -1, -1):
            old = rel[i]
            if old.ts == c.ts:
                if old != c:
                    self.revised += 1
                    self.notes.append(("revised", c.ts, old, c, True))
                    rel[i] = c  # told once
                return
            if old.ts < c.ts:
                return

    def _cover(self, start: int, end: int) -> None:
        """Record that REST told us everything in [start, end]."""
        if end < start:
            return
        spans = self._covered
        i = bisect.bisect_left(spans, (start, start))
        spans.insert(i, (start, end))
        merged: list[tuple[int, int]] = []
        for s, e in spans:
            if merged and s <= self._next(merged[-1][1]):
                merged[-1] = (merged[-1][0], max(merged[-1][1], e))
            else:
                merged.append((s, e))
        self._covered = merged

    def _covered_until(self, ts: int) -> int | None:
        """End of the REST-covered span containing ``ts``, if any."""
        for s, e in self._covered:
            if s <= ts <= e:
                return e
        return None

    def _drain(self) -> list[Emitted]:
        out: list[Emitted] = []
        closed = self._closed
        if self.last_ts is None:
            if not closed:
                return out
            first = min(closed)
            c, src = closed.pop(first)
            out.append(Emitted(c, src))
            self._released.append(c)
            self.last_ts = first
        step = self._step
        released = self._released.append  # the newest released bars (revisions are checked)
        while True:
            exp = self.last_ts + step if step else self._next(self.last_ts)
            item = closed.pop(exp, None)
            if item is not None:
                out.append(Emitted(*item))
                released(item[0])
                self.last_ts = exp
                continue
            end = self._covered_until(exp)
            if end is None:
                break
            # REST covered this stretch and had no bar at ``exp``: the exchange has none.
            later = [t for t in closed if exp < t <= end]
            skip_to = self._prev(min(later)) if later else end
            if skip_to < exp:
                break
            self.skipped.append((exp, skip_to))
            n = self._grid.count(exp, skip_to)
            self.skipped_bars += n
            self.notes.append(("skipped", exp, skip_to, n))
            self.last_ts = skip_to
            self._pending = {t: v for t, v in self._pending.items() if t > skip_to}
        # forget pending states that can no longer be released
        if self._pending:
            for t in [t for t in self._pending if t <= self.last_ts]:
                del self._pending[t]
        if self._covered:
            keep_from = self._prev(self.last_ts)
            if self._covered[0][1] < keep_from:
                self._covered = [(s, e) for s, e in self._covered if e >= keep_from]
        return out
