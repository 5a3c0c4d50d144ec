"""The kucoin (spot) simulator through unmodified ccxt / ccxt.pro objects (and a raw socket).

Socket tests run the simulator on a ``ManualClock`` driven by ``drive()``: fast, and "nothing
arrives" is deterministic. KuCoin has no closed flag: a bar is closed once a later one arrives.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import ccxt
import pytest

from btccxt_cli.clock import ManualClock
from btccxt_cli.exchange.factory import make_exchange
from btccxt_cli.exchange.taps import has_tap
from btccxt_cli.sim.market import MarketModel

from .simtools import (
    FIXTURE_MS,
    MIN,
    drive,
    drive_finals,
    fetch_pages,
    fixture,
    get_json,
    local_pattern,
    manual_sim,
    quiet_watch,
    reply,
    urls_in,
)

pytestmark = pytest.mark.live

EX = "kucoin"
LOAD_MARKETS = {"/api/v2/symbols": 1, "/api/v1/market/allTickers": 1, "/api/v3/currencies": 1,
                "/api/v1/contracts/active": 1}


# --------------------------------------------------------------------------- factory
def test_factory_moves_every_url_to_the_simulator(sim_factory: Any) -> None:
    sim = sim_factory(exchanges=(EX,))
    base = sim.url(EX)
    local = local_pattern(base)
    for kind in ("sync", "pro"):
        ex = make_exchange(EX, kind=kind, sim_url=base)
        try:
            found = urls_in(ex.urls)
            assert found and all(local.match(u) for u in found), found
            assert ex.urls["api"]["public"] == base and ex.urls["api"]["futuresPublic"] == base
            assert ex.timeframes["1s"] == "1sec" and ex.timeframes["1m"] == "1min"
        finally:
            if kind != "sync":
                asyncio.run(ex.close())
    assert "1s" not in make_exchange(EX).timeframes  # only in simulator mode
    assert not has_tap(EX)  # no closed flag on kucoin's socket: the later-candle rule


# --------------------------------------------------------------------------- wire fixtures
def test_rest_wire_fixtures_are_what_the_simulator_sends(sim_factory: Any) -> None:
    sim = sim_factory(exchanges=(EX,), clock=ManualClock(start_ms=FIXTURE_MS), seed=1)
    base = sim.url(EX)
    for name, path in [
        ("candles_BTC-USDT_1min.json",
         "/api/v1/market/candles?symbol=BTC-USDT&type=1min&startAt=1699999860&endAt=1700000030"),
        ("timestamp.json", "/api/v1/timestamp"),
    ]:
        assert get_json(base + path) == fixture(EX, name), name
    symbols = get_json(base + "/api/v2/symbols")
    want = fixture(EX, "symbols_BTC-USDT.json")
    assert [s for s in symbols["data"] if s["symbol"] == "BTC-USDT"] == want["data"]
    bullet = get_json(base + "/api/v1/bullet-public", "POST")
    server = bullet["data"]["instanceServers"][0]
    assert server["endpoint"] == base.replace("http://", "ws://") + "/endpoint"
    server["endpoint"] = "ws://127.0.0.1:PORT/endpoint"
    assert bullet == fixture(EX, "bullet_public.json")


def test_ws_wire_fixtures_match_the_model() -> None:
    model = MarketModel(1)
    for name, final in (("ws_candles_1sec_update.json", False), ("ws_candles_1sec_last.json", True)):
        msg = fixture(EX, name)
        assert msg["topic"] == "/market/candles:BTC-USDT_1sec" and msg["type"] == "message"
        assert msg["subject"] == "trade.candles.update"
        t, o, c, h, lo, v, _turnover = msg["data"]["candles"]  # open, CLOSE, high, low
        open_ms, at_ms = int(t) * 1000, msg["data"]["time"] // 1_000_000
        want = (model.candle("BTC/USDT", 1_000, open_ms) if final
                else model.partial("BTC/USDT", 1_000, open_ms, at_ms))
        assert (open_ms, float(o), float(h), float(lo), float(c), float(v)) == want


# --------------------------------------------------------------------------- REST
def test_load_markets_and_time(sim_factory: Any) -> None:
    sim = sim_factory(exchanges=(EX,))
    ex = make_exchange(EX, sim_url=sim.url(EX))
    assert set(ex.load_markets()) == set(sim.symbols(EX))
    btc = ex.market("BTC/USDT")
    assert btc["spot"] and btc["active"] and btc["id"] == "BTC-USDT"
    assert btc["precision"]["price"] == 0.1 and btc["precision"]["amount"] == 0.00001
    assert btc["taker"] == 0.001 and btc["maker"] == 0.001  # from allTickers
    assert "BTC" in ex.currencies and "USDT" in ex.currencies
    stats = sim.stats(EX)
    # spot symbols, tickers for the fees, currencies, and futures contracts (served empty)
    assert stats["rest"] == LOAD_MARKETS and stats["unknown_paths"] == {}
    assert abs(ex.fetch_time() - sim.now_ms()) < 2_000


def test_load_markets_with_api_keys(sim_factory: Any) -> None:
    """With keys ccxt also asks the account mode, margin pairs and hf status: all served."""
    sim = sim_factory(exchanges=(EX,))
    ex = make_exchange(EX, sim_url=sim.url(EX),
                       config={"apiKey": "key", "secret": "secret", "password": "pass"})
    assert set(ex.load_markets()) == set(sim.symbols(EX))
    stats = sim.stats(EX)
    assert stats["unknown_paths"] == {}
    assert {"/api/ua/v1/account/mode", "/api/v3/margin/symbols", "/api/v1/isolated/symbols",
            "/api/v1/hf/accounts/opened"} <= set(stats["rest"])


def test_candle_windows(sim_factory: Any) -> None:
    """[startAt, endAt) in seconds; newest first; at most 1500; the forming bar included."""
    sim = sim_factory(exchanges=(EX,), clock=ManualClock(start_ms=FIXTURE_MS))
    url = sim.url(EX) + "/api/v1/market/candles?symbol=ETH-USDT&type=1min"
    cur = FIXTURE_MS - FIXTURE_MS % MIN

    def opens(query: str) -> list[int]:
        body = get_json(url + query)
        assert body["code"] == "200000"
        return [int(r[0]) * 1000 for r in body["data"]]

    t0 = cur - 100 * MIN
    assert opens(f"&startAt={t0 // 1000}&endAt={(t0 + 3 * MIN) // 1000}") == [
        t0 + 2 * MIN, t0 + MIN, t0]
    assert opens(f"&startAt={t0 // 1000 + 1}&endAt={(t0 + 3 * MIN) // 1000 + 1}") == [
        t0 + 3 * MIN, t0 + 2 * MIN, t0 + MIN]
    latest = opens("")
    assert len(latest) == 1_500 and latest[0] == cur and latest[-1] == cur - 1_499 * MIN
    assert opens(f"&startAt={(cur - 5_000 * MIN) // 1000}")[-1] == cur - 1_499 * MIN  # newest 1500
    assert get_json(url + f"&startAt={t0 // 1000}&endAt={t0 // 1000 - 60}")["code"] == "400100"


def test_fetch_ohlcv_since_limit_loop_and_paginate(sim_factory: Any) -> None:
    sim = sim_factory(exchanges=(EX,))
    ex = make_exchange(EX, sim_url=sim.url(EX))
    now = sim.now_ms()
    cut = now - now % MIN
    since = cut - 3_200 * MIN
    rows = fetch_pages(ex, "BTC/USDT", "1m", since=since, count=3_000, limit=1_500)
    assert [tuple(r) for r in rows] == sim.truth(EX, "BTC/USDT", "1m", since, since + 3_000 * MIN)
    assert sim.stats(EX)["rest"]["/api/v1/market/candles"] == 2
    recent = ex.fetch_ohlcv("ETH/USDT", "1m", limit=20)  # no since: the newest bars
    # ccxt asks from its now - 20 min to its now, in whole seconds: in the last second of a
    # minute that window holds 19 bar opens, else 20 (as kucoin answers it)
    assert len(recent) in (19, 20) and recent[-1][0] >= cut
    closed = [tuple(r) for r in recent if r[0] < cut]
    assert closed == sim.truth(EX, "ETH/USDT", "1m", closed[0][0], cut)
    # ccxt 4.5.90's kucoin paginate=True asks for both pages, then filters the rows by a
    # "timestamp" key (its helper is fetchSpotOHLCV, not fetchOHLCV) and returns nothing
    paged = ex.fetch_ohlcv("SOL/USDT", "1m", since=cut - 2_500 * MIN,
                           params={"paginate": True, "paginationCalls": 10})
    assert sim.stats(EX)["rest"]["/api/v1/market/candles"] == 2 + 1 + 2
    if paged:  # a ccxt that has the fix
        closed = [tuple(r) for r in paged if r[0] < cut]
        assert closed == sim.truth(EX, "SOL/USDT", "1m", cut - 2_500 * MIN, cut)


def test_errors_are_kucoin_errors(sim_factory: Any) -> None:
    sim = sim_factory(exchanges=(EX,))
    ex = make_exchange(EX, sim_url=sim.url(EX))
    ex.load_markets()
    with pytest.raises(ccxt.BadSymbol):
        ex.fetch_ohlcv("NOPE/USDT")  # ccxt knows the markets
    # kucoin answers an unknown pair with HTTP 200 and 400100, which ccxt maps to BadRequest
    with pytest.raises(ccxt.BadRequest, match="This pair is not provided at present"):
        ex.publicGetMarketCandles({"symbol": "NOPE-USDT", "type": "1min"})
    with pytest.raises(ccxt.BadRequest, match="400100"):
        ex.fetch_ohlcv("BTC/USDT", "7m")
    sim.rest_errors(EX, status=429, count=1)
    with pytest.raises(ccxt.RateLimitExceeded, match="429000"):
        ex.fetch_time()
    sim.rest_errors(EX, status=500, count=1)
    with pytest.raises(ccxt.ExchangeNotAvailable, match="500000"):
        ex.fetch_time()
    with pytest.raises(ccxt.ExchangeNotAvailable):  # not simulated: a logged, counted 404
        ex.fetch_order_book("BTC/USDT")
    assert sim.stats(EX)["unknown_paths"]


# --------------------------------------------------------------------------- WebSocket
def test_watch_ohlcv_last_updates_equal_rest_and_truth(sim_factory: Any) -> None:
    sim, clock = manual_sim(sim_factory, EX)

    async def main() -> tuple[dict[int, tuple], Counter]:
        ex = make_exchange(EX, kind="pro", sim_url=sim.url(EX))
        try:  # closed = a later candle has arrived
            return await drive_finals(ex, clock, "ETH/USDT", closed=3)
        finally:
            await ex.close()

    finals, updates = asyncio.run(main())
    first, last = min(finals), max(finals)
    truth = sim.truth(EX, "ETH/USDT", "1s", first, last + 1_000)
    assert list(finals.values()) == truth
    rest = make_exchange(EX, sim_url=sim.url(EX)).fetch_ohlcv("ETH/USDT", "1s", since=first,
                                                                limit=len(finals))
    assert [tuple(r) for r in rest] == truth
    assert max(updates.values()) >= 3
    stats = sim.stats(EX)
    assert stats["rest"]["/api/v1/bullet-public"] == 1 and stats["subscribe_requests"] == 1


@pytest.mark.parametrize("mode", ["close", "reset"])
def test_drop_fails_the_pending_watch_and_rewatch_reuses_the_token(sim_factory: Any,
                                                                   mode: str) -> None:
    sim, clock = manual_sim(sim_factory, EX)

    async def main() -> dict[str, Any]:
        ex = make_exchange(EX, kind="pro", sim_url=sim.url(EX))
        try:
            await drive(clock, ex.watch_ohlcv("BTC/USDT", "1s"))
            pending = await quiet_watch(ex, "BTC/USDT")  # no update on the wire can resolve it
            assert not pending.done()
            assert await asyncio.to_thread(sim.drop, EX, mode) == 1
            with pytest.raises(ccxt.NetworkError):
                await asyncio.wait_for(pending, timeout=5)
            assert await drive(clock, ex.watch_ohlcv("BTC/USDT", "1s"))  # reconnects by itself
            return await asyncio.to_thread(sim.stats, EX)
        finally:
            await ex.close()

    stats = asyncio.run(main())
    assert stats["ws_connections_total"] == 2 and stats["ws_connections_open"] == 1
    assert list(stats["subscriptions"].values()) == [["/market/candles:BTC-USDT_1sec"]]
    assert stats["subscribe_requests"] == 2 and stats["drops"] == 1
    # ccxt caches the negotiated endpoint: the same token serves the new socket
    assert stats["rest"]["/api/v1/bullet-public"] == 1


def test_raw_wire_protocol(sim_factory: Any) -> None:
    import aiohttp

    sim, clock = manual_sim(sim_factory, EX)
    base = sim.url(EX)

    async def main() -> None:
        bullet = await asyncio.to_thread(get_json, base + "/api/v1/bullet-public", "POST")
        server = bullet["data"]["instanceServers"][0]
        assert server["pingInterval"] == 18_000 and server["pingTimeout"] == 10_000
        endpoint, token = server["endpoint"], bullet["data"]["token"]
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(endpoint, params={"token": "forged"}) as ws:
                msg = await ws.receive_json(timeout=5)
                assert msg["type"] == "error" and msg["data"] == "token is expired"
                assert (await ws.receive(timeout=5)).type == aiohttp.WSMsgType.CLOSE
            async with session.ws_connect(endpoint, params={"token": token, "connectId": "abc"}) as ws:
                assert await ws.receive_json(timeout=5) == {**fixture(EX, "ws_welcome.json"), "id": "abc"}
                topic = "/market/candles:BTC-USDT_1sec"
                await ws.send_json({"id": "1", "type": "subscribe", "topic": topic, "response": True})
                assert await reply(ws, "1") == fixture(EX, "ws_ack.json")
                push = await drive(clock, ws.receive_json())
                assert push["topic"] == topic and push["subject"] == "trade.candles.update"
                assert push["data"]["symbol"] == "BTC-USDT" and len(push["data"]["candles"]) == 7
                await ws.send_json({"id": "2", "type": "ping"})
                pong = await reply(ws, "2")
                assert pong["type"] == "pong" and set(pong) == set(fixture(EX, "ws_pong.json"))
                await ws.send_json({"id": "3", "type": "subscribe",
                                    "topic": "/market/candles:NOPE-USDT_1min", "response": True})
                err = await reply(ws, "3")
                assert err == fixture(EX, "ws_error_404.json")
                await ws.send_json({"id": "4", "type": "subscribe", "topic": "/market/ticker:BTC-USDT",
                                    "response": True})
                assert (await reply(ws, "4"))["type"] == "ack"  # accepted, silent
                await ws.send_json({"id": "5", "type": "unsubscribe", "topic": topic, "response": True})
                assert (await reply(ws, "5"))["type"] == "ack"
                await ws.send_json({"id": "6", "type": "auth"})
                assert (await reply(ws, "6"))["code"] == 415
        stats = await asyncio.to_thread(sim.stats, EX)
        assert stats["ignored_streams"] == 1 and stats["ws_connections_total"] == 2

    asyncio.run(main())
