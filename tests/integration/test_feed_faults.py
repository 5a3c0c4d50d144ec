"""Faults injected into the simulator mid-run: no bar lost, doubled, reordered or wrong.

Each test triggers its fault from the strategy once every symbol has seen some live bars,
then runs on until every symbol has seen enough live bars after recovery.
"""

from __future__ import annotations

import pytest

from btccxt_cli.bt.store import CCXTStore

from .harness import assert_matches_truth, check_live_after_the_gap, run_feeds
from .simtools import FAST, after_live, states

SYMBOLS = ["BTC/USDT", "ETH/USDT"]


def check_bars(sim, res, exchange="binance"):
    assert not res.timed_out, "the run did not reach its bar count"
    for sym, seen in res.bars.items():
        assert_matches_truth(sim, exchange, sym, "1s", seen, tf_ms=1000)


def check_recovered(res, sym):
    st = states(res, sym)
    assert "DISCONNECTED" in st, st
    i = st.index("DISCONNECTED")
    assert "LIVE" in st[i:], f"{sym}: no LIVE after DISCONNECTED: {st}"
    check_live_after_the_gap(res, sym)


@pytest.mark.parametrize("mode", ["close", "reset"])
def test_socket_drop_loses_nothing_and_resubscribes_every_symbol(sim, mode):
    store = CCXTStore("binance", sim_url=sim.url("binance"))
    drop = after_live(2, lambda: sim.drop("binance", mode=mode))
    seen_subs: list[list[str]] = []
    reconnects: list[int] = []

    def on_next(strat):
        drop(strat)
        # while running: what the simulator has subscribed, and our reconnect counts
        seen_subs.append([s for streams in sim.stats("binance")["subscriptions"].values()
                          for s in streams])
        reconnects.append(min(d.status().reconnects for d in strat.datas))

    res = run_feeds(store, SYMBOLS, live_bars=7, backfill_bars=3, use_websocket=True,
                    on_next=on_next, **FAST)
    check_bars(sim, res)
    for sym in SYMBOLS:
        check_recovered(res, sym)
    for sym in SYMBOLS:  # subscribed again after the drop
        assert any(sym.replace("/", "").lower() in s for s in seen_subs[-1]), (sym, seen_subs[-1])
    assert reconnects[-1] >= 1


def test_outage_longer_than_the_backoff_cap(sim):
    store = CCXTStore("binance", sim_url=sim.url("binance"))
    res = run_feeds(store, SYMBOLS, live_bars=8, backfill_bars=3, use_websocket=True, timeout=60,
                    on_next=after_live(2, lambda: sim.outage("binance", 3.0)), **FAST)
    check_bars(sim, res)
    for sym in SYMBOLS:
        check_recovered(res, sym)
        assert any(s.source == "gapfill" for s in res.bars[sym]), "missed bars come from REST"


def test_stalled_socket_is_noticed_by_the_watchdog(sim):
    store = CCXTStore("binance", sim_url=sim.url("binance"))
    res = run_feeds(store, SYMBOLS, live_bars=8, backfill_bars=3, use_websocket=True, timeout=60,
                    watchdog_silence=1.5, on_next=after_live(2, lambda: sim.stall("binance", 4.0)),
                    **FAST)
    check_bars(sim, res)
    for sym in SYMBOLS:
        check_recovered(res, sym)


def test_duplicate_and_reordered_updates_are_absorbed(sim):
    sim.duplicate("binance", True)
    sim.reorder("binance", True)
    store = CCXTStore("binance", sim_url=sim.url("binance"))
    res = run_feeds(store, SYMBOLS, live_bars=6, backfill_bars=3, use_websocket=True, **FAST)
    check_bars(sim, res)
    for sym in SYMBOLS:
        assert "DISCONNECTED" not in states(res, sym)


def test_a_silently_dropped_subscription_is_renewed(sim):
    store = CCXTStore("binance", sim_url=sim.url("binance"))
    res = run_feeds(store, SYMBOLS, live_bars=8, backfill_bars=3, use_websocket=True, timeout=60,
                    watchdog_silence=1.5,
                    on_next=after_live(2, lambda: sim.drop_subscription("binance", "ETH/USDT")), **FAST)
    check_bars(sim, res)
    check_recovered(res, "ETH/USDT")
    assert "DISCONNECTED" not in states(res, "BTC/USDT"), "the healthy stream is left alone"


@pytest.mark.parametrize("mode,kw", [("rest", {}), ("threaded", {"use_threaded_data": True})])
def test_polling_modes_survive_429_and_5xx(sim, mode, kw):
    store = CCXTStore("binance", sim_url=sim.url("binance"))

    def inject():
        sim.rest_errors("binance", status=429, count=2, retry_after=1.0)

    def then_5xx(strat):
        hook(strat)
        bars = strat.p.result.bars
        if not flags["5xx"] and all(sum(s.source == "live" for s in bars[d._name]) >= 4
                                    for d in strat.datas):
            flags["5xx"] = True
            sim.rest_errors("binance", status=500, count=3)  # binance -1001: ccxt OperationFailed

    flags = {"5xx": False}
    hook = after_live(2, inject)
    res = run_feeds(store, SYMBOLS, live_bars=7, backfill_bars=3, timeout=60, on_next=then_5xx, **kw)
    check_bars(sim, res)
    assert store.gate.rate_limited >= 1


def test_rest_mode_outage_notifies_and_recovers(sim):
    store = CCXTStore("binance", sim_url=sim.url("binance"))
    res = run_feeds(store, SYMBOLS, live_bars=6, backfill_bars=3, timeout=60,
                    on_next=after_live(2, lambda: sim.outage("binance", 2.0)),
                    ws_reconnect_delay=0.2, ws_max_reconnect_delay=0.5)
    check_bars(sim, res)
    for sym in SYMBOLS:
        check_recovered(res, sym)


def test_okx_socket_drop_loses_nothing(sim):
    store = CCXTStore("okx", sim_url=sim.url("okx"))
    res = run_feeds(store, ["BTC/USDT", "BTC/USDT:USDT"], live_bars=6, backfill_bars=3,
                    use_websocket=True, on_next=after_live(2, lambda: sim.drop("okx", mode="reset")),
                    **FAST)
    check_bars(sim, res, exchange="okx")
    for sym in ("BTC/USDT", "BTC/USDT:USDT"):
        check_recovered(res, sym)


def test_a_channel_ccxt_pro_lacks_falls_back_to_rest(sim_factory):
    """bitget has no 2h WebSocket channel in ccxt.pro: the feed polls REST and says so."""
    import logging
    import threading

    import backtrader as bt

    from .harness import Recorder, RunResult

    sim = sim_factory(exchanges=("bitget",))
    store = CCXTStore("bitget", sim_url=sim.url("bitget"))
    said = threading.Event()
    messages: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "polling REST instead" in record.getMessage():
                messages.append(record.getMessage())
                said.set()
                cerebro.runstop()

    handler = Catch(level=logging.WARNING)
    log = logging.getLogger("btccxt_cli")
    log.addHandler(handler)
    result = RunResult()
    cerebro = bt.Cerebro(stdstats=False)
    data = store.getdata(dataname="BTC/USDT:USDT", name="BTC/USDT:USDT", timeframe=bt.TimeFrame.Minutes,
                         compression=120, backfill_bars=5, use_websocket=True,
                         ws_reconnect_delay=0.1, ws_max_reconnect_delay=0.2)
    cerebro.adddata(data)
    cerebro.addstrategy(Recorder, live_bars=10**9, result=result)
    timer = threading.Timer(30, cerebro.runstop)
    timer.start()
    try:
        status = None
        cerebro.run()
        status = data.status()
    finally:
        timer.cancel()
        log.removeHandler(handler)
    assert said.is_set(), "no fallback message"
    assert "no WebSocket OHLCV here" in messages[0]
    assert status is None or status.transport == "rest"
    from .harness import assert_matches_truth

    assert_matches_truth(sim, "bitget", "BTC/USDT:USDT", "2h", result.bars["BTC/USDT:USDT"], tf_ms=7_200_000)
