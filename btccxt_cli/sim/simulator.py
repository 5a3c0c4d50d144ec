"""The multi-exchange facade: ``Simulator`` runs one ``ExchangeServer`` per exchange inside an
event loop you own (``await sim.start()``), and holds the one copy of the control API: truth,
stats, faults, orders and balances by exchange id. ``app.SimThread`` reaches the same methods
from other threads; ``control.py`` serves them as JSON under ``/_sim/``.

Must not import ccxt or anything from the client side of btccxt.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from btccxt_cli.clock import SYSTEM_CLOCK, Clock
from btccxt_cli.sim.accounts import DEFAULT_KEY, SimKey
from btccxt_cli.sim.control import control_routes
from btccxt_cli.sim.faults import FAULT_NAMES, MAX_CLOCK_JUMP_S
from btccxt_cli.sim.market import Candle, MarketModel
from btccxt_cli.sim.server import ExchangeServer
from btccxt_cli.sim.venues import VENUES

__all__ = ["Simulator"]


class Simulator:
    """Simulated exchanges on 127.0.0.1, one port each; run inside an asyncio loop.

    Args:
        exchanges: exchange ids to simulate (``"binance"``, ``"okx"``).
        symbols: per exchange, the unified ccxt symbols to list (default: the venue's list).
        seed: seed of the market model; the same seed gives the same prices.
        clock: where "now" comes from (``ManualClock`` in deterministic tests).
        clock_offset_ms: exchange clock skew; the exchange's now = clock + offset.
        push_interval_ms: push period of forming candles (default ``min(tf/4, 2000)``).
        host: address to bind (loopback only; anything else is refused).
        ports: fixed port per exchange (default 0: a free port).
        ws_ping_interval_s: protocol ping period of venues whose server pings (binance).
        weight_limit: request weight allowed per rolling minute and exchange (binance-style
            429 past it, 418 ban for clients that keep sending); None: unlimited.
        api_keys: the API keys the private endpoints accept (default: ``accounts.DEFAULT_KEY``);
            each key has its own account on every exchange.
        balances: starting balances of every account (default ``accounts.DEFAULT_BALANCES``).
        liquidity: multiple of each second's 1s-candle volume resting orders can fill per second.
        check_timestamps: refuse signed requests whose timestamp is off the exchange clock
            (binance ``recvWindow``, okx 30 s), as the exchanges do.
        funding_interval_s: swaps' funding period (8 h as on the exchanges; shorter in tests).
        ws_limits: per exchange, WebSocket limits overriding the exchange's documented ones
            (``venues/ws_limits.py``: ``streams_per_connection``, ``messages_per_second``,
            ``args_per_request``, ``request_bytes``, ``subscribes_per_hour`` ...; 0 turns
            one off).
    """

    #: methods that read immutable or locked data: ``SimThread`` calls them from the caller's
    #: thread; every other public method runs on the simulator's loop
    THREAD_SAFE: ClassVar[frozenset[str]] = frozenset(
        {"url", "symbols", "now_ms", "truth", "close_sent_ns"})

    def __init__(self, exchanges: Iterable[str] = ("binance", "okx"),
                 symbols: dict[str, list[str]] | None = None, seed: int = 1,
                 clock: Clock = SYSTEM_CLOCK, clock_offset_ms: int = 0,
                 push_interval_ms: int | None = None, host: str = "127.0.0.1",
                 ports: dict[str, int] | None = None, ws_ping_interval_s: float = 20.0,
                 weight_limit: int | None = None, api_keys: Iterable[SimKey] | None = None,
                 balances: dict[str, float] | None = None, liquidity: float = 1.0,
                 check_timestamps: bool = True, funding_interval_s: float = 8 * 3600,
                 ws_limits: dict[str, dict[str, int]] | None = None) -> None:
        exchanges = tuple(exchanges)
        if not exchanges:
            raise ValueError("simulate at least one exchange")
        for ex in exchanges:
            if ex not in VENUES:
                raise ValueError(f"exchange {ex!r} is not simulated (available: {sorted(VENUES)})")
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"the simulator binds loopback only, not {host!r}")
        if push_interval_ms is not None and push_interval_ms <= 0:
            raise ValueError(f"push_interval_ms must be > 0, not {push_interval_ms}")
        unknown = set(symbols or {}) - set(exchanges)
        if unknown:
            raise ValueError(f"symbols given for exchanges not simulated: {sorted(unknown)}")
        self.host = host
        self.seed = seed
        self.clock = clock
        self.clock_offset_ms = int(clock_offset_ms)
        self.push_interval_ms = push_interval_ms
        self.ws_ping_interval_s = ws_ping_interval_s
        self.weight_limit = weight_limit
        self.api_keys: tuple[SimKey, ...] = tuple(api_keys) if api_keys is not None else (DEFAULT_KEY,)
        self.start_balances = dict(balances) if balances is not None else None
        self.liquidity = float(liquidity)
        self.check_timestamps = bool(check_timestamps)
        if funding_interval_s < 1:
            raise ValueError(f"funding_interval_s must be >= 1, not {funding_interval_s}")
        self.funding_interval_s = float(funding_interval_s)
        # WebSocket limits lowered per exchange (venues/ws_limits.py), e.g. for a cheap test
        self.ws_limits = {ex: dict(v) for ex, v in (ws_limits or {}).items()}
        self.model = MarketModel(seed)
        self._servers: dict[str, ExchangeServer] = {
            ex: ExchangeServer(self, ex, (symbols or {}).get(ex), (ports or {}).get(ex, 0))
            for ex in exchanges
        }
        self._started = False

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Bind every exchange's port and start pushing; returns once all listen."""
        try:
            for server in self._servers.values():
                await server.start(self.host, control_routes(self, server))
        except BaseException:
            await self.stop()
            raise
        self._started = True

    async def stop(self) -> None:
        """Close every socket, task and listener."""
        for server in self._servers.values():
            await server.stop()
        self._started = False

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ introspection
    @property
    def exchanges(self) -> tuple[str, ...]:
        return tuple(self._servers)

    def server(self, exchange: str) -> ExchangeServer:
        try:
            return self._servers[exchange]
        except KeyError:
            raise KeyError(f"{exchange!r} is not simulated here (simulated: {list(self._servers)})") from None

    def url(self, exchange: str) -> str:
        """``http://127.0.0.1:PORT`` of one exchange (REST root; WS lives on the same port)."""
        server = self.server(exchange)
        if not server.port:
            raise RuntimeError("the simulator is not started")
        return f"http://{self.host}:{server.port}"

    def symbols(self, exchange: str) -> list[str]:
        return list(self.server(exchange).venue.symbols)

    def now_ms(self) -> int:
        """The simulated exchanges' clock (local clock + ``clock_offset_ms``)."""
        return self.clock.time_ms() + self.clock_offset_ms

    # ------------------------------------------------------------------ truth & stats
    def truth(self, exchange: str, symbol: str, timeframe: str, since_ms: int,
              until_ms: int) -> list[Candle]:
        """Closed bars of ``symbol`` whose open lies in ``[since_ms, until_ms)``, oldest first."""
        server = self.server(exchange)
        if symbol not in server.venue.symbols:
            raise ValueError(f"{symbol!r} is not listed on simulated {exchange}")
        grid = server.grid(timeframe)
        if until_ms <= since_ms:
            return []
        return server.bars(symbol, grid, start=since_ms, end=until_ms - 1, limit=1 << 62,
                           from_start=True, closed_only=True)

    def stats(self, exchange: str) -> dict[str, Any]:
        """Request and socket counters, current subscriptions and faults of one exchange."""
        return self.server(exchange).stats_dict()

    def reset_stats(self, exchange: str) -> None:
        self.server(exchange).stats.reset()

    def close_sent_ns(self, exchange: str, symbol: str, timeframe: str, open_ms: int) -> int | None:
        """``time.perf_counter_ns()`` taken just before the first send of the bar's final update."""
        server = self.server(exchange)
        return server.close_sent_ns(symbol, server.grid(timeframe).nominal_ms, int(open_ms))

    # ------------------------------------------------------------------ faults
    def drop(self, exchange: str, mode: str = "close", conn: str = "all") -> int:
        """Drop sockets: ``close`` sends close code 1001, ``reset`` aborts the TCP connection."""
        return self.server(exchange).drop(mode, conn)

    def outage(self, exchange: str, seconds: float, ws: bool = True, rest: bool = True) -> None:
        """For ``seconds``: refuse WS upgrades and/or REST with 503; open sockets drop now."""
        server = self.server(exchange)
        server.faults.set_outage(self.clock.monotonic(), seconds, ws, rest)
        if ws and server.conns:
            server.drop("close")

    def stall(self, exchange: str, seconds: float) -> None:
        """For ``seconds``: sockets stay open and pings are answered, but nothing is pushed."""
        self.server(exchange).faults.set_stall(self.clock.monotonic(), seconds)

    def duplicate(self, exchange: str, on: bool = True) -> None:
        """Send every candle update twice."""
        self.server(exchange).faults.duplicate = bool(on)

    def reorder(self, exchange: str, on: bool = True) -> None:
        """Send each bar's final after the next bar's first update, and swap adjacent partials."""
        self.server(exchange).faults.reorder = bool(on)

    def delay_pushes(self, exchange: str, ms: float) -> None:
        """Hold every push back by ``ms`` milliseconds (0 = off)."""
        self.server(exchange).faults.set_push_delay(ms)

    def rest_errors(self, exchange: str, status: int = 429, count: int = 1,
                    retry_after: float | None = 1.0) -> None:
        """Answer the next ``count`` REST requests with ``status`` in the venue's error format."""
        self.server(exchange).faults.set_rest_errors(status, count, retry_after)

    def rest_delay(self, exchange: str, ms: float) -> None:
        """Answer REST requests ``ms`` milliseconds late (0 = off)."""
        self.server(exchange).faults.set_rest_delay(ms)

    def drop_subscription(self, exchange: str, symbol: str) -> int:
        """Silently forget every stream of ``symbol`` server-side; returns how many."""
        return self.server(exchange).drop_subscription(symbol)

    def clear_faults(self, exchange: str) -> None:
        """Back to normal (open sockets stay open)."""
        self.server(exchange).faults.clear()

    def rest_hole(self, exchange: str, symbol: str = "", start_ms: int = 0, end_ms: int = 0) -> None:
        """REST answers lack ``symbol``'s bars opening in ``[start_ms, end_ms]`` (all symbols
        when ``symbol`` is empty), as on an exchange that has none there; adds to earlier holes."""
        self.server(exchange).faults.add_rest_hole(symbol, start_ms, end_ms)

    def order_ack_fault(self, exchange: str, mode: str = "delay", count: int = 1,
                        ms: float = 30_000) -> None:
        """Execute the next ``count`` orders, then delay the answer ``ms`` (``delay``), reset
        the connection (``reset``) or answer HTTP 500 (``500``)."""
        self.server(exchange).faults.set_ack_fault(mode, count, ms)

    def lookup_lag(self, exchange: str, ms: float = 2000) -> None:
        """For ``ms`` after each order's create, lookups of that order answer "no such order"
        (binance -2013, okx 51603), as a lagging read replica does; 0 turns it off."""
        self.server(exchange).faults.set_lookup_lag(ms)

    def clock_jump(self, exchange: str, seconds: float) -> int:
        """Move the exchanges' clock ``seconds`` ahead at once, as if the client had been away
        (every exchange of this simulator: they share one market). The price path, bars,
        funding settlements and liquidations of the seconds skipped happen as they would have;
        a running client sees the gap. There is no way back (``clear_faults`` keeps it).
        Returns the exchanges' new time (ms)."""
        self.server(exchange)  # an exchange of this simulator
        try:
            s = float(seconds)
        except (TypeError, ValueError):
            raise ValueError(f"seconds must be a number, not {seconds!r}") from None
        if not 0 < s <= MAX_CLOCK_JUMP_S:
            raise ValueError(f"seconds must be > 0 and at most {MAX_CLOCK_JUMP_S} (a week), "
                             f"not {seconds!r}")
        self.clock_offset_ms += int(round(s * 1000))
        return self.now_ms()

    def orders(self, exchange: str, key: str | None = None) -> list[dict[str, Any]]:
        """Every order the exchange holds (of one API key, or all), oldest first."""
        server = self.server(exchange)
        rows = server.engine.state(server.now_ms())["orders"]
        return [r for r in rows if key is None or r["key"] == key]

    def positions(self, exchange: str, key: str | None = None) -> list[dict[str, Any]]:
        """Every open swap position (of one API key, or all): side, qty (signed, base units),
        entry, mark, upnl, margin, maint, leverage, mode, realised, fees, funding, liq_price."""
        server = self.server(exchange)
        rows = server.engine.state(server.now_ms())["positions"]
        return [r for r in rows if key is None or r["key"] == key]

    def balances(self, exchange: str, key: str = DEFAULT_KEY.key) -> dict[str, dict[str, float]]:
        """``{asset: {"free": x, "locked": y}}`` of one account."""
        server = self.server(exchange)
        return server.engine.state(server.now_ms())["balances"][key]

    def fault(self, exchange: str, name: str, **kwargs: Any) -> Any:
        """Apply fault ``name`` with keyword arguments (what the control API calls)."""
        if name not in FAULT_NAMES:
            raise ValueError(f"unknown fault {name!r} (known: {', '.join(FAULT_NAMES)})")
        return getattr(self, name)(exchange, **kwargs)
