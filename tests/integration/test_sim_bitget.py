"""The bitget simulator through unmodified ccxt / ccxt.pro objects (and a raw socket)."""

from __future__ import annotations

import asyncio
from typing import Any

import ccxt
import pytest

from btccxt_cli.clock import SYSTEM_CLOCK, ManualClock
from btccxt_cli.exchange.factory import make_exchange

from .simtools import (
    FIXTURE_MS,
    MIN,
    fetch_pages,
    fixture,
    get_json,
    local_pattern,
    urls_in,
    watch_live_finals,
)

pytestmark = pytest.mark.live

EX = "bitget"
DAY = 86_400_000
REST_FIXTURES = [
    ("candles_BTCUSDT_1min_limit3.json",
     "/api/v2/spot/market/candles?symbol=BTCUSDT&granularity=1min&limit=3"),
    ("mix_candles_BTCUSDT_1m_limit3.json",
     "/api/v2/mix/market/candles?symbol=BTCUSDT&productType=USDT-FUTURES&granularity=1m&limit=3"),
    ("symbols_BTCUSDT.json", "/api/v2/spot/public/symbols?symbol=BTCUSDT"),
    ("contracts_USDT-FUTURES_BTCUSDT.json",
     "/api/v2/mix/market/contracts?productType=USDT-FUTURES&symbol=BTCUSDT"),
]
SPOT_ARG = {"instType": "SPOT", "channel": "candle1s", "instId": "BTCUSDT"}



async def capture_ws(url: str, clock: ManualClock) -> dict[str, Any]:
    """The raw messages of one subscription on a manual clock (shared with the fixture recorder)."""
    import aiohttp

    out: dict[str, Any] = {}
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url.replace("http://", "ws://") + "/v2/ws/public") as ws:
            await ws.send_str("ping")
            assert (await ws.receive(timeout=5)).data == "pong"
            await ws.send_json({"op": "subscribe", "args": [SPOT_ARG]})
            out["ws_subscribe_event.json"] = await ws.receive_json(timeout=5)
            out["ws_candle1s_snapshot.json"] = await ws.receive_json(timeout=5)
            clock.advance(0.25)  # the next forming-candle push of a 1 s stream
            out["ws_candle1s_update.json"] = await ws.receive_json(timeout=5)
            await ws.send_json({"op": "subscribe", "args": [
                {"instType": "SPOT", "channel": "candle1s", "instId": "NOPEUSDT"}]})
            out["ws_error_30001.json"] = await ws.receive_json(timeout=5)
    return out


# --------------------------------------------------------------------------- factory
def test_factory_moves_every_url_and_adds_1s_everywhere(sim_factory: Any) -> None:
    sim = sim_factory(exchanges=(EX,))
    base = sim.url(EX)
    for kind, sandbox in (("sync", False), ("pro", False), ("pro", True)):
        ex = make_exchange(EX, kind=kind, sim_url=base, sandbox=sandbox)
        try:
            found = urls_in(ex.urls)
            local = local_pattern(base)
            assert found and all(local.match(u) for u in found)
            assert ex.urls["api"]["spot"] == base
            if kind == "pro":
                assert ex.urls["api"]["ws"]["public"] == base.replace("http", "ws") + "/v2/ws/public"
                assert ex.options["timeframes"]["1s"] == "1s"  # WS channel candle1s
                assert ex.options["timeframes"]["1h"] == "1H"  # ccxt's own entries kept
            tables = ex.options["fetchOHLCV"]["timeframes"]
            assert tables["spot"]["1s"] == tables["swap"]["1s"] == "1s"
            assert tables["spot"]["1m"] == "1min" and tables["swap"]["1h"] == "1H"
            assert ex.timeframes["1s"] == "1s"
        finally:
            if kind != "sync":
                asyncio.run(ex.close())


# --------------------------------------------------------------------------- REST
def test_wire_fixtures_are_what_the_simulator_sends(sim_factory: Any) -> None:
    clock = ManualClock(start_ms=FIXTURE_MS)
    sim = sim_factory(exchanges=(EX,), clock=clock, seed=1)
    for name, path in REST_FIXTURES:
        assert get_json(sim.url(EX) + path) == fixture(EX, name), name
    for name, msg in asyncio.run(capture_ws(sim.url(EX), clock)).items():
        assert msg == fixture(EX, name), name


def test_load_markets_spot_and_swap(sim_factory: Any) -> None:
    sim = sim_factory(exchanges=(EX,))
    ex = make_exchange(EX, sim_url=sim.url(EX))
    markets = ex.load_markets()
    assert set(markets) == set(sim.symbols(EX))
    spot = ex.market("BTC/USDT")
    assert spot["spot"] and spot["active"] and spot["id"] == "BTCUSDT"
    assert spot["precision"] == {"amount": 0.00001, "price": 0.1} and spot["margin"]
    swap = ex.market("BTC/USDT:USDT")
    assert swap["swap"] and swap["linear"] and swap["id"] == "BTCUSDT" and swap["active"]
    assert swap["settle"] == "USDT" and swap["contractSize"] == 1
    assert swap["precision"]["price"] == 0.1
    stats = sim.stats(EX)
    # spot symbols, coins (currencies), margin pairs, and contracts of 6 product types
    assert stats["rest"] == {"/api/v2/spot/public/symbols": 1, "/api/v2/spot/public/coins": 1,
                             "/api/v2/margin/currencies": 1, "/api/v2/mix/market/contracts": 6}
    assert abs(ex.fetch_time() - sim.now_ms()) < 2_000


def test_load_markets_with_api_keys(sim_factory: Any) -> None:
    """With keys ccxt probes /api/v3/account/settings (unified account?): classic, no 404."""
    sim = sim_factory(exchanges=(EX,))
    ex = make_exchange(EX, sim_url=sim.url(EX),
                       config={"apiKey": "key", "secret": "secret", "password": "pass"})
    assert set(ex.load_markets()) == set(sim.symbols(EX))
    stats = sim.stats(EX)
    assert stats["rest"]["/api/v3/account/settings"] == 1 and stats["unknown_paths"] == {}
    assert ex.options["uta"] is False


@pytest.mark.parametrize("symbol", ["ETH/USDT", "ETH/USDT:USDT"])
def test_recent_and_history_candles_equal_truth(sim_factory: Any, symbol: str) -> None:
    sim = sim_factory(exchanges=(EX,))
    ex = make_exchange(EX, sim_url=sim.url(EX))
    now = sim.now_ms()
    cut = now - now % MIN
    recent = ex.fetch_ohlcv(symbol, "1m", limit=50)
    assert recent[-1][0] in (cut, cut + MIN) and len(recent) == 50
    closed = [tuple(r) for r in recent if r[0] < cut]
    assert closed == sim.truth(EX, symbol, "1m", closed[0][0], cut)
    since = cut - 40 * DAY  # beyond the 30 days /market/candles serves: ccxt asks history-candles
    old = ex.fetch_ohlcv(symbol, "1m", since=since, limit=200)
    assert [tuple(r) for r in old] == sim.truth(EX, symbol, "1m", since, since + 200 * MIN)
    kind = "mix" if ":" in symbol else "spot"
    rest = sim.stats(EX)["rest"]
    assert rest[f"/api/v2/{kind}/market/candles"] == 1
    assert rest[f"/api/v2/{kind}/market/history-candles"] == 1


def test_fetch_ohlcv_since_limit_loop_is_contiguous_and_true(sim_factory: Any) -> None:
    sim = sim_factory(exchanges=(EX,))
    ex = make_exchange(EX, sim_url=sim.url(EX))
    now = sim.now_ms()
    since = now - now % MIN - 2_600 * MIN
    rows = fetch_pages(ex, "BTC/USDT", "1m", since=since, count=2_500, limit=1000)
    assert all(b[0] - a[0] == MIN for a, b in zip(rows, rows[1:], strict=False))
    assert [tuple(r) for r in rows] == sim.truth(EX, "BTC/USDT", "1m", since, since + 2_500 * MIN)
    assert sim.stats(EX)["rest"]["/api/v2/spot/market/candles"] == 3


def test_paginate_swap_200_bars_per_call(sim_factory: Any) -> None:
    sim = sim_factory(exchanges=(EX,))
    ex = make_exchange(EX, sim_url=sim.url(EX))
    now = sim.now_ms()
    cut = now - now % MIN
    since = cut - 1_000 * MIN
    rows = ex.fetch_ohlcv("BTC/USDT:USDT", "1m", since=since,
                          params={"paginate": True, "paginationCalls": 8})
    closed = [tuple(r) for r in rows if r[0] < cut]
    assert closed == sim.truth(EX, "BTC/USDT:USDT", "1m", since, cut)
    # ccxt pages by the history endpoint's limit (200) even where /market/candles answers
    assert sim.stats(EX)["rest"]["/api/v2/mix/market/candles"] == 6


def test_1s_bars_and_utc_days(sim_factory: Any) -> None:
    sim = sim_factory(exchanges=(EX,))
    ex = make_exchange(EX, sim_url=sim.url(EX))
    now = sim.now_ms()
    cut = now - now % 1000
    rows = [tuple(r) for r in ex.fetch_ohlcv("SOL/USDT", "1s", since=cut - 20_000, limit=20)]
    assert rows == sim.truth(EX, "SOL/USDT", "1s", cut - 20_000, cut)
    day = now - now % DAY
    days = [tuple(r) for r in ex.fetch_ohlcv("BTC/USDT:USDT", "1d", limit=5)]  # 1Dutc
    assert days[-1][0] == day and days[:-1] == sim.truth(EX, "BTC/USDT:USDT", "1d", day - 4 * DAY, day)
    # bitget's own 1day bars open at 00:00 UTC+8
    raw = ex.publicSpotGetV2SpotMarketCandles({"symbol": "BTCUSDT", "granularity": "1day",
                                                "limit": "2"})
    assert int(raw["data"][-1][0]) % DAY == 16 * 3_600_000


def test_errors_are_bitget_errors(sim_factory: Any) -> None:
    sim = sim_factory(exchanges=(EX,))
    ex = make_exchange(EX, sim_url=sim.url(EX))
    ex.load_markets()
    with pytest.raises(ccxt.BadSymbol):
        ex.fetch_ohlcv("NOPE/USDT")  # ccxt refuses before asking
    # bitget's 40034 (unknown symbol) is not in ccxt's table: a plain ExchangeError
    with pytest.raises(ccxt.ExchangeError, match="40034"):
        ex.publicSpotGetV2SpotMarketCandles({"symbol": "NOPEUSDT", "granularity": "1min"})
    with pytest.raises(ccxt.BadRequest, match="40020"):
        ex.fetch_ohlcv("BTC/USDT", "2h")  # bitget spot has no 2h candles; ccxt passes "2h" on
    with pytest.raises(ccxt.BadRequest, match="40020"):
        ex.fetch_ohlcv("BTC/USDT:USDT", "7m")
    with pytest.raises(ccxt.BadRequest, match="40019"):
        ex.publicMixGetV2MixMarketCandles({"symbol": "BTCUSDT", "granularity": "1m"})
    with pytest.raises(ccxt.BadRequest, match="40019"):
        ex.publicSpotGetV2SpotMarketHistoryCandles({"symbol": "BTCUSDT", "granularity": "1min"})
    with pytest.raises(ccxt.BadRequest, match="40707"):
        ex.publicSpotGetV2SpotMarketCandles({"symbol": "BTCUSDT", "granularity": "1min",
                                             "startTime": "2", "endTime": "1"})
    for status, cls in ((429, ccxt.DDoSProtection), (503, ccxt.OnMaintenance),
                        (502, ccxt.ExchangeNotAvailable), (500, ccxt.ExchangeError)):
        sim.rest_errors(EX, status=status, count=1)
        with pytest.raises(cls):
            ex.fetch_time()


# --------------------------------------------------------------------------- WebSocket
def test_watch_ohlcv_finals_equal_rest_and_truth(sim_factory: Any) -> None:
    """Spot and swap on one socket, watched at once: what ccxt.pro saw last of each bar."""
    sim = sim_factory(exchanges=(EX,))
    symbols = ["BTC/USDT", "ETH/USDT:USDT"]

    async def main() -> list[dict[int, tuple]]:
        ex = make_exchange(EX, kind="pro", sim_url=sim.url(EX))
        try:
            return await asyncio.gather(*(watch_live_finals(ex, s, "1s", closed=2) for s in symbols))
        finally:
            await ex.close()

    rest = make_exchange(EX, sim_url=sim.url(EX))
    for symbol, finals in zip(symbols, asyncio.run(main()), strict=True):
        first, last = min(finals), max(finals)
        assert list(finals.values()) == sim.truth(EX, symbol, "1s", first, last + 1_000)
        got = rest.fetch_ohlcv(symbol, "1s", since=first, limit=len(finals))
        assert [tuple(r) for r in got] == list(finals.values())
    assert sim.stats(EX)["ws_connections_total"] == 1


def test_snapshot_then_drop_fails_the_watch_and_rewatch_resubscribes(sim_factory: Any) -> None:
    clock = ManualClock(start_ms=SYSTEM_CLOCK.time_ms())
    sim = sim_factory(exchanges=(EX,), clock=clock)

    async def main() -> dict[str, Any]:
        ex = make_exchange(EX, kind="pro", sim_url=sim.url(EX))
        try:
            snap = await asyncio.wait_for(ex.watch_ohlcv("BTC/USDT:USDT", "1s"), 5)
            assert len(snap) == 30  # the subscription snapshot, with the clock standing still
            truth = sim.truth(EX, "BTC/USDT:USDT", "1s", snap[0][0], snap[-1][0])
            assert [tuple(r) for r in snap[:-1]] == truth
            pending = asyncio.ensure_future(ex.watch_ohlcv("BTC/USDT:USDT", "1s"))
            done, _ = await asyncio.wait({pending}, timeout=0.3)
            assert not done, "nothing is pushed while the clock stands still"
            assert await asyncio.to_thread(sim.drop, EX, "reset") == 1
            with pytest.raises(ccxt.NetworkError):
                await asyncio.wait_for(pending, timeout=5)
            rows = await asyncio.wait_for(ex.watch_ohlcv("BTC/USDT:USDT", "1s"), 5)
            assert rows  # reconnected and subscribed again: a new snapshot
            return await asyncio.to_thread(sim.stats, EX)
        finally:
            await ex.close()

    stats = asyncio.run(main())
    assert stats["ws_connections_total"] == 2 and stats["drops"] == 1
    assert list(stats["subscriptions"].values()) == [["candle1s:USDT-FUTURES:BTCUSDT"]]


def test_raw_protocol_errors_and_unsubscribe(sim_factory: Any) -> None:
    import aiohttp

    sim = sim_factory(exchanges=(EX,))

    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(sim.url(EX).replace("http", "ws") + "/v2/ws/public") as ws:
                await ws.send_json({"op": "subscribe", "args": [
                    {"instType": "USDT-FUTURES", "channel": "candle1H", "instId": "BTCUSDT"},
                    {"instType": "SPOT", "channel": "candle7m", "instId": "BTCUSDT"},
                    {"instType": "SPOT", "channel": "ticker", "instId": "BTCUSDT"}]})
                got = [await ws.receive_json(timeout=5) for _ in range(4)]
                assert got[0]["event"] == "subscribe" and got[1]["action"] == "snapshot"
                assert got[2] == {"event": "error", "arg": {"instType": "SPOT", "channel": "candle7m",
                                  "instId": "BTCUSDT"}, "code": 30001, "msg": "instType:SPOT,channel:"
                                  "candle7m,instId:BTCUSDT doesn't exist", "op": "subscribe"}
                assert got[3] == {"event": "subscribe", "arg": {"instType": "SPOT", "channel": "ticker",
                                                                "instId": "BTCUSDT"}}
                await ws.send_str("{nope")
                assert (await ws.receive_json(timeout=5))["code"] == 30016
                await ws.send_json({"op": "login", "args": [{}]})
                assert (await ws.receive_json(timeout=5))["code"] == 30005
                arg = {"instType": "USDT-FUTURES", "channel": "candle1H", "instId": "BTCUSDT"}
                await ws.send_json({"op": "unsubscribe", "args": [arg]})
                while (msg := await ws.receive_json(timeout=5)).get("event") != "unsubscribe":
                    pass
                assert msg["arg"] == arg
                stats = await asyncio.to_thread(sim.stats, EX)
                assert list(stats["subscriptions"].values()) == [[]]
                assert stats["ignored_streams"] == 1

    asyncio.run(main())
