"""Binance spot: REST ``/api/v3`` and the kline WebSocket streams, as ccxt reads them.

REST (all GET, errors as ``{"code": -1121, "msg": "Invalid symbol."}`` with HTTP 400)::

    /api/v3/ping  /api/v3/time  /api/v3/exchangeInfo  /api/v3/klines  /api/v3/uiKlines
    /api/v3/ticker/24hr  /api/v3/ticker/price   ([symbol | symbols]; none: every market)
    /api/v1/ping  /api/v1/time
    /dapi/v1/exchangeInfo  /eapi/v1/exchangeInfo   (no symbols; USD-M /fapi: binance_futures.py)
    /fapi/v1/time  /dapi/v1/time  /fapi/v1/ping  /dapi/v1/ping
    /sapi/v1/capital/config/getall  /sapi/v1/margin/allPairs  /sapi/v1/margin/isolated/allPairs
        (empty lists: load_markets() asks for them when API keys are set)

A 24 h ticker (``venues/tickers.py``: the 1h bars of the last 24 h, ``lastPrice`` the matching
engine's price now, bid/ask one tick around it; ``-1121 Invalid symbol.`` for an unknown
symbol, ``-1102`` for an empty one, ``-1128`` for ``symbol`` with ``symbols``)::

    {"symbol": "BTCUSDT", "priceChange": "-622.50000000", "priceChangePercent": "-1.016",
     "weightedAvgPrice": "60814.28397714", "prevClosePrice": "61282.30000000",
     "lastPrice": "60659.80000000", "lastQty": "0.00001000", "bidPrice": "60659.70000000",
     "bidQty": "0.42371000", "askPrice": "60659.90000000", "askQty": "0.42371000",
     "openPrice": "61282.30000000", "highPrice": "61503.90000000", "lowPrice": "60265.70000000",
     "volume": "33439.84783000", "quoteVolume": "2033620402.08590293", "openTime": 1699916400000,
     "closeTime": 1700004034567, "firstId": 169991640000, "lastId": 170000286364, "count": 281867}

A kline row (strings as binance sends them, the forming candle included)::

    [1591478520000, "0.02501300", "0.02501800", "0.02500000", "0.02500000", "22.19000000",
     1591478579999, "0.55490906", 40, "10.92900000", "0.27336462", "0"]

Private: the signed REST API is in ``binance_private.py``, the user data stream (WebSocket API
``/ws-api/v3``) in ``binance_userdata.py``.

WebSocket paths: ``/ws``, ``/ws/<stream>``, ``/stream/ws``, ``/stream/ws/<n>`` send raw events;
``/stream?streams=a/b`` sends ``{"stream": name, "data": event}``. ccxt decides spot vs futures
by looking for ``/stream`` in the URL (field notes), hence the ``/stream/ws`` alias. Methods
``SUBSCRIBE``/``UNSUBSCRIBE``/``LIST_SUBSCRIPTIONS``/``SET_PROPERTY``/``GET_PROPERTY``. A push::

    {"e": "kline", "E": 1579482921215, "s": "ETHBTC", "k": {"t": 1579482900000,
     "T": 1579482959999, "s": "ETHBTC", "i": "1m", "f": 158411535, "L": 158411550,
     "o": "0.01913200", "c": "0.01913500", "h": "0.01913700", "l": "0.01913200",
     "v": "5.08400000", "n": 16, "x": false, "q": "0.09728060", "V": "3.30200000",
     "Q": "0.06318500", "B": "0"}}

Streams of other kinds (trade, depth, ticker) and klines of unknown symbols are accepted and
stay silent, as binance does; malformed stream names get ``{"error": {"code": 2, ...}}``.
"""

from __future__ import annotations

import logging
import math
import re
from typing import TYPE_CHECKING, Any

from aiohttp import web

from btccxt_cli.sim.grids import EPOCH_GRIDS, MONDAY_WEEK, UTC_MONTH
from btccxt_cli.sim.market import Candle, MarketSpec, split_symbol
from btccxt_cli.sim.venues import (
    MAJORS,
    SWAPS,
    Venue,
    binance_private,
    dumps,
    json_response,
    loads,
    retry_after_headers,
)
from btccxt_cli.sim.venues.binance_futures import UsdmFutures
from btccxt_cli.sim.venues.binance_usdm_stream import CHANNEL as USDM_CHANNEL
from btccxt_cli.sim.venues.binance_usdm_stream import UsdmUserData
from btccxt_cli.sim.venues.binance_userdata import BinanceUserData
from btccxt_cli.sim.venues.tickers import day_stats
from btccxt_cli.sim.venues.ws_limits import CLOSE_POLICY
from btccxt_cli.timeframes import BarGrid

if TYPE_CHECKING:
    from btccxt_cli.sim.accounts import OrderEvent
    from btccxt_cli.sim.wire import Connection, PrivateSession, Stream

logger = logging.getLogger(__name__)

__all__ = ["BinanceVenue"]

MAX_LIMIT = 1000
DEFAULT_LIMIT = 500
_STREAM_RE = re.compile(r"^[a-z0-9]+@[a-zA-Z0-9_@.+:-]+$")
_KLINE_RE = re.compile(r"^([a-z0-9]+)@kline_([0-9]+[smhdwM])$")

_RATE_LIMITS = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
    {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
    {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
]
_BAD_SYMBOLS = ("Illegal characters found in parameter 'symbols'; legal range is "
                "'^\\[(\"[A-Z0-9-_.]{1,20}\"(,\"[A-Z0-9-_.]{1,20}\"){0,}){0,1}\\]$'.")


def _err(code: int, msg: str, status: int = 400) -> web.Response:
    return json_response({"code": code, "msg": msg}, status=status)


def _f8(x: float) -> str:
    return f"{x:.8f}"


class BinanceVenue(Venue):
    """Binance spot (``api.binance.com`` / ``stream.binance.com``) and USD-M perpetuals
    (``fapi.binance.com``, REST only: ``binance_futures.py``)."""

    id = "binance"
    default_symbols = MAJORS + SWAPS
    # binance's weeks open on Monday 00:00 UTC, its months on the 1st (UTC); the rest on
    # multiples of their length since 1970
    grids = {**EPOCH_GRIDS, "1w": MONDAY_WEEK, "1M": UTC_MONTH}
    intervals = {tf: tf for tf in grids}  # binance spells them like ccxt
    # private API (venues/binance_private.py): fee rates and the first order id
    maker_fee = binance_private.MAKER_FEE
    taker_fee = binance_private.TAKER_FEE
    first_order_id = binance_private.FIRST_ORDER_ID
    derivatives = True  # USD-M perpetuals trade with positions (venues/binance_futures.py)
    # binance closes a socket past 1024 streams or 5 incoming messages a second (docs/data-core.md)
    ws_limits = {"streams_per_connection": 1024, "messages_per_second": 5}
    default_leverage = 20.0

    def __init__(self, server: Any, symbols: list[str] | None) -> None:
        super().__init__(server, symbols)
        spot = [s for s in self.symbols if not self.specs[s].is_swap]
        self.by_id: dict[str, str] = {self.market_id(s): s for s in spot}  # spot ids
        self._markets = [self._market_info(s) for s in spot]
        self.user_data = BinanceUserData(self)  # private stream on the WebSocket API
        self.futures = UsdmFutures(self)  # fapi: USD-M perpetuals
        self.usdm_stream = UsdmUserData(self)  # their user data stream (listen key)

    def check_symbol(self, symbol: str) -> None:
        _base, quote, settle = split_symbol(symbol)
        if settle is not None and (settle != quote or quote != "USDT"):
            raise ValueError(f"the binance simulator serves spot and USDT-margined perpetuals "
                             f"only, not {symbol!r}")

    @staticmethod
    def market_id(symbol: str) -> str:
        return symbol.partition(":")[0].replace("/", "")

    @property
    def heartbeat(self) -> float | None:
        return self.server.sim.ws_ping_interval_s

    # ------------------------------------------------------------------ routes
    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/v3/ping", self.ping),
            web.get("/api/v1/ping", self.ping),
            web.get("/fapi/v1/ping", self.ping),
            web.get("/dapi/v1/ping", self.ping),
            web.get("/api/v3/time", self.time),
            web.get("/api/v1/time", self.time),
            web.get("/fapi/v1/time", self.time),
            web.get("/dapi/v1/time", self.time),
            web.get("/api/v3/exchangeInfo", self.exchange_info),
            web.get("/dapi/v1/exchangeInfo", self.empty_exchange_info),
            web.get("/eapi/v1/exchangeInfo", self.empty_exchange_info),
            web.get("/api/v3/klines", self.klines),
            web.get("/api/v3/ticker/24hr", self.ticker_24hr),
            web.get("/api/v3/ticker/price", self.ticker_price),
            # private, asked by load_markets() only when API keys are set: no currencies
            web.get("/sapi/v1/capital/config/getall", self.empty_list),
            web.get("/sapi/v1/margin/allPairs", self.empty_list),
            web.get("/sapi/v1/margin/isolated/allPairs", self.empty_list),
            web.get("/api/v3/uiKlines", self.klines),
            web.get("/ws", self.ws_raw),
            web.get("/ws/{name}", self.ws_raw),
            web.get("/stream/ws", self.ws_raw),
            web.get("/stream/ws/{name}", self.ws_raw),
            web.get("/stream", self.ws_combined),
            *binance_private.private_routes(self),  # signed: account, orders, trades
            *self.futures.routes(),  # fapi: USD-M perpetuals
            *self.usdm_stream.routes(),  # /fapi/v1/listenKey, /private/ws
            *self.user_data.routes(),  # WebSocket API /ws-api/v3: user data stream
        ]

    def on_order_event(self, event: OrderEvent, sessions: list[PrivateSession]) -> None:
        """Order events of the sessions' account go out on the spot user data stream (WebSocket
        API) or, for perpetuals, on the USD-M one (listen key)."""
        if self.specs[event.order.symbol].is_swap:
            self.usdm_stream.on_order_event(event, sessions)
        else:
            spot = [s for s in sessions if USDM_CHANNEL not in s.channels]
            if spot:
                self.user_data.on_order_event(event, spot)

    # ------------------------------------------------------------------ errors
    def error_response(self, status: int, retry_after: float | None = None) -> web.Response:
        headers = retry_after_headers(status, retry_after)
        if status == 429:
            body = {"code": -1003, "msg": "Too many requests; current limit of IP(127.0.0.1) is 6000 "
                    "requests per minute. Please use the websocket for live updates to avoid polling "
                    "the API."}
            return json_response(body, status, headers)
        if status == 418:
            until = self.server.now_ms() + int((retry_after or 0) * 1000)
            body = {"code": -1003, "msg": f"Way too much request weight used; IP banned until {until}. "
                    "Please use the websocket for live updates to avoid bans."}
            return json_response(body, status, headers)
        if status == 500:
            return _err(-1001, "Internal error; unable to process your request. Please try again.", 500)
        if status == 502:
            return web.Response(status=502, text="<html><body><h1>502 Bad Gateway</h1></body></html>",
                                content_type="text/html")
        return web.Response(status=status, text="Service Unavailable.", content_type="text/plain")

    # ------------------------------------------------------------------ REST
    async def ping(self, request: web.Request) -> web.Response:
        return json_response({})

    async def time(self, request: web.Request) -> web.Response:
        return json_response({"serverTime": self.server.now_ms()})

    async def empty_list(self, request: web.Request) -> web.Response:
        return json_response([])

    async def empty_exchange_info(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = {"timezone": "UTC", "serverTime": self.server.now_ms(),
                                "rateLimits": _RATE_LIMITS, "exchangeFilters": [], "symbols": []}
        if request.path.startswith("/eapi/"):
            body = {"timezone": "UTC", "serverTime": self.server.now_ms(), "optionContracts": [],
                    "optionAssets": [], "optionSymbols": [], "rateLimits": _RATE_LIMITS}
        return json_response(body)

    async def exchange_info(self, request: web.Request) -> web.Response:
        markets = self._markets
        wanted: list[str] | None = None
        if "symbol" in request.query:
            wanted = [request.query["symbol"]]
        elif "symbols" in request.query:
            try:
                wanted = [str(s) for s in loads(request.query["symbols"])]
            except ValueError:
                return _err(-1100, _BAD_SYMBOLS)
        if wanted is not None:
            if any(w not in self.by_id for w in wanted):
                return _err(-1121, "Invalid symbol.")
            markets = [m for m in markets if m["symbol"] in wanted]
        return json_response({"timezone": "UTC", "serverTime": self.server.now_ms(),
                              "rateLimits": _RATE_LIMITS, "exchangeFilters": [], "symbols": markets})

    async def klines(self, request: web.Request) -> web.Response:
        q = request.query
        market_id = q.get("symbol")
        if not market_id:
            return _err(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        ids = self.futures.by_id if request.path.startswith("/fapi/") else self.by_id
        symbol = ids.get(market_id)
        if symbol is None:
            return _err(-1121, "Invalid symbol.")
        interval = q.get("interval")
        if not interval:
            return _err(-1102, "Mandatory parameter 'interval' was not sent, was empty/null, or malformed.")
        if interval not in self.intervals:
            return _err(-1120, "Invalid interval.")
        grid = self.grids[interval]
        ints: dict[str, int | None] = {}
        for name in ("startTime", "endTime", "limit"):
            raw = q.get(name)
            if raw is None or raw == "":
                ints[name] = None
                continue
            try:
                ints[name] = int(raw)
            except ValueError:
                return _err(-1100, f"Illegal characters found in parameter '{name}'; legal range is "
                            "'^[0-9]{1,20}$'.")
        limit = DEFAULT_LIMIT if ints["limit"] is None else ints["limit"]
        if limit < 1 or limit > MAX_LIMIT:
            return _err(-1130, "Data sent for parameter 'limit' is not valid.")
        start, end = ints["startTime"], ints["endTime"]
        if start is not None and end is not None and start > end:
            return _err(-1023, "Start time is greater than end time.")
        spec = self.specs[symbol]
        rows = [self._row(spec, c, grid)
                for c in self.server.bars(symbol, grid, start=start, end=end, limit=limit,
                                          from_start=start is not None)]
        return json_response(rows)

    async def ticker_24hr(self, request: web.Request) -> web.Response:
        """24 h statistics (``venues/tickers.py``): one object for ``symbol=``, a list for
        ``symbols=[...]`` or for none (every market). ``/fapi/v1/ticker/24hr`` (USD-M) has no
        bid/ask or previous close, as binance's."""
        fapi = request.path.startswith("/fapi/")
        picked = self._ticker_symbols(request, fapi)
        if isinstance(picked, web.Response):
            return picked
        symbols, single = picked
        rows = [self._ticker(s, fapi) for s in symbols]
        return json_response(rows[0] if single else rows)

    async def ticker_price(self, request: web.Request) -> web.Response:
        """The last price (the engine's price now); ``/fapi/v1/ticker/price`` adds ``time``."""
        fapi = request.path.startswith("/fapi/")
        picked = self._ticker_symbols(request, fapi)
        if isinstance(picked, web.Response):
            return picked
        symbols, single = picked
        now = self.server.now_ms()
        rows: list[dict[str, Any]] = []
        for s in symbols:
            row: dict[str, Any] = {"symbol": self.market_id(s),
                                   "price": _f8(self.server.engine.price(s, now))}
            if fapi:
                row["time"] = now
            rows.append(row)
        return json_response(rows[0] if single else rows)

    def _ticker_symbols(self, request: web.Request,
                        fapi: bool) -> tuple[list[str], bool] | web.Response:
        """The markets a ticker request names and whether it named one (``symbol=``), or
        binance's error answer."""
        q = request.query
        ids = self.futures.by_id if fapi else self.by_id
        if "symbol" in q and "symbols" in q and not fapi:
            return _err(-1128, "Combination of optional parameters invalid.")
        if "symbol" in q:
            market_id = q["symbol"]
            if not market_id:
                return _err(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, "
                            "or malformed.")
            symbol = ids.get(market_id)
            if symbol is None:
                return _err(-1121, "Invalid symbol.")
            return [symbol], True
        if "symbols" in q and not fapi:
            try:
                wanted = [str(s) for s in loads(q["symbols"])]
            except (ValueError, TypeError):
                return _err(-1100, _BAD_SYMBOLS)
            if not wanted or any(w not in ids for w in wanted):
                return _err(-1121, "Invalid symbol.")
            return [ids[w] for w in wanted], False
        return list(ids.values()), False

    def _ticker(self, symbol: str, fapi: bool) -> dict[str, Any]:
        spec = self.specs[symbol]
        st = day_stats(self, symbol)
        extras = [self._extras(spec, c) for c in st.bars]
        traded = [e for e in extras if e[1]]
        first = traded[0][4] if traded else -1
        last_id = traded[-1][5] if traded else -1
        change = st.last - st.open
        wavg = st.quote_volume / st.volume if st.volume else st.last
        row: dict[str, Any] = {
            "symbol": self.market_id(symbol), "priceChange": _f8(change),
            "priceChangePercent": f"{100.0 * change / st.open:.3f}",
            "weightedAvgPrice": _f8(wavg),
        }
        if not fapi:
            row["prevClosePrice"] = _f8(st.open)  # the last trade before the window
        row.update({"lastPrice": _f8(st.last), "lastQty": _f8(spec.lot)})
        if not fapi:
            row.update({"bidPrice": _f8(st.bid), "bidQty": _f8(st.top_size),
                        "askPrice": _f8(st.ask), "askQty": _f8(st.top_size)})
        row.update({
            "openPrice": _f8(st.open), "highPrice": _f8(st.high), "lowPrice": _f8(st.low),
            "volume": _f8(st.volume), "quoteVolume": _f8(st.quote_volume),
            "openTime": st.open_time, "closeTime": st.now, "firstId": first, "lastId": last_id,
            "count": sum(e[1] for e in extras),
        })
        return row

    # ------------------------------------------------------------------ formatting
    def _market_info(self, symbol: str) -> dict[str, Any]:
        spec = self.specs[symbol]
        tick, lot = _f8(spec.tick), _f8(spec.lot)
        return {
            "symbol": self.market_id(symbol), "status": "TRADING",
            "baseAsset": spec.base, "baseAssetPrecision": 8,
            "quoteAsset": spec.quote, "quotePrecision": 8, "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT",
                           "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"],
            "icebergAllowed": True, "ocoAllowed": True, "otoAllowed": True,
            "quoteOrderQtyMarketAllowed": True, "allowTrailingStop": True,
            "cancelReplaceAllowed": True, "amendAllowed": True,
            "isSpotTradingAllowed": True, "isMarginTradingAllowed": True,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": "1000000.00000000",
                 "tickSize": tick},
                {"filterType": "LOT_SIZE", "minQty": lot, "maxQty": "9000000.00000000", "stepSize": lot},
                {"filterType": "ICEBERG_PARTS", "limit": 10},
                {"filterType": "MARKET_LOT_SIZE", "minQty": "0.00000000", "maxQty": "100.00000000",
                 "stepSize": "0.00000000"},
                {"filterType": "TRAILING_DELTA", "minTrailingAboveDelta": 10,
                 "maxTrailingAboveDelta": 2000, "minTrailingBelowDelta": 10,
                 "maxTrailingBelowDelta": 2000},
                {"filterType": "PERCENT_PRICE_BY_SIDE", "bidMultiplierUp": "5",
                 "bidMultiplierDown": "0.2", "askMultiplierUp": "5", "askMultiplierDown": "0.2",
                 "avgPriceMins": 5},
                {"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": True,
                 "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5},
                {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
                {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
            ],
            "permissions": [], "permissionSets": [["SPOT", "MARGIN"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
        }

    @staticmethod
    def _extras(spec: MarketSpec, c: Candle) -> tuple[str, int, str, str, int, int]:
        """quote volume, trade count, taker-buy base and quote volume, first/last trade id."""
        ts, o, h, lo, cl, v = c
        lots = int(round(v * spec.lot_scale))
        n = int(math.isqrt(lots))
        taker_lots = lots // 2
        vwap = (o + h + lo + cl) / 4.0
        taker = taker_lots / spec.lot_scale
        first = ts // 10 if n else -1
        last = first + n - 1 if n else -1
        return _f8(v * vwap), n, _f8(taker), _f8(taker * vwap), first, last

    def _row(self, spec: MarketSpec, c: Candle, grid: BarGrid) -> list[Any]:
        ts, o, h, lo, cl, v = c
        q, n, tv, tq, _f, _l = self._extras(spec, c)
        return [ts, _f8(o), _f8(h), _f8(lo), _f8(cl), _f8(v), grid.close_of(ts) - 1, q, n, tv, tq,
                "0"]

    def encode(self, stream: Stream, candle: Candle, closed: bool, event_ms: int,
               flavors: set[str]) -> dict[str, bytes]:
        market_id, interval, name = stream.ident
        spec = self.specs[stream.symbol]
        ts, o, h, lo, cl, v = candle
        q, n, tv, tq, first, last = self._extras(spec, candle)
        event = {
            "e": "kline", "E": event_ms, "s": market_id,
            "k": {"t": ts, "T": stream.grid.close_of(ts) - 1, "s": market_id, "i": interval,
                  "f": first, "L": last, "o": _f8(o), "c": _f8(cl), "h": _f8(h), "l": _f8(lo),
                  "v": _f8(v), "n": n, "x": closed, "q": q, "V": tv, "Q": tq, "B": "0"},
        }
        out: dict[str, bytes] = {}
        if "raw" in flavors:
            out["raw"] = dumps(event)
        if "combined" in flavors:
            out["combined"] = dumps({"stream": name, "data": event})
        return out

    # ------------------------------------------------------------------ WebSocket
    async def ws_raw(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info.get("name")
        # /ws/<stream> subscribes at connect; ccxt's /ws/0 ("stream index") is not a stream name
        initial = [name] if name and _STREAM_RE.match(name) else []
        return await self.server.serve_ws(request, "raw", self._on_text, self._opener(initial))

    async def ws_combined(self, request: web.Request) -> web.StreamResponse:
        names = [n for n in request.query.get("streams", "").split("/") if n]
        return await self.server.serve_ws(request, "combined", self._on_text, self._opener(names))

    def _opener(self, names: list[str]) -> Any:
        async def on_open(conn: Connection) -> None:
            conn.extra["names"] = []
            for name in names:
                if _STREAM_RE.match(name):
                    self._subscribe(conn, name)
        return on_open

    def _subscribe(self, conn: Connection, name: str) -> None:
        names: list[str] = conn.extra.setdefault("names", [])
        if name not in names:
            names.append(name)
        m = _KLINE_RE.match(name)
        symbol = self.by_id.get(m.group(1).upper()) if m else None
        if m is None or symbol is None or m.group(2) not in self.intervals:
            logger.warning("binance sim: stream %r is accepted but not simulated (nothing will be "
                           "pushed)", name)
            self.server.stats.ignored_streams += 1
            return
        interval = m.group(2)
        key = (symbol, self.grids[interval])
        self.server.subscribe(conn, key, name, ident=(self.market_id(symbol), interval, name))

    def _unsubscribe(self, conn: Connection, name: str) -> None:
        names: list[str] = conn.extra.setdefault("names", [])
        if name in names:
            names.remove(name)
        m = _KLINE_RE.match(name)
        symbol = self.by_id.get(m.group(1).upper()) if m else None
        if m and symbol and m.group(2) in self.intervals:
            self.server.unsubscribe(conn, (symbol, self.grids[m.group(2)]))

    async def _on_text(self, conn: Connection, text: str) -> None:
        try:
            msg = loads(text)
        except ValueError:
            await self._reply(conn, {"error": {"code": 3, "msg": "Invalid JSON: expected value at "
                                               "line 1 column 1"}, "id": None})
            return
        if not isinstance(msg, dict):
            await self._reply(conn, {"error": {"code": 2, "msg": "Invalid request: request must be "
                                               "an object"}, "id": None})
            return
        req_id = msg.get("id")
        method = msg.get("method")
        params = msg.get("params")
        if self.limits.too_fast(conn.extra):
            await self._close_over_limit(conn, "Too many requests")
            return
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
                await self._reply(conn, {"error": {"code": 2, "msg": "Invalid request: params must "
                                                   "be an array of stream names"}, "id": req_id})
                return
            if any(not _STREAM_RE.match(p) for p in params):
                await self._reply(conn, {"error": {"code": 2, "msg": "Invalid request: invalid "
                                                   "stream"}, "id": req_id})
                return
            held = conn.extra.setdefault("names", [])
            if method == "SUBSCRIBE" and self.limits.too_many_streams(
                    len(held), len(set(params) - set(held))):
                await self._close_over_limit(conn, "Too many streams")
                return
            for p in params:
                if method == "SUBSCRIBE":
                    self._subscribe(conn, p)
                else:
                    self._unsubscribe(conn, p)
            if method == "SUBSCRIBE":
                self.server.stats.subscribe_requests += 1
            else:
                self.server.stats.unsubscribe_requests += 1
            await self._reply(conn, {"result": None, "id": req_id})
        elif method == "LIST_SUBSCRIPTIONS":
            await self._reply(conn, {"result": list(conn.extra.get("names", [])), "id": req_id})
        elif method == "SET_PROPERTY":
            await self._reply(conn, {"result": None, "id": req_id})
        elif method == "GET_PROPERTY":
            await self._reply(conn, {"result": conn.flavor == "combined", "id": req_id})
        else:
            await self._reply(conn, {"error": {"code": 2, "msg": "Invalid request: unknown "
                                               "variant `" + str(method) + "`"}, "id": req_id})

    async def _reply(self, conn: Connection, obj: dict[str, Any]) -> None:
        await self.server.send(conn, dumps(obj))

    async def _close_over_limit(self, conn: Connection, why: str) -> None:
        """Close a socket that broke a limit (1008, policy violation), as binance does."""
        self.server.stats.ws_limit_closes += 1
        logger.info("binance sim: closing socket %s: %s", conn.id, why)
        await conn.ws.close(code=CLOSE_POLICY, message=why.encode())
