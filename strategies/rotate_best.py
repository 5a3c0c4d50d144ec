"""Multi-symbol: holds the one symbol that rose most over the last ``window`` bars.

Every ``every`` live bars it ranks the datas by their return over ``window`` bars and, if the
leader changed, closes the old holding and buys ``value`` (quote currency) of the new leader.
It trades only while every data is LIVE and has ``window`` bars of history, so history bars
never place an order. Symbols should share a quote currency (BTC/USDT, ETH/USDT ...).

YAML::

    symbols: [BTC/USDT, ETH/USDT, SOL/USDT]
    strategy:
      name: rotate_best
      params: {window: 20, every: 5, value: 100}
"""

from __future__ import annotations

import logging

import backtrader as bt

logger = logging.getLogger("btccxt_cli.strategy.rotate_best")


class RotateBest(bt.Strategy):
    """Holds the best performer of ``self.datas`` (one at a time), re-ranked every ``every`` bars."""

    params = (("window", 20), ("every", 5), ("value", 100.0))

    def __init__(self) -> None:
        if self.p.window < 1 or self.p.every < 1 or self.p.value <= 0:
            raise ValueError("rotate_best: window and every must be >= 1, value > 0")
        self.live = {d: False for d in self.datas}
        self.held: bt.feed.DataBase | None = None
        self.live_bars = 0

    def notify_data(self, data, status, *args, **kwargs) -> None:
        self.live[data] = status == data.LIVE

    def next(self) -> None:
        if not all(self.live.values()) or any(len(d) <= self.p.window for d in self.datas):
            return  # history, a data not LIVE, or not enough bars yet: no orders
        self.live_bars += 1
        if self.live_bars % self.p.every:
            return
        returns = {d: d.close[0] / d.close[-self.p.window] - 1.0 for d in self.datas}
        best = max(returns, key=returns.get)
        if best is self.held:
            return
        if self.held is not None and self.getposition(self.held).size:
            self.close(data=self.held)
        self.buy(data=best, size=self.p.value / best.close[0])
        logger.info("rotating into %s (%+.3f%% over %d bars)", best._name, 100 * returns[best],
                    self.p.window)
        self.held = best
