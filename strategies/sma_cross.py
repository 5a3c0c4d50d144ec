"""Paper-trades a simple moving-average cross on each data, and only once that data is LIVE.

YAML::

    strategy:
      name: sma_cross
      params: {fast: 5, slow: 20, stake: 0.01}
"""

from __future__ import annotations

import logging

import backtrader as bt

logger = logging.getLogger("btccxt_cli.strategy.sma_cross")


class SmaCross(bt.Strategy):
    """Buys ``stake`` when the fast SMA crosses above the slow one, sells when it crosses below."""

    params = (("fast", 10), ("slow", 30), ("stake", 0.01))

    def __init__(self) -> None:
        if self.p.fast >= self.p.slow:
            raise ValueError("sma_cross: fast must be smaller than slow")
        self.live = {d: False for d in self.datas}
        self.cross = {d: bt.ind.CrossOver(bt.ind.SMA(d.close, period=self.p.fast),
                                          bt.ind.SMA(d.close, period=self.p.slow))
                      for d in self.datas}

    def notify_data(self, data, status, *args, **kwargs) -> None:
        self.live[data] = status == data.LIVE

    def notify_order(self, order) -> None:
        if order.status == order.Completed:
            side = "BUY" if order.isbuy() else "SELL"
            logger.info("%s %s %.8g @ %.8g", order.data._name, side, order.executed.size,
                        order.executed.price)
        elif order.status in (order.Canceled, order.Margin, order.Rejected):
            logger.warning("%s order %s", order.data._name, order.getstatusname())

    def next(self) -> None:
        for d in self.datas:
            if not self.live[d] or len(d) < self.p.slow:
                continue
            pos = self.getposition(d).size
            if self.cross[d][0] > 0 and pos <= 0:
                self.buy(data=d, size=self.p.stake)
            elif self.cross[d][0] < 0 and pos > 0:
                self.close(data=d)
