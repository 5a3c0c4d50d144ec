"""Trades a perpetual swap long AND short: a moving-average cross that flips the position.

While the fast SMA is above the slow one the strategy holds ``size`` (base units, e.g. BTC) long;
while it is below, ``size`` short. A cross flips the position in one order (a sell of twice the
size turns a long into a short, and a buy the other way round), and the first live bar opens the
position of the side the averages are on. History bars only warm the averages up.

Meant for swap symbols (``BTC/USDT:USDT``): spot markets cannot be sold short, so keep spot
symbols out of a config that uses it. Leverage and margin mode come from the config
(``broker.leverage``, ``broker.margin_mode``; ``docs/swaps.md``). On the live broker the
exchange's funding payments and positions closed outside the bot (a liquidation) reach
``notify_store``; the strategy logs them. After a liquidation, or an order that was refused, it
waits for the next cross before it trades again (it never repeats an order bar after bar).

YAML::

    strategy:
      name: swap_flip
      params: {fast: 2, slow: 5, size: 0.01}
"""

from __future__ import annotations

import logging
from typing import Any

import backtrader as bt

logger = logging.getLogger("btccxt_cli.strategy.swap_flip")


class SwapFlip(bt.Strategy):
    """Long ``size`` while fast SMA > slow SMA, short ``size`` while below, on each data."""

    params = (("fast", 2), ("slow", 5), ("size", 0.01))

    def __init__(self) -> None:
        if self.p.fast >= self.p.slow:
            raise ValueError("swap_flip: fast must be smaller than slow")
        if self.p.size <= 0:
            raise ValueError("swap_flip: size must be positive (base units)")
        self.live = {d: False for d in self.datas}
        self.pending: dict[Any, Any] = {d: None for d in self.datas}  # the order on its way
        self.side: dict[Any, int] = {d: 0 for d in self.datas}  # the side last traded to (+1, -1)
        self.fast = {d: bt.ind.SMA(d.close, period=self.p.fast) for d in self.datas}
        self.slow = {d: bt.ind.SMA(d.close, period=self.p.slow) for d in self.datas}

    def notify_data(self, data: Any, status: int, *args: Any, **kwargs: Any) -> None:
        self.live[data] = status == data.LIVE

    def notify_order(self, order: Any) -> None:
        if order.status == order.Completed:
            logger.info("%s %s %.8g @ %.8g, position now %+.8g", order.data._name,
                        "BUY" if order.isbuy() else "SELL", abs(order.executed.size),
                        order.executed.price, self.getposition(order.data).size)
        elif order.status in (order.Canceled, order.Margin, order.Rejected, order.Expired):
            reason = order.info.get("reason")
            logger.warning("%s order %s%s", order.data._name, order.getstatusname(),
                           f": {reason}" if reason else "")
        mine = self.pending.get(order.data)
        if not order.alive() and mine is not None and mine.ref == order.ref:  # told: a copy of it
            self.pending[order.data] = None

    def notify_store(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        """The live broker's swap notices (paper runs book funding without them)."""
        symbol = kwargs.get("symbol")
        if msg == "funding":
            amount = float(kwargs.get("amount", 0.0))
            logger.info("%s funding %s %.8g %s", symbol, "received" if amount > 0 else "paid",
                        abs(amount), kwargs.get("currency") or "")
        elif msg == "position_closed":
            logger.warning("%s position %+.8g closed outside the bot (%s) at %s, now %+.8g",
                           symbol, kwargs.get("before", 0.0), kwargs.get("reason"),
                           kwargs.get("price"), kwargs.get("after", 0.0))
        else:
            logger.debug("store notice %s %s", msg, kwargs)

    def next(self) -> None:
        for d in self.datas:
            if not self.live[d] or len(d) < self.p.slow or self.pending[d] is not None:
                continue  # history, the averages not ready, or an order still on its way
            want = 1 if self.fast[d][0] > self.slow[d][0] else -1 if self.fast[d][0] < self.slow[d][0] else 0
            if want == 0 or want == self.side[d]:
                continue
            delta = want * self.p.size - self.getposition(d).size
            self.side[d] = want
            if abs(delta) < 1e-12:
                continue
            logger.info("%s fast SMA %s slow: going %s %.8g", d._name, "above" if want > 0 else "below",
                        "long" if want > 0 else "short", self.p.size)
            self.pending[d] = (self.buy if delta > 0 else self.sell)(data=d, size=abs(delta))
