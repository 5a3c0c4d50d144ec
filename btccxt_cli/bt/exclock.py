"""The store's estimate of the exchange clock: readings, resolution, signing (a mixin).

``CCXTStore`` reads the exchange clock (``fetch_time``) when it starts and every
``clock_refresh`` seconds, and moves the estimate forward when a pushed bar proves the
exchange is further on. The estimate is conservative: a reading ``s`` taken between our
``t0`` and ``t1`` proves the offset lies in ``[s - t1, s + resolution - t0)``
(``clock.offset_bounds``) and the low end is kept, so the estimate is never ahead of the
exchange: a REST row is never taken as final before its end. The resolution is per exchange
(kraken's clock reads whole seconds). The same estimate signs private requests (ccxt's
``options.timeDifference``), so a drifting or stepped local clock does not get orders
refused with ``InvalidNonce``.

The mixin uses the store's ``exchange_id``, ``clock``, ``clock_refresh``,
``clock_resolution_ms``, ``_offset_ms``, ``_offset_at``, ``_sync_ex``, ``_async_ex`` and
``_retry_sync``. No backtrader here; ccxt only through the store's clients.
"""

from __future__ import annotations

import logging
from typing import Any

from btccxt_cli.clock import Clock, offset_bounds

__all__ = ["CLOCK_RESOLUTION_MS", "ExchangeClock"]

logger = logging.getLogger(__name__)

# how finely an exchange's clock reading resolves (``fetch_time``); milliseconds elsewhere
CLOCK_RESOLUTION_MS = {"kraken": 1000}
# whose nonce is a counter that must grow, not a time checked against the exchange's clock
_COUNTER_NONCE = frozenset({"kraken"})


class ExchangeClock:
    """The exchange-clock part of ``CCXTStore`` (see the module docstring)."""

    exchange_id: str
    clock: Clock
    clock_refresh: float
    clock_resolution_ms: int
    _offset_ms: int | None
    _offset_at: float | None
    _sync_ex: Any
    _async_ex: Any
    _retry_sync: Any  # the store's: a blocking call with retries

    def _measure_offset_sync(self, ex: Any) -> int:
        if not ex.has.get("fetchTime"):
            return 0
        t0 = self.clock.time_ms()
        server = self._retry_sync(ex.fetch_time, "read the exchange clock")
        t1 = self.clock.time_ms()
        return self._offset_from(server, t0, t1)

    def _offset_from(self, server: Any, t0: int, t1: int, quiet: bool = False) -> int:
        """The conservative offset one reading proves: the exchange's clock read ``server``
        (to its resolution) between our ``t0`` and ``t1``; never ahead of the exchange."""
        if server is None:
            return 0
        low, high = offset_bounds(int(server), t0, t1, self.clock_resolution_ms)
        mid = (low + high) // 2
        if abs(mid) > 1000 and not quiet:
            logger.warning("%s: exchange clock differs from ours by %.2f s; bars are scheduled "
                           "by the exchange clock", self.exchange_id, mid / 1000)
        return low

    def _set_offset(self, offset: int) -> None:
        self._offset_ms = offset
        self._offset_at = self.clock.monotonic()
        self._sign_with_offset()

    def _sign_with_offset(self) -> None:
        """Hand the estimate to the ccxt clients, which stamp signed requests with
        ``milliseconds() - options["timeDifference"]`` (what ``adjustForTimeDifference``
        measures once, in ``load_markets``): a local clock that drifts or steps no longer gets
        them refused (``InvalidNonce``: binance -1021, okx 50102). Conservative, the stamps
        lag the exchange a little, inside ``recvWindow`` (binance 10 s, bybit 5 s), never
        ahead. kraken's nonce is a counter that must only grow, not a time: left alone."""
        if self._offset_ms is None or self.exchange_id in _COUNTER_NONCE:
            return
        now = self.exchange_now_ms()
        for ex in (self._sync_ex, self._async_ex):
            if ex is not None and isinstance(getattr(ex, "options", None), dict):
                ex.options["timeDifference"] = int(ex.milliseconds()) - now

    async def _clock_keeper(self) -> None:
        """(loop) Read the exchange clock again every ``clock_refresh`` seconds."""
        import asyncio

        while True:
            await asyncio.sleep(self.clock_refresh)
            await self.read_clock()

    async def read_clock(self) -> bool:
        """(loop) Read the exchange clock now (``fetch_time``) and sign with the new estimate.

        For the order path: when the exchange refuses a signed request's timestamp
        (``InvalidNonce``), read the clock, then send the same request again. False: no
        reading (no client yet, no ``fetchTime``, or the call failed; the last one stays).
        """
        import asyncio

        ex = self._async_ex
        if ex is None or not ex.has.get("fetchTime"):
            return False
        t0 = self.clock.time_ms()
        try:
            server = await ex.fetch_time()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the last reading stays; try again next period
            logger.info("%s: reading the exchange clock failed (%s)", self.exchange_id, exc)
            return False
        self._reread(self._offset_from(server, t0, self.clock.time_ms(), quiet=True))
        return True

    def refresh_clock_sync(self, idle: bool = True) -> None:
        """(rest mode, the feeds' thread) Read the exchange clock if it is due: while idle
        once a period has passed, before a read once two have (no idle moment came)."""
        if self._offset_at is None or self.clock_refresh <= 0 or self._sync_ex is None:
            return
        age = self.clock.monotonic() - self._offset_at
        if age < (1 if idle else 2) * self.clock_refresh or not self._sync_ex.has.get("fetchTime"):
            return
        self._offset_at = self.clock.monotonic()  # failed or not, the next try is a period away
        t0 = self.clock.time_ms()
        try:
            server = self._sync_ex.fetch_time()
        except Exception as exc:
            logger.info("%s: reading the exchange clock failed (%s)", self.exchange_id, exc)
            return
        self._reread(self._offset_from(server, t0, self.clock.time_ms(), quiet=True))

    def _reread(self, offset: int) -> None:
        old = self._offset_ms
        self._set_offset(offset)
        # two readings of a whole-second clock differ by up to a second while nothing moved
        if old is not None and abs(offset - old) > 500 + self.clock_resolution_ms:
            logger.warning("%s: the exchange clock moved %+.2f s against ours since the last "
                           "reading; bars are scheduled by the new reading", self.exchange_id,
                           (offset - old) / 1000)

    def exchange_now_ms(self) -> int:
        """The exchange's clock as we estimate it (our clock + measured offset); never ahead
        of the exchange's as far as the readings tell (see the class docstring)."""
        return self.clock.time_ms() + (self._offset_ms or 0)

    def observe_exchange_ms(self, at_least_ms: int) -> None:
        """The exchange proved its clock reads at least ``at_least_ms`` now (it pushed a bar
        that opened or closed then). If our estimate is behind (our clock stepped back, or
        the exchange's moved on), it moves forward so bars it has closed are not held back.
        Never moves it back: a late message proves nothing about the present."""
        if self._offset_ms is None:
            return
        need = at_least_ms - self.clock.time_ms()
        if need > self._offset_ms:
            if need - self._offset_ms > 1000 + self.clock_resolution_ms:
                logger.info("%s: the exchange clock is %.1f s further ahead than measured; "
                            "estimate corrected", self.exchange_id, (need - self._offset_ms) / 1000)
            self._offset_ms = need
            self._sign_with_offset()
