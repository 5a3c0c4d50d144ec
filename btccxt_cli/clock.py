"""The one place that reads the time.

Everything else takes a :class:`Clock`. ``SystemClock`` reads the real clocks;
``ManualClock`` is advanced by hand in tests. Must not import anything of ours.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock", "SYSTEM_CLOCK", "offset_bounds"]


class Clock(Protocol):
    """Wall time in milliseconds and a monotonic reading for intervals."""

    def time_ms(self) -> int:
        """Milliseconds since the epoch (UTC)."""

    def time(self) -> float:
        """Seconds since the epoch (UTC), as a float."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin that never goes backwards."""

    def perf_ns(self) -> int:
        """High-resolution monotonic nanoseconds, comparable across threads."""


class SystemClock:
    """The machine's clocks."""

    def time_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def perf_ns(self) -> int:
        return time.perf_counter_ns()


SYSTEM_CLOCK = SystemClock()


class ManualClock:
    """A clock that moves only when told to (tests, deterministic replays)."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._ns = start_ms * 1_000_000
        self._lock = threading.Lock()

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._ns += int(seconds * 1e9)

    def set_ms(self, ms: int) -> None:
        with self._lock:
            self._ns = ms * 1_000_000

    def time_ms(self) -> int:
        return self._ns // 1_000_000

    def time(self) -> float:
        return self._ns / 1e9

    def monotonic(self) -> float:
        return self._ns / 1e9

    def perf_ns(self) -> int:
        return self._ns


def offset_bounds(server_ms: int, t0_ms: int, t1_ms: int, resolution_ms: int = 1) -> tuple[int, int]:
    """What one reading of a remote clock proves about its offset from ours.

    The remote answered ``server_ms`` to a request we sent at ``t0_ms`` and had answered by
    ``t1_ms`` (our clock). A clock of ``resolution_ms`` (kraken's: whole seconds) reads
    ``server_ms`` at any moment in ``[server_ms, server_ms + resolution_ms)``, and it was read
    at some moment in ``[t0_ms, t1_ms]``. Returns ``(low, high)``: the remote clock minus ours
    lies in ``[low, high)``. ``low`` is the conservative offset: an estimate built on it is
    never ahead of the remote clock, whatever the resolution or the round trip.
    """
    return server_ms - t1_ms, server_ms + max(1, resolution_ms) - t0_ms
