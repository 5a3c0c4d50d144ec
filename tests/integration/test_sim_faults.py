"""Faults as a client sees them, through unmodified ccxt / ccxt.pro (and raw sockets).

Tests that need "nothing happens" to be deterministic run the simulator on a ``ManualClock``:
no push is sent until the test advances the clock, so a pending watch cannot be resolved by an
update already on the wire. ``drive()`` advances the clock while waiting on the watch.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from functools import partial
from typing import Any

import ccxt
import pytest

from btccxt_cli.clock import SYSTEM_CLOCK
from btccxt_cli.exchange.factory import make_exchange

from . import simtools
from .simtools import manual_sim, quiet_watch

pytestmark = pytest.mark.live

EXCHANGES = ["binance", "okx"]
LABEL = {"binance": "btcusdt@kline_1s", "okx": "candle1s:BTC-USDT"}
# simtools.drive, polling every 30 ms of real time (as this module always has; others poll 20 ms)
drive = partial(simtools.drive, poll_s=0.03)


# --------------------------------------------------------------------------- construction
def test_simulator_rejects_bad_arguments() -> None:
    from btccxt_cli.sim.app import Simulator

    with pytest.raises(ValueError, match="not simulated"):
        Simulator(exchanges=("gemini",))
    with pytest.raises(ValueError, match="spot"):
        Simulator(exchanges=("binance",), symbols={"binance": ["BTC/USD:BTC"]})  # coin-margined
    with pytest.raises(ValueError, match="loopback"):
        Simulator(host="0.0.0.0")
    with pytest.raises(ValueError, match="not simulated"):
        Simulator(exchanges=("okx",), symbols={"binance": ["BTC/USDT"]})


# --------------------------------------------------------------------------- socket faults
@pytest.mark.parametrize("mode", ["close", "reset"])
@pytest.mark.parametrize("exchange", EXCHANGES)
def test_drop_fails_the_pending_watch_and_rewatch_resubscribes(sim_factory: Any, exchange: str,
                                                               mode: str) -> None:
    sim, clock = manual_sim(sim_factory, exchange)

    async def main() -> dict[str, Any]:
        ex = make_exchange(exchange, kind="pro", sim_url=sim.url(exchange))
        try:
            await drive(clock, ex.watch_ohlcv("BTC/USDT", "1s"))
            pending = await quiet_watch(ex, "BTC/USDT")
            assert await asyncio.to_thread(sim.drop, exchange, mode) == 1
            with pytest.raises(ccxt.NetworkError):
                await asyncio.wait_for(pending, timeout=5)
            rows = await drive(clock, ex.watch_ohlcv("BTC/USDT", "1s"))  # reconnects by itself
            assert rows
            return await asyncio.to_thread(sim.stats, exchange)
        finally:
            await ex.close()

    stats = asyncio.run(main())
    assert stats["ws_connections_total"] == 2 and stats["ws_connections_open"] == 1
    assert list(stats["subscriptions"].values()) == [[LABEL[exchange]]]
    assert stats["subscribe_requests"] == 2 and stats["drops"] == 1


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_outage_fails_until_it_ends_then_recovers(sim_factory: Any, exchange: str) -> None:
    sim, clock = manual_sim(sim_factory, exchange)

    async def main() -> None:
        ex = make_exchange(exchange, kind="pro", sim_url=sim.url(exchange))
        try:
            await drive(clock, ex.watch_ohlcv("BTC/USDT", "1s"))
            pending = await quiet_watch(ex, "BTC/USDT")
            await asyncio.to_thread(sim.outage, exchange, 60)
            with pytest.raises(ccxt.NetworkError):
                await asyncio.wait_for(pending, timeout=5)  # open sockets drop at the start
            for _ in range(2):  # every new attempt is refused with HTTP 503
                with pytest.raises(ccxt.NetworkError, match="503"):
                    await asyncio.wait_for(ex.watch_ohlcv("BTC/USDT", "1s"), timeout=5)
                with pytest.raises(ccxt.ExchangeNotAvailable):
                    await ex.fetch_time()
            clock.advance(61)
            assert await drive(clock, ex.watch_ohlcv("BTC/USDT", "1s"))
            assert abs(await ex.fetch_time() - clock.time_ms()) < 5_000
        finally:
            await ex.close()

    asyncio.run(main())
    assert sim.stats(exchange)["ws_rejected"] >= 2


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_stall_delivers_nothing_but_keeps_the_socket(sim_factory: Any, exchange: str) -> None:
    # binance pings every 0.5 s here: the client keeps answering while nothing is pushed
    sim, clock = manual_sim(sim_factory, exchange, ws_ping_interval_s=0.5)

    async def main() -> None:
        ex = make_exchange(exchange, kind="pro", sim_url=sim.url(exchange))
        try:
            await drive(clock, ex.watch_ohlcv("BTC/USDT", "1s"))
            await asyncio.to_thread(sim.stall, exchange, 5)
            pending = await quiet_watch(ex, "BTC/USDT")
            for _ in range(16):  # 4 s of exchange time, ~0.5 s of real time
                clock.advance(0.25)
                done, _ = await asyncio.wait({pending}, timeout=0.03)
                assert not done, "a stalled exchange pushed something"
            stats = await asyncio.to_thread(sim.stats, exchange)
            assert stats["ws_connections_open"] == 1
            assert list(stats["subscriptions"].values()) == [[LABEL[exchange]]]
            assert await drive(clock, pending)  # the stall ends by itself; pushes resume
        finally:
            await ex.close()

    asyncio.run(main())
    assert sim.stats(exchange)["ws_connections_total"] == 1  # same socket all along


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_drop_subscription_is_silent(sim_factory: Any, exchange: str) -> None:
    sim, clock = manual_sim(sim_factory, exchange)

    async def main() -> dict[str, Any]:
        ex = make_exchange(exchange, kind="pro", sim_url=sim.url(exchange))
        try:
            await drive(clock, ex.watch_ohlcv("BTC/USDT", "1s"))
            await drive(clock, ex.watch_ohlcv("ETH/USDT", "1s"))
            assert await asyncio.to_thread(sim.drop_subscription, exchange, "BTC/USDT") == 1
            btc = await quiet_watch(ex, "BTC/USDT")
            for _ in range(3):  # ETH keeps flowing on the same socket ...
                assert await drive(clock, ex.watch_ohlcv("ETH/USDT", "1s"))
            assert not btc.done()  # ... BTC is silently gone
            btc.cancel()
            return await asyncio.to_thread(sim.stats, exchange)
        finally:
            await ex.close()

    stats = asyncio.run(main())
    eth = {"binance": "ethusdt@kline_1s", "okx": "candle1s:ETH-USDT"}[exchange]
    assert list(stats["subscriptions"].values()) == [[eth]]
    assert stats["ws_connections_total"] == 1


# --------------------------------------------------------------------------- REST faults
EXPECTED = {
    "binance": {429: ccxt.DDoSProtection, 418: ccxt.DDoSProtection, 500: ccxt.OperationFailed,
                502: ccxt.ExchangeNotAvailable, 503: ccxt.ExchangeNotAvailable},
    "okx": {429: ccxt.RateLimitExceeded, 418: ccxt.RateLimitExceeded,
            500: ccxt.ExchangeNotAvailable, 502: ccxt.ExchangeNotAvailable,
            503: ccxt.OnMaintenance},
}


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_rest_errors_raise_what_the_real_exchange_would(sim: Any, exchange: str) -> None:
    ex = make_exchange(exchange, sim_url=sim.url(exchange), config={"enableRateLimit": False})
    for status, error in EXPECTED[exchange].items():
        sim.rest_errors(exchange, status=status, count=2, retry_after=3)
        for _ in range(2):
            with pytest.raises(error) as info:
                ex.fetch_time()
            assert type(info.value) is error
            if status in (418, 429):
                assert ex.last_response_headers.get("Retry-After") == "3"
        assert ex.fetch_time() > 0  # count used up
    assert sim.stats(exchange)["rest_errors_injected"] == 10
    # (binance answers 500 with -1001, which ccxt maps to OperationFailed: not a NetworkError)


def test_rest_delay_slows_answers(sim: Any) -> None:
    ex = make_exchange("okx", sim_url=sim.url("okx"))
    sim.rest_delay("okx", 300)
    t0 = SYSTEM_CLOCK.monotonic()
    ex.fetch_time()
    assert SYSTEM_CLOCK.monotonic() - t0 >= 0.3
    sim.clear_faults("okx")
    assert sim.stats("okx")["faults"]["rest_delay_ms"] == 0


# --------------------------------------------------------------------------- push faults (wire)
async def _binance_messages(url: str, streams: list[str], until: Any, timeout: float = 8.0
                            ) -> list[tuple[int, dict]]:
    """(local receipt ms, event) of kline pushes on a raw socket until ``until(msgs)`` holds."""
    import aiohttp

    out: list[tuple[int, dict]] = []
    ws_url = url.replace("http://", "ws://") + "/ws"
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url) as ws:
        await ws.send_json({"method": "SUBSCRIBE", "params": streams, "id": 1})
        async with asyncio.timeout(timeout):
            while not until(out):
                msg = await ws.receive_json()
                if msg.get("e") == "kline":
                    out.append((SYSTEM_CLOCK.time_ms(), msg))
    return out


def test_duplicate_sends_every_update_twice(sim: Any) -> None:
    sim.duplicate("binance", True)
    msgs = asyncio.run(_binance_messages(sim.url("binance"), ["btcusdt@kline_1s"],
                                         lambda m: len(m) >= 10))
    events = [m for _, m in msgs[:10]]
    assert all(events[i] == events[i + 1] for i in range(0, 10, 2))
    assert len({json.dumps(e, sort_keys=True) for e in events}) == 5


def test_reorder_sends_a_final_after_the_next_bar(sim: Any) -> None:
    sim.reorder("binance", True)

    def late_final(msgs: list[tuple[int, dict]]) -> bool:
        seen: set[int] = set()
        for _, m in msgs:
            k = m["k"]
            if k["x"] and k["t"] + 1_000 in seen:
                return True
            seen.add(k["t"])
        return False

    msgs = asyncio.run(_binance_messages(sim.url("binance"), ["btcusdt@kline_1s"], late_final))
    assert late_final(msgs)
    # the final is still the last word about its bar, and it is the truth
    last: dict[int, dict] = {}
    for _, m in msgs:
        last[m["k"]["t"]] = m["k"]
    closed = sorted(t for t, k in last.items() if k["x"])
    truth = {c[0]: c for c in sim.truth("binance", "BTC/USDT", "1s", closed[0], closed[-1] + 1)}
    for t in closed:
        k = last[t]
        got = (t, float(k["o"]), float(k["h"]), float(k["l"]), float(k["c"]), float(k["v"]))
        assert got == truth[t]


def test_delay_pushes_holds_updates_back(sim: Any) -> None:
    sim.delay_pushes("binance", 400)
    msgs = asyncio.run(_binance_messages(sim.url("binance"), ["btcusdt@kline_1s"],
                                         lambda m: sum(1 for _, e in m if e["k"]["x"]) >= 2))
    finals = [(at, e["k"]) for at, e in msgs if e["k"]["x"]]
    for at, k in finals:
        assert at - (k["T"] + 1) >= 390  # a bar's final leaves >= 400 ms after it closed


def test_a_hundred_streams_close_back_to_back(sim_factory: Any) -> None:
    symbols = [f"C{i:03d}/USDT" for i in range(1, 101)]
    sim = sim_factory(exchanges=("binance",), symbols={"binance": symbols})
    streams = [s.replace("/", "").lower() + "@kline_1s" for s in symbols]

    def two_closes(msgs: list[tuple[int, dict]]) -> bool:
        return len({e["k"]["t"] for _, e in msgs if e["k"]["x"]}) >= 2

    msgs = asyncio.run(_binance_messages(sim.url("binance"), streams, two_closes))
    finals_by_bar: dict[int, list[int]] = {}
    for i, (_, e) in enumerate(msgs):
        if e["k"]["x"]:
            finals_by_bar.setdefault(e["k"]["t"], []).append(i)
    # a bar that closed after all 100 subscriptions were in place: 100 finals, consecutive
    full = [idx for idx in finals_by_bar.values() if len(idx) == 100]
    assert full, {t: len(v) for t, v in finals_by_bar.items()}
    idx = full[0]
    assert idx == list(range(idx[0], idx[0] + 100))
    bar = msgs[idx[0]][1]["k"]["t"]
    sent = [sim.close_sent_ns("binance", s, "1s", bar) for s in symbols]
    assert all(sent) and max(sent) - min(sent) < 100_000_000  # all within 100 ms


# --------------------------------------------------------------------------- control API
def _http(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, raw.decode()


def test_control_api(sim: Any) -> None:
    base = sim.url("binance")
    ex = make_exchange("binance", sim_url=base)
    status, body = _http("POST", base + "/_sim/faults/rest_errors",
                         {"status": 429, "count": 1, "retry_after": 2})
    assert status == 200 and body["ok"]
    with pytest.raises(ccxt.DDoSProtection):
        ex.fetch_time()
    assert ex.fetch_time() > 0
    status, stats = _http("GET", base + "/_sim/stats")
    assert status == 200 and stats["rest"] == {"/api/v3/time": 2} and stats["rest_total"] == 2
    now = sim.now_ms()
    since = now - now % 60_000 - 10 * 60_000
    status, truth = _http("GET", f"{base}/_sim/truth?symbol=BTC/USDT&timeframe=1m&since={since}"
                                 f"&until={since + 5 * 60_000}")
    assert status == 200
    assert [tuple(c) for c in truth["candles"]] == sim.truth("binance", "BTC/USDT", "1m", since,
                                                             since + 5 * 60_000)
    assert _http("POST", base + "/_sim/faults/stall", {"seconds": 30})[0] == 200
    assert _http("GET", base + "/_sim/faults")[1]["stall_s"] > 20
    assert _http("POST", base + "/_sim/faults/clear_faults")[0] == 200
    assert _http("GET", base + "/_sim/faults")[1]["stall_s"] == 0
    assert _http("POST", base + "/_sim/faults/nope", {})[0] == 400
    assert _http("POST", base + "/_sim/faults/rest_errors", {"status": 404})[0] == 400
    assert _http("POST", base + "/_sim/faults/drop", {"mode": "reset"})[1]["result"] == 0
    assert _http("POST", base + "/_sim/reset_stats")[0] == 200
    assert sim.stats("binance")["rest_total"] == 0
    status, text = _http("GET", base + "/api/v3/depth?symbol=BTCUSDT")
    assert status == 404 and "not simulated" in text
    assert sim.stats("binance")["unknown_paths"] == {"/api/v3/depth": 1}


def test_control_api_tells_when_a_bars_final_was_sent(sim: Any) -> None:
    """``/_sim/close_sent``: what ``close_sent_ns`` says, over HTTP (a client in another process
    times bars against it: bench/latency.py --sim-process)."""
    base = sim.url("binance")

    async def two_finals() -> list[int]:
        ex = make_exchange("binance", kind="pro", sim_url=base)
        try:
            opens: list[int] = []
            while len(opens) < 3:  # the bar forming when subscribed, then two whole ones
                for row in await ex.watch_ohlcv("BTC/USDT", "1s"):
                    if int(row[0]) not in opens:
                        opens.append(int(row[0]))
            return opens[:2]
        finally:
            await ex.close()

    opens = asyncio.run(asyncio.wait_for(two_finals(), 20))
    status, body = _http("GET", f"{base}/_sim/close_sent?symbol=BTC/USDT&timeframe=1s"
                                f"&opens={opens[0]},{opens[1]},0")
    assert status == 200
    want = {str(t): sim.close_sent_ns("binance", "BTC/USDT", "1s", t) for t in opens}
    assert all(want.values()) and body["sent_ns"] == {**want, "0": None}
    assert _http("GET", f"{base}/_sim/close_sent?symbol=BTC/USDT")[0] == 400


def test_a_clock_jump_over_the_control_api_moves_time_and_liquidates_what_ran_out(
        sim_factory: Any) -> None:
    """``POST /_sim/faults/clock_jump {"seconds": N}``: the exchange's time moves N s ahead,
    and what the skipped seconds did happens, here the liquidation of a 100x long whose
    price the path reached in them."""
    from btccxt_cli.sim.accounts import DEFAULT_KEY

    swap = "BTC/USDT:USDT"
    sim = sim_factory(exchanges=("okx",), balances={"USDT": 10_000.0}, check_timestamps=False)
    base = sim.url("okx")
    ex = make_exchange("okx", sim_url=base, config={"apiKey": DEFAULT_KEY.key, "secret": DEFAULT_KEY.secret,
                                                    "password": DEFAULT_KEY.passphrase})
    ex.load_markets()
    ex.set_leverage(100, swap, {"mgnMode": "isolated"})
    ex.create_order(swap, "market", "buy", 10, params={"tdMode": "isolated"})
    (pos,) = ex.fetch_positions([swap])
    liq = float(pos["liquidationPrice"])
    eng = sim.sim.server("okx").engine
    t = start = sim.now_ms() - sim.now_ms() % 1000
    while eng.price(swap, t) > liq:  # where the path first reaches it (10 s steps)
        t += 10_000
        assert t - start < 7 * 86_400_000, "the price path never reached the liquidation price"
    before = _http("GET", base + "/_sim/time")[1]
    seconds = (t + 2000 - sim.now_ms()) / 1000
    status, body = _http("POST", base + "/_sim/faults/clock_jump", {"seconds": seconds})
    assert status == 200 and body["ok"], body
    after = _http("GET", base + "/_sim/time")[1]
    assert after["now_ms"] - before["now_ms"] >= seconds * 1000 - 1
    assert body["result"] >= t
    assert ex.fetch_positions([swap]) == []
    assert ex.fetch_my_trades(swap)[-1]["info"]["clOrdId"].startswith("autoclose-")
    for bad in ({"seconds": 0}, {"seconds": -5}, {"seconds": 8 * 86_400}, {"seconds": "x"}, {}):
        assert _http("POST", base + "/_sim/faults/clock_jump", bad)[0] == 400, bad
