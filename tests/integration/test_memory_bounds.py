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
