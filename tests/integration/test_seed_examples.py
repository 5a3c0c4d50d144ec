"""The user's own examples (the seed document), unchanged apart from imports and ``sim_url``."""

from __future__ import annotations

from datetime import datetime, timedelta

import backtrader as bt

from btccxt_cli import CCXTFeed, CCXTStore

from .harness import assert_matches_truth


class UntilLive(bt.Strategy):
    """Records history bars and stops once the data reports LIVE."""

    def __init__(self):
        self.seen = []
        self.states = []

    def notify_data(self, data, status, *args, **kwargs):
        self.states.append(data._getstatusname(status))
        if status == data.LIVE:
            self.env.runstop()

    def next(self):
        ev = self.data.current_event()
        self.seen.append(ev)


def _utcnow() -> datetime:
    return datetime.utcnow()  # the seed's own spelling: naive UTC


def _check(sim, strat, symbol, n_min):
    from .harness import Seen

    seen = [Seen(e.candle.ts, 0, tuple(e.candle[1:6]), e.source.value, 0, 0) for e in strat.seen]
    assert len(seen) >= n_min
    assert_matches_truth(sim, "okx", symbol, "1m", seen, tf_ms=60_000)
    assert strat.states[0] == "DELAYED" and strat.states[-1] == "LIVE"


def test_basic_example(sim):
    store = CCXTStore(
        exchange='okx',
        currency='USDT',
        config={'apiKey': 'xxx', 'secret': 'xxx', 'password': 'xxx'},
        sim_url=sim.url("okx"),
    )
    data = CCXTFeed(
        store=store,
        dataname='BTC/USDT',
        timeframe=bt.TimeFrame.Minutes,
        compression=1,
        fromdate=_utcnow() - timedelta(minutes=100),  # Historical data
        backfill_start=True,      # Load historical data first
        historical=False,         # Continue in live mode after history
        use_websocket=True,       # Enable WebSocket
    )
    cerebro = bt.Cerebro()
    cerebro.adddata(data)
    cerebro.addstrategy(UntilLive)
    strat = cerebro.run()[0]
    _check(sim, strat, "BTC/USDT", 99)


def test_production_configuration_and_multi_symbol(sim):
    store = CCXTStore(exchange='okx', currency='USDT', sim_url=sim.url("okx"))
    cerebro = bt.Cerebro()
    for symbol in ['BTC/USDT', 'ETH/USDT', 'BTC/USDT:USDT']:
        data = store.getdata(
            dataname=symbol,
            name=symbol,
            timeframe=bt.TimeFrame.Minutes,
            compression=1,
            fromdate=_utcnow() - timedelta(minutes=500),
            backfill_start=True,
            historical=False,
            use_websocket=True,          # Use WebSocket
            ohlcv_limit=100,
            drop_newest=True,            # Drop potentially incomplete bars
            ws_reconnect_delay=5.0,       # Reconnect delay
            ws_max_reconnect_delay=60.0,  # Max reconnect delay
        )
        cerebro.adddata(data)
    done = set()

    class AllLive(UntilLive):
        def notify_data(self, data, status, *args, **kwargs):
            self.states.append(data._getstatusname(status))
            if status == data.LIVE:
                done.add(data._name)
                if len(done) == 3:
                    self.env.runstop()

        def next(self):
            for d in self.datas:
                if len(d) > getattr(d, "_n", 0):
                    d._n = len(d)
                    self.seen.append((d._name, d.current_event()))

    cerebro.addstrategy(AllLive)
    strat = cerebro.run()[0]
    from .harness import Seen

    for symbol in ['BTC/USDT', 'ETH/USDT', 'BTC/USDT:USDT']:
        seen = [Seen(e.candle.ts, 0, tuple(e.candle[1:6]), e.source.value, 0, 0)
                for name, e in strat.seen if name == symbol]
        assert len(seen) >= 490
        assert_matches_truth(sim, "okx", symbol, "1m", seen, tf_ms=60_000)
