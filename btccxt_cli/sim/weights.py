"""Request-weight limits as binance enforces them: a rolling minute of weight per client.

Past the limit a request is answered 429 with ``Retry-After`` (seconds until enough weight
leaves the window). A client that keeps sending while limited (more than ``ban_after`` refused
requests) is banned with 418 for ``ban_seconds``. Weights per path follow binance spot's
published costs; unknown paths weigh 1. Pure bookkeeping: the caller passes the time.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

__all__ = ["WeightLimiter", "request_weight"]

_WEIGHTS = {
    ("binance", "/api/v3/klines"): 2,
    ("binance", "/api/v3/exchangeInfo"): 20,
    ("binance", "/api/v3/time"): 1,
    ("binance", "/api/v3/ping"): 1,
    ("binance", "/api/v3/ticker/24hr"): 2,  # with one symbol (binance: 80 for all)
    ("binance", "/api/v3/ticker/price"): 2,  # with one symbol (binance: 4 for all)
    ("binance", "/fapi/v1/exchangeInfo"): 1,
    ("binance", "/dapi/v1/exchangeInfo"): 1,
}


def request_weight(exchange: str, path: str) -> int:
    return _WEIGHTS.get((exchange, path), 1)


@dataclass
class WeightLimiter:
    """Weight used in the last 60 s, with 429 past ``limit`` and a 418 ban for persisting."""

    limit: int
    ban_after: int = 10
    ban_seconds: float = 60.0
    window: deque[tuple[float, int]] = field(default_factory=deque)
    used: int = 0
    refused: int = 0
    banned_until: float = 0.0
    answered_429: int = 0
    answered_418: int = 0
    peak: int = 0

    def charge(self, now: float, weight: int) -> tuple[int, float | None]:
        """``(0, None)`` when allowed, else ``(status, retry_after_seconds)``."""
        while self.window and self.window[0][0] <= now - 60.0:
            self.used -= self.window.popleft()[1]
        if now < self.banned_until:
            self.answered_418 += 1
            return 418, math.ceil(self.banned_until - now)
        if self.used + weight > self.limit:
            self.refused += 1
            if self.refused > self.ban_after:
                self.banned_until = now + self.ban_seconds
                self.answered_418 += 1
                return 418, self.ban_seconds
            self.answered_429 += 1
            oldest = self.window[0][0] if self.window else now
            return 429, max(1.0, math.ceil(oldest + 60.0 - now))
        self.refused = 0
        self.window.append((now, weight))
        self.used += weight
        self.peak = max(self.peak, self.used)
        return 0, None

    def snapshot(self) -> dict[str, int | float]:
        return {"limit": self.limit, "used_1m": self.used, "peak_1m": self.peak,
                "answered_429": self.answered_429, "answered_418": self.answered_418}
