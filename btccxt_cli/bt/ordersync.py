"""The exchange side of ``CCXTBroker``: one task on the store's event-loop thread.

It owns every HTTP call the broker makes (create, cancel, look up, poll, balances) and turns
the answers into :class:`Event` batches for the strategy thread, which only drains a queue.
Commands are processed one at a time, in order, so a cancel never overtakes its create.

Idempotency (style habit 4, ``docs/orders.md``):

* ``create_order`` is called at most once per client order id, ever. The order is in SQLite
  (status ``pending``) before the call, ``sending`` during it.
* A definitive refusal (ccxt ``ExchangeError``: insufficient funds, invalid order, bad symbol,
  credentials ...) or a refused timestamp (``InvalidNonce``) rejects the order.
* Anything else (timeout, reset connection, 5xx, 429, ...) is *ambiguous*: the order becomes
  ``unknown`` and is looked up by its client id at once and on every poll. Found: it goes on
  as if the answer had arrived. Not found after ``ambiguous_timeout`` seconds (longer than the
  exchanges' receive windows, after which they refuse a late request): rejected, not resent.
* Cancels are idempotent; a cancel that fails is sent again on the next poll while the order
  is still open.

Imports ccxt only inside functions (through the store's client). No backtrader here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from btccxt_cli.cache.orders import FillRecord, OrderRecord, OrderStore
from btccxt_cli.clock import SYSTEM_CLOCK, Clock
from btccxt_cli.log import redact

__all__ = ["Event", "OrderSync", "exchange_message", "CCXT_TYPES"]

logger = logging.getLogger(__name__)

#: our order type -> (ccxt type, needs a trigger price)
CCXT_TYPES = {"market": ("market", False), "limit": ("limit", False),
              "stop_market": ("market", True), "stop_limit": ("limit", True)}
_FINAL = {"closed": "closed", "canceled": "canceled", "cancelled": "canceled",
          "expired": "expired", "rejected": "rejected"}
_EPS = 1e-12
_SIGNED = re.compile(r"(signature|sign)=[^&\s\"']+", re.IGNORECASE)


@dataclass
class Event:
    """Something the strategy thread must apply. Kinds:

    ``ready`` (data: markets, balances), ``adopt`` (rec), ``order`` (rec: the stored row after
    the change), ``fill`` (fill), ``balance`` (data: {asset: (free, used, total)}),
    ``orders`` (data: open order count).
    """

    kind: str
    rec: OrderRecord | None = None
    fill: FillRecord | None = None
    data: dict[str, Any] = field(default_factory=dict)


def exchange_message(exc: BaseException) -> str:
    """The exchange's own words from a ccxt error (``msg``/``sMsg`` of its JSON), secrets masked."""
    text = str(exc)
    start = text.find("{")
    if start >= 0:
        try:
            body = json.loads(text[start:])
        except ValueError:
            body = None
        if isinstance(body, dict):
            data = body.get("data")
            if isinstance(data, list) and data and isinstance(data[0], dict) and data[0].get("sMsg"):
                return redact(f"{data[0]['sMsg']} (code {data[0].get('sCode')})")
            if body.get("msg"):
                return redact(f"{body['msg']} (code {body.get('code')})")
    return redact(_SIGNED.sub(r"\1=***", text))


@dataclass
class _Tracked:
    rec: OrderRecord
    trades: set[str] = field(default_factory=set)
    traded: float = 0.0
    cancel_requested: bool = False
    cancel_sent: bool = False
    since_mono: float = 0.0  # when the create outcome became unknown


class OrderSync:
    """Runs the broker's exchange calls on the store's loop.

    Args:
        store: the ``CCXTStore`` (its async client and loop thread are used).
        db: the order store.
        account: ``cache.orders.account_id`` of the key in use.
        on_events: receives each batch of events (called on the loop thread; must not block).
        poll_interval: seconds between polls of live orders.
        balance_interval: seconds between balance reads when nothing traded.
        ambiguous_timeout: seconds an order whose create outcome is unknown is looked up
            before it is declared rejected (never resent).
        symbols: symbols whose open orders are checked at start (adoption by client id prefix).
        prefix: client order id prefix of this broker (adopts our own stray open orders).
    """

    def __init__(self, store: Any, db: OrderStore, account: str, *,
                 on_events: Callable[[list[Event]], None], poll_interval: float = 1.0,
                 balance_interval: float = 5.0, ambiguous_timeout: float = 35.0,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self.store = store
        self.db = db
        self.account = account
        self.on_events = on_events
        self.poll_interval = poll_interval
        self.balance_interval = balance_interval
        self.ambiguous_timeout = ambiguous_timeout
        self.clock = clock
        self.tracked: dict[str, _Tracked] = {}
        self._queue: asyncio.Queue | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._ex: Any = None
        self._last_balance = -1e18
        self._balance_due = True
        self.stopped = threading.Event()

    # ------------------------------------------------------------------ thread-safe commands
    def send(self, *command: Any) -> None:
        """Queue a command from any thread: ``("create", rec)``, ``("cancel", client_id)``."""
        loop, queue = self._loop, self._queue
        if loop is None or queue is None or loop.is_closed():
            raise RuntimeError("the order worker is not running")
        loop.call_soon_threadsafe(queue.put_nowait, command)

    # ------------------------------------------------------------------ lifecycle (loop thread)
    async def start(self) -> list[Event]:
        """Load markets and balances, reconcile stored orders; returns the first events."""
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._ex = await self.store.async_exchange()
        events: list[Event] = []
        balances = await self._fetch_balance(strict=True)  # rejected keys stop the run here
        events.append(Event("ready", data={"markets": self._ex.markets, "balances": balances}))
        for rec in self.db.live_orders(self.account):
            t = _Tracked(rec, since_mono=self.clock.monotonic())
            for f in self.db.fills(rec.client_id):
                t.trades.add(f.trade_id)
                t.traded += f.amount
            self.tracked[rec.client_id] = t
            events.append(Event("adopt", rec=_copy(rec)))
            # fills stored but never delivered (a crash between the two)
            events += [Event("fill", fill=f) for f in self.db.fills(rec.client_id, undelivered_only=True)]
            events += await self._refresh(t)
        events.append(self._count())
        self._task = asyncio.ensure_future(self._run())
        return events

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self.stopped.set()

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            try:
                try:
                    cmd = await asyncio.wait_for(self._queue.get(), timeout=self.poll_interval)
                except asyncio.TimeoutError:
                    cmd = None
                if cmd is not None:
                    await self._command(cmd)
                    # drain what else is queued before the next poll (each once, in order)
                    while not self._queue.empty():
                        await self._command(self._queue.get_nowait())
                await self._poll()
            except asyncio.CancelledError:
                raise
            except Exception:  # keep the broker alive whatever one cycle did
                logger.exception("order worker cycle failed")
                await asyncio.sleep(self.poll_interval)

    async def _command(self, cmd: tuple[Any, ...]) -> None:
        name = cmd[0]
        if name == "create":
            self._emit(await self._create(cmd[1]))
        elif name == "cancel":
            t = self.tracked.get(cmd[1])
            if t is not None:
                t.cancel_requested = True
                self._emit(await self._cancel(t))
        elif name == "cancel_all":
            fut: asyncio.Future | Any = cmd[1]
            try:
                events = await self.cancel_all()
                self._emit(events)
            finally:
                if hasattr(fut, "set_result") and not fut.done():
                    fut.set_result(True)

    def _emit(self, events: list[Event]) -> None:
        if events:
            self.on_events(events)

    # ------------------------------------------------------------------ create
    async def _create(self, rec: OrderRecord) -> list[Event]:
        """Send one order, once. See the module docstring for what follows a failure."""
        import ccxt

        t = _Tracked(rec)
        self.tracked[rec.client_id] = t
        self._update(t, status="sending")
        ccxt_type, trigger = CCXT_TYPES[rec.type]
        params: dict[str, Any] = {"clientOrderId": rec.client_id}
        if trigger:
            params["stopLossPrice"] = rec.stop_price
        try:
            amount = float(self._ex.amount_to_precision(rec.symbol, rec.amount))
            price = float(self._ex.price_to_precision(rec.symbol, rec.price)) if rec.price else None
            if rec.stop_price:
                params["stopLossPrice"] = float(self._ex.price_to_precision(rec.symbol, rec.stop_price))
        except Exception as exc:  # below the market's precision or minimum
            return self._reject(t, f"{rec.symbol}: {exchange_message(exc)}")
        if amount <= 0:
            return self._reject(t, f"{rec.symbol}: the size rounds to 0 at the market's precision")
        if amount != rec.amount:
            self._update(t, amount=amount)
        try:
            order = await self._ex.create_order(rec.symbol, ccxt_type, rec.side, amount, price, params)
        except (ccxt.ExchangeError, ccxt.InvalidNonce) as exc:  # the exchange said no ...
            if _status_unknown(exc):  # ... unless it says it does not know (binance -1006/-1007)
                return await self._ambiguous(t, exc)
            logger.warning("order %s %s %s %g refused by %s: %s", rec.client_id, rec.side,
                           rec.symbol, amount, self.store.exchange_id, exchange_message(exc))
            return self._reject(t, exchange_message(exc))
        except Exception as exc:  # no answer we can trust: look it up, never resend
            return await self._ambiguous(t, exc)
        oid = order.get("id")
        self._update(t, status="open", exchange_id=str(oid) if oid is not None else None)
        events = [Event("order", rec=_copy(t.rec))]
        events += await self._refresh(t, order if order.get("status") else None)
        self._balance_due = True
        return events

    async def _ambiguous(self, t: _Tracked, exc: BaseException) -> list[Event]:
        rec = t.rec
        logger.warning("order %s: create outcome unknown (%s); looking it up by client order id",
                       rec.client_id, type(exc).__name__)
        t.since_mono = self.clock.monotonic()
        self._update(t, status="unknown", reason=f"create outcome unknown: {type(exc).__name__}")
        events = [Event("order", rec=_copy(t.rec))]
        events += await self._refresh(t)
        return events

    def _reject(self, t: _Tracked, reason: str) -> list[Event]:
        self._update(t, status="rejected", reason=reason)
        self.tracked.pop(t.rec.client_id, None)
        return [Event("order", rec=_copy(t.rec)), self._count()]

    # ------------------------------------------------------------------ refresh one order
    async def _refresh(self, t: _Tracked, order: dict[str, Any] | None = None) -> list[Event]:
        """Read the order (by id, or by client id while its id is unknown) and its new fills."""
        import ccxt

        rec = t.rec
        events: list[Event] = []
        if order is None:
            try:
                if rec.exchange_id:
                    order = await self._ex.fetch_order(rec.exchange_id, rec.symbol)
                else:
                    order = await self._ex.fetch_order(None, rec.symbol, {"clientOrderId": rec.client_id})
            except ccxt.OrderNotFound:
                if rec.exchange_id is None and rec.status in ("unknown", "pending", "sending"):
                    waited = self.clock.monotonic() - (t.since_mono or self.clock.monotonic())
                    if waited >= self.ambiguous_timeout:
                        return self._reject(t, f"not found at the exchange {waited:.0f} s after the "
                                               "create call failed; it was not sent again")
                    if t.since_mono == 0.0:
                        t.since_mono = self.clock.monotonic()
                    return events
                logger.warning("order %s (%s) is no longer known to the exchange", rec.client_id,
                               rec.exchange_id)
                self._update(t, status="canceled", reason="the exchange no longer knows this order")
                self.tracked.pop(rec.client_id, None)
                return [Event("order", rec=_copy(t.rec)), self._count()]
            except Exception as exc:  # a read: simply try again on the next poll
                logger.info("order %s: lookup failed (%s); next poll retries", rec.client_id,
                            exchange_message(exc))
                return events
        if rec.exchange_id is None and order.get("id") is not None:
            self._update(t, exchange_id=str(order["id"]))
            if rec.status in ("unknown", "pending", "sending"):
                logger.warning("order %s found at the exchange by client order id (id %s); not resent",
                               rec.client_id, order["id"])
        status = str(order.get("status") or "open")
        filled = float(order.get("filled") or 0.0)
        if filled > t.traded + _EPS:
            events += await self._fills(t)
        new_status = _FINAL.get(status, "open")
        changed = {"filled": filled, "cost": float(order.get("cost") or 0.0)}
        fee = order.get("fee") or {}
        if fee.get("cost") is not None:
            changed.update(fee=float(fee["cost"]), fee_currency=fee.get("currency"))
        if new_status != rec.status:
            changed["status"] = new_status
        if rec.status != new_status or abs(rec.filled - filled) > _EPS:
            self._update(t, **changed)
            events.append(Event("order", rec=_copy(t.rec)))
            self._balance_due = True
        elif rec.status in ("unknown", "pending", "sending"):
            self._update(t, **changed)
            events.append(Event("order", rec=_copy(t.rec)))
        if new_status in _FINAL.values() and t.traded + _EPS >= filled:
            self.tracked.pop(rec.client_id, None)
            events.append(self._count())
        return events

    async def _fills(self, t: _Tracked) -> list[Event]:
        rec = t.rec
        try:
            if self._ex.has.get("fetchOrderTrades"):
                trades = await self._ex.fetch_order_trades(rec.exchange_id, rec.symbol)
            else:  # the account's recent trades, filtered to this order
                mine = await self._ex.fetch_my_trades(rec.symbol, rec.created_ms - 60_000)
                trades = [tr for tr in mine if str(tr.get("order")) == rec.exchange_id]
        except Exception as exc:
            logger.info("order %s: reading fills failed (%s); next poll retries", rec.client_id,
                        exchange_message(exc))
            return []
        events: list[Event] = []
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
            t.trades.add(tid)
            t.traded += f.amount
            if self.db.add_fill(f):
                events.append(Event("fill", fill=f))
        return events

    # ------------------------------------------------------------------ cancel
    async def _cancel(self, t: _Tracked) -> list[Event]:
        import ccxt

        rec = t.rec
        if rec.exchange_id is None:
            return []  # cancelled as soon as the order is known (next poll)
        try:
            await self._ex.cancel_order(rec.exchange_id, rec.symbol)
            t.cancel_sent = True
        except ccxt.OrderNotFound:
            t.cancel_sent = True  # already closed: the refresh tells how
        except Exception as exc:
            logger.warning("order %s: cancel failed (%s); retrying on the next poll", rec.client_id,
                           exchange_message(exc))
            return []
        return await self._refresh(t)

    async def cancel_all(self) -> list[Event]:
        """Cancel every live order of this account (the kill switch); returns the events."""
        events: list[Event] = []
        for t in list(self.tracked.values()):
            t.cancel_requested = True
            if t.rec.exchange_id is None:
                events += await self._refresh(t)
            events += await self._cancel(t)
        return events

    # ------------------------------------------------------------------ poll
    async def _poll(self) -> None:
        events: list[Event] = []
        for t in list(self.tracked.values()):
            if t.rec.client_id not in self.tracked:
                continue
            if t.cancel_requested and t.rec.exchange_id is not None and not t.cancel_sent:
                events += await self._cancel(t)
            else:
                events += await self._refresh(t)
        now = self.clock.monotonic()
        if self._balance_due or now - self._last_balance >= self.balance_interval:
            bal = await self._fetch_balance()
            if bal is not None:
                events.append(Event("balance", data=bal))
        self._emit(events)

    async def _fetch_balance(self, strict: bool = False) -> dict[str, tuple[float, float, float]] | None:
        try:
            raw = await self._ex.fetch_balance()
        except Exception as exc:
            if strict:
                from btccxt_cli.exchange.errors import map_ccxt_error

                raise map_ccxt_error(exc, exchange=self._ex, what="read the account balances") from exc
            logger.warning("%s: reading balances failed (%s)", self.store.exchange_id, exchange_message(exc))
            return None
        self._last_balance = self.clock.monotonic()
        self._balance_due = False
        out: dict[str, tuple[float, float, float]] = {}
        for asset, row in (raw.get("total") or {}).items():
            total = float(row or 0.0)
            free = float((raw.get("free") or {}).get(asset) or 0.0)
            used = float((raw.get("used") or {}).get(asset) or 0.0)
            out[asset] = (free, used, total)
        return out

    def _count(self) -> Event:
        return Event("orders", data={"open": len(self.tracked)})

    def _update(self, t: _Tracked, **values: Any) -> None:
        values["updated_ms"] = self.clock.time_ms()
        for k, v in values.items():
            setattr(t.rec, k, v)
        self.db.update_order(t.rec.client_id, **values)


def _copy(rec: OrderRecord) -> OrderRecord:
    return OrderRecord(**{k: getattr(rec, k) for k in rec.__dataclass_fields__})


def _status_unknown(exc: BaseException) -> bool:
    """The exchange's own words say the order may have been executed (binance -1006, -1007;
    okx 50004 "does not indicate success or failure")."""
    text = str(exc).lower()
    return any(k in text for k in ("status unknown", "-1006", "-1007", "does not indicate success"))
