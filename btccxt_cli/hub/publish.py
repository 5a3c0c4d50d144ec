"""Publishing the hub's events to Redis: the commands of one batch, and the loop publisher.

The hub's exchange feeds run on its store's event loop. ``LoopPublisher`` publishes the bars
they release from that same loop (``redis.asyncio``), so a bar close costs no thread wake-up
between the socket that brought it and the ``XADD`` that sends it on. The publisher thread
(``runtime/hubd.py``) keeps the lease, the heartbeat, the ``wanted`` set and every path where
Redis is away; it turns the loop publisher on when nothing is queued and off before it
touches the pipes or the queue itself. Both sides hold ``gate`` while they publish, so one
batch is in flight at a time and bars of a stream reach Redis in order.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

from btccxt_cli.hub.keys import HubKeys, encode_bar, series_field
from btccxt_cli.model import FeedEvent

__all__ = ["LoopPublisher", "queue_batch", "is_refusal", "Batch"]

logger = logging.getLogger(__name__)

Batch = list[tuple[str, str, FeedEvent]]


def queue_batch(p: Any, keys: HubKeys, batch: Batch, *, maxlen: int, hub_id: str) -> None:
    """Queue a batch's commands on pipeline ``p`` (sync or asyncio): an ``XADD`` per bar (the
    bar's open time is its id), ``HSET`` + ``XADD`` to the events stream per state."""
    for sym, tf, ev in batch:
        if ev.kind == "bar":
            p.xadd(keys.bars(sym, tf), encode_bar(ev.candle, ev.source), id=f"{ev.candle.ts}-0",
                   maxlen=maxlen, approximate=True)
        else:
            state = ev.state.value if ev.state is not None else ""
            p.hset(keys.states, series_field(sym, tf), state)
            p.xadd(keys.events, {"series": series_field(sym, tf), "state": state,
                                 "message": ev.message or "", "hub": hub_id},
                   maxlen=10_000, approximate=True)


def is_refusal(res: Any) -> bool:
    """An ``XADD`` Redis refused because the entry id is already there (a double publish)."""
    return "equal or smaller" in str(res)


class LoopPublisher:
    """Publishes the hub's bars from the event loop their feeds run on.

    Args:
        url: ``redis://...``.
        gate: held while a batch is taken and published (shared with the publisher thread).
        take: (gate held) the events waiting in the feeds' pipes, as one batch.
        build: queues a batch's commands on a pipeline (``queue_batch``).
        done: (gate held) a batch and Redis's answers to it.
        failed: (gate held) a batch Redis did not take, and why; it must be kept for the
            publisher thread, which owns publishing until it turns this one on again.
        timeout_s: Redis socket timeout.
    """

    def __init__(self, url: str, gate: threading.Lock, *, take: Callable[[], Batch],
                 build: Callable[[Any, Batch], None], done: Callable[[Batch, list], None],
                 failed: Callable[[Batch, BaseException], None], timeout_s: float = 2.0) -> None:
        self.url = url
        self.gate = gate
        self.take = take
        self.build = build
        self.done = done
        self.failed = failed
        self.timeout_s = timeout_s
        self.enabled = False  # set and cleared by the publisher thread, with the gate held
        self.loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._redis: Any = None
        self._puts = 0  # puts seen (a counter: one loop turn without a new one ends a burst)
        self._seen = -1
        self._scheduled = False
        self._flushing = False
        self.batches = 0

    async def bind(self) -> None:
        """(on the loop) Publish from this loop."""
        self.loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()

    def on_put(self) -> None:
        """A pipe got an event (on the producer's thread)."""
        self._puts += 1
        if self.enabled and not self._scheduled:
            self.kick()

    def kick(self) -> None:
        """Publish what is waiting once the loop has read the burst (any thread)."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        self._scheduled = True
        if threading.get_ident() == self._loop_thread:
            loop.call_soon(self._step)
        else:
            loop.call_soon_threadsafe(self._step)

    def _step(self) -> None:
        # bars that close together arrive as a burst of socket messages; the loop reads them
        # all before it waits on the socket again. One loop turn without a new put ends it:
        # the whole burst goes in one MULTI/EXEC, so a runner's XREAD wakes once for it
        if self._puts != self._seen:
            self._seen = self._puts
            asyncio.get_running_loop().call_soon(self._step)
            return
        self._scheduled = False
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().create_task(self._flush(), name="hub publish")

    def _client(self) -> Any:
        if self._redis is None:
            import redis.asyncio as aredis

            self._redis = aredis.Redis.from_url(
                self.url, socket_timeout=self.timeout_s, socket_connect_timeout=self.timeout_s,
                health_check_interval=0)
        return self._redis

    async def _flush(self) -> None:
        puts = self._puts
        try:
            if not self.gate.acquire(blocking=False):
                return  # the publisher thread has the pipes now (it turns this one off)
            try:
                if not self.enabled:
                    return
                batch = self.take()
                if not batch:
                    return
                try:
                    p = self._client().pipeline(transaction=True)
                    self.build(p, batch)
                    results = await p.execute(raise_on_error=False)
                except BaseException as exc:  # noqa: BLE001 - the batch is kept, never lost
                    self.enabled = False
                    self.failed(batch, exc)
                    if not isinstance(exc, Exception):
                        raise
                    return
                self.batches += 1
                self.done(batch, results)
            finally:
                self.gate.release()
        finally:
            self._flushing = False
        if self.enabled and self._puts != puts and not self._scheduled:
            self.kick()  # more came while this batch was on its way

    async def aclose(self) -> None:
        r, self._redis = self._redis, None
        if r is not None:
            try:
                await r.aclose()
            except Exception:
                logger.debug("closing the hub's loop connection", exc_info=True)
