"""``btccxt hub``: one process owns the exchange connections and publishes bars to Redis Streams.

The hub runs the existing data core (a ``CCXTStore`` with one series per symbol and timeframe:
closed bars exactly once, gap fill, watchdog, REST fallback) and publishes every bar it
releases with ``XADD key {open_ms}-0 MAXLEN ~ N``. Redis refuses an id at or below a stream's
last one, so a bar published twice (a restart, a failover, a retry) never reaches a runner
twice. Every state change goes to the ``states`` hash and the ``events`` stream.

Leadership: a lease key (``SET NX PX``, renewed every third of its TTL). Only the leader
connects to the exchange; a standby polls the lease and takes over when it expires. A new
leader (or a restarted hub) starts each series at the bar after its stream's last entry, so
the gap is read from REST and published in order. While Redis is away the leader keeps its
bars in memory and publishes them when it answers again (unless another hub has taken the
lease meanwhile: then it steps down and the new leader fills the gap itself).

Bars go out from the store's event loop, in the turn that read them (``hub/publish.py``);
this module's thread keeps the lease, the heartbeat and the ``wanted`` set, and publishes
itself only while Redis is away or its queue is not empty.

Key names: ``hub/keys.py``. The runners' side: ``hub/reader.py``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from btccxt_cli.clock import SYSTEM_CLOCK, Clock
from btccxt_cli.hub.history import HistoryService
from btccxt_cli.hub.keys import (
    DEFAULT_HEARTBEAT_S,
    DEFAULT_LEASE_S,
    DEFAULT_MAXLEN,
    HubKeys,
    parse_series_field,
    series_field,
)
from btccxt_cli.hub.publish import (
    Batch,
    BatchPacker,
    LoopPublisher,
    count_results,
    send_batch,
    take_events,
)
from btccxt_cli.model import BarSource, FeedEvent, FeedState
from btccxt_cli.sources.base import SeriesParams
from btccxt_cli.timeframes import timeframe_ms

__all__ = ["HubPublisher", "HubStats"]

logger = logging.getLogger(__name__)

_RENEW = """if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"""
_RELEASE = """if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1]) else return 0 end"""
_PENDING_CAP = 1_000_000  # events kept while Redis is away (bounded memory)
_HISTORY_EVERY_S = 0.2  # how often runners' history requests are looked at (and answered)


def _late(pending: deque[tuple[str, str, FeedEvent]], start: int, stop: int | None = None) -> None:
    """The live bars of ``pending[start:stop]`` become gap fills: Redis was away when they
    closed, so they reach the runners late (a runner that reads a stale bar as live would
    trade on it), as a direct feed's bars read back from REST after an outage do."""
    for i in range(start, len(pending) if stop is None else min(stop, len(pending))):
        symbol, timeframe, ev = pending[i]
        if ev.kind == "bar" and ev.source is BarSource.LIVE:
            pending[i] = (symbol, timeframe, replace(ev, source=BarSource.GAPFILL))


@dataclass
class HubStats:
    """What the hub's dashboard and ``--plain`` lines show."""

    leading: bool = False
    role: str = "starting"  # leader | standby
    redis: str = "connecting"
    published: int = 0
    refused: int = 0  # XADDs Redis refused as already there (a double publish, prevented)
    pending: int = 0
    takeovers: int = 0
    per_series: dict[str, int] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)
    last_bar: dict[str, int] = field(default_factory=dict)


class HubPublisher:
    """Owns the exchange connections of one hub process and publishes to Redis.

    Args:
        exchange: ccxt exchange id.
        series: ``(symbol, timeframe)`` pairs from the hub's config.
        url: ``redis://...``.
        store_kwargs: passed to ``CCXTStore`` (config, sim_url, sandbox, cache ...).
        mode: the exchange feed mode (websocket or threaded; rest is run as threaded).
        backfill: bars published before going live for a stream that is empty.
        maxlen: entries kept per stream (``MAXLEN ~``).
        max_wanted: how many series runners may add beyond the config's.
        on_line: receives a line per published bar and per state change (``--plain``).
    """

    def __init__(self, exchange: str, series: list[tuple[str, str]], url: str, *,
                 namespace: str | None = None, store_kwargs: dict[str, Any] | None = None,
                 mode: str = "websocket", backfill: int = 100, ohlcv_limit: int = 100,
                 maxlen: int = DEFAULT_MAXLEN, lease_s: float = DEFAULT_LEASE_S,
                 heartbeat_s: float = DEFAULT_HEARTBEAT_S, max_wanted: int = 200,
                 on_line: Callable[[str], None] | None = None, clock: Clock = SYSTEM_CLOCK,
                 hub_id: str | None = None, pending_cap: int = _PENDING_CAP) -> None:
        self.exchange = exchange
        self.configured = list(dict.fromkeys(series))
        self.url = url
        self.keys = HubKeys(namespace or exchange)
        self.store_kwargs = dict(store_kwargs or {})
        self.mode = "threaded" if mode == "rest" else mode
        self.backfill = backfill
        self.ohlcv_limit = ohlcv_limit
        self.maxlen = maxlen
        self.lease_ms = int(lease_s * 1000)
        self.heartbeat_ms = int(heartbeat_s * 1000)
        self.max_wanted = max_wanted
        self.on_line = on_line
        self.clock = clock
        self.id = hub_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._packer = BatchPacker(self.keys, maxlen=maxlen, hub_id=self.id)
        self.stats = HubStats()
        self.store: Any = None
        self._handles: dict[tuple[str, str], Any] = {}
        self._pending: deque[tuple[str, str, FeedEvent]] = deque()
        self._away = False  # Redis failed since the last round that went through (bars
        # queued meanwhile go out as gap fills: ``_late``)
        self._redis: Any = None
        self._last_renew = 0.0
        self._confirmed = False  # the lease was read since Redis last failed
        self.pending_cap = pending_cap
        self._feeds_dropped = False  # the queue overflowed: feeds restart when Redis is back
        # bars are published from the store's loop (no thread wake-up per close) while Redis
        # answers and nothing is queued; this thread owns the pipes otherwise (publish.py)
        self._gate = threading.Lock()
        self._wake = threading.Event()  # the loop publisher stopped: this thread takes over
        self._fast: LoopPublisher | None = None
        # runners' requests for history older than their streams (hub/history.py)
        self.history = HistoryService(lambda: self.store, self.keys, ohlcv_limit=ohlcv_limit,
                                      on_line=self._line)

    # ------------------------------------------------------------------ main loop
    def run(self, stop: threading.Event) -> None:
        """Lead or stand by until ``stop`` is set; always releases what it holds."""
        import sys

        import redis

        # the publisher thread and the store's loop thread share the GIL: hand it over within
        # 1 ms (not CPython's 5) so a bar the loop released is published at once
        sys.setswitchinterval(0.001)
        self._redis = redis.Redis.from_url(self.url, socket_timeout=2, socket_connect_timeout=2)
        tick = min(self.lease_ms, self.heartbeat_ms) / 3000
        next_tick = 0.0
        next_wanted = 0.0
        next_history = 0.0
        try:
            while not stop.is_set():
                now = self.clock.monotonic()
                try:
                    # after Redis was away, the lease is checked before anything is published:
                    # another hub may lead now, and a bar of ours above its stream's top would
                    # make Redis refuse the older bars it is still filling in
                    if now >= next_tick or not self._confirmed:
                        next_tick = now + tick
                        self._lease()
                    if self.stats.leading and self._feeds_dropped and self.store is None:
                        self._feeds_dropped = False
                        self._restart_feeds()
                    if self.stats.leading:
                        if now >= next_wanted:
                            next_wanted = now + 1.0
                            self._wanted()
                        if now >= next_history:
                            next_history = now + _HISTORY_EVERY_S
                            self.history.serve(self._redis)
                        if not self._fast_on():
                            with self._gate:
                                self._drain()
                                self._flush()
                                self._go_fast()
                    self._redis_ok()
                except redis.RedisError as exc:
                    self._redis_down(exc)
                self._wait(stop, max(0.0, min(next_tick - self.clock.monotonic(), 0.25)))
        finally:
            self._shutdown()

    def _wait(self, stop: threading.Event, timeout: float) -> None:
        if self._fast_on():  # the loop publishes; wake when it hands back (or to tick)
            self._wake.wait(timeout)
            self._wake.clear()
            return
        if self._pending and self.stats.redis == "up":
            return
        handles = list(self._handles.values())
        if any(len(h.series.pipe) for h in handles):
            return  # an event came while publishing: the doorbell rang before this wait
        if handles:  # wakes when any series puts an event (the pipes' shared doorbell)
            handles[0].series.pipe.wait(timeout)
        else:
            stop.wait(timeout)

    def _redis_ok(self) -> None:
        if not self._pending:  # every bar kept while it was away is out
            self._away = False
        if self.stats.redis != "up":
            self.stats.redis = "up"
            self._line(f"redis {self.url.split('@')[-1]}: up")

    def _redis_down(self, exc: Exception) -> None:
        self._slow()
        self._confirmed = False
        text = f"down ({exc.__class__.__name__}: {exc})"
        if not self.stats.redis.startswith("down"):
            self._line(f"redis: {text}; {len(self._pending)} events kept until it answers")
        self.stats.redis = text
        if self.stats.leading:
            with self._gate:
                if not self._away:  # what was queued before it failed goes out late now
                    _late(self._pending, 0)
                self._away = True
                self._drain()  # keep bars moving out of the pipes into the bounded queue

    # ------------------------------------------------------------------ leadership
    def _lease(self) -> None:
        r, k = self._redis, self.keys
        if self.stats.leading:
            ok = r.eval(_RENEW, 1, k.leader, self.id, self.lease_ms)
            if not ok:  # expired while Redis was away; take it again unless another hub has
                ok = r.set(k.leader, self.id, nx=True, px=self.lease_ms)
            if not ok:
                holder = r.get(k.leader)
                self._line(f"lease lost to {holder.decode() if holder else '?'}; standing by")
                self._step_down()
                return
            self._last_renew = self.clock.monotonic()
            r.set(k.alive, self.id, px=self.heartbeat_ms)
            self._confirmed = True
            return
        self._confirmed = True
        if r.set(k.leader, self.id, nx=True, px=self.lease_ms):
            self._last_renew = self.clock.monotonic()
            self._catching_up()  # before the heartbeat: no runner takes a dead hub's LIVE
            r.set(k.alive, self.id, px=self.heartbeat_ms)
            self._lead()
        elif self.stats.role != "standby":
            holder = r.get(k.leader)
            self.stats.role = "standby"
            self._line(f"standing by: {holder.decode() if holder else '?'} leads")

    def _catching_up(self) -> None:
        """Every series a hub published says DELAYED until this hub's own feed says otherwise:
        the states a hub that died left say LIVE, and a runner back on a live heartbeat takes
        LIVE from the states. Its bars missed meanwhile come first (``hub/reader.py``)."""
        r, k = self._redis, self.keys
        fields = list(r.hkeys(k.states))
        if fields:
            r.hset(k.states, mapping=dict.fromkeys(fields, FeedState.DELAYED.value))

    def _lead(self) -> None:
        from btccxt_cli.bt.store import CCXTStore

        self.stats.leading = True
        self._feeds_dropped = False
        self.stats.role = "leader"
        self.stats.takeovers += 1
        self._line(f"leading as {self.id}")
        r = self._redis
        self.store = CCXTStore(self.exchange, **self.store_kwargs)
        from btccxt_cli.cache.source import cache_source

        # the price source's name in the OHLCV cache: runners read older warm-up bars under it
        source = cache_source(self.exchange, self.store.sim_url)
        r.hset(self.keys.info, mapping={"exchange": self.exchange, "hub": self.id,
                                        "maxlen": self.maxlen, "source": source})
        for sym, tf in self.configured:
            self._attach(sym, tf)

    def _restart_feeds(self) -> None:
        from btccxt_cli.bt.store import CCXTStore

        self._line("Redis is back; restarting the feeds after each stream's last bar")
        self._catching_up()
        wanted = list(self.stats.per_series)
        self.store = CCXTStore(self.exchange, **self.store_kwargs)
        for sym, tf in self.configured:
            self._attach(sym, tf)
        for name in wanted:  # and the series runners had asked for
            sym, tf = parse_series_field(name)
            self._attach(sym, tf)

    def _attach(self, symbol: str, timeframe: str) -> None:
        if (symbol, timeframe) in self._handles:
            return
        last = self._redis.xrevrange(self.keys.bars(symbol, timeframe), "+", "-", count=1)
        params = SeriesParams(symbol=symbol, timeframe=timeframe, mode=self.mode,
                              ohlcv_limit=self.ohlcv_limit, exchange_id=self.exchange)
        if last:  # resume at the bar after the stream's last: the gap comes from REST
            last_ts = int(last[0][0].decode().split("-", 1)[0])
            params = params.with_(fromdate_ms=last_ts + timeframe_ms(timeframe))
        else:
            params = params.with_(backfill_bars=self.backfill or None,
                                  backfill_start=bool(self.backfill))
        name = series_field(symbol, timeframe)
        self.stats.per_series.setdefault(name, 0)
        handle = self.store.attach(params, name=name)
        # the loop thread reads every bar of a burst (bars closing together) before this
        # thread publishes them in one pipeline: no GIL hand-over per bar (the 20 bars of a
        # burst reach the pipes within 1-2 ms, not 7-17), one XREAD wake per burst a runner
        handle.series.pipe.handoff = False
        if self._fast is not None:
            handle.series.pipe.on_put = self._fast.putter(timeframe)
        self._handles[(symbol, timeframe)] = handle

    def _wanted(self) -> None:
        """Series runners asked for (the ``wanted`` set), up to ``max_wanted`` of them."""
        extra = len(self._handles) - len(self.configured)
        for raw in sorted(self._redis.smembers(self.keys.wanted)):
            sym, tf = parse_series_field(raw)
            if (sym, tf) in self._handles or not sym or not tf:
                continue
            if extra >= self.max_wanted:
                logger.warning("hub: %s|%s asked for by a runner, but %d series were added "
                               "already (hub.max_wanted)", sym, tf, extra)
                break
            try:
                timeframe_ms(tf)
            except Exception:
                self._redis.srem(self.keys.wanted, raw)
                continue
            self._line(f"subscribing {sym} {tf} (asked by a runner)")
            self._attach(sym, tf)
            extra += 1

    def _step_down(self) -> None:
        self._slow()
        self.stats.leading = False
        self.stats.role = "standby"
        self._pending.clear()  # the new leader reads the gap from REST itself
        self._stop_store()

    def _stop_store(self) -> None:
        store, self.store = self.store, None
        self._handles.clear()
        fast, self._fast = self._fast, None
        if fast is not None:
            fast.enabled = False
        if store is not None:
            if fast is not None:
                try:
                    store.run_async(fast.aclose()).result(5)
                except Exception:
                    logger.debug("closing the loop publisher", exc_info=True)
            store.stop()

    # ------------------------------------------------------------------ the loop publisher
    def _fast_on(self) -> bool:
        return self._fast is not None and self._fast.enabled

    def _loop_publisher(self) -> LoopPublisher | None:
        """The store's loop publisher, made on first use (websocket feeds run on the loop)."""
        if self._fast is None and self.store is not None and self.mode == "websocket":
            fast = LoopPublisher(self.url, self._gate, take=self._take, build=self._packer.pack,
                                 done=self._results, failed=self._loop_failed, clock=self.clock)
            self.store.run_async(fast.bind()).result(5)
            self._fast = fast
            for (_sym, tf), h in self._handles.items():
                h.series.pipe.on_put = fast.putter(tf)
        return self._fast

    def _go_fast(self) -> None:
        """(gate held) Hand publishing to the store's loop: leading, Redis answering, the
        lease read since it last failed, nothing queued."""
        if (not self.stats.leading or self._pending or not self._confirmed
                or self.stats.redis.startswith("down")):
            return
        fast = self._loop_publisher()
        if fast is not None:
            fast.enabled = True
            self._wake.clear()
            fast.kick()  # what arrived while this thread published

    def _slow(self) -> None:
        """Take publishing back from the loop (waits for a batch on its way)."""
        if self._fast is not None and self._fast.enabled:
            with self._gate:
                self._fast.enabled = False

    def _take(self, limit: int = 2000) -> Batch:
        """Up to ``limit`` bars and states from the feeds' pipes."""
        return take_events(self._handles, limit, self._line)

    def _loop_failed(self, batch: Batch, exc: BaseException) -> None:
        # first in the queue, before anything still in the pipes: streams stay in order
        self._pending.extendleft(reversed(batch))
        _late(self._pending, 0, len(batch))
        self._away = True
        self.stats.pending = len(self._pending)
        self._confirmed = False
        logger.debug("hub: publishing from the loop failed (%s); the thread takes over", exc)
        self._wake.set()

    # ------------------------------------------------------------------ publishing
    def _drain(self) -> None:
        if len(self._pending) >= self.pending_cap and self.store is not None:
            # Redis has been away too long to keep everything: let go of the exchange feeds
            # and the queue; when Redis answers, they restart after each stream's last bar
            # and read the gap from REST (bounded memory, nothing lost or doubled)
            self._line(f"{len(self._pending)} events queued while Redis is away; stopping the "
                       "feeds until it answers (the gap is read from REST then)")
            self._pending.clear()
            self._stop_store()
            self._feeds_dropped = True
        kept = len(self._pending)
        self._pending.extend(self._take(max(0, self.pending_cap - len(self._pending))))
        if self._away:  # read while Redis was away: they go out late
            _late(self._pending, kept)
        self.stats.pending = len(self._pending)

    def _flush(self) -> None:
        if not self._pending:
            return
        batch = [self._pending[i] for i in range(min(len(self._pending), 2000))]
        # MULTI/EXEC: Redis wakes a runner's XREAD BLOCK after the whole batch, not at its
        # first XADD (which would answer with one bar and need a second read for the rest);
        # a refused XADD (an id already there) still fails alone
        results = send_batch(self._redis, self._packer.pack(batch))
        for _ in batch:
            self._pending.popleft()
        self.stats.pending = len(self._pending)
        self._results(batch, results)

    def _results(self, batch: Batch, results: list) -> None:
        """Count what Redis took and refused (both publishers)."""
        count_results(self.stats, batch, results, self._line, per_bar=self.on_line is not None)

    def _line(self, text: str) -> None:
        logger.debug("hub: %s", text)
        if self.on_line is not None:
            self.on_line(text)

    # ------------------------------------------------------------------ stop
    def _shutdown(self) -> None:
        r = self._redis
        was_leading = self.stats.leading
        self._slow()
        if was_leading and r is not None:
            try:
                with self._gate:
                    self._drain()
                    self._flush()
            except Exception:
                logger.debug("final publish", exc_info=True)
        self._stop_store()
        if was_leading and r is not None:
            try:  # hand over at once: a standby need not wait for the lease to expire
                r.eval(_RELEASE, 1, self.keys.alive, self.id)
                r.eval(_RELEASE, 1, self.keys.leader, self.id)
            except Exception:
                logger.debug("releasing the lease", exc_info=True)
        self.stats.leading = False
        if r is not None:
            r.close()
