"""The push scheduler of one exchange server: candle streams, their subscribers and one heap.

A heap of per-stream next-event times, so 100+ streams cost one task. For every subscribed
stream the forming candle is pushed every ``min(tf/4, 2 s)`` (or ``push_interval_ms``); at a bar
boundary the final state of the closed bar goes out first (for all streams closing at that
instant, back to back), then the next bar's first update. Faults (stall, reorder, duplicate,
push delay) act here.

Must not import ccxt or anything from the client side of btccxt.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable
from typing import Any

from btccxt_cli.clock import Clock, SystemClock
from btccxt_cli.sim.faults import FaultState
from btccxt_cli.sim.market import MarketModel
from btccxt_cli.sim.venues import Venue
from btccxt_cli.sim.wire import Connection, Stats, Stream, StreamKey

logger = logging.getLogger(__name__)

__all__ = ["PushScheduler", "CLOSE_SENT_MAX", "MAX_CATCH_UP_BARS"]

CLOSE_SENT_MAX = 200_000
MAX_CATCH_UP_BARS = 3  # after a long pause (or a ManualClock jump) skip older finals


class PushScheduler:
    """Candle streams of one exchange server (a base of ``server.ExchangeServer``)."""

    id: str
    model: MarketModel
    clock: Clock
    venue: Venue
    faults: FaultState
    stats: Stats
    conns: dict[str, Connection]
    push_interval_ms: int | None

    def _init_scheduler(self) -> None:
        self.streams: dict[StreamKey, Stream] = {}
        self._heap: list[tuple[int, int, StreamKey]] = []
        self._seq = itertools.count()
        self._close_sent: OrderedDict[tuple[str, int, int], int] = OrderedDict()
        self._close_lock = threading.Lock()
        self._wake: asyncio.Event | None = None

    def now_ms(self) -> int:
        raise NotImplementedError

    async def send(self, conn: Connection, data: bytes) -> bool:
        raise NotImplementedError

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task:
        raise NotImplementedError

    def interval_for(self, tf_ms: int) -> int:
        iv = self.push_interval_ms
        if iv is None:
            iv = min(tf_ms // 4, 2_000)
        return max(1, min(int(iv), tf_ms))

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

