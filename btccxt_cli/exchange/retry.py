"""Retry delays: exponential backoff with jitter, reset after a healthy period.

Shared by every layer that retries (sources, backfill). No I/O; time comes from a ``Clock``.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from btccxt_cli.clock import SYSTEM_CLOCK, Clock

__all__ = ["Backoff"]


class Backoff:
    """Exponential backoff with jitter, reset after a healthy period.

    ``failure()`` returns the next delay: ``base * 2**n`` capped at ``cap``, times a random
    factor in [0.8, 1.2] (never above ``cap``). After ``success()`` has held for
    ``healthy_after`` seconds, the next failure starts again from ``base``.
    """

    def __init__(self, base: float, cap: float, *, healthy_after: float = 30.0,
                 clock: Clock = SYSTEM_CLOCK, rng: Callable[[], float] = random.random) -> None:
        self.base, self.cap, self.healthy_after = max(0.0, base), max(base, cap), healthy_after
        self.clock, self.rng = clock, rng
        self.attempts = 0
        self._up_since: float | None = None

    def failure(self) -> float:
        now = self.clock.monotonic()
        if self._up_since is not None and now - self._up_since >= self.healthy_after:
            self.attempts = 0
        self._up_since = None
        raw = min(self.cap, self.base * (2 ** min(self.attempts, 30)))
        self.attempts += 1
        return min(self.cap, raw * (0.8 + 0.4 * self.rng()))

    def success(self) -> None:
        if self._up_since is None:
            self._up_since = self.clock.monotonic()

    def reset(self) -> None:
        self.attempts = 0
