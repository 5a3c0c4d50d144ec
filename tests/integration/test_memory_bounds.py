"""Live runs keep bounded line buffers, and the configured lookback stays available."""

from __future__ import annotations

import backtrader as bt

from btccxt_cli.bt.store import CCXTStore


class Probe(bt.Strategy):
    params = (("lookback", 50),)

    def __init__(self):
        self.sma = bt.ind.SMA(self.data.close, period=10)
        self.sizes = []
        self.checks = []

    def next(self):
        self.sizes.append(len(self.data.close.array))
        if len(self.data) >= self.p.lookback:
            self.checks.append((self.data.datetime.datetime(-(self.p.lookback - 1)),
                                self.data.close[-(self.p.lookback - 1)], self.data.current_event().candle.ts))


def test_exactbars_with_lookback_bounds_buffers_and_keeps_lookback(sim):
    store = CCXTStore("binance", sim_url=sim.url("binance"))
    cerebro = bt.Cerebro(stdstats=False, exactbars=1)
    cerebro.adddata(store.getdata(dataname="BTC/USDT", timeframe=bt.TimeFrame.Seconds, compression=1,
                                  backfill_bars=2_000, historical=True, ohlcv_limit=1000, lookback=50))
    cerebro.addstrategy(Probe, lookback=50)
    strat = cerebro.run()[0]
    assert len(strat.sizes) >= 1_990
    assert max(strat.sizes) <= 60, "data lines must stay bounded"
    truth = {row[0]: row for row in sim.truth("binance", "BTC/USDT", "1s", strat.checks[0][2] - 100_000,
                                                 strat.checks[-1][2] + 1_000)}
    for _, close_back, ts_now in strat.checks[-100:]:
        assert close_back == truth[ts_now - 49_000][4], "lookback bars hold the exchange's values"


SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "ADA/USDT", "DOGE/USDT"]


def test_ccxt_keeps_few_candles_per_symbol_and_bars_do_not_depend_on_them(sim, monkeypatch):
    """ccxt.pro keeps 1,000 candles per watched symbol by default: with 1,000 symbols ~250 MB
    over a long run, a copy of what the feeds hold. The store keeps ccxt's to WS_CANDLES_KEPT
    (a config's own ``OHLCVLimit`` wins); the bars reach the strategy whole either way: here
    ccxt keeps 2 candles while 8 pass. ccxt's record of updates not yet returned by a watch
    (a set per symbol, emptied only by a watch answering for that symbol, so with a batch
    watch it grew by a bar each bar) stays bounded too: it is trimmed every watch here
    (every minute in a run)."""
    from btccxt_cli.bt.store import WS_CANDLES_KEPT
    from btccxt_cli.sources import ws
    from tests.integration.harness import assert_matches_truth, run_feeds

    def client(store: CCXTStore, box: dict) -> object:
        return lambda strategy: box.setdefault("ex", store._async_ex)  # (the run closes it)

    store, box = CCXTStore("binance", sim_url=sim.url("binance")), {}
    try:
        res = run_feeds(store, ["BTC/USDT"], live_bars=1, timeout=30, backfill_start=False, use_websocket=True,
                        on_next=client(store, box))
        assert not res.timed_out
        assert box["ex"].options["OHLCVLimit"] == WS_CANDLES_KEPT <= 50
    finally:
        store.stop()
    monkeypatch.setattr(ws, "FORGET_EVERY", 1)
    store, box = CCXTStore("binance", sim_url=sim.url("binance"), config={"options": {"OHLCVLimit": 2}}), {}
    try:
        res = run_feeds(store, SYMBOLS, live_bars=8, timeout=30, backfill_start=False, use_websocket=True,
                        on_next=client(store, box))
        ex = box["ex"]
        assert not res.timed_out and ex.options["OHLCVLimit"] == 2
        # (untrimmed, the sets of the symbols the batch watch did not answer for held a
        # time per bar seen: 9-11 here)
        assert max(len(ex.ohlcvs[sym]["1s"]._size_tracker) for sym in SYMBOLS) <= 5
        for sym in SYMBOLS:
            assert len(ex.ohlcvs[sym]["1s"]) == 2  # ccxt's copy stays small ...
            seen = res.bars[sym]
            assert [s.source for s in seen].count("live") >= 8  # ... and every bar came whole
            assert_matches_truth(sim, "binance", sym, "1s", seen, tf_ms=1000)
    finally:
        store.stop()
