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

The worker is one class in parts: this file (its life: start, the loop, polls, balances and
swap positions), ``orderwrite.py`` (creates and cancels), ``orderread.py`` (lookups, status and
fills), ``orderstream.py`` (the WebSocket order stream) and, below them all, ``orderkit.py``
(the events, the tracked order and the helpers they share with ``adoption``, ``sweep`` and
``derivs``).

Imports ccxt only inside functions (through the store's client). No backtrader here.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from btccxt_cli.bt import derivs
from btccxt_cli.bt.adoption import adopt_holdings, replay_final
from btccxt_cli.bt.adoption import copy as _copy
from btccxt_cli.bt.derivs import SwapSettings
from btccxt_cli.bt.orderkit import (
    ALGO_STOP_EXCHANGES,
    CCXT_TYPES,
    UPDATE_MODES,
    WS_ORDER_EXCHANGES,
    Event,
    _stored,
    _Tracked,
    _write_failed,
    exchange_message,
)
from btccxt_cli.bt.orderread import OrderReads
from btccxt_cli.bt.orderstream import OrderStream
from btccxt_cli.bt.orderwrite import OrderWrites
from btccxt_cli.bt.positions import amount_tolerance
from btccxt_cli.bt.sweep import Watch
from btccxt_cli.cache.orders import OrderStore
from btccxt_cli.clock import SYSTEM_CLOCK, Clock
from btccxt_cli.errors import BtccxtError

__all__ = ["Event", "OrderSync", "exchange_message", "amount_tolerance", "CCXT_TYPES",
           "WS_ORDER_EXCHANGES", "UPDATE_MODES", "ALGO_STOP_EXCHANGES"]

logger = logging.getLogger(__name__)


class OrderSync(OrderStream, OrderWrites, OrderReads):
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
        #: symbols whose foreign part (``derivs.foreign_sizes``) is not taken yet this run
        self.foreign_pending: set[str] = set(symbols)
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
        events.append(await self._positions_event(positions))
        return events + await self._read_funding()

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
        return await self._read_funding()

    async def _read_funding(self) -> list[Event]:
        """New funding payments; the next read starts at the newest one told (an exchange
        pages from ``since``: binance's income read gives the first 100 after it, so a fixed
        start stopped seeing new payments after 100; the one at the boundary is stored once)."""
        self._next_funding = self.clock.monotonic() + self.funding_interval
        events = await derivs.read_funding(self, self.symbols, self._funding_since)
        self._funding_since = max([self._funding_since, *(int(ev.data["time_ms"]) for ev in events)])
        return events

    async def _positions_event(self, positions: dict[str, derivs.ExPosition]) -> Event:
        """The exchange's positions and, where no order of ours is in flight (until it is
        first taken: where none is of unsure outcome), the part of each the bot did not open
        (``derivs.foreign_sizes``)."""
        foreign, estimate = await derivs.foreign_sizes(self, positions, self.symbols)
        return Event("positions", data={"positions": positions, "foreign": foreign,
                                        "estimate": estimate})

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


    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            try:
                timeout = max(0.0, self._next_poll - self._wall())
                expiry = self._expiry_wait()  # an order's valid= passes before the next poll
                if expiry is not None:
                    timeout = min(timeout, expiry)
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
                if self._expiry_wait() == 0.0:
                    await self._emit(await self._expire_due())
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


    # ------------------------------------------------------------------ poll
    async def _poll(self) -> None:
        self.polls += 1
        # an order whose create outcome is unknown is looked up every poll_interval, stream or not
        unsure = any(t.unsure for t in self.tracked.values())
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


