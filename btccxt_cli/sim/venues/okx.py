"""OKX v5: public REST and the candle WebSocket channels, as ccxt reads them.

REST (GET; errors as ``{"code": "51001", "msg": "Instrument ID does not exist", "data": []}``)::

    /api/v5/public/time
    /api/v5/public/instruments?instType=SPOT|SWAP|FUTURES|OPTION|MARGIN   (FUTURES/OPTION empty)
    /api/v5/market/candles          latest 1440 bars, limit <= 300 (default 100)
    /api/v5/market/history-candles  any age, limit <= 300 (default 100)
    /api/v5/market/ticker?instId=   24 h statistics (venues/tickers.py); 50014 without instId
    /api/v5/asset/currencies        empty (ccxt asks for it when API keys are set)

Candle rows are newest first: ``[ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]``, all
strings, ``confirm`` ``"0"`` for the forming candle. ``after=T`` keeps bars with ``ts < T``,
``before=T`` bars with ``ts > T``; the newest ``limit`` bars in that window are returned. For
spot ``vol`` is in base currency and ``volCcy`` in quote; for swaps ``vol`` counts contracts and
``volCcy`` is base currency (ccxt reads index 5 for spot, 6 for swaps, so both give base volume).

A ticker: ``last`` is the matching engine's price now, ``bidPx``/``askPx`` one tick around it,
``open24h``/``high24h``/``low24h`` and the volumes from the 1h bars of the last 24 h; sizes as in
candles (spot base currency, swaps contracts; ``volCcy24h`` is quote volume for spot and base
volume for swaps; ccxt's ``fetch_ticker`` takes ``vol24h`` as ``baseVolume``, so for swaps that is
in contracts); ``sodUtc0``/``sodUtc8`` the price at 00:00 UTC and at 00:00 Hong Kong time::

    {"instType": "SPOT", "instId": "BTC-USDT", "last": "60659.8", "lastSz": "0.00001",
     "askPx": "60659.9", "askSz": "0.42371", "bidPx": "60659.7", "bidSz": "0.42371",
     "open24h": "61282.3", "high24h": "61503.9", "low24h": "60265.7",
     "volCcy24h": "2033620402.09", "vol24h": "33439.84783", "ts": "1700004034567",
     "sodUtc0": "61403.1", "sodUtc8": "60943.1"}

Bars: ``1s 1m 3m 5m 15m 30m 1H 2H 4H``, ``6H 12H 1D 1W 1M 3M`` and ``6Hutc 12Hutc 1Dutc 1Wutc
1Mutc 3Mutc`` (and the same as ``candle<bar>`` channels). Like okx, the plain ``6H`` and longer
bars follow Hong Kong time (a ``1D`` bar opens at 16:00 UTC, a ``1W`` on Sunday 16:00 UTC, a
``1M`` at 16:00 UTC on the month's last day); the ``utc`` ones open at 00:00 UTC (weeks on
Monday, months on the 1st), which is what ccxt's REST asks for from ``6h`` up. Real okx has no 1s bars on REST; the simulator serves them so tests can
run on 1s bars (``make_exchange`` adds ``1s`` to ccxt's okx timeframes in simulator mode).

Private: signed REST in ``okx_private.py``; ``/ws/v5/private`` (login, ``orders``, ``account``)
in ``okx_private_ws.py``.

WebSocket: ``/ws/v5/business`` carries candle channels, ``/ws/v5/public`` refuses them with
60018 as okx does since 2023. ``{"op": "subscribe", "args": [{"channel": "candle1m",
"instId": "BTC-USDT"}]}`` is answered per arg with ``{"event": "subscribe", "arg": {...},
"connId": "..."}``; text ``ping`` gets ``pong``. A push::

    {"arg": {"channel": "candle1m", "instId": "BTC-USDT"},
     "data": [["1626690720000", "31334", "31334", "31334", "31334", "0.0077", "241.27", "241.27", "0"]]}
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
    okx_private,
    retry_after_headers,
)
from btccxt_cli.sim.venues.okx_private_ws import OkxPrivateWs, event_error, read_request
from btccxt_cli.sim.venues.okx_swap import SwapAccount
from btccxt_cli.sim.venues.tickers import day_stats
from btccxt_cli.timeframes import BarGrid

if TYPE_CHECKING:
    from btccxt_cli.sim.accounts import OrderEvent
    from btccxt_cli.sim.wire import Connection, PrivateSession, Stream

logger = logging.getLogger(__name__)

__all__ = ["OkxVenue"]

CANDLES_MAX = 300
HISTORY_MAX = 300  # ccxt 4.5 asks history-candles for 300; okx documents 300 since 2024
DEFAULT_LIMIT = 100
RECENT_BARS = 1440  # /market/candles serves only the latest 1440 bars
_UTC_LONG: dict[str, BarGrid] = {
    "6H": EPOCH_GRIDS["6h"], "12H": EPOCH_GRIDS["12h"], "1D": EPOCH_GRIDS["1d"], "1W": MONDAY_WEEK,
    "1M": UTC_MONTH, "3M": BarGrid(months=3),
}
#: okx bar -> where its bars open: up to 4H on multiples of their length since 1970; from 6H up
#: on Hong Kong time, or on UTC with the ``utc`` suffix
BARS: dict[str, BarGrid] = {
    **{bar: EPOCH_GRIDS[tf] for bar, tf in (("1s", "1s"), ("1m", "1m"), ("3m", "3m"), ("5m", "5m"),
                                            ("15m", "15m"), ("30m", "30m"), ("1H", "1h"),
                                            ("2H", "2h"), ("4H", "4h"))},
    **{bar: hk_grid(grid) for bar, grid in _UTC_LONG.items()},
    **{bar + "utc": grid for bar, grid in _UTC_LONG.items()},
}


def _ok(data: list[Any]) -> web.Response:
    return json_response({"code": "0", "msg": "", "data": data})


def _err(code: str, msg: str, status: int = 200) -> web.Response:
    return json_response({"code": code, "msg": msg, "data": []}, status=status)


def _channel_missing(channel: str, inst_id: str) -> str:
    return (f"Wrong URL or channel:{channel},instId:{inst_id} doesn't exist. Please use the correct "
            "URL, channel and parameters referring to API document.")


class OkxVenue(Venue):
    """OKX v5 (``www.okx.com`` / ``ws.okx.com``): spot and linear swaps."""

    id = "okx"
    # okx refuses a request whose args together exceed 64 KB (docs/data-core.md)
    ws_limits = {"request_bytes": 65536}
    default_symbols = MAJORS + SWAPS
    grids = BARS
    # what ccxt's REST asks for: the utc bars from 6h up
    intervals = {"1s": "1s", "1m": "1m", "3m": "3m", "5m": "5m", "15m": "15m", "30m": "30m",
                 "1h": "1H", "2h": "2H", "4h": "4H", "6h": "6Hutc", "12h": "12Hutc", "1d": "1Dutc",
                 "1w": "1Wutc", "1M": "1Mutc", "3M": "3Mutc"}
    # private API (venues/okx_private.py): fee rates and the first order id
    maker_fee = okx_private.MAKER_FEE
    taker_fee = okx_private.TAKER_FEE
    first_order_id = okx_private.FIRST_ORDER_ID
    derivatives = True  # swaps trade with positions (venues/okx_swap.py)
    default_leverage = 10.0

    def __init__(self, server: Any, symbols: list[str] | None) -> None:
        super().__init__(server, symbols)
        self.by_id: dict[str, str] = {self.inst_id(s): s for s in self.symbols}
        self._instruments = {"SPOT": [], "SWAP": []}
        for s in self.symbols:
            info = self._instrument(s)
            self._instruments[info["instType"]].append(info)
        self.private_ws = OkxPrivateWs(self)  # /ws/v5/private: login, orders, account
        self.swap = SwapAccount(self)  # positions, leverage, modes, funding

    def ct_val(self, symbol: str) -> float:
        """Base units per contract (``ctVal``); 1 for spot."""
        spec = self.specs[symbol]
        return 10.0 ** -(spec.contract_value_decimals or 0) if spec.is_swap else 1.0

    def inst_type(self, symbol: str) -> str:
        """okx's ``instType`` of ``symbol``: SWAP or SPOT."""
        return "SWAP" if self.specs[symbol].is_swap else "SPOT"

    def contracts(self, symbol: str, base: float) -> float:
        """A base amount in okx's size unit: contracts for swaps, base for spot."""
        spec = self.specs[symbol]
        if not spec.is_swap:
            return base
        return round(base / self.ct_val(symbol), spec.contract_lot_decimals)

    def base_amount(self, symbol: str, sz: float) -> float:
        """okx's ``sz`` (contracts for swaps) in base currency."""
        spec = self.specs[symbol]
        return round(sz * self.ct_val(symbol), spec.lot_decimals) if spec.is_swap else sz

    def check_symbol(self, symbol: str) -> None:
        _base, quote, settle = split_symbol(symbol)
        if settle is not None and settle != quote:
            raise ValueError(f"the okx simulator serves spot and linear swaps only, not {symbol!r}")

    @staticmethod
    def inst_id(symbol: str) -> str:
        pair, _, settle = symbol.partition(":")
        return pair.replace("/", "-") + ("-SWAP" if settle else "")

    # ------------------------------------------------------------------ routes
    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/v5/public/time", self.time),
            web.get("/api/v5/public/instruments", self.instruments),
            web.get("/api/v5/market/candles", self.candles),
            web.get("/api/v5/market/history-candles", self.history_candles),
            web.get("/api/v5/market/ticker", self.ticker),
            # private, asked by load_markets() only when API keys are set: no currencies
            web.get("/api/v5/asset/currencies", self.currencies),
            web.get("/ws/v5/business", self.ws_business),
            web.get("/ws/v5/public", self.ws_public),
            *okx_private.private_routes(self),  # signed: balance, orders, fills
            *self.swap.routes(),  # positions, leverage, modes, funding
            *self.private_ws.routes(),  # /ws/v5/private: login, orders, account
        ]

    def on_order_event(self, event: OrderEvent, sessions: list[PrivateSession]) -> None:
        """Order events of the sessions' account go out on the private socket's channels."""
        self.private_ws.on_order_event(event, sessions)

    # ------------------------------------------------------------------ errors
    def error_response(self, status: int, retry_after: float | None = None) -> web.Response:
        headers = retry_after_headers(status, retry_after)
        if status in (418, 429):
            return json_response({"msg": "Too Many Requests", "code": "50011"}, status, headers)
        if status == 500:
            return json_response({"code": "50026", "msg": "System error, please try again later.",
                                  "data": []}, status)
        if status == 503:
            return json_response({"code": "50001", "msg": "Service temporarily unavailable. Please "
                                  "try again later.", "data": []}, status)
        return web.Response(status=status, text="<html><body><h1>502 Bad Gateway</h1></body></html>",
                            content_type="text/html")

    # ------------------------------------------------------------------ REST
    async def time(self, request: web.Request) -> web.Response:
        return _ok([{"ts": str(self.server.now_ms())}])

    async def currencies(self, request: web.Request) -> web.Response:
        return _ok([])

    async def instruments(self, request: web.Request) -> web.Response:
        inst_type = request.query.get("instType")
        if not inst_type:
            return _err("50014", "Parameter instType can not be empty.", 400)
        if inst_type not in ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION"):
            return _err("51000", "Parameter instType error", 400)
        if inst_type == "OPTION" and not (request.query.get("uly") or request.query.get("instFamily")):
            return _err("50014", "Parameter uly can not be empty.", 400)
        data = list(self._instruments.get("SPOT" if inst_type == "MARGIN" else inst_type, []))
        inst_id = request.query.get("instId")
        if inst_id:
            data = [d for d in data if d["instId"] == inst_id]
            if not data:
                return _err("51001", "Instrument ID does not exist")
        return _ok(data)

    async def candles(self, request: web.Request) -> web.Response:
        return self._candles(request, CANDLES_MAX, recent_only=True)

    async def history_candles(self, request: web.Request) -> web.Response:
        return self._candles(request, HISTORY_MAX, recent_only=False)

    def _candles(self, request: web.Request, max_limit: int, recent_only: bool) -> web.Response:
        q = request.query
        inst_id = q.get("instId")
        if not inst_id:
            return _err("50014", "Parameter instId can not be empty.", 400)
        symbol = self.by_id.get(inst_id)
        if symbol is None:
            return _err("51001", "Instrument ID does not exist")
        bar = q.get("bar") or "1m"
        if bar not in BARS:
            return _err("51000", "Parameter bar error", 400)
        grid = BARS[bar]
        ints: dict[str, int | None] = {}
        for name in ("after", "before", "limit"):
            raw = q.get(name)
            if raw is None or raw == "":
                ints[name] = None
                continue
            try:
                ints[name] = int(raw)
            except ValueError:
                return _err("51000", f"Parameter {name} error", 400)
        limit = DEFAULT_LIMIT if ints["limit"] is None else ints["limit"]
        if limit < 1:
            return _err("51000", "Parameter limit error", 400)
        limit = min(limit, max_limit)
        after, before = ints["after"], ints["before"]
        now = self.server.now_ms()
        floor = LISTING_MS
        closed_before = grid.open_of(now)  # the forming bar's open
        if recent_only:
            floor = max(floor, grid.shift(closed_before, -(RECENT_BARS - 1)))
        spec = self.specs[symbol]
        bars = self.server.bars(symbol, grid, start=None if before is None else before + 1,
                                end=None if after is None else after - 1, limit=limit,
                                from_start=False, floor=floor)
        rows = [self._row(spec, c, c[0] < closed_before) for c in reversed(bars)]
        return _ok(rows)

    async def ticker(self, request: web.Request) -> web.Response:
        """24 h statistics of one instrument (``venues/tickers.py``)."""
        inst_id = request.query.get("instId")
        if not inst_id:
            return _err("50014", "Parameter instId can not be empty.", 400)
        symbol = self.by_id.get(inst_id)
        if symbol is None:
            return _err("51001", "Instrument ID does not exist")
        return _ok([self._ticker(symbol)])

    def _ticker(self, symbol: str) -> dict[str, str]:
        spec = self.specs[symbol]
        st = day_stats(self, symbol)
        px = spec.fmt_price
        if spec.is_swap:  # sizes in contracts, vol24h contracts, volCcy24h base currency
            cd = spec.contract_lot_decimals
            vol = f"{st.lots / 10 ** cd:.{cd}f}"
            vol_ccy = spec.fmt_volume(st.volume)
            last_sz = _dec_str(cd)
            top = f"{self.contracts(symbol, st.top_size):.{cd}f}"
        else:  # sizes and vol24h in base currency, volCcy24h in quote
            vol = spec.fmt_volume(st.volume)
            vol_ccy = f"{st.quote_volume:.{max(2, spec.price_decimals)}f}"
            last_sz = spec.lot_str()
            top = spec.fmt_volume(st.top_size)
        engine = self.server.engine
        return {
            "instType": self.inst_type(symbol), "instId": self.inst_id(symbol),
            "last": px(st.last), "lastSz": last_sz, "askPx": px(st.ask), "askSz": top,
            "bidPx": px(st.bid), "bidSz": top, "open24h": px(st.open), "high24h": px(st.high),
            "low24h": px(st.low), "volCcy24h": vol_ccy, "vol24h": vol, "ts": str(st.now),
            # the price at the day's open, UTC and Hong Kong (UTC+8) days
            "sodUtc0": px(engine.price(symbol, BARS["1Dutc"].open_of(st.now))),
            "sodUtc8": px(engine.price(symbol, BARS["1D"].open_of(st.now))),
        }

    # ------------------------------------------------------------------ formatting
    def _instrument(self, symbol: str) -> dict[str, Any]:
        spec = self.specs[symbol]
        list_time = str(LISTING_MS)
        common = {
            "alias": "", "auctionEndTime": "", "category": "1", "contTdSwTime": list_time,
            "expTime": "", "futureSettlement": False, "instFamily": "", "instId": self.inst_id(symbol),
            "instIdCode": 1000 + self.symbols.index(symbol), "listTime": list_time,
            "maxIcebergSz": "999999999.0000000000000000", "maxLmtAmt": "20000000",
            "maxMktAmt": "1000000", "maxStopSz": "1000000", "maxTriggerSz": "999999999",
            "maxTwapSz": "999999999", "openType": "", "optType": "", "ruleType": "normal",
            "state": "live", "stk": "", "tickSz": spec.tick_str(), "tradeQuoteCcyList": [],
            "uly": "",
        }
        if not spec.is_swap:
            common.update({
                "instType": "SPOT", "baseCcy": spec.base, "quoteCcy": spec.quote, "settleCcy": "",
                "ctMult": "", "ctType": "", "ctVal": "", "ctValCcy": "", "lever": "10",
                "lotSz": spec.lot_str(), "minSz": spec.lot_str(), "maxLmtSz": "9999999999",
                "maxMktSz": "1000000", "tradeQuoteCcyList": [spec.quote],
            })
            return common
        ct_dec = spec.contract_value_decimals or 0
        fam = f"{spec.base}-{spec.quote}"
        common.update({
            "instType": "SWAP", "baseCcy": "", "quoteCcy": "", "settleCcy": spec.settle,
            "ctMult": "1", "ctType": "linear", "ctVal": _dec_str(ct_dec), "ctValCcy": spec.base,
            "lever": "100", "lotSz": _dec_str(spec.contract_lot_decimals),
            "minSz": _dec_str(spec.contract_lot_decimals), "maxLmtSz": "100000000",
            "maxMktSz": "12000", "uly": fam, "instFamily": fam,
        })
        return common

    @staticmethod
    def _row(spec: MarketSpec, c: Candle, closed: bool) -> list[str]:
        ts, o, h, lo, cl, v = c
        pd = spec.price_decimals
        quote = f"{v * (o + h + lo + cl) / 4.0:.{max(2, pd)}f}"
        base = spec.fmt_volume(v)
        if spec.is_swap:
            # contracts = base / ctVal, exact in integer lots
            lots = int(round(v * spec.lot_scale))
            cd = spec.contract_lot_decimals
            vol = f"{lots / 10 ** cd:.{cd}f}"
            return [str(ts), spec.fmt_price(o), spec.fmt_price(h), spec.fmt_price(lo),
                    spec.fmt_price(cl), vol, base, quote, "1" if closed else "0"]
        return [str(ts), spec.fmt_price(o), spec.fmt_price(h), spec.fmt_price(lo),
                spec.fmt_price(cl), base, quote, quote, "1" if closed else "0"]

    def encode(self, stream: Stream, candle: Candle, closed: bool, event_ms: int,
               flavors: set[str]) -> dict[str, bytes]:
        arg = stream.ident
        row = self._row(self.specs[stream.symbol], candle, closed)
        return {"default": dumps({"arg": arg, "data": [row]})}

    # ------------------------------------------------------------------ WebSocket
    async def ws_business(self, request: web.Request) -> web.StreamResponse:
        return await self.server.serve_ws(request, "default", self._handler(business=True))

    async def ws_public(self, request: web.Request) -> web.StreamResponse:
        return await self.server.serve_ws(request, "default", self._handler(business=False))

    def _handler(self, business: bool) -> Any:
        async def on_text(conn: Connection, text: str) -> None:
            await self._on_text(conn, text, business)
        return on_text

    async def _on_text(self, conn: Connection, text: str, business: bool) -> None:
        req = await read_request(self.server, conn, text)
        if req is None:
            return
        op, args = req
        if op in ("subscribe", "unsubscribe"):
            if self.limits.too_many_args(args, len(dumps(args))):
                self.server.stats.ws_limit_refusals += 1
                await self._event_error(conn, "60012", f"Invalid request: {len(args)} args "
                                        "exceed the limit of one request")
                return
            if op == "subscribe":
                self.server.stats.subscribe_requests += 1
            else:
                self.server.stats.unsubscribe_requests += 1
            for arg in args:
                await self._sub_one(conn, op, arg, business)
        elif op == "login":
            await self._event_error(conn, "60009", "Login failed.")
        else:
            await self._event_error(conn, "60019", f"Invalid op: op :{op}")

    async def _sub_one(self, conn: Connection, op: str, arg: dict[str, Any], business: bool) -> None:
        channel = str(arg.get("channel", ""))
        inst_id = str(arg.get("instId", ""))
        bar = channel[len("candle"):] if channel.startswith("candle") else None
        symbol = self.by_id.get(inst_id)
        if bar is None:
            if business:
                await self._event_error(conn, "60018", _channel_missing(channel, inst_id))
                return
            logger.warning("okx sim: channel %r is accepted but not simulated (nothing will be "
                           "pushed)", channel)
            self.server.stats.ignored_streams += 1
            await self.server.send(conn, dumps({"event": op, "arg": arg, "connId": conn.id}))
            return
        if not business or bar not in BARS or symbol is None:
            await self._event_error(conn, "60018", _channel_missing(channel, inst_id))
            return
        key = (symbol, BARS[bar])
        label = f"{channel}:{inst_id}"
        if op == "subscribe":
            self.server.subscribe(conn, key, label, ident={"channel": channel, "instId": inst_id})
        else:
            self.server.unsubscribe(conn, key)
        await self.server.send(conn, dumps({"event": op, "arg": {"channel": channel, "instId": inst_id},
                                            "connId": conn.id}))

    async def _event_error(self, conn: Connection, code: str, msg: str) -> None:
        await event_error(self.server, conn, code, msg)



def _dec_str(decimals: int) -> str:
    """``2`` -> ``"0.01"``, ``0`` -> ``"1"``, ``-2`` -> ``"100"``."""
    if decimals <= 0:
        return str(10 ** -decimals)
    return "0." + "0" * (decimals - 1) + "1"
