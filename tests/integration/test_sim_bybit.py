"""The bybit (v5) simulator through unmodified ccxt / ccxt.pro objects (and a raw socket).

Socket tests run the simulator on a ``ManualClock`` driven by ``drive()``: fast, and "nothing
arrives" is deterministic.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import ccxt
import pytest

from btccxt_cli.clock import ManualClock
from btccxt_cli.exchange.factory import make_exchange
from btccxt_cli.exchange.taps import has_tap, tapped_class
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

EX = "bybit"


# --------------------------------------------------------------------------- factory
def test_factory_moves_every_url_to_the_simulator(sim_factory: Any) -> None:
    sim = sim_factory(exchanges=(EX,))
    base = sim.url(EX)
    local = local_pattern(base)
    for kind, sandbox in (("sync", False), ("pro", False), ("pro", True)):
        ex = make_exchange(EX, kind=kind, sim_url=base, sandbox=sandbox)
        try:
            found = urls_in(ex.urls)
            assert found and all(local.match(u) for u in found), found
            assert ex.urls["api"]["public"] == base
            if kind == "pro" and not sandbox:
                ws = ex.urls["api"]["ws"]["public"]
                assert ws["spot"] == base.replace("http://", "ws://") + "/v5/public/spot"
                assert ws["linear"] == base.replace("http://", "ws://") + "/v5/public/linear"
            assert ex.timeframes["1s"] == "1s" and ex.timeframes["1m"] == "1"  # 1s: a sim extra
        finally:
            if kind != "sync":
                asyncio.run(ex.close())
    assert "1s" not in make_exchange(EX).timeframes  # only in simulator mode
    assert has_tap(EX)  # bybit's confirm flag is read


# --------------------------------------------------------------------------- wire fixtures
def test_rest_wire_fixtures_are_what_the_simulator_sends(sim_factory: Any) -> None:
    sim = sim_factory(exchanges=(EX,), clock=ManualClock(start_ms=FIXTURE_MS), seed=1)
    for name, path in [
        ("kline_spot_BTCUSDT_1_limit3.json", "/v5/market/kline?category=spot&symbol=BTCUSDT&interval=1&limit=3"),
        ("kline_linear_BTCUSDT_1_limit3.json",
         "/v5/market/kline?category=linear&symbol=BTCUSDT&interval=1&limit=3"),
        ("instruments_spot_BTCUSDT.json", "/v5/market/instruments-info?category=spot&symbol=BTCUSDT"),
        ("instruments_linear_BTCUSDT.json",
         "/v5/market/instruments-info?category=linear&symbol=BTCUSDT"),
        ("time.json", "/v5/market/time"),
    ]:
        assert get_json(sim.url(EX) + path) == fixture(EX, name), name


def test_ws_wire_fixtures_match_the_model() -> None:
    model = MarketModel(1)
    spec = model.spec("BTC/USDT")
    for name, closed in (("ws_kline_1s_partial.json", False), ("ws_kline_1s_final.json", True)):
        msg = fixture(EX, name)
        assert msg["topic"] == "kline.1s.BTCUSDT" and msg["type"] == "snapshot"
        (k,) = msg["data"]
        assert k["confirm"] is closed and k["end"] == k["start"] + 999
        want = (model.candle("BTC/USDT", 1_000, k["start"]) if closed
                else model.partial("BTC/USDT", 1_000, k["start"], k["timestamp"]))
        got = (k["start"], float(k["open"]), float(k["high"]), float(k["low"]), float(k["close"]),
               float(k["volume"]))
        assert got == want and k["open"] == spec.fmt_price(want[1])


# --------------------------------------------------------------------------- REST
def test_load_markets_spot_and_linear_and_time(sim_factory: Any) -> None:
    sim = sim_factory(exchanges=(EX,))
    ex = make_exchange(EX, sim_url=sim.url(EX))
    assert set(ex.load_markets()) == set(sim.symbols(EX))
    spot = ex.market("BTC/USDT")
    assert spot["spot"] and spot["active"] and spot["id"] == "BTCUSDT"
    assert spot["precision"]["price"] == 0.1 and spot["precision"]["amount"] == 0.00001
    swap = ex.market("BTC/USDT:USDT")
    assert swap["swap"] and swap["linear"] and swap["id"] == "BTCUSDT" and swap["contractSize"] == 1
    assert swap["settle"] == "USDT" and swap["precision"]["amount"] == 0.0001
    stats = sim.stats(EX)
    # spot, linear twice (Trading and PreLaunch), inverse twice, option for six base coins
    assert stats["rest"] == {"/v5/market/instruments-info": 11} and stats["unknown_paths"] == {}
    assert abs(ex.fetch_time() - sim.now_ms()) < 2_000


def test_load_markets_with_api_keys(sim_factory: Any) -> None:
    """With keys ccxt also asks the private coin list: served empty (signatures unchecked)."""
    sim = sim_factory(exchanges=(EX,))
    ex = make_exchange(EX, sim_url=sim.url(EX), config={"apiKey": "key", "secret": "secret"})
    assert set(ex.load_markets()) == set(sim.symbols(EX))
    stats = sim.stats(EX)
    assert stats["rest"]["/v5/asset/coin/query-info"] == 1 and stats["unknown_paths"] == {}


def test_kline_windows(sim_factory: Any) -> None:
    """start alone pages forward; end (with or without start) takes the newest before it."""
    sim = sim_factory(exchanges=(EX,), clock=ManualClock(start_ms=FIXTURE_MS))
    url = sim.url(EX) + "/v5/market/kline?category=spot&symbol=ETHUSDT&interval=1"
    cur = FIXTURE_MS - FIXTURE_MS % MIN

    def opens(query: str) -> list[int]:
        body = get_json(url + query)
        assert body["retCode"] == 0 and body["result"]["category"] == "spot"
        return [int(r[0]) for r in body["result"]["list"]]

    t0 = cur - 100 * MIN
    assert opens(f"&start={t0 + 1}&limit=3") == [t0 + 2 * MIN, t0 + MIN, t0]  # bar containing start
    assert opens(f"&end={t0}&limit=3") == [t0, t0 - MIN, t0 - 2 * MIN]
    assert opens(f"&start={t0 - 9 * MIN}&end={t0}&limit=3") == [t0, t0 - MIN, t0 - 2 * MIN]
    latest = opens("")
    assert len(latest) == 200 and latest[0] == cur  # default 200, the forming bar first
    assert len(opens("&limit=5000")) == 1_000  # clamped to 1000
    assert get_json(url + f"&start={t0}&end={t0 - MIN}")["retCode"] == 10001


def test_fetch_ohlcv_since_limit_loop_and_paginate(sim_factory: Any) -> None:
    sim = sim_factory(exchanges=(EX,))
    ex = make_exchange(EX, sim_url=sim.url(EX))
    now = sim.now_ms()
    since = now - now % MIN - 3_200 * MIN
    # mid-bar: ccxt aligns start up to the next bar
    rows = fetch_pages(ex, "BTC/USDT", "1m", since=since + 17, count=3_000, limit=1_000)
    assert [tuple(r) for r in rows] == sim.truth(EX, "BTC/USDT", "1m", since + MIN,
                                                 since + 3_001 * MIN)
    assert sim.stats(EX)["rest"]["/v5/market/kline"] == 3
    cut = now - now % MIN
    swap = ex.fetch_ohlcv("ETH/USDT:USDT", "1m", since=cut - 2_500 * MIN,
                          params={"paginate": True, "paginationCalls": 10})
    closed = [tuple(r) for r in swap if r[0] < cut]
    assert closed == sim.truth(EX, "ETH/USDT:USDT", "1m", cut - 2_500 * MIN, cut)


def test_errors_are_bybit_errors(sim_factory: Any) -> None:
    sim = sim_factory(exchanges=(EX,))
    ex = make_exchange(EX, sim_url=sim.url(EX))
    ex.load_markets()
    with pytest.raises(ccxt.BadSymbol):
        ex.fetch_ohlcv("NOPE/USDT")  # ccxt knows the markets
    with pytest.raises(ccxt.BadSymbol, match="Not supported symbols"):  # so does the server
        ex.publicGetV5MarketKline({"category": "spot", "symbol": "NOPEUSDT", "interval": "1"})
    with pytest.raises(ccxt.BadSymbol, match="Not supported symbols"):  # spot ids are not linear
        ex.publicGetV5MarketKline({"category": "linear", "symbol": "SOLUSDT", "interval": "1"})
    with pytest.raises(ccxt.BadRequest, match="10001"):
        ex.fetch_ohlcv("BTC/USDT", "7m")
    with pytest.raises(ccxt.BadRequest, match="10001"):
        ex.publicGetV5MarketInstrumentsInfo({"category": "futures"})
    sim.rest_errors(EX, status=429, count=1)
    with pytest.raises(ccxt.RateLimitExceeded, match="10006"):
        ex.fetch_time()
    sim.rest_errors(EX, status=503, count=1)
    with pytest.raises(ccxt.ExchangeNotAvailable):
        ex.fetch_time()
    with pytest.raises(ccxt.ExchangeNotAvailable):  # not simulated: a logged, counted 404
        ex.fetch_ticker("BTC/USDT")
    assert "/v5/market/tickers" in sim.stats(EX)["unknown_paths"]


# --------------------------------------------------------------------------- WebSocket
@pytest.mark.parametrize("symbol", ["BTC/USDT", "ETH/USDT:USDT"])
def test_watch_ohlcv_finals_equal_rest_and_truth_and_the_tap_sees_confirm(
        sim_factory: Any, symbol: str) -> None:
    sim, clock = manual_sim(sim_factory, EX)
    seen: list[tuple[str, str, list, list[bool]]] = []

    async def main() -> tuple[dict[int, tuple], Counter]:
        ex = make_exchange(EX, kind="pro", sim_url=sim.url(EX))
        ex.__class__ = tapped_class(EX, type(ex))
        ex.btccxt_sink = lambda *got: seen.append(got)
        try:
            return await drive_finals(ex, clock, symbol, closed=3)
        finally:
            await ex.close()

    finals, updates = asyncio.run(main())
    first, last = min(finals), max(finals)
    truth = sim.truth(EX, symbol, "1s", first, last + 1_000)
    assert list(finals.values()) == truth
    rest = make_exchange(EX, sim_url=sim.url(EX)).fetch_ohlcv(symbol, "1s", since=first,
                                                                limit=len(finals))
    assert [tuple(r) for r in rest] == truth
    assert max(updates.values()) >= 3  # the forming candle is pushed several times per bar
    flagged = {c[0].ts: c[0] for sym, iv, c, flags in seen if flags == [True]}
    assert {s for s, _iv, _c, _f in seen} == {symbol} and {iv for _s, iv, _c, _f in seen} == {"1s"}
    assert [tuple(flagged[t]) for t in sorted(flagged) if first <= t <= last] == truth
    assert any(flags == [False] for *_x, flags in seen)
    stats = sim.stats(EX)
    assert stats["subscribe_requests"] == 1 and stats["ws_connections_total"] == 1


@pytest.mark.parametrize("mode", ["close", "reset"])
def test_drop_fails_the_pending_watch_and_rewatch_resubscribes(sim_factory: Any, mode: str) -> None:
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
    assert list(stats["subscriptions"].values()) == [["kline.1s.BTCUSDT"]]
    assert stats["subscribe_requests"] == 2 and stats["drops"] == 1


def test_raw_wire_protocol(sim_factory: Any) -> None:
    import aiohttp

    sim, clock = manual_sim(sim_factory, EX)
    ws_base = sim.url(EX).replace("http://", "ws://") + "/v5/public"

    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(ws_base + "/spot") as ws:
                await ws.send_json({"op": "subscribe", "req_id": 1, "args": ["kline.1s.BTCUSDT"]})
                ack = await reply(ws, 1, "req_id")
                assert ack["success"] is True and ack["op"] == "subscribe" and ack["conn_id"]
                assert ack == {**fixture(EX, "ws_subscribe_ack.json"), "conn_id": ack["conn_id"]}
                push = await drive(clock, ws.receive_json())
                assert push["topic"] == "kline.1s.BTCUSDT" and push["type"] == "snapshot"
                (k,) = push["data"]
                assert set(k) == {"start", "end", "interval", "open", "close", "high", "low",
                                  "volume", "turnover", "confirm", "timestamp"}
                assert k["interval"] == "1s" and isinstance(k["confirm"], bool)
                await ws.send_json({"op": "ping", "req_id": 2})
                pong = await reply(ws, 2, "req_id")
                assert pong == {**fixture(EX, "ws_pong.json"), "conn_id": pong["conn_id"]}
                await ws.send_json({"op": "subscribe", "req_id": 3, "args": ["kline.1s.BTCUSDT"]})
                assert "already subscribed" in (await reply(ws, 3, "req_id"))["ret_msg"]
                await ws.send_json({"op": "subscribe", "req_id": 4, "args": ["kline.1.NOPEUSDT"]})
                err = await reply(ws, 4, "req_id")
                assert err["success"] is False and "Invalid symbol" in err["ret_msg"]
                assert set(err) == set(fixture(EX, "ws_error_invalid_symbol.json"))
                await ws.send_json({"op": "subscribe", "req_id": 5,
                                    "args": [f"publicTrade.C{i:03d}USDT" for i in range(11)]})
                assert (await reply(ws, 5, "req_id"))["ret_msg"] == "args size >10"
                await ws.send_json({"op": "subscribe", "req_id": 6, "args": ["orderbook.50.BTCUSDT"]})
                assert (await reply(ws, 6, "req_id"))["success"] is True  # accepted, silent
                await ws.send_json({"op": "unsubscribe", "req_id": 7, "args": ["kline.1s.BTCUSDT"]})
                assert (await reply(ws, 7, "req_id"))["success"] is True
            async with session.ws_connect(ws_base + "/linear") as ws:
                await ws.send_json({"op": "subscribe", "req_id": 1, "args": ["kline.1.SOLUSDT"]})
                err = await reply(ws, 1, "req_id")  # SOL is listed as spot only
                assert err["success"] is False and "handler not found" in err["ret_msg"]
        stats = await asyncio.to_thread(sim.stats, EX)
        assert stats["ignored_streams"] == 1 and stats["ws_connections_total"] == 2

    asyncio.run(main())
