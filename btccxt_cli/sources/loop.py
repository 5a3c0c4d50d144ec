"""One asyncio event loop in one background thread (per store)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["LoopThread"]

logger = logging.getLogger(__name__)
T = TypeVar("T")


class LoopThread:
    """Runs an event loop in a daemon thread; ``submit`` schedules coroutines on it."""

    def __init__(self, name: str = "btccxt-loop") -> None:
        self.name = name
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._ready.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        self._ready.wait()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(_exception_handler)
        self.loop = loop
        asyncio.set_event_loop(loop)
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        assert self.loop is not None, "start() first"
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return self.submit(coro).result(timeout)

    def stop(self, cleanup: Coroutine[Any, Any, Any] | None = None, timeout: float = 5.0) -> None:
        """Run ``cleanup`` (e.g. closing exchanges), cancel every task, stop and join."""
        if not self.running or self.loop is None:
            if cleanup is not None:
                cleanup.close()
            return
        loop = self.loop

        async def _shutdown() -> None:
            if cleanup is not None:
                try:
                    await asyncio.wait_for(cleanup, timeout)
                except Exception:
                    logger.exception("cleanup on %s failed", self.name)
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(_shutdown(), loop).result(timeout + 2)
        except Exception:
            logger.exception("shutdown of %s failed", self.name)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None


def _exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """ccxt.pro keeps futures of its own (e.g. binance's user-data subscription) that nobody
    awaits; when their connection fails, asyncio would log "Future exception was never
    retrieved" as an error. The failure already reached us through the call we await (and is
    reported there), so such ccxt errors go to DEBUG; everything else to asyncio's default."""
    exc = context.get("exception")
    if (exc is not None and type(exc).__module__.startswith("ccxt")
            and "never retrieved" in str(context.get("message", ""))):
        logger.debug("ccxt future nobody awaited failed: %s: %s", type(exc).__name__, exc)
        return
    loop.default_exception_handler(context)
