"""OKX v5 private REST, the shared parts: signature check, request parsing, okx's answers and
error codes (``okx_private.py`` has the orders, ``okx_algo.py`` the algo orders).

Must not import ccxt or anything from the client side of btccxt.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from btccxt_cli.sim.accounts import hmac_sha256_b64, same_signature
from btccxt_cli.sim.wire import json_response

if TYPE_CHECKING:
    from btccxt_cli.sim.venues.okx import OkxVenue

__all__ = ["Refused", "Endpoint", "signed", "symbol_of", "order_ids", "check_inst_type",
           "limited", "ok", "num", "iso_ms", "STATE", "REJECTS", "REGULAR_TYPE", "MAKER_FEE", "TAKER_FEE",
           "FIRST_ORDER_ID", "FIRST_ALGO_ID"]

MAKER_FEE = 0.0008
TAKER_FEE = 0.001
FIRST_ORDER_ID = 680_800_019_749_904_384
FIRST_ALGO_ID = 2_094_566_107_385_651_200  # algo ids never equal order ids, as on okx
TIMESTAMP_WINDOW_MS = 30_000

REGULAR_TYPE = {"stop_market": "market", "stop_limit": "limit"}  # what an algo order places
STATE = {"new": "live", "partially_filled": "partially_filled", "filled": "filled",
         "canceled": "canceled", "rejected": "canceled", "expired": "canceled"}
REJECTS = {
    "insufficient_funds": ("51008", "Order failed. Insufficient {ccy} balance in account."),
    "duplicate_client_id": ("51016", "Duplicated clOrdId"),
    "bad_quantity": ("51121", "Order quantity must be a multiple of the lot size."),
    "bad_price": ("51000", "Parameter px error"),
    "min_notional": ("51020", "Order amount should be greater than the min available amount."),
    "unknown_symbol": ("51001", "Instrument ID does not exist"),
    "unsupported": ("51000", "Parameter ordType error"),
    "reduce_only": ("51169", "Order failed because you don't have any positions in this direction "
                             "for this contract to reduce or close."),
    "bad_position_side": ("51000", "Parameter posSide error"),
    "position_open": ("59000", "Settings failed. Close any open positions or orders before "
                               "modifying settings."),
}


class Refused(Exception):
    """okx's error answer: ``{"code": code, "msg": msg, "data": []}`` with HTTP ``status``."""

    def __init__(self, code: str, msg: str, status: int = 200) -> None:
        super().__init__(msg)
        self.response = json_response({"code": code, "msg": msg, "data": []}, status=status)


def ok(data: list[Any]) -> web.Response:
    return json_response({"code": "0", "msg": "", "data": data})


def num(x: float | None, decimals: int = 8) -> str:
    if x is None:
        return ""
    text = f"{x:.{decimals}f}".rstrip("0").rstrip(".")
    return text or "0"


def iso_ms(text: str) -> int | None:
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


#: an endpoint of the signed API: (request, API key, query and JSON body parameters)
Endpoint = Callable[[web.Request, str, dict[str, Any]], Awaitable[web.StreamResponse]]


async def authenticate(venue: OkxVenue, request: web.Request) -> tuple[str, str]:
    """The API key of a signed request and its body; :class:`Refused` when okx would refuse it."""
    server = venue.server
    h = request.headers
    key = h.get("OK-ACCESS-KEY", "")
    if not key:
        raise Refused("50103", "Request header OK-ACCESS-KEY can not be empty.", 401)
    passphrase = h.get("OK-ACCESS-PASSPHRASE", "")
    if not passphrase:
        raise Refused("50104", "Request header OK-ACCESS-PASSPHRASE can not be empty.", 401)
    sign = h.get("OK-ACCESS-SIGN", "")
    if not sign:
        raise Refused("50106", "Request header OK-ACCESS-SIGN can not be empty.", 401)
    ts_text = h.get("OK-ACCESS-TIMESTAMP", "")
    if not ts_text:
        raise Refused("50107", "Request header OK-ACCESS-TIMESTAMP can not be empty.", 401)
    ts = iso_ms(ts_text)
    if ts is None:
        raise Refused("50112", "Invalid OK-ACCESS-TIMESTAMP", 401)
    sim_key = server.engine.keys.get(key)
    if sim_key is None:
        raise Refused("50111", "Invalid OK-ACCESS-KEY", 401)
    if server.sim.check_timestamps and abs(server.now_ms() - ts) > TIMESTAMP_WINDOW_MS:
        raise Refused("50102", "Timestamp request expired", 401)
    body = (await request.text()) if request.can_read_body else ""
    prehash = ts_text + request.method + request.raw_path + body
    if not same_signature(hmac_sha256_b64(sim_key.secret, prehash), sign):
        raise Refused("50113", "Invalid Sign", 401)
    if sim_key.passphrase is None or not same_signature(sim_key.passphrase, passphrase):
        raise Refused("50105", "OK-ACCESS-PASSPHRASE incorrect.", 401)
    return key, body


def signed(venue: OkxVenue, fn: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """An aiohttp handler that authenticates, parses the JSON body into ``params`` and calls
    ``fn(request, key, params)``; a :class:`Refused` becomes okx's error answer."""
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            key, body = await authenticate(venue, request)
            params: dict[str, Any] = dict(request.query)
            if body:
                try:
                    parsed = json.loads(body)
                except ValueError:
                    raise Refused("50002", "Json data format error", 400) from None
                if isinstance(parsed, list):  # batch endpoints take an array
                    params["_batch"] = parsed
                elif isinstance(parsed, dict):
                    params.update(parsed)
                else:
                    raise Refused("50002", "Json data format error", 400)
            return await fn(request, key, params)
        except Refused as exc:
            return exc.response
    return wrapped


def symbol_of(venue: OkxVenue, params: dict[str, Any], required: bool = True) -> str | None:
    inst = params.get("instId")
    if not inst:
        if required:
            raise Refused("50014", "Parameter instId can not be empty.", 400)
        return None
    symbol = venue.by_id.get(str(inst))
    if symbol is None:
        raise Refused("51001", "Instrument ID does not exist")
    return symbol


def order_ids(params: dict[str, Any]) -> tuple[int | None, str | None]:
    oid, cid = params.get("ordId"), params.get("clOrdId")
    if not oid and not cid:
        raise Refused("50014", "Parameter ordId can not be empty.", 400)
    if oid and not str(oid).isdigit():
        raise Refused("51000", "Parameter ordId error", 400)
    return (int(oid) if oid else None), (str(cid) if cid else None)


def check_inst_type(params: dict[str, Any], required: bool) -> None:
    t = params.get("instType")
    if t is None and required:
        raise Refused("50014", "Parameter instType can not be empty.", 400)
    if t is not None and t not in ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION"):
        raise Refused("51000", "Parameter instType error", 400)


def limited(rows: list[Any], params: dict[str, Any]) -> list[Any]:
    try:
        limit = int(params.get("limit") or 100)
    except ValueError:
        raise Refused("51000", "Parameter limit error", 400) from None
    return rows[:max(1, min(limit, 100))]
