"""OKX v5 private WebSocket (``/ws/v5/private``): login, the ``orders`` and ``account`` channels.

What ccxt.pro 4.5 sends and reads (``watch_orders``, ``watch_my_trades``, ``watch_balance``)::

    -> {"op": "login", "args": [{"apiKey": "...", "passphrase": "...", "timestamp": "1700000000",
        "sign": "<base64 HMAC-SHA256 of timestamp + 'GET' + '/users/self/verify'>"}]}
    <- {"event": "login", "code": "0", "msg": "", "connId": "0000000a"}
    -> {"op": "subscribe", "args": [{"channel": "orders", "instType": "ANY"}]}
    <- {"event": "subscribe", "arg": {"channel": "orders", "instType": "ANY"}, "connId": "0000000a"}
    <- {"arg": {"channel": "orders", "instType": "ANY", "uid": "..."}, "data": [{...order...}]}

The timestamp is in seconds and must be within 30 s of the exchange clock. Refused logins, as okx
sends them (ccxt: ``AuthenticationError``; 60006 ``InvalidNonce``)::

    {"event": "error", "code": "60005", "msg": "Invalid OK-ACCESS-KEY", "connId": "..."}
    {"event": "error", "code": "60007", "msg": "Invalid sign", "connId": "..."}
    {"event": "error", "code": "60024", "msg": "Wrong passphrase", "connId": "..."}
    {"event": "error", "code": "60006", "msg": "Timestamp request expired", "connId": "..."}
    {"event": "error", "code": "60009", "msg": "Login failed.", "connId": "..."}      malformed

Channels: ``orders`` (``instType`` SPOT, MARGIN or ANY carry the spot orders, SWAP or ANY the
swap orders (sizes in contracts); FUTURES and OPTION stay silent; optional ``instId``) pushes
every change of an order: the REST order's
fields plus the last fill's ``fillSz fillPx tradeId fillTime fillFee fillFeeCcy execType`` (empty
unless the push is a fill). ``account`` (optional ``ccy``) pushes a snapshot of every currency at
once after subscribing, then the order's two currencies after each change. ``positions`` and
``balance_and_position`` are acknowledged and stay silent (no position pushes); other channels get 60018;
a private channel before login gets 60011. Text ``ping`` gets ``pong``.

Orders placed by algo (stop) orders, which rest in the engine as stop orders, are pushed from the
moment they trigger (okx places the regular order then; a market one is first pushed with its
fill, which comes at once); one whose order could not be placed (a stop that expired unfilled:
no funds, or a reduce-only one with nothing to reduce) is never pushed. The algo bookkeeping lives in
``okx_private.py``: it may set :attr:`OkxPrivateWs.order_fields` to add an order's ``algoId``,
``algoClOrdId``, ``clOrdId``, ``cTime``, ``source`` and ``tag`` as its REST answers show them.

Must not import ccxt or anything from the client side of btccxt.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from btccxt_cli.sim.accounts import OrderEvent, SimOrder, hmac_sha256_b64, same_signature
from btccxt_cli.sim.venues import dumps, loads

if TYPE_CHECKING:
    from btccxt_cli.sim.venues.okx import OkxVenue
    from btccxt_cli.sim.wire import Connection, PrivateSession

logger = logging.getLogger(__name__)

__all__ = ["OkxPrivateWs", "PRIVATE_PATH", "LOGIN_PATH"]

PRIVATE_PATH = "/ws/v5/private"
LOGIN_PATH = "/users/self/verify"  # what the login signature covers: ts + "GET" + this
LOGIN_WINDOW_S = 30

_STATE = {"new": "live", "partially_filled": "partially_filled", "filled": "filled",
          "canceled": "canceled", "rejected": "canceled", "expired": "canceled"}
_ORD_TYPE = {"market": "market", "limit": "limit", "stop_market": "market", "stop_limit": "limit"}
_SPOT_TYPES = ("SPOT", "MARGIN", "ANY")
_INST_TYPES = ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION", "ANY")
_SILENT = ("positions", "balance_and_position")
_STOPS = ("stop_market", "stop_limit")
_GENERATED_CID = re.compile(r"^sim[0-9]{10}$")  # what the engine names orders sent without one


def _num(x: float | None, decimals: int = 8) -> str:
    if x is None:
        return ""
    text = f"{x:.{decimals}f}".rstrip("0").rstrip(".")
    return text or "0"


class _LoginRefused(Exception):
    def __init__(self, code: str, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


class OkxPrivateWs:
    """The ``/ws/v5/private`` socket of one okx venue."""

    def __init__(self, venue: OkxVenue) -> None:
        self.venue = venue
        self.server = venue.server
        #: optional: fields that override a pushed order's own (``okx_private`` can set it for
        #: orders its algo orders placed: algoId, algoClOrdId, clOrdId, cTime, source, tag);
        #: returning None pushes nothing for that order
        self.order_fields: Callable[[SimOrder], dict[str, Any] | None] | None = None
        self._trigger_ms: dict[int, int] = {}  # stop order id -> when it triggered

    def routes(self) -> list[web.RouteDef]:
        return [web.get(PRIVATE_PATH, self.ws_private)]

    async def ws_private(self, request: web.Request) -> web.StreamResponse:
        return await self.server.serve_ws(request, "private", self._on_text)

    @staticmethod
    def uid(key: str) -> str:
        """A stable okx-looking account uid per API key (never the key itself)."""
        return str(int(hashlib.sha256(key.encode()).hexdigest()[:13], 16))

    # ------------------------------------------------------------------ requests
    async def _on_text(self, conn: Connection, text: str) -> None:
        req = await read_request(self.server, conn, text)
        if req is None:
            return
        op, args = req
        if op == "login":
            await self._login(conn, args)
        elif op in ("subscribe", "unsubscribe"):
            if op == "subscribe":
                self.server.stats.subscribe_requests += 1
            else:
                self.server.stats.unsubscribe_requests += 1
            for arg in args:
                await self._sub_one(conn, str(op), arg)
        else:
            await self._error(conn, "60019", f"Invalid op: op :{op}")

    async def _login(self, conn: Connection, args: Any) -> None:
        stats = self.server.stats
        try:
            key = self._check_login(args)
        except _LoginRefused as exc:
            stats.private_refused += 1
            logger.info("okx sim: login refused on socket %s (%s)", conn.id, exc.code)
            await self._error(conn, exc.code, exc.msg)
            return
        self.server.open_private(conn, key)
        stats.private_logins += 1
        await self.server.send(conn, dumps({"event": "login", "code": "0", "msg": "",
                                            "connId": conn.id}))

    def _check_login(self, args: Any) -> str:
        if not isinstance(args, list) or not args or not isinstance(args[0], dict):
            raise _LoginRefused("60009", "Login failed.")
        arg = args[0]
        key, passphrase = arg.get("apiKey"), arg.get("passphrase")
        ts_text, sign = arg.get("timestamp"), arg.get("sign")
        if not all(isinstance(v, str) and v for v in (key, passphrase, ts_text, sign)):
            raise _LoginRefused("60009", "Login failed.")
        sim_key = self.server.engine.keys.get(key)
        if sim_key is None:
            raise _LoginRefused("60005", "Invalid OK-ACCESS-KEY")
        try:
            ts = float(ts_text)
        except ValueError:
            raise _LoginRefused("60004", "Invalid OK-ACCESS-TIMESTAMP") from None
        if self.server.sim.check_timestamps and abs(self.server.now_ms() / 1000 - ts) > LOGIN_WINDOW_S:
            raise _LoginRefused("60006", "Timestamp request expired")
        expected = hmac_sha256_b64(sim_key.secret, f"{ts_text}GET{LOGIN_PATH}")
        if not same_signature(expected, str(sign)):
            raise _LoginRefused("60007", "Invalid sign")
        if sim_key.passphrase is None or not same_signature(sim_key.passphrase, str(passphrase)):
            raise _LoginRefused("60024", "Wrong passphrase")
        return str(key)

    async def _sub_one(self, conn: Connection, op: str, arg: dict[str, Any]) -> None:
        channel = str(arg.get("channel", ""))
        session = self.server.private.get(conn)
        if channel not in ("orders", "account") + _SILENT:
            await self._error(conn, "60018", f"Wrong URL or channel:{channel},instId:"
                              f"{arg.get('instId', '')} doesn't exist. Please use the correct URL, "
                              "channel and parameters referring to API document.")
            return
        if session is None:
            await self._error(conn, "60011", "Please log in")
            return
        echo: dict[str, Any] = {"channel": channel}
        if channel == "orders" or channel in _SILENT:
            inst_type = arg.get("instType")
            if inst_type not in _INST_TYPES:
                await self._error(conn, "60013", f"Invalid args: instType:{inst_type}")
                return
            echo["instType"] = inst_type
            for name in ("instFamily", "instId"):
                if arg.get(name):
                    echo[name] = str(arg[name])
            if echo.get("instId") and echo["instId"] not in self.venue.by_id:
                await self._error(conn, "60018", f"Wrong URL or channel:{channel},instId:"
                                  f"{echo['instId']} doesn't exist. Please use the correct URL, "
                                  "channel and parameters referring to API document.")
                return
        elif arg.get("ccy"):
            echo["ccy"] = str(arg["ccy"])
        label = dumps(echo).decode()
        if op == "subscribe":
            if channel in _SILENT:
                logger.warning("okx sim: private channel %r is accepted but not simulated (nothing "
                               "will be pushed)", channel)
                self.server.stats.ignored_streams += 1
            else:
                session.channels[label] = echo
        else:
            session.channels.pop(label, None)
        await self.server.send(conn, dumps({"event": op, "arg": echo, "connId": conn.id}))
        if op == "subscribe" and channel == "account":
            snapshot = self.server.engine.account(session.key).snapshot()
            self._push_account(session, echo, snapshot, self.server.now_ms())

    async def _error(self, conn: Connection, code: str, msg: str) -> None:
        await event_error(self.server, conn, code, msg)

    # ------------------------------------------------------------------ pushes
    def on_order_event(self, event: OrderEvent, sessions: list[PrivateSession]) -> None:
        """Engine listener (via the server): push to every matching subscription."""
        o = event.order
        order = self._pushed_order(event)
        inst_id = self.venue.inst_id(o.symbol)
        swap = self.venue.specs[o.symbol].is_swap
        now = self.server.now_ms()
        for session in sessions:
            uid = self.uid(session.key)
            for echo in list(session.channels.values()):
                channel = echo["channel"]
                if channel == "orders" and order is not None:
                    wanted = ("SWAP", "ANY") if swap else _SPOT_TYPES
                    if echo["instType"] not in wanted or echo.get("instId", inst_id) != inst_id:
                        continue
                    family = echo.get("instFamily")
                    if family is not None and family != inst_id:
                        continue
                    self.server.push_private(session, dumps({"arg": {**echo, "uid": uid},
                                                             "data": [order]}))
                elif channel == "account" and event.kind != "triggered":
                    self._push_account(session, echo, event.balances, now)

    def _pushed_order(self, event: OrderEvent) -> dict[str, Any] | None:
        """The order as the ``orders`` channel shows it, or None if okx would not show it."""
        o = event.order
        if o.type in _STOPS:
            if event.kind == "triggered":
                self._trigger_ms[o.id] = event.time_ms
                if o.type == "stop_market":  # its fill (or failure) follows at once: shown then
                    return None
            if not o.triggered or (o.status == "expired" and not o.fills):
                return None  # an algo order that has not (or could not) place its order
        order = self.order_json(event)
        if o.type in _STOPS:  # the order okx placed when the algo order triggered
            order["cTime"] = str(self._trigger_ms.get(o.id, o.created_ms))
            if _GENERATED_CID.match(o.client_id):
                order["clOrdId"] = ""
            if not o.is_open:
                self._trigger_ms.pop(o.id, None)
        if self.order_fields is not None:
            extra = self.order_fields(o)
            if extra is None:
                return None
            order.update(extra)
        return order

    def _push_account(self, session: PrivateSession, echo: dict[str, Any],
                      balances: dict[str, tuple[float, float]], now_ms: int) -> None:
        wanted = {c.strip().upper() for c in str(echo.get("ccy", "")).split(",") if c.strip()}
        details = [self.balance_detail(ccy, free, locked, now_ms)
                   for ccy, (free, locked) in sorted(balances.items())
                   if not wanted or ccy in wanted]
        if not details:
            return
        data = {"adjEq": "", "borrowFroz": "", "details": details, "imr": "", "isoEq": "",
                "mgnRatio": "", "mmr": "", "notionalUsd": "", "notionalUsdForBorrow": "",
                "notionalUsdForFutures": "", "notionalUsdForOption": "", "notionalUsdForSwap": "",
                "ordFroz": "", "totalEq": "", "uTime": str(now_ms), "upl": ""}
        self.server.push_private(session, dumps({"arg": {**echo, "uid": self.uid(session.key)},
                                                 "data": [data]}))

    @staticmethod
    def balance_detail(ccy: str, free: float, locked: float, now_ms: int) -> dict[str, Any]:
        """One currency of the ``account`` channel (the fields of ``GET /account/balance``)."""
        total = free + locked
        return {
            "availBal": _num(free), "availEq": "", "borrowFroz": "", "cashBal": _num(total),
            "ccy": ccy, "coinUsdPrice": "", "crossLiab": "", "disEq": "", "eq": _num(total),
            "eqUsd": "", "fixedBal": "0", "frozenBal": _num(locked), "imr": "", "interest": "",
            "isoEq": "", "isoLiab": "", "isoUpl": "", "liab": "", "maxLoan": "", "mgnRatio": "",
            "mmr": "", "notionalLever": "", "ordFrozen": _num(locked), "spotInUseAmt": "",
            "stgyEq": "0", "twap": "0", "uTime": str(now_ms), "upl": "", "uplLiab": "",
        }

    def order_json(self, event: OrderEvent) -> dict[str, Any]:
        """The ``orders`` channel's order: the REST order plus this push's fill fields."""
        o: SimOrder = event.order
        f = event.fill
        spec = self.venue.specs[o.symbol]
        swap = spec.is_swap

        def sz(base: float) -> float:  # contracts of ctVal for swaps
            return self.venue.contracts(o.symbol, base)

        lever = self.server.engine.derivs.leverage_of(o.key, o.symbol, o.pos_side) if swap else 0.0
        return {
            "accFillSz": _num(sz(o.filled)), "algoClOrdId": "", "algoId": "", "amendResult": "",
            "amendSource": "", "attachAlgoClOrdId": "", "attachAlgoOrds": [],
            "avgPx": _num(o.average) if o.average else "", "cTime": str(o.created_ms),
            "cancelSource": "", "cancelSourceReason": "", "category": "normal", "ccy": "", "clOrdId": o.client_id,
            "code": "0", "execType": ("M" if f.maker else "T") if f else "",
            "fee": _num(-o.fee_total) if o.fills else "0",
            "feeCcy": o.fee_asset or (spec.base if o.side == "buy" else spec.quote),
            "fillFee": _num(-f.fee) if f else "0", "fillFeeCcy": f.fee_asset if f else "",
            "fillFwdPx": "", "fillMarkPx": "", "fillMarkVol": "", "fillNotionalUsd": "",
            "fillPnl": _num(f.pnl) if f else "0", "fillPx": _num(f.price) if f else "",
            "fillPxUsd": "", "fillPxVol": "", "fillSz": _num(sz(f.qty)) if f else "0",
            "fillTime": str(f.time_ms) if f else "", "instId": self.venue.inst_id(o.symbol),
            "instType": self.venue.inst_type(o.symbol), "isTpLimit": "false",
            "lastPx": _num(f.price) if f else "", "lever": _num(lever) if swap else "",
            "linkedAlgoOrd": {"algoId": ""}, "msg": "", "notionalUsd": "",
            "ordId": str(o.id), "ordType": _ORD_TYPE[o.type],
            "pnl": _num(sum(x.pnl for x in o.fills)), "posSide": o.pos_side,
            "px": _num(o.price) if o.price is not None else "", "pxType": "", "pxUsd": "",
            "pxVol": "", "quickMgnType": "", "rebate": "0", "rebateCcy": spec.quote,
            "reduceOnly": "true" if o.reduce_only else "false", "reqId": "", "side": o.side, "slOrdPx": "", "slTriggerPx": "",
            "slTriggerPxType": "", "source": "", "state": _STATE[o.status], "stpId": "",
            "stpMode": "cancel_maker",
            "sz": _num(o.quote_amount if o.quote_amount is not None else sz(o.amount)),
            "tag": "", "tdMode": o.margin_mode if swap else "cash",
            "tgtCcy": "quote_ccy" if o.quote_amount is not None else "base_ccy",
            "tpOrdPx": "", "tpTriggerPx": "", "tpTriggerPxType": "",
            "tradeId": str(f.id) if f else "", "tradeQuoteCcy": spec.quote,
            "uTime": str(event.time_ms if event.kind != "trade" else o.updated_ms),
        }


async def event_error(server: Any, conn: Connection, code: str, msg: str) -> None:
    """okx's error event on a socket."""
    await server.send(conn, dumps({"event": "error", "code": code, "msg": msg, "connId": conn.id}))


async def read_request(server: Any, conn: Connection, text: str) -> tuple[Any, Any] | None:
    """One okx WebSocket request: ``(op, args)``, or None once answered here (``ping`` gets
    ``pong``; text that is not a JSON object, or a (un)subscribe without a list of argument
    objects, gets okx's 60012 "Illegal request")."""
    if text == "ping":
        await server.send(conn, b"pong")
        return None
    try:
        msg = loads(text)
    except ValueError:
        msg = None
    if not isinstance(msg, dict):
        await event_error(server, conn, "60012", f"Illegal request: {text}")
        return None
    op, args = msg.get("op"), msg.get("args")
    if op in ("subscribe", "unsubscribe") and (
            not isinstance(args, list) or not args or not all(isinstance(a, dict) for a in args)):
        await event_error(server, conn, "60012", f"Illegal request: {text}")
        return None
    return op, args
