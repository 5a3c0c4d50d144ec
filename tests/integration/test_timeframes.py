"""Long timeframes end to end: every venue's 6h..1M bars through the real feed, REST and WebSocket.

Bars of these timeframes do not all open on multiples of their length since 1970 (binance weeks
open on Monday, months on the 1st, okx's plain 1D at 16:00 UTC). Before bar grids, a binance
``1w`` or ``1M`` feed never delivered a bar and read REST in a loop, and an okx ``1d`` feed
subscribed Hong Kong days on its WebSocket while REST read UTC days.

A long bar cannot close in real time, so the simulator and the store share a ``ManualClock``
standing 3 s before the bar forming at the real now opens: the bar forming on the simulator's
clock closes 3 s later. (The clock stays in the past: ccxt reads the real clock in places.)
"""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from typing import Any

import backtrader as bt
import pytest

from btccxt_cli.bt.store import CCXTStore
from btccxt_cli.cache.backfill import Backfiller
from btccxt_cli.clock import SYSTEM_CLOCK, ManualClock
from btccxt_cli.exchange.factory import make_exchange
from btccxt_cli.model import BarSource, FeedState
from btccxt_cli.sources.base import SeriesParams
from btccxt_cli.timeframes import BarGrid, bar_grid

from .harness import assert_matches_truth, run_feeds
from .simtools import drive, get_json

pytestmark = pytest.mark.live

SYM = {"kraken": "BTC/USD"}  # the others: BTC/USDT
LEAD_MS = 3_000  # the simulator's clock starts this long before the forming bar closes
HISTORY = 4

#: every timeframe from 6h up that ccxt offers for each simulated venue (and 1d)
LONG = {
    "binance": ["6h", "8h", "12h", "1d", "3d", "1w", "1M"],
    "okx": ["6h", "12h", "1d", "1w", "1M", "3M"],
    "bybit": ["6h", "12h", "1d", "1w", "1M"],
    "kucoin": ["6h", "8h", "12h", "1d", "1w", "1M"],
    "bitget": ["6h", "12h", "1d", "3d", "1w", "1M"],
    "kraken": ["1d", "1w", "2w"],
}
REST_CASES = [(ex, tf) for ex, tfs in LONG.items() for tf in tfs]
WS_CASES = REST_CASES  # every one over the socket too


def symbol(ex: str) -> str:
    return SYM.get(ex, "BTC/USDT")


def setup(sim_factory: Any, ex: str, tf: str,
          lead_ms: int = LEAD_MS) -> tuple[Any, ManualClock, BarGrid, int]:
    """A simulator of ``ex`` on a manual clock ``lead_ms`` before its forming bar closes."""
    grid = bar_grid(ex, tf)
    closes = grid.open_of(SYSTEM_CLOCK.time_ms())  # where the bar forming at the real now opens
    clock = ManualClock(start_ms=closes - lead_ms)
    sim = sim_factory(exchanges=(ex,), clock=clock)
    return sim, clock, grid, grid.prev_open(closes)


def store_for(sim: Any, ex: str, clock: ManualClock) -> CCXTStore:
    return CCXTStore(ex, sim_url=sim.url(ex), clock=clock, config={"enableRateLimit": False})


def take_bars(handle: Any) -> list[Any]:
    """The bar events waiting in a feed's pipe (taken out; state events dropped)."""
    out = []
    while (ev := handle.series.pipe.get(0)) is not None:
        if ev.kind == "bar":
            out.append(ev)
    return out


def truth(sim: Any, ex: str, tf: str, first: int, count: int) -> list[tuple]:
    grid = bar_grid(ex, tf)
    return [tuple(r) for r in sim.truth(ex, symbol(ex), tf, first, grid.shift(first, count))]


def as_rows(events: list[Any]) -> list[tuple]:
    return [tuple(ev.candle) for ev in events]


# --------------------------------------------------------------------------- REST
@pytest.mark.parametrize("ex, tf", REST_CASES)
def test_rest_feed_delivers_history_and_the_next_long_bar_without_a_read_loop(
        sim_factory: Any, ex: str, tf: str) -> None:
    sim, clock, grid, forming = setup(sim_factory, ex, tf)
    first = grid.shift(forming, -HISTORY)
    store = store_for(sim, ex, clock)
    try:
        h = store.attach(SeriesParams(symbol(ex), tf, mode="rest", backfill_bars=HISTORY,
                                      exchange_id=ex))
        assert h.series.grid == grid
        got: list[Any] = []
        for _ in range(10):  # history: a page or two
            h.driver.pump(0)
            got += take_bars(h)
            if h.series.phase == h.series.LIVE:
                break
        assert h.series.phase == h.series.LIVE
        assert as_rows(got) == truth(sim, ex, tf, first, HISTORY)
        assert [ev.candle.ts for ev in got] == [grid.shift(first, i) for i in range(HISTORY)]
        calls = h.series.status().rest_calls
        assert calls <= 3
        for _ in range(50):  # the forming bar has not closed: no REST read, however often asked
            h.driver.pump(0)
        assert h.series.status().rest_calls == calls and not take_bars(h)
        clock.advance((LEAD_MS + 300) / 1000)  # the bar closes; read after the settle delay
        for _ in range(10):
            h.driver.pump(0)
            got = take_bars(h)
            if got:
                break
        assert as_rows(got) == truth(sim, ex, tf, forming, 1)
        assert got[0].source is BarSource.LIVE
        after = h.series.status().rest_calls
        assert after - calls <= 2
        for _ in range(50):
            h.driver.pump(0)
        assert h.series.status().rest_calls == after
    finally:
        store.stop()


def test_rest_feed_follows_an_exchange_whose_weeks_open_elsewhere(sim_factory: Any) -> None:
    """A rule table that does not know the exchange (kucoin's Thursday weeks taken for Monday
    ones): the feed follows the bars REST returns instead of never delivering one."""
    sim, clock, grid, forming = setup(sim_factory, "kucoin", "1w")
    store = store_for(sim, "kucoin", clock)
    try:
        h = store.attach(SeriesParams("BTC/USDT", "1w", mode="rest", backfill_bars=HISTORY,
                                      exchange_id="not-in-the-table"))
        assert h.series.grid != grid  # Monday weeks
        got: list[Any] = []
        for _ in range(10):
            h.driver.pump(0)
            got += take_bars(h)
            if h.series.phase == h.series.LIVE:
                break
        assert h.series.grid == grid  # Thursday weeks, from the exchange's rows
        assert got and as_rows(got) == truth(sim, "kucoin", "1w", got[0].candle.ts, len(got))
        assert got[-1].candle.ts == grid.prev_open(forming)
        calls = h.series.status().rest_calls
        for _ in range(50):
            h.driver.pump(0)
        assert h.series.status().rest_calls == calls <= 3
    finally:
        store.stop()


# --------------------------------------------------------------------------- WebSocket
@pytest.mark.parametrize("ex, tf", WS_CASES)
def test_websocket_feed_closes_the_long_bar_rest_describes(sim_factory: Any, ex: str,
                                                           tf: str) -> None:
    """History by REST, then the forming bar by WebSocket: the same bar (its open time) on
    both sides, released once it closes on the simulator's clock, equal to the truth, with no
    REST read in between."""
    lead_ms = 10_000  # time for a partial push (every 2 s) before the close
    sim, clock, grid, forming = setup(sim_factory, ex, tf, lead_ms)
    first = grid.shift(forming, -HISTORY)
    store = store_for(sim, ex, clock)
    try:
        h = store.attach(SeriesParams(symbol(ex), tf, mode="websocket", backfill_bars=HISTORY,
                                      exchange_id=ex, confirm_grace_s=10.0))
        s = h.series
        got: list[Any] = []
        state_live = threading.Event()

        def pump(until: Any, limit: int = 1500) -> None:
            """Read the pipe (20 ms waits, 30 s at most) until ``until()``, the clock still."""
            for _ in range(limit):
                ev = s.pipe.get(0.02)
                if ev is not None and ev.kind == "bar":
                    got.append(ev)
                if ev is not None and ev.kind == "state" and ev.state is FeedState.LIVE:
                    state_live.set()
                if until():
                    return
            raise AssertionError(f"timed out: {len(got)} bars, status {s.status()}")

        pump(lambda: len(got) >= HISTORY and state_live.is_set()
             and sim.stats(ex)["streams_active"] > 0)  # subscribed before the clock moves
        assert as_rows(got) == truth(sim, ex, tf, first, HISTORY)
        calls = s.status().rest_calls
        # the forming bar as the WebSocket pushes it is the one REST calls forming
        for _ in range(1500):  # 30 s at most; the clock stops a second before the close
            if s.assembler.pending_opens:
                break
            if sim.now_ms() + 1_250 < grid.close_of(forming):
                clock.advance(0.25)
            s.pipe.get(0.02)
        assert s.assembler.pending_opens == [forming]
        assert store.run_async(_forming(store, ex, tf)).result(20) == forming
        assert s.status().rest_calls == calls and s.status().bars["live"] == 0
        # the bar closes on the simulator's clock; its final comes by WebSocket
        got.clear()
        for _ in range(int((grid.close_of(forming) - sim.now_ms() + 2_000) / 250)):
            clock.advance(0.25)
            ev = s.pipe.get(0.02)
            if ev is not None and ev.kind == "bar":
                got.append(ev)
        pump(lambda: bool(got))
        assert as_rows(got[:1]) == truth(sim, ex, tf, forming, 1)
        assert got[0].source is BarSource.LIVE
        assert s.status().rest_calls == calls  # closed by the WebSocket, not by a REST read
    finally:
        store.stop()


async def _forming(store: CCXTStore, ex: str, tf: str) -> int:
    """The open time of the newest row REST returns (the forming bar)."""
    exchange = await store.async_exchange()
    rows = await exchange.fetch_ohlcv(symbol(ex), tf, limit=2)
    return int(rows[-1][0])


# --------------------------------------------------------------------------- backtrader and cache
@pytest.mark.parametrize("ex, timeframe, compression, tf", [
    ("binance", bt.TimeFrame.Weeks, 1, "1w"), ("binance", bt.TimeFrame.Months, 1, "1M"),
    ("okx", bt.TimeFrame.Days, 1, "1d"), ("bybit", bt.TimeFrame.Weeks, 1, "1w"),
])
def test_ccxtfeed_stamps_long_bars_at_their_close(sim_factory: Any, ex: str, timeframe: int,
                                                  compression: int, tf: str) -> None:
    sim = sim_factory(exchanges=(ex,))
    store = CCXTStore(ex, sim_url=sim.url(ex))
    try:
        res = run_feeds(store, [symbol(ex)], timeframe=timeframe, compression=compression,
                        backfill_bars=6, historical=True, timeout=60)
    finally:
        store.stop()
    assert not res.timed_out
    seen = res.bars[symbol(ex)]
    grid = bar_grid(ex, tf)
    assert len(seen) == 6
    assert_matches_truth(sim, ex, symbol(ex), tf, seen, tf_ms=grid)
    assert [s.stamp for s in seen] == [grid.close_of(s.ts) - 1 for s in seen]
    assert grid.close_of(seen[-1].ts) == grid.open_of(sim.now_ms())  # up to the forming bar


@pytest.mark.parametrize("ex, tf", [("binance", "1w"), ("binance", "1M"), ("okx", "1M"),
                                    ("kucoin", "1w")])
def test_backfill_of_weeks_and_months_equals_truth(sim_factory: Any, tmp_path: Any, ex: str,
                                                   tf: str) -> None:
    from btccxt_cli.cache.sqlite import OhlcvCache

    sim = sim_factory(exchanges=(ex,))
    grid = bar_grid(ex, tf)
    until = grid.open_of(sim.now_ms())
    since = grid.shift(until, -30)
    client = make_exchange(ex, sim_url=sim.url(ex))
    with OhlcvCache(tmp_path / "c.sqlite") as cache:
        bf = Backfiller(client, cache, symbol=symbol(ex), timeframe=tf, since_ms=since,
                        until_ms=until, limit=12)
        res = bf.run()
        assert res.cached_bars == 30 and res.gaps is not None and res.gaps.complete
        assert res.requests == 3 and res.expected_bars == 30
        rows = [tuple(r) for r in cache.read(bf.source, symbol(ex), tf, since, until)]
        assert rows == [tuple(r) for r in sim.truth(ex, symbol(ex), tf, since, until)]
        again = Backfiller(client, cache, symbol=symbol(ex), timeframe=tf, since_ms=since,
                           until_ms=until, limit=12).run()
        assert again.expected_bars <= 1  # only the newest cached bar is read again


# --------------------------------------------------------------------------- the simulator's rules
def ms(y: int, mo: int, d: int, h: int = 0) -> int:
    return int(datetime(y, mo, d, h, tzinfo=timezone.utc).timestamp() * 1000)


AT = ms(2024, 2, 29, 13) + 7 * 60_000  # Thursday 2024-02-29 13:07 UTC, a leap February


def _newest(ex: str, body: Any) -> int:
    """The open time (ms) of the newest row of a venue's raw candle answer."""
    if ex == "binance":
        return int(body[-1][0])
    if ex in ("okx", "kucoin"):  # newest first; kucoin in seconds
        return int(body["data"][0][0]) * (1000 if ex == "kucoin" else 1)
    if ex == "bybit":
        return int(body["result"]["list"][0][0])
    if ex == "bitget":
        return int(body["data"][-1][0])
    rows = [v for k, v in body["result"].items() if k != "last"][0]  # kraken, seconds
    return int(rows[-1][0]) * 1000


# (venue, request path, where the bar forming at AT opens)
RAW = [
    ("binance", "/api/v3/klines?symbol=BTCUSDT&interval=1w&limit=2", ms(2024, 2, 26)),
    ("binance", "/api/v3/klines?symbol=BTCUSDT&interval=1M&limit=2", ms(2024, 2, 1)),
    ("binance", "/api/v3/klines?symbol=BTCUSDT&interval=3d&limit=2", ms(2024, 2, 29)),
    ("okx", "/api/v5/market/candles?instId=BTC-USDT&bar=6H&limit=2", ms(2024, 2, 29, 10)),
    ("okx", "/api/v5/market/candles?instId=BTC-USDT&bar=6Hutc&limit=2", ms(2024, 2, 29, 12)),
    ("okx", "/api/v5/market/candles?instId=BTC-USDT&bar=12H&limit=2", ms(2024, 2, 29, 4)),
    ("okx", "/api/v5/market/candles?instId=BTC-USDT&bar=1D&limit=2", ms(2024, 2, 28, 16)),
    ("okx", "/api/v5/market/candles?instId=BTC-USDT&bar=1Dutc&limit=2", ms(2024, 2, 29)),
    ("okx", "/api/v5/market/candles?instId=BTC-USDT&bar=1W&limit=2", ms(2024, 2, 25, 16)),
    ("okx", "/api/v5/market/candles?instId=BTC-USDT&bar=1Wutc&limit=2", ms(2024, 2, 26)),
    ("okx", "/api/v5/market/candles?instId=BTC-USDT&bar=1M&limit=2", ms(2024, 1, 31, 16)),
    ("okx", "/api/v5/market/candles?instId=BTC-USDT&bar=1Mutc&limit=2", ms(2024, 2, 1)),
    ("okx", "/api/v5/market/candles?instId=BTC-USDT&bar=3M&limit=2", ms(2023, 12, 31, 16)),
    ("okx", "/api/v5/market/candles?instId=BTC-USDT&bar=3Mutc&limit=2", ms(2024, 1, 1)),
    ("bybit", "/v5/market/kline?category=spot&symbol=BTCUSDT&interval=W&limit=2", ms(2024, 2, 26)),
    ("bybit", "/v5/market/kline?category=spot&symbol=BTCUSDT&interval=M&limit=2", ms(2024, 2, 1)),
    ("kucoin", "/api/v1/market/candles?symbol=BTC-USDT&type=1week", ms(2024, 2, 29)),
    ("kucoin", "/api/v1/market/candles?symbol=BTC-USDT&type=1month", ms(2024, 2, 1)),
    ("kraken", "/0/public/OHLC?pair=XBTUSD&interval=10080", ms(2024, 2, 29)),
    ("kraken", "/0/public/OHLC?pair=XBTUSD&interval=21600", ms(2024, 2, 17)),
    ("bitget", "/api/v2/spot/market/candles?symbol=BTCUSDT&granularity=1week&limit=2",
     ms(2024, 2, 25, 16)),
    ("bitget", "/api/v2/spot/market/candles?symbol=BTCUSDT&granularity=1Wutc&limit=2",
     ms(2024, 2, 26)),
    ("bitget", "/api/v2/mix/market/candles?symbol=BTCUSDT&productType=USDT-FUTURES&granularity=1M"
     "&limit=2", ms(2024, 1, 31, 16)),
]


@pytest.mark.parametrize("ex, path, open_", RAW, ids=[f"{r[0]}:{r[1].split('&')[1]}" for r in RAW])
def test_simulator_opens_long_bars_where_the_exchange_does(sim_factory: Any, ex: str, path: str,
                                                           open_: int) -> None:
    sim = sim_factory(exchanges=(ex,), clock=ManualClock(start_ms=AT))
    assert _newest(ex, get_json(sim.url(ex) + path)) == open_


def test_binance_kline_close_times_follow_weeks_and_months(sim_factory: Any) -> None:
    sim = sim_factory(exchanges=("binance",), clock=ManualClock(start_ms=AT))
    rows = get_json(sim.url("binance") + "/api/v3/klines?symbol=BTCUSDT&interval=1M&limit=3")
    assert [(r[0], r[6]) for r in rows] == [(ms(2023, 12, 1), ms(2024, 1, 1) - 1),
                                           (ms(2024, 1, 1), ms(2024, 2, 1) - 1),
                                           (ms(2024, 2, 1), ms(2024, 3, 1) - 1)]


async def _first_push(ex: Any, clock: ManualClock, timeframe: str) -> int:
    rows = await drive(clock, ex.watch_ohlcv("BTC/USDT", timeframe))
    return int(rows[-1][0])


@pytest.mark.parametrize("timeframe, open_", [("1w", ms(2024, 2, 26)), ("1W", ms(2024, 2, 25, 16)),
                                              ("1d", ms(2024, 2, 29)), ("1D", ms(2024, 2, 28, 16))])
def test_okx_socket_pushes_utc_bars_for_ccxt_timeframes_and_hong_kong_bars_raw(
        sim_factory: Any, timeframe: str, open_: int) -> None:
    """``1w``/``1d`` subscribe ``candle1Wutc``/``candle1Dutc`` (make_exchange); the raw okx
    channels ``candle1W``/``candle1D`` are Hong Kong bars, as on okx."""
    import asyncio

    clock = ManualClock(start_ms=AT)
    sim = sim_factory(exchanges=("okx",), clock=clock)

    async def run() -> int:
        ex = make_exchange("okx", kind="pro", sim_url=sim.url("okx"))
        try:
            return await _first_push(ex, clock, timeframe)
        finally:
            await ex.close()

    assert asyncio.run(run()) == open_
