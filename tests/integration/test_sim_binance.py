"""The binance simulator through unmodified ccxt / ccxt.pro objects (and a raw socket)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import ccxt
import ccxt.pro
import pytest

from btccxt_cli.clock import SYSTEM_CLOCK, ManualClock
from btccxt_cli.errors import UnsupportedError
from btccxt_cli.exchange.factory import make_exchange

from .simtools import (
    FIXTURE_MS,
    MIN,
    assert_all_local,
    fetch_pages,
    fixture,
    get_json,
    reply,
    watch_finals,
)

pytestmark = pytest.mark.live

EX = "binance"


# --------------------------------------------------------------------------- factory
def test_factory_moves_every_url_to_the_simulator(sim: Any) -> None:
    base = sim.url(EX)
    ws = base.replace("http://", "ws://")
    for kind in ("sync", "async", "pro"):
        ex = make_exchange(EX, kind=kind, sim_url=base)
        try:
            assert_all_local(ex.urls, base)
            api = ex.urls["api"]
            assert api["public"] == api["private"] == base + "/api/v3"
            assert api["v1"] == base + "/api/v1"
            assert api["fapiPublic"] == base + "/fapi/v1"
            assert api["dapiPublic"] == base + "/dapi/v1"
            if kind == "pro":
                assert api["ws"]["spot"] == api["ws"]["margin"] == ws + "/stream/ws"
                assert ex.urls["test"]["ws"]["spot"] == ws + "/stream/ws"
            assert ex.enableRateLimit is True
        finally:
            if kind != "sync":
                asyncio.run(ex.close())
    quiet = make_exchange(EX, sim_url=base, config={"enableRateLimit": False})
    assert quiet.enableRateLimit is False


def test_sandbox_mode_stays_local(sim: Any) -> None:
    base = sim.url(EX)
    ex = make_exchange(EX, sim_url=base, sandbox=True)
    assert ex.urls["api"]["public"] == base + "/api/v3"
    assert_all_local(ex.urls, base)
    ex.load_markets()
    assert "BTC/USDT" in ex.markets


def test_factory_rejects_unknown_exchanges_with_a_suggestion() -> None:
    with pytest.raises(UnsupportedError, match="binance"):
        make_exchange("binanse")
    no_pro = next(e for e in ccxt.exchanges if e not in ccxt.pro.exchanges)
    with pytest.raises(UnsupportedError, match="pip install -U ccxt"):
        make_exchange(no_pro, kind="pro")
    with pytest.raises(ValueError):
        make_exchange(EX, kind="threads")


def test_market_types_restrict_load_markets(sim: Any) -> None:
    ex = make_exchange(EX, sim_url=sim.url(EX), market_types=["spot"])
    ex.load_markets()
    assert sim.stats(EX)["rest"] == {"/api/v3/exchangeInfo": 1}


# --------------------------------------------------------------------------- REST
def test_rest_wire_fixtures_are_what_the_simulator_sends(sim_factory: Any) -> None:
    sim = sim_factory(exchanges=(EX,), clock=ManualClock(start_ms=FIXTURE_MS), seed=1)
    for name, path in [
        ("klines_BTCUSDT_1m_limit3.json", "/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=3"),
        ("exchangeInfo_BTCUSDT.json", "/api/v3/exchangeInfo?symbol=BTCUSDT"),
    ]:
        assert get_json(sim.url(EX) + path) == fixture(EX, name), name


def test_load_markets_and_time(sim: Any) -> None:
    ex = make_exchange(EX, sim_url=sim.url(EX))
    markets = ex.load_markets()
    assert set(markets) == set(sim.symbols(EX))
    btc = ex.market("BTC/USDT")
    assert btc["spot"] and btc["active"] and btc["id"] == "BTCUSDT"
    assert btc["precision"]["price"] == 0.1 and btc["precision"]["amount"] == 0.00001
    assert btc["limits"]["cost"]["min"] == 5.0
    stats = sim.stats(EX)
    # ccxt asks for spot, linear and inverse markets by default (field notes)
    assert stats["rest"] == {"/api/v3/exchangeInfo": 1, "/fapi/v1/exchangeInfo": 1,
                             "/dapi/v1/exchangeInfo": 1}
    assert stats["unknown_paths"] == {}
    assert abs(ex.fetch_time() - sim.now_ms()) < 2_000
    assert sim.stats(EX)["rest"]["/api/v3/time"] == 1


def test_load_markets_with_api_keys(sim: Any) -> None:
    """With keys ccxt also asks the private currency and margin endpoints: served empty."""
    ex = make_exchange(EX, sim_url=sim.url(EX), config={"apiKey": "key", "secret": "secret"})
    assert set(ex.load_markets()) == set(sim.symbols(EX))
    stats = sim.stats(EX)
    assert stats["rest"]["/sapi/v1/capital/config/getall"] == 1 and stats["unknown_paths"] == {}


def test_clock_offset_moves_the_exchange_clock(sim_factory: Any) -> None:
    sim = sim_factory(exchanges=(EX,), clock_offset_ms=7_000)
    ex = make_exchange(EX, sim_url=sim.url(EX))
    skew = ex.fetch_time() - SYSTEM_CLOCK.time_ms()
    assert 5_500 < skew < 8_500


def test_fetch_ohlcv_since_limit_loop_is_contiguous_and_true(sim: Any) -> None:
    ex = make_exchange(EX, sim_url=sim.url(EX))
    now = sim.now_ms()
    since = now - now % MIN - 3_200 * MIN
    rows = fetch_pages(ex, "BTC/USDT", "1m", since=since, count=3_000, limit=1_000)
    assert all(b[0] - a[0] == MIN for a, b in zip(rows, rows[1:], strict=False))
    assert [tuple(r) for r in rows] == sim.truth(EX, "BTC/USDT", "1m", since, since + 3_000 * MIN)
    assert sim.stats(EX)["rest"]["/api/v3/klines"] == 3


def test_fetch_ohlcv_paginate(sim: Any) -> None:
    ex = make_exchange(EX, sim_url=sim.url(EX))
    now = sim.now_ms()
    cut = now - now % MIN  # bars before this are closed
    since = cut - 3_100 * MIN
    rows = ex.fetch_ohlcv("ETH/USDT", "1m", since=since, params={"paginate": True})
    closed = [tuple(r) for r in rows if r[0] < cut]
    assert len(closed) == 3_100
    assert all(b[0] - a[0] == MIN for a, b in zip(closed, closed[1:], strict=False))
    assert closed == sim.truth(EX, "ETH/USDT", "1m", since, cut)


def test_klines_include_the_forming_candle(sim: Any) -> None:
    ex = make_exchange(EX, sim_url=sim.url(EX))
    before = sim.now_ms()
    rows = ex.fetch_ohlcv("SOL/USDT", "1m", limit=5)
    after = sim.now_ms()
    assert len(rows) == 5
    assert rows[-1][0] in (before - before % MIN, after - after % MIN)
    closed = [tuple(r) for r in rows[:-1]]
    assert closed == sim.truth(EX, "SOL/USDT", "1m", closed[0][0], closed[-1][0] + MIN)


def test_errors_are_binance_errors(sim: Any) -> None:
    ex = make_exchange(EX, sim_url=sim.url(EX))
    ex.load_markets()
    with pytest.raises(ccxt.BadSymbol):
        ex.fetch_ohlcv("NOPE/USDT")  # ccxt knows the markets
    with pytest.raises(ccxt.BadSymbol, match="-1121"):
        ex.publicGetKlines({"symbol": "NOPEUSDT", "interval": "1m"})  # the server says so too
    with pytest.raises(ccxt.BadRequest, match="-1120"):
        ex.fetch_ohlcv("BTC/USDT", "7m")
    with pytest.raises(ccxt.BadRequest, match="-1130"):
        ex.fetch_ohlcv("BTC/USDT", "1m", limit=0)
    with pytest.raises(ccxt.BadRequest, match="-1130"):
        ex.publicGetKlines({"symbol": "BTCUSDT", "interval": "1m", "limit": 5_000})
    with pytest.raises(ccxt.BadRequest, match="-1102"):
        ex.publicGetKlines({"interval": "1m"})
    # an endpoint the simulator does not serve: a 404 the client sees, logged and counted
    with pytest.raises(ccxt.ExchangeNotAvailable):
        ex.fetch_order_book("BTC/USDT")
    assert "/api/v3/depth" in sim.stats(EX)["unknown_paths"]


# --------------------------------------------------------------------------- WebSocket
def test_watch_ohlcv_finals_equal_rest_and_truth(sim: Any) -> None:
    async def main() -> tuple[dict[int, tuple], Counter]:
        ex = make_exchange(EX, kind="pro", sim_url=sim.url(EX))
        try:
            return await watch_finals(ex, "BTC/USDT", "1s", closed=3)
        finally:
            await ex.close()

    finals, updates = asyncio.run(main())
    first, last = min(finals), max(finals)
    assert list(finals.values()) == sim.truth(EX, "BTC/USDT", "1s", first, last + 1_000)
    rest = make_exchange(EX, sim_url=sim.url(EX)).fetch_ohlcv("BTC/USDT", "1s", since=first,
                                                                 limit=len(finals))
    assert [tuple(r) for r in rest] == list(finals.values())
    assert max(updates.values()) >= 3  # the forming candle is pushed several times per bar
    for ts in finals:
        if ts > first:  # the first bar may have closed before the socket was up
            assert sim.close_sent_ns(EX, "BTC/USDT", "1s", ts) is not None
    stats = sim.stats(EX)
    assert stats["subscribe_requests"] == 1 and stats["ws_connections_total"] == 1


def test_watch_ohlcv_for_symbols(sim: Any) -> None:
    wanted = {"BTC/USDT", "ETH/USDT", "DOGE/USDT"}

    async def main() -> tuple[set[str], set[str], dict[str, Any]]:
        ex = make_exchange(EX, kind="pro", sim_url=sim.url(EX))
        returned: set[str] = set()
        cached: set[str] = set()
        try:
            async with asyncio.timeout(8):
                while cached != wanted:
                    got = await ex.watch_ohlcv_for_symbols([[s, "1s"] for s in sorted(wanted)])
                    for symbol, by_tf in got.items():
                        assert list(by_tf) == ["1s"] and by_tf["1s"]
                        returned.add(symbol)
                    # each call returns ONE symbol's update; updates that arrive while no call is
                    # pending reach only ccxt's cache (ccxt.pro resolves a race of futures)
                    cached = {s for s in wanted if ex.ohlcvs.get(s, {}).get("1s")}
                stats = sim.stats(EX)
        finally:
            await ex.close()
        return returned, cached, stats

    returned, cached, stats = asyncio.run(main())
    assert cached == wanted and returned
    assert list(stats["subscriptions"].values()) == [
        ["btcusdt@kline_1s", "dogeusdt@kline_1s", "ethusdt@kline_1s"]]


def test_raw_wire_protocol(sim: Any) -> None:
    import aiohttp

    ws_base = sim.url(EX).replace("http://", "ws://")
    keys = set("tTsifLochlvnxqVQB")

    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(ws_base + "/stream?streams=btcusdt@kline_1s") as ws:
                msg = await ws.receive_json(timeout=5)
                assert msg["stream"] == "btcusdt@kline_1s"
                event = msg["data"]
                assert event["e"] == "kline" and event["s"] == "BTCUSDT" and set(event["k"]) == keys
                assert event["k"]["i"] == "1s" and event["k"]["T"] == event["k"]["t"] + 999
                await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": 7})
                assert (await reply(ws, 7))["result"] == ["btcusdt@kline_1s"]
                await ws.send_json({"method": "SUBSCRIBE", "params": ["BTC USDT"], "id": 8})
                assert (await reply(ws, 8))["error"]["code"] == 2
                await ws.send_json({"method": "UNSUBSCRIBE", "params": ["btcusdt@kline_1s"],
                                    "id": 9})
                assert (await reply(ws, 9)) == {"result": None, "id": 9}
            async with session.ws_connect(ws_base + "/ws/ethusdt@kline_1s") as ws:
                event = await ws.receive_json(timeout=5)
                assert event["e"] == "kline" and event["k"]["s"] == "ETHUSDT"
                await ws.send_str("{not json")
                while "error" not in (msg := await ws.receive_json(timeout=5)):
                    pass
                assert msg["error"]["code"] == 3

    asyncio.run(main())
