"""KuCoin spot: public REST, the bullet token endpoint and the candle WebSocket topic, as ccxt reads them.

REST (errors as ``{"code": "400100", "msg": "This pair is not provided at present"}`` with HTTP
200, as kucoin does)::

    GET  /api/v1/timestamp   /api/v1/status
    GET  /api/v2/symbols                     spot markets
    GET  /api/v1/market/allTickers           fee rates (ccxt's load_markets reads them)
    GET  /api/v3/currencies                  the listed coins (ccxt's load_markets asks)
    GET  /api/v1/contracts/active            empty: futures live on api-futures.kucoin.com,
                                             which ccxt's load_markets asks too
    GET  /api/v1/market/candles?symbol=&type=1min&startAt=&endAt=   (seconds; newest first)
    POST /api/v1/bullet-public               the WebSocket endpoint and a token
    GET  /api/ua/v1/account/mode  /api/v3/margin/symbols  /api/v1/isolated/symbols
    GET  /api/v1/hf/accounts/opened          private, asked by load_markets() when API keys
                                             are set: a classic account, no margin pairs

A candle row (strings; time in SECONDS; note the order open, CLOSE, high, low)::

    ["1545904980", "0.058", "0.049", "0.058", "0.049", "0.018", "0.000945"]

Candles are the bars opening in ``[startAt, endAt)`` (``endAt`` 0 or missing: now; ``startAt``
0 or missing: no lower bound), the newest 1500 of them, newest first, the forming one included.
(kucoin does not document whether ``endAt`` is inclusive; ccxt asks for ``endAt = since + limit
* tf`` and expects ``limit`` bars, which only the half-open window gives with ``limit=1500``.)
Types ``1min 3min 5min 15min 30min 1hour 2hour 4hour 6hour 8hour 12hour 1day 1week 1month``
(``1week`` opens on Thursday 00:00 UTC, every 7 days since 1970, as kucoin's does; ``1month`` on
the 1st) and the simulator extra ``1sec``:
real kucoin has no second candles; ``make_exchange`` adds ``"1s": "1sec"`` to ccxt's kucoin
timeframes in simulator mode.

WebSocket: ``POST /api/v1/bullet-public`` answers ``{"code": "200000", "data": {"token": "...",
"instanceServers": [{"endpoint": "ws://127.0.0.1:PORT/endpoint", "encrypt": false, "protocol":
"websocket", "pingInterval": 18000, "pingTimeout": 10000}]}}``; ccxt connects to
``endpoint?token=...&connectId=...`` and gets ``{"id": "<connectId>", "type": "welcome"}``. An
unknown token gets ``{"type": "error", "code": 401, "data": "token is expired"}`` and a close.
``{"id": "1", "type": "subscribe", "topic": "/market/candles:BTC-USDT_1min", "response": true}``
is answered by ``{"id": "1", "type": "ack"}``; ``{"id": "2", "type": "ping"}`` by ``{"id": "2",
"type": "pong", "timestamp": ...}`` (the client pings every ``pingInterval``). A push::

    {"topic": "/market/candles:BTC-USDT_1min", "type": "message", "subject": "trade.candles.update",
     "data": {"symbol": "BTC-USDT", "candles": ["1589968800", "9786.9", "9740.8", "9806.1",
     "9732", "27.45649579", "268280.09830877"], "time": 1589970010253893337}}

KuCoin has no "closed" flag: a candle is closed when one with a later time arrives. Other topics
are acknowledged and stay silent; a candle topic of an unknown symbol or type gets
``{"id": ..., "type": "error", "code": 404, "data": "topic ... is not found"}``.

Limits (``ws_limits``, as kucoin documents them for spot): a socket may send 100 messages per
10 seconds (pings included), one subscribe may name 100 topics (``/market/ticker:A,B,...``) and
a socket may hold 400. Past them the request is refused with code 509 and not carried out,
the socket stays open: ``{"id": ..., "type": "error", "code": 509, "data": "exceed max permits
per 10 seconds"}``, ``"exceed max subscription count limitation of 100 per time"``, ``"exceed
max subscription count limitation of 400 per session"``.

Must not import ccxt or anything from the client side of btccxt.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from aiohttp import web

from btccxt_cli.sim.grids import EPOCH_GRIDS, THURSDAY_WEEK, UTC_MONTH
from btccxt_cli.sim.market import LISTING_MS, Candle, MarketSpec
from btccxt_cli.sim.venues import (
    MAJORS,
    Venue,
    dumps,
    json_response,
    loads,
    retry_after_headers,
)

if TYPE_CHECKING:
    from btccxt_cli.sim.wire import Connection, Stream

logger = logging.getLogger(__name__)

__all__ = ["KucoinVenue"]

MAX_ROWS = 1500
PING_INTERVAL_MS = 18_000
PING_TIMEOUT_MS = 10_000
WS_PATH = "/endpoint"
CANDLE_TOPIC = "/market/candles:"
TOKENS_KEPT = 10_000
OK = "200000"


def _ok(data: Any) -> web.Response:
    return json_response({"code": OK, "data": data})


def _err(code: str, msg: str, status: int = 200) -> web.Response:
    return json_response({"code": code, "msg": msg}, status)


class KucoinVenue(Venue):
    """KuCoin spot (``api.kucoin.com`` and its bullet-public sockets)."""

    id = "kucoin"
    default_symbols = MAJORS
    intervals = {"1s": "1sec", "1m": "1min", "3m": "3min", "5m": "5min", "15m": "15min",
                 "30m": "30min", "1h": "1hour", "2h": "2hour", "4h": "4hour", "6h": "6hour",
                 "8h": "8hour", "12h": "12hour", "1d": "1day", "1w": "1week", "1M": "1month"}
    grids = {**{t: EPOCH_GRIDS[tf] for tf, t in intervals.items() if tf in EPOCH_GRIDS},
             "1week": THURSDAY_WEEK, "1month": UTC_MONTH}
    # 100 messages per 10 s, 100 topics per subscribe, 400 topics per socket: refused (509)
    ws_limits = {"messages_per_10s": 100, "args_per_request": 100, "streams_per_connection": 400}

    def __init__(self, server: Any, symbols: list[str] | None) -> None:
        super().__init__(server, symbols)
        self.by_id: dict[str, str] = {self.market_id(s): s for s in self.symbols}
        self._symbols = [self._symbol_info(s) for s in self.symbols]
        self._tokens: OrderedDict[str, None] = OrderedDict()
        self._token_seq = itertools.count(1)

    def check_symbol(self, symbol: str) -> None:
        if ":" in symbol:
            raise ValueError(f"the kucoin simulator serves spot markets only, not {symbol!r}")

    @staticmethod
    def market_id(symbol: str) -> str:
        return symbol.replace("/", "-")

    def conn_id(self, n: int) -> str:
        return f"kc{n:07x}"

    # ------------------------------------------------------------------ routes
    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/v1/timestamp", self.timestamp),
            web.get("/api/v1/status", self.status),
            web.get("/api/v2/symbols", self.symbols_list),
            web.get("/api/v1/market/allTickers", self.all_tickers),
            web.get("/api/v3/currencies", self.currencies),
            web.get("/api/v1/contracts/active", self.contracts),
            web.get("/api/v1/market/candles", self.candles),
            web.post("/api/v1/bullet-public", self.bullet_public),
            web.get(WS_PATH, self.ws),
            # private, asked by load_markets() only when API keys are set (signatures unchecked):
            # a classic (not unified) account without margin pairs
            web.get("/api/ua/v1/account/mode", self.account_mode),
            web.get("/api/v3/margin/symbols", self.margin_symbols),
            web.get("/api/v1/isolated/symbols", self.isolated_symbols),
            web.get("/api/v1/hf/accounts/opened", self.hf_opened),
        ]

    # ------------------------------------------------------------------ errors
    def error_response(self, status: int, retry_after: float | None = None) -> web.Response:
        if status in (418, 429):
            wait_ms = int((retry_after or 1.0) * 1000)
            headers = {"gw-ratelimit-limit": "4000", "gw-ratelimit-remaining": "0",
                       "gw-ratelimit-reset": str(wait_ms)}
            headers.update(retry_after_headers(status, retry_after))
            return json_response({"code": "429000", "msg": "Too Many Requests"}, status, headers)
        if status == 500:
            return _err("500000", "Internal Server Error", 500)
        if status == 502:
            return web.Response(status=502, text="<html><body><h1>502 Bad Gateway</h1></body></html>",
                                content_type="text/html")
        return web.Response(status=status, text="Service Unavailable", content_type="text/plain")

    # ------------------------------------------------------------------ REST
    async def timestamp(self, request: web.Request) -> web.Response:
        return json_response({"code": OK, "msg": "success", "data": self.server.now_ms()})

    async def status(self, request: web.Request) -> web.Response:
        return _ok({"status": "open", "msg": ""})

    async def symbols_list(self, request: web.Request) -> web.Response:
        market = request.query.get("market")
        data = [s for s in self._symbols if not market or s["market"] == market]
        return _ok(data)

    async def contracts(self, request: web.Request) -> web.Response:
        return _ok([])

    async def account_mode(self, request: web.Request) -> web.Response:
        return _ok({"selfAccountMode": "CLASSIC", "accountMode": "CLASSIC"})

    async def margin_symbols(self, request: web.Request) -> web.Response:
        return _ok({"timestamp": self.server.now_ms(), "items": []})

    async def isolated_symbols(self, request: web.Request) -> web.Response:
        return _ok([])

    async def hf_opened(self, request: web.Request) -> web.Response:
        return _ok(True)

    async def currencies(self, request: web.Request) -> web.Response:
        coins: list[str] = []
        for s in self.symbols:
            spec = self.specs[s]
            for c in (spec.base, spec.quote):
                if c not in coins:
                    coins.append(c)
        data = [{"currency": c, "name": c, "fullName": c, "precision": 8, "confirms": None,
                 "contractAddress": None, "isMarginEnabled": True, "isDebitEnabled": True,
                 "chains": []} for c in coins]
        return _ok(data)

    async def all_tickers(self, request: web.Request) -> web.Response:
        now = self.server.now_ms()
        day = EPOCH_GRIDS["1d"].step_ms
        tickers = []
        for s in self.symbols:
            spec = self.specs[s]
            _ts, o, h, lo, c, v = self.server.model.partial(s, day, now - now % day, now)
            tickers.append({
                "symbol": self.market_id(s), "symbolName": self.market_id(s),
                "buy": spec.fmt_price(c), "bestBidSize": spec.lot_str(),
                "sell": spec.fmt_price(c), "bestAskSize": spec.lot_str(),
                "changeRate": f"{(c - o) / o:.4f}", "changePrice": spec.fmt_price(c - o),
                "high": spec.fmt_price(h), "low": spec.fmt_price(lo), "vol": spec.fmt_volume(v),
                "volValue": self._turnover(spec, (0, o, h, lo, c, v)), "last": spec.fmt_price(c),
                "averagePrice": spec.fmt_price((o + c) / 2), "takerFeeRate": "0.001",
                "makerFeeRate": "0.001", "takerCoefficient": "1", "makerCoefficient": "1",
            })
        return _ok({"time": now, "ticker": tickers})

    async def candles(self, request: web.Request) -> web.Response:
        q = request.query
        market_id = q.get("symbol")
        if not market_id:
            return _err("400100", "symbol can not be empty")
        symbol = self.by_id.get(market_id)
        if symbol is None:
            return _err("400100", "This pair is not provided at present")
        ctype = q.get("type")
        if not ctype or ctype not in self.grids:
            return _err("400100", "This type of Candlestick is currently not provided.")
        grid = self.grids[ctype]
        secs: dict[str, int] = {}
        for name in ("startAt", "endAt"):
            raw = q.get(name)
            try:
                secs[name] = int(raw) if raw else 0
            except ValueError:
                return _err("400100", f"{name} is invalid")
        if secs["startAt"] and secs["endAt"] and secs["startAt"] > secs["endAt"]:
            return _err("400100", "startAt can not be greater than endAt")
        start = secs["startAt"] * 1000 if secs["startAt"] else None
        # endAt is exclusive: ccxt asks endAt = since + limit * tf and expects limit bars
        end = secs["endAt"] * 1000 - 1 if secs["endAt"] else None
        spec = self.specs[symbol]
        bars = self.server.bars(symbol, grid, start=start, end=end, limit=MAX_ROWS,
                                from_start=False, floor=LISTING_MS)
        return _ok([self._row(spec, c) for c in reversed(bars)])

    async def bullet_public(self, request: web.Request) -> web.Response:
        token = self._new_token()
        host = self.server.sim.host
        endpoint = f"ws://{host}:{self.server.port}{WS_PATH}"
        return _ok({"token": token, "instanceServers": [{
            "endpoint": endpoint, "encrypt": False, "protocol": "websocket",
            "pingInterval": PING_INTERVAL_MS, "pingTimeout": PING_TIMEOUT_MS,
        }]})

    def _new_token(self) -> str:
        n = next(self._token_seq)
        digest = hashlib.sha256(f"{self.server.sim.seed}:{n}".encode()).hexdigest()
        token = f"2neAiuYvAU61ZDXANAGAsiL4-{digest[:48]}.sim{n}=="
        self._tokens[token] = None
        while len(self._tokens) > TOKENS_KEPT:
            self._tokens.popitem(last=False)
        return token

    # ------------------------------------------------------------------ formatting
    def _symbol_info(self, symbol: str) -> dict[str, Any]:
        spec = self.specs[symbol]
        mid = self.market_id(symbol)
        return {
            "symbol": mid, "name": mid, "baseCurrency": spec.base, "quoteCurrency": spec.quote,
            "feeCurrency": spec.quote, "market": "USDS", "baseMinSize": spec.lot_str(),
            "quoteMinSize": "0.1", "baseMaxSize": "10000000000", "quoteMaxSize": "99999999",
            "baseIncrement": spec.lot_str(), "quoteIncrement": "0.000001",
            "priceIncrement": spec.tick_str(), "priceLimitRate": "0.1", "minFunds": "0.1",
            "isMarginEnabled": True, "enableTrading": True, "feeCategory": 1,
            "makerFeeCoefficient": "1.00", "takerFeeCoefficient": "1.00", "st": False,
            "callauctionIsEnabled": False, "callauctionPriceFloor": None,
            "callauctionPriceCeiling": None, "callauctionFirstStageStartTime": None,
            "callauctionSecondStageStartTime": None, "callauctionThirdStageStartTime": None,
            "tradingStartTime": None,
        }

    @staticmethod
    def _turnover(spec: MarketSpec, c: Candle) -> str:
        _ts, o, h, lo, cl, v = c
        return f"{v * (o + h + lo + cl) / 4.0:.{max(2, spec.price_decimals)}f}"

    def _row(self, spec: MarketSpec, c: Candle) -> list[str]:
        ts, o, h, lo, cl, v = c
        return [str(ts // 1000), spec.fmt_price(o), spec.fmt_price(cl), spec.fmt_price(h),
                spec.fmt_price(lo), spec.fmt_volume(v), self._turnover(spec, c)]

    def encode(self, stream: Stream, candle: Candle, closed: bool, event_ms: int,
               flavors: set[str]) -> dict[str, bytes]:
        topic, market_id = stream.ident
        row = self._row(self.specs[stream.symbol], candle)
        msg = {"topic": topic, "type": "message", "subject": "trade.candles.update",
               "data": {"symbol": market_id, "candles": row, "time": event_ms * 1_000_000}}
        return {"default": dumps(msg)}

    # ------------------------------------------------------------------ WebSocket
    async def ws(self, request: web.Request) -> web.StreamResponse:
        return await self.server.serve_ws(request, "default", self._on_text, self._on_open)

    async def _on_open(self, conn: Connection) -> None:
        q = conn.request.query
        session = q.get("connectId") or conn.id
        conn.extra["session"] = session
        if q.get("token") not in self._tokens:
            logger.warning("kucoin sim: socket with an unknown token refused")
            await self._reply(conn, {"id": session, "type": "error", "code": 401,
                                     "data": "token is expired"})
            self.server.spawn(self._close(conn))
            return
        await self._reply(conn, {"id": session, "type": "welcome"})

    async def _close(self, conn: Connection) -> None:
        try:
            await conn.ws.close(code=1000, message=b"token is expired")
        except Exception as exc:  # the peer went away first
            logger.debug("kucoin sim: close of %s failed: %r", conn.id, exc)

    async def _reply(self, conn: Connection, obj: dict[str, Any]) -> None:
        await self.server.send(conn, dumps(obj))

    async def _on_text(self, conn: Connection, text: str) -> None:
        try:
            msg = loads(text)
        except ValueError:
            msg = None
        if not isinstance(msg, dict):
            await self._reply(conn, {"id": conn.extra.get("session", conn.id), "type": "error",
                                     "code": 400, "data": "message format is not supported"})
            return
        req_id = str(msg.get("id") or "")
        kind = msg.get("type")
        if self.limits.too_fast(conn.extra):
            await self._refuse(conn, req_id, "exceed max permits per 10 seconds")
            return
        if kind == "ping":
            await self._reply(conn, {"id": req_id, "type": "pong", "timestamp": self.server.now_ms() * 1000})
            return
        if kind not in ("subscribe", "unsubscribe"):
            await self._reply(conn, {"id": req_id, "type": "error", "code": 415,
                                     "data": "type is not supported"})
            return
        topic = msg.get("topic")
        if not isinstance(topic, str) or not topic:
            await self._reply(conn, {"id": req_id, "type": "error", "code": 400,
                                     "data": "topic is required"})
            return
        over = self._over_limit(conn, kind, topic)
        if over is not None:
            await self._refuse(conn, req_id, over)
            return
        if kind == "subscribe":
            self.server.stats.subscribe_requests += 1
        else:
            self.server.stats.unsubscribe_requests += 1
        others: set[str] = conn.extra.setdefault("others", set())
        if kind == "unsubscribe":
            others.discard(topic)
        if topic.startswith(CANDLE_TOPIC):
            found = self._candle_topic(topic)
            if found is None:
                await self._reply(conn, {"id": req_id, "type": "error", "code": 404,
                                         "data": f"topic {topic} is not found"})
                return
            symbol, ctype = found
            key = (symbol, self.grids[ctype])
            if kind == "subscribe":
                self.server.subscribe(conn, key, topic, ident=(topic, self.market_id(symbol)))
            else:
                self.server.unsubscribe(conn, key)
        elif kind == "subscribe":
            logger.warning("kucoin sim: topic %r is accepted but not simulated (nothing will be "
                           "pushed)", topic)
            self.server.stats.ignored_streams += 1
            others.add(topic)
        if msg.get("response", True) is not False:
            await self._reply(conn, {"id": req_id, "type": "ack"})

    def _over_limit(self, conn: Connection, kind: str, topic: str) -> str | None:
        """kucoin's refusal of a subscribe past its topic limits, or None."""
        if kind != "subscribe" or topic in conn.subs.values() or topic in conn.extra.get("others", ()):
            return None
        named = len(topic.partition(":")[2].split(","))
        cap = self.limits.get("args_per_request")
        if cap and named > cap:
            return f"exceed max subscription count limitation of {cap} per time"
        held = len(conn.subs) + sum(len(t.partition(":")[2].split(","))
                                    for t in conn.extra.get("others", ()))
        if self.limits.too_many_streams(held, named):
            cap = self.limits.get("streams_per_connection")
            return f"exceed max subscription count limitation of {cap} per session"
        return None

    async def _refuse(self, conn: Connection, req_id: str, why: str) -> None:
        self.server.stats.ws_limit_refusals += 1
        await self._reply(conn, {"id": req_id, "type": "error", "code": 509, "data": why})

    def _candle_topic(self, topic: str) -> tuple[str, str] | None:
        """``/market/candles:BTC-USDT_1min`` -> (unified symbol, type) when simulated."""
        market_id, sep, ctype = topic[len(CANDLE_TOPIC):].rpartition("_")
        symbol = self.by_id.get(market_id)
        if not sep or symbol is None or ctype not in self.grids:
            return None
        return symbol, ctype
