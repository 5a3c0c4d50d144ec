"""What every source shares: ``Series`` and its parameters (the pipe is in ``pipe.py``, the
store's REST gate in ``gate.py``, backoff in ``exchange/retry.py``; all re-exported here).

A ``Series`` is one (symbol, timeframe) subscription. It owns the bar assembler and the
plan (history pages, the next REST read, state changes) and turns results into
``FeedEvent``s on its pipe. The rest, threaded and websocket drivers only do I/O and
waiting around it, so the three modes deliver bars by the same rules.

No backtrader here, and no ccxt (the drivers pass plain rows in).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from btccxt_cli.bars.assembler import BarAssembler, Emitted
from btccxt_cli.clock import SYSTEM_CLOCK, Clock
from btccxt_cli.exchange.retry import Backoff
from btccxt_cli.model import BarSource, Candle, FeedEvent, FeedState, FeedStatus
from btccxt_cli.sources.gate import LatencyWindow, RestGate
from btccxt_cli.sources.notes import SeriesNotes
from btccxt_cli.sources.pipe import Pipe
from btccxt_cli.timeframes import BarGrid, bar_grid, timeframe_ms

__all__ = ["Pipe", "Backoff", "RestGate", "SeriesParams", "Series", "LatencyWindow"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SeriesParams:
    """What a feed asks of its series (the seed's parameters, in our units)."""

    symbol: str
    timeframe: str  # ccxt unified, e.g. "1m"
    mode: str = "rest"  # rest | threaded | websocket
    fromdate_ms: int | None = None
    backfill_bars: int | None = None
    backfill_start: bool = True
    historical: bool = False
    ohlcv_limit: int = 100
    drop_newest: bool = False
    settle_s: float = 0.25
    retry_s: float = 0.25
    reconnect_delay: float = 5.0
    max_reconnect_delay: float = 60.0
    watchdog_silence_s: float | None = None
    confirm_grace_s: float | None = None
    debug: bool = False
    exchange_id: str | None = None  # whose bar alignment applies (timeframes.bar_grid)

    @property
    def tf_ms(self) -> int:
        return timeframe_ms(self.timeframe)

    @property
    def grid(self) -> BarGrid:
        """Where this series' bars open (weeks on Monday, calendar months, ...)."""
        return bar_grid(self.exchange_id, self.timeframe)

    @property
    def watchdog_s(self) -> float:
        """Default silence limit: one bar plus max(5 s, half a bar), at most 120 s."""
        if self.watchdog_silence_s is not None:
            return self.watchdog_silence_s
        tf = self.tf_ms / 1000
        return min(tf + max(5.0, tf / 2), 120.0)

    @property
    def grace_s(self) -> float:
        """How long after a bar's end a WebSocket series waits before confirming it by REST."""
        if self.confirm_grace_s is not None:
            return self.confirm_grace_s
        tf = self.tf_ms / 1000
        return min(max(1.0, tf * 0.2), 10.0)

    def with_(self, **kw: object) -> SeriesParams:
        return replace(self, **kw)  # type: ignore[arg-type]


def _has_handler(log: logging.Logger) -> bool:
    cur: logging.Logger | None = log
    while cur is not None:
        if cur.handlers:
            return True
        cur = cur.parent if cur.propagate else None
    return False


def to_ms(dt: datetime | None) -> int | None:
    """A datetime (naive = UTC, as backtrader uses) to epoch milliseconds."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)


class Series:
    """One (symbol, timeframe): plan, assembler, status, and the pipe to its feed.

    Not thread-safe by itself: exactly one driver thread calls the planning methods
    (``history_request``, ``on_*``); ``status()`` may be called from any thread.
    """

    HISTORY, LIVE, OVER = "history", "live", "over"

    def __init__(self, params: SeriesParams, *, exchange_now_ms: Callable[[], int],
                 clock: Clock = SYSTEM_CLOCK, flagged: bool = False, pipe: Pipe | None = None,
                 name: str | None = None, cache: Any = None, cache_key: str = "",
                 observe_exchange_ms: Callable[[int], None] | None = None) -> None:
        self.p = params
        self.clock = clock
        self.exchange_now_ms = exchange_now_ms
        # told the exchange time a pushed bar proves (its open, or its close when flagged closed)
        self.observe_exchange_ms = observe_exchange_ms
        self.pipe = pipe if pipe is not None else Pipe()  # (an empty pipe is falsy)
        self.name = name or params.symbol
        self.tf_ms = params.tf_ms
        self.grid = params.grid
        self.log = logging.getLogger(f"btccxt_cli.series.{self.name}")
        if params.debug:
            self.log.setLevel(logging.DEBUG)
            if not logging.getLogger().handlers and not _has_handler(self.log):
                # debug=True promises output even when the application configured no logging
                from btccxt_cli.log import RedactingFilter

                h = logging.StreamHandler()
                h.addFilter(RedactingFilter())
                h.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
                self.log.addHandler(h)
        self._lock = threading.Lock()
        self._status = FeedStatus(symbol=params.symbol, timeframe=params.timeframe, mode=params.mode)
        self._state: FeedState | None = None
        self._last_msg_mono: float | None = None
        self._backoff_until: float | None = None
        self.latency = LatencyWindow()
        self.flagged = flagged
        # REST answers are this series' live data (rest/threaded mode, or WebSocket fallback)
        self.polling = params.mode in ("rest", "threaded")
        self.phase = self.LIVE
        self.assembler = BarAssembler(self.grid, flagged=flagged)
        self._grid_warned = False  # bars off the grid were reported once
        self._rest_rows = False  # a REST answer with rows came (the grid follows REST)
        self._begun = False
        # local OHLCV cache (cache.sqlite.OhlcvCache): warm-up source and write-through target
        self.cache = cache
        self.cache_key = cache_key
        self._warm_from: int | None = None  # next bar open to read from the cache
        self.cached_bars = 0
        self.hub_history_bars = 0  # feed.mode hub: history older than the stream, by the hub
        # skipped and revised bars, history shorter than asked (sources/notes.py)
        self.data_notes = SeriesNotes(self.name, params.timeframe, params.exchange_id, self.log)
        self._history_asked = 0
        self._cached_tail: Candle | None = None  # the newest cached bar, left for REST to read
        self._start_on_update = False  # no history: the first live update may move the start

    # ------------------------------------------------------------ plan
    def begin(self) -> None:
        """Decide where history starts (or that there is none) from the exchange clock."""
        if self._begun:
            return
        self._begun = True
        p, grid = self.p, self.grid
        now = self.exchange_now_ms()
        forming = grid.open_of(now)
        since = None
        if p.backfill_start and p.fromdate_ms is not None:
            since = grid.ceil(p.fromdate_ms)  # first whole bar at or after fromdate
        elif p.backfill_start and p.backfill_bars:
            since = grid.shift(forming, -p.backfill_bars)
        if since is not None and since < forming:
            self.assembler.last_ts = grid.prev_open(since)
            self.data_notes.history_start = since
            self._history_asked = grid.count(since, grid.prev_open(forming))
            self.phase = self.HISTORY
            self.set_state(FeedState.DELAYED, "loading history")
            if self.cache is not None:
                self._warm_from = since
        else:
            self.assembler.last_ts = grid.prev_open(forming)  # first bar: the one forming now
            # ... or, on a socket, the one its first update is about, if later: a subscription
            # sent after that bar closed (1,000 symbols take a few subscribe messages, paced)
            # never gets its final, and REST had to confirm it (hundreds of reads queued
            # behind the rate limit at start-up, each holding its series' live bars back)
            self._start_on_update = True
            self.go_live()

    def go_live(self) -> None:
        if self.phase == self.HISTORY:  # history is over: fewer bars than asked is said once
            with self._lock:
                got, last = self._status.bars[BarSource.BACKFILL.value], self._status.last_bar
            self.data_notes.history_done(got, self._history_asked, None if last is None else last.ts)
        if self.p.historical:
            self.finish("history loaded (historical=True)")
            return
        self.phase = self.LIVE
        self.set_state(FeedState.LIVE)

    def finish(self, why: str) -> None:
        if self.phase == self.OVER:
            return
        self.phase = self.OVER
        self.log.info("%s: feed ends: %s", self.name, why)
        self.pipe.put(FeedEvent("end", message=why))

    @property
    def warming(self) -> bool:
        """History is still being read from the local cache (before any REST page)."""
        return self._warm_from is not None

    def warm_step(self, max_bars: int = 5_000) -> None:
        """Release up to ``max_bars`` cached history bars; the rest comes from REST.

        Only the unbroken run of cached bars from the start is used (a hole may be a bar
        never fetched), and its newest bar is left for REST: the exchange may have changed
        it since it was cached.
        """
        start = self._warm_from
        if start is None:
            return
        grid = self.grid
        upto = grid.open_of(self.exchange_now_ms())
        try:
            rows = self.cache.read(self.cache_key, self.p.symbol, self.p.timeframe, start,
                                   min(upto, grid.shift(start, max_bars + 1)))
        except Exception:
            self.log.warning("%s: cache read failed; loading history from REST", self.name, exc_info=True)
            rows = []
        run, want = 0, start
        while run < len(rows) and rows[run].ts == want:
            run += 1
            want = grid.next_open(want)
        more = run == len(rows) and run > max_bars  # the chunk was full and unbroken
        keep = rows[: max(0, run - 1)]  # the last row is re-read with the next chunk, or by REST
        if keep:
            out = self.assembler.on_rest(keep, since=start, now_ms=self.exchange_now_ms(),
                                         source=BarSource.BACKFILL)
            self.cached_bars += len(out)
            self.deliver(out, write_cache=False)
        self._warm_from = grid.next_open(keep[-1].ts) if more and keep else None
        if self._warm_from is None and run:
            self._cached_tail = rows[run - 1]  # REST reads it again: did the exchange change it?
        if self._warm_from is None:
            self.log.info("%s: %d history bars from the local cache", self.name, self.cached_bars)

    def request(self) -> tuple[int, int]:
        """(since, limit) of the next REST read: from the next bar the strategy needs."""
        exp = self.assembler.expected
        assert exp is not None, "begin() first"
        if self.phase == self.HISTORY:
            return exp, self.p.ohlcv_limit
        behind = max(1, self.grid.count(exp, self.exchange_now_ms()))  # bars opened since exp
        return exp, int(min(self.p.ohlcv_limit, behind))

    def on_rest(self, rows: list[Candle], since: int) -> list[Emitted]:
        """Apply one REST answer; in history, move to live when caught up."""
        hist = self.phase == self.HISTORY
        if hist:
            source = BarSource.BACKFILL
        else:
            source = BarSource.LIVE if self.polling else BarSource.GAPFILL
        self._follow_exchange_grid(rows)
        if self.phase == self.OVER:
            return []
        self._rest_rows = self._rest_rows or bool(rows)
        before = self.assembler.expected
        now = self.exchange_now_ms()
        if self._cached_tail is not None and self.data_notes.cached_tail_read(self._cached_tail, rows):
            self._cached_tail = None
        out = self.assembler.on_rest(rows, since=since, now_ms=now, settle_ms=int(self.p.settle_s * 1000),
                                     drop_newest=self.p.drop_newest, source=source)
        if self.assembler.notes:
            noted = self.assembler.take_notes()
            self.data_notes.record(noted, history=hist)
            # REST revised bars already delivered: the cache keeps the exchange's record
            revised = [n[3] for n in noted if n[0] == "revised" and n[4]]
            if revised and self.cache is not None:
                self._write_cache(revised)
        self.log.debug("%s: REST since=%d rows=%d released=%d", self.name, since, len(rows), len(out))
        self.deliver(out)
        if hist:
            exp = self.assembler.expected
            caught_up = exp is not None and self.grid.close_of(exp) + int(self.p.settle_s * 1000) > now
            if caught_up or not rows or exp == before:
                self.go_live()
        return out

    def _follow_exchange_grid(self, rows: list[Candle]) -> None:
        """REST rows off this series' bar grid: the exchange opens its bars elsewhere than
        ``timeframes.bar_grid`` says (an exchange not in its table). They would never be the
        expected bar, so none would be released and REST read again and again: for bars of one
        length, follow the exchange's alignment (REST is its record) and say so."""
        grid = self.grid
        off = next((c.ts for c in rows if not grid.on_grid(c.ts)), None)
        if off is None:
            return
        when = datetime.fromtimestamp(off / 1000, tz=timezone.utc).strftime("%a %Y-%m-%d %H:%M")
        if not grid.regular:  # calendar months opening elsewhere: nothing to follow; stop
            why = (f"the exchange's {self.p.timeframe} bars open at {when} UTC, not on the 1st "
                   "of a month; btccxt cannot deliver them (please report the exchange's rule)")
            self.log.error("%s: %s", self.name, why)
            self.set_state(FeedState.NOTSUPPORTED_TF, why)
            self.finish(why)
            return
        new = BarGrid.fixed(grid.step_ms, off)
        self.log.warning("%s: the exchange's %s bars open at %s UTC, not where btccxt expected "
                         "(%s UTC); following the exchange", self.name, self.p.timeframe, when,
                         datetime.fromtimestamp(grid.open_of(off) / 1000, tz=timezone.utc)
                         .strftime("%a %H:%M"))
        asm = self.assembler
        exp = asm.expected
        self.grid = asm.grid = new
        if exp is not None:  # the first bar of the new grid at or after the one expected
            asm.last_ts = new.prev_open(new.ceil(exp))

    def on_live(self, candles: list[Candle], closed: list[bool] | bool = False, *,
                handoff: bool | None = None) -> list[Emitted]:
        """Apply one pushed message; ``handoff`` as in ``deliver``."""
        self.note_message()
        if (self._rest_rows and not self._grid_warned and candles
                and not self.grid.on_grid(candles[-1].ts)):
            self._grid_warned = True  # REST closes this series' bars; the socket's are others
            self.log.warning("%s: the WebSocket's %s bars open at %d, off the bars REST reads; "
                             "bars are closed by REST reads", self.name, self.p.timeframe,
                             candles[-1].ts)
        if self.observe_exchange_ms is not None and candles:
            if len(candles) == 1:  # the usual message: one candle (no generator on the hot path)
                c, f = candles[0], closed[0] if isinstance(closed, list) else closed
                self.observe_exchange_ms(self.assembler.close_of(c.ts) if f else c.ts)
            else:
                flags = closed if isinstance(closed, list) else [closed] * len(candles)
                self.observe_exchange_ms(max(self.assembler.close_of(c.ts) if f else c.ts
                                             for c, f in zip(candles, flags, strict=False)))
        if self._start_on_update and candles:
            self._start_on_update = False
            if self.phase == self.LIVE:
                self.assembler.start_at(min(c.ts for c in candles))
        # a subscription snapshot (bitget, kraken) may close bars while history still loads:
        # they are history, not live bars
        source = BarSource.BACKFILL if self.phase == self.HISTORY else BarSource.LIVE
        out = self.assembler.on_live(candles, closed=closed, source=source)
        if self.assembler.notes:
            self.data_notes.record(self.assembler.take_notes(), history=self.phase == self.HISTORY)
        if self.p.debug:
            self.log.debug("%s: live %s closed=%s released=%d", self.name, candles, closed, len(out))
        if out:
            self.deliver(out, handoff=handoff)
        return out

    def next_bar_due(self) -> bool:
        """The next bar the strategy needs has ended on the exchange clock (it is coming)."""
        exp = self.assembler.expected
        return (exp is not None and self.phase == self.LIVE
                and self.grid.close_of(exp) <= self.exchange_now_ms())

    def caught_up(self) -> bool:
        """Every bar that has ended on the exchange clock is out (none known missing, the next
        one not over yet): a reconnected feed is LIVE only then, so the bars it missed reach
        the strategy before LIVE does."""
        return not self.assembler.has_gap() and not self.next_bar_due()

    def rest_due_in(self, grace_s: float) -> float | None:
        """Seconds until the next REST read is due (<= 0: now); None: not needed."""
        if self.phase == self.HISTORY:
            return 0.0
        if self.phase == self.OVER:
            return None
        due = self.assembler.rest_due(int(grace_s * 1000))
        if due is None:
            return None
        if due == 0:
            return 0.0
        return (due - self.exchange_now_ms()) / 1000.0

    # ------------------------------------------------------------ delivery and status
    def deliver(self, emitted: list[Emitted], *, write_cache: bool = True,
                handoff: bool | None = None) -> None:
        if not emitted:
            return
        self._start_on_update = False  # the first bar is out: where to start is decided
        ns = self.clock.perf_ns()
        evs = [FeedEvent("bar", e.candle, e.source, recv_ns=ns) for e in emitted]
        with self._lock:
            st = self._status
            for e in emitted:
                st.bars[e.source.value] += 1
            st.last_bar = emitted[-1].candle
            if any(e.source is BarSource.GAPFILL for e in emitted):
                st.gaps_filled += 1
        self.pipe.put_many(evs, handoff=handoff)
        # after the hand-off; the store's cache (cache.writer.LiveCache) only queues the bars
        # for its writer thread: no SQLite wait on the event loop or the strategy's thread
        if write_cache and self.cache is not None:
            self._write_cache([e.candle for e in emitted])

    def _write_cache(self, candles: list[Candle]) -> None:
        try:
            self.cache.upsert(self.cache_key, self.p.symbol, self.p.timeframe, candles)
        except Exception:
            self.log.warning("%s: cache write failed", self.name, exc_info=True)

    def set_state(self, state: FeedState, message: str = "") -> None:
        """Queue a state change for the feed (in order with bars); repeats are dropped."""
        with self._lock:
            if state is self._state:
                return
            self._state = state
            self._status.state = state.value
        self.log.info("%s: %s%s", self.name, state.value, f" ({message})" if message else "")
        self.pipe.put(FeedEvent("state", state=state, message=message))

    @property
    def state(self) -> FeedState | None:
        return self._state

    def note_message(self) -> None:
        self._last_msg_mono = self.clock.monotonic()

    def silence_s(self) -> float | None:
        last = self._last_msg_mono
        return None if last is None else self.clock.monotonic() - last

    def note(self, *, rest_call: bool = False, reconnect: bool = False, error: str | None = None,
             transport: str | None = None) -> None:
        with self._lock:
            st = self._status
            if rest_call:
                st.rest_calls += 1
            if reconnect:
                st.reconnects += 1
            if error is not None:
                st.last_error = error
            if transport is not None:
                st.transport = transport

    def note_backoff(self, seconds: float | None) -> None:
        """A reconnect or retry is due in ``seconds`` (None: not waiting)."""
        self._backoff_until = None if seconds is None else self.clock.monotonic() + seconds

    def note_latency(self, ms: float) -> None:
        self.latency.add(ms)

    def status(self) -> FeedStatus:
        with self._lock:
            st = replace(self._status, bars=dict(self._status.bars))
        st.last_message_age_s = self.silence_s()
        until = self._backoff_until
        if until is not None:
            left = until - self.clock.monotonic()
            st.backoff_s = left if left > 0 else None
        st.latency_ms_last, st.latency_ms_p50, st.latency_ms_p99 = self.latency.summary()
        self.data_notes.fill(st)
        return st
