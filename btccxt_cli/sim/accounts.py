"""Simulated accounts: API keys, balances and a matching engine on the market model's price path.

Pure: no sockets, no asyncio, no wire formats. The venues (``venues/binance_private.py``,
``venues/okx_private.py``) turn requests into calls of :class:`Engine` and its answers into
each exchange's JSON; the engine only knows orders, fills and balances.

Matching rules (``docs/simulator.md`` states them for users):

* The price is ``MarketModel.price(symbol, t)`` rounded to the market's tick, the same rounding
  that makes candle opens and closes, so fills at a second boundary equal the 1s bars.
* **Market orders** fill at once, in full, at the current price (taker).
* **Limit orders** fill at once, as far as liquidity allows, when marketable (taker, at the
  current price); the rest rests and fills at its limit price (maker) when the path crosses it.
* **Liquidity**: per symbol and second, at most ``liquidity`` times the volume of that second's
  1s candle trades against resting orders (time priority). A large limit order therefore fills
  in several parts over several seconds (``partially_filled``).
* **Stops** (binance ``STOP_LOSS`` / ``STOP_LOSS_LIMIT``): a sell triggers when the price falls
  to the stop, a buy when it rises to it; then it behaves as a market or limit order.
* The path is sampled at every second boundary since the last look, and at "now". The engine
  catches up lazily, before every request (:meth:`Engine.advance`), so a ``ManualClock`` jump
  fills orders exactly as if time had passed, and every fill carries the time it happened.
* **Fees** are charged in the asset received (binance and okx spot without fee tokens): base
  currency on buys, quote currency on sells; maker and taker rates per venue.
* **Funds**: a limit buy locks ``amount * price`` quote, a sell locks ``amount`` base; a market
  buy needs ``amount * price`` free quote. Short of funds: :class:`Reject` ``insufficient_funds``.
* **Order events**: every change of an order (accepted, stop triggered, each fill, cancelled,
  expired) is reported, in the order it happened, to the listeners added with
  :meth:`Engine.add_listener` as an :class:`OrderEvent` (the private WebSocket streams push them).

Must not import ccxt, aiohttp or anything from the client side of btccxt.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from btccxt_cli.sim.ledger import (
    DEFAULT_BALANCES,
    DEFAULT_KEY,
    EPS,
    EVENT_KINDS,
    OPEN_STATES,
    ORDER_TYPES,
    Account,
    Fill,
    OrderEvent,
    OrderListener,
    Reject,
    SimKey,
    SimOrder,
    hmac_sha256_b64,
    hmac_sha256_hex,
    is_on_grid,
    order_dict,
    parse_balance_spec,
    parse_key_spec,
    same_signature,
    tidy,
)
from btccxt_cli.sim.market import MarketModel, MarketSpec
from btccxt_cli.sim.matching import Matching, locked_asset
from btccxt_cli.sim.positions import FUNDING_INTERVAL_MS, Derivatives

logger = logging.getLogger(__name__)

# the ledger's names are re-exported: importers of ``accounts`` keep working
__all__ = [
    "SimKey", "DEFAULT_KEY", "DEFAULT_BALANCES", "parse_key_spec", "parse_balance_spec",
    "hmac_sha256_hex", "hmac_sha256_b64", "same_signature", "Reject", "Fill", "SimOrder",
    "Account", "Engine", "OrderEvent", "OrderListener", "ORDER_TYPES", "OPEN_STATES",
    "EVENT_KINDS", "order_dict",
]

T = TypeVar("T")


# --------------------------------------------------------------------------- the engine
class Engine(Matching):
    """Orders, fills and balances of every account on one simulated exchange.

    Args:
        model: the simulator's market model (prices and 1s volumes).
        specs: the listed markets (unified symbol -> spec).
        keys: API keys whose accounts exist; each gets its own balances.
        balances: default starting balances (a key's own ``balances`` win).
        maker_fee, taker_fee: fee rates (fractions).
        liquidity: multiple of each second's 1s-candle volume that can trade against resting
            orders in that second (``inf``: resting orders fill in full when crossed).
        first_order_id: the first order id handed out (venues format it their way).
        unique_client_ids: ``"open"``: a client id may not repeat among open orders (binance,
            okx); ``"all"``: never.
        derivatives: trade swaps with positions and margin (``positions.Derivatives``, reached
            as ``engine.derivs``); False: swap orders are refused (``unsupported``).
        funding_interval_ms, default_leverage, max_leverage: swaps (see ``positions.py``).

    Every public method takes ``now_ms`` (the exchange's clock) and first catches up with the
    price path. Methods are thread-safe (one lock), but meant to run on the simulator's loop.

    Listeners (:meth:`add_listener`) are called synchronously, in the thread that called the
    engine, while the engine's lock is held, once per :class:`OrderEvent` and in the order the
    changes happened. They must be quick, must not block and must not call back into the engine
    from another thread; an exception in a listener is logged and never fails the request.
    """

    def __init__(self, model: MarketModel, specs: Mapping[str, MarketSpec], keys: Iterable[SimKey],
                 *, balances: Mapping[str, float] | None = None, maker_fee: float = 0.001,
                 taker_fee: float = 0.001, liquidity: float = 1.0, first_order_id: int = 1000,
                 unique_client_ids: str = "open", derivatives: bool = False,
                 funding_interval_ms: int = FUNDING_INTERVAL_MS,
                 default_leverage: float = 10.0, max_leverage: float = 125.0) -> None:
        if liquidity <= 0:
            raise ValueError(f"liquidity must be > 0, not {liquidity}")
        self.model = model
        self.specs = dict(specs)
        self.maker_fee = float(maker_fee)
        self.taker_fee = float(taker_fee)
        self.liquidity = float(liquidity)
        self.unique_client_ids = unique_client_ids
        #: ms a lookup does not see a new order (the server wires its ``lookup_lag`` fault here)
        self.lookup_lag: Callable[[], int] = lambda: 0
        default = dict(balances if balances is not None else DEFAULT_BALANCES)
        self.keys: dict[str, SimKey] = {}
        self.accounts: dict[str, Account] = {}
        for k in keys:
            self.keys[k.key] = k
            self.accounts[k.key] = Account(k, k.balances if k.balances is not None else default)
        self.orders: dict[int, SimOrder] = {}
        self.fills: list[Fill] = []
        self._order_ids = itertools.count(first_order_id)
        self._fill_ids = itertools.count(first_order_id * 10)
        self._client_ids = itertools.count(1)
        self._resting: dict[str, list[SimOrder]] = {}  # symbol -> open orders, time priority
        self._last_ms: dict[str, int] = {}  # symbol -> last sampled time
        self._used: dict[str, tuple[int, float]] = {}  # symbol -> (second, qty used)
        self._lock = threading.RLock()
        self.on_fill: Callable[[Fill], None] | None = None
        self._listeners: list[OrderListener] = []
        self.derivatives = bool(derivatives)
        self.derivs = Derivatives(self, funding_interval_ms=funding_interval_ms,
                                  default_leverage=default_leverage, max_leverage=max_leverage)

    # ------------------------------------------------------------------ order events
    def add_listener(self, listener: OrderListener) -> None:
        """Call ``listener(event)`` for every :class:`OrderEvent` from now on (idempotent)."""
        with self._lock:
            if listener not in self._listeners:
                self._listeners.append(listener)

    def remove_listener(self, listener: OrderListener) -> None:
        """Stop calling ``listener`` (no error if it was not added)."""
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def _emit(self, kind: str, o: SimOrder, t_ms: int, fill: Fill | None = None) -> None:
        if not self._listeners:
            return
        spec = self.specs[o.symbol]
        acct = self.accounts[o.key]
        balances = {a: (acct.free(a), acct.locked(a)) for a in (spec.base, spec.quote)}
        event = OrderEvent(kind=kind, key=o.key, order=dataclasses.replace(o, fills=list(o.fills)),
                           fill=fill, balances=balances, time_ms=t_ms)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a push must never fail the order
                logger.exception("order event listener %r failed on %s of order %d", listener,
                                 kind, o.id)

    # ------------------------------------------------------------------ prices
    def price(self, symbol: str, t_ms: int) -> float:
        """The traded price at ``t_ms``: the model price on the market's tick grid."""
        spec = self._spec(symbol)
        scale = spec.price_scale
        return max(1, int(self.model.price(symbol, t_ms) * scale + 0.5)) / scale

    def _spec(self, symbol: str) -> MarketSpec:
        spec = self.specs.get(symbol)
        if spec is None:
            raise Reject("unknown_symbol", f"unknown symbol {symbol}")
        return spec

    # ------------------------------------------------------------------ queries
    def account(self, key: str) -> Account:
        return self.accounts[key]

    def lagging(self, o: SimOrder, now_ms: int) -> bool:
        """A lookup at ``now_ms`` does not see ``o`` yet (the ``lookup_lag`` fault)."""
        return now_ms - o.created_ms < self.lookup_lag()

    def find(self, key: str, *, symbol: str | None = None, order_id: int | None = None,
             client_id: str | None = None, now_ms: int | None = None) -> SimOrder | None:
        """An order of ``key`` by exchange id or client id (the newest with that client id).
        With ``now_ms`` (a client's lookup) an order younger than the ``lookup_lag`` fault is
        not found."""
        o = self._find(key, symbol=symbol, order_id=order_id, client_id=client_id, now_ms=now_ms)
        return None if o is not None and now_ms is not None and self.lagging(o, now_ms) else o

    def _find(self, key: str, *, symbol: str | None = None, order_id: int | None = None,
              client_id: str | None = None, now_ms: int | None = None) -> SimOrder | None:
        with self._lock:
            if now_ms is not None:
                self.advance(now_ms)
            if order_id is not None:
                o = self.orders.get(order_id)
                if o is None or o.key != key or (symbol is not None and o.symbol != symbol):
                    return None
                if client_id is not None and o.client_id != client_id:
                    return None
                return o
            if client_id is not None:
                for o in reversed(list(self.orders.values())):
                    if o.key == key and o.client_id == client_id and (symbol is None or o.symbol == symbol):
                        return o
            return None

    def open_orders(self, key: str, symbol: str | None = None, now_ms: int | None = None) -> list[SimOrder]:
        with self._lock:
            if now_ms is not None:
                self.advance(now_ms)
            return [o for o in self.orders.values()
                    if o.key == key and o.is_open and (symbol is None or o.symbol == symbol)]

    def account_fills(self, key: str, *, symbol: str | None = None, order_id: int | None = None,
                      now_ms: int | None = None) -> list[Fill]:
        with self._lock:
            if now_ms is not None:
                self.advance(now_ms)
            ids = {o.id for o in self.orders.values() if o.key == key}
            return [f for f in self.fills if f.order_id in ids
                    and (symbol is None or f.symbol == symbol)
                    and (order_id is None or f.order_id == order_id)]

    # ------------------------------------------------------------------ placing
    def place(self, key: str, symbol: str, side: str, type: str, *, now_ms: int,
              amount: float | None = None, price: float | None = None,
              stop_price: float | None = None, quote_amount: float | None = None,
              client_id: str | None = None, reduce_only: bool = False,
              pos_side: str | None = None, margin_mode: str | None = None,
              trail: float | None = None) -> SimOrder:
        """Accept (and maybe fill) an order, or raise :class:`Reject`.

        ``amount`` is in base currency; a market buy may give ``quote_amount`` instead. Swaps
        take ``reduce_only``, ``pos_side`` (``long``/``short`` in hedged mode) and
        ``margin_mode`` (okx's per-order ``tdMode``; default: the symbol's setting). ``trail``
        (a fraction, ``stop_market`` without ``stop_price``): a trailing stop, whose stop
        follows the best price since placement at that distance.
        """
        with self._lock:
            self.advance(now_ms)
            spec = self._spec(symbol)
            if spec.is_swap and not self.derivatives:
                raise Reject("unsupported", f"{symbol}: this simulated exchange trades spot only")
            if not spec.is_swap and (reduce_only or pos_side not in (None, "", "net")):
                raise Reject("unsupported", "reduce-only and position sides are for swaps only")
            if side not in ("buy", "sell"):
                raise Reject("bad_quantity", f"invalid side {side!r}")
            if type not in ORDER_TYPES:
                raise Reject("unsupported", f"order type {type!r} is not simulated")
            acct = self.accounts[key]
            if client_id and self._client_id_taken(key, client_id):
                raise Reject("duplicate_client_id", "duplicate client order id")
            now_px = self.price(symbol, now_ms)
            if type in ("limit", "stop_limit"):
                if price is None or price <= 0:
                    raise Reject("bad_price", "a limit order needs a price > 0")
                if not is_on_grid(price, spec.price_decimals):
                    raise Reject("bad_price", f"the price {price} is not a multiple of the tick "
                                              f"size {spec.tick_str()}")
                price = round(float(price), spec.price_decimals)
            if trail is not None:
                if type != "stop_market" or stop_price is not None or not 0 < trail < 1:
                    raise Reject("bad_price", "a trailing stop is a stop-market order with a "
                                              "trail in (0, 1) and no stop price")
                stop_price = round(now_px * (1 - trail if side == "sell" else 1 + trail),
                                   spec.price_decimals)
            if type in ("stop_market", "stop_limit"):
                if stop_price is None or stop_price <= 0:
                    raise Reject("bad_price", "a stop order needs a stop price > 0")
            if quote_amount is not None:
                if type != "market" or side != "buy" or spec.is_swap:
                    raise Reject("unsupported", "a quote amount is only for market buys")
                amount = math.floor(quote_amount / now_px * spec.lot_scale + 1e-9) / spec.lot_scale
            if amount is None or amount <= 0:
                raise Reject("bad_quantity", "the quantity must be > 0")
            if abs(amount * spec.lot_scale - round(amount * spec.lot_scale)) > 1e-6:
                raise Reject("bad_quantity", f"the quantity {amount} is not a multiple of the lot "
                                             f"size {spec.lot_str()}")
            amount = round(amount, spec.lot_decimals)
            ref = price if price is not None else (stop_price or now_px)
            if amount * ref < self.min_notional(symbol):
                raise Reject("min_notional", f"the order value {amount * ref:.8g} is below the "
                                             f"minimum of {self.min_notional(symbol):g}")
            o = SimOrder(id=next(self._order_ids), key=key,
                         client_id=client_id or f"sim{next(self._client_ids):010d}",
                         symbol=symbol, side=side, type=type, amount=amount, price=price,
                         stop_price=stop_price, created_ms=now_ms, updated_ms=now_ms,
                         quote_amount=quote_amount, trail=trail,
                         trail_best=now_px if trail is not None else None)
            if spec.is_swap:
                o.pos_side = self.derivs.resolve_side(key, side, pos_side)
                if margin_mode:
                    self.derivs.set_margin_mode(key, symbol, margin_mode)
                o.margin_mode = self.derivs.mode_of(key, symbol)
                o.reduce_only = bool(reduce_only)
                self.derivs.reserve(acct, spec, o, price if price is not None else (stop_price or now_px))
            else:
                self._reserve(acct, spec, o, now_px)
            self.orders[o.id] = o
            self._emit("new", o, now_ms)
            if type == "market":
                self._fill(acct, spec, o, o.remaining, now_px, maker=False, t_ms=now_ms)
                return o
            self._last_ms.setdefault(symbol, now_ms)
            self._resting.setdefault(symbol, []).append(o)
            self._step_order(acct, spec, o, now_ms, now_px, placing=True)
            self._prune(symbol)
            return o

    def min_notional(self, symbol: str) -> float:
        """Smallest order value in quote currency (binance's NOTIONAL filter: 5 USDT; swaps:
        one lot)."""
        spec = self._spec(symbol)
        return 5.0 if not spec.is_swap and spec.quote in ("USDT", "USDC", "FDUSD", "USD") else 0.0

    def _client_id_taken(self, key: str, client_id: str) -> bool:
        for o in self.orders.values():
            if o.key == key and o.client_id == client_id and (
                    self.unique_client_ids == "all" or o.is_open):
                return True
        return False

    def _reserve(self, acct: Account, spec: MarketSpec, o: SimOrder, now_px: float) -> None:
        if o.side == "sell":
            if acct.free(spec.base) + EPS < o.amount:
                raise Reject("insufficient_funds", f"insufficient {spec.base} balance")
            acct.lock(spec.base, o.amount)
            o.locked = o.amount
            return
        if o.type == "market":
            need = o.quote_amount if o.quote_amount is not None else o.amount * now_px
            if acct.free(spec.quote) + EPS < need:
                raise Reject("insufficient_funds", f"insufficient {spec.quote} balance")
            return  # spent at once, nothing stays locked
        unit = o.price if o.type in ("limit", "stop_limit") else (o.stop_price or now_px)
        need = tidy(o.amount * float(unit))
        if acct.free(spec.quote) + EPS < need:
            raise Reject("insufficient_funds", f"insufficient {spec.quote} balance")
        acct.lock(spec.quote, need)
        o.locked = need

    # ------------------------------------------------------------------ cancelling
    def cancel(self, key: str, *, now_ms: int, symbol: str | None = None, order_id: int | None = None,
               client_id: str | None = None) -> SimOrder:
        """Cancel an open order; :class:`Reject` ``unknown_order`` if none is open by that id."""
        with self._lock:
            self.advance(now_ms)
            o = self.find(key, symbol=symbol, order_id=order_id, client_id=client_id)
            if o is None or not o.is_open:
                raise Reject("unknown_order", "unknown order")
            self._close(o, "canceled", now_ms)
            return o

    def _close(self, o: SimOrder, status: str, now_ms: int) -> None:
        acct = self.accounts[o.key]
        spec = self.specs[o.symbol]
        if o.locked > 0:
            acct.unlock(locked_asset(spec, o), o.locked)
            o.locked = 0.0
        o.status = status
        o.updated_ms = now_ms
        self._prune(o.symbol)
        self._emit(status, o, now_ms)

    def _prune(self, symbol: str) -> None:
        rest = [o for o in self._resting.get(symbol, []) if o.is_open]
        if rest:
            self._resting[symbol] = rest
        else:
            self._resting.pop(symbol, None)
            self._last_ms.pop(symbol, None)

    def with_derivs(self, now_ms: int, change: Callable[[Derivatives], T]) -> T:
        """Catch up to ``now_ms``, then run ``change(self.derivs)`` under the engine's lock
        (a setting: leverage, margin or position mode)."""
        with self._lock:
            self.advance(now_ms)
            return change(self.derivs)

    def book_forced(self, key: str, symbol: str, side: str, qty: float, px: float, t_ms: int, *,
                    client_id: str, pos_side: str, margin_mode: str, pnl: float) -> None:
        """Record an order the exchange made itself (a liquidation): filled at once at ``px``,
        no fee, its events told like any other order's. Balances are the caller's business."""
        spec = self.specs[symbol]
        o = SimOrder(id=next(self._order_ids), key=key, client_id=client_id, symbol=symbol,
                     side=side, type="market", amount=qty, price=None, stop_price=None,
                     created_ms=t_ms, updated_ms=t_ms, reduce_only=True, pos_side=pos_side,
                     margin_mode=margin_mode)
        self.orders[o.id] = o
        self._emit("new", o, t_ms)
        f = Fill(id=next(self._fill_ids), order_id=o.id, client_id=client_id, symbol=symbol,
                 side=side, price=px, qty=qty, quote_qty=tidy(qty * px), fee=0.0,
                 fee_asset=spec.quote, fee_rate=0.0, maker=False, time_ms=t_ms, pnl=pnl)
        o.fills.append(f)
        self.fills.append(f)
        o.filled, o.cost, o.status = qty, f.quote_qty, "filled"
        self._emit("trade", o, t_ms, f)

    # ------------------------------------------------------------------ state for tests
    def state(self, now_ms: int | None = None) -> dict[str, Any]:
        """Every order and balance, JSON-ready (what ``Simulator.orders`` and the control API show)."""
        with self._lock:
            if now_ms is not None:
                self.advance(now_ms)
            return {
                "orders": [order_dict(o) for o in self.orders.values()],
                "balances": {k: {a: {"free": f, "locked": lk} for a, (f, lk) in acct.snapshot().items()}
                             for k, acct in self.accounts.items()},
                "positions": [self.derivs.position_dict(p, now_ms or p.updated_ms)
                              for p in self.derivs.positions.values() if p.qty],
            }
