"""The exchange side of ``CCXTBroker``: one task on the store's event-loop thread.

It owns every HTTP call the broker makes (create, cancel, look up, poll, balances) and turns
the answers into :class:`Event` batches for the strategy thread, which only drains a queue.
Commands are processed one at a time, in order, so a cancel never overtakes its create.

Idempotency (style habit 4, ``docs/orders.md``):

* ``create_order`` is called at most once per client order id, ever. The order is in SQLite
  (status ``pending``) before the call, ``sending`` during it.
* A definitive refusal (ccxt ``ExchangeError``: insufficient funds, invalid order, bad symbol,
  credentials ...) rejects the order. A refused timestamp (``InvalidNonce``, caught first: the
  exchange placed nothing) reads the exchange clock and sends the same order once more with the
  same client order id; refused so again, it is rejected with a hint to check the clock.
* Anything else (timeout, reset connection, 5xx, 429, ...) is *ambiguous*: the order becomes
  ``unknown`` and is looked up by its client id at once and on every poll. Found: it goes on
  as if the answer had arrived. Not found after ``ambiguous_timeout`` seconds (longer than the
  exchanges' receive windows, after which they refuse a late request): rejected, not resent.
* "Not found" is weak evidence (``bt/sweep.py``): a known order is given up only after
  ``LOST_AFTER_MISSES`` lookups over ``ambiguous_timeout``; an order given up stays watched,
  and sweeps of the exchange's open orders and recent trades find ours again (revived and told
  to the strategy as a late adopted order). Only orders of this run scope are adopted.
* Cancels are idempotent; a cancel that fails is sent again on the next poll while the order
  is still open.

Updates (``docs/orders.md``, "Order updates"): where ccxt.pro streams the account's orders
(``watch_orders``; binance's WebSocket-API user data stream, okx's private ``orders`` channel),
a second task follows the stream and queues each pushed order as a command, so it is applied
in order with creates and cancels. While the stream is up, REST polls of live orders only
reconcile (every ``reconcile_interval``); while it is down (not yet connected, dropped,
refused) they run every ``poll_interval`` as before, and one poll runs at once on every change
of the stream's state, so a push lost in a gap is read by REST. Fills are always read by REST
(ids, prices and fees of each trade), once per change of the filled amount.

Position ledger (``docs/orders.md``, "Cash, value, positions"): every new fill moves the bot's
own position in its symbol in the same SQLite transaction that stores it, and its ``fill`` event
carries the position after it, so the strategy sees it with the notification, not one balance
read later. Fill sums are compared within half the market's amount step
(:func:`amount_tolerance`), never with an absolute epsilon.

Imports ccxt only inside functions (through the store's client). No backtrader here.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from btccxt_cli.bt import derivs
from btccxt_cli.bt.adoption import adopt_holdings, last_price, replay_final
from btccxt_cli.bt.adoption import copy as _copy
from btccxt_cli.bt.derivs import SwapSettings
from btccxt_cli.bt.fees import fee_value
from btccxt_cli.bt.positions import amount_tolerance
from btccxt_cli.bt.sweep import Watch
from btccxt_cli.cache.orders import FillRecord, OrderRecord, OrderStore
from btccxt_cli.clock import SYSTEM_CLOCK, Clock
from btccxt_cli.errors import BtccxtError
from btccxt_cli.log import redact

__all__ = ["Event", "OrderSync", "exchange_message", "amount_tolerance", "CCXT_TYPES",
           "WS_ORDER_EXCHANGES", "UPDATE_MODES", "ALGO_STOP_EXCHANGES"]

logger = logging.getLogger(__name__)

#: our order type -> (ccxt type, needs a trigger price)
CCXT_TYPES = {"market": ("market", False), "limit": ("limit", False),
              "stop_market": ("market", True), "stop_limit": ("limit", True)}
_FINAL = {"closed": "closed", "canceled": "canceled", "cancelled": "canceled",
          "expired": "expired", "rejected": "rejected"}
_VIA_LOG_MAX = 1000
#: exchanges whose order stream (ccxt.pro ``watch_orders``) is tested against the simulator;
#: ``updates="auto"`` uses WebSocket updates on these and REST polling elsewhere
WS_ORDER_EXCHANGES = ("binance", "okx")
AUTH_TIMEOUT = 10.0
"""Seconds the order stream's login may take before it counts as failed (and is retried)."""
UPDATE_MODES = ("auto", "websocket", "poll")
#: exchanges whose spot stop orders are algo orders with ids of their own (okx): before the
#: trigger the order is stored with exchange id ``algo:<algoId>`` and read with
#: ``{"trigger": True}``; at the trigger its id becomes the id of the order it placed
ALGO_STOP_EXCHANGES = ("okx",)
_ALGO = "algo:"
_SIGNED = re.compile(r"(signature|sign)=[^&\s\"']+", re.IGNORECASE)
#: a known order is given up as gone only after this many lookups found nothing, spread over
#: at least ``ambiguous_timeout`` seconds (lookups may lag a create: binance -2013, okx 51603)
LOST_AFTER_MISSES = 3
_MISS_WAIT_MAX = 8.0  # longest wait between lookups of a known order not found


@dataclass
class Event:
    """Something the strategy thread must apply. Kinds:

    ``ready`` (data: markets, balances, holdings {symbol: (size, price)}, precision_mode),
    ``adopt`` (rec), ``order`` (rec: the stored row after the change), ``fill`` (fill; data:
    {"holding": (size, price)}, the bot's position after it, when the fill is new),
    ``balance`` (data: {asset: (free, used, total)}),
    ``adopted`` (data: {symbol: (size, price)}, the positions ``adopt_holdings`` raised),
    ``orders`` (data: open order count), ``updates`` (data: {"via": "websocket" | "polling" |
    "reconnecting", "reason": str}).
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
    since_mono: float | None = None  # when the create outcome became unknown
    fees: dict[str, float] = field(default_factory=dict)  # the fills' fees, per currency
    missing_since: float | None = None  # a known order not found since (broker clock)
    misses: int = 0  # lookups in a row that did not find it
    next_lookup: float = 0.0  # no lookup before (broker clock): backoff while not found
    watch_until: float = 0.0  # watched after it was given up (sweep.Watch)
    watch_wait: float = 0.0

    def add(self, f: FillRecord) -> None:
        self.trades.add(f.trade_id)
        self.traded += f.amount
        cur = f.fee_currency or ""
        self.fees[cur] = self.fees.get(cur, 0.0) + f.fee

    @property
    def fee(self) -> float:
        """The fee of the fee currency (the one currency, or the largest of several)."""
        return self.fees.get(self.fee_currency or "", 0.0)

    @property
    def fee_currency(self) -> str | None:
        if not self.fees:
            return None
        return max(self.fees, key=lambda c: self.fees[c]) or None


class OrderSync:
    """Runs the broker's exchange calls on the store's loop.

    Args:
        store: the ``CCXTStore`` (its async client and loop thread are used).
        db: the order store.
        account: ``cache.orders.account_id`` of the key in use.
        on_events: receives each batch of events (called on the loop thread; must not block).
        poll_interval: seconds between polls of live orders.
        balance_interval: seconds between balance reads when nothing traded (at least
            ``reconcile_interval`` while the order stream is up).
        ambiguous_timeout: seconds an order whose create outcome is unknown is looked up
            before it is declared rejected (never resent).
        symbols: symbols whose open orders are checked at start (adoption by client id prefix).
        updates: ``"auto"`` (WebSocket on ``WS_ORDER_EXCHANGES``, polling elsewhere),
            ``"websocket"`` (wherever ccxt.pro has ``watchOrders``) or ``"poll"``.
        reconcile_interval: seconds between REST polls of live orders while the WebSocket
            order stream is up.
        adopt: symbols whose position starts as the account's whole holding of their base
            currency (``broker.adopt_holdings``); the ledger of the others moves only with
            this bot's fills.
        scope: the run scope (``broker.run_scope``): only orders stored with it are adopted,
            swept or revived.
        symbols: the broker's symbols, whose open orders the sweeps read.
        watch_for: seconds an order given up on "not found" stays watched (``bt/sweep.py``).
        sweep_interval: seconds between sweeps of the exchange's open orders.
    """

    def __init__(self, store: Any, db: OrderStore, account: str, *,
                 on_events: Callable[[list[Event]], None], poll_interval: float = 1.0,
                 balance_interval: float = 5.0, ambiguous_timeout: float = 35.0,
                 updates: str = "auto", reconcile_interval: float = 10.0,
                 adopt: tuple[str, ...] = (), clock: Clock = SYSTEM_CLOCK, scope: str = "",
                 symbols: tuple[str, ...] = (), watch_for: float = 600.0,
                 sweep_interval: float = 60.0, swap: SwapSettings | None = None,
                 funding_interval: float = 30.0) -> None:
        if updates not in UPDATE_MODES:
            raise ValueError(f"updates must be one of {', '.join(UPDATE_MODES)}, not {updates!r}")
        self.store = store
        self.db = db
        self.account = account
        self.on_events = on_events
        self.poll_interval = poll_interval
        self.balance_interval = balance_interval
        self.ambiguous_timeout = ambiguous_timeout
        self.updates = updates
        self.reconcile_interval = max(reconcile_interval, poll_interval)
        self.adopt = tuple(adopt)
        self.clock = clock
        self.scope = scope
        self.symbols = tuple(symbols)
        self.tracked: dict[str, _Tracked] = {}
        self.swap = swap or SwapSettings({}, {})
        self.funding_interval = funding_interval
        self._funding_since = 0  # ms: funding payments from here on are read
        self._next_funding = 0.0
        self.watch = Watch(self, watch_for=watch_for, sweep_interval=sweep_interval)
        #: order metrics (``runtime/metrics.py``): rejects, unknown_creates, lost (given up on
        #: "not found"), revived, nonce_retries, worker_failures
        self.counts: Counter[str] = Counter()
        self._fee_rates: dict[str, tuple[float, float]] = {}  # fee currency -> (price, when)
        self._queue: asyncio.Queue | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._ws_task: asyncio.Task | None = None
        self._ex: Any = None
        self._last_balance = -1e18
        self._balance_due = True
        self._next_poll = 0.0
        #: "connecting" / "reconnecting" (stream not up: polling meanwhile), "websocket" (stream
        #: up) or "polling" (no stream)
        self.via = "polling"
        self.via_log: list[str] = []  # every state the order updates went through
        self.ws_pushes = 0  # order updates received by WebSocket
        self.polls = 0  # REST polls of live orders
        self.stopped = threading.Event()
        #: every OrderStore call of the loop runs here, in order, so a database held by
        #: another process never blocks the loop (its feeds, watches and this worker)
        self._dbx = ThreadPoolExecutor(max_workers=1, thread_name_prefix="orders-db")

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
        await derivs.setup(self, self.symbols, self.swap)  # swaps: leverage, margin mode
        held = {s: (h.size, h.price) for s, h in (await self._db(self.db.holdings, self.account)).items()}
        events.append(Event("ready", data={"markets": self._ex.markets, "balances": balances,
                                           "holdings": held,
                                           "precision_mode": getattr(self._ex, "precisionMode", None)}))
        await self._db(self.db.claim_unscoped, self.account, self.scope)
        live = await self._db(self.db.live_orders, self.account, self.scope)
        # final but short of fills (reading them failed, then the run ended): read them now
        for r in await self._db(self.db.untold_final_orders, self.account, self.scope):
            if sum(f.amount for f in await self._db(self.db.fills, r.client_id)) + self._tol(r) < r.filled:
                live.append(r)
        for rec in live:
            t = _Tracked(rec, since_mono=self.clock.monotonic())
            for f in await self._db(self.db.fills, rec.client_id):
                t.add(f)
            self.tracked[rec.client_id] = t
            events.append(Event("adopt", rec=_copy(rec)))
            # fills stored but never delivered (a crash between the two)
            events += [Event("fill", fill=f)
                       for f in await self._db(self.db.fills, rec.client_id, undelivered_only=True)]
            events += await self._refresh(t)
        events += await replay_final(self, {r.client_id for r in live})
        await self.watch.resume()  # given up lately, by an earlier run: still watched
        events += await self.watch.sweep()  # orders of ours the exchange has and we lost
        if self.adopt:  # after the fills made while down are in the ledger: never counted twice
            read, adopted = await adopt_holdings(self)  # fills of live orders read around it
            events += read
            if adopted:
                events.append(Event("adopted", data=adopted))
        events += await self._swap_start()
        events.append(self._count())
        stream = self._stream_wanted()
        self.via = "connecting" if stream else "polling"
        self._log_via(self.via)
        events.append(Event("updates", data={
            "via": self.via, "reason": stream or self._no_stream_reason()}))
        self._next_poll = self._wall() + self.poll_interval
        self._task = asyncio.ensure_future(self._run())
        if stream:
            self._ws_task = asyncio.ensure_future(self._watch())
        return events

    async def _swap_start(self) -> list[Event]:
        """Swaps after a restart: positions closed outside the bot while it was down lower its
        ledger, funding paid since the last payment stored is told, and ``adopt_holdings``
        adopts the account's position (long or short) once."""
        markets = self._ex.markets or {}
        if not any(derivs.is_contract(markets.get(s)) for s in self.symbols):
            return []
        held = await self._db(self.db.holdings, self.account)
        opened = [h.updated_ms for s, h in held.items() if h.size and derivs.is_contract(markets.get(s))]
        last = await self._db(self.db.last_funding_ms, self.account)
        self._funding_since = (last + 1) if last is not None else min(opened or [self.clock.time_ms()])
        positions = await derivs.read_positions(self, self.symbols, self.swap)
        if positions is None:
            raise BtccxtError(f"{self.store.exchange_id}: reading the account's positions failed",
                              hint="check the API key's permissions and the network, then start again")
        events = await derivs.outside_closes(self, positions, self.symbols)
        if self.adopt:
            now = self.clock.time_ms()
            adopted = {}
            for symbol in self.adopt:
                pos = positions.get(symbol)
                if pos is not None:
                    h = await self._db(self.db.adopt_signed, self.account, symbol, pos.size,
                                       pos.entry, now)
                    if h is not None:
                        adopted[symbol] = (h.size, h.price)
            if adopted:
                events.append(Event("adopted", data=adopted))
        events.append(await self._positions_event(positions, start=True))
        events += await derivs.read_funding(self, self.symbols, self._funding_since)
        self._next_funding = self.clock.monotonic() + self.funding_interval
        return events

    def _has_swaps(self) -> bool:
        markets = self._ex.markets or {}
        return any(derivs.is_contract(markets.get(s)) for s in self.symbols)

    async def _swap_positions(self) -> list[Event]:
        """The exchange's positions, read with every balance read (after a fill too)."""
        if not self._has_swaps():
            return []
        events: list[Event] = []
        positions = await derivs.read_positions(self, self.symbols, self.swap)
        if positions is not None:
            events += await derivs.outside_closes(self, positions, self.symbols)
            events.append(await self._positions_event(positions))
        return events

    async def _swap_funding(self) -> list[Event]:
        """Funding payments, every ``funding_interval`` whatever else the poll did."""
        if not self._has_swaps() or self.clock.monotonic() < self._next_funding:
            return []
        self._next_funding = self.clock.monotonic() + self.funding_interval
        return await derivs.read_funding(self, self.symbols, self._funding_since)

    async def _positions_event(self, positions: dict[str, derivs.ExPosition],
                               start: bool = False) -> Event:
        """The exchange's positions and, where no order of ours is in flight (at ``start``:
        everywhere), the part of each the bot did not open (``derivs.foreign_sizes``)."""
        return Event("positions", data={
            "positions": positions,
            "foreign": await derivs.foreign_sizes(self, positions, self.symbols, start=start)})

    def _tol_symbol(self, symbol: str, amount: float) -> float:
        market = (getattr(self._ex, "markets", None) or {}).get(symbol)
        return amount_tolerance(market, getattr(self._ex, "precisionMode", None), amount)

    async def flush(self) -> None:
        """Return once every command queued before this call is done (a create answered and
        its fills read): a normal stop lets what the strategy just sent finish first."""
        assert self._loop is not None and self._queue is not None
        done = self._loop.create_future()
        self._queue.put_nowait(("flush", done))
        await done

    async def stop(self) -> None:
        for task in (self._ws_task, self._task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._task = self._ws_task = None
        if not self.stopped.is_set():
            await self._db(_stored)  # the last writes are in the database
            self._dbx.shutdown(wait=False)
        self.stopped.set()

    async def _db(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` (an OrderStore call) on the database thread, after every
        write queued before it (so a read sees them)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._dbx, functools.partial(fn, *args, **kwargs))

    def _wall(self) -> float:
        """The event loop's time: polls are scheduled in real time, whatever ``clock`` is (the
        worker waits on the loop; an injected clock drives the ambiguous-order timeout)."""
        assert self._loop is not None
        return self._loop.time()

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

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            try:
                timeout = max(0.0, self._next_poll - self._wall())
                if not self._queue.empty():  # commands first: a poll that is always due (it
                    cmd = self._queue.get_nowait()  # takes longer than its interval) must not
                else:  # starve them (wait_for with timeout 0 never takes a queued item)
                    try:
                        cmd = await asyncio.wait_for(self._queue.get(), timeout=timeout)
                    except asyncio.TimeoutError:
                        cmd = None
                if cmd is not None:
                    await self._command(cmd)
                    # drain what else is queued (each once, in order)
                    while not self._queue.empty():
                        await self._command(self._queue.get_nowait())
                if self._wall() >= self._next_poll:
                    await self._poll()
                elif self._balance_due:  # something traded: cash and positions now
                    await self._emit(await self._balance())
            except asyncio.CancelledError:
                raise
            except Exception:  # keep the broker alive whatever one cycle did
                self.counts["worker_failures"] += 1
                logger.exception("order worker cycle failed")
                await asyncio.sleep(self.poll_interval)

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

    async def _command(self, cmd: tuple[Any, ...]) -> None:
        name = cmd[0]
        if name == "ws":
            await self._emit(await self._pushed(cmd[1]))
        elif name == "via":
            await self._emit([Event("updates", data={"via": cmd[1], "reason": cmd[2]})])
        elif name == "create":
            await self._emit(await self._create(cmd[1], *cmd[2:]))
        elif name == "cancel":
            t = self.tracked.get(cmd[1])
            if t is not None:
                t.cancel_requested = True
                await self._emit(await self._cancel(t))
        elif name == "flush":
            await self._db(_stored)
            if not cmd[1].done():
                cmd[1].set_result(True)
        elif name == "cancel_all":
            fut: asyncio.Future | Any = cmd[1]
            left: list[str] | None = None
            try:
                events, left = await self.cancel_all()
                await self._emit(events)
            finally:
                if hasattr(fut, "set_result") and not fut.done():
                    fut.set_result(left)

    async def _emit(self, events: list[Event]) -> None:
        """Hand ``events`` over once the writes they tell of are stored."""
        if events:
            await self._db(_stored)
            self.on_events(events)

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
                                             "s after the create call failed; it was not sent again")
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
                logger.warning("order %s found at the exchange by client order id (id %s); not resent",
                               rec.client_id, order["id"])
        status = str(order.get("status") or "open")
        filled = float(order.get("filled") or 0.0)
        tol = self._tol(rec)
        if filled > t.traded + tol:
            events += await self._fills(t)
        new_status = _FINAL.get(status, "open")
        changed = {"filled": filled, "cost": float(order.get("cost") or 0.0)}
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
        return rec.type in ("stop_market", "stop_limit") and self.store.exchange_id in ALGO_STOP_EXCHANGES

    async def _algo(self, t: _Tracked, order: dict[str, Any]) -> tuple[dict[str, Any], list[Event] | None]:
        """An algo stop not known to have triggered, and what the exchange said of it.

        Returns the order to go on with, or events when the refresh is done here (the stop
        triggered: the order it placed is read instead).
        """
        rec = t.rec
        info = order.get("info") or {}
        if "accFillSz" in info or "fillSz" in info:  # the order the stop placed (e.g. pushed)
            self._update(t, exchange_id=_order_id(order))
            logger.info("stop order %s triggered: order %s", rec.client_id, rec.exchange_id)
            return order, None
        if rec.exchange_id is None and order.get("id") is not None:
            self._update(t, exchange_id=_ALGO + str(order["id"]))
            logger.warning("order %s found at the exchange by client order id (algo id %s); "
                           "not resent", rec.client_id, order["id"])
        state = str(info.get("state") or "")
        placed = str(info.get("ordId") or "")
        if state in ("effective", "partially_effective") and placed:
            self._update(t, exchange_id=placed)
            logger.info("stop order %s triggered: order %s", rec.client_id, placed)
            return order, await self._refresh(t)
        if state == "order_failed":
            reason = f"the stop triggered but its order failed (okx code {info.get('failCode') or '?'})"
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

    # ------------------------------------------------------------------ poll
    async def _poll(self) -> None:
        self.polls += 1
        # an order whose create outcome is unknown is looked up every poll_interval, stream or not
        unsure = any(t.rec.status in ("unknown", "pending", "sending") or t.missing_since is not None
                     for t in self.tracked.values())
        interval = self.reconcile_interval if self.via == "websocket" and not unsure else self.poll_interval
        self._next_poll = self._wall() + interval
        events: list[Event] = []
        for t in list(self.tracked.values()):
            if t.rec.client_id not in self.tracked:
                continue
            if t.missing_since is not None and self.clock.monotonic() < t.next_lookup:
                continue  # not found lately: looked up again after its backoff
            if t.cancel_requested and t.rec.exchange_id is not None and not t.cancel_sent:
                events += await self._cancel(t)
            else:
                events += await self._refresh(t)
        events += await self.watch.check()
        now = self.clock.monotonic()
        # with the stream up, balances change by our fills (read at once) or by transfers
        every = max(self.balance_interval, self.reconcile_interval) if self.via == "websocket" \
            else self.balance_interval
        if self._balance_due or now - self._last_balance >= every:
            events += await self._balance()
        events += await self._swap_funding()
        await self._emit(events)

    async def _balance(self) -> list[Event]:
        """Balances, and on swaps the positions (``derivs.read_positions``) with them."""
        bal = await self._fetch_balance()
        events = [Event("balance", data=bal)] if bal is not None else []
        return events + await self._swap_positions()

    async def _fetch_balance(self, strict: bool = False) -> dict[str, tuple[float, float, float]] | None:
        try:
            raw = await self._ex.fetch_balance()
        except Exception as exc:
            if strict:
                from btccxt_cli.exchange.errors import map_ccxt_error

                raise map_ccxt_error(exc, exchange=self._ex, what="read the account balances") from exc
            logger.warning("%s: reading balances failed (%s)", self.store.exchange_id, exchange_message(exc))
            await self._reread_clock_if_refused(exc)
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

    async def _reread_clock_if_refused(self, exc: BaseException) -> None:
        """A signed request (the order stream's login, a balance read) refused for its timestamp
        (``InvalidNonce``: binance -1021, okx 50102) means our estimate of the exchange clock is
        stale (the clock stepped): read it again, so the next attempt is signed right."""
        import ccxt

        if any(isinstance(e, ccxt.InvalidNonce) for e in (exc, exc.__cause__, exc.__context__)):
            await self._read_clock()

    async def _read_clock(self) -> None:
        """Read the exchange clock now (a store without one, as in some tests, has nothing to read)."""
        read = getattr(self.store, "read_clock", None)
        if read is not None:
            await read()

    def _count(self) -> Event:
        return Event("orders", data={"open": len(self.tracked)})

    def _update(self, t: _Tracked, **values: Any) -> None:
        values["updated_ms"] = self.clock.time_ms()
        for k, v in values.items():
            setattr(t.rec, k, v)
        # stored by the database thread, in order: before any later call there (reads, the
        # ledger of a fill) and before the next events are handed over (``_emit``)
        stored = self._dbx.submit(self.db.update_order, t.rec.client_id, **values)
        stored.add_done_callback(functools.partial(_write_failed, t.rec.client_id))


def _stored() -> None:
    """Nothing: awaited on the database thread, it returns once the writes before it are done."""


def _write_failed(client_id: str, fut: Future) -> None:
    exc = fut.exception() if not fut.cancelled() else None
    if exc is not None:
        logger.error("order %s: its update could not be stored in the orders database (%s: %s); "
                     "is another program holding the file?", client_id, type(exc).__name__, exc)


def reset_binance_login(ex: Any) -> bool:
    """Undo what a refused binance WebSocket-API login leaves behind in ccxt 4.5.90's client.

    ccxt's ``ensure_user_data_stream_ws_subscribe_signature`` deletes the ``spot`` subscription
    twice when the exchange refuses the login (e.g. for its timestamp, -1021): the second
    ``del`` raises ``KeyError: 'spot'`` before the pending ``authenticate:signature:spot``
    future is rejected, and every later login then waits on that future for ever. Dropping
    both lets the next login start afresh. Returns True when there was something to drop."""
    try:
        url = ex.urls["api"]["ws"]["ws-api"]["spot"]
    except (AttributeError, KeyError, TypeError):
        return False
    client = (getattr(ex, "clients", None) or {}).get(url)
    if client is None:
        return False
    stale = client.futures.pop("authenticate:signature:spot", None)
    if stale is not None and not stale.done():
        stale.cancel()
    had = client.subscriptions.pop("spot", None) is not None
    return stale is not None or had


def _prime_balance_cache(ex: Any) -> None:
    """ccxt.pro binance (4.5.x) drops its connection on a balance push (sent with every order
    event) that arrives before its balance cache exists, which only a watch call creates after
    subscribing: create it before subscribing."""
    balance = getattr(ex, "balance", None)
    if getattr(ex, "id", "") == "binance" and isinstance(balance, dict) and "spot" not in balance:
        balance["spot"] = {}


def _is_algo(rec: OrderRecord) -> bool:
    return bool(rec.exchange_id and rec.exchange_id.startswith(_ALGO))


def _order_id(order: dict[str, Any]) -> str:
    """The order's own id (okx: ``ordId``; ccxt's ``id`` of an order a stop placed is the
    algo's)."""
    info = order.get("info") or {}
    return str(info.get("ordId") or order["id"]) if isinstance(info, dict) else str(order["id"])


def _status_unknown(exc: BaseException) -> bool:
    """The exchange's own words say the order may have been executed (binance -1006, -1007;
    okx 50004 "does not indicate success or failure")."""
    text = str(exc).lower()
    return any(k in text for k in ("status unknown", "-1006", "-1007", "does not indicate success"))
