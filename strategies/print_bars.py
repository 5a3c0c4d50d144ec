"""Logs every closed bar of every data, and every data notification.

YAML: ``strategy: {name: print_bars}``
"""

from __future__ import annotations

import logging

import backtrader as bt

logger = logging.getLogger("btccxt_cli.strategy.print_bars")


class PrintBars(bt.Strategy):
    """Logs each closed bar (time, OHLCV) once, as it reaches the strategy."""

    params = (("level", "INFO"),)

    def __init__(self) -> None:
        self._seen = {d: 0 for d in self.datas}
        self._level = logging.getLevelName(str(self.p.level).upper())
        if not isinstance(self._level, int):
            self._level = logging.INFO

    def notify_data(self, data, status, *args, **kwargs) -> None:
        logger.log(self._level, "%s: %s %s", data._name, data._getstatusname(status),
                   args[0] if args else "")

    def prenext(self) -> None:
        self.next()

    def next(self) -> None:
        for d in self.datas:
            if len(d) > self._seen[d]:
                self._seen[d] = len(d)
                logger.log(self._level, "%s %s O %.8g H %.8g L %.8g C %.8g V %.8g", d._name,
                           d.datetime.datetime(0).isoformat(), d.open[0], d.high[0], d.low[0],
                           d.close[0], d.volume[0])
