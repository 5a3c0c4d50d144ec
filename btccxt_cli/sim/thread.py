"""``SimThread``: a :class:`Simulator` on its own event loop in a daemon thread, for synchronous
code (tests, the data core, benchmarks)::

    with SimThread(exchanges=("binance",)) as sim:
        ex = make_exchange("binance", sim_url=sim.url("binance"))   # client side, by URL only
        sim.drop("binance")                                         # a fault
        sim.truth("binance", "BTC/USDT", "1m", since, until)        # what is true

It has no copy of the simulator's API: any public method of :class:`Simulator` is reached
through ``__getattr__``, run on the simulator's loop (``run_coroutine_threadsafe``) unless
``Simulator.THREAD_SAFE`` lists it; attributes (``exchanges``, ``model`` ...) read through.

Must not import ccxt or anything from the client side of btccxt.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from btccxt_cli.sim.simulator import Simulator

logger = logging.getLogger(__name__)

__all__ = ["SimThread", "CALL_TIMEOUT_S"]

CALL_TIMEOUT_S = 10.0  # how long a marshalled call may take on the simulator's loop


class SimThread:
    """A :class:`Simulator` on its own event loop in a daemon thread, for synchronous code.

    Takes the same keyword arguments as :class:`Simulator` and answers its public methods (see
    the module docstring). Every method is thread-safe.
    """

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs = kwargs
        self.sim: Simulator | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout: float = 15.0) -> SimThread:
        """Start the thread; return once every port is bound (raise what startup raised)."""
        if self._thread is not None:
            raise RuntimeError("SimThread already started")
        self.sim = Simulator(**self._kwargs)  # validate arguments in the caller's thread
        self._thread = threading.Thread(target=self._main, name="btccxt-sim", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the simulator did not start in time")
        if self._error is not None:
            self._thread.join(timeout)
            raise self._error
        return self

    def _main(self) -> None:
        try:
            asyncio.run(self._amain())
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()

    async def _amain(self) -> None:
        assert self.sim is not None
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        try:
            await self.sim.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stopped.wait()
        finally:
            await self.sim.stop()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the simulator and join the thread (idempotent)."""
        if self._thread is None:
            return
        if self._loop is not None and self._stopped is not None and self._thread.is_alive():
            try:
                self._loop.call_soon_threadsafe(self._stopped.set)
            except RuntimeError:  # loop already closed
                pass
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.warning("simulator thread did not stop within %.1f s", timeout)
        self._thread = None

    def __enter__(self) -> SimThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ the simulator's API
    def _sim(self) -> Simulator:
        if self.sim is None or self._loop is None:
            raise RuntimeError("SimThread is not started")
        return self.sim

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Run ``Simulator.<name>(*args, **kwargs)`` on the simulator's loop; return its result."""
        sim = self._sim()
        assert self._loop is not None
        fn = getattr(sim, name)

        async def run() -> Any:
            return fn(*args, **kwargs)

        fut: Future = asyncio.run_coroutine_threadsafe(run(), self._loop)
        return fut.result(timeout=CALL_TIMEOUT_S)

    def __getattr__(self, name: str) -> Any:
        # only reached for names SimThread itself lacks: the simulator's public API
        if name.startswith("_"):
            raise AttributeError(name)
        sim = self._sim()
        value = getattr(sim, name)
        if not callable(value) or name in Simulator.THREAD_SAFE:
            return value
        marshalled: Callable[..., Any] = functools.partial(self.call, name)
        return functools.update_wrapper(marshalled, value)
