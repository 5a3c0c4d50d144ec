"""CCXTFundingFeed: a backtrader data feed of a swap's funding rates, one bar per settlement.

Every line of a bar (open, high, low, close) is the rate settled at the bar's time (the
settlement, epoch ms, naive UTC like every btccxt feed); volume and open interest are 0. First
the history since ``fromdate`` (or the last ``backfill`` settlements), from the cache when
``cache`` is given (missing settlements downloaded into it first, ``bt/funding.py``) or from
ccxt ``fetch_funding_rate_history``; then, unless ``historical``, each new settlement as the
exchange publishes it (``LiveRates``, polled by a thread of its own). With ``rates`` (a list
of ``(ms, rate)``) it replays those and ends: a backtest's rates from the cache.

It is meant to sit beside the symbol's price feed: cerebro aligns both by time, so a strategy
reads ``self.funding.close[0]`` as the last settled rate next to the bars.
"""

from __future__ import annotations

import logging
from collections import deque
from datetime import datetime, timezone
from typing import Any

import backtrader as bt

from btccxt_cli.bt.funding import LiveRates, fetch_rates, fill_funding

__all__ = ["CCXTFundingFeed"]

logger = logging.getLogger(__name__)


class CCXTFundingFeed(bt.feed.DataBase):
    """Funding rates of ``symbol`` as bars (close = the rate).

    Parameters:

    - ``store``: the ``CCXTStore`` (its exchange, credentials, rate budget and clock).
    - ``symbol``: the swap (``BTC/USDT:USDT``).
    - ``fromdate``: history from this time (naive: UTC); or ``backfill`` (10): the last N
      settlements of the history.
    - ``historical`` (False): end after the history instead of waiting for new settlements.
    - ``cache``: an ``OhlcvCache``: history read from it, under the store's cache source
      (``cache/source.py``: the exchange id, or ``ID@sim:IDENTITY`` for a simulator), the
      missing part downloaded into it first.
    - ``rates``: ``[(ms, rate), ...]`` to replay instead (no exchange; the feed then ends).
    - ``qcheck`` (0.5): longest wait (s) in one ``_load`` when it is cerebro's only data.
    """

    params = (("store", None), ("symbol", None), ("backfill", 10), ("historical", False),
              ("cache", None), ("rates", None), ("qcheck", 0.5))

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        if not self.p.symbol and self.p.rates is None:
            raise ValueError("CCXTFundingFeed needs symbol= (a swap such as BTC/USDT:USDT)")
        self._queue: deque[tuple[int, float]] = deque()
        self._last_ms: int | None = None
        self._live: LiveRates | None = None

    def qbuffer(self, savemem: int = 0, replaying: bool = False) -> None:
        """Bounded buffers (``exactbars=1``, as btccxt's cerebro runs) of at least 2 bars: a
        cycle without a new settlement moves the lines forward and back, which on a 1-bar
        buffer would drop the last rate (backtrader then reads an empty line)."""
        super().qbuffer(savemem=savemem, replaying=replaying)
        for line in self.lines:
            line.minbuffer(2)

    def islive(self) -> bool:
        return self.p.rates is None and not self.p.historical

    def haslivedata(self) -> bool:
        return bool(self._queue)

    def start(self) -> None:
        super().start()
        self._queue.clear()
        self._last_ms = None
        if self.p.rates is not None:
            self._queue.extend(sorted((int(t), float(r)) for t, r in self.p.rates))
            return
        store = self.p.store
        if store is None:
            raise ValueError("CCXTFundingFeed needs store= (a CCXTStore) or rates=")
        client = store._make("sync")
        client.load_markets()
        self._queue.extend(self._history(client))
        if self.islive():
            self._live = LiveRates(lambda: client, [self.p.symbol], clock=store.clock).start()
            if hasattr(store, "on_stop"):
                store.on_stop(self._live.stop)

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        super().stop()

    def _history(self, client: Any) -> list[tuple[int, float]]:
        sym, store = self.p.symbol, self.p.store
        now = store.clock.time_ms()
        if self.p.fromdate is not None:  # backtrader made it a number in start()
            since = int(round(bt.num2date(self.fromdate).replace(tzinfo=timezone.utc)
                              .timestamp() * 1000))
        else:  # the last ``backfill`` settlements
            got = client.fetch_funding_rate_history(sym, limit=max(1, int(self.p.backfill or 1)))
            stamps = [int(r["timestamp"]) for r in got or () if r.get("timestamp") is not None]
            since = min(stamps) if stamps else now
        if self.p.cache is not None:
            from btccxt_cli.cache.source import cache_source

            # a simulator's rates under its own source name, never the exchange's
            source = cache_source(store.exchange_id, getattr(store, "sim_url", None))
            fill_funding(self.p.cache, client, source, sym, since, now)
            return self.p.cache.funding(source, sym, since, now + 1)
        return [r for page, _ in fetch_rates(client, sym, since, now) for r in page]

    def _load(self) -> bool | None:
        if not self._queue and self._live is not None:
            self._queue.extend(self._live.rates_after(self.p.symbol, self._last_ms or -1))
        if self._queue:
            t, rate = self._queue.popleft()
            if self._last_ms is not None and t <= self._last_ms:
                return self._load()
            self._last_ms = t
            self.lines.datetime[0] = bt.date2num(
                datetime.fromtimestamp(t / 1000, tz=timezone.utc).replace(tzinfo=None))
            for line in (self.lines.open, self.lines.high, self.lines.low, self.lines.close):
                line[0] = rate
            self.lines.volume[0] = 0.0
            self.lines.openinterest[0] = 0.0
            return True
        if not self.islive():
            return False
        env = getattr(self, "_env", None)
        if env is not None and all(isinstance(d, CCXTFundingFeed) for d in env.datas):
            from btccxt_cli.sources.pipe import Pipe

            Pipe().get(self.p.qcheck)  # alone: wait for the poller's ring (or qcheck)
        return None
