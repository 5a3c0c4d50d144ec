"""Resumable OHLCV download into an ``OhlcvCache`` (``btccxt backfill``).

``Backfiller(...).run()`` plans what is missing from the cache (``bars.gaps``), pages through
``fetch_ohlcv`` for exactly those bars and commits every page as it arrives:

* **Resume.** Bars already cached are not asked for again, nor are ranges the exchange
  already confirmed empty, EXCEPT the newest cached bar of the series: it may have been
  stored just after its end and finalised by the exchange later, so it is always re-read.
* **Closed bars only.** The window ends at the bar open at or before the exchange's now
  (our clock plus the offset ``fetch_time`` measured, conservatively rounded so we never
  run ahead of the exchange); a row whose end is after that now is dropped, never stored.
* **Windows.** Every request covers at most ``limit`` bar slots: ``since=first``,
  ``limit=slots``, ``params={"until": end - 1}`` (binance ``endTime`` is inclusive, okx
  ``after`` exclusive, so ``end - 1`` is right for both). The exchange returns every bar it
  has in the window, so a slot the answer lacks is a bar the exchange does not have: it is
  recorded with ``mark_empty`` and reported as an exchange gap, not a missing one.
* **Commit per page.** A kill -9 loses at most the page in flight.
* **Errors.** 429/418: wait ``Retry-After`` if the exchange sent one, else back off; network
  errors and 5xx: back off (``exchange.retry.Backoff``) and retry, at most ``max_retries``
  times in a row, then raise ``TemporaryError`` (what is stored stays). Bad symbol,
  timeframe or request: raise ``UnsupportedError`` / ``ExchangeRejectedError`` at once.
  Request pacing is ccxt's own limiter (``enableRateLimit``), nothing on top.
* **Stop.** ``request_stop()`` (any thread, e.g. a SIGINT handler) ends the run after the
  page in flight; the result says ``interrupted``.

Modules: ``backfill`` (this one: ``Backfiller``), ``backfill_result`` (``BackfillResult``),
``limits`` (``request_limit``: bars per request); both names are re-exported here.

No ccxt import here: errors are classified through ``btccxt_cli.exchange.errors``.
Must not import: typer, rich, backtrader, the simulator.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

from btccxt_cli.bars.gaps import (
    GapReport,
    Range,
    align_down,
    align_up,
    find_gaps,
    gap_report,
    plan_requests,
    range_bars,
    subtract_ranges,
)
from btccxt_cli.cache.backfill_result import BackfillResult
from btccxt_cli.cache.limits import DEFAULT_LIMIT as DEFAULT_LIMIT
from btccxt_cli.cache.limits import KNOWN_LIMITS, request_limit
from btccxt_cli.cache.sqlite import OhlcvCache
from btccxt_cli.clock import SYSTEM_CLOCK, Clock
from btccxt_cli.errors import BtccxtError, TemporaryError, UnsupportedError
from btccxt_cli.exchange.errors import (
    is_fatal,
    is_rate_limit,
    is_temporary,
    map_ccxt_error,
    retry_after_s,
)
from btccxt_cli.exchange.retry import Backoff
from btccxt_cli.model import Candle
from btccxt_cli.timeframes import bar_grid, timeframe_ms

__all__ = ["Backfiller", "BackfillResult", "ProgressCallback", "RetryDelays", "request_limit",
           "KNOWN_LIMITS"]

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]
"""``on_progress(done_bars, expected_bars)``: called once before the first page and after
each committed page."""

MAX_WAIT_S = 300.0
"""Longest single wait, whatever ``Retry-After`` says."""


class RetryDelays(Protocol):
    """What the backfill needs of a backoff policy (``exchange.retry.Backoff`` fits)."""

    def failure(self) -> float:
        """Seconds to wait before the next attempt."""

    def success(self) -> None:
        """The last attempt worked."""


class Backfiller:
    """Download one (exchange, symbol, timeframe) window into the cache, resumably.

    Args:
        exchange: a synchronous ccxt client (``make_exchange(id, kind="sync", ...)``); its
            markets are loaded if they are not yet.
        cache: where bars go.
        exchange_id: the ccxt exchange id (default: ``exchange.id``).
        source: the cache's name of this price source (``cache.source.cache_source``).
            Default: the exchange id, or for a client ``make_exchange`` pointed at a simulator
            the simulator's own name (``binance@sim:seed-1``), so a simulator's bars never
            pose as the exchange's.
        symbol: unified ccxt symbol (``BTC/USDT``, ``BTC/USDT:USDT``).
        timeframe: ccxt timeframe (``1m``).
        since_ms: first bar wanted (rounded up to a bar open).
        until_ms: end of the window, exclusive (default and at most: the exchange's now;
            the forming bar is never stored).
        limit: bars per request (default: what the exchange allows, see :func:`request_limit`;
            a larger value is lowered to it, since the gap proof needs whole answers).
        on_progress: ``on_progress(done_bars, expected_bars)`` after each committed page.
        clock: time source for the exchange's now and durations.
        max_retries: consecutive failed attempts of one page before giving up.
        backoff: retry delays, e.g. ``sources.base.Backoff(0.5, 30.0)`` (default: the same
            policy without the healthy-period rule).
    """

    def __init__(self, exchange: Any, cache: OhlcvCache, *, exchange_id: str | None = None,
                 source: str | None = None, symbol: str, timeframe: str, since_ms: int, until_ms: int | None = None,
                 limit: int | None = None, on_progress: ProgressCallback | None = None,
                 clock: Clock = SYSTEM_CLOCK, max_retries: int = 8,
                 backoff: RetryDelays | None = None) -> None:
        self.exchange = exchange
        self.cache = cache
        self.exchange_id = exchange_id or str(getattr(exchange, "id", "") or "exchange")
        if source is None:
            from btccxt_cli.cache.source import cache_source

            source = cache_source(self.exchange_id, getattr(exchange, "btccxt_sim_url", None))
        self.source = source
        self.symbol = symbol
        self.timeframe = timeframe
        try:
            self.tf_ms = timeframe_ms(timeframe)
            # where this exchange's bars open (weeks on Monday, calendar months: timeframes.py)
            self.grid = bar_grid(self.exchange_id, timeframe)
        except ValueError as exc:
            raise UnsupportedError(f"{self.exchange_id}: {exc}") from None
        self.since_ms = int(since_ms)
        self.until_ms = None if until_ms is None else int(until_ms)
        self.limit = limit
        self.on_progress = on_progress
        self.clock = clock
        self.max_retries = max(1, max_retries)
        self.backoff: RetryDelays = backoff or Backoff(0.5, 30.0)
        self._stop = threading.Event()
        self._offset_ms: int | None = None
        self.result: BackfillResult | None = None
        """The last run's result, also set when ``run()`` raised (what was done until then)."""

    # ------------------------------------------------------------ control
    def request_stop(self) -> None:
        """Finish the page in flight, then return (thread- and signal-safe)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def exchange_now_ms(self) -> int:
        """The exchange's clock as estimated from ``fetch_time`` (never ahead of it)."""
        return self.clock.time_ms() + (self._offset_ms or 0)

    # ------------------------------------------------------------ run
    def run(self) -> BackfillResult:
        """Fetch what the cache lacks; returns counters and the gap report.

        Raises:
            UnsupportedError: unknown symbol or timeframe (nothing fetched).
            TemporaryError: a page kept failing ``max_retries`` times (earlier pages stay).
            ExchangeRejectedError: the exchange refused a request.
        """
        t0 = self.clock.monotonic()
        tf = self.grid
        start = align_up(self.since_ms, tf)
        res = BackfillResult(self.source, self.symbol, self.timeframe, start, start)
        self.result = res
        if not self.prepare():
            res.interrupted = True
            res.seconds = self.clock.monotonic() - t0
            return res
        now = self.exchange_now_ms()
        end = align_down(now, tf)  # bars opening before this one have closed
        if self.until_ms is not None:
            end = min(end, self.until_ms)
        res.end_ms = max(start, end)
        res.limit = limit = self._limit()
        try:
            if end > start:
                self._fetch_window(res, start, end, limit)
        finally:
            res.seconds = self.clock.monotonic() - t0
            if end > start:
                self._finish(res, start, end)
            else:
                res.gaps = GapReport(tf, start, start)
        return res

    def plan(self, start: int, end: int, limit: int) -> list[tuple[int, int]]:
        """Request windows ``[since, until)`` for the bars of ``[start, end)`` still to fetch."""
        ex, sym, tfs, tf = self.source, self.symbol, self.timeframe, self.grid
        have = self.cache.timestamps(ex, sym, tfs, start, end)
        b = self.cache.bounds(ex, sym, tfs)
        if b is not None and have and have[-1] == b[1]:
            have.pop()  # the newest cached bar is always re-read: it may have changed since
        gaps = find_gaps(have, tf, start, end)
        todo: list[Range] = subtract_ranges(gaps, self.cache.empty_ranges(ex, sym, tfs, start, end), tf)
        return plan_requests(todo, tf, limit)

    def _fetch_window(self, res: BackfillResult, start: int, end: int, limit: int) -> None:
        plan = self.plan(start, end, limit)
        res.expected_bars = sum(self.grid.bars_in(s, e) for s, e in plan)
        logger.info("%s %s %s: %d bars to fetch in %d requests (limit %d)", self.exchange_id,
                    self.symbol, self.timeframe, res.expected_bars, len(plan), limit)
        done = 0
        self._progress(done, res.expected_bars)
        for s, e in plan:
            if self._stop.is_set():
                res.interrupted = True
                break
            rows = self._fetch(res, s, e)
            if rows is None:  # stopped while waiting to retry
                res.interrupted = True
                break
            self._store(res, rows, s, e)
            done += self.grid.bars_in(s, e)
            self._progress(done, res.expected_bars)

    def _store(self, res: BackfillResult, rows: list[Any], s: int, e: int) -> None:
        tf = self.grid
        # closed and inside the window
        last_open = min(tf.prev_open(e), tf.prev_open(tf.open_of(self.exchange_now_ms())))
        candles: list[Candle] = []
        prev = s - 1
        ordered = True
        make = Candle._make
        for row in rows:
            ts = row[0]
            if s <= ts <= last_open:
                if not tf.on_grid(ts):
                    # a slot would look empty while the exchange has the bar at another offset
                    raise UnsupportedError(
                        f"{self.exchange_id}: {self.timeframe} bars of {self.symbol} do not open "
                        f"where btccxt expects them (got {ts}, expected {tf.open_of(ts)})",
                        hint="use a smaller timeframe, and report the exchange's rule")
                if ts <= prev:
                    ordered = False
                prev = ts
                # ccxt rows are [int ms, float x5]; from_ccxt copes with None volumes and strings
                candles.append(make(row) if len(row) == 6 and row[5] is not None
                               and type(ts) is int else Candle.from_ccxt(row))
        if not ordered:  # ccxt sorts, but never trust it with the primary key
            candles = list({c.ts: c for c in sorted(candles)}.values())
        res.bars_fetched += len(candles)
        res.bars_written += self.cache.upsert(self.source, self.symbol, self.timeframe, candles)
        if len(candles) == tf.bars_in(s, e):
            return  # unique, aligned and inside [s, e): every slot is there
        # every slot of [s, e) the answer lacks: the exchange has no bar there
        empty = find_gaps([c.ts for c in candles], tf, s, e)
        for a, b in empty:
            self.cache.mark_empty(self.source, self.symbol, self.timeframe, a, b)
        if empty:
            logger.info("%s %s %s: exchange has no bars in %d range(s) of [%d, %d): %d bars",
                        self.exchange_id, self.symbol, self.timeframe, len(empty), s, e,
                        sum(range_bars(r, tf) for r in empty))

    def _fetch(self, res: BackfillResult, s: int, e: int) -> list[Any] | None:
        """One window, with retries; None if stopped while waiting."""
        n = self.grid.bars_in(s, e)
        failures = 0
        while True:
            res.requests += 1
            try:
                rows = self.exchange.fetch_ohlcv(self.symbol, self.timeframe, since=s, limit=n,
                                                 params={"until": e - 1})
                self.backoff.success()
                return rows or []
            except Exception as exc:
                if isinstance(exc, BtccxtError) or not _is_exchange_error(exc):
                    raise
                if is_fatal(exc):
                    raise map_ccxt_error(exc, exchange=self.exchange,
                                         what=f"fetch_ohlcv {self.symbol} {self.timeframe}") from exc
                rate = is_rate_limit(exc)
                if not rate and not is_temporary(exc):
                    raise map_ccxt_error(exc, exchange=self.exchange,
                                         what=f"fetch_ohlcv {self.symbol} {self.timeframe}") from exc
                failures += 1
                if failures >= self.max_retries:
                    mapped = map_ccxt_error(exc, exchange=self.exchange)
                    raise TemporaryError(
                        f"{self.exchange_id}: {self.symbol} {self.timeframe}: gave up after "
                        f"{failures} failed attempts ({mapped.message}); {res.bars_written} bars "
                        "written this run are kept",
                        hint="rerun the same command to resume") from exc
                wait = retry_after_s(self.exchange) if rate else None
                if wait is None:
                    wait = self.backoff.failure()
                wait = min(wait, MAX_WAIT_S)
                res.retries += 1
                res.rate_limit_waits += int(rate)
                res.waited_s += wait
                logger.warning("%s %s %s: %s: %s; retry %d/%d in %.2f s", self.exchange_id,
                               self.symbol, self.timeframe, "rate limited" if rate else "error",
                               type(exc).__name__, failures, self.max_retries - 1, wait)
                if self._stop.wait(wait):
                    return None

    def _finish(self, res: BackfillResult, start: int, end: int) -> None:
        ex, sym, tfs = self.source, self.symbol, self.timeframe
        have = self.cache.timestamps(ex, sym, tfs, start, end)
        res.cached_bars = len(have)
        res.gaps = gap_report(have, self.cache.empty_ranges(ex, sym, tfs, start, end),
                              self.grid, start, end)

    def _progress(self, done: int, expected: int) -> None:
        if self.on_progress is not None:
            self.on_progress(done, expected)

    # ------------------------------------------------------------ preparation
    def prepare(self) -> bool:
        """Load markets, check symbol and timeframe, measure the exchange clock (once).

        ``run()`` calls it; call it first to reject every bad symbol before any download.
        Returns False if ``request_stop()`` arrived while waiting to retry.

        Raises:
            UnsupportedError: unknown symbol or timeframe, or no ``fetchOHLCV``.
        """
        try:
            self._prepare()
        except _Stopped:
            return False
        return True

    def _prepare(self) -> None:
        ex = self.exchange
        if not getattr(ex, "markets", None):
            self._retry_call(ex.load_markets, "load markets")
        if self.symbol not in ex.markets:
            import difflib

            close = difflib.get_close_matches(self.symbol.upper(), list(ex.markets), n=1, cutoff=0.6)
            raise UnsupportedError(f"{self.exchange_id}: unknown symbol {self.symbol!r}",
                                   hint=f"did you mean {close[0]!r}?" if close
                                   else "check the exchange's market list")
        tfs = getattr(ex, "timeframes", None) or {}
        if tfs and self.timeframe not in tfs:
            raise UnsupportedError(f"{self.exchange_id}: unknown timeframe {self.timeframe!r}",
                                   hint=f"available: {', '.join(sorted(tfs, key=_tf_key))}")
        if not (getattr(ex, "has", None) or {}).get("fetchOHLCV"):
            raise UnsupportedError(f"{self.exchange_id} has no OHLCV history (fetchOHLCV)")
        if self._offset_ms is None:
            self._offset_ms = self._measure_offset()

    def _measure_offset(self) -> int:
        """Exchange clock minus ours, rounded so our estimate never runs ahead of it."""
        ex = self.exchange
        if not (getattr(ex, "has", None) or {}).get("fetchTime"):
            return 0
        server = self._retry_call(ex.fetch_time, "read the exchange clock")
        after = self.clock.time_ms()
        if server is None:
            return 0
        # the server read its clock before we took ``after``: server - after <= true offset
        off = int(server) - after
        if abs(off) > 1000:
            logger.warning("%s: exchange clock differs from ours by %.2f s; closed bars are "
                           "judged by the exchange clock", self.exchange_id, off / 1000)
        return off

    def _retry_call(self, fn: Callable[[], Any], what: str) -> Any:
        backoff = Backoff(0.5, 5.0)
        for attempt in range(self.max_retries):
            try:
                return fn()
            except Exception as exc:
                if isinstance(exc, BtccxtError) or not _is_exchange_error(exc):
                    raise
                if not is_temporary(exc) or attempt == self.max_retries - 1:
                    raise map_ccxt_error(exc, exchange=self.exchange, what=what) from exc
                wait = (retry_after_s(self.exchange) if is_rate_limit(exc) else None) \
                    or backoff.failure()
                logger.warning("%s: %s failed (%s); retrying in %.1f s", self.exchange_id, what,
                               type(exc).__name__, wait)
                if self._stop.wait(min(wait, MAX_WAIT_S)):
                    raise _Stopped from exc
        return None

    def _limit(self) -> int:
        cap = request_limit(self.exchange, self.symbol)
        if self.limit is None:
            return cap
        if self.limit > cap:
            logger.info("%s: limit %d lowered to the exchange's %d bars per request",
                        self.exchange_id, self.limit, cap)
        return max(1, min(int(self.limit), cap))


class _Stopped(Exception):
    """``request_stop()`` arrived while preparing."""


def _is_exchange_error(exc: BaseException) -> bool:
    """A ccxt error or a plain network error (anything else is a bug: let it through)."""
    mod = type(exc).__module__ or ""
    return mod.startswith("ccxt") or isinstance(exc, (ConnectionError, TimeoutError, OSError))


def _tf_key(tf: str) -> int:
    try:
        return timeframe_ms(tf)
    except ValueError:
        return 1 << 62
