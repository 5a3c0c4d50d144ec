"""A strategy's order on its way out of the live broker (``docs/orders.md``, "Safety"):
checked against the market, the order kinds, the limits and the bot's own position (swaps:
``bt/swapbook.py``), stored, then queued for the order worker.
"""

from __future__ import annotations

import datetime
import logging
import math
from dataclasses import replace
from typing import Any

from backtrader.order import Order

from btccxt_cli.bt.brokerevents import _Live
from btccxt_cli.bt.derivs import SWAP_EXCHANGES, is_contract
from btccxt_cli.bt.orderkit import exchange_now_ms
from btccxt_cli.cache.orders import OrderRecord

logger = logging.getLogger("btccxt_cli.bt.broker")

#: exchanges whose spot stop orders ccxt sends with ``stopLossPrice``: plain orders on binance
#: (``STOP_LOSS``, ``STOP_LOSS_LIMIT``), algo orders on okx (``conditional``; ``ordersync``)
STOP_ORDER_EXCHANGES = ("binance", "okx")
#: exchanges whose swap stops the live broker sends: algo orders (okx; binance USD-M's Algo
#: Service)
SWAP_STOP_EXCHANGES = ("binance", "okx")
#: exchanges whose trailing stops the live broker sends (swaps: okx only)
TRAIL_EXCHANGES = ("binance", "okx")


class BrokerOrders:
    """Part of :class:`~btccxt_cli.bt.broker.CCXTBroker` (its attributes are the broker's)."""

    # ------------------------------------------------------------------ submit
    def _submit(self, order: Order, oco: Any, info: dict[str, Any]) -> Order:
        order.addinfo(**info)
        order.addcomminfo(self.getcommissioninfo(order.data))
        order.submit(self)
        self._notify(order)
        reason = self._refuse(order, oco)
        if reason is not None:
            logger.warning("order rejected locally: %s", reason)
            order.addinfo(reason=reason)
            order.reject(self)
            self._notify(order)
            return order
        assert self.db is not None and self.sync is not None
        expires = self._expiry_ms(order)
        if expires is not None and expires <= exchange_now_ms(self.store, self.clock):
            # as backtrader's own broker does at the next bar: it expires before it can fill
            logger.info("order not sent: its valid= time had passed")
            order.addinfo(reason="expired before it was sent: its valid= time had passed")
            order.status = Order.Expired
            self._notify(order)
            return order
        symbol = self._symbol(order.data)
        seq = self.db.next_seq(self.run_id)
        cid = f"bx{self.run_id}{seq:05d}"
        kind, price, stop = self._kind(order)
        trail = float(order.trailpercent) if kind == "trailing_stop" else None
        now = self.clock.time_ms()
        rec = OrderRecord(client_id=cid, account=self.account, run_id=self.run_id, seq=seq,
                          symbol=symbol, side="buy" if order.isbuy() else "sell", type=kind,
                          amount=abs(float(order.created.size)), price=price, stop_price=stop,
                          status="pending", created_ms=now, updated_ms=now, scope=self.p.run_scope,
                          expires_ms=expires, trail=trail)
        # a swap order that only takes the bot's position towards zero goes reduce-only
        extra = {"reduceOnly": True} if is_contract(self._markets.get(symbol)) and \
            self.swaps.reduce_only(symbol, rec.side, rec.amount, self.positions, self._open_rest()) else {}
        self.db.insert_order(rec)  # stored before it is sent: a crash leaves a row to reconcile
        order.addinfo(client_id=cid)
        self._live[cid] = _Live(rec, order, order.data)
        self._by_ref[order.ref] = cid
        self._sent.append(self.clock.monotonic())
        self._open_count += 1
        self.sync.send("create", replace(rec), extra)  # the worker owns its copy
        return order

    @staticmethod
    def _expiry_ms(order: Order) -> int | None:
        """``valid=`` as exchange time in ms (backtrader stores it as a UTC date number);
        None for good till cancelled. Market orders never expire, as in backtrader."""
        if not order.valid or order.exectype in (Order.Market, Order.Close, None):
            return None
        from backtrader.utils.dateintern import num2date

        dt = num2date(float(order.valid)).replace(tzinfo=datetime.timezone.utc)
        return int(round(dt.timestamp() * 1000))

    def _kind(self, order: Order) -> tuple[str, float | None, float | None]:
        et = order.exectype
        if et in (Order.Market, Order.Close, None):
            return "market", None, None
        if et == Order.Limit:
            return "limit", float(order.created.price), None
        if et == Order.Stop:
            return "stop_market", None, float(order.created.price)
        if et == Order.StopTrail:  # the exchange trails it (``_refuse``: by percent only)
            return "trailing_stop", None, None
        return "stop_limit", float(order.created.pricelimit), float(order.created.price)

    def _refuse(self, order: Order, oco: Any) -> str | None:
        """Why an order may not be sent (None: it may)."""
        if not self.started:
            return "the live broker is not started"
        if self.killed:
            return "the kill switch was triggered; no new orders"
        symbol = self._symbol(order.data)
        market = self._markets.get(symbol)
        if market is None:
            return f"{symbol} is not a market of {self.store.exchange_id}"
        swap = is_contract(market)
        if not market.get("spot") and not swap:
            return f"{symbol}: live orders are for spot markets and linear swaps only"
        if swap and self.store.exchange_id not in SWAP_EXCHANGES:
            return (f"{symbol}: live orders on swaps are supported on {', '.join(SWAP_EXCHANGES)} "
                    "only")
        if swap and order.exectype in (Order.Stop, Order.StopLimit) and \
                self.store.exchange_id not in SWAP_STOP_EXCHANGES:
            return (f"{symbol}: stop orders on swaps are supported on "
                    f"{', '.join(SWAP_STOP_EXCHANGES)} only by the live broker (use a limit order, "
                    "or watch the stop in the strategy)")
        if oco is not None or order.parent is not None or not order.transmit:
            return "OCO and bracket orders are not supported by the live broker"
        et = order.exectype
        if et == Order.StopTrail:
            reason = self._refuse_trail(order, swap)
            if reason is not None:
                return reason
        elif et in (Order.StopTrailLimit, Order.Historical):
            return f"{order.getordername()} orders are not supported by the live broker"
        if et in (Order.Stop, Order.StopLimit) and self.store.exchange_id not in STOP_ORDER_EXCHANGES:
            return (f"{order.getordername()} orders are not supported on {self.store.exchange_id} "
                    "by the live broker (use a limit order, or watch the stop in the strategy)")
        size = abs(float(order.created.size))
        if not size or math.isnan(size):
            return "the order size must be > 0"
        lim = self.limits
        now = self.clock.monotonic()
        while self._sent and now - self._sent[0] >= 60.0:
            self._sent.popleft()
        if lim.max_orders_per_minute is not None and len(self._sent) >= lim.max_orders_per_minute:
            return (f"order rate limit reached: {len(self._sent)} orders in the last minute "
                    f"(broker.limits.max_orders_per_minute = {lim.max_orders_per_minute})")
        px = order.created.price or (float(order.data.close[0]) if len(order.data) else 0.0)
        side = "buy" if order.isbuy() else "sell"
        if swap:
            return self.swaps.refuse(symbol, side, size, px, self.positions, self.limits,
                                     self._open_rest())
        return self.positions.refuse(symbol, side, size, px, self.limits, self._open_rest())

    def _refuse_trail(self, order: Order, swap: bool) -> str | None:
        """Why a trailing stop (``Order.StopTrail``) may not be sent. The exchange trails it
        from its own last price, by a percentage: binance spot (``STOP_LOSS`` with
        ``trailingDelta``), okx spot and swaps (``move_order_stop`` algo orders)."""
        ex = self.store.exchange_id
        where = "binance spot, okx spot and okx swaps"
        if ex not in TRAIL_EXCHANGES or (swap and ex != "okx"):
            return (f"trailing stops are supported on {where} only by the live broker (use a "
                    "stop order and move it from the strategy)")
        if order.trailamount:
            return ("trailing stops trail by a percentage on the exchange: use trailpercent= "
                    "instead of trailamount=")
        pct = float(order.trailpercent or 0.0)
        if not 0.0 < pct < 1.0:
            return "a trailing stop needs trailpercent= between 0 and 1 (0.02 trails by 2 %)"
        if order.p.price is not None:
            return ("a live trailing stop trails from the exchange's last price: leave price= "
                    "out")
        if ex == "binance" and abs(pct * 10_000 - round(pct * 10_000)) > 1e-6:
            return (f"binance trails in whole basis points (0.0001): trailpercent={pct:g} is "
                    "not one")
        return None

    def _open_rest(self) -> list[tuple[str, str, float]]:
        """What every open order has yet to fill (its amount less the fills already in the
        bot's position)."""
        return [(lv.rec.symbol, lv.rec.side, max(0.0, lv.rec.amount - lv.in_ledger))
                for lv in self._live.values() if not lv.final]
