"""REST polling: one read per closed bar, scheduled at the bar's end (exchange clock) + settle.

``RestSchedule`` holds the decisions (when to read, what to ask, how to react to errors) and
is shared by the two I/O drivers: ``SyncRestDriver`` (rest mode: the feed's own thread,
i.e. backtrader's main thread) and ``rest_keeper`` (threaded mode, and the WebSocket mode's
gap fills, confirmations and REST fallback, on the store's event loop).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from typing import Any

from btccxt_cli.clock import Clock
from btccxt_cli.exchange.errors import is_fatal, is_rate_limit, retry_after_s
from btccxt_cli.exchange.retry import Backoff
from btccxt_cli.model import Candle, FeedState
from btccxt_cli.sources.base import RestGate, Series

__all__ = ["RestSchedule", "SyncRestDriver", "rest_keeper"]

logger = logging.getLogger(__name__)


class RestSchedule:
    """When does ``series`` read REST next, and what happens with the answer.

    Args:
        grace_s: how long after a bar's end the read is due (``settle`` for polling modes,
            the confirmation grace for WebSocket mode).
    """

    def __init__(self, series: Series, gate: RestGate, clock: Clock, *, grace_s: float,
                 polling: bool) -> None:
        self.series, self.gate, self.clock = series, gate, clock
        self.grace_s = grace_s
        self.polling = polling  # True: the REST answers are the live data (rest/threaded)
        p = series.p
        self.backoff = Backoff(min(1.0, p.reconnect_delay), p.max_reconnect_delay, clock=clock)
        self._not_before = 0.0
        self._retries = 0
        self._down = False
        self._asked: int | None = None
        self.fatal: BaseException | None = None
        # rest_keeper: when it wakes by itself (clock.monotonic(); inf: only when woken,
        # nothing was planned); 0.0 while it is awake (see ``needs_wake``)
        self.asleep_until = 0.0
        # told True at every answer, False at every failed read (not a rate limit): the
        # WebSocket side uses it as a sign of the exchange's life
        self.on_health: Callable[[bool], None] | None = None

    def wait_s(self) -> float | None:
        """Seconds to wait before the next read (<= 0: read now); None: nothing planned."""
        s = self.series
        if s.phase == s.OVER or self.fatal is not None:
            return None
        hold = max(self._not_before - self.clock.monotonic(), self.gate.delay())
        due = s.rest_due_in(self.grace_s)
        if due is None:
            return None
        return max(hold, due)

    def needs_wake(self) -> bool:
        """Does a newly released live bar need to wake the keeper? Only when it sleeps with
        nothing planned: a released bar moves the next due read later (the next bar's end),
        never earlier (a gap it reveals is woken for by the caller), so a keeper asleep until
        the old due time wakes then, plans again and sleeps on. Waking all of them at every
        close cost the event loop a task switch per series in the middle of the close's
        burst of messages (about a third of its time at 100 symbols)."""
        return self.asleep_until == math.inf

    def begin_call(self) -> tuple[int, int]:
        self.gate.count()
        self.series.note(rest_call=True)
        self._asked = self.series.assembler.expected
        return self.series.request()

    def on_rows(self, rows: list[list[Any]], since: int, headers: Any = None) -> None:
        s = self.series
        self.gate.note_headers(headers)
        if self.on_health is not None:
            self.on_health(True)
        self.backoff.success()
        if self.polling or self._down:  # REST's own wait ended (not a socket's pending reconnect)
            s.note_backoff(None)
        if self._down:
            self._down = False
            if self.polling:
                s.set_state(FeedState.CONNECTED, "REST reachable again")
        candles = [Candle.from_ccxt(r) for r in rows]
        s.on_rest(candles, since)
        if s.phase == s.LIVE and (self.polling or (s.state is FeedState.CONNECTED
                                                    and s.caught_up())):
            s.set_state(FeedState.LIVE)  # polling: REST is the feed; websocket: the gap is filled
        if s.phase == s.LIVE and s.assembler.expected == self._asked and not s.assembler.has_gap():
            # the exchange has not closed the bar yet: ask again shortly, a bit later each time
            self._retries += 1
            wait = min(s.p.retry_s * (2 ** min(self._retries - 1, 6)), max(1.0, s.tf_ms / 4000))
            self._not_before = self.clock.monotonic() + wait
        else:
            self._retries = 0
            self._not_before = 0.0

    def on_error(self, exc: BaseException, exchange: Any) -> None:
        s = self.series
        text = f"{type(exc).__name__}: {exc}"
        s.note(error=text)
        if is_rate_limit(exc):
            ra = retry_after_s(exchange)
            wait = ra if ra is not None else self.backoff.failure()
            self.gate.penalize(wait)
            s.note_backoff(wait)
            s.log.warning("%s: rate limited, waiting %.1f s (Retry-After %s)", s.name, wait, ra)
            return
        if is_fatal(exc):
            self.fatal = exc
            s.set_state(FeedState.NOTSUBSCRIBED, text)
            s.finish(text)
            return
        wait = self.backoff.failure()
        if self.polling:  # retrying once a bar costs no more than polling does when all is well
            wait = min(wait, max(1.0, s.tf_ms / 1000))
        self._not_before = self.clock.monotonic() + wait
        s.note_backoff(wait)
        if self.on_health is not None:
            self.on_health(False)
        if not self._down:
            self._down = True
            if self.polling:
                s.set_state(FeedState.DISCONNECTED, text)
        s.log.warning("%s: REST read failed (%s); retrying in %.2f s", s.name, text, wait)


    def retry_now(self) -> None:
        """The exchange answers again: a read held back by a failure may go now."""
        if self._down:
            self._not_before = 0.0
            self.backoff.reset()
            self.series.note_backoff(None)


class SyncRestDriver:
    """rest mode: reads happen on the feed's thread, inside ``_load``, only when due."""

    def __init__(self, series: Series, exchange: Any, gate: RestGate, clock: Clock, *,
                 clock_check: Callable[[bool], None] | None = None) -> None:
        self.series, self.exchange = series, exchange
        self.schedule = RestSchedule(series, gate, clock, grace_s=series.p.settle_s, polling=True)
        # called before every wait or read with idle=True when more than a second remains
        # before the next read: it reads the exchange clock when due (``CCXTStore``)
        self.clock_check = clock_check

    def pump(self, timeout: float) -> None:
        """Do one due read, or wait up to ``timeout`` seconds for the next one to fall due."""
        s = self.series
        if s.warming:
            s.warm_step()
            return
        wait = self.schedule.wait_s()
        if self.clock_check is not None:
            self.clock_check(wait is None or wait > 1.0)
            wait = self.schedule.wait_s()
        if wait is None:
            s.pipe.wait(timeout)
            return
        if wait > 0:
            s.pipe.wait(min(timeout, wait))
            return
        since, limit = self.schedule.begin_call()
        try:
            rows = self.exchange.fetch_ohlcv(s.p.symbol, s.p.timeframe, since=since, limit=limit)
        except Exception as exc:  # classified in on_error; never crash the strategy thread
            self.schedule.on_error(exc, self.exchange)
            return
        self.schedule.on_rows(rows, since, self.exchange.last_response_headers)


async def _wait_event(event: asyncio.Event, timeout: float | None) -> None:
    """Until ``event`` is set or ``timeout`` seconds passed (which sets it). Not
    ``asyncio.wait_for``: on Python 3.11 it lost a cancel that came as the event was set
    (the keeper then ran on past its store's stop), and it made a task of every wait."""
    if timeout is None:
        await event.wait()
        return
    handle = asyncio.get_running_loop().call_later(timeout, event.set)
    try:
        await event.wait()
    finally:
        handle.cancel()


async def rest_keeper(schedule: RestSchedule, exchange: Any, wake: asyncio.Event) -> None:
    """Async twin of ``SyncRestDriver.pump`` as a task: reads whenever the schedule says."""
    s = schedule.series
    while s.warming:  # history from the local cache first, paced by the consumer
        await s.pipe.wait_room()
        s.warm_step()
    while s.phase != s.OVER and schedule.fatal is None:
        wake.clear()
        wait = schedule.wait_s()
        if wait is None or wait > 0:
            schedule.asleep_until = math.inf if wait is None else schedule.clock.monotonic() + wait
            try:
                await _wait_event(wake, wait)
            finally:
                schedule.asleep_until = 0.0
            continue
        if s.phase == s.HISTORY:
            await s.pipe.wait_room()
        since, limit = schedule.begin_call()
        try:
            rows = await exchange.fetch_ohlcv(s.p.symbol, s.p.timeframe, since=since, limit=limit)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            schedule.on_error(exc, exchange)
            continue
        schedule.on_rows(rows, since, exchange.last_response_headers)
