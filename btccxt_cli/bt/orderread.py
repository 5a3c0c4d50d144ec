"""The order worker's reads (``docs/orders.md``): an order looked up by id or client id, its
status and new fills (in base units: ``bt/derivs.py``), okx algo stops followed to the order
they place, and an order given up only after repeated misses.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from btccxt_cli.bt import derivs
from btccxt_cli.bt.adoption import copy as _copy
from btccxt_cli.bt.adoption import last_price
from btccxt_cli.bt.fees import fee_value
from btccxt_cli.bt.orderkit import (
    _ALGO,
    _FINAL,
    _MISS_WAIT_MAX,
    ALGO_STOP_EXCHANGES,
    ALGO_SWAP_STOP_EXCHANGES,
    EXPIRY_REASON,
    LOST_AFTER_MISSES,
    STOP_TYPES,
    Event,
    _is_algo,
    _order_id,
    _Tracked,
    algo_state,
    exchange_message,
)
from btccxt_cli.bt.positions import amount_tolerance
from btccxt_cli.cache.orders import FillRecord, OrderRecord

if TYPE_CHECKING:
    pass

logger = logging.getLogger("btccxt_cli.bt.ordersync")
#: why an order's create has no answer, by its stored status: ``unknown`` in this run; the
#: others outlive a create in this worker only where an earlier run ended there (a crash)
_UNSENT = {"unknown": "the create call failed",
           "pending": "an earlier run ended before it was sent, as far as that run recorded",
           "sending": "an earlier run ended during its create call"}


class OrderReads:
    """Part of :class:`~btccxt_cli.bt.ordersync.OrderSync` (its attributes are the worker's)."""

    async def lookup(self, rec: OrderRecord, by_client_id: bool = False) -> dict[str, Any]:
        """The order as the exchange has it: by its id, or by client order id while its id is
        unknown (or ``by_client_id``). Raises ccxt's ``OrderNotFound`` when it has none."""
        if _is_algo(rec) and not by_client_id:
            order = await self._ex.fetch_order(rec.exchange_id[len(_ALGO):], rec.symbol,
                                               {"trigger": True})
        elif rec.exchange_id and not by_client_id:
            order = await self._ex.fetch_order(rec.exchange_id, rec.symbol)
        else:
            params: dict[str, Any] = {"clientOrderId": rec.client_id}
            if self._algo_stop(rec):
                params["trigger"] = True
            order = await self._ex.fetch_order(None, rec.symbol, params)
        return derivs.in_base(order, self._ex.markets or {})

    def _missed(self, t: _Tracked) -> list[Event]:
        """A lookup of a known order found nothing: give it up only after
        ``LOST_AFTER_MISSES`` misses spread over ``ambiguous_timeout`` (looked up with a
        backoff meanwhile); one "not found" right after a create is a lagging read."""
        rec = t.rec
        now = self.clock.monotonic()
        if t.missing_since is None:
            t.missing_since = now
        t.misses += 1
        waited = now - t.missing_since
        if t.misses < LOST_AFTER_MISSES or waited < self.ambiguous_timeout:
            wait = min(_MISS_WAIT_MAX, self.poll_interval * 2 ** (t.misses - 1))
            t.next_lookup = now + wait
            logger.info("order %s (%s) not found at the exchange (%d time(s) in %.0f s); looking "
                        "again in %.1f s", rec.client_id, rec.exchange_id, t.misses, waited, wait)
            return []
        logger.warning("order %s (%s) is no longer known to the exchange (%d lookups in %.0f s); "
                       "watched a while longer", rec.client_id, rec.exchange_id, t.misses, waited)
        return self._give_up(t, "canceled", f"the exchange no longer knows this order ({t.misses} "
                                            f"lookups in {waited:.0f} s found nothing)")

    # ------------------------------------------------------------------ refresh one order
    async def _refresh(self, t: _Tracked, order: dict[str, Any] | None = None) -> list[Event]:
        """Read the order (by id, or by client id while its id is unknown) and its new fills."""
        import ccxt

        rec = t.rec
        events: list[Event] = []
        if order is None:
            try:
                order = await self.lookup(rec)
            except ccxt.OrderNotFound:
                if rec.exchange_id is None and rec.status in ("unknown", "pending", "sending"):
                    if t.since_mono is None:
                        t.since_mono = self.clock.monotonic()
                    waited = self.clock.monotonic() - t.since_mono
                    if waited >= self.ambiguous_timeout:
                        return self._give_up(t, "rejected", f"not found at the exchange {waited:.0f} "
                                             f"s after {_UNSENT[rec.status]}; it was not sent again")
                    return events
                return self._missed(t)
            except Exception as exc:  # a read: simply try again on the next poll
                logger.info("order %s: lookup failed (%s); next poll retries", rec.client_id,
                            exchange_message(exc))
                return events
        t.missing_since, t.misses = None, 0  # the exchange has it
        if self._algo_stop(rec) and (rec.exchange_id is None or _is_algo(rec)):
            order, more = await self._algo(t, order)
            if more is not None:
                return events + more
        if rec.exchange_id is None and order.get("id") is not None:
            self._update(t, exchange_id=_order_id(order))
            if rec.status in ("unknown", "pending", "sending"):
                logger.warning("order %s found at the exchange by client order id (id %s)%s; not "
                               "resent", rec.client_id, order["id"],
                               "" if rec.status == "unknown" else f" ({_UNSENT[rec.status]})")
        status = str(order.get("status") or "open")
        filled = float(order.get("filled") or 0.0)
        tol = self._tol(rec)
        if filled > t.traded + tol:
            events += await self._fills(t)
        new_status = _FINAL.get(status, "open")
        changed: dict[str, Any] = {"filled": filled, "cost": float(order.get("cost") or 0.0)}
        if rec.reason == EXPIRY_REASON:  # we cancelled it at its valid= time
            if new_status == "canceled":
                new_status = "expired"
            elif new_status == "closed":  # it filled before the cancel landed
                changed["reason"] = None
        fee = order.get("fee") or {}
        if fee.get("cost") is not None:
            changed.update(fee=float(fee["cost"]), fee_currency=fee.get("currency"))
        elif t.trades:
            changed.update(fee=t.fee, fee_currency=t.fee_currency)
        if new_status != rec.status:
            changed["status"] = new_status
        if rec.status != new_status or abs(rec.filled - filled) > tol:
            self._update(t, **changed)
            events.append(Event("order", rec=_copy(t.rec)))
            self._balance_due = True
        elif rec.status in ("unknown", "pending", "sending"):
            self._update(t, **changed)
            events.append(Event("order", rec=_copy(t.rec)))
        if new_status in _FINAL.values() and t.traded + tol >= filled:
            self.tracked.pop(rec.client_id, None)
            events.append(self._count())
        return events

    def _tol(self, rec: OrderRecord) -> float:
        market = (getattr(self._ex, "markets", None) or {}).get(rec.symbol)
        return amount_tolerance(market, getattr(self._ex, "precisionMode", None), rec.amount)

    def _algo_stop(self, rec: OrderRecord) -> bool:
        return rec.type in STOP_TYPES and self.algo_stops(rec.symbol)

    def algo_stops(self, symbol: str) -> bool:
        """Are stop orders of ``symbol`` algo orders (ids of their own, read with
        ``{"trigger": True}``)?"""
        ex = self.store.exchange_id
        return ex in ALGO_STOP_EXCHANGES or (ex in ALGO_SWAP_STOP_EXCHANGES and derivs.is_contract(
            (getattr(self._ex, "markets", None) or {}).get(symbol)))

    async def _algo(self, t: _Tracked, order: dict[str, Any]) -> tuple[dict[str, Any], list[Event] | None]:
        """An algo stop not known to have triggered, and what the exchange said of it.

        Returns the order to go on with, or events when the refresh is done here (the stop
        triggered: the order it placed is read instead).
        """
        rec = t.rec
        info = order.get("info") or {}
        if "accFillSz" in info or "fillSz" in info or (  # the order the stop placed (pushed)
                "orderId" in info and "algoStatus" not in info):  # (binance's)
            self._update(t, exchange_id=_order_id(order))
            logger.info("stop order %s triggered: order %s", rec.client_id, rec.exchange_id)
            return order, None
        if rec.exchange_id is None and order.get("id") is not None:
            self._update(t, exchange_id=_ALGO + str(order["id"]))
            logger.warning("order %s found at the exchange by client order id (algo id %s); "
                           "not resent", rec.client_id, order["id"])
        state, placed, code = algo_state(info)
        if state in ("effective", "partially_effective") and placed:
            self._update(t, exchange_id=placed)
            logger.info("stop order %s triggered: order %s", rec.client_id, placed)
            return order, await self._refresh(t)
        if state == "order_failed":
            reason = f"the stop triggered but its order failed ({code})"
            self._update(t, reason=reason)
            return {**order, "status": "canceled", "filled": 0.0, "cost": 0.0}, None
        if state == "canceled":
            return {**order, "status": "canceled", "filled": 0.0, "cost": 0.0}, None
        # live (waiting for its trigger): ccxt says nothing of fills
        return {**order, "status": "open", "filled": 0.0, "cost": 0.0, "fee": None}, None

    async def _fills(self, t: _Tracked) -> list[Event]:
        rec = t.rec
        try:
            if self._ex.has.get("fetchOrderTrades") and not (
                    self.store.exchange_id == "binance" and derivs.is_contract(
                        (self._ex.markets or {}).get(rec.symbol))):  # spot only on binance
                trades = await self._ex.fetch_order_trades(rec.exchange_id, rec.symbol)
            else:  # the account's recent trades, filtered to this order
                mine = await self._ex.fetch_my_trades(rec.symbol, rec.created_ms - 60_000)
                trades = [tr for tr in mine if str(tr.get("order")) == rec.exchange_id]
        except Exception as exc:
            logger.info("order %s: reading fills failed (%s); next poll retries", rec.client_id,
                        exchange_message(exc))
            return []
        events: list[Event] = []
        market = (getattr(self._ex, "markets", None) or {}).get(rec.symbol) or {}
        base = market.get("base")
        trades = [derivs.in_base(tr, self._ex.markets or {}) for tr in trades]
        for tr in sorted(trades, key=lambda x: (x.get("timestamp") or 0, str(x.get("id")))):
            tid = str(tr.get("id"))
            if tid in t.trades:
                continue
            fee = tr.get("fee") or {}
            f = FillRecord(account=self.account, trade_id=tid, client_id=rec.client_id,
                           symbol=rec.symbol, side=rec.side, price=float(tr["price"]),
                           amount=float(tr["amount"]), fee=float(fee.get("cost") or 0.0),
                           fee_currency=fee.get("currency"),
                           time_ms=int(tr.get("timestamp") or self.clock.time_ms()))
            t.add(f)
            # the bot's position moves by what the fill left in the account (a fee charged in
            # the base currency is not the bot's to sell), in the transaction that stores it
            delta = (f.amount if f.side == "buy" else -f.amount) - (
                f.fee if base is not None and f.fee_currency == base else 0.0)
            held = await self._db(self.db.add_fill_to_ledger, f, delta)
            if held is not None:
                value = await fee_value(lambda sym: last_price(self._ex, sym), self._ex.markets or {}, f, market,
                                        self._fee_rates, self.clock.monotonic())
                events.append(Event("fill", fill=f, data={"holding": (held.size, held.price),
                                                          "fee_value": value}))
        return events
