"""Binance USD-M futures conditional (stop) orders through the Algo Service, as ccxt 4.5 sends
them (``create_order`` on a perpetual with ``stopLossPrice`` / ``triggerPrice`` /
``stopPrice``; ``fetch_order``, ``fetch_open_orders``, ``fetch_orders`` and ``cancel_order``
with ``params={"trigger": True}``; ``cancel_all_orders`` with it too).

Signed like the rest of ``fapi`` (``binance_private.authenticate``)::

    POST   /fapi/v1/algoOrder        algoType=CONDITIONAL symbol side type=STOP_MARKET|STOP
                                     quantity triggerPrice [price (STOP)] [clientAlgoId]
                                     [reduceOnly] [positionSide=BOTH] [timeInForce=GTC]
                                     [workingType=CONTRACT_PRICE|MARK_PRICE] [priceProtect]
                                     [newOrderRespType]
    GET    /fapi/v1/algoOrder        algoId | clientAlgoId  [symbol]
    DELETE /fapi/v1/algoOrder        algoId | clientAlgoId  [symbol]   (also spelled algoid,
                                     clientalgoid, as binance's docs do)
    GET    /fapi/v1/openAlgoOrders   [symbol] [algoType] [algoId]
    GET    /fapi/v1/allAlgoOrders    symbol [algoId (from it on)] [startTime] [endTime] [page]
                                     [limit<=1000, default 500]
    DELETE /fapi/v1/algoOpenOrders   symbol

An algo row (every endpoint but the cancels answers with these fields)::

    {"algoId": 3000000000000001, "clientAlgoId": "x-cvBPrNm9...", "algoType": "CONDITIONAL",
     "orderType": "STOP_MARKET", "symbol": "BTCUSDT", "side": "SELL", "positionSide": "BOTH",
     "timeInForce": "GTC", "quantity": "0.01", "algoStatus": "NEW", "actualOrderId": "",
     "actualPrice": "0", "triggerPrice": "60000", "price": "0", "icebergQuantity": null, ...,
     "reduceOnly": false, "createTime": ..., "updateTime": ..., "triggerTime": 0, "goodTillDate": 0}

Rules (binance's, on the simulator's engine):

* An algo order rests as one of the engine's stop orders (``stop_market`` for STOP_MARKET,
  ``stop_limit`` for STOP), which checks reduce-only (-2022 with nothing to reduce) and locks the
  margin of the part that would open exposure, like the venue's regular orders. It is ``NEW``
  until the price path (the traded price; the simulator's mark price is the same, so both
  ``workingType`` values trigger alike) reaches its ``triggerPrice``: a SELL when the price
  falls to it, a BUY when it rises to it. A stop that would trigger at once is refused (-2021).
* Then binance places a regular order (MARKET for STOP_MARKET, LIMIT at ``price`` for STOP)
  under its own ``orderId``, the algo row's ``actualOrderId``, with the algo order's
  ``clientAlgoId`` as its ``clientOrderId``. It fills through the engine and is seen like any
  other order through ``/fapi/v1/order``, ``openOrders``, ``allOrders`` and ``userTrades``
  (its ``time`` is the trigger time); before the trigger those endpoints do not know it.
  The algo order is ``TRIGGERED`` while that order is open, ``FINISHED`` once it is filled,
  cancelled or expired (ccxt: both ``closed``); ``triggerTime`` is when the path reached the
  trigger, ``actualPrice`` the order's average fill price.
* A reduce-only STOP_MARKET that finds nothing to reduce when it triggers is ``REJECTED`` (no
  order is placed); a reduce-only STOP limit is placed and, like a regular reduce-only order,
  expires if there is nothing to reduce when it would fill.
* A cancelled algo order is ``CANCELED`` (its margin is released); only ``NEW`` ones can be
  cancelled (-2011 otherwise). At most 10 ``NEW`` algo orders per symbol (the
  ``MAX_NUM_ALGO_ORDERS`` filter of ``exchangeInfo``; -4045 past it).

Errors (HTTP 400 ``{"code", "msg"}``): -2013 "Order does not exist." (GET; ccxt
``OrderNotFound``), -2011 "Unknown order sent." (DELETE; ``OrderNotFound``), -2021 "Order would
immediately trigger.", -2022, -2019, -4116 (clientAlgoId of an open order repeated), -4014
(price or trigger price off the tick), -1102 (mandatory parameter missing), -1100, -1121.
Not simulated (-1116 "Invalid orderType." or -1000, and a warning in the log): TAKE_PROFIT,
TAKE_PROFIT_MARKET and TRAILING_STOP_MARKET, ``closePosition``, ``priceMatch``, time in force
other than GTC, hedge-mode position sides.

Must not import ccxt or anything from the client side of btccxt.
"""

from __future__ import annotations

import itertools
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from btccxt_cli.sim.ledger import Reject, is_on_grid
from btccxt_cli.sim.venues.binance_private import Refused, missing, number, side_and_type, signed
from btccxt_cli.sim.wire import json_response

if TYPE_CHECKING:
    from btccxt_cli.sim.accounts import Engine
    from btccxt_cli.sim.ledger import OrderEvent, SimOrder
    from btccxt_cli.sim.venues.binance_futures import UsdmFutures

logger = logging.getLogger(__name__)

__all__ = ["AlgoBook", "FIRST_ALGO_ID", "REGULAR_TYPE", "MAX_OPEN_ALGO_ORDERS"]

FIRST_ALGO_ID = 3_000_000_000_000_001  # algo ids never equal order ids (binance's look alike)
MAX_OPEN_ALGO_ORDERS = 10  # per symbol: exchangeInfo's MAX_NUM_ALGO_ORDERS filter
ALGO_TYPES = {"STOP_MARKET": "stop_market", "STOP": "stop_limit"}
NOT_SIMULATED_TYPES = ("TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET")
#: the regular order binance places when an algo order triggers
REGULAR_TYPE = {"stop_market": "MARKET", "stop_limit": "LIMIT"}
WORKING_TYPES = ("CONTRACT_PRICE", "MARK_PRICE")
_CLIENT_ID_RE = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")  # binance's rule for client order ids


def _f(x: float | None) -> str:
    text = f"{(x or 0.0):.8f}".rstrip("0").rstrip(".")
    return text or "0"


def _flag(params: dict[str, str], name: str) -> bool:
    return params.get(name, "false").lower() == "true"


@dataclass
class _Algo:
    """One algo order; the engine's stop order ``order_id`` carries its margin and its fate."""

    algo_id: int
    key: str
    symbol: str
    order_id: int
    client_id: str  # clientAlgoId (also the clientOrderId of the order it places)
    order_type: str  # STOP_MARKET | STOP
    trigger_px: float
    price: float | None  # STOP: the limit price of the order it places
    working_type: str
    price_protect: bool
    trigger_ms: int | None = None  # when the path reached the trigger (from the engine's event)


class AlgoBook:
    """The algo orders of one binance venue's USD-M futures, and their endpoints (:meth:`routes`)."""

    def __init__(self, futures: UsdmFutures) -> None:
        self.futures = futures
        self.venue = futures.venue
        self.server = futures.server
        self.algo_ids = itertools.count(FIRST_ALGO_ID)
        self.algos: dict[int, _Algo] = {}  # algo id -> algo order
        self.algo_of: dict[int, _Algo] = {}  # engine order id -> the algo order it carries
        self._pending: _Algo | None = None  # the algo order being placed (see algo_for)
        self._listening = False

    @property
    def engine(self) -> Engine:
        return self.server.engine

    # ------------------------------------------------------------------ bookkeeping
    def _listen(self) -> None:
        """Learn trigger times from the engine's ``triggered`` events (from the first algo
        order on; nothing can trigger before it)."""
        if not self._listening:
            self.engine.add_listener(self._on_event)
            self._listening = True

    def _on_event(self, event: OrderEvent) -> None:
        a = self.algo_for(event.order)
        if event.kind == "triggered" and a is not None and a.trigger_ms is None:
            a.trigger_ms = event.time_ms

    def _bind(self, a: _Algo, o: SimOrder) -> None:
        a.order_id, a.client_id = o.id, o.client_id
        self.algos[a.algo_id] = a
        self.algo_of[o.id] = a

    def algo_for(self, o: SimOrder) -> _Algo | None:
        """The algo order ``o`` (an engine order, or an event's copy of one) carries, if any.
        The engine tells its listeners of a new order before :meth:`new_algo` learns its id:
        the stop order of the algo order being placed is bound to it here, at its first event."""
        a = self.algo_of.get(o.id)
        pending = self._pending
        if (a is None and pending is not None and o.key == pending.key and o.symbol == pending.symbol
                and o.type in REGULAR_TYPE):
            self._bind(pending, o)
            self._pending = None
            a = pending
        return a

    def rejected(self, o: SimOrder) -> bool:
        """The algo order behind ``o`` triggered, but binance refused the order it placed (a
        reduce-only market order with nothing left to reduce)."""
        return (o.triggered and o.type == "stop_market" and o.status == "expired"
                and not o.fills)

    def placed(self, o: SimOrder) -> bool:
        """The algo order behind ``o`` triggered and its regular order exists."""
        return o.triggered and not self.rejected(o)

    def visible(self, o: SimOrder) -> bool:
        """Regular endpoints see plain orders, and algo orders' engine orders once placed."""
        return o.id not in self.algo_of or self.placed(o)

    def reducible(self, o: SimOrder) -> bool:
        """The position ``o`` trades has something to reduce in ``o``'s direction now."""
        pos = self.engine.derivs.positions.get((o.key, o.symbol, o.pos_side))
        qty = pos.qty if pos is not None else 0.0
        return (qty > 0 and o.side == "sell") or (qty < 0 and o.side == "buy")

    def will_reject(self, o: SimOrder) -> bool:
        """At its ``triggered`` event (before the engine fills it): the order is refused."""
        return o.type == "stop_market" and o.reduce_only and not self.reducible(o)

    def trigger_time(self, a: _Algo, o: SimOrder) -> int | None:
        if not o.triggered:
            return None
        return a.trigger_ms if a.trigger_ms is not None else o.updated_ms

    def status(self, o: SimOrder) -> str:
        """binance's ``algoStatus`` of the algo order behind ``o``."""
        if not o.triggered:
            if o.is_open:
                return "NEW"
            return "CANCELED" if o.status == "canceled" else "EXPIRED"
        if self.rejected(o):
            return "REJECTED"
        return "TRIGGERED" if o.is_open else "FINISHED"

    # ------------------------------------------------------------------ rows
    def algo_json(self, a: _Algo, o: SimOrder) -> dict[str, Any]:
        status = self.status(o)
        placed = status in ("TRIGGERED", "FINISHED")
        fired = self.trigger_time(a, o)
        if status == "NEW":
            updated = o.created_ms
        elif status in ("TRIGGERED", "REJECTED"):
            updated = fired or o.updated_ms
        else:
            updated = o.updated_ms
        return {
            "algoId": a.algo_id, "clientAlgoId": a.client_id, "algoType": "CONDITIONAL",
            "orderType": a.order_type, "symbol": self.venue.market_id(o.symbol),
            "side": o.side.upper(), "positionSide": "BOTH", "timeInForce": "GTC",
            "quantity": _f(o.amount), "algoStatus": status,
            "actualOrderId": str(o.id) if placed else "",
            "actualPrice": _f(o.average) if placed else "0", "triggerPrice": _f(a.trigger_px),
            "price": _f(a.price), "icebergQuantity": None, "tpTriggerPrice": "0", "tpPrice": "0",
            "slTriggerPrice": "0", "slPrice": "0", "tpOrderType": "",
            "selfTradePreventionMode": "EXPIRE_MAKER", "workingType": a.working_type,
            "priceMatch": "NONE", "closePosition": False, "priceProtect": a.price_protect,
            "reduceOnly": o.reduce_only, "createTime": o.created_ms, "updateTime": updated,
            "triggerTime": fired or 0, "goodTillDate": 0,
        }

    def update_json(self, a: _Algo, o: SimOrder, t_ms: int, now_ms: int, status: str) -> dict[str, Any]:
        """The user data stream's ``ALGO_UPDATE`` of ``a`` (``o``: the engine order's state)."""
        placed = status in ("TRIGGERED", "FINISHED")
        fired = a.trigger_ms if a.trigger_ms is not None else (t_ms if o.triggered else 0)
        return {"e": "ALGO_UPDATE", "T": t_ms, "E": now_ms, "o": {
            "caid": a.client_id, "aid": a.algo_id, "at": "CONDITIONAL", "o": a.order_type,
            "s": self.venue.market_id(o.symbol), "S": o.side.upper(), "ps": "BOTH", "f": "GTC",
            "q": _f(o.amount), "X": status, "ai": str(o.id) if placed else "",
            "ap": _f(o.average) if placed else "0", "aq": _f(o.filled) if placed else "0",
            "act": REGULAR_TYPE[o.type] if placed else "0", "tp": _f(a.trigger_px),
            "p": _f(a.price), "V": "EXPIRE_MAKER", "wt": a.working_type, "pm": "NONE",
            "cp": False, "pP": a.price_protect, "R": o.reduce_only, "tt": fired or 0, "gtd": 0,
            "rm": "Reduce Only reject" if status == "REJECTED" else ""}}

    # ------------------------------------------------------------------ placing
    def _parse_new(self, params: dict[str, str]) -> dict[str, Any]:
        """The checked parameters of a new algo order; :class:`Refused` as binance refuses."""
        algo_type = params.get("algoType", "")
        if algo_type != "CONDITIONAL":
            raise missing("algoType") if not algo_type else Refused(
                -1100, "Illegal characters found in parameter 'algoType'; legal range is 'CONDITIONAL'.")
        symbol = self.futures.symbol_of(params)
        assert symbol is not None
        side, raw_type = side_and_type(params)
        kind = ALGO_TYPES.get(raw_type)
        if kind is None:
            if raw_type in NOT_SIMULATED_TYPES:
                logger.warning("binance sim: algo order type %s is not simulated", raw_type)
            raise Refused(-1116, "Invalid orderType.")
        if params.get("positionSide", "BOTH") != "BOTH":
            raise Refused(-4061, "Order's position side does not match user's setting.")
        if _flag(params, "closePosition"):
            logger.warning("binance sim: closePosition on algo orders is not simulated")
            raise Refused(-1000, "closePosition is not simulated.")
        if params.get("priceMatch", "NONE") != "NONE":
            logger.warning("binance sim: priceMatch on algo orders is not simulated")
            raise Refused(-1000, "priceMatch is not simulated.")
        if params.get("timeInForce", "GTC") != "GTC":
            logger.warning("binance sim: timeInForce %s is not simulated", params.get("timeInForce"))
            raise Refused(-1115, "Invalid timeInForce.")
        working = params.get("workingType", "CONTRACT_PRICE")
        if working not in WORKING_TYPES:
            raise Refused(-1100, "Illegal characters found in parameter 'workingType'.")
        amount = number(params, "quantity")
        if amount is None:
            raise missing("quantity")
        trigger = number(params, "triggerPrice")
        if trigger is None:
            raise missing("triggerPrice")
        price = number(params, "price") if kind == "stop_limit" else None
        if kind == "stop_limit" and price is None:
            raise missing("price")
        decimals = self.venue.specs[symbol].price_decimals
        if trigger <= 0 or not is_on_grid(trigger, decimals):
            raise Refused(-4014, "Price not increased by tick size.")
        cid = params.get("clientAlgoId") or ""
        if cid and not _CLIENT_ID_RE.match(cid):
            raise Refused(-4015, "Client order id is not valid.")
        return {"symbol": symbol, "side": side.lower(), "kind": kind, "order_type": raw_type,
                "amount": amount, "trigger": round(trigger, decimals), "price": price, "cid": cid,
                "working": working, "protect": _flag(params, "priceProtect"),
                "reduce_only": _flag(params, "reduceOnly")}

    async def new_algo(self, request: web.Request, key: str, params: dict[str, str]) -> web.StreamResponse:
        p = self._parse_new(params)
        symbol, side, trigger = p["symbol"], p["side"], p["trigger"]
        eng = self.engine
        now = self.server.now_ms()
        eng.advance(now)
        resting = sum(1 for _a, o in self._rows(key, symbol) if self.status(o) == "NEW")
        if resting >= MAX_OPEN_ALGO_ORDERS:
            raise Refused(-4045, "Reach max stop order limit.")
        last = eng.price(symbol, now)
        if (side == "sell" and trigger >= last) or (side == "buy" and trigger <= last):
            raise Refused(-2021, "Order would immediately trigger.")
        self._listen()
        a = _Algo(algo_id=next(self.algo_ids), key=key, symbol=symbol, order_id=0, client_id=p["cid"],
                  order_type=p["order_type"], trigger_px=trigger, price=p["price"],
                  working_type=p["working"], price_protect=p["protect"])
        self._pending = a  # the engine's "new" event comes before place() returns
        try:
            o = eng.place(key, symbol, side, p["kind"], now_ms=now, amount=p["amount"],
                          price=p["price"], stop_price=trigger, client_id=p["cid"] or None,
                          reduce_only=p["reduce_only"])
        except Reject as rej:
            raise self.futures.refused(rej) from None
        finally:
            self._pending = None
        if self.algo_of.get(o.id) is not a:
            self._bind(a, o)
        if o.triggered:  # cannot happen (checked above); say so loudly if the engine disagrees
            logger.error("binance sim: algo order %d triggered as it was placed", a.algo_id)
        return await self.server.order_ack(request, json_response(self.algo_json(a, o)))

    # ------------------------------------------------------------------ lookups
    def _ids(self, params: dict[str, str]) -> tuple[str, str]:
        algo_id = params.get("algoId") or params.get("algoid") or ""
        cid = params.get("clientAlgoId") or params.get("clientalgoid") or ""
        if not algo_id and not cid:
            raise Refused(-1102, "Param 'clientAlgoId' or 'algoId' must be sent, but both were empty/null!")
        if algo_id and not algo_id.isdigit():
            raise Refused(-1100, "Illegal characters found in parameter 'algoId'; legal range is "
                                 "'^[0-9]{1,20}$'.")
        return algo_id, cid

    def find(self, key: str, params: dict[str, str]) -> _Algo | None:
        """An algo order of ``key`` by ``algoId``, else the newest with that ``clientAlgoId``
        (and of ``symbol`` if the request names one)."""
        symbol = self.futures.symbol_of(params, required=False)
        algo_id, cid = self._ids(params)
        if algo_id:
            a = self.algos.get(int(algo_id))
            found = [a] if a is not None else []
        else:
            found = [a for a in reversed(self.algos.values()) if a.client_id == cid]
        for a in found:
            o = self.engine.orders[a.order_id]
            if a.key == key and (symbol is None or o.symbol == symbol) and (not cid or a.client_id == cid):
                return a
        return None

    async def get_algo(self, request: web.Request, key: str, params: dict[str, str]) -> web.StreamResponse:
        now = self.server.now_ms()
        self.engine.advance(now)
        a = self.find(key, params)
        if a is None or self.engine.lagging(self.engine.orders[a.order_id], now):  # lookup_lag
            raise Refused(-2013, "Order does not exist.")
        return json_response(self.algo_json(a, self.engine.orders[a.order_id]))

    async def cancel_algo(self, request: web.Request, key: str, params: dict[str, str]) -> web.StreamResponse:
        eng = self.engine
        now = self.server.now_ms()
        eng.advance(now)
        a = self.find(key, params)
        if a is None or self.status(eng.orders[a.order_id]) != "NEW":
            raise Refused(-2011, "Unknown order sent.")
        eng.cancel(key, now_ms=now, order_id=a.order_id)
        return json_response({"algoId": a.algo_id, "clientAlgoId": a.client_id, "code": "200",
                              "msg": "success"})

    def _rows(self, key: str, symbol: str | None) -> list[tuple[_Algo, SimOrder]]:
        """The algo orders of ``key`` (of ``symbol``, if given) with their engine orders, oldest
        first."""
        eng = self.engine
        rows = []
        for a in self.algos.values():
            o = eng.orders[a.order_id]
            if a.key == key and (symbol is None or o.symbol == symbol):
                rows.append((a, o))
        return rows

    async def open_algos(self, request: web.Request, key: str, params: dict[str, str]) -> web.StreamResponse:
        symbol = self.futures.symbol_of(params, required=False)
        algo_type = params.get("algoType")
        algo_id = params.get("algoId")
        if algo_id and not algo_id.isdigit():
            raise Refused(-1100, "Illegal characters found in parameter 'algoId'.")
        self.engine.advance(self.server.now_ms())
        if algo_type not in (None, "", "CONDITIONAL"):
            return json_response([])
        return json_response([self.algo_json(a, o) for a, o in self._rows(key, symbol)
                              if self.status(o) == "NEW" and (not algo_id or a.algo_id == int(algo_id))])

    async def all_algos(self, request: web.Request, key: str, params: dict[str, str]) -> web.StreamResponse:
        symbol = self.futures.symbol_of(params)
        algo_id = params.get("algoId")
        if algo_id and not algo_id.isdigit():
            raise Refused(-1100, "Illegal characters found in parameter 'algoId'.")
        start, end = number(params, "startTime"), number(params, "endTime")
        limit = int(number(params, "limit") or 500)
        if not 1 <= limit <= 1000:
            raise Refused(-1130, "Data sent for parameter 'limit' is not valid.")
        page = int(number(params, "page") or 0)
        self.engine.advance(self.server.now_ms())
        rows = [(a, o) for a, o in self._rows(key, symbol)
                if (not algo_id or a.algo_id >= int(algo_id))
                and (start is None or o.created_ms >= start) and (end is None or o.created_ms <= end)]
        if page > 0:
            rows = rows[(page - 1) * limit:page * limit]
        elif algo_id:  # from that algo id on
            rows = rows[:limit]
        else:  # the most recent
            rows = rows[-limit:]
        return json_response([self.algo_json(a, o) for a, o in rows])

    async def cancel_all(self, request: web.Request, key: str, params: dict[str, str]) -> web.StreamResponse:
        symbol = self.futures.symbol_of(params)
        eng = self.engine
        now = self.server.now_ms()
        eng.advance(now)
        for _a, o in self._rows(key, symbol):
            if self.status(o) == "NEW":
                eng.cancel(key, now_ms=now, order_id=o.id)
        return json_response({"code": 200, "msg": "The operation of cancel all open order is done."})

    def routes(self) -> list[web.RouteDef]:
        v = self.venue
        return [
            web.post("/fapi/v1/algoOrder", signed(v, self.new_algo)),
            web.get("/fapi/v1/algoOrder", signed(v, self.get_algo)),
            web.delete("/fapi/v1/algoOrder", signed(v, self.cancel_algo)),
            web.get("/fapi/v1/openAlgoOrders", signed(v, self.open_algos)),
            web.get("/fapi/v1/allAlgoOrders", signed(v, self.all_algos)),
            web.delete("/fapi/v1/algoOpenOrders", signed(v, self.cancel_all)),
        ]
