"""ReplayStore: a store whose feeds replay bars from the local cache, as a live run saw them.

``btccxt backtest`` runs the same ``CCXTFeed`` a live run does (same stamps, ``LIVE``
notification, lookback, multi-symbol alignment), on this store instead of ``CCXTStore``.
Each feed's ``Series`` is planned exactly as a live one started at ``since_ms``
(``Series.begin`` with the exchange clock reading ``since_ms``): the warm-up bars
(``backfill_bars`` before the forming bar, or from ``fromdate``) arrive as history after a
``DELAYED`` state, then ``LIVE``, then every closed bar of the window as a live bar, then the
feed ends. Nothing waits on a clock: each ``_load`` that finds the pipe empty pumps the next
chunk of rows from the cache (or from rows loaded once, for parameter sweeps), so memory stays
flat in the length of the window.

Cached bars are final and in order; a slot the cache lacks inside the window is one the
exchange has no bar for (the backtest checks for holes before it starts), so the replay skips
it as a live run's assembler does.

No network, no ccxt.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from btccxt_cli.bars.assembler import Emitted
from btccxt_cli.clock import SYSTEM_CLOCK, Clock
from btccxt_cli.model import BarSource, Candle, FeedStatus
from btccxt_cli.sources.base import Pipe, Series, SeriesParams

__all__ = ["ReplayStore", "ReplayDriver", "warmup_start"]

logger = logging.getLogger(__name__)

CHUNK = 2_000
"""Bars handed to a feed's pipe per pump."""

Rows = Callable[[str, str, int, int], Iterator[Candle]]
"""``rows(symbol, timeframe, since_ms, until_ms)``: cached bars opening in [since, until)."""


def warmup_start(params: SeriesParams, since_ms: int) -> int:
    """Open of the first bar a live run started at ``since_ms`` loads as history (or the first
    live bar's open when it loads none)."""
    grid = params.grid
    forming = grid.open_of(since_ms)
    start = forming
    if params.backfill_start and params.fromdate_ms is not None:
        start = grid.ceil(params.fromdate_ms)
    elif params.backfill_start and params.backfill_bars:
        start = grid.shift(forming, -params.backfill_bars)
    return min(start, forming)


class ReplayDriver:
    """Feeds one series from cached rows: history, ``LIVE``, the window, the end.

    ``pump`` is what ``CCXTFeed._load`` calls when its pipe is empty (as with the rest-mode
    driver); it never waits.
    """

    def __init__(self, series: Series, rows: Rows, since_ms: int, until_ms: int,
                 chunk: int = CHUNK) -> None:
        self.series = series
        self.rows = rows
        self.since_ms = since_ms
        self.until_ms = until_ms
        self.chunk = chunk
        self.now_ms = since_ms  # the replayed exchange clock
        self._it: Iterator[Candle] | None = None
        self._stage = "start"

    def exchange_now_ms(self) -> int:
        return self.now_ms

    def pump(self, timeout: float = 0.0) -> None:
        s = self.series
        if self._stage == "start":
            s.begin()  # plans history exactly as a live series started at since_ms
            self._stage = "history" if s.phase == s.HISTORY else "live"
            grid = s.grid
            forming = grid.open_of(self.since_ms)
            if self._stage == "history":
                first = grid.next_open(s.assembler.last_ts)
                self._it = self.rows(s.p.symbol, s.p.timeframe, first, forming)
            else:
                self._live_rows()
            return
        if self._stage == "history":
            if self._release(BarSource.BACKFILL):
                return
            s.go_live()
            if s.phase == s.OVER:  # historical=True
                self._stage = "over"
                return
            self._live_rows()
            return
        if self._stage == "live":
            if self._release(BarSource.LIVE):
                return
            self._stage = "over"
            s.finish("the backtest window ended")

    def _live_rows(self) -> None:
        s = self.series
        self._stage = "live"
        self._it = self.rows(s.p.symbol, s.p.timeframe, s.grid.open_of(self.since_ms),
                             self.until_ms)

    def _release(self, source: BarSource) -> bool:
        """Hand the next chunk of rows to the feed; False when there are none left."""
        it = self._it
        assert it is not None
        s = self.series
        grid = s.grid
        until = self.until_ms
        out: list[Emitted] = []
        for c in it:
            if source is BarSource.LIVE and grid.close_of(c.ts) > until:
                break  # still forming at --until: a live run would not have it yet
            out.append(Emitted(c, source))
            if len(out) >= self.chunk:
                break
        if not out:
            return False
        s.assembler.last_ts = out[-1].candle.ts
        if source is BarSource.LIVE:
            self.now_ms = grid.close_of(out[-1].candle.ts)
        s.deliver(out, write_cache=False)
        return True


class _Handle:
    """What a ``CCXTFeed`` gets from ``attach`` (as ``bt.store.FeedHandle``)."""

    def __init__(self, series: Series, driver: ReplayDriver) -> None:
        self.series = series
        self.driver = driver
        self.task = None


class ReplayStore:
    """Stands in for ``CCXTStore`` when bars come from the cache (``btccxt backtest``).

    Args:
        exchange_id: the ccxt id (its bar grid: weeks, months).
        rows: ``rows(symbol, timeframe, since_ms, until_ms)`` yields cached bars in order:
            ``cache_rows(cache, source)`` reads the SQLite cache in chunks; ``memory_rows``
            serves rows loaded once (sweeps).
        since_ms: the moment the replayed live run starts (its first live bar is the one
            forming then).
        until_ms: bars closing after this are not delivered; the feeds end there.
    """

    def __init__(self, exchange_id: str, rows: Rows, since_ms: int, until_ms: int, *,
                 clock: Clock = SYSTEM_CLOCK, chunk: int = CHUNK) -> None:
        self.exchange_id = exchange_id
        self.rows = rows
        self.since_ms = since_ms
        self.until_ms = until_ms
        self.clock = clock
        self.chunk = chunk
        self.handles: list[_Handle] = []
        self.rest_calls = 0

    def getdata(self, *args: Any, **kwargs: Any) -> Any:
        from btccxt_cli.bt.feed import CCXTFeed

        return CCXTFeed(*args, store=self, **kwargs)

    def attach(self, params: SeriesParams, *, name: str | None = None) -> _Handle:
        # the replay is not a socket: qualify nothing by mode, but keep the config's label
        holder: list[ReplayDriver] = []
        series = Series(params, exchange_now_ms=lambda: holder[0].now_ms, clock=self.clock,
                        pipe=Pipe(high_water=1 << 30), name=name or params.symbol)
        driver = ReplayDriver(series, self.rows, self.since_ms, self.until_ms, self.chunk)
        holder.append(driver)
        handle = _Handle(series, driver)
        self.handles.append(handle)
        return handle

    def detach(self, handle: _Handle) -> None:
        s = handle.series
        s.phase = s.OVER
        s.pipe.close()

    def stop(self) -> None:
        for h in self.handles:
            self.detach(h)

    def status(self) -> list[FeedStatus]:
        return [h.series.status() for h in self.handles]

    def start(self, data: Any = None, broker: Any = None) -> None:
        """Cerebro's store protocol; nothing to start."""


def cache_rows(cache: Any, source: str, chunk: int = 10_000) -> Rows:
    """Rows of ``source`` read lazily from an ``OhlcvCache`` (``chunk`` rows per query)."""

    def rows(symbol: str, timeframe: str, since_ms: int, until_ms: int) -> Iterator[Candle]:
        return cache.iter_read(source, symbol, timeframe, since_ms, until_ms, chunk=chunk)

    return rows


def memory_rows(series: dict[tuple[str, str], Sequence[Candle]]) -> Rows:
    """Rows from memory: ``{(symbol, timeframe): candles in order}`` (loaded once, shared)."""
    import bisect

    def rows(symbol: str, timeframe: str, since_ms: int, until_ms: int) -> Iterator[Candle]:
        data = series.get((symbol, timeframe), ())
        lo = bisect.bisect_left(data, (since_ms,))
        for i in range(lo, len(data)):
            c = data[i]
            if c.ts >= until_ms:
                return
            yield c

    return rows
