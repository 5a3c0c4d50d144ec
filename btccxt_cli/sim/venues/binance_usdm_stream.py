"""Binance USD-M futures user data stream (listen key), as ccxt.pro 4.5 uses it for linear
``watch_orders`` / ``watch_my_trades`` / ``watch_balance`` / ``watch_positions``::

    POST   /fapi/v1/listenKey    (X-MBX-APIKEY only, no signature) -> {"listenKey": "..."}
    PUT    /fapi/v1/listenKey    keep-alive -> {}     DELETE: closes it -> {}
    WS     /private/ws?listenKey=...    (ccxt: urls.api.ws.linear "…/ws" -> "…/private/ws")

Every order event of the key goes to its sockets as binance sends them: an
``ORDER_TRADE_UPDATE`` (``x`` NEW, TRADE per fill, CANCELED, EXPIRED; ``X`` the order's status;
``rp`` the fill's realised P&L; liquidations as ``autoclose-`` orders with ``x`` TRADE), then an
``ACCOUNT_UPDATE`` (reason ``ORDER``) with the USDT wallet and the order symbol's position. An
unknown listen key gets HTTP 400 on the socket upgrade. Funding payments are not pushed (read
them with ``/fapi/v1/income``).

Algo (conditional) orders (``binance_algo.py``) are pushed as ``ALGO_UPDATE`` events (``X``:
NEW when placed, CANCELED / EXPIRED, TRIGGERED when the path reaches the trigger and the
regular order is placed (``ai`` its order id), FINISHED once that order is filled, cancelled or
expired, REJECTED for a reduce-only STOP_MARKET with nothing to reduce). The order an algo
order places is pushed like any other from its trigger on (``x`` NEW, then TRADE ...; ``o``
MARKET or LIMIT, ``c`` the ``clientAlgoId``); before the trigger nothing of it is.

Must not import ccxt or anything from the client side of btccxt.
"""

from __future__ import annotations

import hashlib
import itertools
from typing import TYPE_CHECKING, Any

from aiohttp import web

from btccxt_cli.sim.venues.binance_algo import REGULAR_TYPE
from btccxt_cli.sim.wire import dumps, json_response

if TYPE_CHECKING:
    from btccxt_cli.sim.ledger import OrderEvent
    from btccxt_cli.sim.venues.binance import BinanceVenue
    from btccxt_cli.sim.wire import Connection, PrivateSession

__all__ = ["UsdmUserData", "CHANNEL"]

CHANNEL = "usdm"  # the session channel that marks a USD-M user data socket
_EXEC = {"new": "NEW", "triggered": "NEW", "trade": "TRADE", "canceled": "CANCELED",
         "expired": "EXPIRED"}
_STATUS = {"new": "NEW", "partially_filled": "PARTIALLY_FILLED", "filled": "FILLED",
           "canceled": "CANCELED", "rejected": "REJECTED", "expired": "EXPIRED"}


def _f(x: float | None) -> str:
    text = f"{(x or 0.0):.8f}".rstrip("0").rstrip(".")
    return text or "0"


class UsdmUserData:
    """Listen keys and the USD-M user data sockets of one binance venue."""

    def __init__(self, venue: BinanceVenue) -> None:
        self.venue = venue
        self.server = venue.server
        self.keys: dict[str, str] = {}  # listen key -> API key
        self._n = itertools.count(1)

    # ------------------------------------------------------------------ listen keys
    def _api_key(self, request: web.Request) -> str | web.Response:
        key = request.headers.get("X-MBX-APIKEY", "")
        if not key:
            return json_response({"code": -2014, "msg": "API-key format invalid."}, status=401)
        if key not in self.server.engine.keys:
            return json_response({"code": -2015, "msg": "Invalid API-key, IP, or permissions for "
                                  "action."}, status=401)
        return key

    async def new_key(self, request: web.Request) -> web.Response:
        key = self._api_key(request)
        if isinstance(key, web.Response):
            return key
        for listen_key, owner in self.keys.items():  # binance hands out the key's open one again
            if owner == key:
                return json_response({"listenKey": listen_key})
        seed = f"{self.server.sim.seed}:{key}:{next(self._n)}".encode()
        listen_key = hashlib.sha256(seed).hexdigest()[:60]
        self.keys[listen_key] = key
        return json_response({"listenKey": listen_key})

    async def keep_alive(self, request: web.Request) -> web.Response:
        key = self._api_key(request)
        if isinstance(key, web.Response):
            return key
        if key not in self.keys.values():
            return json_response({"code": -1125, "msg": "This listenKey does not exist."}, status=400)
        return json_response({})

    async def close_key(self, request: web.Request) -> web.Response:
        key = self._api_key(request)
        if isinstance(key, web.Response):
            return key
        for listen_key in [k for k, owner in self.keys.items() if owner == key]:
            del self.keys[listen_key]
            for conn, session in list(self.server.private.items()):
                if session.channels.get(CHANNEL) == listen_key:
                    self.server.close_private(conn)
        return json_response({})

    # ------------------------------------------------------------------ socket
    async def ws(self, request: web.Request) -> web.StreamResponse:
        listen_key = request.query.get("listenKey", "")
        key = self.keys.get(listen_key)
        if key is None:
            return web.Response(status=400, text="Invalid listenKey")

        async def on_open(conn: Connection) -> None:
            session = self.server.open_private(conn, key)
            session.channels[CHANNEL] = listen_key
            self.server.stats.private_logins += 1

        async def on_text(conn: Connection, text: str) -> None:
            return None  # nothing to ask on a user data socket

        return await self.server.serve_ws(request, "usdm", on_text, on_open)

    # ------------------------------------------------------------------ pushes
    def on_order_event(self, event: OrderEvent, sessions: list[PrivateSession]) -> None:
        targets = [s for s in sessions if CHANNEL in s.channels]
        if not targets:
            return
        now = self.server.now_ms()
        for message in self.messages(event, now):
            data = dumps(message)
            for session in targets:
                self.server.push_private(session, data)

    def messages(self, event: OrderEvent, now_ms: int) -> list[dict[str, Any]]:
        """What binance pushes for one engine event, in order."""
        o = event.order
        book = self.venue.futures.algos
        a = book.algo_for(o)
        if a is not None:
            if not o.triggered:  # an algo order resting: its own events only
                status = {"new": "NEW", "canceled": "CANCELED"}.get(event.kind, "EXPIRED")
                return [book.update_json(a, o, event.time_ms, now_ms, status)]
            if event.kind == "triggered" and book.will_reject(o):
                return [book.update_json(a, o, event.time_ms, now_ms, "REJECTED")]
            if book.rejected(o):  # its order was refused: already told at the trigger
                return []
        regular = [self.order_update(event, now_ms)]
        if event.kind != "triggered":  # a stop's trigger changes no balance
            regular.append(self.account_update(event, now_ms))
        if a is None:
            return regular
        if event.kind == "triggered":  # binance placed the algo order's regular order
            return [book.update_json(a, o, event.time_ms, now_ms, "TRIGGERED"), *regular]
        if o.is_open:
            return regular
        return [*regular, book.update_json(a, o, event.time_ms, now_ms, "FINISHED")]

    def order_update(self, event: OrderEvent, now_ms: int) -> dict[str, Any]:
        o = event.order
        f = event.fill
        return {"e": "ORDER_TRADE_UPDATE", "E": now_ms, "T": event.time_ms, "o": {
            "s": self.venue.market_id(o.symbol), "c": o.client_id, "S": o.side.upper(),
            "o": REGULAR_TYPE.get(o.type, o.type.upper()), "f": "GTC", "q": _f(o.amount), "p": _f(o.price),
            "ap": _f(o.average), "sp": "0", "x": _EXEC[event.kind], "X": _STATUS[o.status],
            "i": o.id, "l": _f(f.qty if f else 0.0), "z": _f(o.filled), "L": _f(f.price if f else 0.0),
            "N": "USDT", "n": _f(f.fee if f else 0.0), "T": event.time_ms, "t": f.id if f else 0,
            "b": "0", "a": "0", "m": bool(f.maker) if f else False, "R": o.reduce_only,
            "wt": "CONTRACT_PRICE", "ot": REGULAR_TYPE.get(o.type, o.type.upper()), "ps": "BOTH", "cp": False,
            "rp": _f(f.pnl if f else 0.0), "pP": False, "si": 0, "ss": 0, "V": "EXPIRE_MAKER",
            "pm": "NONE", "gtd": 0}}

    def account_update(self, event: OrderEvent, now_ms: int) -> dict[str, Any]:
        o = event.order
        eng = self.server.engine
        acct = eng.account(o.key)
        wallet = acct.free("USDT") + acct.locked("USDT")
        pos = eng.derivs.positions.get((o.key, o.symbol, o.pos_side))
        qty = pos.qty if pos is not None else 0.0
        mark = eng.price(o.symbol, event.time_ms)
        isolated = pos is not None and pos.mode == "isolated"
        return {"e": "ACCOUNT_UPDATE", "E": now_ms, "T": event.time_ms, "a": {
            "m": "ORDER",
            "B": [{"a": "USDT", "wb": _f(wallet), "cw": _f(wallet), "bc": "0"}],
            "P": [{"s": self.venue.market_id(o.symbol), "pa": _f(qty),
                   "ep": _f(pos.entry if pos is not None and qty else 0.0),
                   "bep": _f(pos.entry if pos is not None and qty else 0.0),
                   "cr": _f(pos.realised if pos is not None else 0.0),
                   "up": _f(pos.upnl(mark) if pos is not None and qty else 0.0),
                   "mt": "isolated" if isolated else "cross",
                   "iw": _f(pos.margin if isolated and pos is not None else 0.0), "ps": "BOTH"}]}}

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/fapi/v1/listenKey", self.new_key),
            web.put("/fapi/v1/listenKey", self.keep_alive),
            web.delete("/fapi/v1/listenKey", self.close_key),
            web.get("/private/ws", self.ws),
        ]
