"""One simulated exchange on its own port: venue routes, REST middleware, sockets, faults.

``ExchangeServer`` owns its venue (wire protocol), connections, faults, stats, the push
scheduler (``scheduler.PushScheduler``) and the private sessions (``sessions.PrivateSessions``).
Venues reach it through ``self.server`` as a ``wire.ServerAPI``; the control API
(``control.py``) and the multi-exchange facade (``simulator.Simulator``) sit above it.

Must not import ccxt or anything from the client side of btccxt.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import WSMsgType, web

from btccxt_cli.clock import Clock
from btccxt_cli.sim.accounts import Engine
from btccxt_cli.sim.faults import DROP_MODES, FaultState
from btccxt_cli.sim.market import LISTING_MS, Candle, MarketModel
from btccxt_cli.sim.scheduler import PushScheduler
from btccxt_cli.sim.sessions import PrivateSessions
from btccxt_cli.sim.venues import Venue, venue_class
from btccxt_cli.sim.weights import WeightLimiter, request_weight
from btccxt_cli.sim.wire import Connection, SimSettings, Stats
from btccxt_cli.timeframes import BarGrid

logger = logging.getLogger(__name__)

__all__ = ["ExchangeServer"]


class ExchangeServer(PushScheduler, PrivateSessions):
    """One simulated exchange on its own port: venue routes, control API, sockets, scheduler."""

    def __init__(self, sim: SimSettings, exchange_id: str, symbols: list[str] | None, port: int) -> None:
        self.sim = sim
        self.id = exchange_id
        self.model: MarketModel = sim.model
        self.clock: Clock = sim.clock
        self.push_interval_ms = sim.push_interval_ms
        self.wanted_port = port
        self.port = 0
        self.venue: Venue = venue_class(exchange_id)(self, symbols)
        # accounts and the matching engine behind the venue's private API (if it has one)
        self.engine = Engine(self.model, self.venue.specs, sim.api_keys, balances=sim.start_balances,
                             maker_fee=getattr(self.venue, "maker_fee", 0.001),
                             taker_fee=getattr(self.venue, "taker_fee", 0.001),
                             liquidity=sim.liquidity,
                             first_order_id=getattr(self.venue, "first_order_id", 1000),
                             derivatives=getattr(self.venue, "derivatives", False),
                             funding_interval_ms=int(sim.funding_interval_s * 1000),
                             default_leverage=getattr(self.venue, "default_leverage", 10.0))
        self.faults = FaultState()
        self.engine.lookup_lag = lambda: self.faults.lookup_lag_ms  # the lookup_lag fault
        self.weights = WeightLimiter(sim.weight_limit) if sim.weight_limit else None
        self.stats = Stats()
        self.conns: dict[str, Connection] = {}
        self._conn_seq = itertools.count(1)
        self._scheduler: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._runner: web.AppRunner | None = None
        self._init_scheduler()
        self._init_sessions()
        if callable(getattr(self.venue, "on_order_event", None)):
            self.engine.add_listener(self._on_order_event)

    # ------------------------------------------------------------------ lifecycle
    def make_app(self, extra_routes: Iterable[web.RouteDef] = ()) -> web.Application:
        """The aiohttp application: ``extra_routes`` (the control API) and the venue's routes."""
        app = web.Application(middlewares=[self._middleware])
        app.add_routes(list(extra_routes))
        app.add_routes(self.venue.routes())
        return app

    async def start(self, host: str, extra_routes: Iterable[web.RouteDef] = ()) -> None:
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._runner = web.AppRunner(self.make_app(extra_routes), access_log=None,
                                     handle_signals=False, shutdown_timeout=0.5)
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
            "ws_limit_closes": s.ws_limit_closes,
            "ws_limit_refusals": s.ws_limit_refusals,
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

    def grid(self, timeframe: str) -> BarGrid:
        """Where this venue opens the bars ccxt's REST reads for ``timeframe``."""
        try:
            return self.venue.grid_for(timeframe)
        except KeyError:
            raise ValueError(f"timeframe {timeframe!r} is not simulated on {self.id} (use one of "
                             f"{', '.join(self.venue.intervals)})") from None
