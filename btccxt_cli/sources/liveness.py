"""Reconnect timing for the WebSocket side: redial at once after a drop, back off while the
exchange is down, and retry the moment it shows a sign of life.

``Redial`` gives the delays: a connection that worked (delivered data for at least
``QUICK_S``) and dropped is redialled at once, as ccxt alone does; a failed redial waits
``Backoff``'s jittered, doubling delays up to the cap, and that growth is forgotten only after
a stable period (``STABLE_S``) of health, so a flapping exchange still sees the delays grow.

``Liveness`` tracks whether the exchange looks unreachable ("dark": a REST read failed).
A failed redial or REST read starts a REST probe, about once a second (one light request per
store, not per series) for as long as REST fails; the first sign of life after that (a REST
answer, probe or gap fill, or a WebSocket message) cuts every reconnect wait short. Only the
change from dark to alive wakes the waits, so an exchange whose REST works while its
WebSocket refuses is not redialled at REST's pace (its probe stops at the first answer).

No ccxt here; runs on the store's event loop.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

from btccxt_cli.clock import Clock
from btccxt_cli.exchange.retry import Backoff
from btccxt_cli.sources.gate import RestGate

__all__ = ["Redial", "Liveness", "STABLE_S", "QUICK_S", "PROBE_S"]

logger = logging.getLogger(__name__)

STABLE_S = 30.0  # a connection up this long is healthy: the backoff starts again from its base
QUICK_S = 1.0  # a connection that worked this long and dropped is redialled at once
PROBE_S = 1.0  # while the exchange is unreachable: one REST probe about this often


class Redial:
    """Reconnect delays: 0 when a working connection dropped, else ``Backoff``'s (see above)."""

    def __init__(self, base: float, cap: float, *, clock: Clock, stable_s: float = STABLE_S,
                 quick_s: float = QUICK_S, rng: Callable[[], float] = random.random) -> None:
        self.clock = clock
        self.stable_s, self.quick_s = stable_s, quick_s
        self.backoff = Backoff(base, cap, healthy_after=float("inf"), clock=clock, rng=rng)
        self._up_since: float | None = None

    def failure(self) -> float:
        """The delay before the next attempt, after a drop or a failed attempt."""
        up = None if self._up_since is None else self.clock.monotonic() - self._up_since
        self._up_since = None
        if up is not None and up >= self.stable_s:
            self.backoff.reset()
        if up is not None and up >= self.quick_s:
            return 0.0
        return self.backoff.failure()

    def success(self) -> None:
        """The connection works (a watch answered)."""
        if self._up_since is None:
            self._up_since = self.clock.monotonic()


class Liveness:
    """Signs of life of one exchange, and the reconnect waits they cut short.

    Args:
        probe: a light REST call (awaitable factory); None: no probing, only signs of life.
        on_back: called once each time the exchange comes back from dark.
    """

    def __init__(self, probe: Callable[[], Awaitable[Any]] | None, *, gate: RestGate,
                 on_back: Callable[[], None] | None = None, interval: float = PROBE_S,
                 rng: Callable[[], float] = random.random) -> None:
        self.probe = probe
        self.gate = gate
        self.on_back = on_back
        self.interval = interval
        self.rng = rng
        self.dark = False
        self.probes = 0
        self._sleepers: set[asyncio.Event] = set()
        self._task: asyncio.Task[None] | None = None

    def rest_failed(self) -> None:
        """A REST read failed (not a rate limit): the exchange is unreachable for now."""
        self.dark = True
        self.suspect()

    def suspect(self) -> None:
        """A redial failed: probe REST until it answers (dark while it does not)."""
        if self.probe is not None and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._probe_loop(), name="exchange probe")

    def alive(self) -> None:
        """A sign of life (REST answer, WebSocket message): if it was dark, retry everything now."""
        if not self.dark:
            return
        self.dark = False
        logger.info("exchange answers again; reconnecting now")
        for ev in self._sleepers:
            ev.set()
        if self.on_back is not None:
            self.on_back()

    async def pause(self, delay: float) -> None:
        """Sleep ``delay`` seconds, or less if the exchange comes back meanwhile."""
        if delay <= 0:
            return
        ev = asyncio.Event()
        self._sleepers.add(ev)
        try:
            await asyncio.wait_for(ev.wait(), delay)
        except asyncio.TimeoutError:
            pass
        finally:
            self._sleepers.discard(ev)

    async def _probe_loop(self) -> None:
        """Probe until REST answers; a failed probe makes the exchange dark."""
        assert self.probe is not None
        while True:
            await asyncio.sleep(self.interval * (0.75 + 0.25 * self.rng()) + self.gate.delay())
            self.gate.count()
            self.probes += 1
            try:
                await self.probe()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.debug("exchange probe failed: %s: %s", type(exc).__name__, exc)
                self.dark = True
                continue
            self.alive()
            return

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
