"""Store-wide REST discipline (``RestGate``) and a latency window for status snapshots.

Thread-safe; no backtrader, no ccxt, no I/O.
"""

from __future__ import annotations

import logging
import threading
from collections import deque

from btccxt_cli.clock import SYSTEM_CLOCK, Clock

__all__ = ["RestGate", "LatencyWindow"]

logger = logging.getLogger(__name__)

class RestGate:
    """Store-wide REST discipline on top of ccxt's own limiter.

    After a 429/418 every series of the store waits until ``blocked_until`` instead of each
    retrying on its own, so a reconnect storm does not turn into a REST storm. Where the
    exchange reports the request weight used in the current minute (binance's
    ``X-MBX-USED-WEIGHT-1M``), the gate pauses all REST once usage reaches 90 % of
    ``weight_limit``, so the limit is never hit in the first place.
    """

    def __init__(self, clock: Clock = SYSTEM_CLOCK, *, weight_limit: int | None = None,
                 weight_header: str | None = None) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._blocked_until = 0.0
        self.calls = 0
        self.rate_limited = 0
        self.weight_limit = weight_limit
        self.weight_header = weight_header.lower() if weight_header else None
        self.weight_used: int | None = None
        self.weight_pauses = 0

    def note_headers(self, headers: object) -> None:
        """Read the used-weight header of a REST answer and pause before the limit."""
        if not self.weight_header or not self.weight_limit or not headers:
            return
        try:
            items = dict(headers).items()  # type: ignore[call-overload]
        except (TypeError, ValueError):
            return
        for k, v in items:
            if str(k).lower() == self.weight_header:
                try:
                    used = int(v)
                except (TypeError, ValueError):
                    return
                self.weight_used = used
                if used >= 0.9 * self.weight_limit:
                    # the window drains as old requests age out: wait for a share of the minute
                    pause = max(1.0, 60.0 * (used - 0.75 * self.weight_limit) / self.weight_limit)
                    with self._lock:
                        self.weight_pauses += 1
                        self._blocked_until = max(self._blocked_until, self.clock.monotonic() + pause)
                    logger.warning("request weight %d of %d used this minute; pausing REST %.1f s",
                                   used, self.weight_limit, pause)
                return

    def delay(self) -> float:
        with self._lock:
            return max(0.0, self._blocked_until - self.clock.monotonic())

    def penalize(self, seconds: float) -> None:
        with self._lock:
            self.rate_limited += 1
            self._blocked_until = max(self._blocked_until, self.clock.monotonic() + seconds)

    def count(self) -> None:
        with self._lock:
            self.calls += 1


class LatencyWindow:
    """Last N latencies (ms) with p50/p99, for status snapshots."""

    def __init__(self, size: int = 512) -> None:
        self._v: deque[float] = deque(maxlen=size)

    def add(self, ms: float) -> None:
        self._v.append(ms)

    def summary(self) -> tuple[float | None, float | None, float | None]:
        if not self._v:
            return None, None, None
        s = sorted(self._v)
        return self._v[-1], s[len(s) // 2], s[min(len(s) - 1, int(len(s) * 0.99))]
