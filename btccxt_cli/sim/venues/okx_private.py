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
    GET  /api/v5/trade/orders-history   instType [instId] [state=filled|canceled]
    GET  /api/v5/trade/fills            [instType] [instId] [ordId] [begin] [end] [limit<=100]
    GET  /api/v5/trade/fills-history    same (what ccxt's fetch_my_trades asks)

Algo (stop) orders: ``okx_algo.py``.

Placement errors come back as okx sends them, HTTP 200 with ``code "1"``::

    {"code": "1", "msg": "All operations failed", "data": [{"clOrdId": "", "ordId": "",
     "sCode": "51008", "sMsg": "Order failed. Insufficient USDT balance in account.", "tag": "",
     "ts": "1695190491421"}], "inTime": "...", "outTime": "..."}

Spot in cash mode; swaps (``-SWAP``) in ``cross`` or ``isolated`` mode with ``sz`` in contracts,
``reduceOnly`` and ``posSide`` (positions, leverage and funding: ``okx_swap.py``); margin
trading answers 51000. Must not import ccxt or anything from
the client side of btccxt.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from btccxt_cli.sim.accounts import Fill, Reject, SimOrder
from btccxt_cli.sim.venues.okx_algo import AlgoBook
from btccxt_cli.sim.venues.okx_common import (
    FIRST_ALGO_ID,
    FIRST_ORDER_ID,
    MAKER_FEE,
    REGULAR_TYPE,
    REJECTS,
    STATE,
    TAKER_FEE,
    Refused,
    check_inst_type,
    limited,
    num,
    ok,
    order_ids,
    signed,
    symbol_of,
)
from btccxt_cli.sim.wire import json_response

if TYPE_CHECKING:
    from btccxt_cli.sim.accounts import Engine
    from btccxt_cli.sim.venues.okx import OkxVenue

logger = logging.getLogger(__name__)

#: okx's ``source`` of an order an algo order placed: a trigger order's, a stop-loss's, a
#: trailing stop's
_SOURCE = {"trigger": "6", "conditional": "7", "move_order_stop": "25"}

__all__ = ["private_routes", "MAKER_FEE", "TAKER_FEE", "FIRST_ORDER_ID", "FIRST_ALGO_ID"]


def private_routes(venue: OkxVenue) -> list[web.RouteDef]:
    """Routes of the signed okx API, bound to ``venue``."""
    server = venue.server
    book = AlgoBook(venue)

    def engine() -> Engine:
        return server.engine

    def of_type(symbol: str, params: dict[str, Any]) -> bool:
        """The order or fill of ``symbol`` is of the asked ``instType`` (all when none is)."""
        wanted = params.get("instType")
        return wanted in (None, "") or wanted == venue.inst_type(symbol)

    def order_json(o: SimOrder) -> dict[str, Any]:
        spec = venue.specs[o.symbol]
        last = o.fills[-1] if o.fills else None
        a = book.algo_of.get(o.id)
        created = o.created_ms
        if a is not None:
            created = book.trigger_time(a, o) or created
        swap = spec.is_swap

        def sz(base: float) -> float:
            return venue.contracts(o.symbol, base)

        lever = engine().derivs.leverage_of(o.key, o.symbol, o.pos_side) if swap else 0.0
        return {
            "accFillSz": num(sz(o.filled)), "algoClOrdId": a.client_id if a else "",
            "algoId": str(a.algo_id) if a else "", "attachAlgoClOrdId": "",
            "attachAlgoOrds": [], "avgPx": num(o.average) if o.average else "", "cTime": str(created),
            "cancelSource": "", "cancelSourceReason": "", "category": "normal", "ccy": "",
            "clOrdId": book.shown_cid(o), "fee": num(-o.fee_total) if o.fills else "0",
            "feeCcy": o.fee_asset or (spec.base if o.side == "buy" else spec.quote),
            "fillPx": num(last.price) if last else "", "fillSz": num(sz(last.qty)) if last else "0",
            "fillTime": str(last.time_ms) if last else "", "instId": venue.inst_id(o.symbol),
            "instType": venue.inst_type(o.symbol), "isTpLimit": "false",
            "lever": num(lever) if swap else "", "linkedAlgoOrd": {"algoId": ""},
            "ordId": str(o.id), "ordType": REGULAR_TYPE.get(o.type, o.type),
            "pnl": num(sum(f.pnl for f in o.fills)), "posSide": o.pos_side,
            "px": num(o.price) if o.price is not None else "", "pxType": "", "pxUsd": "", "pxVol": "",
            "quickMgnType": "", "rebate": "0", "rebateCcy": spec.quote,
            "reduceOnly": "true" if o.reduce_only else "false",
            "side": o.side, "slOrdPx": "", "slTriggerPx": "", "slTriggerPxType": "",
            # okx's order sources: 6 = placed by a trigger order, 7 = by a TP/SL (conditional) order
            "source": "" if a is None else _SOURCE.get(a.ord_type, "7"),
            "state": STATE[o.status], "stpId": "", "stpMode": "cancel_maker",
            "sz": num(o.quote_amount if o.quote_amount is not None else sz(o.amount)),
            "tag": a.tag if a else "", "tdMode": o.margin_mode if swap else "cash",
            "tgtCcy": "quote_ccy" if o.quote_amount is not None else "base_ccy",
            "tpOrdPx": "", "tpTriggerPx": "", "tpTriggerPxType": "",
            "tradeId": str(last.id) if last else "", "tradeQuoteCcy": spec.quote,
            "uTime": str(o.updated_ms),
        }

    def fill_json(f: Fill) -> dict[str, Any]:
        ts = str(f.time_ms)
        return {"side": f.side, "fillSz": num(venue.contracts(f.symbol, f.qty)), "fillPx": num(f.price),
                "fillPxVol": "",
                "fillFwdPx": "", "fee": num(-f.fee), "fillPnl": num(f.pnl), "ordId": str(f.order_id),
                "feeRate": num(-f.fee_rate), "instType": venue.inst_type(f.symbol), "fillPxUsd": "",
                "instId": venue.inst_id(f.symbol),
                "posSide": o.pos_side if (o := engine().orders.get(f.order_id)) else "net",
                "clOrdId": a.client_id if (a := book.algo_of.get(f.order_id)) else f.client_id,
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
                "availBal": num(free), "availEq": "", "borrowFroz": "", "cashBal": num(total),
                "ccy": ccy, "crossLiab": "", "disEq": "", "eq": num(total), "eqUsd": "",
                "fixedBal": "0", "frozenBal": num(locked), "imr": "", "interest": "",
                "isoEq": "", "isoLiab": "", "isoUpl": "", "liab": "", "maxLoan": "", "mgnRatio": "",
                "mmr": "", "notionalLever": "", "ordFrozen": num(locked), "spotInUseAmt": "",
                "stgyEq": "0", "twap": "0", "uTime": str(now), "upl": "", "uplLiab": "",
            })
        return ok([{"adjEq": "", "borrowFroz": "", "details": details, "imr": "", "isoEq": "",
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
        swap = venue.specs[symbol].is_swap
        td_mode = params.get("tdMode")
        if td_mode not in (("cross", "isolated") if swap else ("cash",)):
            return result("51000", "Parameter tdMode error", cid)
        reduce_only = str(params.get("reduceOnly", "false")).lower() == "true"
        pos_side = str(params.get("posSide") or "") or None
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
        quote = sz if (ord_type == "market" and side == "buy" and tgt == "quote_ccy" and not swap) else None
        if swap:  # contracts of ctVal base units
            if abs(sz * 10 ** venue.specs[symbol].contract_lot_decimals
                   - round(sz * 10 ** venue.specs[symbol].contract_lot_decimals)) > 1e-6:
                return result("51121", "Order quantity must be a multiple of the lot size.", cid)
            sz = venue.base_amount(symbol, sz)
        spec = venue.specs[symbol]
        try:
            o = engine().place(key, symbol, str(side), str(ord_type), now_ms=server.now_ms(),
                               amount=None if quote is not None else sz, price=px, quote_amount=quote,
                               client_id=cid or None, reduce_only=reduce_only,
                               pos_side=pos_side, margin_mode=td_mode if swap else None)
        except Reject as rej:
            code, msg = REJECTS.get(rej.kind, ("51000", rej.message))
            if swap and rej.kind == "insufficient_funds":
                code, msg = "51008", "Order failed. Insufficient {ccy} margin in account"
            return result(code, msg.format(ccy=spec.quote if side == "buy" or swap else spec.base), cid)
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
            raise Refused("50002", "Json data format error", 400)
        results = [place_one(key, e) if isinstance(e, dict) else result("50002", "Json data format error", "")
                   for e in entries]
        response = placed(results)
        if any(r["sCode"] == "0" for r in results):
            return await server.order_ack(request, response)
        return response

    def find_regular(key: str, symbol: str | None, oid: int | None, cid: str | None,
                     now: int) -> SimOrder | None:
        """A regular order by ``ordId`` or ``clOrdId`` (the newest); algo orders that have not
        placed their order yet are not regular orders."""
        eng = engine()
        if oid is not None:
            o = eng.find(key, symbol=symbol, order_id=oid, now_ms=now)
            return o if o is not None and book.visible(o) and (cid is None or book.shown_cid(o) == cid) else None
        eng.advance(now)
        for o in reversed(list(eng.orders.values())):
            if (o.key == key and (symbol is None or o.symbol == symbol) and book.visible(o)
                    and book.shown_cid(o) == cid):
                return None if eng.lagging(o, now) else o
        return None

    async def cancel(request: web.Request, key: str, params: dict[str, Any]) -> web.StreamResponse:
        symbol = symbol_of(venue, params)
        oid, cid = order_ids(params)
        now = server.now_ms()
        try:
            found = find_regular(key, symbol, oid, cid, now)
            if found is None:
                raise Reject("unknown_order", "unknown order")
            o = engine().cancel(key, now_ms=now, symbol=symbol, order_id=found.id)
        except Reject:
            return json_response({"code": "1", "msg": "All operations failed", "data": [
                {"clOrdId": cid or "", "ordId": str(oid or ""), "sCode": "51400",
                 "sMsg": "Order cancellation failed as the order has been filled, canceled or does "
                         "not exist", "ts": str(now)}], "inTime": str(now), "outTime": str(now)})
        return ok([{"clOrdId": book.shown_cid(o), "ordId": str(o.id), "sCode": "0", "sMsg": "",
                     "ts": str(now)}])

    async def get_order(request: web.Request, key: str, params: dict[str, Any]) -> web.StreamResponse:
        symbol = symbol_of(venue, params)
        oid, cid = order_ids(params)
        o = find_regular(key, symbol, oid, cid, server.now_ms())
        if o is None:
            raise Refused("51603", "Order does not exist")
        return ok([order_json(o)])

    async def pending(request: web.Request, key: str, params: dict[str, Any]) -> web.StreamResponse:
        check_inst_type(params, required=False)
        symbol = symbol_of(venue, params, required=False)
        rows = [o for o in engine().open_orders(key, symbol, now_ms=server.now_ms())
                if book.visible(o) and of_type(o.symbol, params)]
        return ok(limited([order_json(o) for o in reversed(rows)], params))

    async def history(request: web.Request, key: str, params: dict[str, Any]) -> web.StreamResponse:
        check_inst_type(params, required=True)
        symbol = symbol_of(venue, params, required=False)
        eng = engine()
        eng.advance(server.now_ms())
        state = params.get("state")  # ccxt: filled (fetch_closed_orders), canceled
        if state not in (None, "", "filled", "canceled", "mmp_canceled"):
            raise Refused("51000", "Parameter state error", 400)
        rows = [o for o in eng.orders.values() if o.key == key and not o.is_open and book.visible(o)
                and of_type(o.symbol, params)
                and (symbol is None or o.symbol == symbol) and (not state or STATE[o.status] == state)]
        return ok(limited([order_json(o) for o in reversed(rows)], params))

    async def fills(request: web.Request, key: str, params: dict[str, Any]) -> web.StreamResponse:
        check_inst_type(params, required=request.path.endswith("-history"))
        symbol = symbol_of(venue, params, required=False)
        oid = params.get("ordId")
        rows = engine().account_fills(key, symbol=symbol, order_id=int(oid) if oid and str(oid).isdigit()
                                      else None, now_ms=server.now_ms())
        rows = [f for f in rows if of_type(f.symbol, params)]
        begin, end = params.get("begin"), params.get("end")
        rows = [f for f in rows if (not begin or f.time_ms >= int(begin))
                and (not end or f.time_ms <= int(end))]
        return ok(limited([fill_json(f) for f in reversed(rows)], params))

    def h(fn: Any) -> Any:
        return signed(venue, fn)

    return [
        web.get("/api/v5/account/balance", h(balance)),
        web.post("/api/v5/trade/order", h(place)),
        web.post("/api/v5/trade/batch-orders", h(batch_place)),  # ccxt's create_order
        web.get("/api/v5/trade/order", h(get_order)),
        web.post("/api/v5/trade/cancel-order", h(cancel)),
        web.get("/api/v5/trade/orders-pending", h(pending)),
        web.get("/api/v5/trade/orders-history", h(history)),
        web.get("/api/v5/trade/fills", h(fills)),
        web.get("/api/v5/trade/fills-history", h(fills)),
        *book.routes(),
    ]
