"""What a backtest measures: orders, trades, the equity of the window, and its metrics.

``Recorder`` is a backtrader analyzer added next to backtrader's own ``TradeAnalyzer`` (trade
count, wins, average trade). It keeps orders and closed trades (a list each) and running sums of the
window's per-bar returns (Welford), so memory stays flat in the window's length; the equity
curve is kept only when a report asks for it (``curve=True``).

Metrics (``docs/backtest.md``): the window is every strategy cycle from the first live bar
on (the warm-up bars are history, as in a live run; nothing trades there unless the strategy
trades on history). ``sharpe`` is annualised from the per-cycle returns (risk-free rate 0,
``periods_per_year`` cycles a year: those of the smallest timeframe); ``max_drawdown`` the
largest fall of the value from its running peak in the window (a fraction of the peak, as
backtrader's ``DrawDown`` measures it, without its per-bar cost); ``exposure`` the share of window
cycles with an open position; ``fees`` the commission paid.

Imports backtrader only inside functions.
"""

from __future__ import annotations

import math
from array import array
from datetime import datetime, timezone
from typing import Any

__all__ = ["make_recorder", "metrics_of", "ms_of", "iso_ms", "order_bar_ms", "METRIC_KEYS"]

METRIC_KEYS = ("start", "end", "bars", "initial_value", "final_value", "total_return",
               "max_drawdown", "sharpe", "trades", "win_rate", "avg_trade", "exposure", "fees")
"""The keys of ``metrics`` in ``--json``, in order."""



def clean(x: Any) -> Any:
    """A price, size, fee or P&L as a person reads it: to 10 decimals (finer than any market's
    step), so backtrader's float noise (59704.899999999994 for a fill at 59704.9, a P&L of
    0.07499999999990905) does not reach the outputs."""
    return round(x, 10) if isinstance(x, float) and math.isfinite(x) else x

def ms_of(num: float) -> int:
    """A backtrader datetime number (naive UTC) as epoch milliseconds."""
    import backtrader as bt

    return int(round(bt.num2date(num).replace(tzinfo=timezone.utc).timestamp() * 1000))


def iso_ms(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds") \
        .replace("+00:00", "Z")


def _bar_open(data: Any, stamp_ms: int) -> int:
    """Open time of the bar of ``data`` stamped ``stamp_ms`` (stamps are close - 1 ms)."""
    series = data.series
    if series is None or data.p.bar_stamp == "open":
        return stamp_ms
    return series.grid.open_of(stamp_ms)


def order_bar_ms(order: Any) -> int | None:
    """Open time (ms) of the bar an order filled in (None: it has not filled). The same value
    in ``btccxt run``'s events file (``bar``) and a backtest's orders (``time``)."""
    dt = order.executed.dt
    if not dt:
        return None
    return _bar_open(order.data, ms_of(dt))


def make_recorder() -> type:
    """The ``Recorder`` analyzer class (built here so backtrader loads only when needed)."""
    import backtrader as bt

    class Recorder(bt.Analyzer):
        params = (("window_ms", 0), ("curve", False), ("on_progress", None),
                  ("progress_every", 2_000))

        def start(self) -> None:
            self.orders: list[dict[str, Any]] = []
            self.trades: list[dict[str, Any]] = []
            self.cycles = 0
            self.exposed = 0
            self.fees = 0.0
            self.first_ms: int | None = None
            self.last_ms: int | None = None
            self._first_num: float | None = None
            self._last_num = 0.0
            # the window's start as a backtrader datetime number: no conversion per bar
            self._window_num = bt.date2num(datetime.fromtimestamp(
                self.p.window_ms / 1000, tz=timezone.utc).replace(tzinfo=None)) - 1e-9
            self.peak = float("-inf")
            self.max_dd = 0.0
            self.start_value: float | None = None
            self.prev_value: float | None = None
            self.n = 0
            self.mean = 0.0
            self.m2 = 0.0
            self.curve_t = array("d")  # backtrader datetime numbers (ms in get_analysis)
            self.curve_v = array("d")
            self.per_symbol: dict[str, dict[str, float]] = {
                d._name: {"trades": 0, "won": 0, "pnl": 0.0, "fees": 0.0, "orders": 0}
                for d in self.strategy.datas}

        def notify_order(self, order: Any) -> None:
            if order.status not in (order.Completed, order.Partial, order.Canceled,
                                    order.Margin, order.Rejected, order.Expired):
                return
            d = order.data
            done = order.status in (order.Completed, order.Partial)
            t = order_bar_ms(order) if done else None
            if t is None:
                t = _bar_open(d, ms_of(d.datetime[0]))
            rec = {"time": t, "iso": iso_ms(t), "symbol": d._name,
                   "side": "buy" if order.isbuy() else "sell",
                   "size": clean(abs(order.executed.size) if done else abs(order.created.size)),
                   "price": clean(order.executed.price if done else order.created.price),
                   "fee": clean(order.executed.comm if done else 0.0),
                   "status": order.getstatusname()}
            if order.info.get("liquidation"):
                rec["liquidation"] = True
            self.orders.append(rec)
            if done:
                self.fees += order.executed.comm
                sym = self.per_symbol[d._name]
                sym["fees"] += order.executed.comm
                sym["orders"] += 1

        def notify_trade(self, trade: Any) -> None:
            if not trade.isclosed:
                return
            d = trade.data
            opened = _bar_open(d, ms_of(trade.dtopen))
            closed = _bar_open(d, ms_of(trade.dtclose))
            first = trade.history[0].event.size if trade.history else None
            self.trades.append({
                "symbol": d._name, "opened": opened, "opened_iso": iso_ms(opened),
                "closed": closed, "closed_iso": iso_ms(closed),
                "side": "long" if (first or trade.long) and (first is None or first > 0) else "short",
                "price": clean(trade.price), "pnl": clean(trade.pnl),
                "pnl_net": clean(trade.pnlcomm), "fees": clean(trade.commission),
                "bars": trade.barlen})
            sym = self.per_symbol[d._name]
            sym["trades"] += 1
            sym["won"] += int(trade.pnlcomm > 0)
            sym["pnl"] += trade.pnlcomm

        def next(self) -> None:
            st = self.strategy
            num = st.datetime[0]
            if num < self._window_num:  # warm-up: history, as in a live run
                return
            value = st.broker.getvalue()
            if self._first_num is None:
                self._first_num = num
                self.start_value = self.prev_value = value
            self._last_num = num
            if value > self.peak:
                self.peak = value
            elif self.peak > 0 and 1.0 - value / self.peak > self.max_dd:
                self.max_dd = 1.0 - value / self.peak
            self.cycles += 1
            prev = self.prev_value or value
            r = value / prev - 1.0 if prev else 0.0
            self.prev_value = value
            self.n += 1
            delta = r - self.mean
            self.mean += delta / self.n
            self.m2 += delta * (r - self.mean)
            positions = st.broker.positions
            if any(positions[d].size for d in st.datas if d in positions):
                self.exposed += 1
            if self.p.curve:
                self.curve_t.append(num)
                self.curve_v.append(value)
            cb = self.p.on_progress
            if cb is not None and self.cycles % self.p.progress_every == 0:
                cb(self.cycles)

        def stop(self) -> None:
            if self._first_num is not None:
                self.first_ms, self.last_ms = ms_of(self._first_num), ms_of(self._last_num)

        def curve(self) -> list[tuple[int, float]]:
            return [(ms_of(t), v) for t, v in zip(self.curve_t, self.curve_v, strict=True)]

        def get_analysis(self) -> dict[str, Any]:
            return {"orders": self.orders, "trades": self.trades}

    return Recorder


def metrics_of(strat: Any, rec: Any, *, cash: float, periods_per_year: float) -> dict[str, Any]:
    """The ``metrics`` object of a finished run (keys: ``METRIC_KEYS``) and ``per_symbol``."""
    final = float(strat.broker.getvalue())
    ta = strat.analyzers.trades.get_analysis()
    total = _get(ta, "total", "closed") or 0
    won = _get(ta, "won", "total") or 0
    avg = _get(ta, "pnl", "net", "average") if total else None
    std = math.sqrt(rec.m2 / (rec.n - 1)) if rec.n > 1 else 0.0
    sharpe = rec.mean / std * math.sqrt(periods_per_year) if std > 0 else None
    initial = float(cash)
    m: dict[str, Any] = {
        "start": iso_ms(_first_open(strat, rec.first_ms)),
        "end": iso_ms(rec.last_ms + 1 if rec.last_ms is not None else None),  # stamps: close - 1 ms
        "bars": rec.cycles, "initial_value": initial, "final_value": final,
        "total_return": final / initial - 1.0 if initial else None,
        "max_drawdown": rec.max_dd,
        "sharpe": sharpe, "trades": int(total),
        "win_rate": won / total if total else None,
        "avg_trade": float(avg) if avg is not None else None,
        "exposure": rec.exposed / rec.cycles if rec.cycles else 0.0,
        "fees": rec.fees,
    }
    per = {}
    for name, s in rec.per_symbol.items():
        per[name] = {"trades": int(s["trades"]), "win_rate": s["won"] / s["trades"] if s["trades"] else None,
                     "pnl_net": s["pnl"], "fees": s["fees"], "orders": int(s["orders"])}
    return {"metrics": m, "per_symbol": per}


def _first_open(strat: Any, stamp: int | None) -> int | None:
    if stamp is None:
        return None
    return min(_bar_open(d, stamp) for d in strat.datas if hasattr(d, "series"))  # price feeds


def _get(node: Any, *keys: str) -> Any:
    for k in keys:
        try:
            node = node[k]
        except (KeyError, TypeError):
            return None
    return node
