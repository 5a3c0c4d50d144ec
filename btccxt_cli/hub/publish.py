"""Publishing the hub's events to Redis: the commands of one batch, and the loop publisher.

The hub's exchange feeds run on its store's event loop. ``LoopPublisher`` publishes the bars
they release from that same loop, with no thread wake-up between the socket that brought a
bar and the ``XADD`` that sends it on. It sends with a blocking client, on purpose: a burst
of hundreds of closing updates is parsed in one loop turn (tens of ms on a busy machine),
and an ``await`` would send nothing until that turn ends, so the first symbols' bars would
wait for the last one's. A blocking ``MULTI/EXEC`` costs the loop one round trip to Redis
per batch (about 0.3 ms on the same host); a batch goes when its close is complete, or
``hold_s`` into a burst (``LoopPublisher``).

The publisher thread (``runtime/hubd.py``) keeps the lease, the heartbeat, the ``wanted``
set and every path where Redis is away; it turns the loop publisher on when nothing is
queued and off before it touches the pipes or the queue itself. Both sides hold ``gate``
while they publish, so one batch is in flight at a time and bars of a stream reach Redis in
order.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from btccxt_cli.bars.closes import CloseCounter
from btccxt_cli.clock import SYSTEM_CLOCK, Clock
from btccxt_cli.hub.keys import (
    NOTIFY_MAXLEN,
    NOTIFY_SCRIPT,
    HubKeys,
    encode_bar,
    encode_moved,
    series_field,
)
from btccxt_cli.model import BarSource, FeedEvent

__all__ = ["LoopPublisher", "BatchPacker", "send_batch", "is_refusal", "Batch", "take_events", "count_results"]

logger = logging.getLogger(__name__)

Batch = list[tuple[str, str, FeedEvent]]


def _bulks(*args: bytes) -> bytes:
    """Arguments in Redis's wire format (RESP bulk strings), without the array's length."""
    return b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def _resp(*args: bytes) -> bytes:
    """One command in Redis's wire format: an array of bulk strings."""
    return b"*%d\r\n" % len(args) + _bulks(*args)


_MULTI = _resp(b"MULTI")
_EXEC = _resp(b"EXEC")


class BatchPacker:
    """A batch's commands as one ``MULTI/EXEC``, in Redis's wire format: an ``XADD`` per bar
    (the bar's open time is its id), ``HSET`` + ``XADD`` to the events stream per state, and
    last, when the batch has bars, one notification naming their series (``keys.py``: runners
    block on that one key and read only the streams it names).

    redis-py's pipeline spent about 30 us a bar on the hub's event loop (its per-command
    argument checks and packing, then a reply callback per command): 6 ms for a close of
    200 symbols, during which the loop read no socket. This writes the same commands,
    the head of each stream's ``XADD`` made once, for a few us a bar (bench/RESULTS.md)."""

    def __init__(self, keys: HubKeys, *, maxlen: int, hub_id: str) -> None:
        self.keys = keys
        self.maxlen = str(maxlen).encode()
        self.hub_id = hub_id.encode()
        self._heads: dict[tuple[str, str], tuple[bytes, str]] = {}

    def _head(self, symbol: str, timeframe: str) -> tuple[bytes, str]:
        """(the XADD's arguments up to the id, without the array's length; the series field)"""
        head = _bulks(b"XADD", self.keys.bars(symbol, timeframe).encode(), b"MAXLEN", b"~",
                      self.maxlen)
        got = self._heads[(symbol, timeframe)] = (head, series_field(symbol, timeframe))
        return got

    def pack(self, batch: Batch, complete: bool = False) -> tuple[bytes, int]:
        """(the bytes to send, how many commands are between MULTI and EXEC); ``complete``:
        the batch completes a close (its notification tells runners no more is coming)."""
        parts = [_MULTI]
        moved: list[str] = []
        n = 0
        for sym, tf, ev in batch:
            if ev.kind == "bar":
                head, field = self._heads.get((sym, tf)) or self._head(sym, tf)
                fields = encode_bar(ev.candle, ev.source)
                # the id, the field names and values are ASCII (numbers, source names): one
                # str, encoded once, is the cheap way; a non-ASCII one would raise, not corrupt
                tail = "".join([f"${len(a)}\r\n{a}\r\n" for a in (
                    f"{ev.candle.ts}-0", *(x for kv in fields.items() for x in kv))])
                parts.append(b"*%d\r\n" % (6 + 2 * len(fields)) + head + tail.encode("ascii"))
                moved.append(field)
                n += 1
            else:
                field = series_field(sym, tf).encode()
                state = (ev.state.value if ev.state is not None else "").encode()
                parts.append(_resp(b"HSET", self.keys.states.encode(), field, state))
                parts.append(_resp(b"XADD", self.keys.events.encode(), b"MAXLEN", b"~", b"10000",
                                   b"*", b"series", field, b"state", state, b"message",
                                   (ev.message or "").encode(), b"hub", self.hub_id))
                n += 2
        if moved:
            parts.append(_resp(b"EVAL", NOTIFY_SCRIPT.encode(), b"2", self.keys.notify.encode(),
                               self.keys.notify_seq.encode(), str(NOTIFY_MAXLEN).encode(),
                               encode_moved(moved).encode(), b"1" if complete else b"0"))
            n += 1
        parts.append(_EXEC)
        return b"".join(parts), n


def send_batch(client: Any, packed: tuple[bytes, int]) -> list:
    """Send a ``BatchPacker.pack`` on a connection of ``client`` (a blocking redis-py client)
    and return ``EXEC``'s answers, one per command, as ``pipeline.execute(raise_on_error=
    False)`` would: a command Redis refused (an id already there) is a ``ResponseError`` in
    the list. Anything else wrong (no answer, a command refused before ``EXEC``) raises, and
    the connection is dropped: Redis applied all of the batch or none of it."""
    import redis

    payload, n = packed
    pool = client.connection_pool
    conn = pool.get_connection()
    try:
        conn.send_packed_command([payload])
        conn.read_response()  # MULTI's OK
        for _ in range(n):
            conn.read_response()  # QUEUED (a refusal here raises; EXEC then aborts)
        res = conn.read_response()
    except BaseException:
        conn.disconnect()  # replies may be left unread: never reuse this connection
        raise
    finally:
        pool.release(conn)
    if not isinstance(res, list) or len(res) != n:
        raise redis.ResponseError(f"EXEC answered {res!r} to {n} commands")
    return res


def is_refusal(res: Any) -> bool:
    """An ``XADD`` Redis refused because the entry id is already there (a double publish)."""
    return "equal or smaller" in str(res)


def take_events(handles: dict[tuple[str, str], Any], limit: int,
                line: Callable[[str], None]) -> Batch:
    """Up to ``limit`` bars and states from the pipes of ``handles`` (``(symbol, tf)`` ->
    the store's feed handle); a feed's end is told to ``line``."""
    batch: Batch = []
    for (sym, tf), h in list(handles.items()):
        pipe = h.series.pipe
        if not len(pipe):  # most are empty when a part of a close goes: no lock for those
            continue
        while len(batch) < limit:
            ev = pipe.get(0)
            if ev is None:
                break
            if ev.kind in ("bar", "state"):
                batch.append((sym, tf, ev))
            elif ev.kind == "end":
                line(f"{sym} {tf}: feed ended: {ev.message}")
    return batch


def count_results(stats: Any, batch: Batch, results: list, line: Callable[[str], None], *,
                  per_bar: bool) -> None:
    """Count in ``stats`` (the hub's ``HubStats``) what Redis took and refused of a batch;
    state changes, and with ``per_bar`` every bar published, go to ``line``."""
    import redis

    it = iter(results)
    for sym, tf, ev in batch:
        name = series_field(sym, tf)
        res = next(it)
        if ev.kind == "state":
            next(it)
            stats.states[name] = ev.state.value if ev.state is not None else ""
            line(f"{sym} {tf}: {stats.states[name]}" + (f" ({ev.message})" if ev.message else ""))
            continue
        if isinstance(res, redis.ResponseError):
            if is_refusal(res):
                stats.refused += 1
                continue
            logger.warning("hub: publishing %s %s failed: %s", sym, tf, res)
            continue
        stats.published += 1
        stats.per_series[name] = stats.per_series.get(name, 0) + 1
        stats.last_bar[name] = ev.candle.ts
        if per_bar:
            c = ev.candle
            when = datetime.fromtimestamp(c.ts / 1000, tz=timezone.utc).strftime("%H:%M:%S")
            line(f"{sym} {tf} {when} o={c.open} h={c.high} l={c.low} c={c.close} v={c.volume} "
                 f"({ev.source.value})")


class LoopPublisher:
    """Publishes the hub's bars from the event loop their feeds run on (module docstring).

    When a batch goes: bars that close together arrive as a burst of socket messages. The
    burst of a close is complete when as many series of its timeframe have their live bar of
    it as had one of the close before: it goes in one ``MULTI/EXEC`` as its last bar is read,
    so a runner's XREAD wakes once for it, and nothing waits for a guess that the burst is
    over. A burst that does not complete (a series joined or dropped, bars that are not live
    closes) goes ``gap_s`` after its first bar (``hold_s`` for a long close). A long one
    (more than ``long_close`` series, hundreds parsed back to back) goes out in parts
    meanwhile, the first ``hold_s`` after its first bar and each next one after twice the
    wait of the one before: the first symbols' runners need not wait for the last symbol's
    message, and a runner on all of them is not woken every ``hold_s`` (each XREAD over
    hundreds of streams costs it about a millisecond of CPU).
    Puts less than ``gap_s`` apart belong to one burst. The notification of a batch that
    completes its close says so: a runner on notifications waits for the rest of its own
    series' bars until then (``HubReader``), so early parts wake it for a look, not a read.

    Args:
        url: ``redis://...``.
        gate: held while a batch is taken and published (shared with the publisher thread).
        take: (gate held) the events waiting in the feeds' pipes, as one batch.
        build: a batch, and whether it completes its close, as the bytes of its
            ``MULTI/EXEC`` (``BatchPacker.pack``).
        done: (gate held) a batch and Redis's answers to it.
        failed: (gate held) a batch Redis did not take, and why; it must be kept for the
            publisher thread, which owns publishing until it turns this one on again.
        timeout_s: Redis socket timeout.
        hold_s: how long the first bar of a burst that does not complete may wait for the rest
            (1 ms: the first symbols' runners get their bars while the hub reads the others;
            bench/RESULTS.md).
        gap_s: puts further apart than this start a new burst.
        long_close: a close of more live bars than this (the close before tells) goes in
            parts from ``hold_s``; a shorter one is parsed within a few ms (about 45 us a
            bar on a busy 2-core box), and its first part waits up to ``gap_s`` for the rest:
            its first update often comes alone, the rest a socket read later, and a part of
            one bar would cost every runner a wake-up and a read more a close.
    """

    def __init__(self, url: str, gate: threading.Lock, *, take: Callable[[], Batch],
                 build: Callable[[Batch, bool], tuple[bytes, int]],
                 done: Callable[[Batch, list], None],
                 failed: Callable[[Batch, BaseException], None], timeout_s: float = 2.0,
                 hold_s: float = 0.001, gap_s: float = 0.003, long_close: int = 64,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self.url = url
        self.gate = gate
        self.take = take
        self.build = build
        self.done = done
        self.failed = failed
        self.timeout_s = timeout_s
        self.hold_s = hold_s
        self.gap_s = gap_s
        self.long_close = long_close
        self._hold = hold_s  # this burst's next part waits this long (doubles per part)
        self.clock = clock
        self._first: float | None = None  # when the oldest bar not yet taken was put
        self._last: float | None = None  # when the last event was put
        self._closes: dict[str, CloseCounter] = {}  # per timeframe
        self.enabled = False  # set and cleared by the publisher thread, with the gate held
        self.loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._redis: Any = None
        self._timer: asyncio.Handle | None = None
        self._flushing = False
        self.batches = 0
        self.complete = 0  # batches sent because their close was complete (tests, bench)

    async def bind(self) -> None:
        """(on the loop) Publish from this loop."""
        self.loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()

    def putter(self, timeframe: str) -> Callable[[FeedEvent], None]:
        """The ``on_put`` hook of a pipe of a series of ``timeframe``."""
        close = self._closes.setdefault(timeframe, CloseCounter())
        return lambda ev: self.on_put(ev, close)

    def on_put(self, ev: FeedEvent, close: CloseCounter | None = None) -> None:
        """A pipe got ``ev`` (on the producer's thread)."""
        now = self.clock.monotonic()
        if self._last is None or now - self._last >= self.gap_s:
            # a new burst: the close before it tells its size; a short one can go whole
            size = close.recent_size() if close is not None else 0
            self._hold = self.hold_s if size == 0 or size > self.long_close else self.gap_s
        self._last = now
        if self._first is None:
            self._first = now
        done = (close is not None and ev.kind == "bar" and ev.source is BarSource.LIVE
                and close.count(ev.candle.ts))
        if not self.enabled:
            return
        on_loop = threading.get_ident() == self._loop_thread
        if on_loop and done:
            self.complete += 1
            self._publish(complete=True)
        elif on_loop and now - self._first >= self._hold:
            self._hold *= 2  # the next part of this burst waits twice as long
            self._publish()  # a long burst: what is read so far goes now, mid-turn
        else:
            self._arm(on_loop)

    def _arm(self, on_loop: bool) -> None:
        """Publish what is waiting when the first of it has waited ``_hold`` (any thread)."""
        loop = self.loop
        if self._timer is not None or loop is None or loop.is_closed():
            return
        first = self._first if self._first is not None else self.clock.monotonic()
        delay = max(0.0, first + self._hold - self.clock.monotonic())
        if on_loop:
            self._timer = loop.call_later(delay, self._due)
        else:
            self._timer = loop.call_soon_threadsafe(self._due)

    def kick(self) -> None:
        """Publish what is waiting now (any thread): the publisher thread hands over."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._publish)

    def _due(self) -> None:
        self._timer = None
        self._hold *= 2
        self._publish()

    def _client(self) -> Any:
        if self._redis is None:
            import redis

            self._redis = redis.Redis.from_url(
                self.url, socket_timeout=self.timeout_s, socket_connect_timeout=self.timeout_s,
                health_check_interval=0)
        return self._redis

    def _publish(self, complete: bool = False) -> None:
        """(loop) One MULTI/EXEC of what is waiting, answered before the loop goes on;
        ``complete``: it completes a close."""
        if self._flushing or not self.gate.acquire(blocking=False):
            return  # the publisher thread has the pipes now (it turns this one off)
        self._flushing = True
        try:
            if not self.enabled:
                return
            self._first = None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            batch = self.take()
            if not batch:
                return
            try:
                results = send_batch(self._client(), self.build(batch, complete))
            except Exception as exc:  # noqa: BLE001 - the batch is kept, never lost
                self.enabled = False
                self.failed(batch, exc)
                return
            self.batches += 1
            self.done(batch, results)
        finally:
            self._flushing = False
            self.gate.release()

    async def aclose(self) -> None:
        r, self._redis = self._redis, None
        if r is not None:
            try:
                r.close()
            except Exception:
                logger.debug("closing the hub's loop connection", exc_info=True)
