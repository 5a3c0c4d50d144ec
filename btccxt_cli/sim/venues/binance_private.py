"""Binance spot private REST: signed requests, account, orders and trades, as ccxt sends them.

Authentication is binance's own: the ``X-MBX-APIKEY`` header names the key; ``signature`` is
the lower-case hex HMAC-SHA256, keyed by the secret, of the *total params*: the raw query
string followed by the raw body, without the ``signature`` parameter. ``timestamp`` (ms) must
be at most 1000 ms ahead of the server clock and not older than ``recvWindow`` (default 5000,
at most 60000). Errors, as binance sends them::

    HTTP 401 {"code": -2014, "msg": "API-key format invalid."}                  no/empty key
    HTTP 401 {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}
    HTTP 400 {"code": -1022, "msg": "Signature for this request is not valid."}
    HTTP 400 {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."}
    HTTP 400 {"code": -2010, "msg": "Account has insufficient balance for requested action."}
    HTTP 400 {"code": -2013, "msg": "Order does not exist."}                     GET order
    HTTP 400 {"code": -2011, "msg": "Unknown order sent."}                       DELETE order

Endpoints (all under ``/api/v3``)::

    GET    account      balances (omitZeroBalances=true drops empty ones)
    POST   order        symbol side type [timeInForce] quantity|quoteOrderQty [price]
                        [stopPrice] [trailingDelta] [newClientOrderId]
                        [newOrderRespType ACK|RESULT|FULL]
    GET    order        symbol orderId|origClientOrderId
    DELETE order        symbol orderId|origClientOrderId
    GET    openOrders   [symbol]
    GET    allOrders    symbol
    GET    myTrades     symbol [orderId] [startTime] [endTime] [fromId] [limit<=1000]

Order types: ``MARKET``, ``LIMIT`` (GTC), ``STOP_LOSS``, ``STOP_LOSS_LIMIT`` (GTC). A
``STOP_LOSS`` with ``trailingDelta`` (basis points, 10 to 2000) and no ``stopPrice`` is a
trailing stop: trailing starts at once, and it triggers when the price has moved that far
back from the best price since it was placed (-1013 ``Filter failure: TRAILING_DELTA`` out of
range). A FULL
answer to a market buy (binance's own example)::

    {"symbol": "BTCUSDT", "orderId": 28, "orderListId": -1, "clientOrderId": "6gCrw2kRUAF9CvJDGP16IP",
     "transactTime": 1507725176595, "price": "0.00000000", "origQty": "10.00000000",
     "executedQty": "10.00000000", "origQuoteOrderQty": "0.000000",
     "cummulativeQuoteQty": "10.00000000", "status": "FILLED", "timeInForce": "GTC",
     "type": "MARKET", "side": "SELL", "workingTime": 1507725176595,
     "selfTradePreventionMode": "NONE",
     "fills": [{"price": "4000.00000000", "qty": "1.00000000", "commission": "4.00000000",
                "commissionAsset": "USDT", "tradeId": 56}]}

Must not import ccxt or anything from the client side of btccxt.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from aiohttp import web

from btccxt_cli.sim.accounts import Fill, Reject, SimOrder, hmac_sha256_hex, same_signature
from btccxt_cli.sim.venues import json_response

if TYPE_CHECKING:
    from btccxt_cli.sim.accounts import Engine
    from btccxt_cli.sim.venues.binance import BinanceVenue

logger = logging.getLogger(__name__)

__all__ = ["private_routes", "authenticate", "signed", "number", "Refused", "missing", "MAKER_FEE", "TAKER_FEE",
           "FIRST_ORDER_ID"]

MAKER_FEE = 0.001
TAKER_FEE = 0.001
FIRST_ORDER_ID = 4_000_000
RECV_WINDOW_DEFAULT = 5000
RECV_WINDOW_MAX = 60000

#: binance's TRAILING_DELTA filter (basis points), as exchangeInfo says
TRAILING_MIN_BIPS = 10
TRAILING_MAX_BIPS = 2000

_STATUS = {"new": "NEW", "partially_filled": "PARTIALLY_FILLED", "filled": "FILLED",
           "canceled": "CANCELED", "rejected": "REJECTED", "expired": "EXPIRED"}
_TYPES = {"MARKET": "market", "LIMIT": "limit", "STOP_LOSS": "stop_market",
          "STOP_LOSS_LIMIT": "stop_limit"}
_TYPES_BACK = {v: k for k, v in _TYPES.items()}
_REJECTS = {
    "insufficient_funds": (-2010, "Account has insufficient balance for requested action."),
    "duplicate_client_id": (-2010, "Duplicate order sent."),
    "bad_quantity": (-1013, "Filter failure: LOT_SIZE"),
    "bad_price": (-1013, "Filter failure: PRICE_FILTER"),
    "min_notional": (-1013, "Filter failure: NOTIONAL"),
    "unknown_symbol": (-1121, "Invalid symbol."),
    "unsupported": (-2010, "This order type is not possible for this symbol."),
}


class Refused(Exception):
    """A request binance refuses before it reaches the engine."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.response = json_response({"code": code, "msg": msg}, status=status)


def missing(name: str) -> Refused:
    return Refused(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def side_and_type(params: dict[str, str]) -> tuple[str, str]:
    """A new order's ``side`` (BUY or SELL) and its raw ``type``, both required, as binance
    refuses them (-1102 missing, -1100 a side it does not know)."""
    side = params.get("side", "")
    if side not in ("BUY", "SELL"):
        raise missing("side") if not side else Refused(-1100, "Illegal characters found in parameter 'side'.")
    raw_type = params.get("type", "")
    if not raw_type:
        raise missing("type")
    return side, raw_type


async def authenticate(venue: Any, request: web.Request) -> tuple[str, dict[str, str]]:
    """The API key of a signed request and its parameters (query and body, without the
    signature); :class:`Refused` as binance would refuse it. ``venue``: the binance venue."""
    server = venue.server
    key = request.headers.get("X-MBX-APIKEY", "")
    if not key:
        raise Refused(-2014, "API-key format invalid.", 401)
    sim_key = server.engine.keys.get(key)
    if sim_key is None:
        raise Refused(-2015, "Invalid API-key, IP, or permissions for action.", 401)
    raw_query = request.rel_url.raw_query_string
    body = (await request.text()) if request.can_read_body else ""
    params: dict[str, str] = {}
    given = None
    parts: list[str] = []
    for chunk in (raw_query, body):
        kept = []
        for piece in chunk.split("&") if chunk else []:
            if piece.startswith("signature="):
                given = piece[len("signature="):]
                continue
            kept.append(piece)
        parts.append("&".join(kept))
        params.update(parse_qsl(chunk, keep_blank_values=True))
    params.pop("signature", None)
    if not given:
        raise missing("signature")
    # binance signs the query string followed directly by the body
    payload = parts[0] + parts[1]
    if not same_signature(hmac_sha256_hex(sim_key.secret, payload), given.lower()):
        raise Refused(-1022, "Signature for this request is not valid.")
    ts_raw = params.get("timestamp")
    if not ts_raw or not ts_raw.isdigit():
        raise missing("timestamp")
    window = params.get("recvWindow", str(RECV_WINDOW_DEFAULT))
    try:
        recv_window = int(float(window))
    except ValueError:
        raise Refused(-1100, "Illegal characters found in parameter 'recvWindow'; legal range "
                       "is '^[0-9]{1,20}$'.") from None
    if recv_window > RECV_WINDOW_MAX:
        raise Refused(-1131, "recvWindow must be less than 60000")
    if server.sim.check_timestamps:
        now, ts = server.now_ms(), int(ts_raw)
        if ts >= now + 1000:
            raise Refused(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")
        if now - ts > recv_window:
            raise Refused(-1021, "Timestamp for this request is outside of the recvWindow.")
    return key, params



def number(params: dict[str, str], name: str) -> float | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return float(raw)
    except ValueError:
        raise Refused(-1100, f"Illegal characters found in parameter '{name}'; legal range is "
                       "'^([0-9]{1,20})(\\.[0-9]{1,20})?$'.") from None


def signed(venue: Any, fn: Any) -> Any:
    """An aiohttp handler that authenticates and calls ``fn(request, key, params)``; a
    :class:`Refused` becomes binance's error answer."""
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            key, params = await authenticate(venue, request)
            return await fn(request, key, params)
        except Refused as exc:
            return exc.response
    return wrapped


def _f8(x: float | None) -> str:
    return f"{(x or 0.0):.8f}"


def private_routes(venue: BinanceVenue) -> list[web.RouteDef]:
    """Routes of the signed binance spot API, bound to ``venue``."""
    server = venue.server

    def engine() -> Engine:
        return server.engine

    def symbol_of(params: dict[str, str], required: bool = True) -> str | None:
        market_id = params.get("symbol")
        if not market_id:
            if required:
                raise missing("symbol")
            return None
        symbol = venue.by_id.get(market_id)
        if symbol is None:
            raise Refused(-1121, "Invalid symbol.")
        return symbol

    def lookup(key: str, params: dict[str, str], symbol: str | None) -> tuple[int | None, str | None]:
        oid, cid = params.get("orderId"), params.get("origClientOrderId")
        if not oid and not cid:
            raise Refused(-1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both "
                           "were empty/null!")
        if oid and not oid.isdigit():
            raise Refused(-1100, "Illegal characters found in parameter 'orderId'; legal range is "
                           "'^[0-9]{1,20}$'.")
        return (int(oid) if oid else None), (cid or None)

    def order_json(o: SimOrder) -> dict[str, Any]:
        return {
            "symbol": venue.market_id(o.symbol), "orderId": o.id, "orderListId": -1,
            "clientOrderId": o.client_id, "price": _f8(o.price), "origQty": _f8(o.amount),
            "executedQty": _f8(o.filled), "cummulativeQuoteQty": _f8(o.cost),
            "status": _STATUS[o.status], "timeInForce": "GTC", "type": _TYPES_BACK[o.type],
            "side": o.side.upper(), "stopPrice": _f8(o.stop_price), "icebergQty": _f8(0.0),
            "time": o.created_ms, "updateTime": o.updated_ms, "isWorking": o.type in ("market", "limit")
            or o.triggered, "workingTime": o.created_ms,
            "origQuoteOrderQty": _f8(o.quote_amount), "selfTradePreventionMode": "NONE",
            **({"trailingDelta": round(o.trail * 10_000), "trailingTime": o.created_ms}
               if o.trail is not None else {}),
        }

    def fill_json(f: Fill) -> dict[str, Any]:
        return {"symbol": venue.market_id(f.symbol), "id": f.id, "orderId": f.order_id,
                "orderListId": -1, "price": _f8(f.price), "qty": _f8(f.qty),
                "quoteQty": _f8(f.quote_qty), "commission": _f8(f.fee), "commissionAsset": f.fee_asset,
                "time": f.time_ms, "isBuyer": f.side == "buy", "isMaker": f.maker, "isBestMatch": True}

    def handler(fn: Any) -> Any:
        return signed(venue, fn)

    # ------------------------------------------------------------------ endpoints
    async def account(request: web.Request, key: str, params: dict[str, str]) -> web.StreamResponse:
        now = server.now_ms()
        eng = engine()
        eng.advance(now)
        omit = params.get("omitZeroBalances", "false").lower() == "true"
        balances = [{"asset": a, "free": _f8(f), "locked": _f8(lk)}
                    for a, (f, lk) in eng.account(key).snapshot().items() if not (omit and f == 0 and lk == 0)]
        return json_response({
            "makerCommission": int(MAKER_FEE * 10_000), "takerCommission": int(TAKER_FEE * 10_000),
            "buyerCommission": 0, "sellerCommission": 0,
            "commissionRates": {"maker": _f8(MAKER_FEE), "taker": _f8(TAKER_FEE),
                                "buyer": _f8(0), "seller": _f8(0)},
            "canTrade": True, "canWithdraw": True, "canDeposit": True, "brokered": False,
            "requireSelfTradePrevention": False, "preventSor": False, "updateTime": now,
            "accountType": "SPOT", "balances": balances, "permissions": ["SPOT"], "uid": 1000001,
        })

    async def new_order(request: web.Request, key: str, params: dict[str, str]) -> web.StreamResponse:
        symbol = symbol_of(params)
        assert symbol is not None
        side, raw_type = side_and_type(params)
        kind = _TYPES.get(raw_type)
        if kind is None:
            logger.warning("binance sim: order type %s is not simulated", raw_type)
            raise Refused(-1116, "Invalid orderType.")
        tif = params.get("timeInForce")
        if kind in ("limit", "stop_limit"):
            if not tif:
                raise missing("timeInForce")
            if tif != "GTC":
                logger.warning("binance sim: timeInForce %s is not simulated", tif)
                raise Refused(-1115, "Invalid timeInForce.")
        amount = number(params, "quantity")
        quote = number(params, "quoteOrderQty")
        price = number(params, "price")
        stop = number(params, "stopPrice")
        if amount is None and not (kind == "market" and quote is not None):
            raise missing("quantity")
        if kind in ("limit", "stop_limit") and price is None:
            raise missing("price")
        delta = params.get("trailingDelta")
        trail = None
        if delta not in (None, ""):  # a trailing stop: its stop follows the best price
            if not str(delta).isdigit():
                raise Refused(-1100, "Illegal characters found in parameter 'trailingDelta'; legal "
                              "range is '^[0-9]{1,20}$'.")
            if kind != "stop_market" or stop is not None:
                logger.warning("binance sim: trailingDelta is simulated on STOP_LOSS orders "
                               "without stopPrice only")
                raise Refused(-2010, "This order type is not possible for this symbol.")
            if not TRAILING_MIN_BIPS <= int(delta) <= TRAILING_MAX_BIPS:
                raise Refused(-1013, "Filter failure: TRAILING_DELTA")
            trail = int(delta) / 10_000
        elif kind in ("stop_market", "stop_limit") and stop is None:
            raise missing("stopPrice")
        resp_type = params.get("newOrderRespType") or ("FULL" if kind in ("market", "limit") else "ACK")
        now = server.now_ms()
        try:
            o = engine().place(key, symbol, side.lower(), kind, now_ms=now, amount=amount,
                               price=price, stop_price=stop, quote_amount=quote,
                               client_id=params.get("newClientOrderId") or None, trail=trail)
        except Reject as rej:
            code, msg = _REJECTS.get(rej.kind, (-2010, rej.message))
            return json_response({"code": code, "msg": msg}, status=400)
        body: dict[str, Any] = {"symbol": venue.market_id(symbol), "orderId": o.id, "orderListId": -1,
                                "clientOrderId": o.client_id, "transactTime": now}
        if resp_type in ("RESULT", "FULL"):
            full = order_json(o)
            for k in ("symbol", "orderId", "orderListId", "clientOrderId", "time", "updateTime",
                      "isWorking", "icebergQty"):
                full.pop(k, None)
            body.update(full)
            if resp_type == "FULL":
                body["fills"] = [{"price": _f8(f.price), "qty": _f8(f.qty), "commission": _f8(f.fee),
                                  "commissionAsset": f.fee_asset, "tradeId": f.id} for f in o.fills]
        return await server.order_ack(request, json_response(body))

    async def get_order(request: web.Request, key: str, params: dict[str, str]) -> web.StreamResponse:
        symbol = symbol_of(params)
        oid, cid = lookup(key, params, symbol)
        o = engine().find(key, symbol=symbol, order_id=oid, client_id=cid, now_ms=server.now_ms())
        if o is None:
            raise Refused(-2013, "Order does not exist.")
        return json_response(order_json(o))

    async def cancel_order(request: web.Request, key: str, params: dict[str, str]) -> web.StreamResponse:
        symbol = symbol_of(params)
        oid, cid = lookup(key, params, symbol)
        now = server.now_ms()
        try:
            o = engine().cancel(key, now_ms=now, symbol=symbol, order_id=oid, client_id=cid)
        except Reject:
            raise Refused(-2011, "Unknown order sent.") from None
        body = order_json(o)
        for k in ("time", "updateTime", "isWorking", "icebergQty", "workingTime", "stopPrice"):
            body.pop(k, None)
        body["origClientOrderId"] = o.client_id
        body["clientOrderId"] = params.get("newClientOrderId") or f"cancel{o.id}"
        body["transactTime"] = now
        return json_response(body)

    async def open_orders(request: web.Request, key: str, params: dict[str, str]) -> web.StreamResponse:
        symbol = symbol_of(params, required=False)
        return json_response([order_json(o) for o in
                              engine().open_orders(key, symbol, now_ms=server.now_ms())])

    async def all_orders(request: web.Request, key: str, params: dict[str, str]) -> web.StreamResponse:
        symbol = symbol_of(params)
        eng = engine()
        eng.advance(server.now_ms())
        rows = [o for o in eng.orders.values() if o.key == key and o.symbol == symbol]
        start, end = number(params, "startTime"), number(params, "endTime")
        rows = [o for o in rows if (start is None or o.created_ms >= start)
                and (end is None or o.created_ms <= end)]
        limit = int(number(params, "limit") or 500)
        return json_response([order_json(o) for o in rows[-min(limit, 1000):]])

    async def my_trades(request: web.Request, key: str, params: dict[str, str]) -> web.StreamResponse:
        symbol = symbol_of(params)
        oid = params.get("orderId")
        fills = engine().account_fills(key, symbol=symbol, order_id=int(oid) if oid and oid.isdigit()
                                       else None, now_ms=server.now_ms())
        start, end, from_id = number(params, "startTime"), number(params, "endTime"), number(params, "fromId")
        fills = [f for f in fills if (start is None or f.time_ms >= start)
                 and (end is None or f.time_ms <= end) and (from_id is None or f.id >= from_id)]
        limit = int(number(params, "limit") or 500)
        if limit < 1 or limit > 1000:
            raise Refused(-1130, "Data sent for parameter 'limit' is not valid.")
        fills = fills[:limit] if (from_id is not None or start is not None) else fills[-limit:]
        return json_response([fill_json(f) for f in fills])

    return [
        web.get("/api/v3/account", handler(account)),
        web.post("/api/v3/order", handler(new_order)),
        web.get("/api/v3/order", handler(get_order)),
        web.delete("/api/v3/order", handler(cancel_order)),
        web.get("/api/v3/openOrders", handler(open_orders)),
        web.get("/api/v3/allOrders", handler(all_orders)),
        web.get("/api/v3/myTrades", handler(my_trades)),
    ]
