"""Reacts to DISCONNECTED: trades an SMA cross, but steps aside while a data's feed is down.

When a data reports DISCONNECTED (its socket dropped; closed bars may still come from REST, a
little late) the strategy cancels its open orders on that data, closes the position when
``flatten`` is true, and places nothing on that data until it is LIVE again. NOTSUBSCRIBED
(the exchange refused the symbol; the feed ends) is handled the same way, for good.

YAML::

    strategy:
      name: disconnect_guard
      params: {fast: 10, slow: 30, stake: 0.01, flatten: true}
"""

from __future__ import annotations

import logging

import backtrader as bt

logger = logging.getLogger("btccxt_cli.strategy.disconnect_guard")


class DisconnectGuard(bt.Strategy):
    """SMA cross per data, only while that data is LIVE; flat and quiet while it is down."""

    params = (("fast", 10), ("slow", 30), ("stake", 0.01), ("flatten", True))

    def __init__(self) -> None:
        if self.p.fast >= self.p.slow:
            raise ValueError("disconnect_guard: fast must be smaller than slow")
        self.live = {d: False for d in self.datas}
        self.orders: dict[bt.feed.DataBase, list[bt.Order]] = {d: [] for d in self.datas}
        self.guarded: list[tuple[str, str, float]] = []  # (symbol, state, position then)
        self.cross = {d: bt.ind.CrossOver(bt.ind.SMA(d.close, period=self.p.fast),
                                          bt.ind.SMA(d.close, period=self.p.slow))
                      for d in self.datas}

    def notify_data(self, data, status, *args, **kwargs) -> None:
        self.live[data] = status == data.LIVE
        if status in (data.DISCONNECTED, data.NOTSUBSCRIBED):
            size = self.getposition(data).size
            self.guarded.append((data._name, data._getstatusname(status), size))
            logger.warning("%s %s: cancelling its open orders%s", data._name,
                           data._getstatusname(status), " and closing the position"
                           if size and self.p.flatten else "")
            for order in [o for o in self.orders[data] if o.alive()]:
                self.cancel(order)
            if size and self.p.flatten:
                self.orders[data].append(self.close(data=data))

    def notify_order(self, order) -> None:
        if not order.alive():
            self.orders[order.data] = [o for o in self.orders[order.data] if o is not order]

    def next(self) -> None:
        for d in self.datas:
            if not self.live[d] or len(d) < self.p.slow:
                continue  # history, or the feed is down: no new orders
            pos = self.getposition(d).size
            if self.cross[d][0] > 0 and pos <= 0:
                self.orders[d].append(self.buy(data=d, size=self.p.stake))
            elif self.cross[d][0] < 0 and pos > 0:
                self.orders[d].append(self.close(data=d))
