"""What the simulator's layers share, below the venues: JSON helpers, socket and stream types,
counters, and :class:`ServerAPI`, the part of an exchange server a venue may use.

Import order inside ``btccxt_cli.sim`` (each imports only from the ones before it)::

    market, grids, faults, weights, ledger, positions, matching, accounts  (pure state)
    wire            (this module)
    venues          (wire protocols; see ServerAPI)
    scheduler, sessions, server   (the generic ExchangeServer)
    control         (the /_sim control API of one server)
    app             (Simulator, SimThread)

Must not import ccxt or anything from the client side of btccxt.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from btccxt_cli.sim.market import Candle
from btccxt_cli.timeframes import BarGrid

if TYPE_CHECKING:
    from btccxt_cli.clock import Clock
    from btccxt_cli.sim.accounts import Engine, SimKey
    from btccxt_cli.sim.faults import FaultState
    from btccxt_cli.sim.market import MarketModel

try:  # orjson is ~5x faster; json is the fallback
    import orjson

    def dumps(obj: Any) -> bytes:
        """Compact JSON as UTF-8 bytes."""
        return orjson.dumps(obj)

    def loads(data: str | bytes) -> Any:
        return orjson.loads(data)

except ImportError:  # pragma: no cover - depends on the environment
    import json

    def dumps(obj: Any) -> bytes:
        """Compact JSON as UTF-8 bytes."""
        return json.dumps(obj, separators=(",", ":")).encode()

    def loads(data: str | bytes) -> Any:
        return json.loads(data)


__all__ = ["Connection", "PrivateSession", "ServerAPI", "SimSettings", "Stats", "Stream",
           "StreamKey", "dumps", "json_response", "loads", "retry_after_headers"]

#: (unified symbol, where the stream's bars open: the venue's rule for its interval)
StreamKey = tuple[str, BarGrid]


def retry_after_headers(status: int, retry_after: float | None) -> dict[str, str]:
    """``Retry-After`` in whole seconds (rounded up) on a 418/429, as the exchanges send it."""
    if retry_after is None or status not in (418, 429):
        return {}
    return {"Retry-After": str(math.ceil(retry_after))}


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response serialised with :func:`dumps`."""
    return web.Response(body=dumps(obj), status=status, content_type="application/json",
                        headers=headers)


@dataclass(eq=False)
class Connection:
    """One accepted WebSocket."""

    id: str
    ws: web.WebSocketResponse
    request: web.Request
    flavor: str
    path: str
    subs: dict[StreamKey, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(eq=False)
class PrivateSession:
    """An authenticated socket bound to one API key: it receives that account's order events.

    ``channels`` is venue data (binance: user data subscription ids; okx: the subscribed args);
    ``outbox`` keeps the encoded messages in order for the socket's writer task.
    """

    conn: Connection
    key: str
    channels: dict[str, Any] = field(default_factory=dict)
    outbox: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    writer: asyncio.Task | None = None


@dataclass(eq=False)
class Stream:
    """One (symbol, timeframe) candle stream with its subscribers and next push time."""

    key: StreamKey
    ident: Any  # venue data for encoding (binance: id/interval/name; okx: the arg dict)
    interval_ms: int
    subscribers: dict[Connection, str] = field(default_factory=dict)
    next_ms: int = 0
    held: dict[str, bytes] | None = None  # reorder fault: a partial kept back

    @property
    def symbol(self) -> str:
        return self.key[0]

    @property
    def grid(self) -> BarGrid:
        return self.key[1]

    @property
    def tf_ms(self) -> int:
        """Nominal bar length (a month's bars vary; ``grid`` has the real ones)."""
        return self.key[1].nominal_ms

    def bar_open(self, t: int) -> int:
        return self.key[1].open_of(t)


@dataclass
class Stats:
    """Counters of one exchange (``reset()`` zeroes them; open sockets stay counted)."""

    rest: Counter = field(default_factory=Counter)
    unknown_paths: Counter = field(default_factory=Counter)
    rest_errors_injected: int = 0
    ws_connections_total: int = 0
    ws_rejected: int = 0
    ws_limit_closes: int = 0  # sockets closed for breaking the exchange's WebSocket limits
    ws_limit_refusals: int = 0  # requests refused for breaking them (the socket stays open)
    subscribe_requests: int = 0
    unsubscribe_requests: int = 0
    ignored_streams: int = 0
    messages_sent: int = 0
    finals_sent: int = 0
    drops: int = 0
    private_logins: int = 0
    private_refused: int = 0
    private_events: int = 0
    private_pushes: int = 0

    def reset(self) -> None:
        fresh = Stats()
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(fresh, name))


class SimSettings(Protocol):
    """The simulator-wide settings and shared parts an exchange server and its venue read
    (``simulator.Simulator`` has them)."""

    host: str
    seed: int
    model: MarketModel
    clock: Clock
    clock_offset_ms: int
    push_interval_ms: int | None
    ws_ping_interval_s: float
    weight_limit: int | None
    api_keys: tuple[SimKey, ...]
    start_balances: dict[str, float] | None
    liquidity: float
    check_timestamps: bool
    funding_interval_s: float
    ws_limits: dict[str, dict[str, int]]


class ServerAPI(Protocol):
    """What a venue may use of its exchange server (``server.ExchangeServer`` implements it)."""

    id: str
    port: int
    sim: SimSettings
    model: MarketModel
    clock: Clock
    engine: Engine
    faults: FaultState
    stats: Stats
    conns: dict[str, Connection]
    private: dict[Connection, PrivateSession]

    def now_ms(self) -> int: ...

    def bars(self, symbol: str, grid: BarGrid, *, start: int | None, end: int | None,
             limit: int, from_start: bool, floor: int = ...,
             closed_only: bool = ...) -> list[Candle]: ...

    async def serve_ws(self, request: web.Request, flavor: str,
                       on_text: Callable[[Connection, str], Awaitable[None]],
                       on_open: Callable[[Connection], Awaitable[None]] | None = None,
                       ) -> web.StreamResponse: ...

    async def send(self, conn: Connection, data: bytes) -> bool: ...

    def subscribe(self, conn: Connection, key: StreamKey, label: str, ident: Any) -> None: ...

    def unsubscribe(self, conn: Connection, key: StreamKey) -> bool: ...

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task: ...

    def open_private(self, conn: Connection, key: str) -> PrivateSession: ...

    def close_private(self, conn: Connection) -> None: ...

    def push_private(self, session: PrivateSession, data: bytes) -> None: ...

    async def order_ack(self, request: web.Request, response: web.Response
                        ) -> web.StreamResponse: ...
