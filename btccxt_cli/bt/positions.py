"""The live broker's view of the bot's own positions, and the checks that use it
(``docs/orders.md``, "Cash, value, positions" and "Safety").

:class:`Positions` mirrors the orders database's ledger (``cache/orders.py``, ``positions``) on
the strategy thread: the worker's ``ready`` and ``adopted`` events load it, and each new fill's
event carries the position after it, so it moves in the batch that notifies the fill. It
refuses an order that would sell more than the bot holds or take a position beyond a cap
(counting what every open order on the order's side has yet to fill), and checks balance reads
against it. Amounts are compared within half the market's amount step (:func:`amount_tolerance`).

No backtrader or ccxt here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["OrderLimits", "Positions", "amount_tolerance"]

logger = logging.getLogger(__name__)

#: ccxt's ``precisionMode`` values (``ccxt.DECIMAL_PLACES``, ``ccxt.TICK_SIZE``)
_DECIMAL_PLACES, _TICK_SIZE = 2, 4

#: what an open order has yet to fill: (symbol, side, base units)
OpenRest = tuple[str, str, float]


@dataclass(frozen=True)
class OrderLimits:
    """Local limits; an order that would breach one is Rejected before it is sent.

    Args:
        max_position: per symbol, the largest absolute position (base units) the bot's position
            plus every open buy (or sell) plus this order may reach.
        max_notional: per symbol, the largest absolute value of that position (quote units, at
            the order's price, else the last close).
        max_orders_per_minute: orders sent in any 60 s window.
        max_leverage: swaps, per symbol, the highest leverage the broker may set.
        min_liquidation_distance: swaps, an order that would bring the position's estimated
            liquidation price within this fraction of the price is rejected.
    """

    max_position: dict[str, float] = field(default_factory=dict)
    max_notional: dict[str, float] = field(default_factory=dict)
    max_orders_per_minute: int | None = None
    max_leverage: dict[str, float] = field(default_factory=dict)
    min_liquidation_distance: float | None = None


def amount_tolerance(market: dict[str, Any] | None, precision_mode: int | None,
                     amount: float = 0.0) -> float:
    """How far apart two amounts of ``market`` may be and still be equal: half its amount step
    (amounts are whole steps, so a missing fill is at least one step), else 1e-9 of the amount.

    Sums of fills are floats: at 1e7 in 0.1 lots they miss the exchange's total by more than
    any fixed epsilon, and an order compared that way would never complete.
    """
    prec = ((market or {}).get("precision") or {}).get("amount")
    step = 0.0
    if prec is not None:
        if precision_mode == _TICK_SIZE:
            step = float(prec)
        elif precision_mode == _DECIMAL_PLACES:
            step = 10.0 ** -float(prec)
    if step > 0:  # a swap's amounts are whole contracts
        if (market or {}).get("contract"):
            step *= float((market or {}).get("contractSize") or 1.0)
        return step / 2
    return 1e-9 * max(1.0, abs(amount))


class Positions:
    """The bot's own positions (strategy thread): ``held[symbol] = (size, average price)``."""

    def __init__(self) -> None:
        self.held: dict[str, tuple[float, float]] = {}
        self.at_start: dict[str, tuple[float, float]] = {}  # trades open from these
        self.markets: dict[str, Any] = {}
        self.precision_mode: int | None = None
        self._short: set[str] = set()  # base currencies the account holds less of than the bot

    def get(self, symbol: str) -> tuple[float, float]:
        return self.held.get(symbol, (0.0, 0.0))

    def tol(self, symbol: str, amount: float = 0.0) -> float:
        return amount_tolerance(self.markets.get(symbol), self.precision_mode, amount)

    def exposure(self, symbol: str, open_rest: Iterable[OpenRest]) -> tuple[float, float, float]:
        """The bot's position in ``symbol`` and what its open buys and sells still add or take."""
        buys = sells = 0.0
        for sym, side, rest in open_rest:
            if sym != symbol:
                continue
            if side == "buy":
                buys += rest
            else:
                sells += rest
        return self.get(symbol)[0], buys, sells

    def refuse(self, symbol: str, side: str, size: float, price: float, limits: OrderLimits,
               open_rest: Iterable[OpenRest], short_ok: bool = False) -> str | None:
        """Why an order of ``size`` may not be sent (None: it may), counting every open order
        as if it filled. ``price``: the order's, else the last close (for ``max_notional``).
        ``short_ok``: a swap, where a sell beyond the bot's long opens a short."""
        market = self.markets.get(symbol) or {}
        held, buys, sells = self.exposure(symbol, open_rest)
        tol = self.tol(symbol, size)
        base = market.get("base", "")
        buy = side == "buy"
        if not buy and not short_ok and size > held - sells + tol:
            free = max(0.0, held - sells)
            opened = f", {sells:g} of it in open sells" if sells > tol else ""
            return (f"{symbol}: a sell of {size:g} {base} is more than this bot holds "
                    f"({held:g} {base}{opened}; {free:g} free to sell). The bot sells only what "
                    f"its own orders bought; set broker.adopt_holdings: true to let it trade "
                    f"the {base} the account already holds")
        projected = held + buys + size if buy else held - sells - size
        if abs(projected) <= abs(held) + tol:
            return None  # the order takes the position towards zero: no cap stops that
        detail = (f" (bot position {held:g}, open {'buys' if buy else 'sells'} "
                  f"{buys if buy else sells:g}, this order {size:g})")
        cap = limits.max_position.get(symbol)
        if cap is not None and abs(projected) > cap + tol:
            return (f"{symbol}: the position would reach {abs(projected):g}, above "
                    f"broker.limits.max_position[{symbol}] = {cap:g}{detail}")
        cap = limits.max_notional.get(symbol)
        if cap is not None and abs(projected) * price > cap * (1 + 1e-12):
            return (f"{symbol}: the position would be worth {abs(projected) * price:,.2f} "
                    f"{market.get('quote', '')}, above broker.limits.max_notional[{symbol}] "
                    f"= {cap:g}{detail}")
        return None

    def reconcile(self, balances: dict[str, tuple[float, float, float]],
                  open_rest: Iterable[OpenRest]) -> None:
        """A balance read checks the bot's positions against the account: if the account holds
        less than the bot's positions (less their open sells), coins were moved outside the
        bot and its sells may be refused by the exchange. Warned once per episode; the
        positions are never lowered to a balance, which may lag them."""
        rests = list(open_rest)
        want: dict[str, float] = {}
        tol: dict[str, float] = {}
        for symbol, (size, _price) in self.held.items():
            market = self.markets.get(symbol) or {}
            base = market.get("base")
            if base is None or not size or market.get("contract"):  # a swap holds no coins
                continue
            held, _buys, sells = self.exposure(symbol, rests)
            want[base] = want.get(base, 0.0) + held - sells
            tol[base] = tol.get(base, 0.0) + self.tol(symbol, held)
        for base, need in want.items():
            have = balances.get(base, (0.0, 0.0, 0.0))[2]
            if need > have + tol[base]:
                if base not in self._short:
                    self._short.add(base)
                    logger.warning("the account holds %g %s, less than the bot's position of %g: "
                                   "coins were moved outside this bot; its sells may be refused",
                                   have, base, need)
            else:
                self._short.discard(base)
