"""Liquidation of swaps on the paper broker (paper runs and ``btccxt backtest``).

The rule is the simulator's (``sim/positions.py``), read on bars instead of seconds:

* **Isolated.** A position is liquidated when its margin (``|size| * entry / leverage``) plus
  its unrealised P&L falls to its maintenance margin (``|size| * price * 0.4 %``): at
  ``entry * (1 - 1/lev) / (1 - 0.004)`` for a long, ``entry * (1 + 1/lev) / (1 + 0.004)`` for
  a short. It never loses more than its margin: a bar that opens beyond the bankruptcy price
  (``entry * (1 -/+ 1/lev)``) closes it there (the insurance fund takes the rest).
* **Cross.** The cross positions are liquidated together when the account's free cash plus
  their margins and unrealised P&L falls to the sum of their maintenance margins. The free
  cash never goes below zero.
* **Within a bar** the price is taken to move from the open straight to the bar's adverse
  extreme (the low for a long, the high for a short; with several cross positions, all of
  them at once: the worst case). A bar whose extreme reaches the liquidation price liquidates
  at that price; one that opens beyond it, at the open.
* **Orders of the bar.** An order of the same symbol fills before the liquidation only when
  the price reaches it first on that way: at the open (market orders, and stops and limits
  the open already passes), or on the adverse move before the liquidation price (for a long:
  a sell stop at or above it, a buy limit at or above it). Every other order of the symbol
  (one that needs the price to move the other way first, or a close-of-bar order) is
  cancelled by the liquidation, as exchanges cancel a liquidated position's orders. When
  the orders that fill first take the position out of danger, the others are matched
  against the bar as usual.
* **What the strategy sees.** The position is closed by a market order of the broker's own
  (``order.info.liquidation`` is True, no fee), so ``notify_order`` gets it ``Completed`` and
  backtrader closes the ``Trade``; every strategy's ``notify_store("position_closed",
  data=..., symbol=..., before=..., after=0.0, price=..., reason="liquidation")`` says so,
  as the live broker does (``docs/swaps.md``).

``funding_broker.swap_broker_class`` calls :func:`plan` before backtrader matches a bar's
orders and :func:`settle` after it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from btccxt_cli.bt.derivs import MAINT_RATE

__all__ = ["Leg", "crossing", "isolated_price", "bankruptcy_price", "cross_price", "Plan",
           "plan", "settle", "estimate"]

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------- the rule
def isolated_price(entry: float, size: float, leverage: float,
                   maint: float = MAINT_RATE) -> float | None:
    """Where an isolated position of ``size`` (signed) at ``entry`` is liquidated."""
    if not size or entry <= 0 or leverage <= 0:
        return None
    lev = max(1.0, float(leverage))
    if size > 0:
        return entry * (1 - 1 / lev) / (1 - maint)
    return entry * (1 + 1 / lev) / (1 + maint)


def bankruptcy_price(entry: float, size: float, leverage: float) -> float:
    """Where an isolated position's margin is gone (``entry * (1 -/+ 1/lev)``)."""
    lev = max(1.0, float(leverage))
    return entry * (1 - 1 / lev) if size > 0 else entry * (1 + 1 / lev)


@dataclass
class Leg:
    """One position on a bar's way: from ``start`` (the open, or its fill in this bar) to
    ``extreme`` (the bar's adverse extreme)."""

    key: Any
    size: float
    entry: float
    start: float
    extreme: float

    def at(self, t: float) -> float:
        return self.start + t * (self.extreme - self.start)


def crossing(base: float, legs: list[Leg], maint: float = MAINT_RATE) -> float | None:
    """The first ``t`` in [0, 1] at which ``base + sum(size * (price - entry))`` falls to
    ``maint * sum(|size| * price)``, every leg at ``leg.at(t)``; None if it never does.
    ``base`` is what backs the legs besides their P&L (an isolated position's margin; for
    cross, the free cash plus the cross margins)."""

    def f(t: float) -> float:
        return base + sum(g.size * (g.at(t) - g.entry) - maint * abs(g.size) * g.at(t)
                          for g in legs)

    f0, f1 = f(0.0), f(1.0)
    if f0 <= 0:
        return 0.0
    if f1 > 0:
        return None
    return min(1.0, max(0.0, f0 / (f0 - f1)))


def cross_price(base: float, legs: list[Leg], key: Any, maint: float = MAINT_RATE) -> float | None:
    """The price of ``key``'s leg at which the cross account is liquidated, the other legs
    held where they are (their ``start``); None when no price of it does (e.g. a hedged
    book)."""
    mine = next((g for g in legs if g.key == key), None)
    if mine is None or not mine.size:
        return None
    rest = base + sum(g.size * (g.start - g.entry) - maint * abs(g.size) * g.start
                      for g in legs if g.key != key)
    # rest + s * (p - e) - maint * |s| * p = 0
    slope = mine.size - maint * abs(mine.size)
    price = (mine.size * mine.entry - rest) / slope
    return price if price > 0 else None


# ---------------------------------------------------------------------------------- the broker
@dataclass
class Plan:
    """A bar's liquidations as seen before its orders: the orders held back (they would fill
    after the liquidation) and each position's state at the bar's start."""

    held: list[Any] = field(default_factory=list)
    before: dict[Any, tuple[float, float]] = field(default_factory=dict)  # data -> size, entry
    fills: dict[Any, float] = field(default_factory=dict)  # data -> last fill price this bar
    levels: dict[Any, tuple[float, bool]] = field(default_factory=dict)  # as seen before orders

    def fill(self, data: Any, pos: Any, price: float) -> None:
        """A fill of ``data`` at ``price`` is about to move ``pos`` (the broker's hook): the
        position as the bar found it is kept at its first fill."""
        self.before.setdefault(data, (float(pos.size), float(pos.price)))
        self.fills[data] = float(price)


def _new_bar(st: Any, data: Any) -> bool:
    """Has ``data`` a bar this cycle that no check has seen yet?"""
    n = len(data)
    return bool(n) and st.bars.get(data) != n


def _ohlc(data: Any) -> tuple[float, float, float, float]:
    return (float(data.open[0]), float(data.high[0]), float(data.low[0]), float(data.close[0]))


def _legs(broker: Any, st: Any, fills: dict[Any, float], before: dict[Any, tuple[float, float]]
          ) -> tuple[list[Leg], list[Leg]]:
    """The isolated positions this bar takes to their liquidation price or beyond, and every
    cross position, on this bar's way (one pass; the common case, an isolated position the bar
    leaves alone, costs one comparison)."""
    isolated: list[Leg] = []
    cross: list[Leg] = []
    for data, pos in broker.positions.items():
        size = pos.size
        if not size:
            continue
        spec = st.specs.get(data._name)
        if spec is None:
            continue
        n = len(data)
        if not n:
            continue
        size, entry = float(size), float(pos.price)
        fresh = st.bars.get(data) != n
        if spec.margin_mode == "isolated":
            if not fresh:
                continue
            extreme = float(data.low[0] if size > 0 else data.high[0])
            liq = isolated_price(entry, size, spec.leverage)
            if liq is None or (extreme > liq if size > 0 else extreme < liq):
                continue
        elif not fresh:
            close = float(data.close[0])
            cross.append(Leg(data, size, entry, close, close))
            continue
        else:
            extreme = float(data.low[0] if size > 0 else data.high[0])
        start = float(data.open[0])
        if data in fills and before[data] != (size, entry):
            start = fills[data]  # it changed in this bar: from its last fill on
        (isolated if spec.margin_mode == "isolated" else cross).append(
            Leg(data, size, entry, start, extreme))
    return isolated, cross


def _free_cash(broker: Any, st: Any) -> float:
    """The cash less every swap's P&L backtrader marked into it (the margins are out of it)."""
    free = float(broker.cash)
    for data, pos in broker.positions.items():
        if pos.size and data._name in st.specs:
            free -= float(pos.size) * (float(pos.adjbase) - float(pos.price))
    return free


def _cross_base(broker: Any, st: Any) -> float:
    """Free cash plus the margins of the cross positions."""
    base = _free_cash(broker, st)
    for data, pos in broker.positions.items():
        spec = st.specs.get(data._name)
        if spec is not None and pos.size and spec.margin_mode == "cross":
            base += abs(float(pos.size)) * float(pos.price) / max(1.0, spec.leverage)
    return base


def _levels(broker: Any, st: Any, fills: dict[Any, float],
            before: dict[Any, tuple[float, float]]) -> dict[Any, tuple[float, bool]]:
    """Each position this bar liquidates: data -> (price, at the open)."""
    out: dict[Any, tuple[float, bool]] = {}
    isolated, cross = _legs(broker, st, fills, before)
    for g in isolated:
        if g.start == g.extreme:
            continue
        lev = st.specs[g.key._name].leverage
        t = crossing(abs(g.size) * g.entry / max(1.0, lev), [g])
        if t is not None:
            out[g.key] = (g.at(t), t == 0.0)
    if cross and any(g.start != g.extreme for g in cross):
        t = crossing(_cross_base(broker, st), cross)
        if t is not None:
            for g in cross:
                out[g.key] = (g.at(t), t == 0.0)
    return out


def _path_price(order: Any, long: bool, o: float) -> float | None:
    """Where ``order`` fills on the way from the open ``o`` in the adverse direction (down for
    a long position, up for a short): the open if it fills there, the order's price if the
    adverse move reaches it, else None (it needs the other way, or the close)."""
    from backtrader import Order

    kind = order.exectype
    buy = order.isbuy()
    if kind == Order.Market:
        return o
    if kind in (Order.Close, Order.Historical):
        return None
    if kind in (Order.StopLimit, Order.StopTrailLimit) and order.triggered:
        kind, price = Order.Limit, order.created.pricelimit
    elif kind in (Order.Limit, Order.Stop, Order.StopTrail, Order.StopLimit, Order.StopTrailLimit):
        price = order.created.price
    else:
        return None
    if price is None:
        return None
    is_limit = kind == Order.Limit
    # filled at the open: a limit the open is through, a stop the open is past
    if (is_limit and ((buy and o <= price) or (not buy and o >= price))) or \
            (not is_limit and ((buy and o >= price) or (not buy and o <= price))):
        return o
    falling = long  # the adverse move
    if (falling and ((is_limit and buy) or (not is_limit and not buy))) or \
            (not falling and ((is_limit and not buy) or (not is_limit and buy))):
        return float(price)
    return None


def _first(order: Any, level: float, at_open: bool, long: bool, o: float) -> bool:
    """Does ``order`` fill before a liquidation at ``level``?"""
    if at_open:
        return False
    p = _path_price(order, long, o)
    if p is None:
        return False
    return p >= level if long else p <= level


def plan(broker: Any, st: Any) -> Plan:
    """Before backtrader matches the bar's orders: hold back the orders of each position the
    bar liquidates that would fill after it (out of ``broker.pending``)."""
    p = Plan()
    st.plan = p
    levels = _levels(broker, st, p.fills, p.before)
    p.levels = levels
    if not levels:
        return p
    keep = []
    for order in list(broker.pending):
        lv = levels.get(order.data)
        if lv is not None and order.alive() and order.active():
            size = broker.positions[order.data].size  # no order of the bar has run yet
            if not _first(order, lv[0], lv[1], size > 0, float(order.data.open[0])):
                p.held.append(order)
                continue
        keep.append(order)
    if p.held:
        broker.pending.clear()
        broker.pending.extend(keep)
    return p


def settle(broker: Any, st: Any, p: Plan) -> None:
    """After backtrader matched the bar's orders: liquidate what the bar still takes below its
    maintenance margin; cancel its held-back orders, or match them now when it is safe."""
    st.plan = None
    # no fill in this bar: the positions are as they were, and so are the liquidations
    levels = _levels(broker, st, p.fills, p.before) if p.fills or p.held else p.levels
    touched = set()
    for data, (price, _) in levels.items():
        _liquidate(broker, st, data, price)
        touched.add(data)
    if levels and any(st.specs[d._name].margin_mode == "cross" for d in levels):
        _floor_cross_cash(broker, st)
    for order in p.held:  # out of danger: matched against the bar as backtrader would have
        if order.data in touched:
            continue
        broker._try_exec(order)
        if order.alive():
            broker.pending.append(order)
        elif order.status == order.Completed:
            broker._bracketize(order)
        touched.add(order.data)
    for data in touched:  # a fill after backtrader's end-of-bar mark: mark it to the close
        pos = broker.positions[data]
        if pos.size:
            ci = broker.getcommissioninfo(data)
            broker.cash += ci.cashadjust(pos.size, pos.adjbase, data.close[0])
            pos.adjbase = data.close[0]
    for data in levels:  # the exchange cancels a liquidated position's orders
        broker.pending.extend(o for o in p.held if o.data is data and o.alive())
        for order in [o for o in list(broker.pending) if o.data is data]:
            if order.alive():
                broker.cancel(order)
    if touched:
        broker._get_value()
    for data, pos in broker.positions.items():  # this cycle's bars are checked
        if pos.size and data._name in st.specs:
            st.bars[data] = len(data)


def _liquidate(broker: Any, st: Any, data: Any, price: float) -> None:
    import backtrader as bt

    pos = broker.positions[data]
    size, entry = float(pos.size), float(pos.price)
    spec = st.specs[data._name]
    if spec.margin_mode == "isolated":
        floor = bankruptcy_price(entry, size, spec.leverage)
        price = max(price, floor) if size > 0 else min(price, floor)
    owner = st.owners.get(data)
    cls = bt.SellOrder if size > 0 else bt.BuyOrder
    order = cls(owner=owner, data=data, size=abs(size), price=price, exectype=bt.Order.Market)
    order.addinfo(liquidation=True, reason=f"liquidation: {spec.margin_mode} margin down to "
                                           f"the maintenance margin at {price:.8g}")
    order.submit(broker)
    order.accept(broker)
    broker._ocoize(order, None)
    free = bt.CommInfoBase(commission=0.0, commtype=bt.CommInfoBase.COMM_PERC, percabs=True,
                           stocklike=False, mult=1.0, leverage=1.0,
                           automargin=1.0 / max(1.0, spec.leverage))
    name = data._name
    old = broker.comminfo.get(name)
    broker.comminfo[name] = free
    try:
        broker._execute(order, ago=0, price=price)
    finally:
        if old is None:
            del broker.comminfo[name]
        else:
            broker.comminfo[name] = old
    logger.info("paper liquidation: %s %s %g at %g (entry %g, %gx %s)", name,
                "long" if size > 0 else "short", abs(size), price, entry, spec.leverage,
                spec.margin_mode)
    st.liquidations.append((name, size, price))
    strats = _strategies(owner)
    for strat in strats:
        strat.notify_store("position_closed", data=data, symbol=name, before=size, after=0.0,
                           price=price, reason="liquidation")


def estimate(broker: Any, st: Any, data: Any) -> float | None:
    """The price of ``data`` at which its position would be liquidated now (cross: the other
    cross positions at their last close)."""
    pos = broker.positions[data] if data in broker.positions else None
    spec = st.specs.get(data._name)
    if pos is None or not pos.size or spec is None:
        return None
    if spec.margin_mode == "isolated":
        return isolated_price(float(pos.price), float(pos.size), spec.leverage)
    legs = []
    for d, p in broker.positions.items():
        sp = st.specs.get(d._name)
        if sp is not None and sp.margin_mode == "cross" and p.size and len(d):
            mark = float(d.close[0])
            legs.append(Leg(d, float(p.size), float(p.price), mark, mark))
    return cross_price(_cross_base(broker, st), legs, data)


def _floor_cross_cash(broker: Any, st: Any) -> None:
    """A cross liquidation leaves the free cash at zero at worst."""
    free = _free_cash(broker, st)
    if free < 0:
        broker.cash -= free


def _strategies(owner: Any) -> Iterable[Any]:
    env = getattr(owner, "env", None)
    strats = list(getattr(env, "runningstrats", None) or [])
    return strats or ([owner] if owner is not None else [])
