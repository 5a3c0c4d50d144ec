"""The runner's side of the hub: Redis streams into the store's series (``feed.mode: hub``).

One ``HubReader`` per store, on the store's event loop. With ``NOTIFY_FROM`` streams or more,
it waits in one ``XREAD BLOCK`` on the hub's notification stream (``keys.py``: one entry per
published batch, naming its series), then reads only the streams of its own that the batch
moved, from their last ids; with fewer, it waits in one ``XREAD BLOCK`` over its streams.
A gap in the notifications' sequence numbers (the capped stream trimmed entries it had not
read, the key was deleted, Redis restarted) makes it read every stream of its own from its
last id instead, and start again from the notification stream's newest entry: a missed
notification costs a read, never a bar. So does a period without notifications when that
stream holds none (a hub that sends none) or only entries older than the last one read. Each bar goes through the
series' assembler rules (nothing at or before the last delivered bar is released, so a bar
is never doubled) and its ``deliver``, so the feed, the dashboard and ``notify_data`` see
what they see with a direct connection:

- history (``backfill_bars``/``fromdate``) from the stream, as ``backfill`` bars (older ones
  from the local cache, and those it lacks read by the hub: ``hub/history.py``), then LIVE;
- DISCONNECTED when the hub's heartbeat is missing, Redis does not answer, or the hub says
  its own exchange feed of this series is down;
- on recovery CONNECTED, every bar missed meanwhile in order (``gapfill``), then LIVE.

The reader never talks to the exchange. It asks the hub for its series by adding them to
the ``wanted`` set (the hub subscribes them, within its bound).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from btccxt_cli.bars.assembler import Emitted
from btccxt_cli.hub.keys import (
    HubKeys,
    decode_bar,
    decode_history_reply,
    decode_notify,
    encode_history_request,
    series_field,
)
from btccxt_cli.model import BarSource, Candle, FeedState

__all__ = ["HubReader"]

logger = logging.getLogger(__name__)

_BATCH = 1000  # entries per series per read
_NOTES = 500  # notifications per read
NOTIFY_FROM = 30
"""A reader with at least this many streams waits on the notification stream; one with fewer
waits in one XREAD BLOCK over its streams. On notifications, a runner needs a second round
trip for its bars, and every batch of the hub wakes it for a look; on its streams, every
part of a close that touches them wakes it for a read. With a hub publishing a close in
parts, runners from 30 streams on waiting on notifications (one read a close, when their
series are in) left the cores to the smallest runners at each close: ten runners on 2 cores,
the 20-symbol runner's added p99 went from +14..19 to +11..15 ms (bench/RESULTS.md, eighth
pass). Below 30 streams, the second round trip cost more than it saved."""
DEFER_S = 0.05
"""A runner on notifications waits at most this long for the rest of a close's bars of its
series that the hub has not said is complete (``HubReader``)."""
_WARM_AT_ONCE = 16  # series whose older history is read at once (a Redis connection each)
HISTORY_WAIT_S = 20.0
"""How long a runner waits for the hub to read history older than its stream and cache."""
_REFUSED = (FeedState.NOTSUBSCRIBED.value, FeedState.NOTSUPPORTED_TF.value)


def _unbroken(bars: dict[int, Candle], grid: Any, start: int, until: int) -> list[Candle]:
    """The run of ``bars`` with no bar missing that ends at the bar before ``until``,
    back to ``start`` at most (empty if that bar is missing)."""
    out: list[Candle] = []
    t = grid.prev_open(until)
    while t >= start and t in bars:
        out.append(bars[t])
        t = grid.prev_open(t)
    out.reverse()
    return out


def _id(entry_id: bytes) -> tuple[int, int]:
    ms, _, seq = entry_id.partition(b"-")
    return int(ms), int(seq or 0)


class _Sub:
    def __init__(self, series: Any, key: str) -> None:
        self.series = series
        self.key = key
        self.down: str | None = None  # why this series is DISCONNECTED (None: it is not)
        self.catching_up = False  # bars read now were missed: delivered as gapfill
        self.field = series_field(series.p.symbol, series.p.timeframe)
        self.bfield = self.field.encode()
        self.warm = True  # history older than the stream: from the local cache, the hub
        # bytes, so that redis-py passes them to XREAD as they are: encoding hundreds of keys
        # and ids again at every read was most of a read's CPU
        self.bkey = key.encode()
        self._last: tuple[int | None, bytes] = (None, b"0-0")

    @property
    def last_bid(self) -> bytes:
        last = self.series.assembler.last_ts
        if last != self._last[0]:  # once per new bar, not once per read
            self._last = (last, f"{last}-0".encode() if last is not None and last >= 0 else b"0-0")
        return self._last[1]

    @property
    def last_id(self) -> str:
        return self.last_bid.decode()


class HubReader:
    """Feeds series from a hub's streams. Call ``add``/``remove`` on the loop thread.

    Args:
        url: ``redis://host:port/db`` of the hub.
        namespace: the hub's key namespace (default: the exchange id).
        heartbeat_check_s: how often the heartbeat and the hub's states are read.
        timeout_s: a Redis that stops answering counts as gone this long after it should
            have answered (the socket timeout is ``heartbeat_check_s`` + ``timeout_s``: a
            wait on the streams blocks up to ``heartbeat_check_s``).
        notify_from: from this many streams on, wait on the hub's notifications and read only
            the streams a batch moved; with fewer, wait in one XREAD over them.
        defer_s: on notifications, how long after the first of its series moved the reader
            may wait for the rest of a close that the hub does not say is complete (a series
            joined or dropped, a hub of an older version) before it reads what moved.
    """

    def __init__(self, url: str, namespace: str, *, heartbeat_check_s: float = 0.5,
                 timeout_s: float = 2.0, cache: Any = None, notify_from: int = NOTIFY_FROM,
                 defer_s: float = DEFER_S, history_wait_s: float = HISTORY_WAIT_S) -> None:
        self.url = url
        self.history_wait_s = history_wait_s
        self.keys = HubKeys(namespace)
        self.check_s = heartbeat_check_s
        self.timeout_s = timeout_s
        self._subs: dict[str, _Sub] = {}
        self._task: asyncio.Task[None] | None = None
        self._redis: Any = None
        self._redis_timeout = 0.0  # the socket timeout it was made with
        self._changed = asyncio.Event()
        self._nkey = self.keys.notify.encode()
        self.notify_from = notify_from
        self.defer_s = defer_s
        # the last notification read (None: not in step; read every stream, then start
        # after the notification stream's newest entry) and its sequence number
        self._note_id: bytes | None = None
        self._note_n: int | None = None
        self._more: set[bytes] = set()  # streams that held more than one read takes
        # counters (tests and bench/hub.py): XREADs of bars, stream keys they named,
        # notifications waited on, reads of every stream (start, gap, quiet period), gaps
        self.reads = 0
        self.keys_read = 0
        self.waits = 0
        self.full_reads = 0
        self.gaps = 0
        # the local OHLCV cache, read only: warm-up bars older than the stream holds, under
        # the price source the hub names (a simulator's bars never pose as the exchange's)
        self.cache = cache

    async def _client(self) -> Any:
        """The connection, its socket timeout ``timeout_s`` past the longest wait (``check_s``):
        a Redis that stops answering counts as gone ``timeout_s`` after it should have. A
        changed ``check_s`` takes a new connection (the old one would time out its waits)."""
        want = self.check_s + self.timeout_s
        if self._redis_timeout != want:
            await self._drop_client()
        if self._redis is None:
            import redis.asyncio as aredis

            self._redis = aredis.Redis.from_url(
                self.url, socket_timeout=want, socket_connect_timeout=self.timeout_s,
                health_check_interval=0)
            self._redis_timeout = want
        return self._redis

    # ---------------------------------------------------------------- membership
    def add(self, series: Any) -> None:
        series.note(transport="hub")
        sub = _Sub(series, self.keys.bars(series.p.symbol, series.p.timeframe))
        self._subs[sub.key] = sub
        series.begin()
        self._changed.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="hub reader")

    async def remove(self, series: Any) -> None:
        for key, sub in list(self._subs.items()):
            if sub.series is series:
                del self._subs[key]
        if not self._subs:
            await self.close()

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self._drop_client()

    async def _drop_client(self) -> None:
        r, self._redis = self._redis, None
        if r is not None:
            try:
                await r.aclose()
            except Exception:
                logger.debug("closing the hub connection", exc_info=True)

    # ---------------------------------------------------------------- the loop
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_check = 0.0
        asked: set[str] = set()
        got = 0  # entries the last XREAD returned
        while self._subs:
            try:
                r = await self._client()
                if self._changed.is_set():
                    self._changed.clear()
                    new = [s.field for s in self._subs.values() if s.field not in asked]
                    if new:
                        await r.sadd(self.keys.wanted, *new)
                        asked.update(new)
                # the heartbeat/state check is a round trip of its own: it waits for a
                # quiet moment (the last XREAD timed out) unless a whole period overdue, so
                # it does not hold up bars closing together
                now = loop.time()
                if now >= next_check and (not got or now >= next_check + self.check_s):
                    next_check = now + self.check_s
                    await self._check(r)
                got = await self._read(r, block_ms=int(self.check_s * 1000))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis gone or hung: every series is DISCONNECTED
                why = f"hub unreachable: {exc.__class__.__name__}: {exc}"
                self._all_down(why)
                self._note_id = None  # back in step by reading every stream
                asked.clear()
                self._changed.set()
                next_check = 0.0
                await asyncio.sleep(min(1.0, self.check_s))  # retry pace while Redis is away

    def _all_down(self, why: str) -> None:
        for sub in self._subs.values():
            self._down(sub, why)

    def _down(self, sub: _Sub, why: str) -> None:
        s = sub.series
        if sub.down is None and s.phase != s.OVER:
            sub.down = why
            s.note(error=why)
            s.set_state(FeedState.DISCONNECTED, why)

    async def _check(self, r: Any) -> None:
        """Heartbeat and the hub's per-series states; recover series that were down."""
        pipe = r.pipeline(transaction=False)
        pipe.get(self.keys.alive)
        pipe.hgetall(self.keys.states)
        alive, states = await pipe.execute()
        states = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
                  for k, v in (states or {}).items()}
        for sub in list(self._subs.values()):
            if not alive:
                self._down(sub, "hub heartbeat missing (is `btccxt hub` running?)")
                continue
            hub_state = states.get(sub.field)
            if hub_state in _REFUSED:  # the exchange refused the series: it ends, as directly
                s = sub.series
                if s.phase != s.OVER:
                    why = f"the hub's subscription was refused ({hub_state})"
                    s.set_state(FeedState(hub_state), why)
                    s.finish(why)
                self._subs.pop(sub.key, None)
                continue
            if hub_state == FeedState.DISCONNECTED.value:
                self._down(sub, "the hub's exchange feed is down")
                continue
            # back once the hub's own feed is LIVE: a hub that restarts (or took over) fills
            # its gap from REST first, and those bars must come before LIVE here too (no
            # state at all: a Redis restarted empty under a running hub; LIVE then waits for
            # the bars the hub kept, ``_apply``)
            if sub.down is not None and hub_state in (None, FeedState.LIVE.value):
                await self._recover(r, sub)

    async def _recover(self, r: Any, sub: _Sub) -> None:
        s = sub.series
        s.set_state(FeedState.CONNECTED, "hub back")
        sub.catching_up = True
        try:
            while await self._read_one(r, sub) >= _BATCH:
                pass
        finally:
            sub.catching_up = False
        sub.down = None
        s.note(transport="hub")
        if s.phase == s.HISTORY:
            return  # LIVE comes when the history is read
        if s.caught_up():  # else with the bars the hub still owes (``_apply``)
            s.set_state(FeedState.LIVE)

    async def _read_one(self, r: Any, sub: _Sub) -> int:
        res = await r.xrange(sub.key, min=f"({sub.last_id}", max="+", count=_BATCH)
        self._apply(sub, res)
        return len(res)

    async def _read(self, r: Any, *, block_ms: int) -> int:
        """Read what moved: after one notification wait, the streams it names; every stream
        while a series reads its history or the reader is out of step. History series move
        to LIVE once read. Returns how many entries it read."""
        ups = {s.bkey: s for s in self._subs.values()
               if s.down is None and s.series.phase != s.series.OVER}
        if not ups:
            await asyncio.sleep(self.check_s)
            return 0
        hist = [s for s in ups.values() if s.series.phase == s.series.HISTORY]
        warm = [sub for sub in hist if sub.warm]
        if warm:  # side by side: the hub reads older bars for several series at once
            gate = asyncio.Semaphore(_WARM_AT_ONCE)

            async def one(sub: _Sub) -> None:
                async with gate:
                    await self._warm(r, sub)

            for sub in warm:
                sub.warm = False
            # every one ends before the loop goes on (none delivers behind a later read)
            failed = [x for x in await asyncio.gather(*(one(sub) for sub in warm),
                                                      return_exceptions=True)
                      if isinstance(x, BaseException)]
            if failed:
                raise failed[0]
        if len(ups) < self.notify_from:  # few streams: one wait over them brings the bars
            self._note_id = None
            return await self._read_all(r, ups, hist, block=None if hist else block_ms,
                                        anchor=False)
        if hist or self._note_id is None:
            return await self._read_all(r, ups, hist)
        more = {k: ups[k] for k in self._more if k in ups}
        self._more.clear()
        if more:  # a stream held more than one read takes: the rest, before waiting
            return await self._read_keys(r, more)
        return await self._notified(r, ups, block_ms)

    async def _notified(self, r: Any, ups: dict[bytes, _Sub], block_ms: int) -> int:
        """Wait on the notifications, then read the streams of ``ups`` they named, once the
        close is complete for this runner: every one of its series moved, the hub said the
        close is complete, one of them moved again (the next close began), or ``defer_s``
        passed since the first of them moved. A close the hub publishes in parts (hundreds
        of symbols) then costs this runner one read, not one a part, and its early parts
        wake it for a look at the notification only: the CPU they would have cost goes to
        the runners whose series those parts complete (bench/RESULTS.md)."""
        res = await r.xread({self._nkey: self._note_id}, count=_NOTES, block=block_ms)
        self.waits += 1
        if not res:  # a quiet period: in step unless notifications stopped or went back
            await self._quiet(r)
            return 0
        by_field = {s.bfield: s for s in ups.values()}
        moved: set[bytes] = set()
        deadline: float | None = None
        entries = res[0][1]
        while True:
            now_read = gap = False
            for entry_id, fields in entries:
                n, series, complete = decode_notify(fields)
                if n is None or self._note_n is None or n != self._note_n + 1:
                    gap = True  # notifications were missed: what they named is unknown
                self._note_id, self._note_n = entry_id, n
                for f in series:
                    if f in by_field:
                        now_read = now_read or f in moved
                        moved.add(f)
                # the close is complete: of the ones named so far (an earlier close's end,
                # read in the same answer before any of this close's parts, is not this one's)
                now_read = now_read or (complete and bool(moved))
            if gap:
                self.gaps += 1
                return await self._read_all(r, ups, [], anchor=False)
            if not moved:
                return 0
            if now_read or len(moved) == len(by_field):
                break
            now = asyncio.get_running_loop().time()
            if deadline is None:
                deadline = now + self.defer_s
            if now >= deadline:
                break
            # at most check_s a wait, as above: a longer block would outlast the socket timeout
            res = await r.xread({self._nkey: self._note_id}, count=_NOTES,
                                block=max(1, int(min(deadline - now, self.check_s) * 1000)))
            self.waits += 1
            entries = res[0][1] if res else []
        return await self._read_keys(r, {by_field[f].bkey: by_field[f] for f in moved})

    async def _quiet(self, r: Any) -> None:
        """After a wait without a notification: read every stream next time if the
        notification stream has no entry (a hub that sends none: bars come each period) or
        only older ones than the last read (a new stream); otherwise nothing was missed."""
        newest = await r.xrevrange(self._nkey, "+", "-", count=1)
        if not newest or _id(newest[0][0]) < _id(self._note_id or b"0-0"):
            self._note_id = None

    async def _read_all(self, r: Any, ups: dict[bytes, _Sub], hist: list[_Sub], *,
                        anchor: bool = True, block: int | None = None) -> int:
        """Every stream from its last id (waiting ``block`` ms at most for one). With
        ``anchor``, the notification stream's newest entry is read first, in the same round
        trip: a batch published after it is notified after it, one published before it is
        in the streams this read reads."""
        self.full_reads += 1
        streams = {k: s.last_bid for k, s in ups.items()}
        if anchor:
            pipe = r.pipeline(transaction=False)
            pipe.xrevrange(self._nkey, "+", "-", count=1)
            pipe.xread(streams, count=_BATCH)
            newest, res = await pipe.execute()
            if newest:
                self._note_id, self._note_n = newest[0][0], decode_notify(newest[0][1])[0]
            else:
                self._note_id, self._note_n = b"0-0", None
        else:
            res = await r.xread(streams, count=_BATCH, block=block)
        got = self._take(ups, res, len(streams))
        for sub in hist:
            if got.get(sub.bkey, 0) < _BATCH and sub.series.phase == sub.series.HISTORY:
                sub.series.go_live()
        return sum(got.values())

    async def _read_keys(self, r: Any, subs: dict[bytes, _Sub]) -> int:
        """The streams of ``subs`` from their last ids (no wait)."""
        res = await r.xread({k: s.last_bid for k, s in subs.items()}, count=_BATCH)
        return sum(self._take(subs, res, len(subs)).values())

    def _take(self, subs: dict[bytes, _Sub], res: Any, nkeys: int) -> dict[bytes, int]:
        """An XREAD's answer into the series; a stream that filled the read is read again."""
        self.reads += 1
        self.keys_read += nkeys
        got: dict[bytes, int] = {}
        for key, entries in res or []:
            k = key if isinstance(key, bytes) else key.encode()
            sub = subs.get(k)
            if sub is not None:
                self._apply(sub, entries)
                got[k] = len(entries)
                if len(entries) >= _BATCH and sub.series.phase != sub.series.HISTORY:
                    self._more.add(k)
        return got

    async def _warm(self, r: Any, sub: _Sub) -> None:
        """History the stream no longer (or not yet) holds: the unbroken run of bars that
        ends where the stream starts, from the first one wanted on, taken from the local
        cache and, for older bars the cache lacks, from the hub (``hub/history.py``: it reads
        them by REST). A hole before the stream leaves it the stream's history only."""
        s = sub.series
        start = s.assembler.expected
        if start is None:
            return
        first = await r.xrange(sub.key, min="-", max="+", count=1)
        until = int(first[0][0].decode().split("-", 1)[0]) if first else s.grid.open_of(
            s.exchange_now_ms())
        if until <= start:
            return
        have: dict[int, Candle] = {}
        source = await r.hget(self.keys.info, "source") if self.cache is not None else None
        source = source.decode() if isinstance(source, bytes) else source
        if source:
            loop = asyncio.get_running_loop()
            try:
                rows = await loop.run_in_executor(None, self.cache.read, source, s.p.symbol,
                                                  s.p.timeframe, start, until)
                have.update((c.ts, c) for c in rows)
            except Exception:
                s.log.warning("%s: cache read failed; history from the hub", s.name,
                              exc_info=True)
        from_cache = set(have)
        run = _unbroken(have, s.grid, start, until)
        older = run[0].ts if run else until
        if older > start:  # older bars than the cache holds: the hub reads them
            bars, why = await self._ask_hub(r, s, start, older)
            for c in bars:
                have.setdefault(c.ts, c)
            run = _unbroken(have, s.grid, start, until)
            if why is not None or (run[0].ts if run else until) > start:
                s.log.info("%s: history from %d wanted; %s", s.name, start,
                           why or f"it starts at {run[0].ts if run else until}")
        if run:
            cached = sum(c.ts in from_cache for c in run)
            s.cached_bars += cached
            s.hub_history_bars += len(run) - cached
            s.assembler.last_ts = run[-1].ts
            s.deliver([Emitted(c, BarSource.BACKFILL) for c in run], write_cache=False)
            s.log.info("%s: %d history bars older than the hub's stream (%d from the local "
                       "cache, %d read by the hub)", s.name, len(run), cached, len(run) - cached)

    async def _ask_hub(self, r: Any, s: Any, start: int, until: int) -> tuple[list[Candle],
                                                                              str | None]:
        """Bars opening in ``[start, until)`` read by the hub; why not, if none came."""
        if not await r.exists(self.keys.alive):
            return [], "no hub is alive to read older bars"
        rid = uuid.uuid4().hex
        request = encode_history_request(rid, s.p.symbol, s.p.timeframe, start, until)
        await r.rpush(self.keys.history, request)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.history_wait_s
        key = self.keys.history_reply(rid)
        while (left := deadline - loop.time()) > 0:
            # short waits: the socket times out check_s + timeout_s after a command
            got = await r.blpop([key], timeout=min(left, max(0.1, self.check_s)))
            if got:
                return decode_history_reply(got[1])
        # not taken yet (a hub of an older version takes none): not left to pile up
        await r.lrem(self.keys.history, 1, request)
        return [], f"the hub did not answer in {self.history_wait_s:g} s"

    def _apply(self, sub: _Sub, entries: list) -> None:
        s = sub.series
        asm = s.assembler
        out: list[Emitted] = []
        for entry_id, fields in entries:
            c, hub_src = decode_bar(entry_id, fields)
            if asm.last_ts is not None and c.ts <= asm.last_ts:
                continue  # never twice (the stream's ids only grow; this is belt and braces)
            if s.phase == s.HISTORY:
                src = BarSource.BACKFILL
            elif sub.catching_up or hub_src is not BarSource.LIVE:
                src = BarSource.GAPFILL
            else:
                src = BarSource.LIVE
            asm.last_ts = c.ts
            out.append(Emitted(c, src))
        if out:
            s.note_message()
            # no GIL hand-over per series: one XREAD answers for many series (bars closing
            # together), and the strategy's next() needs them all; the feed thread runs
            # when this loop next waits on Redis
            s.deliver(out, handoff=False)
            if s.state is FeedState.CONNECTED and sub.down is None and s.phase == s.LIVE \
                    and s.caught_up():  # back: the bars missed meanwhile are out
                s.set_state(FeedState.LIVE)
