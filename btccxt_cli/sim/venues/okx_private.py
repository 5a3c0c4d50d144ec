"""OKX v5 private REST: signed requests, balance, orders and fills, as ccxt sends them.

Authentication is okx's own: headers ``OK-ACCESS-KEY``, ``OK-ACCESS-PASSPHRASE``,
``OK-ACCESS-TIMESTAMP`` (ISO 8601 with milliseconds, within 30 s of the server clock) and
``OK-ACCESS-SIGN`` = base64 HMAC-SHA256, keyed by the secret, of
``timestamp + METHOD + requestPath(+?query) + body``. Errors (HTTP 401, okx's codes)::

    {"msg": "Request header OK-ACCESS-KEY can not be empty.", "code": "50103"}
    {"msg": "Invalid OK-ACCESS-KEY", "code": "50111"}
    {"msg": "Invalid Sign", "code": "50113"}
    {"msg": "OK-ACCESS-PASSPHRASE incorrect.", "code": "50105"}
    {"msg": "Timestamp request expired", "code": "50102"}

Endpoints::

    GET  /api/v5/account/balance        [ccy=BTC,USDT]
    POST /api/v5/trade/order            {instId tdMode=cash side ordType=market|limit sz [px]
                                         [clOrdId] [tag] [tgtCcy=base_ccy|quote_ccy]}
    POST /api/v5/trade/batch-orders     [the same, up to 20]; what ccxt's create_order sends
    POST /api/v5/trade/cancel-order     {instId ordId|clOrdId}
    GET  /api/v5/trade/order            instId ordId|clOrdId
    GET  /api/v5/trade/orders-pending   [instType] [instId]
    GET  /api/v5/trade/orders-history   instType [instId]
    GET  /api/v5/trade/fills            [instType] [instId] [ordId] [begin] [end] [limit<=100]
    GET  /api/v5/trade/fills-history    same (what ccxt's fetch_my_trades asks)

Placement errors come back as okx sends them, HTTP 200 with ``code "1"``::

    {"code": "1", "msg": "All operations failed", "data": [{"clOrdId": "", "ordId": "",
     "sCode": "51008", "sMsg": "Order failed. Insufficient USDT balance in account.", "tag": "",
     "ts": "1695190491421"}], "inTime": "...", "outTime": "..."}

Spot in cash mode only; swaps, margin and algo (stop) orders answer 51000. Must not import
ccxt or anything from the client side of btccxt.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from btccxt_cli.sim.accounts import Fill, Reject, SimOrder, hmac_sha256_b64, same_signature
from btccxt_cli.sim.venues import json_response

if TYPE_CHECKING:
    from btccxt_cli.sim.accounts import Engine
    from btccxt_cli.sim.venues.okx import OkxVenue

logger = logging.getLogger(__name__)

__all__ = ["private_routes", "MAKER_FEE", "TAKER_FEE", "FIRST_ORDER_ID"]

MAKER_FEE = 0.0008
TAKER_FEE = 0.001
FIRST_ORDER_ID = 680_800_019_749_904_384
TIMESTAMP_WINDOW_MS = 30_000

_STATE = {"new": "live", "partially_filled": "partially_filled", "filled": "filled",
          "canceled": "canceled", "rejected": "canceled", "expired": "canceled"}
_REJECTS = {
    "insufficient_funds": ("51008", "Order failed. Insufficient {ccy} balance in account."),
    "duplicate_client_id": ("51016", "Duplicated clOrdId"),
    "bad_quantity": ("51121", "Order quantity must be a multiple of the lot size."),
    "bad_price": ("51000", "Parameter px error"),
    "min_notional": ("51020", "Order amount should be greater than the min available amount."),
    "unknown_symbol": ("51001", "Instrument ID does not exist"),
    "unsupported": ("51000", "Parameter ordType error"),
}


class _Refused(Exception):
    def __init__(self, code: str, msg: str, status: int = 200) -> None:
        super().__init__(msg)
        self.response = json_response({"code": code, "msg": msg, "data": []}, status=status)


def _ok(data: list[Any]) -> web.Response:
    return json_response({"code": "0", "msg": "", "data": data})


def _num(x: float | None, decimals: int = 8) -> str:
    if x is None:
        return ""
    text = f"{x:.{decimals}f}".rstrip("0").rstrip(".")
    return text or "0"


def _iso_ms(text: str) -> int | None:
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


def private_routes(venue: OkxVenue) -> list[web.RouteDef]:
    """Routes of the signed okx API, bound to ``venue``."""
    server = venue.server

    def engine() -> Engine:
        return server.engine

    async def authenticate(request: web.Request) -> tuple[str, str]:
        h = request.headers
        key = h.get("OK-ACCESS-KEY", "")
        if not key:
            raise _Refused("50103", "Request header OK-ACCESS-KEY can not be empty.", 401)
        passphrase = h.get("OK-ACCESS-PASSPHRASE", "")
        if not passphrase:
            raise _Refused("50104", "Request header OK-ACCESS-PASSPHRASE can not be empty.", 401)
        sign = h.get("OK-ACCESS-SIGN", "")
        if not sign:
            raise _Refused("50106", "Request header OK-ACCESS-SIGN can not be empty.", 401)
        ts_text = h.get("OK-ACCESS-TIMESTAMP", "")
        if not ts_text:
            raise _Refused("50107", "Request header OK-ACCESS-TIMESTAMP can not be empty.", 401)
        ts = _iso_ms(ts_text)
        if ts is None:
            raise _Refused("50112", "Invalid OK-ACCESS-TIMESTAMP", 401)
        sim_key = engine().keys.get(key)
        if sim_key is None:
            raise _Refused("50111", "Invalid OK-ACCESS-KEY", 401)
        if server.sim.check_timestamps and abs(server.now_ms() - ts) > TIMESTAMP_WINDOW_MS:
            raise _Refused("50102", "Timestamp request expired", 401)
        body = (await request.text()) if request.can_read_body else ""
        prehash = ts_text + request.method + request.raw_path + body
        if not same_signature(hmac_sha256_b64(sim_key.secret, prehash), sign):
            raise _Refused("50113", "Invalid Sign", 401)
        if sim_key.passphrase is None or not same_signature(sim_key.passphrase, passphrase):
            raise _Refused("50105", "OK-ACCESS-PASSPHRASE incorrect.", 401)
        return key, body

    def handler(fn: Any) -> Any:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            try:
                key, body = await authenticate(request)
                params: dict[str, Any] = dict(request.query)
                if body:
                    try:
                        parsed = json.loads(body)
                    except ValueError:
                        raise _Refused("50002", "Json data format error", 400) from None
                    if isinstance(parsed, list):  # batch endpoints take an array
                        params["_batch"] = parsed
                    elif isinstance(parsed, dict):
                        params.update(parsed)
                    else:
                        raise _Refused("50002", "Json data format error", 400)
                return await fn(request, key, params)
            except _Refused as exc:
                return exc.response
        return wrapped

    def symbol_of(params: dict[str, Any], required: bool = True) -> str | None:
        inst = params.get("instId")
        if not inst:
            if required:
                raise _Refused("50014", "Parameter instId can not be empty.", 400)
            return None
        symbol = venue.by_id.get(str(inst))
        if symbol is None:
            raise _Refused("51001", "Instrument ID does not exist")
        return symbol

    def ids(params: dict[str, Any]) -> tuple[int | None, str | None]:
        oid, cid = params.get("ordId"), params.get("clOrdId")
        if not oid and not cid:
            raise _Refused("50014", "Parameter ordId can not be empty.", 400)
        if oid and not str(oid).isdigit():
            raise _Refused("51000", "Parameter ordId error", 400)
        return (int(oid) if oid else None), (str(cid) if cid else None)

    def order_json(o: SimOrder) -> dict[str, Any]:
        spec = venue.specs[o.symbol]
        last = o.fills[-1] if o.fills else None
        return {
            "accFillSz": _num(o.filled), "algoClOrdId": "", "algoId": "", "attachAlgoClOrdId": "",
            "attachAlgoOrds": [], "avgPx": _num(o.average) if o.average else "", "cTime": str(o.created_ms),
            "cancelSource": "", "cancelSourceReason": "", "category": "normal", "ccy": "",
            "clOrdId": o.client_id, "fee": _num(-o.fee_total) if o.fills else "0",
            "feeCcy": o.fee_asset or (spec.base if o.side == "buy" else spec.quote),
            "fillPx": _num(last.price) if last else "", "fillSz": _num(last.qty) if last else "0",
            "fillTime": str(last.time_ms) if last else "", "instId": venue.inst_id(o.symbol),
            "instType": "SPOT", "isTpLimit": "false", "lever": "", "linkedAlgoOrd": {"algoId": ""},
            "ordId": str(o.id), "ordType": o.type, "pnl": "0", "posSide": "net",
            "px": _num(o.price) if o.price is not None else "", "pxType": "", "pxUsd": "", "pxVol": "",
            "quickMgnType": "", "rebate": "0", "rebateCcy": spec.quote, "reduceOnly": "false",
            "side": o.side, "slOrdPx": "", "slTriggerPx": "", "slTriggerPxType": "", "source": "",
            "state": _STATE[o.status], "stpId": "", "stpMode": "cancel_maker",
            "sz": _num(o.quote_amount if o.quote_amount is not None else o.amount),
            "tag": "", "tdMode": "cash",
            "tgtCcy": "quote_ccy" if o.quote_amount is not None else "base_ccy",
            "tpOrdPx": "", "tpTriggerPx": "", "tpTriggerPxType": "",
            "tradeId": str(last.id) if last else "", "tradeQuoteCcy": spec.quote,
            "uTime": str(o.updated_ms),
        }

    def fill_json(f: Fill) -> dict[str, Any]:
        ts = str(f.time_ms)
        return {"side": f.side, "fillSz": _num(f.qty), "fillPx": _num(f.price), "fillPxVol": "",
                "fillFwdPx": "", "fee": _num(-f.fee), "fillPnl": "0", "ordId": str(f.order_id),
                "feeRate": _num(-f.fee_rate), "instType": "SPOT", "fillPxUsd": "",
                "instId": venue.inst_id(f.symbol), "clOrdId": f.client_id, "posSide": "net",
                "billId": str(f.id), "subType": "1" if f.side == "buy" else "2", "fillMarkVol": "",
                "tag": "", "fillTime": ts, "execType": "M" if f.maker else "T", "fillIdxPx": "",
                "tradeId": str(f.id), "fillMarkPx": "", "feeCcy": f.fee_asset, "ts": ts}

    # ------------------------------------------------------------------ endpoints
    async def balance(request: web.Request, key: str, params: dict[str, Any]) -> web.StreamResponse:
        now = server.now_ms()
        eng = engine()
        eng.advance(now)
        wanted = {c.strip().upper() for c in str(params.get("ccy", "")).split(",") if c.strip()}
        details = []
        for ccy, (free, locked) in eng.account(key).snapshot().items():
            if wanted and ccy not in wanted:
                continue
            total = free + locked
            details.append({
                "availBal": _num(free), "availEq": "", "borrowFroz": "", "cashBal": _num(total),
                "ccy": ccy, "crossLiab": "", "disEq": "", "eq": _num(total), "eqUsd": "",
                "fixedBal": "0", "frozenBal": _num(locked), "imr": "", "interest": "",
                "isoEq": "", "isoLiab": "", "isoUpl": "", "liab": "", "maxLoan": "", "mgnRatio": "",
                "mmr": "", "notionalLever": "", "ordFrozen": _num(locked), "spotInUseAmt": "",
                "stgyEq": "0", "twap": "0", "uTime": str(now), "upl": "", "uplLiab": "",
            })
        return _ok([{"adjEq": "", "borrowFroz": "", "details": details, "imr": "", "isoEq": "",
                     "mgnRatio": "", "mmr": "", "notionalUsd": "", "ordFroz": "", "totalEq": "",
                     "uTime": str(now), "upl": ""}])

    def result(code: str, msg: str, cid: str, ord_id: str = "", tag: str = "") -> dict[str, Any]:
        return {"clOrdId": cid, "ordId": ord_id, "sCode": code, "sMsg": msg, "tag": tag,
                "ts": str(server.now_ms())}

    def place_one(key: str, params: dict[str, Any]) -> dict[str, Any]:
        """Place one order; the per-order result okx puts in ``data`` (``sCode`` "0" = placed)."""
        cid = str(params.get("clOrdId") or "")
        inst = params.get("instId")
        symbol = venue.by_id.get(str(inst)) if inst else None
        if symbol is None:
            return result("51001", "Instrument ID does not exist", cid)
        if cid and (len(cid) > 32 or not cid.isalnum()):
            return result("51000", "Parameter clOrdId error", cid)
        if params.get("tdMode") != "cash":
            return result("51000", "Parameter tdMode error", cid)
        side = params.get("side")
        if side not in ("buy", "sell"):
            return result("51000", "Parameter side error", cid)
        ord_type = params.get("ordType")
        if ord_type not in ("market", "limit"):
            logger.warning("okx sim: ordType %s is not simulated", ord_type)
            return result("51000", "Parameter ordType error", cid)
        try:
            sz = float(params.get("sz", ""))
        except ValueError:
            return result("51000", "Parameter sz error", cid)
        px = None
        if ord_type == "limit":
            try:
                px = float(params.get("px", ""))
            except ValueError:
                return result("51000", "Parameter px error", cid)
        # okx's own default for spot market buys is the quote currency
        tgt = params.get("tgtCcy") or ("quote_ccy" if ord_type == "market" and side == "buy" else "base_ccy")
        quote = sz if (ord_type == "market" and side == "buy" and tgt == "quote_ccy") else None
        spec = venue.specs[symbol]
        try:
            o = engine().place(key, symbol, str(side), str(ord_type), now_ms=server.now_ms(),
                               amount=None if quote is not None else sz, price=px, quote_amount=quote,
                               client_id=cid or None)
        except Reject as rej:
            code, msg = _REJECTS.get(rej.kind, ("51000", rej.message))
            return result(code, msg.format(ccy=spec.quote if side == "buy" else spec.base), cid)
        return result("0", "Order placed", cid, str(o.id), str(params.get("tag") or ""))

    def placed(results: list[dict[str, Any]]) -> web.Response:
        ok = sum(r["sCode"] == "0" for r in results)
        code, msg = ("0", "") if ok == len(results) else (
            ("1", "All operations failed") if ok == 0 else ("2", "Bulk operation partially succeeded"))
        now = str(server.now_ms() * 1000)
        return json_response({"code": code, "msg": msg, "data": results, "inTime": now, "outTime": now})

    async def place(request: web.Request, key: str, params: dict[str, Any]) -> web.StreamResponse:
        res = place_one(key, params)
        response = placed([res])
        return await server.order_ack(request, response) if res["sCode"] == "0" else response

    async def batch_place(request: web.Request, key: str, params: dict[str, Any]) -> web.StreamResponse:
        entries = params.get("_batch")
        if not isinstance(entries, list) or not entries or len(entries) > 20:
            raise _Refused("50002", "Json data format error", 400)
        results = [place_one(key, e) if isinstance(e, dict) else result("50002", "Json data format error", "")
                   for e in entries]
        response = placed(results)
        if any(r["sCode"] == "0" for r in results):
            return await server.order_ack(request, response)
        return response

    async def cancel(request: web.Request, key: str, params: dict[str, Any]) -> web.StreamResponse:
        symbol = symbol_of(params)
        oid, cid = ids(params)
        now = server.now_ms()
        try:
            o = engine().cancel(key, now_ms=now, symbol=symbol, order_id=oid, client_id=cid)
        except Reject:
            return json_response({"code": "1", "msg": "All operations failed", "data": [
                {"clOrdId": cid or "", "ordId": str(oid or ""), "sCode": "51400",
                 "sMsg": "Order cancellation failed as the order has been filled, canceled or does "
                         "not exist", "ts": str(now)}], "inTime": str(now), "outTime": str(now)})
        return _ok([{"clOrdId": o.client_id, "ordId": str(o.id), "sCode": "0", "sMsg": "",
                     "ts": str(now)}])

    async def get_order(request: web.Request, key: str, params: dict[str, Any]) -> web.StreamResponse:
        symbol = symbol_of(params)
        oid, cid = ids(params)
        o = engine().find(key, symbol=symbol, order_id=oid, client_id=cid, now_ms=server.now_ms())
        if o is None:
            raise _Refused("51603", "Order does not exist")
        return _ok([order_json(o)])

    def check_inst_type(params: dict[str, Any], required: bool) -> None:
        t = params.get("instType")
        if t is None and required:
            raise _Refused("50014", "Parameter instType can not be empty.", 400)
        if t is not None and t not in ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION"):
            raise _Refused("51000", "Parameter instType error", 400)

    def limited(rows: list[Any], params: dict[str, Any]) -> list[Any]:
        try:
            limit = int(params.get("limit") or 100)
        except ValueError:
            raise _Refused("51000", "Parameter limit error", 400) from None
        return rows[:max(1, min(limit, 100))]

    async def pending(request: web.Request, key: str, params: dict[str, Any]) -> web.StreamResponse:
        check_inst_type(params, required=False)
        symbol = symbol_of(params, required=False)
        if params.get("instType") not in (None, "SPOT"):
            return _ok([])
        rows = engine().open_orders(key, symbol, now_ms=server.now_ms())
        return _ok(limited([order_json(o) for o in reversed(rows)], params))

    async def history(request: web.Request, key: str, params: dict[str, Any]) -> web.StreamResponse:
        check_inst_type(params, required=True)
        symbol = symbol_of(params, required=False)
        eng = engine()
        eng.advance(server.now_ms())
        if params.get("instType") != "SPOT":
            return _ok([])
        rows = [o for o in eng.orders.values() if o.key == key and not o.is_open
                and (symbol is None or o.symbol == symbol)]
        return _ok(limited([order_json(o) for o in reversed(rows)], params))

    async def fills(request: web.Request, key: str, params: dict[str, Any]) -> web.StreamResponse:
        check_inst_type(params, required=request.path.endswith("-history"))
        symbol = symbol_of(params, required=False)
        oid = params.get("ordId")
        rows = engine().account_fills(key, symbol=symbol, order_id=int(oid) if oid and str(oid).isdigit()
                                      else None, now_ms=server.now_ms())
        if params.get("instType") not in (None, "SPOT"):
            rows = []
        begin, end = params.get("begin"), params.get("end")
        rows = [f for f in rows if (not begin or f.time_ms >= int(begin))
                and (not end or f.time_ms <= int(end))]
        return _ok(limited([fill_json(f) for f in reversed(rows)], params))

    return [
        web.get("/api/v5/account/balance", handler(balance)),
        web.post("/api/v5/trade/order", handler(place)),
        web.post("/api/v5/trade/batch-orders", handler(batch_place)),  # ccxt's create_order
        web.get("/api/v5/trade/order", handler(get_order)),
        web.post("/api/v5/trade/cancel-order", handler(cancel)),
        web.get("/api/v5/trade/orders-pending", handler(pending)),
        web.get("/api/v5/trade/orders-history", handler(history)),
        web.get("/api/v5/trade/fills", handler(fills)),
        web.get("/api/v5/trade/fills-history", handler(fills)),
    ]
