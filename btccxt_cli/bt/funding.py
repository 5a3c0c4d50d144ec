"""Funding rates of perpetual swaps for paper runs and backtests: where they come from.

* ``is_swap(symbol, market)``: a swap or future (ccxt market ``swap``/``future``, or a unified
  symbol with a settle part, ``BTC/USDT:USDT``).
* ``fetch_rates(client, symbol, since_ms, until_ms)``: ccxt ``fetch_funding_rate_history``,
  page by page, as ``(settlement ms, rate)``.
* ``fill_funding(cache, client, source, symbol, lo, hi)``: download the settlements in
  ``[lo, hi]`` the cache lacks, page by page (each page committed with the range it covers,
  so an interrupted download resumes); ``missing_funding`` says what the cache lacks.
* ``HistoryRates``: rates known in advance (a backtest: read from the cache).
* ``LiveRates``: a paper run's rates, polled by a thread of its own from the exchange: the
  schedule from ``fetch_funding_rate`` (next settlement) and the history, then each
  settlement's rate from the history once it has passed.

Both rate sources answer ``times(symbol, lo, hi)`` (settlements in ``(lo, hi]``; None while
a run's schedule is not known yet) and ``rate(symbol, t)`` (None while not known yet). No
backtrader here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from btccxt_cli.bars.gaps import Range, subtract_ranges
from btccxt_cli.clock import SYSTEM_CLOCK, Clock

__all__ = ["is_swap", "fetch_rates", "fill_funding", "missing_funding", "HistoryRates",
           "LiveRates", "PAGE"]

logger = logging.getLogger(__name__)

PAGE = 100
"""Rates asked for per ``fetch_funding_rate_history`` call (okx's maximum)."""


def is_swap(symbol: str, market: dict[str, Any] | None = None) -> bool:
    """True for a swap or future: the ccxt market says so, or the unified symbol has a settle
    part (``BTC/USDT:USDT``)."""
    if market and (market.get("swap") or market.get("future")):
        return True
    return ":" in symbol


def fetch_rates(client: Any, symbol: str, since_ms: int, until_ms: int,
                page: int = PAGE) -> Iterator[tuple[list[tuple[int, float]], int]]:
    """Pages of ``(settlement ms, rate)`` with ``since <= ts <= until``, oldest first; each page
    with the time up to which every settlement has been seen (``until`` on the last page)."""
    cur = int(since_ms)
    while cur <= until_ms:
        got = client.fetch_funding_rate_history(symbol, since=cur, limit=page)
        rows = sorted({int(r["timestamp"]): float(r["fundingRate"]) for r in got or ()
                       if r.get("timestamp") is not None and r.get("fundingRate") is not None
                       and int(r["timestamp"]) >= cur}.items())
        inside = [(t, r) for t, r in rows if t <= until_ms]
        if not rows or len(got or ()) < page or len(inside) < len(rows):
            yield inside, int(until_ms)  # the exchange has nothing more up to until
            return
        last = rows[-1][0]
        yield inside, last
        cur = last + 1


def missing_funding(cache: Any, source: str, symbol: str, lo: int, hi: int) -> list[Range]:
    """The parts of ``[lo, hi]`` (ms, inclusive) whose settlements the cache has not stored."""
    return subtract_ranges([(lo, hi)], cache.funding_ranges(source, symbol), 1)


def fill_funding(cache: Any, client: Any, source: str, symbol: str, lo: int, hi: int, *,
                 page: int = PAGE) -> int:
    """Download the settlements of ``[lo, hi]`` the cache lacks into it; returns the rates
    stored. Each page is committed with the range it covers (a rerun resumes)."""
    n = 0
    for a, b in missing_funding(cache, source, symbol, lo, hi):
        start = a
        for rows, upto in fetch_rates(client, symbol, a, b, page):
            cache.put_funding(source, symbol, rows, (start, upto))
            n += len(rows)
            start = upto + 1
    return n


class HistoryRates:
    """Rates known in advance: ``{symbol: [(settlement ms, rate), ...]}``."""

    def __init__(self, rates: dict[str, list[tuple[int, float]]]) -> None:
        self._rates = {s: dict(rows) for s, rows in rates.items()}
        self._times = {s: sorted(d) for s, d in self._rates.items()}

    def times(self, symbol: str, lo: int, hi: int) -> list[int]:
        import bisect

        ts = self._times.get(symbol, [])
        return ts[bisect.bisect_right(ts, lo):bisect.bisect_right(ts, hi)]

    def rate(self, symbol: str, t: int) -> float | None:
        return self._rates.get(symbol, {}).get(t)

    def stop(self) -> None:
        """Nothing runs."""


class LiveRates:
    """A paper run's funding rates, polled from the exchange by a daemon thread.

    Args:
        make_client: returns a blocking ccxt client of its own (not shared with other threads).
        symbols: the swaps of the run.
        clock: the run's clock (settlement times are exchange time; the store's offset is small
            next to the wait after a settlement).
        settle_wait: seconds after a settlement before its rate is asked for; then every
            ``retry`` seconds until the history has it.
    """

    def __init__(self, make_client: Callable[[], Any], symbols: list[str], *,
                 clock: Clock = SYSTEM_CLOCK, settle_wait: float = 1.0, retry: float = 5.0) -> None:
        self.make_client = make_client
        self.symbols = list(symbols)
        self.clock = clock
        self.settle_wait = settle_wait
        self.retry = retry
        self._lock = threading.Lock()
        self._rates: dict[str, dict[int, float]] = {s: {} for s in self.symbols}
        self._next: dict[str, int] = {}  # the next settlement the exchange announced
        self._interval: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> LiveRates:
        self._thread = threading.Thread(target=self._run, name="btccxt-funding", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout=5.0)  # at most one REST call in flight

    # ------------------------------------------------------------ what the broker asks
    def times(self, symbol: str, lo: int, hi: int) -> list[int] | None:
        """Settlements in ``(lo, hi]``; None while the schedule is not known yet."""
        with self._lock:
            known = {t for t in self._rates.get(symbol, {}) if lo < t <= hi}
            nxt, iv = self._next.get(symbol), self._interval.get(symbol)
        if nxt is None:
            return None
        if nxt is not None and iv:
            t = nxt - ((nxt - lo) // iv) * iv  # the first schedule time after lo
            t = t if t > lo else t + iv
            while t <= hi:
                known.add(t)
                t += iv
        return sorted(known)

    def rate(self, symbol: str, t: int) -> float | None:
        with self._lock:
            return self._rates.get(symbol, {}).get(t)

    def rates_after(self, symbol: str, t: int) -> list[tuple[int, float]]:
        """The known settlements after ``t``, oldest first."""
        with self._lock:
            return sorted((s, r) for s, r in self._rates.get(symbol, {}).items() if s > t)

    # ------------------------------------------------------------ the poller
    def _run(self) -> None:
        client = None
        failures = 0
        while not self._stop.is_set():
            try:
                if client is None:
                    client = self.make_client()
                wait = self._poll(client)
                failures = 0
            except Exception as exc:  # the exchange is down or refuses: try again later
                failures += 1
                wait = min(self.retry * 2 ** (failures - 1), 300.0)
                logger.warning("funding rates of %s: %s (again in %.0f s)",
                               ", ".join(self.symbols), exc, wait)
            self._stop.wait(max(0.05, wait))

    def _poll(self, client: Any) -> float:
        """One round over the symbols; returns the seconds to wait before the next."""
        now = self.clock.time_ms()
        waits = []
        for sym in self.symbols:
            if sym not in self._next:
                self._learn(client, sym, now)
            with self._lock:
                nxt, iv = self._next[sym], self._interval.get(sym)
            if nxt + self.settle_wait * 1000 > now:
                waits.append((nxt - now) / 1000 + self.settle_wait)
                continue
            rows = [r for page, _ in fetch_rates(client, sym, nxt, now) for r in page]
            done = nxt in dict(rows)
            after = (nxt + iv if iv else self._learn_next(client, sym)) if done else None
            with self._lock:
                self._rates[sym].update(rows)
                if done:
                    self._next[sym] = after if after is not None and after > nxt else now + 3_600_000
            if done:  # a funding feed may be waiting for it: let cerebro run a loop
                from btccxt_cli.sources.pipe import ring

                ring()
            waits.append(0.0 if done else self.retry)
        return min(waits, default=self.retry)

    def _learn(self, client: Any, sym: str, now: int) -> None:
        """The schedule: the next settlement (``fetch_funding_rate``) and the interval (the
        last two settlements of the history)."""
        got = client.fetch_funding_rate_history(sym, limit=10)  # the latest settlements
        hist = sorted({int(r["timestamp"]): float(r["fundingRate"]) for r in got or ()
                       if r.get("timestamp") is not None and r.get("fundingRate") is not None
                       and int(r["timestamp"]) <= now}.items())
        nxt = self._learn_next(client, sym)
        with self._lock:
            self._rates[sym].update(hist)
            if len(hist) >= 2:
                self._interval[sym] = hist[-1][0] - hist[-2][0]
            # the first settlement after the history read (one may have passed since, before
            # fetch_funding_rate answered with the one after it)
            self._next[sym] = (hist[-1][0] + self._interval[sym] if sym in self._interval
                               else nxt if nxt is not None else now + 3_600_000)

    @staticmethod
    def _learn_next(client: Any, sym: str) -> Any:
        got = client.fetch_funding_rate(sym)
        t = got.get("fundingTimestamp")
        return int(t) if t is not None else None
