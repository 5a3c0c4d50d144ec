"""Simulated venues: each one speaks one exchange's REST and WebSocket wire protocol.

A venue is a class that declares its facts (id, default symbols, timeframes) and implements:

==========================  ===============================================================
``grids``                   venue interval -> ``BarGrid``: where the exchange opens those bars
``routes()``                aiohttp route table: REST endpoints and WebSocket paths
``error_response(status)``  the venue's own error body for injected 429/418/5xx and outages
``encode(stream, ...)``     one candle update as the bytes each connection flavour receives
``heartbeat``               seconds between server protocol pings (``None``: the client pings)
==========================  ===============================================================

The generic parts (connections, subscriptions, the push scheduler, faults, stats) live in
``btccxt_cli.sim.server.ExchangeServer``; venues reach them through ``self.server``, typed as
``wire.ServerAPI`` (venues never import the server, the control API or the app).
Must not import ccxt or anything from the client side of btccxt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from aiohttp import web

from btccxt_cli.sim.market import Candle, MarketSpec, split_symbol
from btccxt_cli.sim.venues.ws_limits import WsLimits
from btccxt_cli.sim.wire import dumps, json_response, loads, retry_after_headers
from btccxt_cli.timeframes import BarGrid

if TYPE_CHECKING:
    from btccxt_cli.sim.wire import Connection, ServerAPI, Stream

__all__ = ["Venue", "VENUES", "MAJORS", "SWAPS", "dumps", "loads", "json_response",
           "retry_after_headers", "venue_class"]


#: the spot symbols every venue lists by default, and the swaps of the venues that have them
MAJORS: tuple[str, ...] = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "BNB/USDT", "ADA/USDT",
                           "DOGE/USDT", "LTC/USDT", "DOT/USDT", "LINK/USDT")
SWAPS: tuple[str, ...] = ("BTC/USDT:USDT", "ETH/USDT:USDT")


class Venue:
    """Base class of a simulated exchange protocol."""

    id: ClassVar[str] = ""
    default_symbols: ClassVar[tuple[str, ...]] = ()
    #: unified timeframe -> venue interval string (REST and WS), as ccxt's REST asks for it
    intervals: ClassVar[dict[str, str]] = {}
    #: venue interval (REST and WS) -> where the real exchange opens its bars
    grids: ClassVar[dict[str, BarGrid]] = {}
    #: the exchange's documented WebSocket limits (see ``ws_limits.py``); the simulator's
    #: ``ws_limits`` argument overrides them per exchange
    ws_limits: ClassVar[dict[str, int]] = {}

    def __init__(self, server: ServerAPI, symbols: list[str] | None) -> None:
        self.server = server
        overrides = (getattr(server.sim, "ws_limits", None) or {}).get(self.id)
        self.limits = WsLimits(self.ws_limits, overrides)
        self.symbols: list[str] = list(symbols) if symbols else list(self.default_symbols)
        for s in self.symbols:
            split_symbol(s)  # ValueError on garbage
            self.check_symbol(s)
        self.specs: dict[str, MarketSpec] = {s: server.model.spec(s) for s in self.symbols}

    def grid_for(self, timeframe: str) -> BarGrid:
        """Where the bars ccxt's REST reads for the unified ``timeframe`` open (KeyError: none)."""
        return self.grids[self.intervals[timeframe]]

    # ------------------------------------------------------------------ overridables
    def check_symbol(self, symbol: str) -> None:
        """Raise ``ValueError`` when this venue cannot list ``symbol``."""

    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    def error_response(self, status: int, retry_after: float | None = None) -> web.Response:
        raise NotImplementedError

    def encode(self, stream: Stream, candle: Candle, closed: bool, event_ms: int,
               flavors: set[str]) -> dict[str, bytes]:
        raise NotImplementedError

    @property
    def heartbeat(self) -> float | None:
        return None

    def conn_id(self, n: int) -> str:
        return f"{n:08x}"

    async def on_connection_closed(self, conn: Connection) -> None:
        """Hook for venue bookkeeping (nothing by default)."""


def venue_class(exchange_id: str) -> type[Venue]:
    """The venue class for ``exchange_id``; ``KeyError`` lists the ones simulated."""
    try:
        return VENUES[exchange_id]
    except KeyError:
        raise KeyError(f"exchange {exchange_id!r} is not simulated (available: {sorted(VENUES)})") from None


# The registry is filled after the base class exists (the venue modules import it).
from btccxt_cli.sim.venues.binance import BinanceVenue  # noqa: E402
from btccxt_cli.sim.venues.okx import OkxVenue  # noqa: E402

VENUES: dict[str, type[Venue]] = {BinanceVenue.id: BinanceVenue, OkxVenue.id: OkxVenue}

# bybit (v5) and kucoin (spot)
from btccxt_cli.sim.venues.bybit import BybitVenue  # noqa: E402
from btccxt_cli.sim.venues.kucoin import KucoinVenue  # noqa: E402

VENUES.update({BybitVenue.id: BybitVenue, KucoinVenue.id: KucoinVenue})

# bitget (v2: spot, linear perpetuals) and kraken (spot, WebSocket v2)
from btccxt_cli.sim.venues.bitget import BitgetVenue  # noqa: E402
from btccxt_cli.sim.venues.kraken import KrakenVenue  # noqa: E402

VENUES.update({BitgetVenue.id: BitgetVenue, KrakenVenue.id: KrakenVenue})
