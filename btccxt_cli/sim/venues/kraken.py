"""Kraken spot: public REST ``/0/public`` and the WebSocket v2 ``ohlc`` channel, as ccxt reads them.

REST (GET; answers are ``{"error": [], "result": {...}}``; errors ride in the same shape with
HTTP 200, e.g. ``{"error": ["EQuery:Unknown asset pair"], "result": {}}``)::

    /0/public/Time  /0/public/SystemStatus  /0/public/Assets  /0/public/AssetPairs
    /0/public/OHLC?pair=XXBTZUSD&interval=1&since=1700000000

Pairs keep kraken's names: ``XXBTZUSD`` (altname ``XBTUSD``, wsname ``XBT/USD``) for legacy
pairs, ``SOLUSD``, ``XDGUSD``, ``XBTUSDT`` for the others; assets ``XXBT`` (``XBT``), ``XXDG``,
``ZUSD`` ... which ccxt turns back into BTC, DOGE, USD. An OHLC row is ``[time (s), "open",
"high", "low", "close", "vwap", "volume", count]``; an answer holds at most the newest 720 rows
(kraken keeps no older ones), those with ``time > since`` (``since`` is exclusive, in seconds),
and always ends with the forming candle, plus ``"last"``: the open time of the newest committed
bar, the ``since`` to poll with next. Intervals (minutes) ``1 5 15 30 60 240 1440 10080 21600``
(10080: weeks from Thursday 00:00 UTC, multiples of 7 days since 1970; 21600: 15 days, which
ccxt calls ``2w``) and the simulator extra ``2``, which stands for 1-second bars: kraken's interval is an integer number of
minutes and ccxt subtracts ``interval * 60`` s from ``since`` (harmless: ccxt drops the extra
rows), so a 1 s timeframe needs an unused positive integer (see docs/simulator.md).

WebSocket v2 at ``/v2`` (ccxt.pro 4.5 uses v2 for OHLC): on connect ``{"channel": "status",
...}``; ``{"method": "subscribe", "params": {"channel": "ohlc", "symbol": ["BTC/USD"],
"interval": 1}, "req_id": 1}`` is answered per symbol by ``{"method": "subscribe", "result":
{"channel": "ohlc", "interval": 1, "snapshot": true, "symbol": "BTC/USD"}, "success": true,
"req_id": 1, "time_in": ..., "time_out": ...}``, then a snapshot of the newest bars; later pushes
are updates. ``{"method": "ping"}`` gets ``{"method": "pong", ...}`` (ccxt pings every 6 s and
gives up after 12 s without a pong); ``{"channel": "heartbeat"}`` goes out every second. A push::

    {"channel": "ohlc", "type": "update", "timestamp": "2023-10-04T16:26:30.524394Z",
     "data": [{"symbol": "BTC/USD", "open": 27450.1, "high": 27460.0, "low": 27449.9,
     "close": 27455.2, "trades": 12, "volume": 3.4021, "vwap": 27453.8,
     "interval_begin": "2023-10-04T16:25:00.000000000Z", "interval": 1,
     "timestamp": "2023-10-04T16:26:00.000000Z"}]}

Kraken has no closed flag (``timestamp`` is the bar's end): a candle is closed when one with a
later ``interval_begin`` arrives. Errors: ``{"error": "Currency pair not supported NOPE/USD",
"method": "subscribe", "req_id": 1, "success": false, "symbol": "NOPE/USD", ...}``; other
channels (ticker, book, trade) are acknowledged and stay silent.

Must not import ccxt or anything from the client side of btccxt.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from btccxt_cli.sim.grids import EPOCH_GRIDS, THURSDAY_WEEK
from btccxt_cli.sim.market import LISTING_MS, Candle, MarketSpec
from btccxt_cli.sim.venues import (
    Venue,
    dumps,
    json_response,
    loads,
    retry_after_headers,
)
from btccxt_cli.timeframes import BarGrid

if TYPE_CHECKING:
    from btccxt_cli.sim.wire import Connection, Stream

logger = logging.getLogger(__name__)

__all__ = ["KrakenVenue", "SIM_1S_INTERVAL"]

MAX_ROWS = 720
SNAPSHOT_BARS = 30  # newest bars sent on subscribe
HEARTBEAT_S = 1.0
SIM_1S_INTERVAL = 2  # the simulator's 1-second bars (kraken has no 2-minute bars)
#: interval (minutes; 2 = the 1 s extra) -> where those bars open: every one on multiples of its
#: length since 1970 (weeks on Thursday; 21600 minutes are 15 days)
INTERVALS: dict[int, BarGrid] = {
    SIM_1S_INTERVAL: EPOCH_GRIDS["1s"], 1: EPOCH_GRIDS["1m"], 5: EPOCH_GRIDS["5m"],
    15: EPOCH_GRIDS["15m"], 30: EPOCH_GRIDS["30m"], 60: EPOCH_GRIDS["1h"], 240: EPOCH_GRIDS["4h"],
    1440: EPOCH_GRIDS["1d"], 10080: THURSDAY_WEEK, 21600: BarGrid.fixed(15 * 86_400_000),
}
#: unified code -> (kraken asset id, altname) where kraken keeps its X/Z names
LEGACY_ASSETS = {
    "BTC": ("XXBT", "XBT"), "ETH": ("XETH", "ETH"), "LTC": ("XLTC", "LTC"), "XRP": ("XXRP", "XRP"),
    "DOGE": ("XXDG", "XDG"), "XLM": ("XXLM", "XLM"), "XMR": ("XXMR", "XMR"), "ETC": ("XETC", "ETC"),
    "ZEC": ("XZEC", "ZEC"), "USD": ("ZUSD", "USD"), "EUR": ("ZEUR", "EUR"), "GBP": ("ZGBP", "GBP"),
    "JPY": ("ZJPY", "JPY"), "CAD": ("ZCAD", "CAD"),
}
#: pairs of two of these are named asset id + asset id (XXBTZUSD), all others altname + altname
_LEGACY_PAIR_BASES = {"BTC", "ETH", "LTC", "XRP", "XLM", "XMR", "ETC", "ZEC"}
_FIAT = {"USD", "EUR", "GBP", "JPY", "CAD"}


def _iso(ms: int, digits: int = 6) -> str:
    """``2023-10-04T16:25:00.000000Z`` (``digits`` fractional digits)."""
    secs, rem = divmod(ms, 1000)
    frac = f"{rem:03d}".ljust(digits, "0")
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac}Z"


class KrakenVenue(Venue):
    """Kraken spot (``api.kraken.com`` / ``ws.kraken.com/v2``)."""

    id = "kraken"
    default_symbols = (
        "BTC/USD", "ETH/USD", "SOL/USD", "XRP/USD", "ADA/USD", "DOGE/USD", "LTC/USD", "DOT/USD",
        "LINK/USD", "BTC/USDT", "ETH/USDT",
    )
    intervals = {"1s": str(SIM_1S_INTERVAL), "1m": "1", "5m": "5", "15m": "15", "30m": "30",
                 "1h": "60", "4h": "240", "1d": "1440", "1w": "10080", "2w": "21600"}
    grids = {str(minutes): grid for minutes, grid in INTERVALS.items()}

    def __init__(self, server: Any, symbols: list[str] | None) -> None:
        super().__init__(server, symbols)
        self.pair_id: dict[str, str] = {s: self._pair_id(s) for s in self.symbols}
        self.by_id: dict[str, str] = {}
        for s in self.symbols:  # kraken answers to the pair id and to the altname
            self.by_id[self.pair_id[s]] = s
            self.by_id[self._alt(s)] = s
        self._conn_ids = itertools.count(12_393_906_104_898_154_338)

    def check_symbol(self, symbol: str) -> None:
        if ":" in symbol:
            raise ValueError(f"the kraken simulator serves spot markets only, not {symbol!r}")

    @staticmethod
    def asset(code: str) -> tuple[str, str]:
        """(asset id, altname): ``BTC`` -> ``("XXBT", "XBT")``, ``SOL`` -> ``("SOL", "SOL")``."""
        return LEGACY_ASSETS.get(code, (code, code))

    def _alt(self, symbol: str) -> str:
        spec = self.specs[symbol]
        return self.asset(spec.base)[1] + self.asset(spec.quote)[1]

    def _pair_id(self, symbol: str) -> str:
        spec = self.specs[symbol]
        if spec.base in _LEGACY_PAIR_BASES and spec.quote in _FIAT:
            return self.asset(spec.base)[0] + self.asset(spec.quote)[0]
        return self._alt(symbol)

    # ------------------------------------------------------------------ routes
    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/0/public/Time", self.time),
            web.get("/0/public/SystemStatus", self.system_status),
            web.get("/0/public/Assets", self.assets),
            web.get("/0/public/AssetPairs", self.asset_pairs),
            web.get("/0/public/OHLC", self.ohlc),
            web.get("/v2", self.ws),
        ]

    # ------------------------------------------------------------------ envelopes and errors
    @staticmethod
    def _ok(result: Any) -> web.Response:
        return json_response({"error": [], "result": result})

    @staticmethod
    def _err(error: str, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
        return json_response({"error": [error], "result": {}}, status, headers)

    def error_response(self, status: int, retry_after: float | None = None) -> web.Response:
        if status in (418, 429):
            headers = retry_after_headers(status, retry_after) or None
            return self._err("EGeneral:Too many requests", status, headers)  # ccxt: DDoSProtection
        if status == 500:
            return self._err("EGeneral:Internal error", 500)  # ExchangeNotAvailable
        if status == 503:
            return self._err("EService:Unavailable", 503)  # ExchangeNotAvailable
        return web.Response(status=status, text="<html><body><h1>502 Bad Gateway</h1></body></html>",
                            content_type="text/html")

    # ------------------------------------------------------------------ REST
    async def time(self, request: web.Request) -> web.Response:
        secs = self.server.now_ms() // 1000
        t = time.gmtime(secs)  # kraken pads the day with a space: "Sun,  7 Jun 20 04:07:53 +0000"
        rfc = time.strftime("%a, ", t) + f"{t.tm_mday:2d}" + time.strftime(" %b %y %H:%M:%S +0000", t)
        return self._ok({"unixtime": secs, "rfc1123": rfc})

    async def system_status(self, request: web.Request) -> web.Response:
        return self._ok({"status": "online", "timestamp": _iso(self.server.now_ms())[:19] + "Z"})

    async def assets(self, request: web.Request) -> web.Response:
        result: dict[str, Any] = {}
        for s in self.symbols:
            spec = self.specs[s]
            for code in (spec.base, spec.quote):
                asset_id, alt = self.asset(code)
                fiat = code in _FIAT
                result[asset_id] = {"aclass": "currency", "altname": alt,
                                    "decimals": 4 if fiat else 10,
                                    "display_decimals": 2 if fiat else 5, "status": "enabled"}
        wanted = request.query.get("asset")
        if wanted:
            names = set(wanted.split(","))
            result = {k: v for k, v in result.items() if k in names or v["altname"] in names}
            if not result:
                return self._err("EQuery:Unknown asset")
        return self._ok(result)

    async def asset_pairs(self, request: web.Request) -> web.Response:
        result = {self.pair_id[s]: self._pair_info(s) for s in self.symbols}
        wanted = request.query.get("pair")
        if wanted:
            picked = {}
            for name in wanted.split(","):
                symbol = self.by_id.get(name)
                if symbol is None:
                    return self._err("EQuery:Unknown asset pair")
                picked[self.pair_id[symbol]] = result[self.pair_id[symbol]]
            result = picked
        return self._ok(result)

    async def ohlc(self, request: web.Request) -> web.Response:
        q = request.query
        pair = q.get("pair")
        if not pair:
            return self._err("EGeneral:Invalid arguments")
        symbol = self.by_id.get(pair)
        if symbol is None:
            return self._err("EQuery:Unknown asset pair")
        try:
            interval = int(q.get("interval") or 1)
            since = None if q.get("since") in (None, "") else int(float(q["since"]))
        except ValueError:
            return self._err("EGeneral:Invalid arguments")
        grid = INTERVALS.get(interval)
        if grid is None:
            return self._err("EGeneral:Invalid arguments")
        now = self.server.now_ms()
        cur = grid.open_of(now)
        floor = max(LISTING_MS, grid.shift(cur, -(MAX_ROWS - 1)))  # kraken keeps the newest 720
        bars = self.server.bars(symbol, grid, start=None if since is None else since * 1000 + 1,
                                end=None, limit=MAX_ROWS, from_start=False, floor=floor)
        if not bars or bars[-1][0] != cur:  # the forming candle is always there
            bars.append(self.server.model.partial(symbol, grid.length(cur), cur, now))
        spec = self.specs[symbol]
        return self._ok({self.pair_id[symbol]: [self._row(spec, c) for c in bars],
                         "last": grid.prev_open(cur) // 1000})

    # ------------------------------------------------------------------ formatting
    def _pair_info(self, symbol: str) -> dict[str, Any]:
        spec = self.specs[symbol]
        base_id, base_alt = self.asset(spec.base)
        quote_id, quote_alt = self.asset(spec.quote)
        tiers = [0, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000]
        taker = [0.4, 0.35, 0.24, 0.22, 0.2, 0.18, 0.16, 0.14, 0.12]
        maker = [0.25, 0.2, 0.14, 0.12, 0.1, 0.08, 0.06, 0.04, 0.02]
        return {
            "altname": base_alt + quote_alt, "wsname": f"{base_alt}/{quote_alt}",
            "aclass_base": "currency", "base": base_id, "aclass_quote": "currency",
            "quote": quote_id, "lot": "unit", "cost_decimals": 5,
            "pair_decimals": spec.price_decimals, "lot_decimals": spec.lot_decimals,
            "lot_multiplier": 1, "leverage_buy": [], "leverage_sell": [],
            "fees": [list(t) for t in zip(tiers, taker, strict=True)],
            "fees_maker": [list(t) for t in zip(tiers, maker, strict=True)],
            "fee_volume_currency": "ZUSD", "margin_call": 80, "margin_stop": 40,
            "ordermin": spec.lot_str(), "costmin": "0.5", "tick_size": spec.tick_str(),
            "status": "online",
        }

    @staticmethod
    def _extras(spec: MarketSpec, c: Candle) -> tuple[float, int]:
        """vwap (on the price grid) and trade count."""
        _ts, o, h, lo, cl, v = c
        vwap = round((o + h + lo + cl) / 4.0, spec.price_decimals)
        return vwap, math.isqrt(int(round(v * spec.lot_scale)))

    def _row(self, spec: MarketSpec, c: Candle) -> list[Any]:
        ts, o, h, lo, cl, v = c
        vwap, count = self._extras(spec, c)
        return [ts // 1000, spec.fmt_price(o), spec.fmt_price(h), spec.fmt_price(lo),
                spec.fmt_price(cl), spec.fmt_price(vwap), f"{v:.8f}", count]

    def _ws_candle(self, symbol: str, interval: int, grid: BarGrid, c: Candle) -> dict[str, Any]:
        ts, o, h, lo, cl, v = c
        vwap, count = self._extras(self.specs[symbol], c)
        return {"symbol": symbol, "open": o, "high": h, "low": lo, "close": cl, "trades": count,
                "volume": v, "vwap": vwap, "interval_begin": _iso(ts, 9), "interval": interval,
                "timestamp": _iso(grid.close_of(ts))}

    def encode(self, stream: Stream, candle: Candle, closed: bool, event_ms: int,
               flavors: set[str]) -> dict[str, bytes]:
        interval = stream.ident
        data = [self._ws_candle(stream.symbol, interval, stream.grid, candle)]
        return {"default": dumps({"channel": "ohlc", "type": "update", "timestamp": _iso(event_ms),
                                  "data": data})}

    # ------------------------------------------------------------------ WebSocket v2
    async def ws(self, request: web.Request) -> web.StreamResponse:
        return await self.server.serve_ws(request, "default", self._on_text, self._on_open)

    async def _on_open(self, conn: Connection) -> None:
        await self.server.send(conn, dumps({"channel": "status", "type": "update", "data": [{
            "version": "2.0.10", "system": "online", "api_version": "v2",
            "connection_id": next(self._conn_ids)}]}))
        self.server.spawn(self._heartbeats(conn))

    async def _heartbeats(self, conn: Connection) -> None:
        """``{"channel": "heartbeat"}`` every second once something is subscribed."""
        while self.server.conns.get(conn.id) is conn:
            await asyncio.sleep(HEARTBEAT_S)
            if conn.extra.get("subscribed") and self.server.conns.get(conn.id) is conn:
                await self.server.send(conn, b'{"channel":"heartbeat"}')

    def _reply(self, method: str, req_id: Any, t_in: int, **fields: Any) -> bytes:
        body: dict[str, Any] = {"method": method, **fields}
        if req_id is not None:
            body["req_id"] = req_id
        body.update({"time_in": _iso(t_in), "time_out": _iso(self.server.now_ms())})
        return dumps(body)

    async def _on_text(self, conn: Connection, text: str) -> None:
        t_in = self.server.now_ms()
        try:
            msg = loads(text)
        except ValueError:
            msg = None
        if not isinstance(msg, dict):
            await self.server.send(conn, self._reply("unknown", None, t_in, success=False,
                                                     error="Malformed request"))
            return
        method, req_id = msg.get("method"), msg.get("req_id")
        if method == "ping":
            await self.server.send(conn, self._reply("pong", req_id, t_in))
            return
        if method not in ("subscribe", "unsubscribe"):
            await self.server.send(conn, self._reply(str(method), req_id, t_in, success=False,
                                                     error="Method not found"))
            return
        params = msg.get("params")
        if not isinstance(params, dict):
            await self.server.send(conn, self._reply(method, req_id, t_in, success=False,
                                                     error="Malformed request"))
            return
        if method == "subscribe":
            self.server.stats.subscribe_requests += 1
        else:
            self.server.stats.unsubscribe_requests += 1
        channel = params.get("channel")
        symbols = params.get("symbol") or []
        if channel != "ohlc":
            if method == "subscribe":
                logger.warning("kraken sim: channel %r is accepted but not simulated (nothing will "
                               "be pushed)", channel)
                self.server.stats.ignored_streams += 1
            await self.server.send(conn, self._reply(method, req_id, t_in, success=True,
                                                     result={"channel": channel}))
            return
        if not isinstance(symbols, list) or not symbols:
            await self.server.send(conn, self._reply(method, req_id, t_in, success=False,
                                                     error="Pair field must be an array"))
            return
        interval = params.get("interval")
        if not isinstance(interval, int) or interval not in INTERVALS:
            await self.server.send(conn, self._reply(
                method, req_id, t_in, success=False,
                error=f"Subscription ohlc interval not supported: {interval}"))
            return
        for name in symbols:
            await self._sub_one(conn, method, req_id, t_in, str(name), interval,
                                params.get("snapshot", True) is not False)

    async def _sub_one(self, conn: Connection, method: str, req_id: Any, t_in: int, name: str,
                       interval: int, snapshot: bool) -> None:
        if name not in self.specs:
            await self.server.send(conn, self._reply(method, req_id, t_in, success=False,
                                                     error=f"Currency pair not supported {name}",
                                                     symbol=name))
            return
        grid = INTERVALS[interval]
        key = (name, grid)
        result = {"channel": "ohlc", "interval": interval, "snapshot": snapshot, "symbol": name}
        if method == "unsubscribe":
            self.server.unsubscribe(conn, key)
            await self.server.send(conn, self._reply(method, req_id, t_in, success=True,
                                                     result=result))
            return
        self.server.subscribe(conn, key, f"ohlc-{interval}:{name}", ident=interval)
        conn.extra["subscribed"] = True
        await self.server.send(conn, self._reply(method, req_id, t_in, success=True, result=result))
        if not snapshot or self.server.faults.stalled(self.server.clock.monotonic()):
            return
        # computed after the ack went out, so no push this connection saw is newer
        bars = self.server.bars(name, grid, start=None, end=None, limit=SNAPSHOT_BARS,
                                from_start=False)
        data = [self._ws_candle(name, interval, grid, c) for c in bars]
        await self.server.send(conn, dumps({"channel": "ohlc", "type": "snapshot",
                                            "timestamp": _iso(self.server.now_ms()), "data": data}))
