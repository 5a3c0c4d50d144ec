"""The pipe between a source and one feed, and the doorbell every pipe shares.

Thread-safe; no backtrader, no ccxt, no I/O.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

from btccxt_cli.model import FeedEvent

__all__ = ["Pipe", "ring"]

# One doorbell for every pipe in the process. Cerebro waits inside one feed's ``_load`` at a
# time; if another feed's bar arrives meanwhile, the waiting feed must give the turn back at
# once (return None) instead of sleeping out its ``qcheck``.
_BELL = threading.Condition()
_RINGS = [0]
WAITING = [0]
"""Threads waiting on the shared doorbell now (in ``Pipe.get``/``Pipe.wait``): a strategy's
thread waits there once it has taken what there was and ``next()`` returned."""


def ring() -> None:
    """Wake the feed cerebro is waiting in, with nothing put in any pipe: its ``_load`` gives
    the turn back and cerebro runs a loop (the live broker uses this to deliver order
    notifications without waiting out ``qcheck``)."""
    with _BELL:
        _RINGS[0] += 1
        _BELL.notify_all()


class Pipe:
    """Thread-safe FIFO of ``FeedEvent``s from a source to one feed.

    Unbounded for live data (a producer must never block the socket loop); history is paged
    in only while the pipe is below ``high_water`` (``wait_room``), which bounds memory
    without the blocking-put deadlock of earlier implementations. A wait on any pipe ends as
    soon as something is put into *any* pipe (the shared doorbell).
    """

    def __init__(self, high_water: int = 5_000, *, queued: list[int] | None = None) -> None:
        self._q: deque[FeedEvent] = deque()
        self._cv = _BELL
        self.high_water = high_water
        self._room_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self.closed = False
        # events waiting in this pipe and its siblings (one counter per store): see ``get``
        self.queued = queued
        self.handoff = True  # put_many hands the GIL to the consumer (see put_many)
        # called after every put with the last event put, on the producer's thread (the hub
        # publishes from its loop)
        self.on_put: Callable[[FeedEvent], None] | None = None
        self._held = 0  # events the consumer holds outside the pipe (see ``hold``)

    def __len__(self) -> int:
        return len(self._q)

    def put(self, ev: FeedEvent) -> None:
        with self._cv:
            self._q.append(ev)
            if self.queued is not None and not self.closed:
                self.queued[0] += 1
            _RINGS[0] += 1
            self._cv.notify_all()
        if self.on_put is not None:
            self.on_put(ev)

    def put_many(self, evs: Iterable[FeedEvent], *, handoff: bool | None = None) -> None:
        with self._cv:
            n = len(self._q)
            self._q.extend(evs)
            if self.queued is not None and not self.closed:
                self.queued[0] += len(self._q) - n
            last = self._q[-1] if len(self._q) > n else None
            _RINGS[0] += 1
            self._cv.notify_all()
        if self.on_put is not None and last is not None:
            self.on_put(last)
        # Hand the GIL to the woken consumer now: otherwise the producer (the socket loop)
        # goes on parsing the next message and the strategy thread waits for it. A producer
        # with more ready for other pipes (handoff=False, or the pipe's ``handoff`` False)
        # fills them all first: the consumer gets the GIL when the producer next blocks (or
        # at the interpreter's switch interval), not once per pipe.
        if self.handoff if handoff is None else handoff:
            time.sleep(0)

    def hold(self, n: int) -> None:
        """Count ``n`` events the consumer took but has not used yet as waiting (cerebro moved
        its feed back over a loaded bar, ``rewind``): a sibling's wait gives way to them as
        to events in a pipe. Negative: used now."""
        with self._cv:
            if self.queued is not None and not self.closed:
                n = max(n, -self._held)
                self.queued[0] += n
                self._held += n

    def get(self, timeout: float | None, *, give_way: bool = False) -> FeedEvent | None:
        """Next event, waiting up to ``timeout`` seconds (0 = do not wait) or until any pipe
        rings; ``give_way``: do not wait while another pipe sharing ``queued`` holds events
        (cerebro asks its feeds one after another: a feed with nothing lets it go on to those
        that have some)."""
        queued = self.queued
        with self._cv:
            if (not self._q and timeout and not self.closed
                    and not (give_way and queued is not None and queued[0] > 0)):
                rang = _RINGS[0]
                WAITING[0] += 1
                try:
                    self._cv.wait_for(lambda: self._q or self.closed or _RINGS[0] != rang, timeout)
                finally:
                    WAITING[0] -= 1
            ev = self._q.popleft() if self._q else None
            if ev is not None and queued is not None and not self.closed:
                queued[0] -= 1
            if self._room_waiters and len(self._q) < self.high_water // 2:
                waiters, self._room_waiters = self._room_waiters, []
            else:
                waiters = []
        for loop, fut in waiters:
            loop.call_soon_threadsafe(_set_done, fut)
        return ev

    def wait(self, timeout: float) -> None:
        """Block up to ``timeout`` seconds or until something arrives or the pipe closes."""
        with self._cv:
            if not self._q and not self.closed and timeout > 0:
                rang = _RINGS[0]
                WAITING[0] += 1
                try:
                    self._cv.wait_for(lambda: self._q or self.closed or _RINGS[0] != rang, timeout)
                finally:
                    WAITING[0] -= 1

    def close(self) -> None:
        with self._cv:
            if self.queued is not None and not self.closed:
                self.queued[0] -= len(self._q) + self._held
                self._held = 0
            self.closed = True
            _RINGS[0] += 1
            self._cv.notify_all()
            waiters, self._room_waiters = self._room_waiters, []
        for loop, fut in waiters:
            loop.call_soon_threadsafe(_set_done, fut)

    async def wait_room(self) -> None:
        """(async producers) Wait until the consumer has drained below half the high water."""
        while True:
            with self._cv:
                if len(self._q) < self.high_water or self.closed:
                    return
                loop = asyncio.get_running_loop()
                fut: asyncio.Future[None] = loop.create_future()
                self._room_waiters.append((loop, fut))
            await fut


def _set_done(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
