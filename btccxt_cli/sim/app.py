"""The exchange simulator: one aiohttp server per simulated exchange, on 127.0.0.1.

``Simulator`` runs inside an event loop you own (``await sim.start()``); ``SimThread`` runs one on
its own loop in a daemon thread for synchronous code (tests, the data core, benchmarks)::

    with SimThread(exchanges=("binance",)) as sim:
        ex = make_exchange("binance", sim_url=sim.url("binance"))   # client side, by URL only
        sim.drop("binance")                                         # a fault
        sim.truth("binance", "BTC/USDT", "1m", since, until)        # what is true

Each ``ExchangeServer`` owns its venue (wire protocol), connections, subscriptions, faults,
stats and ONE push scheduler: a heap of per-stream next-event times, so 100+ streams cost one
task. For every subscribed stream the forming candle is pushed every ``min(tf/4, 2 s)`` (or
``push_interval_ms``); at a bar boundary the final state of the closed bar goes out first (for
all streams closing at that instant, back to back), then the next bar's first update.

Private streams (order, trade and balance updates of one API key): a venue that has them binds
an authenticated socket to its key with ``open_private``; the engine's order events reach the
venue's ``on_order_event(event, sessions)`` with the sessions of that key, which queue encoded
messages with ``push_private`` (one writer task per socket keeps them in order). While any
private session is open a matcher task advances the engine every 100 ms (20 ms on a manual
clock), so resting orders fill and are pushed without a REST request.

Must not import ccxt or anything from the client side of btccxt.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from btccxt_cli.clock import SYSTEM_CLOCK, Clock, SystemClock
from btccxt_cli.sim.accounts import DEFAULT_KEY, Engine, OrderEvent, SimKey
from btccxt_cli.sim.faults import DROP_MODES, FAULT_NAMES, FaultState
from btccxt_cli.sim.market import LISTING_MS, Candle, MarketModel
from btccxt_cli.sim.venues import VENUES, Venue, venue_class
from btccxt_cli.sim.weights import WeightLimiter, request_weight
from btccxt_cli.timeframes import BarGrid

logger = logging.getLogger(__name__)

__all__ = ["Simulator", "SimThread", "ExchangeServer", "Connection", "Stream", "StreamKey",
           "PrivateSession"]

#: (unified symbol, where the stream's bars open: the venue's rule for its interval)
StreamKey = tuple[str, BarGrid]

CLOSE_SENT_MAX = 200_000
MAX_CATCH_UP_BARS = 3  # after a long pause (or a ManualClock jump) skip older finals
MATCH_PERIOD_S = 0.1  # how often the engine is advanced while private sessions are open
MATCH_PERIOD_MANUAL_S = 0.02  # the same on a manual clock (follows clock.advance() quickly)


@dataclass(eq=False)
class Connection:
    """One accepted WebSocket."""

    id: str
    ws: web.WebSocketResponse
    request: web.Request
    flavor: str
    path: str
    subs: dict[StreamKey, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(eq=False)
class PrivateSession:
    """An authenticated socket bound to one API key: it receives that account's order events.

    ``channels`` is venue data (binance: user data subscription ids; okx: the subscribed args);
    ``outbox`` keeps the encoded messages in order for the socket's writer task.
    """

    conn: Connection
    key: str
    channels: dict[str, Any] = field(default_factory=dict)
    outbox: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    writer: asyncio.Task | None = None


@dataclass(eq=False)
class Stream:
    """One (symbol, timeframe) candle stream with its subscribers and next push time."""

    key: StreamKey
    ident: Any  # venue data for encoding (binance: id/interval/name; okx: the arg dict)
    interval_ms: int
    subscribers: dict[Connection, str] = field(default_factory=dict)
    next_ms: int = 0
    held: dict[str, bytes] | None = None  # reorder fault: a partial kept back

    @property
    def symbol(self) -> str:
        return self.key[0]

    @property
    def grid(self) -> BarGrid:
        return self.key[1]

    @property
    def tf_ms(self) -> int:
        """Nominal bar length (a month's bars vary; ``grid`` has the real ones)."""
        return self.key[1].nominal_ms

    def bar_open(self, t: int) -> int:
        return self.key[1].open_of(t)


@dataclass
class Stats:
    """Counters of one exchange (``reset()`` zeroes them; open sockets stay counted)."""

    rest: Counter = field(default_factory=Counter)
    unknown_paths: Counter = field(default_factory=Counter)
    rest_errors_injected: int = 0
    ws_connections_total: int = 0
    ws_rejected: int = 0
    subscribe_requests: int = 0
    unsubscribe_requests: int = 0
    ignored_streams: int = 0
    messages_sent: int = 0
    finals_sent: int = 0
    drops: int = 0
    private_logins: int = 0
    private_refused: int = 0
    private_events: int = 0
    private_pushes: int = 0

    def reset(self) -> None:
        fresh = Stats()
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(fresh, name))


class ExchangeServer:
    """One simulated exchange on its own port: venue routes, control API, sockets, scheduler."""

    def __init__(self, sim: Simulator, exchange_id: str, symbols: list[str] | None, port: int) -> None:
        self.sim = sim
        self.id = exchange_id
        self.model: MarketModel = sim.model
        self.clock: Clock = sim.clock
        self.wanted_port = port
        self.port = 0
        self.venue: Venue = venue_class(exchange_id)(self, symbols)
        # accounts and the matching engine behind the venue's private API (if it has one)
        self.engine = Engine(self.model, self.venue.specs, sim.api_keys, balances=sim.start_balances,
                             maker_fee=getattr(self.venue, "maker_fee", 0.001),
                             taker_fee=getattr(self.venue, "taker_fee", 0.001),
                             liquidity=sim.liquidity,
                             first_order_id=getattr(self.venue, "first_order_id", 1000))
        self.faults = FaultState()
        self.weights = WeightLimiter(sim.weight_limit) if sim.weight_limit else None
        self.stats = Stats()
        self.conns: dict[str, Connection] = {}
        self.streams: dict[StreamKey, Stream] = {}
        self._heap: list[tuple[int, int, StreamKey]] = []
        self._seq = itertools.count()
        self._conn_seq = itertools.count(1)
        self._close_sent: OrderedDict[tuple[str, int, int], int] = OrderedDict()
        self._close_lock = threading.Lock()
        self._wake: asyncio.Event | None = None
        self._scheduler: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._runner: web.AppRunner | None = None
        # private streams: sessions by socket, the matcher task, the loop they live on
        self.private: dict[Connection, PrivateSession] = {}
        self._matcher: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        if callable(getattr(self.venue, "on_order_event", None)):
            self.engine.add_listener(self._on_order_event)

    # ------------------------------------------------------------------ lifecycle
    def make_app(self) -> web.Application:
        from btccxt_cli.sim.control import control_routes

        app = web.Application(middlewares=[self._middleware])
        app.add_routes(control_routes(self))
        app.add_routes(self.venue.routes())
        return app

    async def start(self, host: str) -> None:
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._runner = web.AppRunner(self.make_app(), access_log=None, handle_signals=False,
                                     shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, self.wanted_port, reuse_address=True)
        await site.start()
        self.port = int(self._runner.addresses[0][1])  # the real port when asked for port 0
        self._scheduler = asyncio.get_running_loop().create_task(
            self._run_scheduler(), name=f"sim-{self.id}-scheduler")
        logger.info("simulated %s listening on http://%s:%d", self.id, host, self.port)

    async def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.cancel()
            await asyncio.gather(self._scheduler, return_exceptions=True)
            self._scheduler = None
        for conn in list(self.private):
            self.close_private(conn)
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        closing = [asyncio.ensure_future(self._close_ws(c, 1001, b"server shutdown"))
                   for c in list(self.conns.values())]
        if closing:
            _done, pending = await asyncio.wait(closing, timeout=1.0)
            for c in list(self.conns.values()):  # peers that never answered the close
                self._abort(c)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------------ time
    def now_ms(self) -> int:
        """The exchange's clock: local clock plus the simulated skew."""
        return self.clock.time_ms() + self.sim.clock_offset_ms

    def interval_for(self, tf_ms: int) -> int:
        iv = self.sim.push_interval_ms
        if iv is None:
            iv = min(tf_ms // 4, 2_000)
        return max(1, min(int(iv), tf_ms))

    # ------------------------------------------------------------------ bars (REST + truth)
    def bars(self, symbol: str, grid: BarGrid, *, start: int | None, end: int | None,
             limit: int, from_start: bool, floor: int = LISTING_MS,
             closed_only: bool = False) -> list[Candle]:
        """Bars whose open lies in ``[start, end]`` (inclusive, ``None`` = open), at most ``limit``.

        ``grid`` is where the venue's bars of this interval open. ``from_start`` takes the
        oldest ``limit`` bars of the window, otherwise the newest. The forming bar is included
        as its partial state unless ``closed_only``.
        """
        now = self.now_ms()
        cur = grid.index(now)
        last = cur - 1 if closed_only else cur
        if end is not None:
            last = min(last, grid.index(end))
        first = grid.index(grid.ceil(floor))
        if start is not None:
            first = max(first, grid.index(grid.ceil(start)))
        if last < first or limit <= 0:
            return []
        count = last - first + 1
        if count > limit:
            if from_start:
                count = limit
            else:
                first = last - (limit - 1)
                count = limit
        model = self.model
        if grid.regular:
            out = model.candles(symbol, grid.step_ms, grid.open_at(first), count)
        else:  # calendar months: each bar as long as its month
            opens = [grid.open_at(i) for i in range(first, first + count + 1)]
            out = [model.candle(symbol, b - a, a) for a, b in zip(opens, opens[1:], strict=False)]
        if out and first + count - 1 == cur:
            open_ = grid.open_at(cur)
            out[-1] = model.partial(symbol, grid.length(open_), open_, now)
        if self.faults.rest_holes and not closed_only:  # fault: bars the exchange lacks
            out = [c for c in out if not self.faults.in_rest_hole(symbol, c[0])]
        return out

    # ------------------------------------------------------------------ REST middleware
    @web.middleware
    async def _middleware(self, request: web.Request,
                          handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                          ) -> web.StreamResponse:
        path = request.path
        if path == "/_sim" or path.startswith("/_sim/"):
            try:
                return await handler(request)
            except web.HTTPNotFound:
                return self._not_found(request)
        now = self.clock.monotonic()
        if request.headers.get("Upgrade", "").lower() == "websocket":
            if self.faults.ws_outage(now):
                self.stats.ws_rejected += 1
                return web.Response(status=503, text="Service Unavailable")
            try:
                return await handler(request)
            except web.HTTPNotFound:
                return self._not_found(request)
        self.stats.rest[path] += 1
        if self.faults.rest_outage(now):
            return self.venue.error_response(503, None)
        if self.weights is not None:
            status, retry_after = self.weights.charge(now, request_weight(self.id, path))
            if status:
                return self.venue.error_response(status, retry_after)
        injected = self.faults.take_rest_error()
        if injected is not None:
            self.stats.rest_errors_injected += 1
            return self.venue.error_response(*injected)
        if self.faults.rest_delay_ms:
            await asyncio.sleep(self.faults.rest_delay_ms / 1000)
        try:
            response = await handler(request)
            if self.weights is not None and self.id == "binance":
                # binance reports the minute's used weight on every answer
                response.headers["X-MBX-USED-WEIGHT-1M"] = str(self.weights.used)
            return response
        except (web.HTTPNotFound, web.HTTPMethodNotAllowed) as exc:
            if isinstance(exc, web.HTTPMethodNotAllowed):
                logger.warning("simulated %s: %s %s is not allowed", self.id, request.method, path)
                raise
            return self._not_found(request)

    async def order_ack(self, request: web.Request, response: web.Response) -> web.StreamResponse:
        """Answer an order placement the engine has already executed, unless ``order_ack_fault``
        says to delay the answer, reset the connection or send an HTTP 500 instead."""
        fault = self.faults.take_ack_fault()
        if fault is None:
            return response
        mode, ms = fault
        logger.info("simulated %s: order accepted, answer faulted (%s)", self.id, mode)
        if mode == "delay":
            await asyncio.sleep(ms / 1000)
            return response
        if mode == "reset":
            if request.transport is not None:
                request.transport.abort()  # the client sees a dropped connection, no answer
            return response
        return self.venue.error_response(500, None)

    def _not_found(self, request: web.Request) -> web.Response:
        self.stats.unknown_paths[request.path] += 1
        # parameter names only: a signed request carries its signature in the query
        logger.warning("simulated %s: %s %s is not simulated (404); parameters: %s", self.id,
                       request.method, request.path, ",".join(sorted(request.query)) or "-")
        return web.Response(status=404, text=f"Not Found: {request.path} is not simulated by "
                                             f"the btccxt {self.id} simulator")

    # ------------------------------------------------------------------ WebSocket plumbing
    async def serve_ws(self, request: web.Request, flavor: str,
                       on_text: Callable[[Connection, str], Awaitable[None]],
                       on_open: Callable[[Connection], Awaitable[None]] | None = None,
                       ) -> web.StreamResponse:
        """Accept a socket, run the venue's handlers until it closes, then forget it."""
        ws = web.WebSocketResponse(heartbeat=self.venue.heartbeat, compress=False, timeout=2.0,
                                   max_msg_size=1 << 20)
        await ws.prepare(request)
        conn = Connection(self.venue.conn_id(next(self._conn_seq)), ws, request, flavor, request.path)
        self.conns[conn.id] = conn
        self.stats.ws_connections_total += 1
        try:
            if on_open is not None:
                await on_open(conn)
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await on_text(conn, msg.data)
                elif msg.type == WSMsgType.BINARY:
                    await on_text(conn, msg.data.decode("utf-8", "replace"))
        except ConnectionError:
            pass
        finally:
            self._forget(conn)
        return ws

    async def send(self, conn: Connection, data: bytes) -> bool:
        ws = conn.ws
        if ws.closed:
            return False
        try:
            await ws.send_frame(data, WSMsgType.TEXT)
        except Exception as exc:  # the peer went away mid-send
            logger.debug("simulated %s: send to %s failed: %r", self.id, conn.id, exc)
            return False
        self.stats.messages_sent += 1
        return True

    def subscribe(self, conn: Connection, key: StreamKey, label: str, ident: Any) -> None:
        if self.conns.get(conn.id) is not conn:
            return
        st = self.streams.get(key)
        if st is None:
            st = Stream(key, ident, self.interval_for(key[1].nominal_ms))
            st.next_ms = self._next_event(st, self.now_ms())
            self.streams[key] = st
            heapq.heappush(self._heap, (st.next_ms, next(self._seq), key))
            if self._wake is not None:
                self._wake.set()
        st.subscribers[conn] = label
        conn.subs[key] = label

    def unsubscribe(self, conn: Connection, key: StreamKey) -> bool:
        conn.subs.pop(key, None)
        st = self.streams.get(key)
        return st is not None and st.subscribers.pop(conn, None) is not None

    def _forget(self, conn: Connection) -> None:
        self.close_private(conn)
        for key in list(conn.subs):
            self.unsubscribe(conn, key)
        if self.conns.get(conn.id) is conn:
            del self.conns[conn.id]

    def _abort(self, conn: Connection) -> None:
        transport = conn.request.transport
        if transport is not None:
            transport.abort()
        self._forget(conn)

    async def _close_ws(self, conn: Connection, code: int, message: bytes) -> None:
        try:
            await conn.ws.close(code=code, message=message)
        except Exception as exc:
            logger.debug("simulated %s: close of %s failed: %r", self.id, conn.id, exc)
        finally:
            self._forget(conn)

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------ faults needing sockets
    def drop(self, mode: str = "close", conn: str = "all") -> int:
        if mode not in DROP_MODES:
            raise ValueError(f"mode must be one of {DROP_MODES}, not {mode!r}")
        targets = list(self.conns.values()) if conn == "all" else (
            [self.conns[conn]] if conn in self.conns else [])
        if conn != "all" and not targets:
            raise ValueError(f"no open connection {conn!r} on {self.id} (open: {sorted(self.conns)})")
        for c in targets:
            # no pushes after the drop, even before the close frame is on the wire
            self.close_private(c)
            for key in list(c.subs):
                self.unsubscribe(c, key)
            if mode == "reset":
                self._abort(c)
            else:
                self.spawn(self._close_ws(c, 1001, b"simulated drop"))
        self.stats.drops += len(targets)
        logger.info("simulated %s: dropped %d socket(s) (%s)", self.id, len(targets), mode)
        return len(targets)

    def drop_subscription(self, symbol: str) -> int:
        n = 0
        for key, st in self.streams.items():
            if key[0] != symbol:
                continue
            for c in list(st.subscribers):
                c.subs.pop(key, None)
                n += 1
            st.subscribers.clear()
        logger.info("simulated %s: silently dropped %d subscription(s) of %s", self.id, n, symbol)
        return n

    # ------------------------------------------------------------------ private streams
    def open_private(self, conn: Connection, key: str) -> PrivateSession:
        """Bind ``conn`` (authenticated by the venue) to the account of ``key``.

        Returns the socket's session (the same one again for the same key; a different key
        replaces it). Starts the socket's writer and, if needed, the matcher task.
        """
        session = self.private.get(conn)
        if session is not None and session.key == key:
            return session
        if self.conns.get(conn.id) is not conn:  # closed (or dropped) meanwhile: never pushed to
            return PrivateSession(conn, key)
        if session is not None:
            logger.warning("simulated %s: socket %s switches accounts; its old subscriptions end",
                           self.id, conn.id)
            self.close_private(conn)
        session = PrivateSession(conn, key)
        session.writer = self.spawn(self._write_private(session))
        self.private[conn] = session
        if self._matcher is None or self._matcher.done():
            self._matcher = self.spawn(self._run_matcher())
        return session

    def close_private(self, conn: Connection) -> None:
        """Forget ``conn``'s private session: nothing more is pushed to it (idempotent)."""
        session = self.private.pop(conn, None)
        if session is None:
            return
        if session.writer is not None and session.writer is not asyncio.current_task():
            session.writer.cancel()

    def push_private(self, session: PrivateSession, data: bytes) -> None:
        """Queue one message for a private socket; it is sent after everything queued before.

        Thread-safe: from another thread the message is handed to the simulator's loop.
        """
        if self.private.get(session.conn) is not session:
            return
        if self._loop is not None and threading.get_ident() != self._loop_thread:
            self._loop.call_soon_threadsafe(session.outbox.put_nowait, data)
        else:
            session.outbox.put_nowait(data)

    def _on_order_event(self, event: OrderEvent) -> None:
        """Engine listener: hand the event to the venue with the sessions of its key."""
        self.stats.private_events += 1
        if not self.private:
            return
        sessions = [s for s in self.private.values() if s.key == event.key]
        if sessions:
            self.venue.on_order_event(event, sessions)  # type: ignore[attr-defined]

    async def _write_private(self, session: PrivateSession) -> None:
        """Send a private socket's queued messages in order; a stall holds them back."""
        while True:
            data = await session.outbox.get()
            while self.faults.stalled(self.clock.monotonic()):
                await asyncio.sleep(0.05)
            if await self.send(session.conn, data):
                self.stats.private_pushes += 1

    async def _run_matcher(self) -> None:
        """While private sessions are open, advance the engine so resting orders fill (and get
        pushed) without waiting for a REST request."""
        period = MATCH_PERIOD_S if isinstance(self.clock, SystemClock) else MATCH_PERIOD_MANUAL_S
        try:
            while self.private:
                try:
                    self.engine.advance(self.now_ms())
                except Exception:  # keep matching whatever one step did
                    logger.exception("simulated %s: matching step failed", self.id)
                await asyncio.sleep(period)
        finally:
            if self._matcher is asyncio.current_task():
                self._matcher = None

    # ------------------------------------------------------------------ stats
    def stats_dict(self) -> dict[str, Any]:
        s = self.stats
        return {
            "exchange": self.id,
            "url": f"http://{self.sim.host}:{self.port}",
            "now_ms": self.now_ms(),
            "rest": dict(s.rest),
            "rest_total": sum(s.rest.values()),
            "unknown_paths": dict(s.unknown_paths),
            "rest_errors_injected": s.rest_errors_injected,
            "ws_connections_open": len(self.conns),
            "ws_connections_total": s.ws_connections_total,
            "ws_rejected": s.ws_rejected,
            "subscriptions": {cid: list(c.subs.values()) for cid, c in self.conns.items()},
            "subscribe_requests": s.subscribe_requests,
            "unsubscribe_requests": s.unsubscribe_requests,
            "ignored_streams": s.ignored_streams,
            "streams_active": sum(1 for st in self.streams.values() if st.subscribers),
            "messages_sent": s.messages_sent,
            "finals_sent": s.finals_sent,
            "drops": s.drops,
            "private_sessions": {c.id: sorted(p.channels) for c, p in self.private.items()},
            "private_logins": s.private_logins,
            "private_refused": s.private_refused,
            "private_events": s.private_events,
            "private_pushes": s.private_pushes,
            "faults": self.faults.snapshot(self.clock.monotonic()),
            "weight": self.weights.snapshot() if self.weights is not None else None,
        }

    def close_sent_ns(self, symbol: str, tf_ms: int, open_ms: int) -> int | None:
        with self._close_lock:
            return self._close_sent.get((symbol, tf_ms, open_ms))

    def _record_close(self, key: tuple[str, int, int], ns: int) -> None:
        with self._close_lock:
            if key in self._close_sent:
                return
            self._close_sent[key] = ns
            if len(self._close_sent) > CLOSE_SENT_MAX:
                self._close_sent.popitem(last=False)

    # ------------------------------------------------------------------ scheduler
    @staticmethod
    def _next_event(st: Stream, t: int) -> int:
        """First push time strictly after ``t``: a partial tick or the bar boundary."""
        open_ = st.bar_open(t)
        nxt = open_ + ((t - open_) // st.interval_ms + 1) * st.interval_ms
        end = st.grid.close_of(open_)
        return end if nxt >= end else nxt

    async def _run_scheduler(self) -> None:
        assert self._wake is not None
        cap = 1.0 if isinstance(self.clock, SystemClock) else 0.02
        while True:
            try:
                now = self.now_ms()
                if not self._heap or self._heap[0][0] > now:
                    delay = cap if not self._heap else min(cap, (self._heap[0][0] - now) / 1000)
                    self._wake.clear()
                    try:
                        await asyncio.wait_for(self._wake.wait(), timeout=max(delay, 0.0005))
                    except asyncio.TimeoutError:
                        pass
                    continue
                due: list[tuple[int, Stream]] = []
                while self._heap and self._heap[0][0] <= now:
                    t, _seq, key = heapq.heappop(self._heap)
                    st = self.streams.get(key)
                    if st is None:
                        continue
                    if not st.subscribers:
                        del self.streams[key]
                        continue
                    due.append((t, st))
                await self._fire(due, now)
                for t, st in due:
                    if self.streams.get(st.key) is not st:
                        continue
                    nxt = self._next_event(st, t)
                    if nxt < now:  # late: never skip a close, but skip stale partials
                        boundary = st.grid.close_of(st.bar_open(t))
                        if now - boundary > MAX_CATCH_UP_BARS * st.tf_ms:
                            logger.warning("simulated %s: scheduler %d ms late, skipping finals of "
                                           "%s", self.id, now - t, st.key)
                            nxt = self._next_event(st, now)
                        else:
                            nxt = min(self._next_event(st, now), boundary)
                    st.next_ms = nxt
                    heapq.heappush(self._heap, (nxt, next(self._seq), st.key))
            except asyncio.CancelledError:
                raise
            except Exception:  # keep pushing whatever one bad event did
                logger.exception("simulated %s: scheduler error", self.id)
                await asyncio.sleep(0.01)

    async def _fire(self, due: list[tuple[int, Stream]], now: int) -> None:
        """Build and send the pushes of every stream due at this tick."""
        faults = self.faults
        if faults.stalled(self.clock.monotonic()):
            for _t, st in due:
                st.held = None
            return
        reorder = faults.reorder
        finals: list[tuple[Stream, dict[str, bytes], tuple[str, int, int] | None]] = []
        rest: list[tuple[Stream, dict[str, bytes], tuple[str, int, int] | None]] = []
        model = self.model
        encode = self.venue.encode
        # finals first, for every stream closing now, so they go out back to back
        if not reorder:
            for t, st in due:
                if st.bar_open(t) == t:
                    prev = st.grid.prev_open(t)
                    flavors = {c.flavor for c in st.subscribers}
                    msg = encode(st, model.candle(st.symbol, t - prev, prev), True, now, flavors)
                    finals.append((st, msg, (st.symbol, st.tf_ms, prev)))
        for t, st in due:
            flavors = {c.flavor for c in st.subscribers}
            open_ = st.bar_open(t)
            msg = encode(st, model.partial(st.symbol, st.grid.length(open_), open_, t), False, now,
                         flavors)
            if not reorder:
                st.held = None
                rest.append((st, msg, None))
            elif open_ == t:
                # reorder: [held partial of the old bar], new bar's first update, old bar's final
                if st.held is not None:
                    rest.append((st, st.held, None))
                    st.held = None
                rest.append((st, msg, None))
                prev = st.grid.prev_open(t)
                final = encode(st, model.candle(st.symbol, t - prev, prev), True, now, flavors)
                rest.append((st, final, (st.symbol, st.tf_ms, prev)))
            elif st.held is None:
                st.held = msg  # swap with the next partial
            else:
                rest.append((st, msg, None))
                rest.append((st, st.held, None))
                st.held = None
        batch = finals + rest
        if not batch:
            return
        if faults.push_delay_ms > 0:
            loop = asyncio.get_running_loop()
            loop.call_later(faults.push_delay_ms / 1000, lambda: self.spawn(self._send_batch(batch)))
            return
        await self._send_batch(batch)

    async def _send_batch(self, batch: list[tuple[Stream, dict[str, bytes],
                                                  tuple[str, int, int] | None]]) -> None:
        repeat = 2 if self.faults.duplicate else 1
        send = self.send
        for st, msg, close_key in batch:
            subs = list(st.subscribers)
            if not subs:
                continue
            if close_key is not None:
                self._record_close(close_key, time.perf_counter_ns())
                self.stats.finals_sent += 1
            for conn in subs:
                data = msg.get(conn.flavor)
                if data is None:
                    continue
                for _ in range(repeat):
                    await send(conn, data)


class Simulator:
    """Simulated exchanges on 127.0.0.1, one port each; run inside an asyncio loop.

    Args:
        exchanges: exchange ids to simulate (``"binance"``, ``"okx"``).
        symbols: per exchange, the unified ccxt symbols to list (default: the venue's list).
        seed: seed of the market model; the same seed gives the same prices.
        clock: where "now" comes from (``ManualClock`` in deterministic tests).
        clock_offset_ms: exchange clock skew; the exchange's now = clock + offset.
        push_interval_ms: push period of forming candles (default ``min(tf/4, 2000)``).
        host: address to bind (loopback only; anything else is refused).
        ports: fixed port per exchange (default 0: a free port).
        ws_ping_interval_s: protocol ping period of venues whose server pings (binance).
        weight_limit: request weight allowed per rolling minute and exchange (binance-style
            429 past it, 418 ban for clients that keep sending); None: unlimited.
        api_keys: the API keys the private endpoints accept (default: ``accounts.DEFAULT_KEY``);
            each key has its own account on every exchange.
        balances: starting balances of every account (default ``accounts.DEFAULT_BALANCES``).
        liquidity: multiple of each second's 1s-candle volume resting orders can fill per second.
        check_timestamps: refuse signed requests whose timestamp is off the exchange clock
            (binance ``recvWindow``, okx 30 s), as the exchanges do.
    """

    def __init__(self, exchanges: Iterable[str] = ("binance", "okx"),
                 symbols: dict[str, list[str]] | None = None, seed: int = 1,
                 clock: Clock = SYSTEM_CLOCK, clock_offset_ms: int = 0,
                 push_interval_ms: int | None = None, host: str = "127.0.0.1",
                 ports: dict[str, int] | None = None, ws_ping_interval_s: float = 20.0,
                 weight_limit: int | None = None, api_keys: Iterable[SimKey] | None = None,
                 balances: dict[str, float] | None = None, liquidity: float = 1.0,
                 check_timestamps: bool = True) -> None:
        exchanges = tuple(exchanges)
        if not exchanges:
            raise ValueError("simulate at least one exchange")
        for ex in exchanges:
            if ex not in VENUES:
                raise ValueError(f"exchange {ex!r} is not simulated (available: {sorted(VENUES)})")
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"the simulator binds loopback only, not {host!r}")
        if push_interval_ms is not None and push_interval_ms <= 0:
            raise ValueError(f"push_interval_ms must be > 0, not {push_interval_ms}")
        unknown = set(symbols or {}) - set(exchanges)
        if unknown:
            raise ValueError(f"symbols given for exchanges not simulated: {sorted(unknown)}")
        self.host = host
        self.seed = seed
        self.clock = clock
        self.clock_offset_ms = int(clock_offset_ms)
        self.push_interval_ms = push_interval_ms
        self.ws_ping_interval_s = ws_ping_interval_s
        self.weight_limit = weight_limit
        self.api_keys: tuple[SimKey, ...] = tuple(api_keys) if api_keys is not None else (DEFAULT_KEY,)
        self.start_balances = dict(balances) if balances is not None else None
        self.liquidity = float(liquidity)
        self.check_timestamps = bool(check_timestamps)
        self.model = MarketModel(seed)
        self._servers: dict[str, ExchangeServer] = {
            ex: ExchangeServer(self, ex, (symbols or {}).get(ex), (ports or {}).get(ex, 0))
            for ex in exchanges
        }
        self._started = False

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Bind every exchange's port and start pushing; returns once all listen."""
        try:
            for server in self._servers.values():
                await server.start(self.host)
        except BaseException:
            await self.stop()
            raise
        self._started = True

    async def stop(self) -> None:
        """Close every socket, task and listener."""
        for server in self._servers.values():
            await server.stop()
        self._started = False

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ introspection
    @property
    def exchanges(self) -> tuple[str, ...]:
        return tuple(self._servers)

    def server(self, exchange: str) -> ExchangeServer:
        try:
            return self._servers[exchange]
        except KeyError:
            raise KeyError(f"{exchange!r} is not simulated here (simulated: {list(self._servers)})") from None

    def url(self, exchange: str) -> str:
        """``http://127.0.0.1:PORT`` of one exchange (REST root; WS lives on the same port)."""
        server = self.server(exchange)
        if not server.port:
            raise RuntimeError("the simulator is not started")
        return f"http://{self.host}:{server.port}"

    def symbols(self, exchange: str) -> list[str]:
        return list(self.server(exchange).venue.symbols)

    def now_ms(self) -> int:
        """The simulated exchanges' clock (local clock + ``clock_offset_ms``)."""
        return self.clock.time_ms() + self.clock_offset_ms

    # ------------------------------------------------------------------ truth & stats
    def truth(self, exchange: str, symbol: str, timeframe: str, since_ms: int,
              until_ms: int) -> list[Candle]:
        """Closed bars of ``symbol`` whose open lies in ``[since_ms, until_ms)``, oldest first."""
        server = self.server(exchange)
        if symbol not in server.venue.symbols:
            raise ValueError(f"{symbol!r} is not listed on simulated {exchange}")
        grid = _grid(server, timeframe)
        if until_ms <= since_ms:
            return []
        return server.bars(symbol, grid, start=since_ms, end=until_ms - 1, limit=1 << 62,
                           from_start=True, closed_only=True)

    def stats(self, exchange: str) -> dict[str, Any]:
        """Request and socket counters, current subscriptions and faults of one exchange."""
        return self.server(exchange).stats_dict()

    def reset_stats(self, exchange: str) -> None:
        self.server(exchange).stats.reset()

    def close_sent_ns(self, exchange: str, symbol: str, timeframe: str, open_ms: int) -> int | None:
        """``time.perf_counter_ns()`` taken just before the first send of the bar's final update."""
        server = self.server(exchange)
        return server.close_sent_ns(symbol, _grid(server, timeframe).nominal_ms, int(open_ms))

    # ------------------------------------------------------------------ faults
    def drop(self, exchange: str, mode: str = "close", conn: str = "all") -> int:
        """Drop sockets: ``close`` sends close code 1001, ``reset`` aborts the TCP connection."""
        return self.server(exchange).drop(mode, conn)

    def outage(self, exchange: str, seconds: float, ws: bool = True, rest: bool = True) -> None:
        """For ``seconds``: refuse WS upgrades and/or REST with 503; open sockets drop now."""
        server = self.server(exchange)
        server.faults.set_outage(self.clock.monotonic(), seconds, ws, rest)
        if ws and server.conns:
            server.drop("close")

    def stall(self, exchange: str, seconds: float) -> None:
        """For ``seconds``: sockets stay open and pings are answered, but nothing is pushed."""
        self.server(exchange).faults.set_stall(self.clock.monotonic(), seconds)

    def duplicate(self, exchange: str, on: bool = True) -> None:
        """Send every candle update twice."""
        self.server(exchange).faults.duplicate = bool(on)

    def reorder(self, exchange: str, on: bool = True) -> None:
        """Send each bar's final after the next bar's first update, and swap adjacent partials."""
        self.server(exchange).faults.reorder = bool(on)

    def delay_pushes(self, exchange: str, ms: float) -> None:
        """Hold every push back by ``ms`` milliseconds (0 = off)."""
        self.server(exchange).faults.set_push_delay(ms)

    def rest_errors(self, exchange: str, status: int = 429, count: int = 1,
                    retry_after: float | None = 1.0) -> None:
        """Answer the next ``count`` REST requests with ``status`` in the venue's error format."""
        self.server(exchange).faults.set_rest_errors(status, count, retry_after)

    def rest_delay(self, exchange: str, ms: float) -> None:
        """Answer REST requests ``ms`` milliseconds late (0 = off)."""
        self.server(exchange).faults.set_rest_delay(ms)

    def drop_subscription(self, exchange: str, symbol: str) -> int:
        """Silently forget every stream of ``symbol`` server-side; returns how many."""
        return self.server(exchange).drop_subscription(symbol)

    def clear_faults(self, exchange: str) -> None:
        """Back to normal (open sockets stay open)."""
        self.server(exchange).faults.clear()

    def rest_hole(self, exchange: str, symbol: str = "", start_ms: int = 0, end_ms: int = 0) -> None:
        """REST answers lack ``symbol``'s bars opening in ``[start_ms, end_ms]`` (all symbols
        when ``symbol`` is empty), as on an exchange that has none there; adds to earlier holes."""
        self.server(exchange).faults.add_rest_hole(symbol, start_ms, end_ms)

    def order_ack_fault(self, exchange: str, mode: str = "delay", count: int = 1,
                        ms: float = 30_000) -> None:
        """Execute the next ``count`` orders, then delay the answer ``ms`` (``delay``), reset
        the connection (``reset``) or answer HTTP 500 (``500``)."""
        self.server(exchange).faults.set_ack_fault(mode, count, ms)

    def orders(self, exchange: str, key: str | None = None) -> list[dict[str, Any]]:
        """Every order the exchange holds (of one API key, or all), oldest first."""
        server = self.server(exchange)
        rows = server.engine.state(server.now_ms())["orders"]
        return [r for r in rows if key is None or r["key"] == key]

    def balances(self, exchange: str, key: str = DEFAULT_KEY.key) -> dict[str, dict[str, float]]:
        """``{asset: {"free": x, "locked": y}}`` of one account."""
        server = self.server(exchange)
        return server.engine.state(server.now_ms())["balances"][key]

    def fault(self, exchange: str, name: str, **kwargs: Any) -> Any:
        """Apply fault ``name`` with keyword arguments (what the control API calls)."""
        if name not in FAULT_NAMES:
            raise ValueError(f"unknown fault {name!r} (known: {', '.join(FAULT_NAMES)})")
        return getattr(self, name)(exchange, **kwargs)


def _grid(server: ExchangeServer, timeframe: str) -> BarGrid:
    """Where ``server``'s venue opens the bars ccxt's REST reads for ``timeframe``."""
    try:
        return server.venue.grid_for(timeframe)
    except KeyError:
        raise ValueError(f"timeframe {timeframe!r} is not simulated on {server.id} (use one of "
                         f"{', '.join(server.venue.intervals)})") from None


class SimThread:
    """A :class:`Simulator` on its own event loop in a daemon thread, for synchronous code.

    Takes the same keyword arguments as :class:`Simulator`. Every method is thread-safe: state
    changes run on the simulator's loop (``run_coroutine_threadsafe``); ``truth`` and
    ``close_sent_ns`` read immutable or locked data directly.
    """

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs = kwargs
        self.sim: Simulator | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout: float = 15.0) -> SimThread:
        """Start the thread; return once every port is bound (raise what startup raised)."""
        if self._thread is not None:
            raise RuntimeError("SimThread already started")
        self.sim = Simulator(**self._kwargs)  # validate arguments in the caller's thread
        self._thread = threading.Thread(target=self._main, name="btccxt-sim", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the simulator did not start in time")
        if self._error is not None:
            self._thread.join(timeout)
            raise self._error
        return self

    def _main(self) -> None:
        try:
            asyncio.run(self._amain())
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()

    async def _amain(self) -> None:
        assert self.sim is not None
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        try:
            await self.sim.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stopped.wait()
        finally:
            await self.sim.stop()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the simulator and join the thread (idempotent)."""
        if self._thread is None:
            return
        if self._loop is not None and self._stopped is not None and self._thread.is_alive():
            try:
                self._loop.call_soon_threadsafe(self._stopped.set)
            except RuntimeError:  # loop already closed
                pass
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.warning("simulator thread did not stop within %.1f s", timeout)
        self._thread = None

    def __enter__(self) -> SimThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ plumbing
    def _sim(self) -> Simulator:
        if self.sim is None or self._loop is None:
            raise RuntimeError("SimThread is not started")
        return self.sim

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        sim = self._sim()
        assert self._loop is not None

        async def run() -> Any:
            return getattr(sim, name)(*args, **kwargs)

        fut: Future = asyncio.run_coroutine_threadsafe(run(), self._loop)
        return fut.result(timeout=10.0)

    # ------------------------------------------------------------------ delegated API
    @property
    def exchanges(self) -> tuple[str, ...]:
        return self._sim().exchanges

    @property
    def model(self) -> MarketModel:
        return self._sim().model

    def url(self, exchange: str) -> str:
        return self._sim().url(exchange)

    def symbols(self, exchange: str) -> list[str]:
        return self._sim().symbols(exchange)

    def now_ms(self) -> int:
        return self._sim().now_ms()

    def truth(self, exchange: str, symbol: str, timeframe: str, since_ms: int,
              until_ms: int) -> list[Candle]:
        return self._sim().truth(exchange, symbol, timeframe, since_ms, until_ms)

    def close_sent_ns(self, exchange: str, symbol: str, timeframe: str, open_ms: int) -> int | None:
        return self._sim().close_sent_ns(exchange, symbol, timeframe, open_ms)

    def stats(self, exchange: str) -> dict[str, Any]:
        return self._call("stats", exchange)

    def reset_stats(self, exchange: str) -> None:
        self._call("reset_stats", exchange)

    def drop(self, exchange: str, mode: str = "close", conn: str = "all") -> int:
        return self._call("drop", exchange, mode, conn)

    def outage(self, exchange: str, seconds: float, ws: bool = True, rest: bool = True) -> None:
        self._call("outage", exchange, seconds, ws, rest)

    def stall(self, exchange: str, seconds: float) -> None:
        self._call("stall", exchange, seconds)

    def duplicate(self, exchange: str, on: bool = True) -> None:
        self._call("duplicate", exchange, on)

    def reorder(self, exchange: str, on: bool = True) -> None:
        self._call("reorder", exchange, on)

    def delay_pushes(self, exchange: str, ms: float) -> None:
        self._call("delay_pushes", exchange, ms)

    def rest_errors(self, exchange: str, status: int = 429, count: int = 1,
                    retry_after: float | None = 1.0) -> None:
        self._call("rest_errors", exchange, status, count, retry_after)

    def rest_delay(self, exchange: str, ms: float) -> None:
        self._call("rest_delay", exchange, ms)

    def drop_subscription(self, exchange: str, symbol: str) -> int:
        return self._call("drop_subscription", exchange, symbol)

    def clear_faults(self, exchange: str) -> None:
        self._call("clear_faults", exchange)

    def rest_hole(self, exchange: str, symbol: str = "", start_ms: int = 0, end_ms: int = 0) -> None:
        self._call("rest_hole", exchange, symbol, start_ms, end_ms)

    def fault(self, exchange: str, name: str, **kwargs: Any) -> Any:
        return self._call("fault", exchange, name, **kwargs)

    def order_ack_fault(self, exchange: str, mode: str = "delay", count: int = 1,
                        ms: float = 30_000) -> None:
        self._call("order_ack_fault", exchange, mode, count, ms)

    def orders(self, exchange: str, key: str | None = None) -> list[dict[str, Any]]:
        return self._call("orders", exchange, key)

    def balances(self, exchange: str, key: str = DEFAULT_KEY.key) -> dict[str, dict[str, float]]:
        return self._call("balances", exchange, key)
