"""The okx simulator through unmodified ccxt / ccxt.pro objects (and a raw socket)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import ccxt
import pytest

from btccxt_cli.clock import ManualClock
from btccxt_cli.exchange.factory import make_exchange

from .simtools import (
    FIXTURE_MS,
    MIN,
    fetch_pages,
    fixture,
    get_json,
    local_pattern,
    urls_in,
    watch_finals,
)

pytestmark = pytest.mark.live

EX = "okx"


# --------------------------------------------------------------------------- factory
def test_factory_moves_every_url_to_the_simulator(sim: Any) -> None:
    base = sim.url(EX)
    for kind, sandbox in (("sync", False), ("pro", False), ("pro", True)):
        ex = make_exchange(EX, kind=kind, sim_url=base, sandbox=sandbox)
        try:
            assert ex.urls["api"]["rest"] == base
            if kind == "pro":
                assert ex.urls["api"]["ws"] == base.replace("http://", "ws://") + "/ws/v5"
            found = urls_in(ex.urls)
            local = local_pattern(base)
            assert found and all(local.match(u) for u in found)
            assert ex.timeframes["1s"] == "1s"  # a simulator extra, see docs/simulator.md
        finally:
            if kind != "sync":
                asyncio.run(ex.close())


# --------------------------------------------------------------------------- REST
def test_rest_wire_fixtures_are_what_the_simulator_sends(sim_factory: Any) -> None:
    sim = sim_factory(exchanges=(EX,), clock=ManualClock(start_ms=FIXTURE_MS), seed=1)
    for name, path in [
        ("candles_BTC-USDT_1m_limit3.json",
         "/api/v5/market/candles?instId=BTC-USDT&bar=1m&limit=3"),
        ("candles_BTC-USDT-SWAP_1m_limit3.json",
         "/api/v5/market/candles?instId=BTC-USDT-SWAP&bar=1m&limit=3"),
        ("instruments_SPOT_BTC-USDT.json",
         "/api/v5/public/instruments?instType=SPOT&instId=BTC-USDT"),
        ("instruments_SWAP_BTC-USDT-SWAP.json",
         "/api/v5/public/instruments?instType=SWAP&instId=BTC-USDT-SWAP"),
    ]:
        assert get_json(sim.url(EX) + path) == fixture(EX, name), name


def test_load_markets_spot_and_swap(sim: Any) -> None:
    ex = make_exchange(EX, sim_url=sim.url(EX))
    markets = ex.load_markets()
    assert set(markets) == set(sim.symbols(EX))
    spot = ex.market("BTC/USDT")
    assert spot["spot"] and spot["active"] and spot["id"] == "BTC-USDT"
    assert spot["precision"]["price"] == 0.1
    swap = ex.market("BTC/USDT:USDT")
    assert swap["swap"] and swap["linear"] and swap["id"] == "BTC-USDT-SWAP"
    assert swap["contractSize"] == 0.01 and swap["settle"] == "USDT"
    # ccxt asks for SPOT, FUTURES, SWAP and OPTION (twice: BTC-USD and ETH-USD) instruments
    assert sim.stats(EX)["rest"] == {"/api/v5/public/instruments": 5}
    assert abs(ex.fetch_time() - sim.now_ms()) < 2_000


def test_load_markets_with_api_keys(sim: Any) -> None:
    """With keys ccxt also asks the private /asset/currencies: served empty."""
    ex = make_exchange(EX, sim_url=sim.url(EX),
                       config={"apiKey": "key", "secret": "secret", "password": "pass"})
    assert set(ex.load_markets()) == set(sim.symbols(EX))
    stats = sim.stats(EX)
    assert stats["rest"]["/api/v5/asset/currencies"] == 1 and stats["unknown_paths"] == {}


def test_recent_candles_and_history_candles(sim: Any) -> None:
    ex = make_exchange(EX, sim_url=sim.url(EX))
    now = sim.now_ms()
    cut = now - now % MIN
    recent = ex.fetch_ohlcv("ETH/USDT", "1m", limit=50)  # newest first on the wire; ccxt sorts
    assert recent[-1][0] in (cut, cut + MIN) and len(recent) == 50
    closed = [tuple(r) for r in recent if r[0] < cut]
    assert closed == sim.truth(EX, "ETH/USDT", "1m", closed[0][0], cut)
    since = cut - 2_000 * MIN  # older than 1439 bars: ccxt switches to history-candles
    old = ex.fetch_ohlcv("ETH/USDT", "1m", since=since, limit=300)
    assert [tuple(r) for r in old] == sim.truth(EX, "ETH/USDT", "1m", since, since + 300 * MIN)
    rest = sim.stats(EX)["rest"]
    assert rest["/api/v5/market/candles"] == 1 and rest["/api/v5/market/history-candles"] == 1


def test_fetch_ohlcv_since_limit_loop_is_contiguous_and_true(sim: Any) -> None:
    ex = make_exchange(EX, sim_url=sim.url(EX))
    now = sim.now_ms()
    since = now - now % MIN - 3_200 * MIN
    rows = fetch_pages(ex, "BTC/USDT", "1m", since=since, count=3_000, limit=300)
    assert all(b[0] - a[0] == MIN for a, b in zip(rows, rows[1:], strict=False))
    assert [tuple(r) for r in rows] == sim.truth(EX, "BTC/USDT", "1m", since, since + 3_000 * MIN)


def test_fetch_ohlcv_paginate_swap(sim: Any) -> None:
    """A swap: ccxt reads volCcy (base volume) for contracts, which is what truth holds."""
    ex = make_exchange(EX, sim_url=sim.url(EX))
    now = sim.now_ms()
    cut = now - now % MIN
    since = cut - 3_000 * MIN
    rows = ex.fetch_ohlcv("BTC/USDT:USDT", "1m", since=since,
                          params={"paginate": True, "paginationCalls": 20})
    closed = [tuple(r) for r in rows if r[0] < cut]
    assert len(closed) == 3_000
    assert all(b[0] - a[0] == MIN for a, b in zip(closed, closed[1:], strict=False))
    assert closed == sim.truth(EX, "BTC/USDT:USDT", "1m", since, cut)


def test_errors_are_okx_errors(sim: Any) -> None:
    ex = make_exchange(EX, sim_url=sim.url(EX))
    ex.load_markets()
    with pytest.raises(ccxt.BadSymbol):
        ex.fetch_ohlcv("NOPE/USDT")
    with pytest.raises(ccxt.BadSymbol, match="51001"):
        ex.publicGetMarketCandles({"instId": "NOPE-USDT", "bar": "1m"})
    with pytest.raises(ccxt.BadRequest, match="51000"):
        ex.fetch_ohlcv("BTC/USDT", "7m")
    with pytest.raises(ccxt.BadRequest, match="51000"):
        ex.publicGetMarketCandles({"instId": "BTC-USDT", "bar": "1m", "limit": "-1"})
    with pytest.raises(ccxt.BadRequest, match="50014"):
        ex.publicGetMarketCandles({"bar": "1m"})


# --------------------------------------------------------------------------- WebSocket
@pytest.mark.parametrize("symbol", ["BTC/USDT", "ETH/USDT:USDT"])
def test_watch_ohlcv_finals_equal_rest_and_truth(sim: Any, symbol: str) -> None:
    async def main() -> tuple[dict[int, tuple], Counter]:
        ex = make_exchange(EX, kind="pro", sim_url=sim.url(EX))
        try:
            return await watch_finals(ex, symbol, "1s", closed=2)
        finally:
            await ex.close()

    finals, updates = asyncio.run(main())
    first, last = min(finals), max(finals)
    assert list(finals.values()) == sim.truth(EX, symbol, "1s", first, last + 1_000)
    rest = make_exchange(EX, sim_url=sim.url(EX)).fetch_ohlcv(symbol, "1s", since=first,
                                                                limit=len(finals))
    assert [tuple(r) for r in rest] == list(finals.values())
    assert max(updates.values()) >= 3
    assert list(sim.stats(EX)["subscriptions"].values()) in ([], [[f"candle1s:{_inst(symbol)}"]])


def _inst(symbol: str) -> str:
    return symbol.split(":")[0].replace("/", "-") + ("-SWAP" if ":" in symbol else "")


def test_watch_ohlcv_for_symbols(sim: Any) -> None:
    wanted = {"BTC/USDT", "SOL/USDT", "BTC/USDT:USDT"}

    async def main() -> tuple[set[str], dict[str, Any]]:
        ex = make_exchange(EX, kind="pro", sim_url=sim.url(EX))
        cached: set[str] = set()
        try:
            async with asyncio.timeout(8):
                while cached != wanted:
                    got = await ex.watch_ohlcv_for_symbols([[s, "1s"] for s in sorted(wanted)])
                    for by_tf in got.values():
                        assert list(by_tf) == ["1s"]
                    cached = {s for s in wanted if ex.ohlcvs.get(s, {}).get("1s")}
                stats = sim.stats(EX)
        finally:
            await ex.close()
        return cached, stats

    cached, stats = asyncio.run(main())
    assert cached == wanted
    assert sorted(next(iter(stats["subscriptions"].values()))) == [
        "candle1s:BTC-USDT", "candle1s:BTC-USDT-SWAP", "candle1s:SOL-USDT"]


def test_raw_wire_protocol(sim: Any) -> None:
    import aiohttp

    ws_base = sim.url(EX).replace("http://", "ws://") + "/ws/v5"

    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(ws_base + "/public") as ws:
                await ws.send_json({"op": "subscribe",
                                    "args": [{"channel": "candle1m", "instId": "BTC-USDT"}]})
                msg = await ws.receive_json(timeout=5)
                # candles live on /business since 2023
                assert msg["event"] == "error" and msg["code"] == "60018"
                await ws.send_str("ping")
                assert (await ws.receive(timeout=5)).data == "pong"
            async with session.ws_connect(ws_base + "/business") as ws:
                arg = {"channel": "candle1s", "instId": "BTC-USDT-SWAP"}
                await ws.send_json({"op": "subscribe", "args": [arg]})
                ack = await ws.receive_json(timeout=5)
                assert ack["event"] == "subscribe" and ack["arg"] == arg and ack["connId"]
                push = await ws.receive_json(timeout=5)
                assert push["arg"] == arg and len(push["data"]) == 1
                row = push["data"][0]
                assert len(row) == 9 and all(isinstance(x, str) for x in row) and row[8] in "01"
                await ws.send_json({"op": "subscribe",
                                    "args": [{"channel": "candle1s", "instId": "NOPE-USDT"}]})
                while (msg := await ws.receive_json(timeout=5)).get("event") != "error":
                    pass
                assert msg["code"] == "60018"
                await ws.send_json({"op": "unsubscribe", "args": [arg]})
                while (msg := await ws.receive_json(timeout=5)).get("event") != "unsubscribe":
                    pass
                assert msg["arg"] == arg

    asyncio.run(main())
