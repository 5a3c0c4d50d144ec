"""Orders given up on weak evidence are kept under watch (``docs/orders.md``, "Weak evidence").

An exchange's lookups may lag its matching engine (binance -2013, okx 51603 for a while after a
create), and a create whose answer was lost may still be inserted after the broker stopped
looking (binance -1007 says so). So a verdict reached on "not found" (``Rejected`` after
``ambiguous_timeout``, ``Canceled`` after repeated misses of a known order) is not the end:

* the order stays **watched** for ``watch_for`` seconds from its verdict, in the next run too:
  looked up by client order id (or its id) with a backoff (``WATCH_FIRST`` s doubling to
  ``WATCH_MAX``), and a push of it revives it;
* a **sweep** at start and every ``sweep_interval`` seconds reads the exchange's open orders of
  the broker's symbols (and their resting algo stop orders, okx and binance USD-M swaps, where a
  stop was given up), and while orders are watched its recent trades, for client order ids of
  this database and run scope that are no longer tracked;
* an order found again is **revived**: tracked again, stored with the exchange's status, and
  handed to the strategy as an adopted order (``order.info.late = True``) with its fills, so a
  late fill is told as it happened and the bot's position follows it.

Runs on the order worker's loop; ccxt is reached through the worker's client.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from btccxt_cli.bt.adoption import copy as _copy
from btccxt_cli.bt.derivs import in_base
from btccxt_cli.bt.orderkit import STOP_TYPES, Event, _Tracked

if TYPE_CHECKING:
    from btccxt_cli.bt.ordersync import OrderSync

__all__ = ["Watch", "WATCH_FIRST", "WATCH_MAX", "CLIENT_PREFIX"]

logger = logging.getLogger(__name__)

WATCH_FIRST = 2.0  # seconds to the first lookup of a watched order
WATCH_MAX = 60.0  # longest wait between lookups of a watched order
CLIENT_PREFIX = "bx"  # every client order id of btccxt starts so
_TRADE_LOOKUPS = 20  # unknown order ids of recent trades looked up per sweep, at most


class Watch:
    """The watched orders and the sweeps of one :class:`OrderSync`."""

    def __init__(self, sync: OrderSync, *, watch_for: float, sweep_interval: float) -> None:
        self.sync = sync
        self.watch_for = watch_for
        self.sweep_interval = sweep_interval
        self.watched: dict[str, _Tracked] = {}
        self._next_sweep = 0.0  # monotonic (the broker's clock)
        self._seen_trades: set[str] = set()
        self.sweeps = 0
        self.revived = 0

    # ------------------------------------------------------------------ watch
    def add(self, t: _Tracked) -> None:
        """``t`` was given up on "not found": keep looking for it a while."""
        now = self.sync.clock.monotonic()
        t.watch_until = now + self.watch_for
        t.watch_wait = WATCH_FIRST
        t.next_lookup = now + WATCH_FIRST
        self.watched[t.rec.client_id] = t

    async def resume(self) -> int:
        """At start: watch again the orders an earlier run gave up less than ``watch_for`` ago
        (for what is left of it); returns how many."""
        sync = self.sync
        now_ms = sync.clock.time_ms()
        n = 0
        for rec in await sync._db(sync.db.given_up, sync.account, sync.scope,
                                  now_ms - int(self.watch_for * 1000)):
            if rec.client_id in sync.tracked:
                continue
            t = _Tracked(rec)
            for f in await sync._db(sync.db.fills, rec.client_id):
                t.add(f)
            self.add(t)
            t.watch_until -= max(0.0, (now_ms - rec.updated_ms) / 1000.0)
            n += 1
        if n:
            logger.info("%d order(s) given up by an earlier run on \"not found\" are watched again", n)
        return n

    def match(self, order: dict[str, Any]) -> _Tracked | None:
        """The watched order a pushed or swept exchange order is, if any."""
        cid = order.get("clientOrderId")
        if cid and str(cid) in self.watched:
            return self.watched[str(cid)]
        oid = order.get("id")
        if oid is not None:
            return next((t for t in self.watched.values() if t.rec.exchange_id == str(oid)), None)
        return None

    async def check(self) -> list[Event]:
        """Look up the watched orders that are due, and sweep when due (each poll)."""
        import ccxt

        events: list[Event] = []
        now = self.sync.clock.monotonic()
        for cid, t in list(self.watched.items()):
            if now >= t.watch_until:
                logger.info("order %s: not seen at the exchange for %.0f s after it was given up; "
                            "no longer watched", cid, self.watch_for)
                self.watched.pop(cid, None)
                continue
            if now < t.next_lookup:
                continue
            t.watch_wait = min(WATCH_MAX, t.watch_wait * 2)
            t.next_lookup = now + t.watch_wait
            try:
                order = await self.sync.lookup(t.rec)
            except ccxt.OrderNotFound:
                continue
            except Exception as exc:
                logger.debug("watched order %s: lookup failed (%s)", cid, exc)
                continue
            events += await self.revive(t, order, "a lookup")
        if now >= self._next_sweep:
            events += await self.sweep()
        return events

    # ------------------------------------------------------------------ sweep
    async def sweep(self) -> list[Event]:
        """Open orders of the broker's symbols (and, while orders are watched, recent trades)
        that carry a client order id of this database and scope but are not tracked."""
        sync = self.sync
        self.sweeps += 1
        self._next_sweep = sync.clock.monotonic() + self.sweep_interval
        events: list[Event] = []
        symbols = dict.fromkeys([*sync.symbols, *(t.rec.symbol for t in self.watched.values())])
        # stops resting as algo orders are listed apart: read only where a stop was given up
        stops: dict[str, set[str]] = {}  # symbol -> our stop types given up there
        for r in await sync._db(sync.db.given_up, sync.account, sync.scope, 0):
            if r.type in STOP_TYPES and sync.algo_stops(r.symbol):
                stops.setdefault(r.symbol, set()).add(r.type)
        for symbol in symbols:
            try:
                open_orders = await sync._ex.fetch_open_orders(symbol)
            except Exception as exc:
                logger.info("sweep of %s open orders failed (%s); next sweep retries", symbol, exc)
                continue
            for order in open_orders:
                events += await self._found(in_base(order, sync._ex.markets or {}), "the open orders")
            if symbol in stops:
                events += await self._algo_orders(symbol, stops[symbol])
            if self.watched:
                events += await self._trades(symbol)
        return events

    async def _algo_orders(self, symbol: str, types: set[str]) -> list[Event]:
        """Resting algo (stop) orders of ``symbol``: okx's ``conditional`` ones (and its
        trailing ``move_order_stop`` ones where a trailing stop was given up), binance
        USD-M's Algo Service."""
        sync = self.sync
        lists: list[dict[str, Any]] = [{"trigger": True}]
        if sync.store.exchange_id == "okx":  # ccxt lists okx's trigger type unless told
            lists = [{"trigger": True, "ordType": t} for t in (
                *(["conditional"] if types - {"trailing_stop"} else []),
                *(["move_order_stop"] if "trailing_stop" in types else []))]
        events: list[Event] = []
        for params in lists:
            try:
                orders = await sync._ex.fetch_open_orders(symbol, None, None, params)
            except Exception as exc:
                logger.info("sweep of %s stop orders failed (%s); next sweep retries", symbol, exc)
                continue
            for order in orders:
                events += await self._found(in_base(order, sync._ex.markets or {}), "the stop orders")
        return events

    async def _trades(self, symbol: str) -> list[Event]:
        """Recent trades of ``symbol`` whose order is a watched one (by id, or by the client id
        a lookup of an unknown order id tells)."""
        sync = self.sync
        oldest = min(t.rec.created_ms for t in self.watched.values())
        try:
            trades = await sync._ex.fetch_my_trades(symbol, oldest - 60_000)
        except Exception as exc:
            logger.info("sweep of %s trades failed (%s)", symbol, exc)
            return []
        known = {r.exchange_id for r in await sync._db(sync.db.orders, sync.account) if r.exchange_id}
        events: list[Event] = []
        lookups = 0
        for tr in trades:
            oid = str(tr.get("order") or "")
            if not oid or oid in self._seen_trades:
                continue
            watched = next((t for t in self.watched.values() if t.rec.exchange_id == oid), None)
            if watched is None and (oid in known or lookups >= _TRADE_LOOKUPS):
                continue
            lookups += watched is None
            self._seen_trades.add(oid)
            try:
                order = await sync._ex.fetch_order(oid, symbol)
            except Exception as exc:
                logger.debug("sweep: order %s of a recent trade: %s", oid, exc)
                self._seen_trades.discard(oid)
                continue
            events += await self._found(in_base(order, sync._ex.markets or {}), "the recent trades")
        return events

    async def _found(self, order: dict[str, Any], where: str) -> list[Event]:
        sync = self.sync
        cid = str(order.get("clientOrderId") or "")
        if not cid.startswith(CLIENT_PREFIX) or cid in sync.tracked:
            return []
        t = self.watched.get(cid)
        if t is None:
            rec = await sync._db(sync.db.get_order, cid)
            if rec is None or rec.account != sync.account or rec.scope != sync.scope or rec.live:
                return []  # another database's or run scope's order, or tracked by now
            t = _Tracked(rec)
            for f in await sync._db(sync.db.fills, cid):
                t.add(f)
        return await self.revive(t, order, where)

    # ------------------------------------------------------------------ revive
    async def revive(self, t: _Tracked, order: dict[str, Any], where: str) -> list[Event]:
        """Track ``t`` again: the exchange has it after all."""
        sync = self.sync
        rec = t.rec
        self.watched.pop(rec.client_id, None)
        status = str(order.get("status") or "open")
        if status in ("canceled", "cancelled", "expired", "rejected") and \
                float(order.get("filled") or 0.0) <= t.traded + sync._tol(rec):
            logger.info("order %s given up as %s is %s at the exchange, without fills: nothing "
                        "more to tell", rec.client_id, rec.status, status)
            return []
        self.revived += 1
        sync.counts["revived"] += 1
        was = rec.status
        logger.warning("order %s was given up as %s (%s) but %s of the exchange has it (%s): "
                       "tracked again and told to the strategy", rec.client_id, was, rec.reason,
                       where, order.get("status"))
        t.missing_since, t.misses = None, 0
        sync._update(t, status="unknown", notified=False,
                     reason=f"found at the exchange after it was given up as {was}")
        sync.tracked[rec.client_id] = t
        events: list[Event] = [Event("adopt", rec=_copy(t.rec), data={"late": True})]
        events += await sync._refresh(t, order if order.get("status") else None)
        return events
