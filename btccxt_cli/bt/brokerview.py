"""What the live broker shows (any thread unless said): balances, positions and open orders
for the dashboard, order figures for Prometheus, how order updates arrive.
"""

from __future__ import annotations

import logging

from btccxt_cli.cache.orders import OrderRecord
from btccxt_cli.model import BrokerStatus

logger = logging.getLogger("btccxt_cli.bt.broker")

#: order events counted for Prometheus (``order_metrics``)
ORDER_COUNTS = ("rejects", "unknown_creates", "lost", "revived", "nonce_retries", "worker_failures")


class BrokerView:
    """Part of :class:`~btccxt_cli.bt.broker.CCXTBroker` (its attributes are the broker's)."""

    def status(self, trades: int = 0) -> BrokerStatus:
        """Balances, positions and open orders for the dashboard (strategy thread).

        P&L is the value now minus the value once every data had its first bar (positions
        cannot be valued before).
        """
        datas = self._datas()
        positions = {getattr(d, "_name", "") or self._symbol(d): self.getposition(d).size
                     for d in datas}
        value = self.getvalue()
        if self._value0 is None and all(len(d) for d in datas):
            self._value0 = self.startingvalue = value
        orders = [f"{o.side} {o.symbol} {o.amount:g} {o.type}"
                  + (f" @ {o.price:.8g}" if o.price else "") + f" filled {o.filled:g} [{o.status}]"
                  for o in self.open_orders()[:8]]
        closes = {self._symbol(d): float(d.close[0]) for d in datas if len(d)}
        return BrokerStatus(mode="live", cash=self.getcash(), value=value, positions=positions,
                            open_orders=self._open_count, trades=trades,
                            pnl=value - self._value0 if self._value0 is not None else 0.0,
                            balances={a: t for a, (_f, _u, t) in self._balances.items() if t},
                            orders=orders, updates=self.updates_via,
                            derivs=self.swaps.rows(self.positions, closes))

    def order_metrics(self) -> dict[str, float]:
        """Order figures for Prometheus (any thread): counts since start (``rejects``,
        ``unknown_creates``, ``lost``, ``revived``, ``nonce_retries``, ``worker_failures``) and
        now (``tracked``; ``stuck``: create outcome unknown, or not found lately; ``watched``)."""
        sync = self.sync
        if sync is None:
            return {}
        out: dict[str, float] = {k: float(sync.counts.get(k, 0)) for k in ORDER_COUNTS}
        tracked = list(sync.tracked.values())
        out["tracked"] = float(len(tracked))
        out["stuck"] = float(sum(1 for t in tracked if t.rec.status in ("pending", "sending", "unknown")
                                 or t.missing_since is not None))
        out["watched"] = float(len(sync.watch.watched))
        return out

    def updates_changes(self) -> list[tuple[str, str]]:
        """Every change of how order updates arrive since the last call, in order:
        ``(via, reason)`` (strategy thread; the runner writes them to the events file)."""
        out, self._updates_changes = self._updates_changes, []
        return out

    def balances(self) -> dict[str, tuple[float, float, float]]:
        """``{asset: (free, used, total)}`` as last read from the exchange."""
        return dict(self._balances)

    def open_orders(self) -> list[OrderRecord]:
        """Orders this broker still tracks as live."""
        return [lv.rec for lv in self._live.values() if not lv.final]
