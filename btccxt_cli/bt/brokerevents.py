"""The live broker's side of the order worker's events, on the strategy thread
(``docs/orders.md``): markets, balances, positions and swap notices applied; fills turned
into backtrader executions and trades; one notification per order and batch; orders an
earlier run left live adopted as backtrader orders.
"""

from __future__ import annotations

import logging
import queue
from datetime import datetime, timezone
from typing import Any

from backtrader.order import BuyOrder, Order, SellOrder
from backtrader.position import Position
from backtrader.utils import date2num

from btccxt_cli.bt.orderkit import Event
from btccxt_cli.cache.orders import OrderRecord

logger = logging.getLogger("btccxt_cli.bt.broker")


class _Live:
    """Strategy-thread view of one order."""

    __slots__ = ("rec", "order", "data", "accepted", "final", "pre_filled", "in_ledger",
                 "ledger_trades")

    def __init__(self, rec: OrderRecord, order: Order | None, data: Any) -> None:
        self.rec = rec
        self.order = order
        self.data = data
        self.accepted = False
        self.final = False
        self.pre_filled = 0.0  # filled before this process (delivered by an earlier run)
        self.in_ledger = 0.0  # fills already counted in the bot's position
        self.ledger_trades: set[str] = set()


class BrokerEvents:
    """Part of :class:`~btccxt_cli.bt.broker.CCXTBroker` (its attributes are the broker's)."""

    def _tell_notices(self) -> None:
        """Funding payments and positions closed outside the bot, to every strategy's
        ``notify_store(msg, data=..., symbol=..., ...)`` (strategy thread)."""
        strats = list(getattr(getattr(self, "cerebro", None), "runningstrats", None) or [])
        for msg, symbol, kwargs in self.swaps.take_notices():
            data = next((d for d in self._datas() if self._symbol(d) == symbol), None)
            for strat in strats:
                strat.notify_store(msg, data=data, symbol=symbol, **kwargs)

    # ------------------------------------------------------------------ events (strategy thread)
    def _apply_pending(self) -> None:
        while True:
            try:
                self._held.append(self._events.get_nowait())
            except queue.Empty:
                break
        self._release()
        while self._held:
            self._apply(self._defer(self._held.pop(0)))
        if self._adopt:
            self._materialize()

    def _defer(self, batch: list[Event]) -> list[Event]:
        """A fill or a change of status cannot reach backtrader before its data has a bar
        (trades, cancels and rejects read its datetime): it and every later event of its symbol
        wait; other symbols go on. The bot's position moves at once all the same."""
        now: list[Event] = []
        for ev in batch:
            rec = ev.fill if ev.fill is not None else ev.rec
            symbol = rec.symbol if rec is not None else None
            if symbol is not None and (symbol in self._deferred or (
                    ev.kind in ("fill", "order") and self._no_bar(symbol))):
                self._deferred.setdefault(symbol, []).append(ev)
                if ev.kind == "fill":
                    self._ledger_fill(ev)
            else:
                now.append(ev)
        return now

    def _release(self) -> None:
        for symbol in [s for s in self._deferred if not self._no_bar(s)]:
            self._apply(self._deferred.pop(symbol))

    def _no_bar(self, symbol: str) -> bool:
        data = next((d for d in self._datas() if self._symbol(d) == symbol), None)
        return data is not None and len(data) == 0

    def _apply(self, events: list[Event]) -> None:
        touched: dict[str, list[str]] = {}
        for ev in events:
            if ev.kind == "ready":
                self._markets = self.positions.markets = dict(ev.data.get("markets") or {})
                self.positions.precision_mode = ev.data.get("precision_mode")
                self.positions.held.update(ev.data.get("holdings") or {})
                if ev.data.get("balances") is not None:
                    self._balances = dict(ev.data["balances"])
            elif ev.kind == "balance":
                self._balances = dict(ev.data)
                self.positions.reconcile(self._balances, self._open_rest())
            elif ev.kind == "adopted":  # broker.adopt_holdings: positions the bot starts with
                self.positions.held.update(ev.data)
                self.positions.at_start.update(ev.data)
            elif ev.kind == "orders":
                self._open_count = int(ev.data.get("open", 0))
            elif ev.kind == "updates":
                self.updates_via = str(ev.data.get("via", ""))
                self.updates_reason = str(ev.data.get("reason", ""))
                self._updates_changes.append((self.updates_via, self.updates_reason))
            elif ev.kind == "adopt" and ev.rec is not None:
                if ev.data.get("late"):
                    self._late.add(ev.rec.client_id)
                self._adopt.append(ev.rec)
                self._materialize()
            elif ev.kind == "positions":
                self.swaps.on_positions(ev.data)
            elif ev.kind == "funding":
                self.swaps.on_funding(ev.data)
            elif ev.kind == "outside":
                self.swaps.on_outside(ev.data, self.positions)
                data = next((d for d in self._datas() if self._symbol(d) == ev.data["symbol"]), None)
                if data is not None and data in self._shadow:
                    self._shadow[data] = Position(*ev.data["holding"])
            elif ev.kind == "fill" and ev.fill is not None:
                self._on_fill(ev, touched)
            elif ev.kind == "order" and ev.rec is not None:
                self._on_order(ev.rec, touched)
        for cid, trades in touched.items():
            self._settle(cid, trades)

    def _materialize(self) -> None:
        """Backtrader orders for orders an earlier run left live (once datas exist)."""
        datas = self._datas()
        if not datas:
            return
        for rec in self._adopt:
            fills = self.db.fills(rec.client_id) if self.db else []
            data = next((d for d in datas if self._symbol(d) == rec.symbol), None)
            if data is None:
                logger.warning("adopted order %s on %s: no data feed for that symbol; it is "
                               "tracked but the strategy is not told", rec.client_id, rec.symbol)
                lv = _Live(rec, None, None)
            else:
                lv = _Live(rec, self._adopted_order(rec, data), data)
            lv.pre_filled = sum(f.amount for f in fills if f.delivered)
            lv.in_ledger = sum(f.amount for f in fills)  # stored fills are in the position
            lv.ledger_trades = {f.trade_id for f in fills}
            self._live[rec.client_id] = lv
            if lv.order is None:
                continue
            self._by_ref[lv.order.ref] = rec.client_id
            logger.info("adopted %s order %s %s %g %s from run %s", rec.status, rec.client_id,
                        rec.side, rec.amount, rec.symbol, rec.run_id)
            if rec.status in ("open", "closed", "canceled", "expired"):  # the exchange has it
                lv.accepted = True
                lv.order.accept(self)
                self._notify(lv.order)
            elif rec.status in ("pending", "sending", "unknown") and not lv.order.info.get("late"):
                # not confirmed yet (a crash before or during its create): told as submitted,
                # so the strategy knows of it before it is found (Accepted) or given up
                # (Rejected, ambiguous_timeout later)
                self._notify(lv.order)
        self._adopt = []

    def _adopted_order(self, rec: OrderRecord, data: Any) -> Order:
        cls = BuyOrder if rec.side == "buy" else SellOrder
        et = {"market": Order.Market, "limit": Order.Limit, "stop_market": Order.Stop,
              "stop_limit": Order.StopLimit, "trailing_stop": Order.Stop}[rec.type]
        # simulated=True builds the order without reading the data's current bar
        order = cls(owner=None, data=data, size=rec.amount, price=rec.stop_price or rec.price,
                    pricelimit=rec.price if rec.type == "stop_limit" else None, exectype=et,
                    simulated=True)
        if rec.type == "trailing_stop":  # built as a stop: backtrader's own trailing needs a
            order.exectype = Order.StopTrail  # price to trail from, which the exchange keeps
            order.p.trailpercent = order.created.trailpercent = rec.trail
        order.p.simulated = False  # but the strategy must be notified like any order
        order.addcomminfo(self.getcommissioninfo(data))
        order.addinfo(client_id=rec.client_id, adopted=True, run_id=rec.run_id)
        if rec.client_id in self._late:  # given up on "not found", then found: told as it is
            self._late.discard(rec.client_id)
            order.addinfo(late=True, reason=rec.reason)
        order.submit(self)
        return order

    def _ledger_fill(self, ev: Event) -> None:
        """The bot's position after a new fill (idempotent: a deferred fill passes twice)."""
        f = ev.fill
        assert f is not None
        # taken on the first pass only: a deferred fill passes again after later moves (the
        # coins broker.adopt_holdings adopted at start), which its holding predates
        held = ev.data.pop("holding", None)
        if held is not None:
            self.positions.held[f.symbol] = (float(held[0]), float(held[1]))
        lv = self._live.get(f.client_id)
        if lv is not None and f.trade_id not in lv.ledger_trades:
            lv.ledger_trades.add(f.trade_id)
            lv.in_ledger += f.amount

    def _on_fill(self, ev: Event, touched: dict[str, list[str]]) -> None:
        f = ev.fill
        assert f is not None
        self._ledger_fill(ev)
        lv = self._live.get(f.client_id)
        if lv is None or lv.order is None:
            return
        order, data = lv.order, lv.data
        if not lv.accepted:
            lv.accepted = True
            order.accept(self)
            self._notify(order)
        size = f.amount if f.side == "buy" else -f.amount
        comm = self.fees.add(order, f, self._markets.get(f.symbol) or {}, ev.data.get("fee_value"))
        pos = self._shadow.get(data)
        if pos is None:  # trades open from the bot's position at start
            pos = self._shadow[data] = Position(*self.positions.at_start.get(f.symbol, (0.0, 0.0)))
        pprice_orig = pos.price
        psize, pprice, opened, closed = pos.update(size, f.price)
        comminfo = order.comminfo
        closedcomm = comm * closed / size if size else 0.0
        openedcomm = comm - closedcomm
        closedvalue = comminfo.getoperationcost(closed, pprice_orig)
        openedvalue = comminfo.getoperationcost(opened, f.price)
        pnl = comminfo.profitandloss(-closed, pprice_orig, f.price) if closed else 0.0
        dt = date2num(datetime.fromtimestamp(f.time_ms / 1000, tz=timezone.utc).replace(tzinfo=None))
        order.execute(dt, size, f.price, closed, closedvalue, closedcomm, opened, openedvalue,
                      openedcomm, None, pnl, psize, pprice)
        touched.setdefault(f.client_id, []).append(f.trade_id)

    def _on_order(self, rec: OrderRecord, touched: dict[str, list[str]]) -> None:
        lv = self._live.get(rec.client_id)
        if lv is None:
            return
        lv.rec = rec
        touched.setdefault(rec.client_id, [])

    def _settle(self, cid: str, trades: list[str]) -> None:
        """One notification per order and batch, from the exchange's status and our fills."""
        lv = self._live.get(cid)
        if lv is None or lv.final:
            return
        self._settle_one(lv, trades)
        if lv.final:  # nothing more will come: forget it (submits scan what is live)
            self._live.pop(cid, None)
            if lv.order is not None:
                self._by_ref.pop(lv.order.ref, None)

    def _settle_one(self, lv: _Live, trades: list[str]) -> None:
        order, rec = lv.order, lv.rec
        if order is None:
            if rec.status not in ("pending", "sending", "unknown", "open"):
                lv.final = True
            return
        executed = lv.pre_filled + abs(order.executed.size)
        all_fills_in = executed + self.positions.tol(rec.symbol, rec.amount) >= rec.filled
        if rec.status == "rejected":
            lv.final = True
            order.addinfo(reason=rec.reason or "rejected by the exchange")
            if order.reject(self):
                self._notify(order, trades)
            return
        if rec.status in ("pending", "sending", "unknown"):
            if trades:
                order.partial()
                self._notify(order, trades)
            return
        if not lv.accepted:
            lv.accepted = True
            order.accept(self)
            self._notify(order)
        if rec.status == "closed" and all_fills_in:
            lv.final = True
            order.completed()
            self._notify(order, trades)
        elif rec.status in ("canceled", "expired") and all_fills_in:
            lv.final = True
            if rec.status == "canceled":
                order.cancel()
            else:
                order.status = Order.Expired
            if rec.reason:
                order.addinfo(reason=rec.reason)
            self._notify(order, trades)
        elif trades:
            order.partial()
            self._notify(order, trades)

    def _notify(self, order: Order, trades: list[str] | None = None) -> None:
        cid = order.info.get("client_id") if order.status in (
            Order.Completed, Order.Canceled, Order.Expired, Order.Rejected) else None
        self.notifs.append((order.clone(), list(trades or []), cid))
