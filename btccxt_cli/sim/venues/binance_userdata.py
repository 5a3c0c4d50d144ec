"""Binance spot user data stream over the WebSocket API (``/ws-api/v3``), as ccxt.pro uses it.

ccxt.pro 4.5 subscribes spot ``watch_orders`` / ``watch_my_trades`` / ``watch_balance`` through
binance's WebSocket API (``urls.api.ws['ws-api'].spot``, ``wss://ws-api.binance.com:443/ws-api/v3``,
which ``make_exchange`` moves to ``ws://127.0.0.1:PORT/ws-api/v3``), not through a listen key::

    -> {"id": "1", "method": "userDataStream.subscribe.signature",
        "params": {"apiKey": "...", "recvWindow": 10000, "timestamp": 1700000000000,
                   "signature": "<hex HMAC-SHA256 of apiKey=..&recvWindow=..&timestamp=..>"}}
    <- {"id": "1", "status": 200, "result": {"subscriptionId": 0}, "rateLimits": [...]}
    <- {"subscriptionId": 0, "event": {"e": "executionReport", ...}}
    <- {"subscriptionId": 0, "event": {"e": "outboundAccountPosition", ...}}

The signature is binance's WS API one: hex HMAC-SHA256, keyed by the secret, of every other
parameter sorted by name and written ``name=value`` joined by ``&``. Refusals, as binance sends
them (ccxt raises ``AuthenticationError`` for -2014/-2015/-1022, ``InvalidNonce`` for -1021)::

    {"id": "1", "status": 401, "error": {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}}
    {"id": "1", "status": 400, "error": {"code": -1022, "msg": "Signature for this request is not valid."}}
    {"id": "1", "status": 400, "error": {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."}}

Other methods: ``userDataStream.unsubscribe`` (``subscriptionId``, or all), ``ping``, ``time``.
Every order event of the key goes to every subscription: an ``executionReport`` (x ``NEW`` on
acceptance and when a stop triggers, ``TRADE`` per fill, ``CANCELED``, ``EXPIRED``), then an
``outboundAccountPosition`` with the free/locked balances of the order's two assets.

Must not import ccxt or anything from the client side of btccxt.
"""

from __future__ import annotations

import itertools
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from btccxt_cli.sim.accounts import OrderEvent, hmac_sha256_hex, same_signature
from btccxt_cli.sim.venues import dumps, loads

if TYPE_CHECKING:
    from btccxt_cli.sim.venues.binance import BinanceVenue
    from btccxt_cli.sim.wire import Connection, PrivateSession

logger = logging.getLogger(__name__)

__all__ = ["BinanceUserData", "WS_API_PATH"]

WS_API_PATH = "/ws-api/v3"
RECV_WINDOW_DEFAULT = 5000
RECV_WINDOW_MAX = 60000

_STATUS = {"new": "NEW", "partially_filled": "PARTIALLY_FILLED", "filled": "FILLED",
           "canceled": "CANCELED", "rejected": "REJECTED", "expired": "EXPIRED"}
_EXEC = {"new": "NEW", "triggered": "NEW", "trade": "TRADE", "canceled": "CANCELED",
         "expired": "EXPIRED"}
_TYPES = {"market": "MARKET", "limit": "LIMIT", "stop_market": "STOP_LOSS",
          "stop_limit": "STOP_LOSS_LIMIT"}
_RATE_LIMITS = [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                 "limit": 6000, "count": 2}]


def _f8(x: float | None) -> str:
    return f"{(x or 0.0):.8f}"


def _param_text(value: Any) -> str:
    """A parameter as it appears in the signed payload (JSON booleans are lower case)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class _Refused(Exception):
    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.status = status
        self.code = code
        self.msg = msg


class BinanceUserData:
    """The ``/ws-api/v3`` socket: signed user data stream subscriptions of one venue."""

    def __init__(self, venue: BinanceVenue) -> None:
        self.venue = venue
        self.server = venue.server
        self._event_ids = itertools.count(1)

    def routes(self) -> list[web.RouteDef]:
        return [web.get(WS_API_PATH, self.ws_api)]

    async def ws_api(self, request: web.Request) -> web.StreamResponse:
        return await self.server.serve_ws(request, "ws-api", self._on_text)

    # ------------------------------------------------------------------ requests
    async def _on_text(self, conn: Connection, text: str) -> None:
        try:
            msg = loads(text)
        except ValueError:
            msg = None
        if not isinstance(msg, dict):
            await self._send(conn, {"id": None, "status": 400, "error": {
                "code": -1013, "msg": "Invalid JSON: request must be an object"}})
            return
        req_id = msg.get("id")
        method = msg.get("method")
        params = msg.get("params") or {}
        if not isinstance(params, dict):
            await self._error(conn, req_id, _Refused(400, -1102, "Parameter 'params' was malformed."))
            return
        try:
            if method == "userDataStream.subscribe.signature":
                result: Any = self._subscribe(conn, params)
            elif method == "userDataStream.unsubscribe":
                result = self._unsubscribe(conn, params)
            elif method == "ping":
                result = {}
            elif method == "time":
                result = {"serverTime": self.server.now_ms()}
            else:
                logger.warning("binance sim: WebSocket API method %r is not simulated", method)
                raise _Refused(400, -1020, "This operation is not supported.")
        except _Refused as exc:
            await self._error(conn, req_id, exc)
            return
        await self._send(conn, {"id": req_id, "status": 200, "result": result,
                                "rateLimits": _RATE_LIMITS})

    def _subscribe(self, conn: Connection, params: dict[str, Any]) -> dict[str, Any]:
        stats = self.server.stats
        try:
            key = self._authenticate(params)
        except _Refused:
            stats.private_refused += 1
            raise
        session = self.server.open_private(conn, key)
        seq = conn.extra.setdefault("uds_ids", itertools.count(0))
        sub_id = next(seq)
        session.channels[f"userData#{sub_id}"] = sub_id
        stats.private_logins += 1
        logger.info("binance sim: user data stream %d on socket %s", sub_id, conn.id)
        return {"subscriptionId": sub_id}

    def _unsubscribe(self, conn: Connection, params: dict[str, Any]) -> dict[str, Any]:
        session = self.server.private.get(conn)
        wanted = params.get("subscriptionId")
        if session is None:
            return {}
        if wanted is None:
            self.server.close_private(conn)
            return {}
        session.channels.pop(f"userData#{wanted}", None)
        if not session.channels:
            self.server.close_private(conn)
        return {}

    def _authenticate(self, params: dict[str, Any]) -> str:
        key = params.get("apiKey")
        if not key or not isinstance(key, str):
            raise _Refused(401, -2014, "API-key format invalid.")
        sim_key = self.server.engine.keys.get(key)
        if sim_key is None:
            raise _Refused(401, -2015, "Invalid API-key, IP, or permissions for action.")
        given = params.get("signature")
        if not given or not isinstance(given, str):
            raise _Refused(400, -1102, "Mandatory parameter 'signature' was not sent, was "
                           "empty/null, or malformed.")
        payload = "&".join(f"{k}={_param_text(v)}" for k, v in sorted(params.items())
                           if k != "signature")
        if not same_signature(hmac_sha256_hex(sim_key.secret, payload), given.lower()):
            raise _Refused(400, -1022, "Signature for this request is not valid.")
        ts_raw = params.get("timestamp")
        try:
            ts = int(ts_raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise _Refused(400, -1102, "Mandatory parameter 'timestamp' was not sent, was "
                           "empty/null, or malformed.") from None
        try:
            window = int(float(params.get("recvWindow", RECV_WINDOW_DEFAULT)))
        except (TypeError, ValueError):
            raise _Refused(400, -1100, "Illegal characters found in parameter 'recvWindow'; "
                           "legal range is '^[0-9]{1,20}$'.") from None
        if window > RECV_WINDOW_MAX:
            raise _Refused(400, -1131, "recvWindow must be less than 60000")
        if self.server.sim.check_timestamps:
            now = self.server.now_ms()
            if ts >= now + 1000:
                raise _Refused(400, -1021, "Timestamp for this request was 1000ms ahead of the "
                               "server's time.")
            if now - ts > window:
                raise _Refused(400, -1021, "Timestamp for this request is outside of the recvWindow.")
        return key

    async def _error(self, conn: Connection, req_id: Any, exc: _Refused) -> None:
        await self._send(conn, {"id": req_id, "status": exc.status,
                                "error": {"code": exc.code, "msg": exc.msg},
                                "rateLimits": _RATE_LIMITS})

    async def _send(self, conn: Connection, obj: dict[str, Any]) -> None:
        await self.server.send(conn, dumps(obj))

    # ------------------------------------------------------------------ pushes
    def on_order_event(self, event: OrderEvent, sessions: list[PrivateSession]) -> None:
        """Engine listener (via the server): encode once, push to every subscription."""
        now = self.server.now_ms()
        report = self.execution_report(event, now)
        position = self.account_position(event, now)
        for session in sessions:
            for sub_id in list(session.channels.values()):
                self.server.push_private(session, dumps({"subscriptionId": sub_id, "event": report}))
                self.server.push_private(session, dumps({"subscriptionId": sub_id,
                                                         "event": position}))

    def execution_report(self, event: OrderEvent, now_ms: int) -> dict[str, Any]:
        """binance's ``executionReport`` for one order event (every field of the real one)."""
        o, f = event.order, event.fill
        canceled = event.kind == "canceled"
        working = o.is_open and (o.type in ("market", "limit") or o.triggered)
        return {
            "e": "executionReport", "E": now_ms, "s": self.venue.market_id(o.symbol),
            "c": f"cancel{o.id}" if canceled else o.client_id,
            "S": o.side.upper(), "o": _TYPES[o.type], "f": "GTC", "q": _f8(o.amount),
            "p": _f8(o.price), "P": _f8(o.stop_price), "F": _f8(0.0), "g": -1,
            "C": o.client_id if canceled else "", "x": _EXEC[event.kind],
            "X": _STATUS[o.status], "r": "NONE", "i": o.id,
            "l": _f8(f.qty if f else 0.0), "z": _f8(o.filled), "L": _f8(f.price if f else 0.0),
            "n": _f8(f.fee) if f else "0", "N": f.fee_asset if f else None,
            "T": event.time_ms, "t": f.id if f else -1, "I": next(self._event_ids),
            "w": working, "m": bool(f.maker) if f else False, "M": f is not None,
            "O": o.created_ms, "Z": _f8(o.cost), "Y": _f8(f.quote_qty if f else 0.0),
            "Q": _f8(o.quote_amount), "W": o.created_ms, "V": "NONE",
        }

    @staticmethod
    def account_position(event: OrderEvent, now_ms: int) -> dict[str, Any]:
        """``outboundAccountPosition`` with the balances of the order's two assets."""
        return {"e": "outboundAccountPosition", "E": now_ms, "u": event.time_ms,
                "B": [{"a": a, "f": _f8(free), "l": _f8(locked)}
                      for a, (free, locked) in sorted(event.balances.items())]}
