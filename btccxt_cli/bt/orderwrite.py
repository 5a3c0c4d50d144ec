"""The order worker's writes (``docs/orders.md``): a create sent once per client order id, what
follows a failed create (looked up, never resent), cancels and cancel-all.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from btccxt_cli.bt import derivs
from btccxt_cli.bt.adoption import copy as _copy
from btccxt_cli.bt.orderkit import (
    _ALGO,
    CCXT_TYPES,
    EXPIRY_REASON,
    Event,
    _is_algo,
    _status_unknown,
    _Tracked,
    exchange_message,
    exchange_now_ms,
    trail_param,
)
from btccxt_cli.cache.orders import OrderRecord

if TYPE_CHECKING:
    pass

logger = logging.getLogger("btccxt_cli.bt.ordersync")


class OrderWrites:
    """Part of :class:`~btccxt_cli.bt.ordersync.OrderSync` (its attributes are the worker's)."""

    # ------------------------------------------------------------------ create
    async def _create(self, rec: OrderRecord, extra: dict[str, Any] | None = None) -> list[Event]:
        """Send one order, once. See the module docstring for what follows a failure.
        ``extra``: swaps, ``{"reduceOnly": True}`` for an order that only closes."""
        import ccxt

        t = _Tracked(rec)
        self.tracked[rec.client_id] = t
        self._update(t, status="sending")
        ccxt_type, trigger = CCXT_TYPES[rec.type]
        params: dict[str, Any] = {"clientOrderId": rec.client_id, **(extra or {})}
        if trigger:
            params["stopLossPrice"] = rec.stop_price
        if rec.trail is not None:  # okx: a move_order_stop algo order; binance: STOP_LOSS
            params["trailingPercent"] = trail_param(rec.trail)  # with trailingDelta
            if self.store.exchange_id == "binance":
                params["stopLossOrTakeProfit"] = "stopLoss"
        market = (self._ex.markets or {}).get(rec.symbol)
        cs = derivs.contract_size(market)  # swaps: the exchange counts contracts
        if derivs.is_contract(market) and self.store.exchange_id == "okx":
            params["marginMode"] = self.swap.margin_mode.get(rec.symbol, "isolated")
        try:
            amount = float(self._ex.amount_to_precision(rec.symbol, round(rec.amount / cs, 12)))
            price = float(self._ex.price_to_precision(rec.symbol, rec.price)) if rec.price else None
            if rec.stop_price:
                params["stopLossPrice"] = float(self._ex.price_to_precision(rec.symbol, rec.stop_price))
        except Exception as exc:  # below the market's precision or minimum
            return self._reject(t, f"{rec.symbol}: {exchange_message(exc)}")
        if amount <= 0:
            return self._reject(t, f"{rec.symbol}: the size rounds to 0 at the market's precision")
        if abs(amount * cs - rec.amount) > 1e-12 * max(1.0, rec.amount):
            self._update(t, amount=amount * cs)
        try:
            try:
                order = await self._ex.create_order(rec.symbol, ccxt_type, rec.side, amount, price,
                                                    params)
            except ccxt.InvalidNonce as exc:  # a timestamp refused: nothing was placed
                order = await self._create_again(t, exc, ccxt_type, amount, price, params)
                if order is None:
                    return self._reject(t, f"{exchange_message(exc)}: the exchange refused the "
                                           "request's timestamp twice, after reading its clock; "
                                           "check this machine's clock (NTP)")
        except ccxt.ExchangeError as exc:  # the exchange said no ...
            if _status_unknown(exc):  # ... unless it says it does not know (binance -1006/-1007)
                return await self._ambiguous(t, exc)
            logger.warning("order %s %s %s %g refused by %s: %s", rec.client_id, rec.side,
                           rec.symbol, amount * cs, self.store.exchange_id, exchange_message(exc))
            return self._reject(t, exchange_message(exc))
        except Exception as exc:  # no answer we can trust: look it up, never resend
            return await self._ambiguous(t, exc)
        oid = order.get("id")
        if oid is not None and self._algo_stop(rec):
            oid = _ALGO + str(oid)
        self._update(t, status="open", exchange_id=str(oid) if oid is not None else None)
        events = [Event("order", rec=_copy(t.rec))]
        events += await self._refresh(t, derivs.in_base(order, self._ex.markets or {})
                                      if order.get("status") else None)
        self._balance_due = True
        return events

    async def _create_again(self, t: _Tracked, exc: BaseException, ccxt_type: str, amount: float,
                            price: float | None, params: dict[str, Any]) -> dict[str, Any] | None:
        """The exchange refused the create's timestamp (``InvalidNonce``: it placed nothing):
        read its clock and send the same order once more, with the same client order id (a
        second placement of one id is refused, so it cannot be placed twice). None: refused
        for its timestamp again. Any other failure of the second call is raised."""
        import ccxt

        rec = t.rec
        self.counts["nonce_retries"] += 1
        logger.warning("order %s: %s refused the request's timestamp (%s); reading its clock and "
                       "sending the same order again (same client order id)", rec.client_id,
                       self.store.exchange_id, exchange_message(exc))
        await self._read_clock()
        try:
            return await self._ex.create_order(rec.symbol, ccxt_type, rec.side, amount, price,
                                               dict(params))
        except ccxt.InvalidNonce:
            return None

    async def _ambiguous(self, t: _Tracked, exc: BaseException) -> list[Event]:
        rec = t.rec
        self.counts["unknown_creates"] += 1
        logger.warning("order %s: create outcome unknown (%s); looking it up by client order id",
                       rec.client_id, type(exc).__name__)
        t.since_mono = self.clock.monotonic()
        self._next_poll = min(self._next_poll, self._wall() + self.poll_interval)
        self._update(t, status="unknown", reason=f"create outcome unknown: {type(exc).__name__}")
        events = [Event("order", rec=_copy(t.rec))]
        events += await self._refresh(t)
        return events

    def _reject(self, t: _Tracked, reason: str) -> list[Event]:
        self.counts["rejects"] += 1
        self._update(t, status="rejected", reason=reason)
        self.tracked.pop(t.rec.client_id, None)
        return [Event("order", rec=_copy(t.rec)), self._count()]

    def _give_up(self, t: _Tracked, status: str, reason: str) -> list[Event]:
        """A verdict on "not found": told to the strategy, and the order stays watched (a
        lagging lookup or a late insert may still show it: ``bt/sweep.py``)."""
        self.counts["lost"] += 1
        events = self._reject(t, reason) if status == "rejected" else []
        if status != "rejected":
            self._update(t, status=status, reason=reason)
            self.tracked.pop(t.rec.client_id, None)
            events = [Event("order", rec=_copy(t.rec)), self._count()]
        self.watch.add(t)
        return events

    # ------------------------------------------------------------------ cancel
    async def _cancel(self, t: _Tracked) -> list[Event]:
        import ccxt

        rec = t.rec
        if rec.exchange_id is None:
            return []  # cancelled as soon as the order is known (next poll)
        try:
            if _is_algo(rec):
                await self._ex.cancel_order(rec.exchange_id[len(_ALGO):], rec.symbol, {"trigger": True})
            else:
                await self._ex.cancel_order(rec.exchange_id, rec.symbol)
            t.cancel_sent = True
        except ccxt.OrderNotFound:
            t.cancel_sent = True  # already closed: the refresh tells how
            if _is_algo(rec):  # no longer waiting: it triggered (cancel what it placed) or ended
                events = await self._refresh(t)
                if not _is_algo(t.rec) and rec.client_id in self.tracked:
                    t.cancel_sent = False
                    return events + await self._cancel(t)
                return events
        except Exception as exc:
            logger.warning("order %s: cancel failed (%s); retrying on the next poll", rec.client_id,
                           exchange_message(exc))
            return []
        return await self._refresh(t)

    # ------------------------------------------------------------------ expiry (valid=)
    def _expiry_wait(self) -> float | None:
        """Seconds until the next order's ``valid=`` passes (None: no order expires)."""
        due = [t.rec.expires_ms for t in self.tracked.values()
               if t.rec.expires_ms is not None and not t.cancel_requested]
        return max(0.0, (min(due) - exchange_now_ms(self.store, self.clock)) / 1000.0) if due else None

    async def _expire_due(self) -> list[Event]:
        """Cancel every order whose ``valid=`` time has passed on the exchange's clock. The
        reason is stored first, so the confirmed cancel is stored ``expired`` (the strategy
        gets ``Expired``), also when the confirmation comes after a restart. A fill before
        the cancel lands is told as usual; a cancel that fails is sent again on the next poll."""
        now = exchange_now_ms(self.store, self.clock)
        events: list[Event] = []
        for t in list(self.tracked.values()):
            rec = t.rec
            if rec.expires_ms is None or t.cancel_requested or now < rec.expires_ms or \
                    rec.client_id not in self.tracked:
                continue
            logger.info("order %s: its valid= time passed (%d ms ago); cancelling it", rec.client_id,
                        now - rec.expires_ms)
            self._update(t, reason=EXPIRY_REASON)
            t.cancel_requested = True
            events += await self._cancel(t)
        return events

    async def cancel_all(self) -> tuple[list[Event], list[str]]:
        """Cancel every order this worker tracks (the kill switch), all at once (ccxt's rate
        limiter spaces the calls; their round trips overlap). An order whose create outcome is
        unknown is looked up first and cancelled if found. Returns the events and the client
        ids of the orders still not known to be final (not found yet, or the cancel failed)."""
        todo = list(self.tracked.values())
        for t in todo:
            t.cancel_requested = True

        async def one(t: _Tracked) -> list[Event]:
            events: list[Event] = []
            if t.rec.exchange_id is None:
                events += await self._refresh(t)
            if t.rec.client_id in self.tracked and t.rec.exchange_id is not None:
                events += await self._cancel(t)
            return events

        results = await asyncio.gather(*(one(t) for t in todo), return_exceptions=True)
        events: list[Event] = []
        for r in results:
            if isinstance(r, BaseException):
                logger.warning("kill switch: a cancel failed (%s)", exchange_message(r))
            else:
                events += r
        left = [t.rec.client_id for t in todo if t.rec.client_id in self.tracked
                and (t.rec.exchange_id is None or not t.cancel_sent)]
        return events, left
