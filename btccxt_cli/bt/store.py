"""CCXTStore: owns the exchange clients, one event-loop thread, and every feed's series.

Not a singleton: two stores are two sets of clients. ``stop()`` of one feed detaches only
that feed; the store releases its loop thread and sockets when the last feed leaves or
when ``stop()`` is called.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from btccxt_cli.bt.exclock import CLOCK_RESOLUTION_MS, ExchangeClock
from btccxt_cli.clock import SYSTEM_CLOCK, Clock
from btccxt_cli.errors import DependencyError
from btccxt_cli.exchange.errors import map_ccxt_error
from btccxt_cli.exchange.retry import Backoff
from btccxt_cli.model import FeedState, FeedStatus
from btccxt_cli.sources.base import Pipe, RestGate, Series, SeriesParams
from btccxt_cli.sources.loop import LoopThread
from btccxt_cli.sources.rest import RestSchedule, SyncRestDriver, rest_keeper

__all__ = ["CCXTStore", "FeedHandle"]

logger = logging.getLogger(__name__)

# exchanges that report the request weight used in the current minute, and their limits
_WEIGHT_HEADERS = {"binance": "X-MBX-USED-WEIGHT-1M"}
#: candles ccxt.pro keeps per watched symbol (its ``OHLCVLimit``, unless the config sets it)
WS_CANDLES_KEPT = 20
_WEIGHT_LIMITS = {"binance": 6000}


class FeedHandle:
    """What the store gives a feed: its series (status, pipe) and, in rest mode, the driver."""

    def __init__(self, series: Series, driver: SyncRestDriver | None = None) -> None:
        self.series = series
        self.driver = driver
        self.task: Any = None  # concurrent future of the threaded-mode keeper


class CCXTStore(ExchangeClock):
    """A ccxt exchange account for backtrader feeds and brokers.

    Args:
        exchange: ccxt exchange id (``"binance"``, ``"okx"`` ...).
        currency: the account currency (used by the broker for cash and value).
        config: passed to the ccxt constructor (``apiKey``, ``secret``, ``password``,
            ``options`` ...). Secrets are never logged.
        sandbox: use the exchange's test environment (``set_sandbox_mode``).
        sim_url: base URL of a btccxt simulator (``btccxt sim``); every exchange URL is
            rewritten to it, so nothing reaches the internet.
        retries: attempts for start-up calls (markets, time) before giving up.
        debug: log every message and decision at DEBUG level.
        clock: time source (tests inject a manual clock).
        weight_limit: request weight the exchange allows per minute, where it reports usage
            (binance: 6000); REST pauses at 90 % of it. None: the exchange's published limit.
        cache: a local OHLCV cache (``OhlcvCache``, ``cache.writer.LiveCache`` or a path to
            its SQLite file): history is read from it first and only what is missing is
            fetched; every bar delivered is written back by a writer thread (never on the
            event loop; a damaged or full file warns once and the run goes on without it).
            Simulator bars are kept apart (``binance@sim:seed-1``). None: no cache.
        rate_budget: ``redis://...``: every REST call of this store's clients draws from the
            token bucket shared by the processes on this IP (``rate_limit.shared``, hub/budget.py).
        hub_url: ``redis://...`` of a ``btccxt hub``: every feed reads its bars from the hub's
            streams (``feed.mode: hub``, docs/hub.md) and no market-data connection to the
            exchange is opened. ``hub_namespace``: the hub's key namespace (the exchange id).
        clock_refresh: seconds between readings of the exchange clock (``fetch_time``) after
            the first; 0: read it once. A local clock that steps or drifts would otherwise
            make REST take a forming bar for a closed one, or hold closed bars back.

    The exchange clock estimate is conservative: built on the lowest offset a reading allows
    (the round trip, and the resolution of the exchange's clock: kraken reads whole seconds),
    so it is never ahead of the exchange and a REST row is never taken as final before its
    end. The same estimate signs private requests (ccxt ``options.timeDifference``).
    """

    def __init__(self, exchange: str, currency: str | None = None, config: dict | None = None,
                 sandbox: bool = False, sim_url: str | None = None, retries: int = 5,
                 debug: bool = False, clock: Clock = SYSTEM_CLOCK, weight_limit: int | None = None,
                 cache: Any = None, clock_refresh: float = 600.0, hub_url: str | None = None,
                 hub_namespace: str | None = None, rate_budget: str | None = None,
                 **kwargs: Any) -> None:
        self.exchange_id = exchange
        # feed.mode hub: bars come from a `btccxt hub` over Redis (hub/reader.py), never from
        # the exchange; the namespace defaults to the exchange id
        self.hub_url = hub_url
        self.hub_namespace = hub_namespace or exchange
        self._hub_reader: Any = None
        self.rate_budget = rate_budget  # rate_limit.shared: REST drawn from a Redis token bucket
        self.currency = currency
        self.config = dict(config or {})
        self.config.update(kwargs.pop("ccxt_config", {}) or {})
        if kwargs:
            raise TypeError(f"CCXTStore got unknown arguments: {', '.join(sorted(kwargs))}")
        self.sandbox = sandbox
        self.sim_url = sim_url
        self.retries = max(1, retries)
        self.debug = debug
        self.clock = clock
        self.gate = RestGate(clock, weight_limit=weight_limit or _WEIGHT_LIMITS.get(exchange),
                             weight_header=_WEIGHT_HEADERS.get(exchange))
        self._lock = threading.RLock()
        self._sync_ex: Any = None
        self._async_ex: Any = None
        self._async_tapped = False
        self._async_lock: Any = None
        self._hub: Any = None
        self._loop: LoopThread | None = None
        self._offset_ms: int | None = None  # exchange clock minus ours, conservative
        self._offset_at: float | None = None  # clock.monotonic() of the last reading
        self.clock_resolution_ms = CLOCK_RESOLUTION_MS.get(exchange, 1)
        self.clock_refresh = max(0.0, float(clock_refresh))
        self._clock_task: Any = None
        self._handles: list[FeedHandle] = []
        self._queued = [0]  # events in all this store's pipes (sources.pipe.Pipe.get give_way)
        self._notifs: list[Any] = []
        self._broker: Any = None
        self._stop_hooks: list[Any] = []  # called first by stop() (the live broker's)
        self._register_secrets()
        self.cache_key = exchange  # the cache's name for this price source (cache.source)
        if cache is not None:
            from btccxt_cli.cache.source import cache_source

            self.cache_key = cache_source(exchange, sim_url)
        if cache is not None:
            from btccxt_cli.cache.writer import live_cache

            cache = live_cache(cache)  # writes off the event loop; a broken file warns once
        self.cache = cache

    def __repr__(self) -> str:  # never show config (it holds secrets)
        return f"CCXTStore(exchange={self.exchange_id!r}, sim_url={self.sim_url!r})"

    def _register_secrets(self) -> None:
        from btccxt_cli.log import register_secret

        for k in ("apiKey", "secret", "password", "uid", "privateKey"):
            register_secret(self.config.get(k))

    # ------------------------------------------------------------ backtrader store protocol
    def getdata(self, *args: Any, **kwargs: Any) -> Any:
        """A ``CCXTFeed`` on this store (same parameters as ``CCXTFeed``)."""
        from btccxt_cli.bt.feed import CCXTFeed

        return CCXTFeed(*args, store=self, **kwargs)

    def getbroker(self, *args: Any, live: bool = False, **kwargs: Any) -> Any:
        """The broker for this account: paper (backtrader's ``BackBroker``) by default.

        ``live=True`` returns a ``CCXTBroker`` placing real orders with this store's keys
        (keyword arguments are its params: ``db_path``, ``limits``, ``poll_interval`` ...).
        """
        is_live = type(self._broker).__name__ == "CCXTBroker"
        if self._broker is None or is_live != live:
            if live:
                from btccxt_cli.bt.broker import CCXTBroker

                self._broker = CCXTBroker(store=self, **kwargs)
            else:
                import backtrader as bt

                self._broker = bt.brokers.BackBroker(*args, **kwargs)
        return self._broker

    def run_async(self, coro: Any) -> Any:
        """Run a coroutine on this store's loop thread; returns a ``concurrent.futures.Future``."""
        return self._loop_thread().submit(coro)

    def start(self, data: Any = None, broker: Any = None) -> None:
        """Cerebro calls this for stores added with ``addstore``; resources start lazily."""

    def put_notification(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self._notifs.append((msg, args, kwargs))

    def get_notifications(self) -> list[Any]:
        out, self._notifs = self._notifs, []
        return out

    # ------------------------------------------------------------ exchanges and clock
    def _make(self, kind: str) -> Any:
        from btccxt_cli.exchange.factory import make_exchange

        cfg = dict(self.config)
        ex = make_exchange(self.exchange_id, kind=kind, config=cfg, sim_url=self.sim_url,
                           sandbox=self.sandbox)
        if self.rate_budget:  # every REST call of this store from the IP's shared budget
            from btccxt_cli.hub.budget import install_budget

            install_budget(ex, self.rate_budget)
        return ex

    def sync_exchange(self) -> Any:
        """The blocking ccxt client (rest mode), with markets loaded and the clock measured."""
        with self._lock:
            if self._sync_ex is None:
                ex = self._make("sync")
                self._retry_sync(ex.load_markets, "load markets")
                self._sync_ex = ex
            if self._offset_ms is None:
                self._set_offset(self._measure_offset_sync(self._sync_ex))
            else:
                self._sign_with_offset()
            return self._sync_ex

    def _retry_sync(self, fn: Any, what: str) -> Any:
        backoff = Backoff(0.5, 5.0, clock=self.clock)
        for attempt in range(self.retries):
            try:
                return fn()
            except Exception as exc:
                from btccxt_cli.exchange.errors import is_temporary

                if not is_temporary(exc) or attempt == self.retries - 1:
                    raise map_ccxt_error(exc, exchange=self._sync_ex, what=what) from exc
                delay = backoff.failure()
                logger.warning("%s: %s failed (%s); retrying in %.1f s", self.exchange_id, what, exc, delay)
                threading.Event().wait(delay)
        return None

    async def async_exchange(self) -> Any:
        """The asyncio client (ccxt.pro where available), markets loaded; loop thread only."""
        import asyncio

        if self._async_lock is None:
            self._async_lock = asyncio.Lock()
        async with self._async_lock:
            return await self._async_exchange()

    async def _async_exchange(self) -> Any:
        if self._async_ex is None:
            from btccxt_cli.exchange.taps import has_tap, tapped_class

            try:
                ex = self._make("pro")
                if has_tap(self.exchange_id):
                    ex.__class__ = tapped_class(self.exchange_id, type(ex))
                    self._async_tapped = True
            except Exception as exc:  # no ccxt.pro support: plain async REST still works
                logger.info("%s: no ccxt.pro client (%s); using REST", self.exchange_id, exc)
                ex = self._make("async")
            if "OHLCVLimit" not in (self.config.get("options") or {}):
                # ccxt.pro keeps this many candles per watched symbol (default 1,000); the
                # feeds keep their own bars, so with 1,000 symbols ccxt's copies alone would
                # grow the process by ~250 MB over a long run
                ex.options["OHLCVLimit"] = WS_CANDLES_KEPT
            self._async_ex = ex
        ex = self._async_ex
        if not ex.markets:
            await self._retry_async(ex.load_markets, "load markets")
        if self._offset_ms is None:
            t0 = self.clock.time_ms()
            server = await self._retry_async(ex.fetch_time, "read the exchange clock") if ex.has.get("fetchTime") else None
            self._set_offset(self._offset_from(server, t0, self.clock.time_ms()))
        else:
            self._sign_with_offset()
        if self._clock_task is None and self.clock_refresh > 0 and ex.has.get("fetchTime"):
            import asyncio

            self._clock_task = asyncio.ensure_future(self._clock_keeper())
        return ex

    async def _retry_async(self, fn: Any, what: str) -> Any:
        import asyncio

        from btccxt_cli.exchange.errors import is_temporary

        backoff = Backoff(0.5, 5.0, clock=self.clock)
        for attempt in range(self.retries):
            try:
                return await fn()
            except Exception as exc:
                if not is_temporary(exc) or attempt == self.retries - 1:
                    raise map_ccxt_error(exc, exchange=self._async_ex, what=what) from exc
                delay = backoff.failure()
                logger.warning("%s: %s failed (%s); retrying in %.1f s", self.exchange_id, what, exc, delay)
                await asyncio.sleep(delay)
        return None

    def _loop_thread(self) -> LoopThread:
        with self._lock:
            if self._loop is None or not self._loop.running:
                self._loop = LoopThread(name=f"btccxt-{self.exchange_id}")
                self._loop.start()
            return self._loop

    # ------------------------------------------------------------ feeds
    def attach(self, params: SeriesParams, *, name: str | None = None) -> FeedHandle:
        """Create the series for a feed and start its source in the requested mode."""
        if params.mode == "websocket":
            _require_pro()
        flagged = False
        if params.mode == "websocket":
            from btccxt_cli.exchange.taps import has_tap

            flagged = has_tap(self.exchange_id)
        hub = params.mode == "hub"
        if hub and not self.hub_url:
            raise ValueError("feed mode hub needs CCXTStore(hub_url='redis://...')")
        series = Series(params, exchange_now_ms=self.exchange_now_ms, clock=self.clock,
                        flagged=flagged, pipe=Pipe(queued=self._queued), name=name or params.symbol,
                        cache=None if hub else self.cache, cache_key=self.cache_key,
                        observe_exchange_ms=self.observe_exchange_ms)
        handle = FeedHandle(series)
        with self._lock:
            self._handles.append(handle)
        if hub:
            handle.task = self._loop_thread().submit(self._start_hub(handle))
        elif params.mode == "rest":
            ex = self.sync_exchange()
            series.begin()
            handle.driver = SyncRestDriver(series, ex, self.gate, self.clock,
                                           clock_check=self.refresh_clock_sync)
        else:
            loop = self._loop_thread()
            handle.task = loop.submit(self._start_async(handle))
        return handle

    async def _start_async(self, handle: FeedHandle) -> None:
        import asyncio

        s = handle.series
        try:
            ex = await self.async_exchange()
        except Exception as exc:
            s.note(error=str(exc))
            s.set_state(FeedState.DISCONNECTED, str(exc))
            s.finish(f"could not start: {exc}")
            logger.error("%s: %s", s.name, exc)
            return
        s.begin()
        if s.p.mode == "websocket" and hasattr(ex, "watch_ohlcv"):
            if self._hub is None:
                from btccxt_cli.sources.ws import WsHub

                self._hub = WsHub(ex, tapped=self._async_tapped, gate=self.gate, clock=self.clock)
            self._hub.add(s)
            return
        if s.p.mode == "websocket":
            s.log.warning("%s: %s has no WebSocket OHLCV in ccxt.pro; polling REST instead",
                          s.name, self.exchange_id)
        sched = RestSchedule(s, self.gate, self.clock, grace_s=s.p.settle_s, polling=True)
        s.note(transport="rest")
        await rest_keeper(sched, ex, asyncio.Event())

    async def _start_hub(self, handle: FeedHandle) -> None:
        """(loop) Feed this series from the hub's stream (hub/reader.py)."""
        if self._hub_reader is None:
            from btccxt_cli.hub.reader import HubReader

            self._hub_reader = HubReader(self.hub_url, self.hub_namespace, cache=self.cache)
        self._hub_reader.add(handle.series)

    def detach(self, handle: FeedHandle) -> None:
        """Stop one feed's source; the store closes its resources after the last one."""
        s = handle.series
        s.phase = s.OVER
        s.pipe.close()
        with self._lock:
            if handle in self._handles:
                self._handles.remove(handle)
            last = not self._handles
        if self._loop is not None and self._loop.running:
            for src in (self._hub, self._hub_reader):
                if src is None:
                    continue
                try:
                    self._loop.call(src.remove(s), timeout=5)
                except Exception:
                    logger.debug("detaching %s", s.name, exc_info=True)
            if handle.task is not None:
                handle.task.cancel()
        if last:
            self.stop()

    def on_stop(self, fn: Any) -> None:
        """Call ``fn()`` first when this store stops, while its loop still runs: the live
        broker stops there when the strategy raised and cerebro never stopped it."""
        self._stop_hooks.append(fn)

    def stop(self) -> None:
        """Close every socket, client and thread of this store."""
        hooks, self._stop_hooks = self._stop_hooks, []
        for fn in hooks:
            try:
                fn()
            except Exception:
                logger.exception("stopping %r with the store failed", fn)
        with self._lock:
            handles, self._handles = list(self._handles), []
            loop, self._loop = self._loop, None
            aex, self._async_ex, self._hub = self._async_ex, None, None
            reader, self._hub_reader = self._hub_reader, None
            self._clock_task = None
            self._async_lock = None
        for h in handles:
            h.series.phase = h.series.OVER
            h.series.pipe.close()
        if loop is not None and reader is not None:
            try:
                loop.call(reader.close(), timeout=5)
            except Exception:
                logger.debug("closing the hub reader", exc_info=True)
        if loop is not None:
            loop.stop(cleanup=_close_async(aex) if aex is not None else None)
        if self.cache is not None:
            from btccxt_cli.cache.writer import LiveCache

            if isinstance(self.cache, LiveCache):
                self.cache.close()  # writes what is queued (bounded wait); reopens on reuse
        if self._sync_ex is not None:
            try:
                session = getattr(self._sync_ex, "session", None)
                if session is not None:
                    session.close()
            except Exception:
                logger.debug("closing the sync session", exc_info=True)

    # ------------------------------------------------------------ observability
    def status(self) -> list[FeedStatus]:
        """A thread-safe copy of every attached feed's status."""
        with self._lock:
            handles = list(self._handles)
        return [h.series.status() for h in handles]

    @property
    def rest_calls(self) -> int:
        return self.gate.calls


async def _close_async(ex: Any) -> None:
    try:
        await ex.close()
    except Exception:
        logger.debug("closing the async exchange", exc_info=True)


def _require_pro() -> None:
    try:
        import ccxt.pro  # noqa: F401
    except ImportError as exc:  # pragma: no cover - ccxt >= 2 always ships ccxt.pro
        raise DependencyError(
            "WebSocket mode needs ccxt.pro, which ships inside ccxt since v2",
            hint="run: pip install -U ccxt (the PyPI package 'ccxtpro' is an old placeholder)",
        ) from exc
