"""Private sessions of one exchange server: authenticated sockets bound to an API key.

A venue that has private streams binds an authenticated socket to its key with
``open_private``; the engine's order events reach the venue's ``on_order_event(event,
sessions)`` with the sessions of that key, which queue encoded messages with ``push_private``
(one writer task per socket keeps them in order). While any private session is open a matcher
task advances the engine every 100 ms (20 ms on a manual clock), so resting orders fill and are
pushed without a REST request.

Must not import ccxt or anything from the client side of btccxt.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable
from typing import Any

from btccxt_cli.clock import Clock, SystemClock
from btccxt_cli.sim.accounts import Engine, OrderEvent
from btccxt_cli.sim.faults import FaultState
from btccxt_cli.sim.venues import Venue
from btccxt_cli.sim.wire import Connection, PrivateSession, Stats

logger = logging.getLogger(__name__)

__all__ = ["PrivateSessions", "MATCH_PERIOD_S", "MATCH_PERIOD_MANUAL_S"]

MATCH_PERIOD_S = 0.1  # how often the engine is advanced while private sessions are open
MATCH_PERIOD_MANUAL_S = 0.02  # the same on a manual clock (follows clock.advance() quickly)


class PrivateSessions:
    """Private sockets of one exchange server (a base of ``server.ExchangeServer``)."""

    id: str
    clock: Clock
    venue: Venue
    engine: Engine
    faults: FaultState
    stats: Stats
    conns: dict[str, Connection]

    def _init_sessions(self) -> None:
        # sessions by socket, the matcher task, the loop they live on
        self.private: dict[Connection, PrivateSession] = {}
        self._matcher: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    def now_ms(self) -> int:
        raise NotImplementedError

    async def send(self, conn: Connection, data: bytes) -> bool:
        raise NotImplementedError

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task:
        raise NotImplementedError

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
