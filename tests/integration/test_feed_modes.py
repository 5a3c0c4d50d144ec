"""The data core end to end: CCXTStore + CCXTFeed in cerebro, simulator over real sockets.

Every bar the strategy sees must equal the simulator's truth, once, in order, contiguous.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import backtrader as bt
import pytest

from btccxt_cli.bt.store import CCXTStore
from btccxt_cli.sources.base import Pipe

from .harness import assert_matches_truth, check_history, run_feeds

MODES = {
    "rest": {},
    "threaded": {"use_threaded_data": True},
    "websocket": {"use_websocket": True},
}
SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]


@pytest.mark.parametrize("mode", list(MODES))
def test_each_mode_delivers_the_simulators_bars(sim, mode):
    store = CCXTStore("binance", sim_url=sim.url("binance"))
    marks = {}

    def on_next(strat):
        # count requests from the first live bar on: the steady state
        if "reset" not in marks and all(
                any(s.source == "live" for s in strat.p.result.bars[sym]) for sym in SYMBOLS):
            marks["reset"] = {f._name: f.status().rest_calls for f in strat.datas}
            marks["live0"] = {sym: sum(s.source == "live" for s in strat.p.result.bars[sym])
                              for sym in SYMBOLS}
            sim.reset_stats("binance")

    res = run_feeds(store, SYMBOLS, live_bars=4, backfill_bars=10, on_next=on_next, **MODES[mode])
    assert not res.timed_out
    for sym in SYMBOLS:
        seen = res.bars[sym]
        assert_matches_truth(sim, "binance", sym, "1s", seen, tf_ms=1000)
        check_history(seen, 10)
        assert seen[-1].source == "live"
        states = [st for d, st, _ in res.notes if d == sym]
        assert states[:2] == ["DELAYED", "LIVE"] and "DISCONNECTED" not in states
    klines = sim.stats("binance")["rest"].get("/api/v3/klines", 0)
    live_after = {sym: sum(s.source == "live" for s in res.bars[sym]) - marks["live0"][sym]
                  for sym in SYMBOLS}
    if mode == "websocket":
        assert klines == 0, "websocket mode must not poll REST in steady state"
    else:
        # one request per closed bar per symbol (threaded may have read the next bar already)
        slack = len(SYMBOLS) if mode == "threaded" else 0
        assert sum(live_after.values()) <= klines <= sum(live_after.values()) + slack


def test_okx_swap_websocket_and_rest(sim):
    store = CCXTStore("okx", sim_url=sim.url("okx"))
    res = run_feeds(store, ["BTC/USDT:USDT", "ETH/USDT"], live_bars=3, backfill_bars=5,
                    use_websocket=True)
    assert not res.timed_out
    for sym, seen in res.bars.items():
        assert_matches_truth(sim, "okx", sym, "1s", seen, tf_ms=1000)
    store2 = CCXTStore("okx", sim_url=sim.url("okx"))
    res2 = run_feeds(store2, ["BTC/USDT:USDT"], live_bars=2, backfill_bars=5)
    assert_matches_truth(sim, "okx", "BTC/USDT:USDT", "1s", res2.bars["BTC/USDT:USDT"], tf_ms=1000)


def test_bars_stamped_at_their_close_are_the_truth_and_carry_their_events(sim):
    """``bar_stamp="close"``: backtrader's datetime is the bar's close less 1 ms, and
    ``current_event()`` (what ``btccxt run`` and the funding broker read at every ``next()``)
    still finds each bar's own event: its candle and whether it came live or from history."""
    store = CCXTStore("binance", sim_url=sim.url("binance"))
    res = run_feeds(store, ["BTC/USDT", "ETH/USDT"], live_bars=3, backfill_bars=5,
                    use_websocket=True, bar_stamp="close")
    assert not res.timed_out
    for sym, seen in res.bars.items():
        assert_matches_truth(sim, "binance", sym, "1s", seen, tf_ms=1000)
        assert all(s.stamp == s.ts + 999 for s in seen), sym
        # every bar's event was found (the harness records "?" for one that was not)
        assert [s.source for s in seen if s.source not in ("backfill", "live")] == [], sym
        assert sum(s.source == "live" for s in seen) >= 3, sym


def test_resampling_a_live_1s_feed_into_5s(sim):
    store = CCXTStore("binance", sim_url=sim.url("binance"))
    res = run_feeds(store, ["BTC/USDT"], live_bars=10**9, backfill_bars=30, use_websocket=True,
                    resample=(bt.TimeFrame.Seconds, 5), timeout=30,
                    on_next=lambda st: len(st.p.result.bars["BTC/USDT"]) >= 8 and st.env.runstop())
    seen = res.bars["BTC/USDT"]
    assert len(seen) >= 8
    ones = {row[0]: row for row in sim.truth("binance", "BTC/USDT", "1s", seen[0].ts - 10_000,
                                              seen[-1].ts + 1_000)}
    for s in seen[1:]:  # the first resampled bar may start mid-window
        # a resampled bar is stamped at its right edge; it holds the 5 one-second bars before
        assert s.stamp % 5_000 == 0
        rows = [ones[t] for t in range(s.stamp - 5_000, s.stamp, 1_000)]
        want = (rows[0][1], max(r[2] for r in rows), min(r[3] for r in rows), rows[-1][4],
                sum(r[5] for r in rows))
        assert s.ohlcv[:4] == pytest.approx(want[:4]) and s.ohlcv[4] == pytest.approx(want[4])


def test_historical_feed_pages_long_history_then_ends(sim):
    store = CCXTStore("binance", sim_url=sim.url("binance"))
    start = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(seconds=5_500)
    cerebro = bt.Cerebro(stdstats=False)
    data = store.getdata(dataname="ETH/USDT", name="ETH/USDT", timeframe=bt.TimeFrame.Seconds,
                         compression=1, fromdate=start, historical=True, ohlcv_limit=1000)
    cerebro.adddata(data)
    from .harness import Recorder, RunResult

    result = RunResult()
    cerebro.addstrategy(Recorder, live_bars=10**9, result=result)
    cerebro.run()
    seen = result.bars["ETH/USDT"]
    assert len(seen) >= 5_400
    assert_matches_truth(sim, "binance", "ETH/USDT", "1s", seen, tf_ms=1000)
    assert sim.stats("binance")["rest"]["/api/v3/klines"] == pytest.approx(6, abs=1)


def test_two_stores_are_two_stores_and_one_feed_stopping_leaves_the_other(sim):
    a = CCXTStore("binance", sim_url=sim.url("binance"))
    b = CCXTStore("binance", sim_url=sim.url("binance"))
    assert a.sync_exchange() is not b.sync_exchange()
    from btccxt_cli.sources.base import SeriesParams

    h1 = a.attach(SeriesParams("BTC/USDT", "1s", mode="websocket"))
    h2 = a.attach(SeriesParams("ETH/USDT", "1s", mode="websocket"))
    a.detach(h1)
    assert h1.series.pipe.closed
    got = _wait_for_bar(h2.series.pipe, timeout=10)
    assert got is not None and got.candle is not None
    a.stop()
    b.stop()


def _wait_for_bar(pipe: Pipe, timeout: float):
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        ev = pipe.get(0.5)
        if ev is not None and ev.kind == "bar":
            return ev
    return None


def test_bars_closing_together_reach_next_together(sim):
    """Three symbols close every second: their bars should arrive in one next() call."""
    store = CCXTStore("binance", sim_url=sim.url("binance"))
    groups: list[int] = []

    class Grouping(bt.Strategy):
        def __init__(self):
            self.lens = {d: 0 for d in self.datas}

        def next(self):
            moved = [d for d in self.datas if len(d) > self.lens[d]]
            for d in moved:
                self.lens[d] = len(d)
            if all(d.current_event() is not None and d.current_event().source.value == "live"
                   for d in moved):
                groups.append(len(moved))
            if len(groups) >= 8:
                self.env.runstop()

    cerebro = bt.Cerebro(stdstats=False)
    for sym in SYMBOLS:
        cerebro.adddata(store.getdata(dataname=sym, name=sym, timeframe=bt.TimeFrame.Seconds,
                                      compression=1, backfill_start=False, use_websocket=True))
    cerebro.addstrategy(Grouping)
    cerebro.run()
    together = sum(1 for g in groups if g == len(SYMBOLS))
    assert together >= len(groups) - 1, groups  # without align_wait: 4-6 of 8
