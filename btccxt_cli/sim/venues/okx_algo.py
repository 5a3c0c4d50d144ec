"""OKX v5 algo (stop) orders, as ccxt sends them.

Algo (stop) orders, spot and swaps::

    POST /api/v5/trade/order-algo       {instId tdMode=cash|cross (swaps: cross|isolated) side sz
                                         [tgtCcy] [reduceOnly] [posSide] [algoClOrdId|clOrdId]
                                         [tag] ordType=conditional slTriggerPx slOrdPx(-1 = market)
                                         | ordType=trigger triggerPx orderPx(-1 = market)
                                         | ordType=move_order_stop callbackRatio}
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

A ``move_order_stop`` (a trailing stop) trails by ``callbackRatio`` (0.001 to 1) from the
last price at once: its trigger (``moveTriggerPx``) follows the best price since placement
(the highest for a sell) and never moves back; it places a market order when the price comes
back that far. ``callbackSpread`` and ``activePx`` are not simulated (51000).

On a swap (``-SWAP``) ``sz`` is in contracts (51121 if not a whole lot), ``reduceOnly`` and
``posSide`` work as on regular swap orders (``okx_private.py``), the engine reserves the margin,
and the rows say ``instType`` SWAP with ``lever``. A reduce-only stop with nothing left to
reduce when it triggers is ``order_failed`` with failCode 51169 (51008: no funds).

Must not import ccxt or anything from the client side of btccxt.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from btccxt_cli.sim.accounts import Reject, SimOrder
from btccxt_cli.sim.venues.okx_common import (
    FIRST_ALGO_ID,
    REJECTS,
    Refused,
    check_inst_type,
    limited,
    num,
    ok,
    signed,
    symbol_of,
)
from btccxt_cli.sim.wire import json_response

if TYPE_CHECKING:
    from btccxt_cli.sim.accounts import Engine
    from btccxt_cli.sim.venues.okx import OkxVenue

logger = logging.getLogger(__name__)

__all__ = ["AlgoBook"]

ALGO_TYPES = ("conditional", "oco", "chase", "trigger", "move_order_stop", "iceberg", "twap")
ALGO_HISTORY_STATES = ("effective", "canceled", "order_failed")
#: okx's callbackRatio bounds for trailing stops (move_order_stop): 0.1 % to 100 %
MIN_CALLBACK_RATIO = 0.001
MAX_CALLBACK_RATIO = 1.0
TRIGGER_WALK_MS = 86_400_000  # how far back a trigger time is looked for on the path (rare)


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
    callback_ratio: float | None = None  # move_order_stop: the trail (its trigger is the order's stop)


class AlgoBook:
    """The algo orders of one okx venue, and their endpoints (:meth:`routes`)."""

    def __init__(self, venue: OkxVenue) -> None:
        self.venue = venue
        self.server = venue.server
        self.algo_ids = itertools.count(FIRST_ALGO_ID)
        self.algos: dict[int, _Algo] = {}  # algo id -> algo order
        self.algo_of: dict[int, _Algo] = {}  # engine order id -> the algo order it carries

    @property
    def engine(self) -> Engine:
        return self.server.engine

    # ------------------------------------------------------------------ algo bookkeeping
    def placed_by_algo(self, o: SimOrder) -> bool:
        """The algo order behind ``o`` triggered and okx placed its regular order."""
        return o.triggered and not (o.status == "expired" and not o.fills)

    def visible(self, o: SimOrder) -> bool:
        """Regular endpoints see plain orders, and algo orders' engine orders once placed."""
        return o.id not in self.algo_of or self.placed_by_algo(o)

    def shown_cid(self, o: SimOrder) -> str:
        a = self.algo_of.get(o.id)
        return o.client_id if a is None else a.client_id

    def algo_state(self, o: SimOrder) -> str:
        if not o.triggered:
            return "live" if o.is_open else "canceled"
        return "effective" if self.placed_by_algo(o) else "order_failed"

    def crossed(self, o: SimOrder, px: float) -> bool:
        stop = float(o.stop_price or 0.0)
        return px <= stop if o.side == "sell" else px >= stop

    def trigger_time(self, a: _Algo, o: SimOrder) -> int | None:
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
                if self.crossed(o, self.engine.price(o.symbol, t)):
                    a.trigger_ms = t
                else:
                    t = t - t % 1000 + 1000
                    while t < end:
                        if self.crossed(o, self.engine.price(o.symbol, t)):
                            a.trigger_ms = t
                            break
                        t += 1000
        return a.trigger_ms

    # ------------------------------------------------------------------ algo orders
    def algo_json(self, a: _Algo, now: int) -> dict[str, Any]:
        eng = self.engine
        o = eng.orders[a.order_id]
        spec = self.venue.specs[o.symbol]
        state = self.algo_state(o)
        fired = self.trigger_time(a, o)
        effective = state == "effective"
        cond = a.ord_type == "conditional"
        trail = a.callback_ratio is not None
        px = num(a.order_px) if a.order_px is not None else "-1"
        swap = spec.is_swap
        sz = num(self.venue.contracts(o.symbol, o.amount))
        lever = eng.derivs.leverage_of(o.key, o.symbol, o.pos_side) if swap else 0.0
        updated = o.updated_ms if state == "canceled" else (fired or o.created_ms)
        return {
            "activePx": "", "actualPx": px if effective else "",
            "actualSide": ("sl" if effective else "") if cond else o.side,
            "actualSz": sz if effective else "0", "algoClOrdId": a.client_id,
            "algoId": str(a.algo_id), "amendPxOnTriggerType": "0", "attachAlgoOrds": [],
            "cTime": str(o.created_ms), "callbackRatio": num(a.callback_ratio) if trail else "",
            "callbackSpread": "", "ccy": "",
            "chaseType": "", "chaseVal": "", "clOrdId": a.client_id, "closeFraction": "",
            # the order it placed failed: nothing to reduce (reduce-only), or funds
            "failCode": ("51169" if o.reduce_only else "51008") if state == "order_failed" else "", "instId": self.venue.inst_id(o.symbol),
            "instType": self.venue.inst_type(o.symbol), "isTradeBorrowMode": "",
            "last": num(eng.price(o.symbol, now)), "lever": num(lever) if swap else "", "linkedOrd": {"ordId": ""}, "maxChaseType": "", "maxChaseVal": "",
            "moveTriggerPx": num(o.stop_price or 0.0) if trail else "", "notionalUsd": "", "ordId": str(o.id) if effective else "",
            "ordIdList": [str(o.id)] if effective else [], "ordPx": "" if cond or trail else px,
            "ordType": a.ord_type, "posSide": o.pos_side if swap else "net", "pxLimit": "", "pxSpread": "", "pxVar": "",
            "quickMgnType": "", "reduceOnly": "true" if o.reduce_only else "false", "side": o.side,
            "slOrdPx": px if cond else "", "slTriggerPx": num(a.trigger_px) if cond else "",
            "slTriggerPxType": "last" if cond else "", "state": state, "sz": sz,
            "szLimit": "", "tag": a.tag, "tdMode": a.td_mode, "tgtCcy": a.tgt_ccy, "timeInterval": "",
            "tpOrdPx": "", "tpTriggerPx": "", "tpTriggerPxType": "", "tradeQuoteCcy": spec.quote,
            "triggerPx": "" if cond or trail else num(a.trigger_px),
            "triggerPxType": "" if cond or trail else "last",
            "triggerTime": str(fired) if fired is not None else "", "uTime": str(updated),
        }

    def algo_result(self, code: str, msg: str, cid: str, algo_id: str = "", tag: str = "") -> dict[str, Any]:
        return {"algoClOrdId": cid, "algoId": algo_id, "clOrdId": cid, "sCode": code, "sMsg": msg,
                "tag": tag}

    def price_param(self, params: dict[str, Any], name: str, market_ok: bool) -> float | None | str:
        """A price parameter: a float, None for ``-1`` (market) where allowed, else an error text."""
        raw = str(params.get(name) or "")
        if market_ok and raw == "-1":
            return None
        try:
            value = float(raw)
        except ValueError:
            return f"Parameter {name} error"
        return value if value > 0 else f"Parameter {name} error"

    def not_simulated(self, what: str, cid: str) -> dict[str, Any]:
        logger.warning("okx sim: %s is not simulated", what)
        return self.algo_result("51000", f"Parameter {what.split()[0]} error", cid)

    def place_algo_one(self, key: str, params: dict[str, Any]) -> tuple[dict[str, Any], _Algo | None]:
        cid = str(params.get("algoClOrdId") or params.get("clOrdId") or "")
        tag = str(params.get("tag") or "")
        if cid and (len(cid) > 32 or not cid.isalnum()):
            return self.algo_result("51000", "Parameter algoClOrdId error", cid), None
        inst = params.get("instId")
        symbol = self.venue.by_id.get(str(inst)) if inst else None
        if symbol is None:
            return self.algo_result("51001", "Instrument ID does not exist", cid), None
        spec = self.venue.specs[symbol]
        swap = spec.is_swap
        td_mode = str(params.get("tdMode") or "")
        # ccxt sends cross for spot stop-loss orders; swaps: the position's margin mode
        if td_mode not in (("cross", "isolated") if swap else ("cash", "cross")):
            return self.algo_result("51000", "Parameter tdMode error", cid), None
        reduce_only = swap and str(params.get("reduceOnly", "false")).lower() == "true"
        pos_side = (str(params.get("posSide") or "") or None) if swap else None
        side = params.get("side")
        if side not in ("buy", "sell"):
            return self.algo_result("51000", "Parameter side error", cid), None
        ord_type = str(params.get("ordType") or "")
        if ord_type not in ("conditional", "trigger", "move_order_stop"):
            return self.not_simulated(f"ordType {ord_type or '(none)'} (algo order type)", cid), None
        try:
            sz = float(params.get("sz", ""))
        except ValueError:
            return self.algo_result("51000", "Parameter sz error", cid), None
        if swap:  # contracts of ctVal base units
            lot = 10 ** spec.contract_lot_decimals
            if sz <= 0 or abs(sz * lot - round(sz * lot)) > 1e-6:
                return self.algo_result("51121", "Order quantity must be a multiple of the lot size.",
                                        cid), None
            sz = self.venue.base_amount(symbol, sz)
        if params.get("attachAlgoOrds") or params.get("closeFraction"):
            return self.not_simulated("attachAlgoOrds or closeFraction on algo orders", cid), None
        ratio: float | None = None
        if ord_type == "move_order_stop":  # a trailing stop: a market order when it triggers
            if params.get("callbackSpread") or params.get("activePx"):
                return self.not_simulated("callbackSpread or activePx (trailing stops trail by "
                                          "callbackRatio from the last price)", cid), None
            try:
                ratio = float(str(params.get("callbackRatio") or ""))
            except ValueError:
                return self.algo_result("51000", "Parameter callbackRatio error", cid), None
            if not MIN_CALLBACK_RATIO <= ratio <= MAX_CALLBACK_RATIO:
                return self.algo_result("51000", "Parameter callbackRatio error", cid), None
        if ord_type == "conditional":
            if params.get("tpTriggerPx") or params.get("tpOrdPx"):
                return self.not_simulated("tpTriggerPx (take-profit legs of conditional orders)", cid), None
            trig_name, px_name, type_name = "slTriggerPx", "slOrdPx", "slTriggerPxType"
        else:
            trig_name, px_name, type_name = "triggerPx", "orderPx", "triggerPxType"
        if params.get(type_name) not in (None, "", "last"):
            return self.not_simulated(f"{type_name} {params.get(type_name)} (only last is)", cid), None
        trigger: float | None | str = None
        order_px: float | None | str = None
        if ratio is None:
            trigger = self.price_param(params, trig_name, market_ok=False)
            order_px = self.price_param(params, px_name, market_ok=True)
            if isinstance(trigger, str):
                return self.algo_result("51000", trigger, cid), None
            if isinstance(order_px, str):
                return self.algo_result("51000", order_px, cid), None
            assert trigger is not None
            if abs(trigger * spec.price_scale - round(trigger * spec.price_scale)) > 1e-6:
                return self.algo_result("51000", f"Parameter {trig_name} error", cid), None
        tgt = str(params.get("tgtCcy") or "")
        if order_px is None and side == "buy" and tgt != "base_ccy" and not swap:
            # okx sizes an algo market buy in quote currency unless tgtCcy=base_ccy
            return self.not_simulated("tgtCcy quote_ccy (algo market buys sized in quote currency)", cid), None
        eng = self.engine
        now = self.server.now_ms()
        eng.advance(now)
        last = eng.price(symbol, now)
        if ratio is not None:
            pass  # trails from the last price: no trigger to check
        elif ord_type == "conditional":
            assert isinstance(trigger, float)
            if side == "sell" and trigger > last:
                return self.algo_result("51280", "SL trigger price cannot be higher than the last price", cid), None
            if side == "buy" and trigger < last:
                return self.algo_result("51278", "SL trigger price cannot be lower than the last price", cid), None
        elif isinstance(trigger, float) and ((side == "sell" and trigger > last) or
                                             (side == "buy" and trigger < last)):
            return self.not_simulated(f"triggerPx on the far side of the last price (a {side} trigger "
                                 f"at {trigger:g} with the price at {last:g})", cid), None
        kind = "stop_market" if order_px is None else "stop_limit"
        try:
            o = eng.place(key, symbol, str(side), kind, now_ms=now, amount=sz,
                          price=order_px if isinstance(order_px, float) else None,
                          stop_price=trigger if isinstance(trigger, float) else None,
                          client_id=cid or None, reduce_only=reduce_only,
                          pos_side=pos_side, margin_mode=td_mode if swap else None, trail=ratio)
        except Reject as rej:
            if rej.kind == "duplicate_client_id":
                return self.algo_result("51065", "algoClOrdId already exists.", cid), None
            if rej.kind == "bad_price":
                return self.algo_result("51000", f"Parameter {px_name} error", cid), None
            code, msg = REJECTS.get(rej.kind, ("51000", rej.message))
            if swap and rej.kind == "insufficient_funds":
                code, msg = "51008", "Order failed. Insufficient {ccy} margin in account"
            return self.algo_result(code, msg.format(ccy=spec.quote if side == "buy" or swap
                                                     else spec.base), cid), None
        a = _Algo(algo_id=next(self.algo_ids), key=key, order_id=o.id, client_id=cid, ord_type=ord_type,
                  trigger_px=float(o.stop_price or 0.0),
                  order_px=order_px if isinstance(order_px, float) else None, td_mode=td_mode,
                  tgt_ccy=tgt, tag=tag, callback_ratio=ratio)
        self.algos[a.algo_id] = a
        self.algo_of[o.id] = a
        return self.algo_result("0", "Order placed", cid, str(a.algo_id), tag), a

    async def place_algo(self, request: web.Request, key: str, params: dict[str, Any]) -> web.StreamResponse:
        if "_batch" in params:
            raise Refused("50002", "Json data format error", 400)
        res, a = self.place_algo_one(key, params)
        now = str(self.server.now_ms() * 1000)
        code, msg = ("0", "") if a is not None else ("1", "Operation failed.")
        response = json_response({"code": code, "msg": msg, "data": [res], "inTime": now, "outTime": now})
        return await self.server.order_ack(request, response) if a is not None else response

    def find_algo(self, key: str, symbol: str | None, algo_id: str | None, cid: str | None) -> _Algo | None:
        """An algo order by ``algoId``, else the newest with that ``algoClOrdId``."""
        if algo_id:
            a = self.algos.get(int(algo_id)) if str(algo_id).isdigit() else None
            found = [a] if a is not None else []
        else:
            found = [a for a in reversed(self.algos.values()) if a.client_id == cid]
        for a in found:
            o = self.engine.orders[a.order_id]
            if a.key == key and (symbol is None or o.symbol == symbol) and (
                    not cid or a.client_id == cid):
                return a
        return None

    async def get_algo(self, request: web.Request, key: str, params: dict[str, Any]) -> web.StreamResponse:
        algo_id, cid = params.get("algoId"), params.get("algoClOrdId")
        if not algo_id and not cid:
            raise Refused("50014", "Parameter algoId can not be empty.", 400)
        if algo_id and not str(algo_id).isdigit():
            raise Refused("51000", "Parameter algoId error", 400)
        symbol = symbol_of(self.venue, params, required=False)
        now = self.server.now_ms()
        self.engine.advance(now)
        a = self.find_algo(key, symbol, algo_id, cid)
        if a is None or self.engine.lagging(self.engine.orders[a.order_id], now):  # lookup_lag
            raise Refused("51603", "Order does not exist")
        return ok([self.algo_json(a, now)])

    async def cancel_algos(self, request: web.Request, key: str, params: dict[str, Any]) -> web.StreamResponse:
        entries = params.get("_batch")
        if not isinstance(entries, list) or not entries or len(entries) > 10:
            raise Refused("50002", "Json data format error", 400)
        eng = self.engine
        now = self.server.now_ms()
        eng.advance(now)
        results = []
        for e in entries:
            if not isinstance(e, dict):
                raise Refused("50002", "Json data format error", 400)
            symbol = symbol_of(self.venue, e)
            algo_id, cid = e.get("algoId"), e.get("algoClOrdId")
            if not algo_id and not cid:
                raise Refused("50014", "Parameter algoId can not be empty.", 400)
            a = self.find_algo(key, symbol, algo_id, cid)
            o = eng.orders[a.order_id] if a is not None else None
            if a is None or o is None or self.algo_state(o) != "live":
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

    def algo_rows(self, key: str, params: dict[str, Any], states: tuple[str, ...]) -> list[dict[str, Any]]:
        raw = str(params.get("ordType") or "")
        if not raw:
            raise Refused("50014", "Parameter ordType can not be empty.", 400)
        types = {t.strip() for t in raw.split(",")}
        if not types <= set(ALGO_TYPES) or (len(types) > 1 and not types <= {"conditional", "oco"}):
            raise Refused("51000", "Parameter ordType error", 400)
        check_inst_type(params, required=False)
        symbol = symbol_of(self.venue, params, required=False)
        wanted = params.get("instType") or None
        algo_id, cid = params.get("algoId"), params.get("algoClOrdId")
        after, before = params.get("after"), params.get("before")
        for name, value in (("algoId", algo_id), ("after", after), ("before", before)):
            if value and not str(value).isdigit():
                raise Refused("51000", f"Parameter {name} error", 400)
        eng = self.engine
        now = self.server.now_ms()
        eng.advance(now)
        rows = []
        for a in reversed(self.algos.values()):
            o = eng.orders[a.order_id]
            if (a.key == key and a.ord_type in types and self.algo_state(o) in states
                    and (symbol is None or o.symbol == symbol)
                    and wanted in (None, self.venue.inst_type(o.symbol))
                    and (not algo_id or a.algo_id == int(algo_id)) and (not cid or a.client_id == cid)
                    and (not after or a.algo_id < int(after)) and (not before or a.algo_id > int(before))):
                rows.append(self.algo_json(a, now))
        return limited(rows, params)

    async def algo_pending(self, request: web.Request, key: str, params: dict[str, Any]) -> web.StreamResponse:
        return ok(self.algo_rows(key, params, ("live",)))

    async def algo_history(self, request: web.Request, key: str, params: dict[str, Any]) -> web.StreamResponse:
        state = params.get("state")
        if not state and not params.get("algoId"):
            raise Refused("51602", "Either order status or order id is required.")
        if state and state not in ALGO_HISTORY_STATES:
            raise Refused("51000", "Parameter state error", 400)
        return ok(self.algo_rows(key, params, (state,) if state else ALGO_HISTORY_STATES))

    def routes(self) -> list[web.RouteDef]:
        v = self.venue
        return [
            web.post("/api/v5/trade/order-algo", signed(v, self.place_algo)),
            web.get("/api/v5/trade/order-algo", signed(v, self.get_algo)),
            web.post("/api/v5/trade/cancel-algos", signed(v, self.cancel_algos)),
            web.get("/api/v5/trade/orders-algo-pending", signed(v, self.algo_pending)),
            web.get("/api/v5/trade/orders-algo-history", signed(v, self.algo_history)),
        ]
