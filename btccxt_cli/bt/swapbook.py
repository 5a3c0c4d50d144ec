"""The live broker's swaps on the strategy thread (``docs/swaps.md``): the exchange's positions,
funding told to the strategy, positions closed outside the bot, and the checks an order on a
swap passes before it is sent.

* **One position per symbol** (net mode): the exchange nets every order of the account, so
  the bot's position (its ledger) is part of the exchange's, and the rest (``foreign``) was
  opened by someone else: taken by the worker with a positions read while no order of the bot
  in that symbol was in flight (``derivs.foreign_sizes``), and kept until the next such read
  (the bot's own fills between reads move its ledger, not the foreign part). The bot never
  trades against a foreign position: an order that would take the bot's position to the other
  side of it is rejected (it would close what the bot did not open), unless
  ``broker.adopt_holdings`` made it the bot's.
* **Reduce-only**: an order that only takes the bot's position towards zero is sent
  ``reduceOnly``, so the exchange itself never lets it open a position.
* **Liquidation distance** (``limits.min_liquidation_distance``): an order that grows the
  position is rejected when the estimated liquidation price of the position after it
  (isolated formula, :func:`~btccxt_cli.bt.derivs.liquidation_estimate`) is within that
  fraction of the price.
* **Notices** to the strategy through backtrader's ``notify_store(msg, **kwargs)``:
  ``"funding"`` (data, amount (< 0: paid), currency, time_ms, id) and ``"position_closed"``
  (data, before, after, price, reason: ``liquidation`` or ``closed outside``).

No ccxt here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from btccxt_cli.bt.derivs import ExPosition, is_contract, liquidation_estimate
from btccxt_cli.bt.positions import OpenRest, OrderLimits, Positions
from btccxt_cli.model import DerivPosition

__all__ = ["SwapBook"]

logger = logging.getLogger(__name__)


class SwapBook:
    """Swap state of one live broker (strategy thread)."""

    def __init__(self, leverage: dict[str, float], margin_mode: dict[str, str]) -> None:
        self.leverage = leverage
        self.margin_mode = margin_mode
        self.exchange: dict[str, ExPosition] = {}  # the exchange's positions, last read
        self._foreign: dict[str, float] = {}  # the part the bot did not open, last known
        #: before it is first known: the last read's estimate (``derivs.foreign_sizes``)
        self._estimate: dict[str, float] = {}
        self.funding: dict[str, float] = {}  # funding this run, per symbol (< 0: paid)
        self.notices: list[tuple[str, str, dict[str, Any]]] = []  # (msg, symbol, kwargs)

    # ------------------------------------------------------------------ events
    def on_positions(self, data: dict[str, Any]) -> None:
        """A positions read: ``{"positions": {symbol: ExPosition}, "foreign": {symbol: size or
        None}, "estimate": {symbol: size}}`` (None: an order of the bot was in flight; the last
        known part stays, and until one is known, the read's estimate counts)."""
        self.exchange = dict(data["positions"])
        for symbol, size in (data.get("foreign") or {}).items():
            if size is not None:
                self._foreign[symbol] = float(size)
        for symbol, size in (data.get("estimate") or {}).items():
            self._estimate[symbol] = float(size)

    def on_funding(self, data: dict[str, Any]) -> None:
        symbol = str(data["symbol"])
        self.funding[symbol] = self.funding.get(symbol, 0.0) + float(data["amount"])
        self.notices.append(("funding", symbol, {"amount": float(data["amount"]),
                                                 "currency": data.get("currency"),
                                                 "time_ms": int(data["time_ms"]),
                                                 "id": str(data["id"])}))

    def on_outside(self, data: dict[str, Any], positions: Positions) -> None:
        symbol = str(data["symbol"])
        size, price = data["holding"]
        positions.held[symbol] = (float(size), float(price))
        self.notices.append(("position_closed", symbol, {
            "before": float(data["before"]), "after": float(data["after"]),
            "price": float(data["price"]), "reason": str(data["reason"])}))

    # ------------------------------------------------------------------ checks
    def foreign(self, symbol: str) -> float:
        """What the exchange holds in ``symbol`` beyond the bot's position (signed): as last
        known from a read with no order of the bot in flight. Before one (an order of unsure
        outcome at start, ``derivs.foreign_sizes``), the last read's estimate: the value
        nearest zero that fills of the bot's orders the ledger had not taken at that read can
        explain (a buy's fill read but not taken adds up to its rest to the difference, a
        sell's takes it away). Both are of a read's own time, never the exchange's position
        of one time less the bot's of another (0 before any read)."""
        if symbol in self._foreign:
            return self._foreign[symbol]
        return self._estimate.get(symbol, 0.0)

    def refuse(self, symbol: str, side: str, size: float, price: float, positions: Positions,
               limits: OrderLimits, open_rest: Iterable[OpenRest]) -> str | None:
        """Why an order on a swap may not be sent (None: it may)."""
        rests = list(open_rest)
        reason = positions.refuse(symbol, side, size, price, limits, rests, short_ok=True)
        if reason is not None:
            return reason
        held, buys, sells = positions.exposure(symbol, rests)
        buy = side == "buy"
        projected = held + buys + size if buy else held - sells - size
        tol = positions.tol(symbol, size)
        foreign = self.foreign(symbol)
        market = positions.markets.get(symbol) or {}
        base = market.get("base", "")
        if abs(foreign) > tol and (projected > tol and foreign < 0 or projected < -tol and foreign > 0):
            kind = "long" if foreign > 0 else "short"
            return (f"{symbol}: the account holds a {kind} of {abs(foreign):g} {base} this bot did "
                    f"not open; this order would take the bot's position to {projected:g} and the "
                    f"exchange nets one position per symbol, so it would close that {kind}. Close "
                    "it on the exchange, or set broker.adopt_holdings: true to let the bot trade it")
        dist = limits.min_liquidation_distance
        if dist is not None and abs(projected) > abs(held) + tol and price > 0:
            lev = self.leverage.get(symbol, 1.0)
            hp = positions.get(symbol)[1]
            same = held and (held > 0) == (projected > 0)
            entry = (abs(held) * hp + (abs(projected) - abs(held)) * price) / abs(projected) \
                if same else price
            liq = liquidation_estimate(projected, entry, lev)
            if liq is not None and abs(price - liq) / price < dist:
                return (f"{symbol}: the position would reach {projected:g} {base} at {lev:g}x, with "
                        f"an estimated liquidation price of {liq:,.6g}, within "
                        f"{abs(price - liq) / price:.1%} of the price {price:,.6g} "
                        f"(broker.limits.min_liquidation_distance = {dist:g}); lower the leverage "
                        "or the size")
        return None

    def reduce_only(self, symbol: str, side: str, size: float, positions: Positions,
                    open_rest: Iterable[OpenRest]) -> bool:
        """The order only takes the bot's position towards zero (counting open orders that
        reduce it too): sent ``reduceOnly``."""
        held, buys, sells = positions.exposure(symbol, open_rest)
        tol = positions.tol(symbol, size)
        if side == "sell":
            return held > tol and size <= held - sells + tol
        return held < -tol and size <= -held - buys + tol

    # ------------------------------------------------------------------ value and the panel
    def upnl(self, symbol: str, close: float | None) -> float:
        """The exchange position's unrealised P&L at ``close`` (the exchange's if no close)."""
        pos = self.exchange.get(symbol)
        if pos is None:
            return 0.0
        if close is None or not pos.entry:
            return pos.upnl
        return pos.size * (close - pos.entry)

    def rows(self, positions: Positions, closes: dict[str, float]) -> list[DerivPosition]:
        """The bot's swap positions for the dashboard (and any symbol that paid funding)."""
        out: list[DerivPosition] = []
        symbols = [s for s, m in positions.markets.items() if is_contract(m)
                   and (positions.get(s)[0] or s in self.funding)]
        for symbol in symbols:
            size, entry = positions.get(symbol)
            pos = self.exchange.get(symbol)
            mark = closes.get(symbol) or (pos.mark if pos else entry)
            liq = pos.liquidation if pos is not None else None
            if liq is None and size:
                liq = liquidation_estimate(size, entry, self.leverage.get(symbol, 1.0))
            out.append(DerivPosition(
                symbol=symbol, size=size, entry=entry, mark=mark,
                upnl=size * (mark - entry) if size else 0.0, liquidation=liq,
                leverage=self.leverage.get(symbol, 1.0),
                margin_mode=self.margin_mode.get(symbol, "isolated"),
                funding=-self.funding.get(symbol, 0.0)))
        return out

    def take_notices(self) -> list[tuple[str, str, dict[str, Any]]]:
        out, self.notices = self.notices, []
        return out
