"""The closed-flag taps against real ccxt.pro clients on the simulator: a tap that does not
fire (ccxt changed inside) falls back to reading watch_ohlcv results with one warning, and a
silent subscription is forgotten by its exact ccxt.pro keys only."""

from __future__ import annotations

import asyncio
import logging

import pytest

from btccxt_cli.bt.store import CCXTStore
from btccxt_cli.clock import SYSTEM_CLOCK
from btccxt_cli.exchange import taps
from btccxt_cli.exchange.factory import make_exchange
from btccxt_cli.sources.base import RestGate, Series, SeriesParams
from btccxt_cli.sources.ws import WsHub

from .harness import assert_matches_truth, run_feeds
from .simtools import FAST

SYMBOLS = ["BTC/USDT", "ETH/USDT"]
UNTAPPED = "closed-candle tap did not fire"


def _run_without_tap(sim, caplog) -> dict:
    caplog.set_level(logging.WARNING, logger="btccxt_cli")
    store = CCXTStore("binance", sim_url=sim.url("binance"))
    res = run_feeds(store, SYMBOLS, live_bars=4, backfill_bars=2, use_websocket=True, **FAST)
    assert not res.timed_out, "no live bars without the tap"
    for sym in SYMBOLS:
        assert_matches_truth(sim, "binance", sym, "1s", res.bars[sym], tf_ms=1000)
        assert sum(s.source == "live" for s in res.bars[sym]) >= 4
    return {"untapped": [r for r in caplog.records if UNTAPPED in r.getMessage()],
            "tap": [r for r in caplog.records if r.name == taps.__name__]}


def test_a_tap_that_never_fires_falls_back_to_watch_results_with_one_warning(sim, caplog, monkeypatch):
    """As if ccxt changed its kline message layout: our tap recognises nothing."""
    monkeypatch.setitem(taps._TAPS, "binance", lambda ex, client, message: None)
    logs = _run_without_tap(sim, caplog)
    assert len(logs["untapped"]) == 1, [r.getMessage() for r in logs["untapped"]]
    assert "reading watch_ohlcv results instead" in logs["untapped"][0].getMessage()


def test_a_tap_that_raises_is_switched_off_once_not_a_traceback_per_message(sim, caplog, monkeypatch):
    def broken(ex, client, message):
        raise KeyError("k")  # e.g. ccxt renamed a field the tap reads

    monkeypatch.setitem(taps._TAPS, "binance", broken)
    logs = _run_without_tap(sim, caplog)
    assert len(logs["tap"]) == 1, [r.getMessage() for r in logs["tap"]]
    assert len(logs["untapped"]) == 1


async def _subscribe(ex, streams: list[tuple[str, str]]) -> None:
    for sym, tf in streams:
        await asyncio.wait_for(ex.watch_ohlcv(sym, tf), 10)


def _keys(ex) -> set[str]:
    return {k for c in ex.clients.values() for k in c.subscriptions if isinstance(k, str)}


@pytest.mark.parametrize("exchange,gone_key", [("okx", "candle1m:BTC-USDT"), ("bybit", "ohlcv::BTC/USDT::1m"),
                                               ("binance", "ohlcv::BTC/USDT::1m")])
def test_forgetting_one_stream_keeps_other_timeframes_and_the_swap(sim_factory, exchange, gone_key):
    sim = sim_factory(exchanges=(exchange,))
    streams = [("BTC/USDT", "1m"), ("BTC/USDT", "5m")]
    if exchange != "binance":  # the simulator's binance serves spot only
        streams.append(("BTC/USDT:USDT", "1m"))

    async def main() -> tuple[set[str], set[str]]:
        ex = make_exchange(exchange, kind="pro", config={}, sim_url=sim.url(exchange), sandbox=False)
        try:
            await ex.load_markets()
            await _subscribe(ex, streams)
            before = _keys(ex)
            hub = WsHub(ex, tapped=False, gate=RestGate(), clock=SYSTEM_CLOCK)
            series = Series(SeriesParams("BTC/USDT", "1m", mode="websocket"), exchange_now_ms=sim.now_ms)
            hub._forget_subscription(series)
            return before, _keys(ex)
        finally:
            await ex.close()

    before, after = asyncio.run(main())
    assert len(before) == len(streams), before
    assert before - after == {gone_key}, (before, after)


def test_forgetting_one_stream_of_an_okx_batch_subscription(sim_factory):
    sim = sim_factory(exchanges=("okx",))

    async def main() -> tuple[set[str], set[str]]:
        ex = make_exchange("okx", kind="pro", config={}, sim_url=sim.url("okx"), sandbox=False)
        try:
            await ex.load_markets()
            await asyncio.wait_for(ex.watch_ohlcv_for_symbols([["BTC/USDT", "1m"], ["BTC/USDT", "5m"]]), 10)
            before = _keys(ex)
            hub = WsHub(ex, tapped=False, gate=RestGate(), clock=SYSTEM_CLOCK)
            hub._forget_subscription(Series(SeriesParams("BTC/USDT", "1m", mode="websocket"),
                                            exchange_now_ms=sim.now_ms))
            return before, _keys(ex)
        finally:
            await ex.close()

    before, after = asyncio.run(main())
    assert before - after == {"multi:candle1m:BTC/USDT"}, (before, after)
    assert "multi:candle5m:BTC/USDT" in after


def test_ccxt_handles_a_tapped_binance_candle_only_while_a_watch_waits_for_it(sim):
    """With the tap's sink on, ccxt.pro's own handling of a kline message (its candle cache,
    the answer to a watch) runs only while a watch waits for that stream: a batch
    subscription watches once, then the sink takes every message. The sink sees every
    message either way, with the symbol ccxt.pro would give it (spot by the socket's URL)."""
    import json

    async def main() -> tuple[list, dict, list, list]:
        ex = make_exchange("binance", kind="pro", config={}, sim_url=sim.url("binance"))
        ex.__class__ = taps.tapped_class("binance", type(ex))
        seen: list = []
        ex.btccxt_sink = lambda *got: seen.append(got)
        try:
            await ex.load_markets()
            client = ex.client(ex.urls["api"]["ws"]["spot"] + "/stream")

            def kline(t: int, closed: bool) -> str:
                k = {"t": t, "T": t + 59_999, "s": "BTCUSDT", "i": "1m", "o": "1.5", "c": "2.5",
                     "h": "3.5", "l": "0.5", "v": "7", "x": closed}
                return json.dumps({"stream": "btcusdt@kline_1m",
                                   "data": {"e": "kline", "E": t + 1, "s": "BTCUSDT", "k": k}})

            client.handle_text_or_binary_message(kline(60_000, False))
            client.handle_text_or_binary_message(kline(60_000, True))
            untouched = dict(ex.ohlcvs)
            waiting = client.future("ohlcv::BTC/USDT::1m")
            client.handle_text_or_binary_message(kline(120_000, False))
            answer = await asyncio.wait_for(waiting, 5)
            client.handle_text_or_binary_message(kline(120_000, True))  # nobody waits again
            cached = [list(r) for r in ex.ohlcvs["BTC/USDT"]["1m"]]
            return seen, untouched, answer, cached
        finally:
            await ex.close()

    seen, untouched, answer, cached = asyncio.run(main())
    assert [(s[0], s[1], [c.ts for c in s[2]], s[3]) for s in seen] == [
        ("BTC/USDT", "1m", [60_000], [False]), ("BTC/USDT", "1m", [60_000], [True]),
        ("BTC/USDT", "1m", [120_000], [False]), ("BTC/USDT", "1m", [120_000], [True])]
    assert untouched == {}  # no watch waited: ccxt's cache never saw the first two
    assert answer[0] == "BTC/USDT" and answer[1] == "1m"
    assert cached == [[120_000, 1.5, 3.5, 0.5, 2.5, 7.0]]  # the waited-for message only


def test_binance_candle_messages_skip_ccxts_routing_table_and_land_where_ccxt_would_put_them(sim):
    """The tapped binance class hands a kline event straight to ``handle_ohlcv``; every other
    message goes through ccxt.pro's own ``handle_message``. Fed the same messages, it ends
    with the same sink calls, the same candle and trade caches and the same answered watch
    as a tapped class that lets ccxt route everything."""
    import json

    base = taps.tapped_class("binance", type(make_exchange("binance", kind="pro", config={})))
    unrouted = type("Unrouted", (base,), {"handle_message": base.__mro__[1].handle_message})

    def kline(t: int, closed: bool, **extra: object) -> dict:
        k = {"t": t, "T": t + 59_999, "s": "BTCUSDT", "i": "1m", "o": "1.5", "c": "2.5",
             "h": "3.5", "l": "0.5", "v": "7", "x": closed}
        return {"e": "kline", "E": t + 1, "s": "BTCUSDT", "k": k, **extra}

    trade = {"e": "trade", "E": 61_000, "s": "BTCUSDT", "t": 12, "p": "2.0", "q": "0.1", "T": 61_000, "m": True}
    messages = [
        {"stream": "btcusdt@kline_1m", "data": kline(60_000, False)},
        kline(60_000, True),  # bare (a raw stream)
        {"stream": "btcusdt@kline_1m", "data": kline(120_000, False)},  # a watch waits for this one
        {"stream": "btcusdt@trade", "data": trade},  # not a candle: ccxt's route
        {"result": None, "id": "7"},  # a request's answer: ccxt's route
        kline(120_000, True, id="8"),  # not a plain event: ccxt's route
    ]
    assert [taps._binance_candle(m) is not None for m in messages] == [True, True, True, False, False, False]

    async def feed(cls: type) -> tuple[list, list, list, list]:
        ex = make_exchange("binance", kind="pro", config={}, sim_url=sim.url("binance"))
        ex.__class__ = cls
        seen: list = []
        ex.btccxt_sink = lambda *got: seen.append((got[0], got[1], [c.ts for c in got[2]], got[3]))
        try:
            await ex.load_markets()
            client = ex.client(ex.urls["api"]["ws"]["spot"] + "/stream")
            answers = []
            for i, m in enumerate(messages):
                waiting = client.future("ohlcv::BTC/USDT::1m") if i == 2 else None
                client.handle_text_or_binary_message(json.dumps(m))
                if waiting is not None:
                    answers.append(await asyncio.wait_for(waiting, 5))
            candles = [list(r) for r in ex.ohlcvs["BTC/USDT"]["1m"]]
            trades = [(t["id"], t["price"]) for t in (ex.trades or {}).get("BTC/USDT", [])]
            return seen, answers, candles, trades
        finally:
            await ex.close()

    routed, plain = asyncio.run(feed(base)), asyncio.run(feed(unrouted))
    assert routed == plain
    seen, answers, candles, _trades = routed
    assert [s[2] for s in seen] == [[60_000], [60_000], [120_000], [120_000]]
    assert answers and candles == [[120_000, 1.5, 3.5, 0.5, 2.5, 7.0]]
