"""Many symbols on one exchange: batch subscriptions are split into shards within the
exchange's WebSocket limits, which the simulator enforces as the exchange does (binance
closes an over-limit socket with 1008, okx refuses an over-limit request). The limits are
lowered (20 streams) so the test stays cheap; bench/many.py measures the real ones."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from btccxt_cli.bt.store import CCXTStore
from btccxt_cli.exchange.factory import make_exchange
from tests.integration.harness import assert_matches_truth, run_feeds
from tests.integration.simtools import after_live

N = 60
LIMIT = 20
SPOT = [f"Z{i:03d}/USDT" for i in range(N)]


def _many_sim(sim_factory, exchange: str, limits: dict[str, int]):
    return sim_factory(exchanges=(exchange,), symbols={exchange: SPOT}, ws_limits={exchange: limits})


def run_and_drop(sim, exchange: str, symbols: list[str] = SPOT,
                  config: dict | None = None) -> tuple[object, list[dict]]:
    """``symbols`` (N by default) of 1s bars; the sockets are dropped once every series has 2
    live bars; the simulator's stats are taken just before the drop and once every series
    has 4. ``config``: the exchange config (default: shards of ``LIMIT``)."""
    seen: list[dict] = []
    config = {"options": {"btccxtWsShard": LIMIT}} if config is None else config
    store = CCXTStore(exchange, sim_url=sim.url(exchange), config=config)

    def before_drop() -> None:
        seen.append(sim.stats(exchange))
        sim.drop(exchange)

    drop = after_live(2, before_drop)
    later = after_live(4, lambda: seen.append(sim.stats(exchange)))

    def hook(strat) -> None:
        drop(strat)
        later(strat)

    res = run_feeds(store, symbols, live_bars=5, backfill_bars=3, use_websocket=True, on_next=hook,
                    timeout=40)
    assert not res.timed_out, "not every series reached 5 live bars"
    assert len(seen) == 2, seen
    return res, seen


def socket_loads(stats: dict) -> list[int]:
    return sorted(len(subs) for subs in stats["subscriptions"].values() if subs)


def test_binance_shards_60_symbols_over_sockets_of_20_streams_and_restores_them(sim_factory):
    sim = _many_sim(sim_factory, "binance", {"streams_per_connection": LIMIT})
    res, (before, after) = run_and_drop(sim, "binance")
    assert socket_loads(before) == [LIMIT] * (N // LIMIT), before["subscriptions"]
    assert socket_loads(after) == [LIMIT] * (N // LIMIT), after["subscriptions"]  # all restored
    assert after["ws_limit_closes"] == 0
    assert after["drops"] >= N // LIMIT
    for sym in SPOT[:: N // 6]:
        assert_matches_truth(sim, "binance", sym, "1s", res.bars[sym], tf_ms=1000)


def test_okx_sends_60_symbols_as_requests_of_20_args_and_restores_them(sim_factory):
    sim = _many_sim(sim_factory, "okx", {"args_per_request": LIMIT})
    res, (before, after) = run_and_drop(sim, "okx")
    assert sum(socket_loads(before)) == N and sum(socket_loads(after)) == N
    assert after["ws_limit_refusals"] == 0
    assert after["subscribe_requests"] >= 2 * N // LIMIT  # before and after the drop
    for sym in SPOT[:: N // 6]:
        assert_matches_truth(sim, "okx", sym, "1s", res.bars[sym], tf_ms=1000)


# ------------------------------------------------------------------ the simulator's enforcement
def test_binance_closes_a_socket_subscribing_past_its_stream_limit(sim_factory):
    """What ccxt.pro alone does with one batch of 25 symbols: one socket, closed with 1008."""
    sim = _many_sim(sim_factory, "binance", {"streams_per_connection": LIMIT})

    async def go() -> BaseException:
        ex = make_exchange("binance", kind="pro", sim_url=sim.url("binance"))
        try:
            await ex.load_markets()
            with pytest.raises(Exception) as err:
                await asyncio.wait_for(ex.watch_ohlcv_for_symbols([[s, "1s"] for s in SPOT[:25]]), 10)
            return err.value
        finally:
            await ex.close()

    exc = asyncio.run(go())
    assert "1008" in str(exc) or "Too many streams" in str(exc), repr(exc)
    assert sim.stats("binance")["ws_limit_closes"] == 1


def test_binance_closes_a_socket_sending_more_than_5_messages_a_second(sim_factory):
    sim = _many_sim(sim_factory, "binance", {})
    url = sim.url("binance").replace("http", "ws") + "/ws"

    async def go() -> tuple[int | None, int]:
        answers = 0
        async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
            for i in range(6):
                await ws.send_str(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}))
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    answers += 1
            return ws.close_code, answers

    code, answers = asyncio.run(go())
    assert (code, answers) == (1008, 5)
    assert sim.stats("binance")["ws_limit_closes"] == 1


def test_okx_refuses_a_request_past_its_args_limit(sim_factory):
    sim = _many_sim(sim_factory, "okx", {"args_per_request": LIMIT})
    url = sim.url("okx").replace("http", "ws") + "/ws/v5/business"
    args = [{"channel": "candle1s", "instId": s.replace("/", "-")} for s in SPOT[:LIMIT + 1]]

    async def go() -> dict:
        async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
            await ws.send_str(json.dumps({"op": "subscribe", "args": args}))
            return json.loads((await ws.receive(timeout=5)).data)

    answer = asyncio.run(go())
    assert answer["event"] == "error" and answer["code"] == "60012", answer
    assert sim.stats("okx")["ws_limit_refusals"] == 1
    assert sum(len(v) for v in sim.stats("okx")["subscriptions"].values()) == 0


@pytest.mark.long
def test_a_silent_shard_is_renewed_on_its_own_socket(sim_factory):
    """The simulator forgets one symbol's stream: the watchdog renews that shard (unsubscribe
    and subscribe again) on the shard's own socket; the other shards stay as they are."""
    sim = _many_sim(sim_factory, "binance", {"streams_per_connection": LIMIT})
    store = CCXTStore("binance", sim_url=sim.url("binance"),
                      config={"options": {"btccxtWsShard": LIMIT}})
    seen: list[dict] = []
    forget = after_live(2, lambda: sim.drop_subscription("binance", SPOT[25]))
    later = after_live(12, lambda: seen.append(sim.stats("binance")))

    def hook(strat) -> None:
        forget(strat)
        later(strat)

    res = run_feeds(store, SPOT, live_bars=13, backfill_bars=2, use_websocket=True, on_next=hook,
                    timeout=40)
    assert not res.timed_out
    stats = seen[0]
    assert socket_loads(stats) == [LIMIT] * (N // LIMIT), stats["subscriptions"]
    assert stats["unsubscribe_requests"] == 1 and stats["ws_limit_closes"] == 0
    assert stats["ws_connections_total"] == N // LIMIT  # no socket was closed or added
    assert_matches_truth(sim, "binance", SPOT[25], "1s", res.bars[SPOT[25]], tf_ms=1000)


def test_a_socket_closing_under_a_stopping_store_reports_nothing_down(sim_factory, caplog):
    """A store stops by marking its series over, then closing the sockets, then cancelling
    the watches: a shard that saw its socket close in between warned "socket error" and every
    one of its series "WebSocket down" (hundreds of warnings when a 1,000-symbol run
    stopped), and waited to redial. Here the socket closes (the exchange drops it) while the
    series are over: the shards' watches end, and nothing is reported down."""
    import logging
    import threading
    import time

    from btccxt_cli.sources.base import SeriesParams

    syms = SPOT[:30]
    sim = sim_factory(exchanges=("bybit",), symbols={"bybit": syms})
    store = CCXTStore("bybit", sim_url=sim.url("bybit"))
    tick, deadline = threading.Event(), time.monotonic() + 30
    try:
        handles = [store.attach(SeriesParams(symbol=sym, timeframe="1m", mode="websocket",
                                             backfill_start=False, exchange_id="bybit")) for sym in syms]
        while sum(len(v) for v in sim.stats("bybit")["subscriptions"].values()) < len(syms):
            assert time.monotonic() < deadline, sim.stats("bybit")["subscriptions"]
            tick.wait(0.05)  # polling the simulator's count, with a deadline
        groups = list(store._hub._groups)
        assert len(groups) == 3  # shards of 10 args (bybit spot)
        with caplog.at_level(logging.WARNING):
            for h in handles:
                h.series.phase = h.series.OVER  # as CCXTStore.stop does first
            sim.drop("bybit")
            while not all(g.task.done() for g in groups):
                assert time.monotonic() < deadline, "a shard's watch went on after its socket closed"
                tick.wait(0.05)
    finally:
        store.stop()
    noisy = [r.getMessage() for r in caplog.records
             if "WebSocket down" in r.getMessage() or "socket error" in r.getMessage()]
    assert noisy == []
