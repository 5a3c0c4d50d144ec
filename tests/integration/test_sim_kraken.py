"""The kraken simulator through unmodified ccxt / ccxt.pro objects (and a raw socket)."""

from __future__ import annotations

import asyncio
from typing import Any

import ccxt
import pytest

from btccxt_cli.clock import SYSTEM_CLOCK, ManualClock
from btccxt_cli.exchange.factory import make_exchange
from btccxt_cli.sim.venues.kraken import SIM_1S_INTERVAL

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

EX = "kraken"
REST_FIXTURES = [
    ("ohlc_XXBTZUSD_1_since1699999860.json",
     "/0/public/OHLC?pair=XXBTZUSD&interval=1&since=1699999860"),
    ("assetpairs_XBTUSD.json", "/0/public/AssetPairs?pair=XBTUSD"),
    ("assets_XBT_ZUSD.json", "/0/public/Assets?asset=XBT,ZUSD"),
    ("time.json", "/0/public/Time"),
]


def _rest(sim: Any) -> Any:
    """A sync client without ccxt's limiter: kraken's rateLimit is 1 s per public call."""
    return make_exchange(EX, sim_url=sim.url(EX), config={"enableRateLimit": False})


async def _recv(ws: Any) -> dict[str, Any]:
    """The next message that is not a heartbeat (those come every second, real time)."""
    while (msg := await ws.receive_json(timeout=5)).get("channel") == "heartbeat":
        pass
    return msg


async def capture_ws(url: str, clock: ManualClock) -> dict[str, Any]:
    """The raw messages of one subscription on a manual clock (shared with the fixture recorder)."""
    import aiohttp

    out: dict[str, Any] = {}
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url.replace("http://", "ws://") + "/v2") as ws:
            out["ws_status.json"] = await _recv(ws)
            await ws.send_json({"method": "ping", "req_id": 7})
            out["ws_pong.json"] = await _recv(ws)
            await ws.send_json({"method": "subscribe", "params": {
                "channel": "ohlc", "symbol": ["BTC/USD"], "interval": SIM_1S_INTERVAL}, "req_id": 1})
            out["ws_subscribe_result.json"] = await _recv(ws)
            out["ws_ohlc_1s_snapshot.json"] = await _recv(ws)
            clock.advance(0.25)  # the next forming-candle push of a 1 s stream
            out["ws_ohlc_1s_update.json"] = await _recv(ws)
            await ws.send_json({"method": "subscribe", "params": {
                "channel": "ohlc", "symbol": ["NOPE/USD"], "interval": 1}, "req_id": 2})
            out["ws_error_pair.json"] = await _recv(ws)
    return out


# --------------------------------------------------------------------------- factory
def test_factory_moves_every_url_and_maps_1s(sim_factory: Any) -> None:
    sim = sim_factory(exchanges=(EX,))
    base = sim.url(EX)
    for kind in ("sync", "pro"):
        ex = make_exchange(EX, kind=kind, sim_url=base)
        try:
            found = urls_in(ex.urls)
            local = local_pattern(base)
            assert found and all(local.match(u) for u in found)
            assert ex.urls["api"]["public"] == base
            if kind == "pro":
                assert ex.urls["api"]["ws"]["publicV2"] == base.replace("http", "ws") + "/v2"
            assert ex.timeframes["1s"] == SIM_1S_INTERVAL and ex.timeframes["1m"] == 1
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


def test_load_markets_and_kraken_names(sim_factory: Any) -> None:
    sim = sim_factory(exchanges=(EX,))
    ex = _rest(sim)
    markets = ex.load_markets()
    assert set(markets) == set(sim.symbols(EX))
    btc = ex.market("BTC/USD")
    assert btc["id"] == "XXBTZUSD" and btc["altname"] == "XBTUSD" and btc["wsId"] == "XBT/USD"
    assert btc["baseId"] == "BTC" and btc["quoteId"] == "USD" and btc["active"]
    assert btc["precision"] == {"amount": 0.00001, "price": 0.1}
    assert ex.market("DOGE/USD")["id"] == "XDGUSD" and ex.market("BTC/USDT")["id"] == "XBTUSDT"
    assert ex.currencies["BTC"]["id"] == "XXBT" and ex.currencies["USD"]["id"] == "ZUSD"
    assert sim.stats(EX)["rest"] == {"/0/public/Assets": 1, "/0/public/AssetPairs": 1}
    # kraken's clock has a resolution of one second
    assert ex.fetch_time() % 1000 == 0 and abs(ex.fetch_time() - sim.now_ms()) < 2_000


def test_ohlc_keeps_720_rows_since_is_exclusive_and_the_last_row_forms(sim_factory: Any) -> None:
    # a standing clock: the forming row is the same in every answer
    sim = sim_factory(exchanges=(EX,), clock=ManualClock(start_ms=SYSTEM_CLOCK.time_ms()))
    ex = _rest(sim)
    ex.load_markets()
    now = sim.now_ms()
    cut = now - now % MIN
    raw = ex.publicGetOHLC({"pair": "XETHZUSD", "interval": 1})["result"]
    rows = raw["XETHZUSD"]
    assert len(rows) == 720 and rows[-1][0] * 1000 == cut and raw["last"] * 1000 == cut - MIN
    assert [r[0] * 1000 for r in rows[:-1]] == list(range(cut - 719 * MIN, cut, MIN))
    older = ex.publicGetOHLC({"pair": "ETHUSD", "since": (cut - 5_000 * MIN) // 1000})
    assert older["result"]["XETHZUSD"] == rows  # nothing older than 720 bars; altname works
    few = ex.publicGetOHLC({"pair": "XETHZUSD", "since": (cut - 3 * MIN) // 1000})["result"]
    assert [r[0] * 1000 for r in few["XETHZUSD"]] == [cut - 2 * MIN, cut - MIN, cut]
    future = ex.publicGetOHLC({"pair": "XETHZUSD", "since": now // 1000 + 60})["result"]
    assert [r[0] * 1000 for r in future["XETHZUSD"]] == [cut]  # the forming one, always
    # ccxt: since minus one interval, then drops the extra row
    got = [tuple(r) for r in ex.fetch_ohlcv("ETH/USD", "1m", since=cut - 100 * MIN, limit=99)]
    assert got == sim.truth(EX, "ETH/USD", "1m", cut - 100 * MIN, cut - MIN)


def test_since_limit_loop_within_the_720_bars_is_contiguous_and_true(sim_factory: Any) -> None:
    sim = sim_factory(exchanges=(EX,))
    ex = _rest(sim)
    now = sim.now_ms()
    cut = now - now % MIN
    since = cut - 700 * MIN
    rows = fetch_pages(ex, "BTC/USD", "1m", since=since, count=690, limit=200)
    assert [tuple(r) for r in rows] == sim.truth(EX, "BTC/USD", "1m", since, since + 690 * MIN)


def test_1s_bars_through_the_sim_interval(sim_factory: Any) -> None:
    sim = sim_factory(exchanges=(EX,))
    ex = _rest(sim)
    now = sim.now_ms()
    cut = now - now % 1000
    rows = [tuple(r) for r in ex.fetch_ohlcv("SOL/USD", "1s", since=cut - 20_000, limit=20)]
    assert rows == sim.truth(EX, "SOL/USD", "1s", cut - 20_000, cut)
    hour = [tuple(r) for r in ex.fetch_ohlcv("SOL/USD", "1h", limit=3)]
    h = now - now % 3_600_000
    assert hour[-1][0] == h and hour[:-1] == sim.truth(EX, "SOL/USD", "1h", h - 7_200_000, h)


def test_errors_are_kraken_errors(sim_factory: Any) -> None:
    sim = sim_factory(exchanges=(EX,))
    ex = _rest(sim)
    ex.load_markets()
    with pytest.raises(ccxt.BadSymbol):
        ex.fetch_ohlcv("NOPE/USD")  # ccxt refuses before asking
    # "EQuery:Unknown asset pair" is not in ccxt's table (it lists "...Invalid asset pair")
    with pytest.raises(ccxt.ExchangeError, match="EQuery:Unknown asset pair"):
        ex.publicGetOHLC({"pair": "NOPEUSD"})
    with pytest.raises(ccxt.BadRequest, match="EGeneral:Invalid arguments"):
        ex.fetch_ohlcv("BTC/USD", "3m")  # kraken has no 3m bars
    with pytest.raises(ccxt.BadRequest, match="EGeneral:Invalid arguments"):
        ex.publicGetOHLC({"pair": "XXBTZUSD", "interval": 1, "since": "soon"})
    with pytest.raises(ccxt.BadSymbol):
        ex.publicGetAssets({"asset": "NOPE"})
    for status, cls in ((429, ccxt.DDoSProtection), (500, ccxt.ExchangeNotAvailable),
                        (502, ccxt.ExchangeNotAvailable), (503, ccxt.ExchangeNotAvailable)):
        sim.rest_errors(EX, status=status, count=1)
        with pytest.raises(cls):
            ex.fetch_time()


# --------------------------------------------------------------------------- WebSocket
def test_watch_ohlcv_finals_equal_rest_and_truth(sim_factory: Any) -> None:
    sim = sim_factory(exchanges=(EX,))

    async def main() -> dict[int, tuple]:
        ex = make_exchange(EX, kind="pro", sim_url=sim.url(EX))
        try:
            return await watch_live_finals(ex, "ETH/USDT", "1s", closed=2)
        finally:
            await ex.close()

    finals = asyncio.run(main())
    first, last = min(finals), max(finals)
    assert list(finals.values()) == sim.truth(EX, "ETH/USDT", "1s", first, last + 1_000)
    rest = _rest(sim).fetch_ohlcv("ETH/USDT", "1s", since=first, limit=len(finals))
    assert [tuple(r) for r in rest] == list(finals.values())
    assert list(sim.stats(EX)["subscriptions"].values()) in ([], [[f"ohlc-{SIM_1S_INTERVAL}:ETH/USDT"]])


def test_snapshot_then_drop_fails_the_watch_and_rewatch_resubscribes(sim_factory: Any) -> None:
    clock = ManualClock(start_ms=SYSTEM_CLOCK.time_ms())
    sim = sim_factory(exchanges=(EX,), clock=clock)

    async def main() -> dict[str, Any]:
        ex = make_exchange(EX, kind="pro", sim_url=sim.url(EX))
        try:
            snap = await asyncio.wait_for(ex.watch_ohlcv("BTC/USD", "1m"), 5)
            assert len(snap) == 30  # the subscription snapshot, with the clock standing still
            assert [tuple(r) for r in snap[:-1]] == sim.truth(EX, "BTC/USD", "1m", snap[0][0],
                                                               snap[-1][0])
            pending = asyncio.ensure_future(ex.watch_ohlcv("BTC/USD", "1m"))
            done, _ = await asyncio.wait({pending}, timeout=0.3)
            assert not done, "heartbeats and pongs resolve nothing"
            assert await asyncio.to_thread(sim.drop, EX, "reset") == 1
            with pytest.raises(ccxt.NetworkError):
                await asyncio.wait_for(pending, timeout=5)
            assert await asyncio.wait_for(ex.watch_ohlcv("BTC/USD", "1m"), 5)
            return await asyncio.to_thread(sim.stats, EX)
        finally:
            await ex.close()

    stats = asyncio.run(main())
    assert stats["ws_connections_total"] == 2 and stats["drops"] == 1
    assert list(stats["subscriptions"].values()) == [["ohlc-1:BTC/USD"]]


def test_raw_protocol_errors_heartbeat_and_unsubscribe(sim_factory: Any) -> None:
    import aiohttp

    sim = sim_factory(exchanges=(EX,))

    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(sim.url(EX).replace("http", "ws") + "/v2") as ws:
                assert (await _recv(ws))["channel"] == "status"
                params = {"channel": "ohlc", "symbol": ["BTC/USD", "NOPE/USD"], "interval": 5}
                await ws.send_json({"method": "subscribe", "params": params, "req_id": 3})
                ok, snap, bad = [await _recv(ws) for _ in range(3)]
                assert ok["success"] and ok["result"]["symbol"] == "BTC/USD" and ok["req_id"] == 3
                assert snap["type"] == "snapshot" and snap["data"][-1]["interval"] == 5
                assert bad["success"] is False and bad["symbol"] == "NOPE/USD"
                assert bad["error"].startswith("Currency pair not supported")
                await ws.send_json({"method": "subscribe", "params": {
                    "channel": "ohlc", "symbol": ["BTC/USD"], "interval": 3}, "req_id": 4})
                assert "interval not supported" in (await _recv(ws))["error"]
                await ws.send_json({"method": "subscribe", "req_id": 5,
                                    "params": {"channel": "ticker", "symbol": ["BTC/USD"]}})
                assert (await _recv(ws))["success"] is True
                # a heartbeat arrives within about a second once something is subscribed
                while (msg := await ws.receive_json(timeout=5)).get("channel") != "heartbeat":
                    pass
                await ws.send_json({"method": "unsubscribe", "params": {
                    "channel": "ohlc", "symbol": ["BTC/USD"], "interval": 5}, "req_id": 6})
                while (msg := await _recv(ws)).get("method") != "unsubscribe":
                    pass
                assert msg["success"] and msg["result"]["interval"] == 5
                stats = await asyncio.to_thread(sim.stats, EX)
                assert list(stats["subscriptions"].values()) == [[]]
                assert stats["ignored_streams"] == 1

    asyncio.run(main())
