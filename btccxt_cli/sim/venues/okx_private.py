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

Algo (stop) orders, spot::

    POST /api/v5/trade/order-algo       {instId tdMode=cash|cross side sz [tgtCcy] [algoClOrdId|clOrdId]
                                         [tag] ordType=conditional slTriggerPx slOrdPx(-1 = market)
                                         | ordType=trigger triggerPx orderPx(-1 = market)}
    GET  /api/v5/trade/order-algo       algoId|algoClOrdId [instId]
    POST /api/v5/trade/cancel-algos     [{instId algoId|algoClOrdId}, ... up to 10]
    GET  /api/v5/trade/orders-algo-pending  ordType(conditional,trigger ...) [instType] [instId]
                                            [algoId] [algoClOrdId] [after] [before] [limit]
    GET  /api/v5/trade/orders-algo-history  ordType state=effective|canceled|order_failed or algoId
                                            [instType] [instId] [after] [before] [limit]

An algo order rests as one of the engine's stop orders (``stop_market`` for ``-1``, else
``stop_limit``), which reserves its funds, and is ``live`` until the price path reaches its
trigger price (a sell when the price falls to it, a buy when it rises to it). Then it is
``effective`` and the engine's order becomes the regular order okx places: visible from then
on through ``/trade/order``, ``/orders-pending``, ``/orders-history`` and ``/fills`` under its
own ``ordId`` (the algo row's ``ordId`` and ``ordIdList``), with ``algoId`` and
``algoClOrdId`` pointing back at the algo order. Before that the regular endpoints do not know
it. A market buy the account cannot pay at the trigger price is ``order_failed`` (failCode
51008). A cancelled algo order is ``canceled``. A sell ``conditional`` stop above the last
price is refused with 51280, a buy below it with 51278, as okx does; a ``trigger`` order whose
trigger price is on the other side (waiting for a rise to sell, or a fall to buy), take-profit
legs, ``oco`` and the other algo types are not simulated (51000).

Placement errors come back as okx sends them, HTTP 200 with ``code "1"``::

    {"code": "1", "msg": "All operations failed", "data": [{"clOrdId": "", "ordId": "",
     "sCode": "51008", "sMsg": "Order failed. Insufficient USDT balance in account.", "tag": "",
     "ts": "1695190491421"}], "inTime": "...", "outTime": "..."}

Spot in cash mode only; swaps and margin answer 51000. Must not import ccxt or anything from
the client side of btccxt.
"""

from __future__ import annotations

import itertools
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from btccxt_cli.sim.accounts import Fill, Reject, SimOrder, hmac_sha256_b64, same_signature
from btccxt_cli.sim.venues import json_response

if TYPE_CHECKING:
    from btccxt_cli.sim.accounts import Engine
    from btccxt_cli.sim.venues.okx import OkxVenue

logger = logging.getLogger(__name__)

__all__ = ["private_routes", "MAKER_FEE", "TAKER_FEE", "FIRST_ORDER_ID", "FIRST_ALGO_ID"]

MAKER_FEE = 0.0008
TAKER_FEE = 0.001
FIRST_ORDER_ID = 680_800_019_749_904_384
FIRST_ALGO_ID = 2_094_566_107_385_651_200  # algo ids never equal order ids, as on okx
TIMESTAMP_WINDOW_MS = 30_000
ALGO_TYPES = ("conditional", "oco", "chase", "trigger", "move_order_stop", "iceberg", "twap")
ALGO_HISTORY_STATES = ("effective", "canceled", "order_failed")
TRIGGER_WALK_MS = 86_400_000  # how far back a trigger time is looked for on the path (rare)

_REGULAR_TYPE = {"stop_market": "market", "stop_limit": "limit"}  # what an algo order places
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


@dataclass
class _Algo:
    """One algo order; the engine's stop order ``order_id`` carries its funds and its fate."""

    algo_id: int
    key: str
    order_id: int
    client_id: str  # algoClOrdId ("" if none)
    ord_type: str  # conditional | trigger
    trigger_px: float
    order_px: float | None  # None: market (-1)
    td_mode: str
    tgt_ccy: str
    tag: str
    trigger_ms: int | None = None  # when the path reached the trigger (found once, kept)


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
    algo_ids = itertools.count(FIRST_ALGO_ID)
    algos: dict[int, _Algo] = {}  # algo id -> algo order
    algo_of: dict[int, _Algo] = {}  # engine order id -> the algo order it carries

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

    # ------------------------------------------------------------------ algo bookkeeping
    def placed_by_algo(o: SimOrder) -> bool:
        """The algo order behind ``o`` triggered and okx placed its regular order."""
        return o.triggered and not (o.status == "expired" and not o.fills)

    def visible(o: SimOrder) -> bool:
        """Regular endpoints see plain orders, and algo orders' engine orders once placed."""
        return o.id not in algo_of or placed_by_algo(o)

    def shown_cid(o: SimOrder) -> str:
        a = algo_of.get(o.id)
        return o.client_id if a is None else a.client_id

    def algo_state(o: SimOrder) -> str:
        if not o.triggered:
            return "live" if o.is_open else "canceled"
        return "effective" if placed_by_algo(o) else "order_failed"

    def crossed(o: SimOrder, px: float) -> bool:
        stop = float(o.stop_price or 0.0)
        return px <= stop if o.side == "sell" else px >= stop

    def trigger_time(a: _Algo, o: SimOrder) -> int | None:
        """When the path reached the trigger: exact from the engine's record where it shows
        (a stop-market fills at once, a stop-limit that met the book filled as a taker, an
        untouched one was last updated then); else the first second on the path that crossed."""
        if not o.triggered:
            return None
        if a.trigger_ms is None:
            first = o.fills[0] if o.fills else None
            if o.type == "stop_market" or (first is not None and not first.maker):
                a.trigger_ms = first.time_ms if first is not None else o.updated_ms
            elif first is None and o.is_open:
                a.trigger_ms = o.updated_ms
            else:
                end = first.time_ms if first is not None else o.updated_ms
                a.trigger_ms = end
                t = max(o.created_ms, end - TRIGGER_WALK_MS)
                if crossed(o, engine().price(o.symbol, t)):
                    a.trigger_ms = t
                else:
                    t = t - t % 1000 + 1000
                    while t < end:
                        if crossed(o, engine().price(o.symbol, t)):
                            a.trigger_ms = t
                            break
                        t += 1000
        return a.trigger_ms

    def order_json(o: SimOrder) -> dict[str, Any]:
        spec = venue.specs[o.symbol]
        last = o.fills[-1] if o.fills else None
        a = algo_of.get(o.id)
        created = o.created_ms
        if a is not None:
            created = trigger_time(a, o) or created
        return {
            "accFillSz": _num(o.filled), "algoClOrdId": a.client_id if a else "",
            "algoId": str(a.algo_id) if a else "", "attachAlgoClOrdId": "",
            "attachAlgoOrds": [], "avgPx": _num(o.average) if o.average else "", "cTime": str(created),
            "cancelSource": "", "cancelSourceReason": "", "category": "normal", "ccy": "",
            "clOrdId": shown_cid(o), "fee": _num(-o.fee_total) if o.fills else "0",
            "feeCcy": o.fee_asset or (spec.base if o.side == "buy" else spec.quote),
            "fillPx": _num(last.price) if last else "", "fillSz": _num(last.qty) if last else "0",
            "fillTime": str(last.time_ms) if last else "", "instId": venue.inst_id(o.symbol),
            "instType": "SPOT", "isTpLimit": "false", "lever": "", "linkedAlgoOrd": {"algoId": ""},
            "ordId": str(o.id), "ordType": _REGULAR_TYPE.get(o.type, o.type), "pnl": "0", "posSide": "net",
            "px": _num(o.price) if o.price is not None else "", "pxType": "", "pxUsd": "", "pxVol": "",
            "quickMgnType": "", "rebate": "0", "rebateCcy": spec.quote, "reduceOnly": "false",
            "side": o.side, "slOrdPx": "", "slTriggerPx": "", "slTriggerPxType": "",
            # okx's order sources: 6 = placed by a trigger order, 7 = by a TP/SL (conditional) order
            "source": "" if a is None else ("6" if a.ord_type == "trigger" else "7"),
            "state": _STATE[o.status], "stpId": "", "stpMode": "cancel_maker",
            "sz": _num(o.quote_amount if o.quote_amount is not None else o.amount),
            "tag": a.tag if a else "", "tdMode": "cash",
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
                "instId": venue.inst_id(f.symbol), "posSide": "net",
                "clOrdId": a.client_id if (a := algo_of.get(f.order_id)) else f.client_id,
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

    def find_regular(key: str, symbol: str | None, oid: int | None, cid: str | None,
                     now: int) -> SimOrder | None:
        """A regular order by ``ordId`` or ``clOrdId`` (the newest); algo orders that have not
        placed their order yet are not regular orders."""
        eng = engine()
        if oid is not None:
            o = eng.find(key, symbol=symbol, order_id=oid, now_ms=now)
            return o if o is not None and visible(o) and (cid is None or shown_cid(o) == cid) else None
        eng.advance(now)
        for o in reversed(list(eng.orders.values())):
            if (o.key == key and (symbol is None or o.symbol == symbol) and visible(o)
                    and shown_cid(o) == cid):
                return o
        return None

    async def cancel(request: web.Request, key: str, params: dict[str, Any]) -> web.StreamResponse:
        symbol = symbol_of(params)
        oid, cid = ids(params)
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
        return _ok([{"clOrdId": shown_cid(o), "ordId": str(o.id), "sCode": "0", "sMsg": "",
                     "ts": str(now)}])

    async def get_order(request: web.Request, key: str, params: dict[str, Any]) -> web.StreamResponse:
        symbol = symbol_of(params)
        oid, cid = ids(params)
        o = find_regular(key, symbol, oid, cid, server.now_ms())
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
        rows = [o for o in engine().open_orders(key, symbol, now_ms=server.now_ms()) if visible(o)]
        return _ok(limited([order_json(o) for o in reversed(rows)], params))

    async def history(request: web.Request, key: str, params: dict[str, Any]) -> web.StreamResponse:
        check_inst_type(params, required=True)
        symbol = symbol_of(params, required=False)
        eng = engine()
        eng.advance(server.now_ms())
        state = params.get("state")  # ccxt: filled (fetch_closed_orders), canceled
        if state not in (None, "", "filled", "canceled", "mmp_canceled"):
            raise _Refused("51000", "Parameter state error", 400)
        if params.get("instType") != "SPOT":
            return _ok([])
        rows = [o for o in eng.orders.values() if o.key == key and not o.is_open and visible(o)
                and (symbol is None or o.symbol == symbol) and (not state or _STATE[o.status] == state)]
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


    # ------------------------------------------------------------------ algo orders
    def algo_json(a: _Algo, now: int) -> dict[str, Any]:
        eng = engine()
        o = eng.orders[a.order_id]
        spec = venue.specs[o.symbol]
        state = algo_state(o)
        fired = trigger_time(a, o)
        effective = state == "effective"
        cond = a.ord_type == "conditional"
        px = _num(a.order_px) if a.order_px is not None else "-1"
        updated = o.updated_ms if state == "canceled" else (fired or o.created_ms)
        return {
            "activePx": "", "actualPx": px if effective else "",
            "actualSide": ("sl" if effective else "") if cond else o.side,
            "actualSz": _num(o.amount) if effective else "0", "algoClOrdId": a.client_id,
            "algoId": str(a.algo_id), "amendPxOnTriggerType": "0", "attachAlgoOrds": [],
            "cTime": str(o.created_ms), "callbackRatio": "", "callbackSpread": "", "ccy": "",
            "chaseType": "", "chaseVal": "", "clOrdId": a.client_id, "closeFraction": "",
            "failCode": "51008" if state == "order_failed" else "", "instId": venue.inst_id(o.symbol),
            "instType": "SPOT", "isTradeBorrowMode": "", "last": _num(eng.price(o.symbol, now)),
            "lever": "", "linkedOrd": {"ordId": ""}, "maxChaseType": "", "maxChaseVal": "",
            "moveTriggerPx": "", "notionalUsd": "", "ordId": str(o.id) if effective else "",
            "ordIdList": [str(o.id)] if effective else [], "ordPx": "" if cond else px,
            "ordType": a.ord_type, "posSide": "net", "pxLimit": "", "pxSpread": "", "pxVar": "",
            "quickMgnType": "", "reduceOnly": "false", "side": o.side,
            "slOrdPx": px if cond else "", "slTriggerPx": _num(a.trigger_px) if cond else "",
            "slTriggerPxType": "last" if cond else "", "state": state, "sz": _num(o.amount),
            "szLimit": "", "tag": a.tag, "tdMode": a.td_mode, "tgtCcy": a.tgt_ccy, "timeInterval": "",
            "tpOrdPx": "", "tpTriggerPx": "", "tpTriggerPxType": "", "tradeQuoteCcy": spec.quote,
            "triggerPx": "" if cond else _num(a.trigger_px), "triggerPxType": "" if cond else "last",
            "triggerTime": str(fired) if fired is not None else "", "uTime": str(updated),
        }

    def algo_result(code: str, msg: str, cid: str, algo_id: str = "", tag: str = "") -> dict[str, Any]:
        return {"algoClOrdId": cid, "algoId": algo_id, "clOrdId": cid, "sCode": code, "sMsg": msg,
                "tag": tag}

    def price_param(params: dict[str, Any], name: str, market_ok: bool) -> float | None | str:
        """A price parameter: a float, None for ``-1`` (market) where allowed, else an error text."""
        raw = str(params.get(name) or "")
        if market_ok and raw == "-1":
            return None
        try:
            value = float(raw)
        except ValueError:
            return f"Parameter {name} error"
        return value if value > 0 else f"Parameter {name} error"

    def not_simulated(what: str, cid: str) -> dict[str, Any]:
        logger.warning("okx sim: %s is not simulated", what)
        return algo_result("51000", f"Parameter {what.split()[0]} error", cid)

    def place_algo_one(key: str, params: dict[str, Any]) -> tuple[dict[str, Any], _Algo | None]:
        cid = str(params.get("algoClOrdId") or params.get("clOrdId") or "")
        tag = str(params.get("tag") or "")
        if cid and (len(cid) > 32 or not cid.isalnum()):
            return algo_result("51000", "Parameter algoClOrdId error", cid), None
        inst = params.get("instId")
        symbol = venue.by_id.get(str(inst)) if inst else None
        if symbol is None:
            return algo_result("51001", "Instrument ID does not exist", cid), None
        td_mode = str(params.get("tdMode") or "")
        if td_mode not in ("cash", "cross"):  # ccxt sends cross for spot stop-loss orders
            return algo_result("51000", "Parameter tdMode error", cid), None
        side = params.get("side")
        if side not in ("buy", "sell"):
            return algo_result("51000", "Parameter side error", cid), None
        ord_type = str(params.get("ordType") or "")
        if ord_type not in ("conditional", "trigger"):
            return not_simulated(f"ordType {ord_type or '(none)'} (algo order type)", cid), None
        try:
            sz = float(params.get("sz", ""))
        except ValueError:
            return algo_result("51000", "Parameter sz error", cid), None
        if params.get("attachAlgoOrds") or params.get("closeFraction"):
            return not_simulated("attachAlgoOrds or closeFraction on algo orders", cid), None
        if ord_type == "conditional":
            if params.get("tpTriggerPx") or params.get("tpOrdPx"):
                return not_simulated("tpTriggerPx (take-profit legs of conditional orders)", cid), None
            trig_name, px_name, type_name = "slTriggerPx", "slOrdPx", "slTriggerPxType"
        else:
            trig_name, px_name, type_name = "triggerPx", "orderPx", "triggerPxType"
        if params.get(type_name) not in (None, "", "last"):
            return not_simulated(f"{type_name} {params.get(type_name)} (only last is)", cid), None
        trigger = price_param(params, trig_name, market_ok=False)
        order_px = price_param(params, px_name, market_ok=True)
        if isinstance(trigger, str):
            return algo_result("51000", trigger, cid), None
        if isinstance(order_px, str):
            return algo_result("51000", order_px, cid), None
        assert trigger is not None
        spec = venue.specs[symbol]
        if abs(trigger * spec.price_scale - round(trigger * spec.price_scale)) > 1e-6:
            return algo_result("51000", f"Parameter {trig_name} error", cid), None
        tgt = str(params.get("tgtCcy") or "")
        if order_px is None and side == "buy" and tgt != "base_ccy":
            # okx sizes an algo market buy in quote currency unless tgtCcy=base_ccy
            return not_simulated("tgtCcy quote_ccy (algo market buys sized in quote currency)", cid), None
        eng = engine()
        now = server.now_ms()
        eng.advance(now)
        last = eng.price(symbol, now)
        if ord_type == "conditional":
            if side == "sell" and trigger > last:
                return algo_result("51280", "SL trigger price cannot be higher than the last price", cid), None
            if side == "buy" and trigger < last:
                return algo_result("51278", "SL trigger price cannot be lower than the last price", cid), None
        elif (side == "sell" and trigger > last) or (side == "buy" and trigger < last):
            return not_simulated(f"triggerPx on the far side of the last price (a {side} trigger "
                                 f"at {trigger:g} with the price at {last:g})", cid), None
        kind = "stop_market" if order_px is None else "stop_limit"
        try:
            o = eng.place(key, symbol, str(side), kind, now_ms=now, amount=sz, price=order_px,
                          stop_price=trigger, client_id=cid or None)
        except Reject as rej:
            if rej.kind == "duplicate_client_id":
                return algo_result("51065", "algoClOrdId already exists.", cid), None
            if rej.kind == "bad_price":
                return algo_result("51000", f"Parameter {px_name} error", cid), None
            code, msg = _REJECTS.get(rej.kind, ("51000", rej.message))
            return algo_result(code, msg.format(ccy=spec.quote if side == "buy" else spec.base), cid), None
        a = _Algo(algo_id=next(algo_ids), key=key, order_id=o.id, client_id=cid, ord_type=ord_type,
                  trigger_px=trigger, order_px=order_px, td_mode=td_mode, tgt_ccy=tgt, tag=tag)
        algos[a.algo_id] = a
        algo_of[o.id] = a
        return algo_result("0", "Order placed", cid, str(a.algo_id), tag), a

    async def place_algo(request: web.Request, key: str, params: dict[str, Any]) -> web.StreamResponse:
        if "_batch" in params:
            raise _Refused("50002", "Json data format error", 400)
        res, a = place_algo_one(key, params)
        now = str(server.now_ms() * 1000)
        code, msg = ("0", "") if a is not None else ("1", "Operation failed.")
        response = json_response({"code": code, "msg": msg, "data": [res], "inTime": now, "outTime": now})
        return await server.order_ack(request, response) if a is not None else response

    def find_algo(key: str, symbol: str | None, algo_id: str | None, cid: str | None) -> _Algo | None:
        """An algo order by ``algoId``, else the newest with that ``algoClOrdId``."""
        if algo_id:
            a = algos.get(int(algo_id)) if str(algo_id).isdigit() else None
            found = [a] if a is not None else []
        else:
            found = [a for a in reversed(algos.values()) if a.client_id == cid]
        for a in found:
            o = engine().orders[a.order_id]
            if a.key == key and (symbol is None or o.symbol == symbol) and (
                    not cid or a.client_id == cid):
                return a
        return None

    async def get_algo(request: web.Request, key: str, params: dict[str, Any]) -> web.StreamResponse:
        algo_id, cid = params.get("algoId"), params.get("algoClOrdId")
        if not algo_id and not cid:
            raise _Refused("50014", "Parameter algoId can not be empty.", 400)
        if algo_id and not str(algo_id).isdigit():
            raise _Refused("51000", "Parameter algoId error", 400)
        symbol = symbol_of(params, required=False)
        now = server.now_ms()
        engine().advance(now)
        a = find_algo(key, symbol, algo_id, cid)
        if a is None:
            raise _Refused("51603", "Order does not exist")
        return _ok([algo_json(a, now)])

    async def cancel_algos(request: web.Request, key: str, params: dict[str, Any]) -> web.StreamResponse:
        entries = params.get("_batch")
        if not isinstance(entries, list) or not entries or len(entries) > 10:
            raise _Refused("50002", "Json data format error", 400)
        eng = engine()
        now = server.now_ms()
        eng.advance(now)
        results = []
        for e in entries:
            if not isinstance(e, dict):
                raise _Refused("50002", "Json data format error", 400)
            symbol = symbol_of(e)
            algo_id, cid = e.get("algoId"), e.get("algoClOrdId")
            if not algo_id and not cid:
                raise _Refused("50014", "Parameter algoId can not be empty.", 400)
            a = find_algo(key, symbol, algo_id, cid)
            o = eng.orders[a.order_id] if a is not None else None
            if a is None or o is None or algo_state(o) != "live":
                results.append({"algoClOrdId": str(cid or ""), "algoId": str(algo_id or ""),
                                "sCode": "51400", "sMsg": "Order cancellation failed as the order has "
                                "been filled, canceled or does not exist", "tag": ""})
                continue
            eng.cancel(key, now_ms=now, order_id=o.id)
            results.append({"algoClOrdId": a.client_id, "algoId": str(a.algo_id), "sCode": "0",
                            "sMsg": "", "tag": a.tag})
        ok = sum(r["sCode"] == "0" for r in results)
        code, msg = ("0", "") if ok == len(results) else (
            ("1", "All operations failed") if ok == 0 else ("2", "Bulk operation partially succeeded"))
        return json_response({"code": code, "msg": msg, "data": results, "inTime": str(now * 1000),
                              "outTime": str(now * 1000)})

    def algo_rows(key: str, params: dict[str, Any], states: tuple[str, ...]) -> list[dict[str, Any]]:
        raw = str(params.get("ordType") or "")
        if not raw:
            raise _Refused("50014", "Parameter ordType can not be empty.", 400)
        types = {t.strip() for t in raw.split(",")}
        if not types <= set(ALGO_TYPES) or (len(types) > 1 and not types <= {"conditional", "oco"}):
            raise _Refused("51000", "Parameter ordType error", 400)
        check_inst_type(params, required=False)
        symbol = symbol_of(params, required=False)
        if params.get("instType") not in (None, "SPOT"):
            return []
        algo_id, cid = params.get("algoId"), params.get("algoClOrdId")
        after, before = params.get("after"), params.get("before")
        for name, value in (("algoId", algo_id), ("after", after), ("before", before)):
            if value and not str(value).isdigit():
                raise _Refused("51000", f"Parameter {name} error", 400)
        eng = engine()
        now = server.now_ms()
        eng.advance(now)
        rows = []
        for a in reversed(algos.values()):
            o = eng.orders[a.order_id]
            if (a.key == key and a.ord_type in types and algo_state(o) in states
                    and (symbol is None or o.symbol == symbol)
                    and (not algo_id or a.algo_id == int(algo_id)) and (not cid or a.client_id == cid)
                    and (not after or a.algo_id < int(after)) and (not before or a.algo_id > int(before))):
                rows.append(algo_json(a, now))
        return limited(rows, params)

    async def algo_pending(request: web.Request, key: str, params: dict[str, Any]) -> web.StreamResponse:
        return _ok(algo_rows(key, params, ("live",)))

    async def algo_history(request: web.Request, key: str, params: dict[str, Any]) -> web.StreamResponse:
        state = params.get("state")
        if not state and not params.get("algoId"):
            raise _Refused("51602", "Either order status or order id is required.")
        if state and state not in ALGO_HISTORY_STATES:
            raise _Refused("51000", "Parameter state error", 400)
        return _ok(algo_rows(key, params, (state,) if state else ALGO_HISTORY_STATES))

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
        web.post("/api/v5/trade/order-algo", handler(place_algo)),
        web.get("/api/v5/trade/order-algo", handler(get_algo)),
        web.post("/api/v5/trade/cancel-algos", handler(cancel_algos)),
        web.get("/api/v5/trade/orders-algo-pending", handler(algo_pending)),
        web.get("/api/v5/trade/orders-algo-history", handler(algo_history)),
    ]
