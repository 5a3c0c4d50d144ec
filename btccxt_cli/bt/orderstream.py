"""The order worker's WebSocket order stream (``docs/orders.md``, "Order updates"): when it is
used, its login and reconnects, and each pushed order taken like a REST answer.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from btccxt_cli.bt import derivs
from btccxt_cli.bt.orderkit import (
    _VIA_LOG_MAX,
    AUTH_TIMEOUT,
    WS_ORDER_EXCHANGES,
    Event,
    _prime_balance_cache,
    exchange_message,
    reset_binance_login,
)

if TYPE_CHECKING:
    pass

logger = logging.getLogger("btccxt_cli.bt.ordersync")


class OrderStream:
    """Part of :class:`~btccxt_cli.bt.ordersync.OrderSync` (its attributes are the worker's)."""

    def _stream_wanted(self) -> str:
        """Why the WebSocket order stream is used ("" when it is not)."""
        has = bool(getattr(self._ex, "has", {}).get("watchOrders")) and hasattr(self._ex, "watch_orders")
        if self.updates == "poll" or not has:
            return ""
        if self.updates == "auto" and self.store.exchange_id not in WS_ORDER_EXCHANGES:
            return ""
        if self._binance_swaps():
            return ""
        return "orders pushed by WebSocket (watch_orders)"

    def _binance_swaps(self) -> bool:
        """binance streams spot and USD-M orders on different sockets; the broker's stream is
        the spot one, so a run with swaps polls (``docs/swaps.md``)."""
        markets = self._ex.markets or {}
        return self.store.exchange_id == "binance" and any(
            derivs.is_contract(markets.get(s)) for s in self.symbols)

    def _no_stream_reason(self) -> str:
        if self.updates == "poll":
            return f"polling every {self.poll_interval:g} s (updates: poll)"
        if self._binance_swaps():
            return (f"polling every {self.poll_interval:g} s (binance futures orders are not on "
                    "the spot order stream)")
        return (f"polling every {self.poll_interval:g} s (no tested order stream for "
                f"{self.store.exchange_id})")

    # ------------------------------------------------------------------ WebSocket updates
    async def _watch(self) -> None:
        """Follow the account's order stream; each pushed order becomes a ``ws`` command."""
        from btccxt_cli.exchange.errors import is_fatal
        from btccxt_cli.exchange.retry import Backoff

        assert self._queue is not None
        backoff = Backoff(0.5, 30.0, clock=self.clock)
        name = self.store.exchange_id
        while True:
            try:
                if self.via != "websocket":
                    # authenticate (and for binance subscribe) first: once this returns the
                    # stream is live, and a poll reads whatever changed while it was not
                    _prime_balance_cache(self._ex)
                    auth = getattr(self._ex, "authenticate", None)
                    if auth is not None:  # bounded: a refused login can leave ccxt's answer
                        await asyncio.wait_for(auth(), AUTH_TIMEOUT)  # unresolved for ever
                    watching = asyncio.ensure_future(self._ex.watch_orders())
                    try:
                        done, _ = await asyncio.wait({watching}, timeout=0.2)
                        if not done:  # subscribed and waiting: the stream is up
                            self._set_via("websocket", f"orders pushed by WebSocket ({name})")
                            backoff.success()  # healthy from now, pushes or not
                        orders = await watching
                    finally:
                        if not watching.done():
                            watching.cancel()
                else:
                    orders = await self._ex.watch_orders()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if name == "binance" and reset_binance_login(self._ex):
                    await self._read_clock()  # a refused login is most often its timestamp
                cause = exc.__context__ or exc.__cause__
                if is_fatal(exc) or isinstance(exc, (TypeError, AttributeError)) or (
                        cause is not None and is_fatal(cause)):
                    exc = cause if cause is not None and is_fatal(cause) else exc
                    self._set_via("polling", f"the WebSocket order stream was refused "
                                  f"({exchange_message(exc)}); polling orders by REST every "
                                  f"{self.poll_interval:g} s instead")
                    return
                delay = backoff.failure()
                self._set_via("reconnecting", f"order stream lost ({type(exc).__name__}); polling "
                              f"every {self.poll_interval:g} s, reconnecting in {delay:.1f} s")
                await self._reread_clock_if_refused(exc)
                await asyncio.sleep(delay)
                continue
            backoff.success()
            if self.via != "websocket":
                self._set_via("websocket", f"orders pushed by WebSocket ({name})")
            for order in orders:
                self.ws_pushes += 1
                self._queue.put_nowait(("ws", order))

    def _log_via(self, via: str) -> None:
        self.via_log.append(via)
        if len(self.via_log) > _VIA_LOG_MAX:  # a long run: the recent states are enough
            del self.via_log[1:-_VIA_LOG_MAX // 2]

    def _set_via(self, via: str, reason: str) -> None:
        if via == self.via and self.via_log:
            return
        level = logging.INFO if via == "websocket" else logging.WARNING
        logger.log(level, "%s: order updates: %s", self.store.exchange_id, reason)
        self.via = via
        self._log_via(via)
        self._next_poll = self._wall()  # read by REST what may have been missed
        assert self._queue is not None
        self._queue.put_nowait(("via", via, reason))

    async def _pushed(self, order: dict[str, Any]) -> list[Event]:
        """One order as the stream pushed it (the order of pushes is the exchange's)."""
        order = derivs.in_base(order, self._ex.markets or {})
        cid = order.get("clientOrderId")
        t = self.tracked.get(str(cid)) if cid else None
        if t is None and order.get("id") is not None:
            oid = str(order["id"])
            t = next((x for x in self.tracked.values() if x.rec.exchange_id == oid), None)
        if t is None:
            w = self.watch.match(order)
            if w is not None and (w.rec.symbol == order.get("symbol") or not order.get("symbol")):
                return await self.watch.revive(w, {**order, "fee": None}, "a push")
            return []  # not ours, or final already
        if t.rec.symbol != order.get("symbol") and order.get("symbol"):
            return []
        filled = float(order.get("filled") or 0.0)
        if filled + self._tol(t.rec) < t.rec.filled:
            return []  # older than what a REST answer already told
        # a pushed fee is the last trade's (binance), not the order's: fees come from the fills
        return await self._refresh(t, {**order, "fee": None, "status": order.get("status") or "open"})
