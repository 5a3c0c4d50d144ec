"""Bitget v2 (classic account): public REST and the candle WebSocket channels, as ccxt reads them.

REST (GET; every answer is ``{"code": "00000", "msg": "success", "requestTime": ..., "data":
...}``, errors as ``{"code": "40034", "msg": "Parameter NOPEUSDT does not exist", "requestTime":
..., "data": null}`` with HTTP 400)::

    /api/v2/public/time
    /api/v2/spot/public/symbols  /api/v2/spot/public/coins  /api/v2/margin/currencies
    /api/v2/mix/market/contracts?productType=USDT-FUTURES|USDC-FUTURES|COIN-FUTURES|S...
    /api/v2/spot/market/candles   /api/v2/spot/market/history-candles
    /api/v2/mix/market/candles    /api/v2/mix/market/history-candles
    /api/v3/account/settings     40084 "classic account" (ccxt asks when API keys are set)

Candles are oldest first, the forming one included. ``startTime`` is inclusive and ``endTime``
exclusive; when the window holds more than ``limit`` bars the newest ``limit`` come back (bitget
"aligns from endTime"). ``candles`` serve ``limit`` <= 1000 (default 100) and only recent bars
(30 days of minute bars, 60 of 1h ... as ccxt's ``maxRecentDaysPerTimeframe``); the
``history-candles`` serve any age, ``limit`` <= 200, from ``endTime`` (required) backwards.
Spot rows ``[ts, o, h, l, c, baseVol, quoteVol, usdtVol]``, mix rows ``[ts, o, h, l, c, baseVol,
quoteVol]``, all strings. Spot granularities ``1min 3min 5min 15min 30min 1h 4h 6h 12h 1day
1week 1M``, mix ``1m 3m 5m 15m 30m 1H 2H 4H 6H 12H 1D 1W 1M``, and on both ``6Hutc 12Hutc 1Dutc
3Dutc 1Wutc 1Mutc``; the plain ones from 6 h up follow UTC+8 (a day opens at 16:00 UTC, a week
on Sunday 16:00 UTC), the ``utc`` ones UTC (weeks on Monday, months on the 1st): what ccxt
asks for from ``6h`` up, and (``make_exchange``) subscribes as ``candle<bar>`` channels too.
``1s`` on both is a simulator extra: ``make_exchange`` adds it to ccxt's bitget timeframes in
simulator mode.

WebSocket ``/v2/ws/public``: ``{"op": "subscribe", "args": [{"instType": "SPOT", "channel":
"candle1m", "instId": "BTCUSDT"}]}`` is answered per arg with ``{"event": "subscribe", "arg":
{...}}``, then a snapshot of the newest bars; every later push is an update. Text ``ping``
gets ``pong`` (the client pings every 30 s). A push::

    {"action": "update", "arg": {"instType": "SPOT", "channel": "candle1m", "instId": "BTCUSDT"},
     "data": [["1701871620000", "44080.23", "44080.23", "44028.5", "44028.51", "9.9287",
     "437404.105512", "437404.105512"]], "ts": 1701871629417}

Bitget's candles carry no closed flag: a candle is closed when one with a later time arrives.
An unknown instId or channel gets ``{"event": "error", "arg": {...}, "code": 30001, "msg":
"instType:SPOT,channel:candle1m,instId:NOPEUSDT doesn't exist", "op": "subscribe"}``; other
public channels (ticker, books, trade) are acknowledged and stay silent.

Limits (``ws_limits``, as bitget documents them): a socket may send 10 messages a second (the
text ``ping`` included); past that bitget disconnects it: ``{"event": "error", "code": 30007,
"msg": "request over limit,connection close"}``, then a close (1008: bitget names no close
code). A socket may hold 1,000 channels; a channel past that is refused with ``{"event":
"error", "arg": {...}, "code": 30006, "msg": "request too many", "op": "subscribe"}``. A socket
may send 240 subscribe requests an hour; past that the whole request is refused the same way,
without ``arg``. The channels of one request may total 4,096 bytes (as JSON); past that the
request is refused with 30016 (bitget documents these two limits, not its answers: the
simulator's choice).

Must not import ccxt or anything from the client side of btccxt.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from btccxt_cli.sim.grids import EPOCH_GRIDS, MONDAY_WEEK, UTC_MONTH, hk_grid
from btccxt_cli.sim.market import LISTING_MS, Candle, MarketSpec, split_symbol
from btccxt_cli.sim.venues import (
    MAJORS,
    SWAPS,
    Venue,
    dumps,
    json_response,
    loads,
    retry_after_headers,
)
from btccxt_cli.sim.venues.ws_limits import CLOSE_POLICY
from btccxt_cli.timeframes import BarGrid

if TYPE_CHECKING:
    from btccxt_cli.sim.wire import Connection, Stream

logger = logging.getLogger(__name__)

__all__ = ["BitgetVenue"]

RECENT_MAX, HISTORY_MAX, DEFAULT_LIMIT = 1000, 200, 100
SNAPSHOT_BARS = 30  # newest bars sent on subscribe (the real snapshot is longer)
DAY_MS = 86_400_000
PRODUCT_TYPES = ("USDT-FUTURES", "COIN-FUTURES", "USDC-FUTURES", "SUSDT-FUTURES", "SCOIN-FUTURES",
                 "SUSDC-FUTURES")
INST_TYPES = ("SPOT", *PRODUCT_TYPES)

_E = EPOCH_GRIDS
#: the bars on UTC from 6 h up, and the same on UTC+8 without the suffix
_UTC_LONG = {"6Hutc": _E["6h"], "12Hutc": _E["12h"], "1Dutc": _E["1d"], "3Dutc": _E["3d"],
             "1Wutc": MONDAY_WEEK, "1Mutc": UTC_MONTH}
_UTC8 = {"6H": hk_grid(_E["6h"]), "12H": hk_grid(_E["12h"]), "1D": hk_grid(_E["1d"]),
         "1W": hk_grid(MONDAY_WEEK), "1M": hk_grid(UTC_MONTH)}
#: granularity -> where those bars open
SPOT_GRANULARITY: dict[str, BarGrid] = {
    "1s": _E["1s"], "1min": _E["1m"], "3min": _E["3m"], "5min": _E["5m"], "15min": _E["15m"],
    "30min": _E["30m"], "1h": _E["1h"], "4h": _E["4h"], "6h": _UTC8["6H"], "12h": _UTC8["12H"],
    "1day": _UTC8["1D"], "1week": _UTC8["1W"], "1M": _UTC8["1M"], **_UTC_LONG,
}
MIX_GRANULARITY: dict[str, BarGrid] = {
    "1s": _E["1s"], "1m": _E["1m"], "3m": _E["3m"], "5m": _E["5m"], "15m": _E["15m"],
    "30m": _E["30m"], "1H": _E["1h"], "2H": _E["2h"], "4H": _E["4h"], **_UTC8, **_UTC_LONG,
}
#: ``candle<bar>`` WebSocket channels
WS_BARS: dict[str, BarGrid] = {
    "1s": _E["1s"], "1m": _E["1m"], "3m": _E["3m"], "5m": _E["5m"], "15m": _E["15m"],
    "30m": _E["30m"], "1H": _E["1h"], "4H": _E["4h"], **_UTC8, **_UTC_LONG,
}
#: how far back ``/market/candles`` reaches, per bar length (ccxt's maxRecentDaysPerTimeframe)
RECENT_DAYS = {60_000: 30, 180_000: 30, 300_000: 30, 900_000: 30, 1_800_000: 30, 3_600_000: 60,
               7_200_000: 120, 14_400_000: 240, 21_600_000: 360, 43_200_000: 720, DAY_MS: 1440,
               3 * DAY_MS: 4320, 7 * DAY_MS: 10080, 30 * DAY_MS: 43200}


class BitgetError(Exception):
    """A request bitget refuses: ``code``, ``msg`` and HTTP status."""

    def __init__(self, code: str, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code, self.msg, self.status = code, msg, status


class BitgetVenue(Venue):
    """Bitget v2 (``api.bitget.com`` / ``ws.bitget.com``): spot and linear perpetuals."""

    id = "bitget"
    default_symbols = MAJORS + SWAPS
    intervals = {"1s": "1s", "1m": "1min", "3m": "3min", "5m": "5min", "15m": "15min",
                 "30m": "30min", "1h": "1h", "4h": "4h", "6h": "6Hutc", "12h": "12Hutc",
                 "1d": "1Dutc", "3d": "3Dutc", "1w": "1Wutc", "1M": "1Mutc"}  # spot REST
    grids = SPOT_GRANULARITY
    swap_only = {"2h": "2H"}  # ccxt's swap granularities spot lacks
    # 10 messages a second (closed), 1,000 channels per socket, 240 subscribe requests an hour
    # per socket, 4,096 bytes of channels a request (refused)
    ws_limits = {"messages_per_second": 10, "streams_per_connection": 1000,
                 "subscribes_per_hour": 240, "request_bytes": 4096}

    def grid_for(self, timeframe: str) -> BarGrid:
        """Spot's grid for ``timeframe``, or the swaps' where only they have it (2h)."""
        if timeframe in self.swap_only:
            return MIX_GRANULARITY[self.swap_only[timeframe]]
        return super().grid_for(timeframe)

    def __init__(self, server: Any, symbols: list[str] | None) -> None:
        super().__init__(server, symbols)
        # spot and swaps share ids ("BTCUSDT"): the instType / productType tells them apart
        self.by_id: dict[tuple[str, str], str] = {
            (self.inst_type(s), self.market_id(s)): s for s in self.symbols}

    def check_symbol(self, symbol: str) -> None:
        _base, quote, settle = split_symbol(symbol)
        if settle is not None and (settle != quote or quote not in ("USDT", "USDC")):
            raise ValueError(f"the bitget simulator serves spot and USDT/USDC-margined perpetuals "
                             f"only, not {symbol!r}")

    @staticmethod
    def market_id(symbol: str) -> str:
        return symbol.split(":")[0].replace("/", "")

    @staticmethod
    def inst_type(symbol: str) -> str:
        _base, _quote, settle = split_symbol(symbol)
        return "SPOT" if settle is None else f"{settle}-FUTURES"

    # ------------------------------------------------------------------ routes
    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/v2/public/time", self.time),
            web.get("/api/v2/spot/public/symbols", self.spot_symbols),
            web.get("/api/v2/spot/public/coins", self.coins),
            web.get("/api/v2/margin/currencies", self.margin_currencies),
            web.get("/api/v2/mix/market/contracts", self.contracts),
            web.get("/api/v2/spot/market/candles", self._candles_handler(False, False)),
            web.get("/api/v2/spot/market/history-candles", self._candles_handler(False, True)),
            web.get("/api/v2/mix/market/candles", self._candles_handler(True, False)),
            web.get("/api/v2/mix/market/history-candles", self._candles_handler(True, True)),
            web.get("/api/v3/account/settings", self.uta_settings),
            web.get("/v2/ws/public", self.ws),
        ]

    # ------------------------------------------------------------------ envelopes and errors
    def _ok(self, data: Any) -> web.Response:
        return json_response({"code": "00000", "msg": "success", "requestTime": self.server.now_ms(),
                              "data": data})

    def _err(self, code: str, msg: str, status: int = 400,
             headers: dict[str, str] | None = None) -> web.Response:
        return json_response({"code": code, "msg": msg, "requestTime": self.server.now_ms(),
                              "data": None}, status, headers)

    def error_response(self, status: int, retry_after: float | None = None) -> web.Response:
        if status in (418, 429):
            headers = retry_after_headers(status, retry_after) or None
            return self._err("429", "Too Many Requests", status, headers)  # ccxt: DDoSProtection
        if status == 500:
            return self._err("40015", "System is abnormal, please try again later", 500)
        if status == 503:
            return self._err("40200", "Server upgrade, please try again later", 503)  # OnMaintenance
        return web.Response(status=status, text="<html><body><h1>502 Bad Gateway</h1></body></html>",
                            content_type="text/html")

    # ------------------------------------------------------------------ REST
    async def time(self, request: web.Request) -> web.Response:
        return self._ok({"serverTime": str(self.server.now_ms())})

    async def uta_settings(self, request: web.Request) -> web.Response:
        # ccxt probes this (signed) to tell unified from classic accounts; any error means classic
        return self._err("40084", "You are in Classic Account mode, and the Unified Account API is "
                         "not supported at this time")

    def _spot(self) -> list[str]:
        return [s for s in self.symbols if ":" not in s]

    async def spot_symbols(self, request: web.Request) -> web.Response:
        data = [self._spot_info(s) for s in self._spot()]
        wanted = request.query.get("symbol")
        if wanted:
            data = [d for d in data if d["symbol"] == wanted]
            if not data:
                return self._err("40034", f"Parameter {wanted} does not exist")
        return self._ok(data)

    async def coins(self, request: web.Request) -> web.Response:
        coins: list[str] = []
        for s in self.symbols:
            spec = self.specs[s]
            for c in (spec.base, spec.quote):
                if c not in coins:
                    coins.append(c)
        wanted = request.query.get("coin")
        data = [{"coinId": str(1000 + i), "coin": c, "transfer": "true", "chains": [],
                 "areaCoin": "no"} for i, c in enumerate(coins) if not wanted or c == wanted]
        return self._ok(data)

    async def margin_currencies(self, request: web.Request) -> web.Response:
        data = []
        for s in self._spot():
            spec = self.specs[s]
            data.append({
                "symbol": self.market_id(s), "baseCoin": spec.base, "quoteCoin": spec.quote,
                "maxCrossedLeverage": "3", "maxIsolatedLeverage": "10", "warningRiskRatio": "0.8",
                "liquidationRiskRatio": "1", "minTradeAmount": "0", "maxTradeAmount": "0",
                "takerFeeRate": "0.001", "makerFeeRate": "0.001",
                "priceScale": str(spec.price_decimals), "quantityScale": str(spec.lot_decimals),
                "minTradeUSDT": "5", "isBorrowable": True, "userMinBorrow": "0", "status": "1",
                "isIsolatedBaseBorrowable": True, "isIsolatedQuoteBorrowable": True,
                "isCrossBorrowable": True,
            })
        return self._ok(data)

    async def contracts(self, request: web.Request) -> web.Response:
        product = request.query.get("productType")
        if not product:
            return self._err("40019", "Parameter productType cannot be empty")
        if product.upper() not in PRODUCT_TYPES:
            return self._err("40020", "Parameter productType error")
        data = [self._contract_info(s) for s in self.symbols
                if ":" in s and self.inst_type(s) == product.upper()]
        wanted = request.query.get("symbol")
        if wanted:
            data = [d for d in data if d["symbol"] == wanted]
            if not data:
                return self._err("40034", f"Parameter {wanted} does not exist")
        return self._ok(data)

    def _candles_handler(self, mix: bool, history: bool) -> Any:
        async def handler(request: web.Request) -> web.Response:
            try:
                return self._ok(self._candles(request.query, mix, history))
            except BitgetError as exc:
                return self._err(exc.code, exc.msg, exc.status)
        return handler

    def _candles(self, q: Any, mix: bool, history: bool) -> list[list[str]]:
        market_id = q.get("symbol")
        if not market_id:
            raise BitgetError("40019", "Parameter symbol cannot be empty")
        kind = "SPOT"
        if mix:
            kind = (q.get("productType") or "").upper()
            if not kind:
                raise BitgetError("40019", "Parameter productType cannot be empty")
            if kind not in PRODUCT_TYPES:
                raise BitgetError("40020", "Parameter productType error")
        symbol = self.by_id.get((kind, market_id))
        if symbol is None:
            raise BitgetError("40034", f"Parameter {market_id} does not exist")
        granularity = q.get("granularity")
        if not granularity:
            raise BitgetError("40019", "Parameter granularity cannot be empty")
        table = MIX_GRANULARITY if mix else SPOT_GRANULARITY
        if granularity not in table:
            raise BitgetError("40020", "Parameter granularity error")
        grid = table[granularity]
        ints: dict[str, int | None] = {}
        for name in ("startTime", "endTime", "limit"):
            raw = q.get(name)
            try:
                ints[name] = None if raw in (None, "") else int(raw)
            except ValueError:
                raise BitgetError("40020", f"Parameter {name} error") from None
        limit = DEFAULT_LIMIT if ints["limit"] is None else ints["limit"]
        if limit < 1:
            raise BitgetError("40020", "Parameter limit error")
        limit = min(limit, HISTORY_MAX if history else RECENT_MAX)
        start, end = ints["startTime"], ints["endTime"]
        if history:
            if end is None:
                raise BitgetError("40019", "Parameter endTime cannot be empty")
            if not mix:
                start = None  # spot history-candles reads endTime only
        if start is not None and end is not None and start > end:
            raise BitgetError("40707", "Start time is greater than end time")
        now = self.server.now_ms()
        floor = LISTING_MS
        days = RECENT_DAYS.get(grid.nominal_ms)
        if not history and days is not None:
            floor = max(floor, now - days * DAY_MS)
        bars = self.server.bars(symbol, grid, start=start,
                                end=None if end is None else end - 1,  # endTime is exclusive
                                limit=limit, from_start=False, floor=floor)
        spec = self.specs[symbol]
        return [self._row(spec, c, mix) for c in bars]

    # ------------------------------------------------------------------ formatting
    def _spot_info(self, symbol: str) -> dict[str, Any]:
        spec = self.specs[symbol]
        return {
            "symbol": self.market_id(symbol), "baseCoin": spec.base, "quoteCoin": spec.quote,
            "minTradeAmount": "0", "maxTradeAmount": "900000000000000000000",
            "takerFeeRate": "0.001", "makerFeeRate": "0.001",
            "pricePrecision": str(spec.price_decimals), "quantityPrecision": str(spec.lot_decimals),
            "quotePrecision": str(max(spec.price_decimals, 6)), "status": "online",
            "minTradeUSDT": "1", "buyLimitPriceRatio": "0.05", "sellLimitPriceRatio": "0.05",
            "areaSymbol": "no", "orderQuantity": "200", "openTime": str(LISTING_MS), "offTime": "",
        }

    def _contract_info(self, symbol: str) -> dict[str, Any]:
        spec = self.specs[symbol]
        return {
            "symbol": self.market_id(symbol), "baseCoin": spec.base, "quoteCoin": spec.quote,
            "buyLimitPriceRatio": "0.9", "sellLimitPriceRatio": "0.9", "feeRateUpRatio": "0.1",
            "makerFeeRate": "0.0002", "takerFeeRate": "0.0006", "openCostUpRatio": "0.1",
            "supportMarginCoins": [spec.settle], "minTradeNum": spec.lot_str(),
            "priceEndStep": "1", "volumePlace": str(spec.lot_decimals),
            "pricePlace": str(spec.price_decimals), "sizeMultiplier": spec.lot_str(),
            "symbolType": "perpetual", "minTradeUSDT": "5", "maxSymbolOrderNum": "200",
            "maxProductOrderNum": "400", "maxPositionNum": "150", "symbolStatus": "normal",
            "offTime": "-1", "limitOpenTime": "-1", "deliveryTime": "", "deliveryStartTime": "",
            "deliveryPeriod": "", "launchTime": str(LISTING_MS), "fundInterval": "8",
            "minLever": "1", "maxLever": "125", "posLimit": "0.05", "maintainTime": "",
        }

    @staticmethod
    def _row(spec: MarketSpec, c: Candle, mix: bool) -> list[str]:
        """Spot (REST and WS) and WS mix rows have 8 fields, REST mix rows 7 (no usdtVol)."""
        ts, o, h, lo, cl, v = c
        quote = f"{v * (o + h + lo + cl) / 4.0:.{max(2, spec.price_decimals)}f}"
        row = [str(ts), spec.fmt_price(o), spec.fmt_price(h), spec.fmt_price(lo),
               spec.fmt_price(cl), spec.fmt_volume(v), quote]
        return row if mix else [*row, quote]

    def encode(self, stream: Stream, candle: Candle, closed: bool, event_ms: int,
               flavors: set[str]) -> dict[str, bytes]:
        row = self._row(self.specs[stream.symbol], candle, mix=False)
        return {"default": dumps({"action": "update", "arg": stream.ident, "data": [row],
                                  "ts": event_ms})}

    # ------------------------------------------------------------------ WebSocket
    async def ws(self, request: web.Request) -> web.StreamResponse:
        return await self.server.serve_ws(request, "default", self._on_text)

    async def _on_text(self, conn: Connection, text: str) -> None:
        if self.limits.too_fast(conn.extra):
            await self._close_over_limit(conn)
            return
        if text == "ping":
            await self.server.send(conn, b"pong")
            return
        try:
            msg = loads(text)
        except ValueError:
            msg = None
        if not isinstance(msg, dict):
            await self._error(conn, 30016, "Param error")
            return
        op, args = msg.get("op"), msg.get("args")
        if op == "login":
            await self._error(conn, 30005, "login failed", op="login")
            return
        if op not in ("subscribe", "unsubscribe"):
            await self._error(conn, 30003, "invalid op")
            return
        if not isinstance(args, list) or not args or not all(isinstance(a, dict) for a in args):
            await self._error(conn, 30016, "Param error", op=op)
            return
        if self.limits.too_many_args(args, len(dumps(args))):
            self.server.stats.ws_limit_refusals += 1
            await self._error(conn, 30016, "Param error: the channels of one request exceed "
                              f"{self.limits.get('request_bytes')} bytes", op=op)
            return
        if op == "subscribe":
            if self.limits.too_many_subscribes(conn.extra):
                self.server.stats.ws_limit_refusals += 1
                await self._error(conn, 30006, "request too many", op=op)
                return
            self.server.stats.subscribe_requests += 1
        else:
            self.server.stats.unsubscribe_requests += 1
        for arg in args:
            await self._sub_one(conn, op, arg)

    async def _sub_one(self, conn: Connection, op: str, arg: dict[str, Any]) -> None:
        inst_type = str(arg.get("instType", ""))
        channel = str(arg.get("channel", ""))
        inst_id = str(arg.get("instId", ""))
        ident = {"instType": inst_type, "channel": channel, "instId": inst_id}
        missing = f"instType:{inst_type},channel:{channel},instId:{inst_id} doesn't exist"
        if inst_type.upper() not in INST_TYPES:
            await self._error(conn, 30001, missing, op=op, arg=ident)
            return
        if not channel.startswith("candle"):
            if op == "subscribe":
                logger.warning("bitget sim: channel %r is accepted but not simulated (nothing "
                               "will be pushed)", channel)
                self.server.stats.ignored_streams += 1
            await self.server.send(conn, dumps({"event": op, "arg": ident}))
            return
        bar = channel[len("candle"):]
        symbol = self.by_id.get((inst_type.upper(), inst_id))
        if symbol is None or bar not in WS_BARS:
            await self._error(conn, 30001, missing, op=op, arg=ident)
            return
        grid = WS_BARS[bar]
        key = (symbol, grid)
        if op == "unsubscribe":
            self.server.unsubscribe(conn, key)
            await self.server.send(conn, dumps({"event": op, "arg": ident}))
            return
        if key not in conn.subs and self.limits.too_many_streams(len(conn.subs), 1):
            self.server.stats.ws_limit_refusals += 1
            await self._error(conn, 30006, "request too many", op=op, arg=ident)
            return
        self.server.subscribe(conn, key, f"{channel}:{inst_type}:{inst_id}", ident=ident)
        await self.server.send(conn, dumps({"event": op, "arg": ident}))
        if self.server.faults.stalled(self.server.clock.monotonic()):
            return
        # computed after the ack went out, so no push this connection saw is newer
        spec = self.specs[symbol]
        bars = self.server.bars(symbol, grid, start=None, end=None, limit=SNAPSHOT_BARS,
                                from_start=False)
        await self.server.send(conn, dumps({"action": "snapshot", "arg": ident,
                                            "data": [self._row(spec, c, mix=False) for c in bars],
                                            "ts": self.server.now_ms()}))

    async def _close_over_limit(self, conn: Connection) -> None:
        """Disconnect a socket sending past 10 messages a second, as bitget does."""
        self.server.stats.ws_limit_closes += 1
        logger.info("bitget sim: closing socket %s: over the message rate", conn.id)
        await self._error(conn, 30007, "request over limit,connection close")
        await conn.ws.close(code=CLOSE_POLICY, message=b"request over limit")

    async def _error(self, conn: Connection, code: int, msg: str, op: str | None = None,
                     arg: dict[str, Any] | None = None) -> None:
        body: dict[str, Any] = {"event": "error"}
        if arg is not None:
            body["arg"] = arg
        body.update({"code": code, "msg": msg})
        if op is not None:
            body["op"] = op
        await self.server.send(conn, dumps(body))
