"""One REST budget for every process on an IP: a token bucket in Redis (``rate_limit.shared``).

Exchanges limit the request weight of an IP, not of a process: ten runners and backfills
that each space their own calls still add up to a ban. With ``rate_limit.shared:
redis://...`` every ccxt client of the hub, the runners' stores and ``btccxt backfill`` draws
its calls from one bucket per exchange and weight class, atomically (a Lua script; Redis's
own clock, so the machines' clocks do not matter):

- a call costs ccxt's own cost of the endpoint (its model of the exchange's weights); the
  bucket refills at ccxt's rate for the exchange (``1000 / rateLimit`` per second), so all
  processes together get what one well-behaved ccxt client gets, with one second of burst;
- a caller reserves its tokens (the balance may go negative) and waits its turn: one round
  trip per call, callers served in order;
- a 429 or 418 seen by any process sets a pause key for its ``Retry-After`` (or 5 s); every
  process waits it out before its next call.

If Redis does not answer, calls go on under ccxt's own limiter (one warning): a trading bot
must not stop because the budget's store is away.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

__all__ = ["SharedBudget", "install_budget"]

logger = logging.getLogger(__name__)

_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local paused = redis.call('PTTL', KEYS[2])
local rate = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local h = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(h[1]) or cap
local ts = tonumber(h[2]) or now
tokens = math.min(cap, tokens + (now - ts) * rate / 1000)
tokens = tokens - cost
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], 3600000)
local wait = 0
if tokens < 0 then wait = math.ceil(-tokens * 1000 / rate) end
if paused > wait then wait = paused end
return wait
"""
_PAUSE = """
local left = redis.call('PTTL', KEYS[1])
if left < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], '1', 'PX', ARGV[1]) end
return 1
"""


class SharedBudget:
    """A token bucket in Redis for one exchange and weight class.

    Args:
        url: ``redis://...``.
        exchange: the exchange id (one bucket per exchange and IP).
        per_second: tokens (ccxt cost units) added per second; capacity: the burst.
        weight_class: buckets apart for limits counted apart (e.g. ``rest``, ``orders``).
    """

    def __init__(self, url: str, exchange: str, *, per_second: float, capacity: float | None = None,
                 weight_class: str = "rest") -> None:
        self.url = url
        self.exchange = exchange
        self.per_second = float(per_second)
        self.capacity = float(capacity if capacity is not None else max(1.0, per_second))
        self.key = f"btccxt:budget:{exchange}:{weight_class}"
        self.pause_key = f"btccxt:budget:{exchange}:pause"
        self._sync: Any = None
        self._async: Any = None
        self._warned = False
        self._lock = threading.Lock()
        self.waited_s = 0.0
        self.calls = 0
        self.tokens = 0.0  # tokens this process drew
        self.pauses = 0

    def _args(self, cost: float | None) -> list[Any]:
        return [self.per_second, self.capacity, max(0.001, float(cost or 1))]

    def _failed(self, exc: Exception) -> float:
        if not self._warned:
            self._warned = True
            logger.warning("shared rate budget at %s unavailable (%s); pacing calls with ccxt's "
                           "own limiter meanwhile", self.url.split("@")[-1], exc)
        return 0.0

    def take(self, cost: float | None = None) -> float:
        """Reserve ``cost`` tokens; seconds to wait before the call (blocking client)."""
        import redis

        try:
            with self._lock:
                if self._sync is None:
                    self._sync = redis.Redis.from_url(self.url, socket_timeout=2,
                                                      socket_connect_timeout=2)
                ms = self._sync.eval(_TAKE, 2, self.key, self.pause_key, *self._args(cost))
        except redis.RedisError as exc:
            return self._failed(exc)
        self._warned = False
        self.calls += 1
        self.tokens += float(cost or 1)
        return int(ms) / 1000.0

    def acquire(self, cost: float | None = None) -> None:
        wait = self.take(cost)
        if wait > 0:
            self.waited_s += wait
            time.sleep(wait)  # this thread's turn in the shared budget

    async def aacquire(self, cost: float | None = None) -> None:
        import asyncio

        import redis
        import redis.asyncio as aredis

        try:
            if self._async is None:
                self._async = aredis.Redis.from_url(self.url, socket_timeout=2,
                                                    socket_connect_timeout=2)
            ms = await self._async.eval(_TAKE, 2, self.key, self.pause_key, *self._args(cost))
        except redis.RedisError as exc:
            self._failed(exc)
            return
        self.calls += 1
        self.tokens += float(cost or 1)
        if int(ms) > 0:
            self.waited_s += int(ms) / 1000
            await asyncio.sleep(int(ms) / 1000)

    def pause(self, seconds: float) -> None:
        """Every process sharing the budget waits ``seconds`` before its next call."""
        import redis

        self.pauses += 1
        try:
            with self._lock:
                if self._sync is None:
                    self._sync = redis.Redis.from_url(self.url, socket_timeout=2,
                                                      socket_connect_timeout=2)
                self._sync.eval(_PAUSE, 1, self.pause_key, max(1, int(seconds * 1000)))
        except redis.RedisError as exc:
            self._failed(exc)
        logger.warning("%s: rate limited; every process sharing the budget pauses %.1f s",
                       self.exchange, seconds)


def install_budget(ex: Any, url: str, *, per_second: float | None = None) -> SharedBudget:
    """Make ccxt client ``ex`` draw every REST call from the shared budget at ``url``.

    Replaces the client's ``throttle`` (ccxt calls it before every request when
    ``enableRateLimit`` is on, with the endpoint's cost) and watches its answers for 429/418.
    """
    import inspect

    from btccxt_cli.exchange.errors import is_rate_limit, retry_after_s

    rate = per_second or 1000.0 / max(1.0, float(getattr(ex, "rateLimit", 50) or 50))
    budget = SharedBudget(url, ex.id, per_second=rate)
    ex.enableRateLimit = True
    fetch = ex.fetch
    if inspect.iscoroutinefunction(fetch):
        async def athrottle(cost: Any = None) -> None:
            await budget.aacquire(cost)

        async def afetch(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fetch(*args, **kwargs)
            except Exception as exc:
                if is_rate_limit(exc):
                    budget.pause(retry_after_s(ex) or 5.0)
                raise

        ex.throttle = athrottle
        ex.fetch = afetch
    else:
        def throttle(cost: Any = None) -> None:
            budget.acquire(cost)

        def sfetch(*args: Any, **kwargs: Any) -> Any:
            try:
                return fetch(*args, **kwargs)
            except Exception as exc:
                if is_rate_limit(exc):
                    budget.pause(retry_after_s(ex) or 5.0)
                raise

        ex.throttle = throttle
        ex.fetch = sfetch
    ex.btccxt_budget = budget
    return budget
