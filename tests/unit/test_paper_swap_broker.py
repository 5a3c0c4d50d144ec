"""The paper broker's swap rules: liquidation by the simulator's rule (``bt/liquidation.py``)
and reduce-only orders as the live broker sends them (``bt/funding_broker.py``). Real
backtrader and the real backtest path over bars written for each case, so that each expected
figure can be worked out by hand.

Every case: cash and leverage from the config, one position of 1 (or 5) BTC opened at 100 by
a market order, then the bars of the case. 10x isolated: liquidation at
``100 * 0.9 / 0.996 = 90.3614`` (long) or ``100 * 1.1 / 1.004 = 109.5618`` (short),
bankruptcy at 90 / 110."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from btccxt_cli.bt.liquidation import Leg, bankruptcy_price, cross_price, crossing, isolated_price
from btccxt_cli.sim.positions import MAINT_RATE as SIM_MAINT_RATE
from btccxt_cli.sim.positions import Position

SWAP = "BTC/USDT:USDT"
T0 = 1_700_000_040_000  # a minute boundary
FEE = 0.001
LONG_LIQ = 100 * 0.9 / 0.996
SHORT_LIQ = 100 * 1.1 / 1.004

STRATEGY = '''import json
import backtrader as bt


class Liq(bt.Strategy):
    """On the 6th bar: open ``size`` (market), and a stop and/or a limit the other way."""

    params = (("side", "buy"), ("size", 1.0), ("stop", 0.0), ("limit", 0.0), ("out", ""))

    def start(self):
        self.n = 0
        self.seen = {"store": [], "orders": []}

    def notify_store(self, msg, *args, **kwargs):
        self.seen["store"].append({"msg": msg, "symbol": kwargs.get("symbol"),
                                   "data": kwargs["data"]._name, "before": kwargs.get("before"),
                                   "after": kwargs.get("after"), "price": kwargs.get("price"),
                                   "reason": kwargs.get("reason")})

    def notify_order(self, order):
        if not order.alive():
            self.seen["orders"].append({
                "status": order.getstatusname(), "side": "buy" if order.isbuy() else "sell",
                "type": order.getordername(), "price": order.executed.price,
                "size": order.executed.size, "liquidation": bool(order.info.get("liquidation")),
                "value": self.broker.getvalue()})

    def next(self):
        self.n += 1
        if self.n == 7:
            from btccxt_cli.bt.funding_broker import swap_derivs

            self.seen["panel"] = [r.liquidation for r in swap_derivs(self.broker, self.datas)]
        if self.n != 6:
            return
        buy = self.p.side == "buy"
        (self.buy if buy else self.sell)(size=self.p.size)
        other = self.sell if buy else self.buy
        if self.p.stop:
            other(size=self.p.size, exectype=bt.Order.Stop, price=self.p.stop)
        if self.p.limit:
            other(size=self.p.size, exectype=bt.Order.Limit, price=self.p.limit)

    def stop(self):
        self.seen["position"] = self.broker.getposition(self.datas[0]).size
        self.seen["cash"] = self.broker.getcash()
        with open(self.p.out, "w") as f:
            json.dump(self.seen, f)
'''


def _run(tmp_path: Path, path: list[tuple[float, float, float, float]], *, cash: float = 1000.0,
         mode: str = "isolated", fill: tuple[float, float, float, float] = (100.0, 100.0, 100.0, 100.0),
         **params: Any) -> tuple[Any, dict[str, Any]]:
    from btccxt_cli.bt.replay import memory_rows
    from btccxt_cli.config.load import load_config
    from btccxt_cli.model import Candle
    from btccxt_cli.runtime.backtest import run_backtest

    (tmp_path / "liq.py").write_text(STRATEGY)
    cfg = tmp_path / "liq.yaml"
    cfg.write_text(f"""exchange:
  id: binance
broker:
  cash: {cash}
  leverage: 10
  margin_mode: {mode}
  commission: {FEE}
  funding: false
symbols:
  - {SWAP}
feed:
  timeframe: 1m
  backfill: 5
strategy:
  path: liq.py
""")
    # five warm-up bars, then live: the order of the 6th bar fills at the open of the 7th
    # (``fill``), two more bars, then the case's
    flat = (100.0, 100.0, 100.0, 100.0)
    ohlc = [flat] * 6 + [fill, flat, (100.0, 100.5, 99.5, 100.0)] + list(path) + [(path[-1][3],) * 4]
    bars = [Candle(T0 + i * 60_000, o, h, lo, c, 1.0) for i, (o, h, lo, c) in enumerate(ohlc)]
    out = tmp_path / "seen.json"
    res = run_backtest(load_config(cfg), tmp_path, memory_rows({(SWAP, "1m"): bars}),
                       T0 + 5 * 60_000, T0 + len(bars) * 60_000,
                       params={"out": str(out), **params})
    return res, json.loads(out.read_text())


def _filled(seen: dict[str, Any]) -> list[tuple[str, float, bool]]:
    return [(o["side"], o["price"], o["liquidation"]) for o in seen["orders"]
            if o["status"] == "Completed"]


# ---------------------------------------------------------------------------------- the rule
@pytest.mark.parametrize("lev", [1, 2, 5, 10, 20, 50, 125])
@pytest.mark.parametrize("qty", [0.5, -0.5])
def test_the_isolated_liquidation_price_is_the_simulators(lev: float, qty: float) -> None:
    pos = Position(id=1, key="k", symbol=SWAP, side="net", mode="isolated", qty=qty,
                   entry=60_000.0, margin=abs(qty) * 60_000.0 / lev, leverage=lev)
    assert isolated_price(60_000.0, qty, lev, SIM_MAINT_RATE) == pytest.approx(pos.liq_price())
    # and the margin plus P&L there is the maintenance margin
    px = isolated_price(60_000.0, qty, lev)
    assert pos.margin + pos.upnl(px) == pytest.approx(pos.maint(px), rel=1e-9)


def test_the_cross_liquidation_price_is_the_simulators_with_the_free_balance() -> None:
    free = 5.0
    pos = Position(id=1, key="k", symbol=SWAP, side="net", mode="cross", qty=2.0, entry=100.0,
                   margin=20.0)
    base = free + pos.margin
    mine = Leg("btc", 2.0, 100.0, 100.0, 100.0)
    assert cross_price(base, [mine], "btc") == pytest.approx(pos.liq_price(extra=free))


def test_crossing_is_the_first_point_of_the_way_at_the_maintenance_margin() -> None:
    g = Leg("x", 1.0, 100.0, 100.0, 80.0)
    t = crossing(10.0, [g])  # 10 + (p - 100) = 0.004 p at p = 90.3614
    assert t is not None and g.at(t) == pytest.approx(LONG_LIQ)
    assert crossing(10.0, [Leg("x", 1.0, 100.0, 100.0, 91.0)]) is None
    assert crossing(10.0, [Leg("x", 1.0, 100.0, 85.0, 80.0)]) == 0.0  # opened beyond it
    assert bankruptcy_price(100.0, 1.0, 10) == pytest.approx(90.0)
    assert bankruptcy_price(100.0, -1.0, 10) == pytest.approx(110.0)


# ---------------------------------------------------------------------------------- the broker
@pytest.mark.parametrize("side", ["buy", "sell"])
def test_a_bar_through_the_liquidation_price_closes_the_position_there(tmp_path: Path,
                                                                       side: str) -> None:
    path = [(99.0, 99.5, 95.0, 96.0), (96.0, 96.0, 90.0, 92.0)] if side == "buy" else \
        [(101.0, 105.0, 100.5, 104.0), (104.0, 112.0, 104.0, 108.0)]
    res, seen = _run(tmp_path, path, side=side)
    liq = LONG_LIQ if side == "buy" else SHORT_LIQ
    other = "sell" if side == "buy" else "buy"
    assert _filled(seen) == [(side, 100.0, False), (other, pytest.approx(liq), True)]
    assert seen["position"] == 0
    # the loss is the P&L at the liquidation price; no fee on the liquidation
    lost = abs(liq - 100.0)
    assert res.metrics["final_value"] == pytest.approx(1000.0 - 100.0 * FEE - lost)
    assert seen["store"] == [{"msg": "position_closed", "symbol": SWAP, "data": SWAP,
                              "before": 1.0 if side == "buy" else -1.0, "after": 0.0,
                              "price": pytest.approx(liq), "reason": "liquidation"}]
    [trade] = res.trades
    assert trade["pnl"] == pytest.approx(-lost)
    assert [o.get("liquidation", False) for o in res.orders] == [False, True]
    assert res.orders[1]["time"] == T0 + 10 * 60_000  # the bar that reached it
    assert res.orders[1]["fee"] == 0.0


def test_a_position_opened_in_a_bar_that_then_reaches_the_price_is_liquidated_in_it(
        tmp_path: Path) -> None:
    res, seen = _run(tmp_path, [(92.0, 93.0, 91.0, 92.0)], fill=(100.0, 100.0, 89.0, 91.0))
    assert seen["store"][0]["price"] == pytest.approx(LONG_LIQ)
    assert _filled(seen) == [("buy", 100.0, False), ("sell", pytest.approx(LONG_LIQ), True)]
    assert res.orders[1]["time"] == res.orders[0]["time"] == T0 + 6 * 60_000


def test_the_broker_panel_shows_where_the_paper_broker_liquidates(tmp_path: Path) -> None:
    _, seen = _run(tmp_path, [(99.0, 99.5, 97.0, 98.0)] * 3)
    assert seen["panel"] == [pytest.approx(LONG_LIQ)]
    _, seen = _run(tmp_path, [(99.0, 99.5, 97.0, 98.0)] * 3, cash=100.0, mode="cross", size=5.0)
    assert seen["panel"] == [pytest.approx(400.5 / 4.98)]


def test_a_bar_that_stays_above_the_liquidation_price_liquidates_nothing(tmp_path: Path) -> None:
    res, seen = _run(tmp_path, [(99.0, 99.5, 95.0, 96.0), (96.0, 96.0, 90.4, 92.0)])
    assert _filled(seen) == [("buy", 100.0, False)]
    assert seen["position"] == 1.0 and seen["store"] == []


def test_a_protective_stop_above_the_liquidation_price_fills_first(tmp_path: Path) -> None:
    """The price falls through the stop before it reaches the liquidation price."""
    res, seen = _run(tmp_path, [(99.0, 99.5, 97.0, 98.0), (98.0, 98.0, 85.0, 86.0)], stop=95.0)
    assert _filled(seen) == [("buy", 100.0, False), ("sell", 95.0, False)]
    assert seen["store"] == [] and seen["position"] == 0
    assert res.metrics["final_value"] == pytest.approx(1000.0 - FEE * (100 + 95) - 5.0)


def test_a_stop_below_the_liquidation_price_is_cancelled_by_it_and_opens_no_short(
        tmp_path: Path) -> None:
    res, seen = _run(tmp_path, [(99.0, 99.5, 97.0, 98.0), (98.0, 98.0, 85.0, 86.0)], stop=88.0)
    assert _filled(seen) == [("buy", 100.0, False), ("sell", pytest.approx(LONG_LIQ), True)]
    assert [o["type"] for o in seen["orders"] if o["status"] == "Canceled"] == ["Stop"]
    assert seen["position"] == 0


def test_a_take_profit_the_same_bar_reaches_is_cancelled_by_the_liquidation(tmp_path: Path) -> None:
    """High and low in one bar: which came first is unknown, and the liquidation is taken to."""
    res, seen = _run(tmp_path, [(100.0, 106.0, 89.0, 95.0)], limit=105.0)
    assert _filled(seen) == [("buy", 100.0, False), ("sell", pytest.approx(LONG_LIQ), True)]
    assert [o["type"] for o in seen["orders"] if o["status"] == "Canceled"] == ["Limit"]


def test_a_take_profit_the_open_passes_fills_before_the_liquidation(tmp_path: Path) -> None:
    res, seen = _run(tmp_path, [(106.0, 107.0, 89.0, 95.0)], limit=105.0)
    assert _filled(seen) == [("buy", 100.0, False), ("sell", 106.0, False)]
    assert seen["store"] == []


def test_a_gap_past_the_bankruptcy_price_costs_the_margin_and_no_more(tmp_path: Path) -> None:
    res, seen = _run(tmp_path, [(85.0, 86.0, 84.0, 85.0)])
    assert _filled(seen) == [("buy", 100.0, False), ("sell", pytest.approx(90.0), True)]
    assert res.metrics["final_value"] == pytest.approx(1000.0 - 100.0 * FEE - 10.0)


def test_a_gap_between_liquidation_and_bankruptcy_liquidates_at_the_open(tmp_path: Path) -> None:
    res, seen = _run(tmp_path, [(90.2, 91.0, 89.0, 90.5)], stop=95.0)
    # the stop is past too, but the position was gone before the open: the stop is cancelled
    assert _filled(seen) == [("buy", 100.0, False), ("sell", pytest.approx(90.2), True)]
    assert [o["type"] for o in seen["orders"] if o["status"] == "Canceled"] == ["Stop"]


def test_cross_liquidates_when_the_account_runs_down_to_the_maintenance_margin(
        tmp_path: Path) -> None:
    """Cash 100, 5 BTC at 100 with 10x cross: margin 50, fee 0.5, free 49.5. Equity at p:
    ``49.5 + 50 + 5 (p - 100)``; maintenance ``0.02 p``: they meet at ``400.5 / 4.98``."""
    price = 400.5 / 4.98
    res, seen = _run(tmp_path, [(99.0, 99.0, 80.0, 85.0)], cash=100.0, mode="cross", size=5.0)
    assert _filled(seen) == [("buy", 100.0, False), ("sell", pytest.approx(price), True)]
    assert res.metrics["final_value"] == pytest.approx(0.02 * price)  # the maintenance left
    # a low of 81 does not reach it; isolated, the same position goes at 90.36
    res, _ = _run(tmp_path, [(99.0, 99.0, 81.0, 85.0)], cash=100.0, mode="cross", size=5.0)
    assert [o.get("liquidation", False) for o in res.orders] == [False]
    res, seen = _run(tmp_path, [(99.0, 99.0, 81.0, 85.0)], cash=100.0, size=5.0)
    assert _filled(seen)[-1] == ("sell", pytest.approx(LONG_LIQ), True)


def test_a_cross_gap_leaves_the_free_cash_at_zero_not_below(tmp_path: Path) -> None:
    res, seen = _run(tmp_path, [(70.0, 70.0, 60.0, 65.0)], cash=100.0, mode="cross", size=5.0)
    assert _filled(seen)[-1] == ("sell", 70.0, True)
    assert res.metrics["final_value"] == pytest.approx(0.0)
    assert seen["cash"] == pytest.approx(0.0)


# ---------------------------------------------------------------------------------- reduce-only
REDUCE = '''import json
import backtrader as bt


class Reduce(bt.Strategy):
    """Bar 6: buy 1 and a sell stop of 1 at 95 (a stop-loss); bar ``close_at``: close the
    long by a market order (or sell ``sell`` by one)."""

    params = (("close_at", 8), ("sell", 0.0), ("stop_size", 1.0), ("out", ""))

    def start(self):
        self.n = 0
        self.seen = {"orders": []}

    def notify_order(self, order):
        if order.status in (order.Completed, order.Partial, order.Canceled):
            self.seen["orders"].append({
                "status": order.getstatusname(), "type": order.getordername(),
                "side": "buy" if order.isbuy() else "sell", "size": order.executed.size,
                "reduce_only": bool(order.info.get("reduce_only")),
                "reason": order.info.get("reason")})

    def next(self):
        self.n += 1
        if self.n == 6:
            self.buy(size=1.0)
        elif self.n == 7:
            self.sell(size=self.p.stop_size, exectype=bt.Order.Stop, price=95.0)
        elif self.n == self.p.close_at:
            self.sell(size=self.p.sell) if self.p.sell else self.close()

    def stop(self):
        self.seen["position"] = self.broker.getposition(self.datas[0]).size
        with open(self.p.out, "w") as f:
            json.dump(self.seen, f)
'''


def _reduce(tmp_path: Path, **params: Any) -> dict[str, Any]:
    (tmp_path / "liq.py").write_text(STRATEGY)
    _run(tmp_path, [(100.0, 100.0, 100.0, 100.0)], stop=0.0)  # writes the config
    (tmp_path / "liq.py").write_text(REDUCE)
    from btccxt_cli.bt.replay import memory_rows
    from btccxt_cli.config.load import load_config
    from btccxt_cli.model import Candle
    from btccxt_cli.runtime.backtest import run_backtest

    flat = (100.0, 100.0, 100.0, 100.0)
    ohlc = [flat] * 10 + [(99.0, 99.0, 94.0, 95.0), (95.0, 95.0, 95.0, 95.0)]
    bars = [Candle(T0 + i * 60_000, o, h, lo, c, 1.0) for i, (o, h, lo, c) in enumerate(ohlc)]
    out = tmp_path / "seen.json"
    run_backtest(load_config(tmp_path / "liq.yaml"), tmp_path, memory_rows({(SWAP, "1m"): bars}),
                 T0 + 5 * 60_000, T0 + len(bars) * 60_000, params={"out": str(out), **params})
    return json.loads(out.read_text())


def test_a_paper_stop_loss_left_behind_after_its_long_closed_opens_no_short(tmp_path: Path) -> None:
    """The stop-loss is reduce-only, as the live broker sends it: when the bar reaches it the
    long is gone, so it is cancelled (live: okx 51169, binance REJECTED) and opens nothing."""
    seen = _reduce(tmp_path)
    stop = [o for o in seen["orders"] if o["type"] == "Stop"]
    assert stop == [{"status": "Canceled", "type": "Stop", "side": "sell", "size": 0,
                     "reduce_only": True, "reason": "reduce-only: nothing left to reduce"}]
    assert seen["position"] == 0


def test_a_paper_reduce_only_stop_fills_up_to_what_is_left(tmp_path: Path) -> None:
    seen = _reduce(tmp_path, sell=0.4, stop_size=0.6)  # 0.6 stop + 0.4 sell: both reduce
    done = [(o["type"], o["status"], o["size"]) for o in seen["orders"] if o["side"] == "sell"]
    assert done == [("Market", "Completed", -0.4), ("Stop", "Completed", -0.6)]
    assert seen["position"] == 0
    # the market sell makes the stop larger than what is left: it fills 0.5, the rest goes
    (tmp_path / "b").mkdir()
    seen = _reduce(tmp_path / "b", sell=0.5, stop_size=0.6)
    stop = [(o["status"], o["size"]) for o in seen["orders"] if o["type"] == "Stop"]
    assert stop == [("Partial", -0.5), ("Canceled", -0.5)]
    assert seen["position"] == 0
    [last] = [o for o in seen["orders"] if o["type"] == "Stop" and o["status"] == "Canceled"]
    assert last["reason"] == "reduce-only: filled up to the position (0.5); the rest is cancelled"


def test_a_paper_order_that_goes_past_zero_is_not_reduce_only_and_flips(tmp_path: Path) -> None:
    seen = _reduce(tmp_path, stop_size=1.5, close_at=99)  # a stop of 1.5 on a long of 1: a flip
    [stop] = [o for o in seen["orders"] if o["type"] == "Stop"]
    assert (stop["status"], stop["size"], stop["reduce_only"]) == ("Completed", -1.5, False)
    assert seen["position"] == pytest.approx(-0.5)
