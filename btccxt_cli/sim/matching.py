"""The matching part of the simulated exchange's engine (``accounts.Engine``): walking resting
orders along the price path, triggering stops, filling within each second's liquidity, and
booking fills (spot balances here, swaps through ``positions.Derivatives``). The rules are in
``accounts.py``'s docstring.

Must not import ccxt, aiohttp or anything from the client side of btccxt.
"""

from __future__ import annotations

import math
import threading

from btccxt_cli.sim.ledger import EPS, Account, Fill, OrderListener, SimOrder, tidy
from btccxt_cli.sim.market import MarketModel, MarketSpec
from btccxt_cli.sim.positions import Derivatives

__all__ = ["Matching", "MAX_CATCH_UP_S", "locked_asset"]

MAX_CATCH_UP_S = 7 * 86_400  # at most a week of seconds is replayed after a long silence


class Matching:
    """Matching and fills of :class:`accounts.Engine` (its base; the state lives there)."""

    model: MarketModel
    specs: dict[str, MarketSpec]
    accounts: dict[str, Account]
    orders: dict[int, SimOrder]
    fills: list[Fill]
    liquidity: float
    maker_fee: float
    taker_fee: float
    derivs: Derivatives
    _resting: dict[str, list[SimOrder]]
    _last_ms: dict[str, int]
    _used: dict[str, tuple[int, float]]
    _lock: threading.RLock
    _listeners: list[OrderListener]

    def price(self, symbol: str, t_ms: int) -> float:
        raise NotImplementedError

    def _emit(self, kind: str, o: SimOrder, t_ms: int, fill: Fill | None = None) -> None:
        raise NotImplementedError

    def _close(self, o: SimOrder, status: str, now_ms: int) -> None:
        raise NotImplementedError

    def _prune(self, symbol: str) -> None:
        raise NotImplementedError

    def _available(self, symbol: str, t_ms: int) -> float:
        if math.isinf(self.liquidity):
            return math.inf
        sec = t_ms - t_ms % 1000
        used_sec, used = self._used.get(symbol, (sec, 0.0))
        if used_sec != sec:
            used = 0.0
        vol = self.model.candle(symbol, 1000, sec)[5] * self.liquidity
        return max(0.0, vol - used)

    def _use(self, symbol: str, t_ms: int, qty: float) -> None:
        sec = t_ms - t_ms % 1000
        used_sec, used = self._used.get(symbol, (sec, 0.0))
        self._used[symbol] = (sec, (used if used_sec == sec else 0.0) + qty)

    # ------------------------------------------------------------------ matching
    def advance(self, now_ms: int) -> int:
        """Walk every symbol with resting orders along the price path up to ``now_ms``, and
        the swaps' funding times and liquidation checks in between, in time order.

        Samples each second boundary after the last look, then ``now_ms``. Returns the number
        of fills made.
        """
        with self._lock:
            derivs = self.derivs
            n = 0
            for t in derivs.funding_times(now_ms):
                n += self._advance_orders(t)
                derivs.check(t)
                derivs.settle_funding(t)
            n += self._advance_orders(now_ms)
            derivs.check(now_ms)
            return n

    def _advance_orders(self, now_ms: int) -> int:
        n = 0
        with self._lock:
            for symbol in list(self._resting):
                last = self._last_ms.get(symbol, now_ms)
                if now_ms <= last:
                    continue
                start = max(last, now_ms - MAX_CATCH_UP_S * 1000)
                t = start - start % 1000 + 1000
                while t <= now_ms and symbol in self._resting:
                    n += self._sample(symbol, t)
                    t += 1000
                if symbol in self._resting and now_ms % 1000:
                    n += self._sample(symbol, now_ms)
                if symbol in self._last_ms:
                    self._last_ms[symbol] = now_ms
        return n

    def _sample(self, symbol: str, t_ms: int) -> int:
        spec = self.specs[symbol]
        px = self.price(symbol, t_ms)
        n = 0
        for o in list(self._resting.get(symbol, [])):
            if not o.is_open:
                continue
            n += self._step_order(self.accounts[o.key], spec, o, t_ms, px, placing=False)
        self._prune(symbol)
        return n

    def _step_order(self, acct: Account, spec: MarketSpec, o: SimOrder, t_ms: int, px: float,
                    *, placing: bool) -> int:
        """Trigger / fill one resting order at price ``px``; returns fills made."""
        if o.type in ("stop_market", "stop_limit") and not o.triggered:
            o.follow(px, spec.price_decimals)  # a trailing stop moves with the best price first
            stop = float(o.stop_price or 0.0)
            if (o.side == "sell" and px <= stop) or (o.side == "buy" and px >= stop):
                o.triggered = True
                o.updated_ms = t_ms
                self._emit("triggered", o, t_ms)
            else:
                return 0
            if o.type == "stop_market":
                if o.side == "buy" and not spec.is_swap:  # re-reserve at the trigger price: the stop price was a guess
                    acct.unlock(spec.quote, o.locked)
                    o.locked = 0.0
                    if acct.free(spec.quote) + EPS < o.remaining * px:
                        self._close(o, "expired", t_ms)
                        return 0
                self._fill(acct, spec, o, o.remaining, px, maker=False, t_ms=t_ms)
                return 1
            placing = True  # a triggered stop-limit meets the book as a taker first
        limit = o.limit_price
        if limit is None:
            return 0
        crossed = px <= limit if o.side == "buy" else px >= limit
        if not crossed:
            return 0
        avail = self._available(o.symbol, t_ms)
        qty = o.remaining if math.isinf(avail) else min(  # liquidity=inf: fill in full
            o.remaining, math.floor(avail * spec.lot_scale + 1e-9) / spec.lot_scale)
        if qty <= 0:
            return 0
        self._use(o.symbol, t_ms, qty)
        # a marketable order takes the current price; a resting one gets its limit (maker)
        self._fill(acct, spec, o, qty, px if placing else limit, maker=not placing, t_ms=t_ms)
        return 1

    def _fill(self, acct: Account, spec: MarketSpec, o: SimOrder, qty: float, px: float, *,
              maker: bool, t_ms: int) -> None:
        qty = round(qty, spec.lot_decimals)
        if qty <= 0:
            return
        rate = self.maker_fee if maker else self.taker_fee
        pnl = 0.0
        if spec.is_swap:
            qty, fee, pnl = self.derivs.fill(acct, spec, o, qty, px, rate, t_ms)
            fee_asset = spec.quote
            if qty <= 0:  # reduce-only with nothing left to reduce: the rest is cancelled
                self._close(o, "canceled" if o.filled else "expired", t_ms)
                return
        quote_qty = tidy(qty * px)
        if spec.is_swap:
            pass
        elif o.side == "buy":
            fee, fee_asset = tidy(qty * rate), spec.base
            if o.type == "market" or (o.type == "stop_market"):
                acct.add_free(spec.quote, -quote_qty)
            else:
                reserved = tidy(qty * float(o.price))
                acct.spend_locked(spec.quote, reserved)
                acct.add_free(spec.quote, reserved - quote_qty)
                o.locked = tidy(o.locked - reserved)
            acct.add_free(spec.base, qty - fee)
        else:
            fee, fee_asset = tidy(quote_qty * rate), spec.quote
            acct.spend_locked(spec.base, qty)
            o.locked = tidy(o.locked - qty)
            acct.add_free(spec.quote, quote_qty - fee)
        f = Fill(id=next(self._fill_ids), order_id=o.id, client_id=o.client_id, symbol=o.symbol,
                 side=o.side, price=px, qty=qty, quote_qty=quote_qty, fee=fee, fee_asset=fee_asset,
                 fee_rate=rate, maker=maker, time_ms=t_ms, pnl=pnl)
        o.fills.append(f)
        self.fills.append(f)
        o.filled = round(o.filled + qty, spec.lot_decimals)
        o.cost = tidy(o.cost + quote_qty)
        o.updated_ms = t_ms
        if o.remaining <= 0:
            if o.locked > 0:  # rounding leftovers go back
                acct.unlock(locked_asset(spec, o), o.locked)
                o.locked = 0.0
            o.status = "filled"
        else:
            o.status = "partially_filled"
        if self.on_fill is not None:
            self.on_fill(f)
        self._emit("trade", o, t_ms, f)



def locked_asset(spec: MarketSpec, o: SimOrder) -> str:
    """What an open order keeps locked: spot sells base, spot buys and swaps the quote."""
    return spec.base if o.side == "sell" and not spec.is_swap else spec.quote

