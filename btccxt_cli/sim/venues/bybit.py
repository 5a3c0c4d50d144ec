"""Bybit v5: public market REST and the public kline WebSocket topics, as ccxt reads them.

REST (GET; errors as ``{"retCode": 10001, "retMsg": "Not supported symbols", "result": {},
"retExtInfo": {}, "time": 1726147060461}`` with HTTP 200, as bybit does)::

    /v5/market/time
    /v5/market/instruments-info?category=spot|linear|inverse|option   (inverse/option empty)
    /v5/market/kline?category=&symbol=&interval=&start=&end=&limit=   (newest first, <= 1000)
    /v5/asset/coin/query-info        empty (ccxt asks for it when API keys are set)

A kline row (strings, newest first, the forming candle included)::

    ["1670608800000", "17071", "17073", "17027", "17055.5", "268611", "15.74462667"]

``start`` alone: the ``limit`` bars from the one containing ``start`` on; ``end`` (with or
without ``start``): the newest ``limit`` bars opening at or before ``end`` (and not before the
bar containing ``start``); neither: the newest ``limit``. Volume is base currency for spot and
for linear contracts (1 contract = 1 base unit); turnover is quote currency.

Intervals ``1 3 5 15 30 60 120 240 360 720 D W M`` (ccxt ``1m`` ... ``1M``; ``W`` opens on
Monday 00:00 UTC and ``M`` on the 1st of a month, like bybit's) and the simulator extra ``1s``:
real bybit has no 1s klines; ``make_exchange`` adds ``"1s": "1s"`` to ccxt's bybit timeframes
in simulator mode.

WebSocket: ``/v5/public/spot`` and ``/v5/public/linear`` (``inverse``/``option`` accept
connections but list nothing). ``{"op": "subscribe", "req_id": 1, "args":
["kline.1.BTCUSDT"]}`` is answered by ``{"success": true, "ret_msg": "subscribe", "conn_id":
"...", "req_id": 1, "op": "subscribe"}``; ``{"op": "ping"}`` by ``{"success": true, "ret_msg":
"pong", ..., "op": "ping"}`` (the client pings; bybit asks for one every 20 s). A push::

    {"topic": "kline.1.BTCUSDT", "data": [{"start": 1672324800000, "end": 1672324859999,
     "interval": "1", "open": "16649.5", "close": "16677", "high": "16677", "low": "16608",
     "volume": "2.081", "turnover": "34666.4005", "confirm": false, "timestamp": 1672324988882}],
     "ts": 1672324988882, "type": "snapshot"}

``confirm`` is true on the final update of a bar. Other public topics (orderbook, publicTrade,
tickers) are accepted and stay silent; a kline topic of an unknown symbol or interval is refused.

Limits (``ws_limits``, as bybit documents them): a spot subscribe request carries at most 10
args (more: ``{"success": false, "ret_msg": "args size >10", ...}``, nothing subscribed); on
the derivatives sockets the topics one connection holds may total 21,000 characters (more: the
request is refused the same way, ``ret_msg`` "args length exceeds 21000 characters per
connection", the simulator's wording: bybit documents the limit, not its answer).

Must not import ccxt or anything from the client side of btccxt.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from aiohttp import web

from btccxt_cli.sim.grids import EPOCH_GRIDS, MONDAY_WEEK, UTC_MONTH
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

if TYPE_CHECKING:
    from btccxt_cli.sim.wire import Connection, Stream

logger = logging.getLogger(__name__)

__all__ = ["BybitVenue"]

MAX_LIMIT = 1000
DEFAULT_LIMIT = 200
CATEGORIES = ("spot", "linear", "inverse", "option")
WS_PATHS = {f"/v5/public/{c}": c for c in CATEGORIES}
_TOPIC_RE = re.compile(r"^([A-Za-z]+(?:\.[A-Za-z]+)?)\.(.+)$")


def _envelope(result: Any, now_ms: int, code: int = 0, msg: str = "OK") -> dict[str, Any]:
    return {"retCode": code, "retMsg": msg, "result": result, "retExtInfo": {}, "time": now_ms}


class BybitVenue(Venue):
    """Bybit v5 (``api.bybit.com`` / ``stream.bybit.com``): spot and linear perpetuals."""

    id = "bybit"
    default_symbols = MAJORS + SWAPS
    intervals = {"1s": "1s", "1m": "1", "3m": "3", "5m": "5", "15m": "15", "30m": "30",
                 "1h": "60", "2h": "120", "4h": "240", "6h": "360", "12h": "720", "1d": "D",
                 "1w": "W", "1M": "M"}
    grids = {**{iv: EPOCH_GRIDS[tf] for tf, iv in intervals.items() if tf in EPOCH_GRIDS},
             "W": MONDAY_WEEK, "M": UTC_MONTH}
    # spot: 10 args per subscribe request; derivatives: 21,000 characters of topics per socket
    ws_limits = {"args_per_request": 10, "args_chars": 21000}

    def __init__(self, server: Any, symbols: list[str] | None) -> None:
        super().__init__(server, symbols)
        # spot and linear share ids ("BTCUSDT"): one table per category
        self.by_id: dict[str, dict[str, str]] = {c: {} for c in CATEGORIES}
        for s in self.symbols:
            self.by_id[self.category(s)][self.market_id(s)] = s
        self._instruments: dict[str, list[dict[str, Any]]] = {c: [] for c in CATEGORIES}
        for s in self.symbols:
            self._instruments[self.category(s)].append(self._instrument(s))

    def check_symbol(self, symbol: str) -> None:
        _base, quote, settle = split_symbol(symbol)
        if settle is not None and settle != quote:
            raise ValueError(f"the bybit simulator serves spot and linear perpetuals only, not {symbol!r}")

    @staticmethod
    def market_id(symbol: str) -> str:
        return symbol.split(":")[0].replace("/", "")

    @staticmethod
    def category(symbol: str) -> str:
        return "linear" if ":" in symbol else "spot"

    def conn_id(self, n: int) -> str:
        return f"{n:08x}-0000-4000-8000-00000000b7b1"

    # ------------------------------------------------------------------ routes
    def routes(self) -> list[web.RouteDef]:
        out = [
            web.get("/v5/market/time", self.time),
            web.get("/v5/market/instruments-info", self.instruments),
            web.get("/v5/market/kline", self.kline),
            # private, asked by load_markets() only when API keys are set: no currencies
            web.get("/v5/asset/coin/query-info", self.coin_info),
        ]
        out += [web.get(path, self.ws) for path in WS_PATHS]
        return out

    # ------------------------------------------------------------------ errors
    def _err(self, code: int, msg: str, status: int = 200) -> web.Response:
        return json_response(_envelope({}, self.server.now_ms(), code, msg), status)

    def error_response(self, status: int, retry_after: float | None = None) -> web.Response:
        now = self.server.now_ms()
        if status in (418, 429):
            wait_ms = int((retry_after or 1.0) * 1000)
            headers = {"X-Bapi-Limit": "600", "X-Bapi-Limit-Status": "0",
                       "X-Bapi-Limit-Reset-Timestamp": str(now + wait_ms)}
            headers.update(retry_after_headers(status, retry_after))
            if status == 429:
                body = _envelope({}, now, 10006, "Too many visits. Exceeded the API Rate Limit.")
            else:
                body = _envelope({}, now, 10018, "Exceeded the IP Rate Limit.")
            return json_response(body, status, headers)
        # 5xx come from bybit's gateway (CloudFront/nginx), not from the API: no retCode
        if status == 502:
            return web.Response(status=502, text="<html><body><h1>502 Bad Gateway</h1></body></html>",
                                content_type="text/html")
        if status == 503:
            return web.Response(status=503, text="<html><body><h1>503 Service Temporarily "
                                "Unavailable</h1></body></html>", content_type="text/html")
        return web.Response(status=status, text="<html><body><h1>500 Internal Server Error</h1>"
                            "</body></html>", content_type="text/html")

    # ------------------------------------------------------------------ REST
    async def time(self, request: web.Request) -> web.Response:
        now = self.server.now_ms()
        result = {"timeSecond": str(now // 1000), "timeNano": str(now * 1_000_000)}
        return json_response(_envelope(result, now))

    async def coin_info(self, request: web.Request) -> web.Response:
        return json_response(_envelope({"rows": []}, self.server.now_ms(), msg="success"))

    async def instruments(self, request: web.Request) -> web.Response:
        q = request.query
        category = q.get("category")
        if not category:
            return self._err(10001, "params error: category is required")
        if category not in CATEGORIES:
            return self._err(10001, "params error: Illegal category")
        data = self._instruments[category]
        if q.get("status") and q["status"] != "Trading":
            data = []  # nothing PreLaunch or Delivering here
        if q.get("symbol"):
            data = [d for d in data if d["symbol"] == q["symbol"]]
        if q.get("baseCoin"):
            data = [d for d in data if d["baseCoin"] == q["baseCoin"]]
        result: dict[str, Any] = {"category": category, "list": data}
        if category != "spot":
            result["nextPageCursor"] = ""
        return json_response(_envelope(result, self.server.now_ms()))

    async def kline(self, request: web.Request) -> web.Response:
        q = request.query
        category = q.get("category") or "linear"  # bybit's default
        if category not in CATEGORIES:
            return self._err(10001, "params error: Illegal category")
        market_id = q.get("symbol")
        if not market_id:
            return self._err(10001, "params error: symbol is required")
        symbol = self.by_id[category].get(market_id)
        if symbol is None:
            return self._err(10001, "Not supported symbols")
        interval = q.get("interval")
        if not interval or interval not in self.grids:
            return self._err(10001, "Invalid period!")
        grid = self.grids[interval]
        ints: dict[str, int | None] = {}
        for name in ("start", "end", "limit"):
            raw = q.get(name)
            if raw is None or raw == "":
                ints[name] = None
                continue
            try:
                ints[name] = int(raw)
            except ValueError:
                return self._err(10001, f"params error: {name} invalid")
        limit = DEFAULT_LIMIT if ints["limit"] is None else ints["limit"]
        if limit < 1:
            return self._err(10001, "params error: limit invalid")
        limit = min(limit, MAX_LIMIT)
        start, end = ints["start"], ints["end"]
        if start is not None and end is not None and start > end:
            return self._err(10001, "params error: start must be less than end")
        if start is not None:
            start = grid.open_of(start)  # the bar containing start
        spec = self.specs[symbol]
        bars = self.server.bars(symbol, grid, start=start, end=end, limit=limit,
                                from_start=start is not None and end is None, floor=LISTING_MS)
        rows = [self._row(spec, c) for c in reversed(bars)]
        return json_response(_envelope({"symbol": market_id, "category": category, "list": rows},
                                       self.server.now_ms()))

    # ------------------------------------------------------------------ formatting
    def _instrument(self, symbol: str) -> dict[str, Any]:
        spec = self.specs[symbol]
        tick, lot = spec.tick_str(), spec.lot_str()
        if not spec.is_swap:
            return {
                "symbol": self.market_id(symbol), "baseCoin": spec.base, "quoteCoin": spec.quote,
                "innovation": "0", "status": "Trading", "marginTrading": "utaOnly", "stTag": "0",
                "lotSizeFilter": {"basePrecision": lot, "quotePrecision": "0.00000001",
                                  "minOrderQty": lot, "maxOrderQty": "9000000",
                                  "minOrderAmt": "1", "maxOrderAmt": "2000000"},
                "priceFilter": {"tickSize": tick},
                "riskParameters": {"priceLimitRatioX": "0.005", "priceLimitRatioY": "0.01"},
            }
        return {
            "symbol": self.market_id(symbol), "contractType": "LinearPerpetual", "status": "Trading",
            "baseCoin": spec.base, "quoteCoin": spec.quote, "launchTime": str(LISTING_MS),
            "deliveryTime": "0", "deliveryFeeRate": "", "priceScale": str(spec.price_decimals),
            "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
            "priceFilter": {"minPrice": tick, "maxPrice": "1999999.80", "tickSize": tick},
            "lotSizeFilter": {"maxOrderQty": "1190.000", "minOrderQty": lot, "qtyStep": lot,
                              "postOnlyMaxOrderQty": "1190.000", "maxMktOrderQty": "500.000",
                              "minNotionalValue": "5"},
            "unifiedMarginTrade": True, "fundingInterval": 480, "settleCoin": spec.settle,
            "copyTrading": "both", "upperFundingRate": "0.00375", "lowerFundingRate": "-0.00375",
            "isPreListing": False, "preListingInfo": None, "displayName": "",
        }

    @staticmethod
    def _turnover(spec: MarketSpec, c: Candle) -> str:
        _ts, o, h, lo, cl, v = c
        return f"{v * (o + h + lo + cl) / 4.0:.{max(2, spec.price_decimals)}f}"

    def _row(self, spec: MarketSpec, c: Candle) -> list[str]:
        ts, o, h, lo, cl, v = c
        return [str(ts), spec.fmt_price(o), spec.fmt_price(h), spec.fmt_price(lo),
                spec.fmt_price(cl), spec.fmt_volume(v), self._turnover(spec, c)]

    def encode(self, stream: Stream, candle: Candle, closed: bool, event_ms: int,
               flavors: set[str]) -> dict[str, bytes]:
        topic, interval = stream.ident
        spec = self.specs[stream.symbol]
        ts, o, h, lo, cl, v = candle
        item = {"start": ts, "end": stream.grid.close_of(ts) - 1, "interval": interval,
                "open": spec.fmt_price(o), "close": spec.fmt_price(cl), "high": spec.fmt_price(h),
                "low": spec.fmt_price(lo), "volume": spec.fmt_volume(v),
                "turnover": self._turnover(spec, candle), "confirm": closed, "timestamp": event_ms}
        return {"default": dumps({"topic": topic, "data": [item], "ts": event_ms, "type": "snapshot"})}

    # ------------------------------------------------------------------ WebSocket
    async def ws(self, request: web.Request) -> web.StreamResponse:
        category = WS_PATHS[request.path]

        async def on_text(conn: Connection, text: str) -> None:
            await self._on_text(conn, text, category)

        return await self.server.serve_ws(request, "default", on_text)

    async def _reply(self, conn: Connection, obj: dict[str, Any]) -> None:
        await self.server.send(conn, dumps(obj))

    async def _on_text(self, conn: Connection, text: str, category: str) -> None:
        try:
            msg = loads(text)
        except ValueError:
            msg = None
        if not isinstance(msg, dict):
            await self._reply(conn, {"success": False, "ret_msg": "error:invalid op",
                                     "conn_id": conn.id, "request": {"op": "", "args": None}})
            return
        op = msg.get("op")
        req_id = msg.get("req_id")
        base: dict[str, Any] = {"conn_id": conn.id}
        if req_id is not None:
            base["req_id"] = req_id
        if op == "ping":
            await self._reply(conn, {"success": True, "ret_msg": "pong", **base, "op": "ping"})
            return
        if op in ("subscribe", "unsubscribe"):
            args = msg.get("args")
            if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
                await self._reply(conn, {"success": False, "ret_msg": "error:args invalid", **base,
                                         "op": op})
                return
            over = self._over_limit(conn, op, args, category)
            if over is not None:
                self.server.stats.ws_limit_refusals += 1
                await self._reply(conn, {"success": False, "ret_msg": over, **base, "op": op})
                return
            if op == "subscribe":
                self.server.stats.subscribe_requests += 1
            else:
                self.server.stats.unsubscribe_requests += 1
            error = self._check_topics(conn, op, args, category)
            if error is not None:
                await self._reply(conn, {"success": False, "ret_msg": error, **base, "op": op})
                return
            for topic in args:
                self._apply(conn, op, topic, category)
            ok_msg = "subscribe" if category == "spot" and op == "subscribe" else ""
            await self._reply(conn, {"success": True, "ret_msg": ok_msg, **base, "op": op})
            return
        if op == "auth":
            await self._reply(conn, {"success": False, "ret_msg": "error:USVC1111", **base,
                                     "op": "auth"})
            return
        await self._reply(conn, {"success": False, "ret_msg": "error:invalid op", **base,
                                 "request": {"op": op, "args": msg.get("args")}})

    def _kline(self, topic: str, category: str) -> tuple[str, str] | None:
        """``kline.1.BTCUSDT`` -> (unified symbol, interval) when simulated, else None."""
        parts = topic.split(".")
        if len(parts) != 3 or parts[0] != "kline":
            return None
        symbol = self.by_id[category].get(parts[2])
        if symbol is None or parts[1] not in self.grids:
            return None
        return symbol, parts[1]

    def _over_limit(self, conn: Connection, op: str, args: list[str], category: str) -> str | None:
        """bybit's answer to a request past its limits (spot: args per request; derivatives:
        characters of topics per socket), or None."""
        if category == "spot":
            cap = self.limits.get("args_per_request")
            return f"args size >{cap}" if cap and len(args) > cap else None
        if op == "subscribe":
            held = conn.extra.get("topics", [])
            if self.limits.too_many_chars(held, [a for a in args if a not in held]):
                return (f"args length exceeds {self.limits.get('args_chars')} characters per "
                        "connection")
        return None

    def _check_topics(self, conn: Connection, op: str, args: list[str], category: str) -> str | None:
        """The error bybit would answer for this request, or None (all topics are fine)."""
        for topic in args:
            if not _TOPIC_RE.match(topic):
                return f"error:handler not found,topic:{topic}"
            if topic.startswith("kline."):
                if self._kline(topic, category) is None:
                    if category == "spot":
                        return f"Invalid symbol :[{topic}]"
                    return f"error:handler not found,topic:{topic}"
            if op == "subscribe" and self._holds(conn, topic, category):
                return f"error:already subscribed,topic:{topic}"
        return None

    def _holds(self, conn: Connection, topic: str, category: str) -> bool:
        """Whether ``conn`` is subscribed to ``topic`` (server side, so drop_subscription forgets)."""
        if self._kline(topic, category) is not None:
            return topic in conn.subs.values()
        return topic in conn.extra.get("topics", [])

    def _apply(self, conn: Connection, op: str, topic: str, category: str) -> None:
        held: list[str] = conn.extra.setdefault("topics", [])
        kl = self._kline(topic, category)
        if op == "subscribe":
            held.append(topic)
            if kl is None:
                logger.warning("bybit sim: topic %r is accepted but not simulated (nothing will be "
                               "pushed)", topic)
                self.server.stats.ignored_streams += 1
                return
            symbol, interval = kl
            self.server.subscribe(conn, (symbol, self.grids[interval]), topic,
                                  ident=(topic, interval))
            return
        if topic in held:
            held.remove(topic)
        if kl is not None:
            symbol, interval = kl
            self.server.unsubscribe(conn, (symbol, self.grids[interval]))
