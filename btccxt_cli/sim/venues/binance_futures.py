"""Binance USD-M futures (``fapi``): perpetual ``BTCUSDT`` ... markets, klines, mark price and
funding, signed orders, positions, leverage and margin type, as ccxt 4.5 calls them. The
engine's rules are in ``sim/positions.py``; quantities are in base currency (contract size 1).
Spot and USD-M share one wallet per API key (binance keeps two; transfers are not simulated).

Public (``/fapi/v1``)::

    exchangeInfo  klines  premiumIndex [symbol]  fundingRate symbol [startTime] [endTime] [limit<=1000]
    fundingInfo  ticker/24hr [symbol]  ticker/price [symbol] (also /fapi/v2)   (venues/tickers.py)

Signed (the spot API's HMAC signature, ``X-MBX-APIKEY``)::

    GET    /fapi/v1/leverageBracket [symbol]         (ccxt reads it before positions)
    GET    /fapi/v2/positionRisk, /fapi/v3/positionRisk [symbol]
    GET    /fapi/v2/account, /fapi/v3/account        balances (USDT) and positions
    POST   /fapi/v1/leverage symbol leverage(1..125)
    POST   /fapi/v1/marginType symbol marginType=ISOLATED|CROSSED
    GET    /fapi/v1/positionSide/dual ; POST dualSidePosition=false (hedge mode: not simulated)
    POST   /fapi/v1/order symbol side type=MARKET|LIMIT quantity [price timeInForce=GTC]
                          [reduceOnly] [positionSide=BOTH] [newClientOrderId] [newOrderRespType]
    GET / DELETE /fapi/v1/order ; GET /fapi/v1/openOrders, allOrders, userTrades, income

Conditional (stop) orders go through binance's Algo Service: ``/fapi/v1/algoOrder``,
``openAlgoOrders``, ``allAlgoOrders``, ``algoOpenOrders`` (``binance_algo.py``). The regular
order an algo order places when it triggers is an order like any other here (MARKET or LIMIT,
its ``clientOrderId`` the ``clientAlgoId``, its ``time`` the trigger time); before that the
regular endpoints do not know it.

Errors as binance sends them (HTTP 400 ``{"code": ..., "msg": ...}``): -2019 "Margin is
insufficient.", -2022 "ReduceOnly Order is rejected.", -4046 "No need to change margin type.",
-4048 "Margin type cannot be changed if there exists position.", -4028 leverage not valid,
-4059 "No need to change position side.", -1121 "Invalid symbol.".

Must not import ccxt or anything from the client side of btccxt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from btccxt_cli.sim.ledger import Fill, Reject, SimOrder
from btccxt_cli.sim.positions import MAINT_RATE, Position
from btccxt_cli.sim.venues.binance_algo import REGULAR_TYPE, AlgoBook
from btccxt_cli.sim.venues.binance_private import Refused, missing, number, side_and_type, signed
from btccxt_cli.sim.wire import json_response

if TYPE_CHECKING:
    from btccxt_cli.sim.accounts import Engine
    from btccxt_cli.sim.venues.binance import BinanceVenue

__all__ = ["UsdmFutures", "MAX_LEVERAGE"]

MAX_LEVERAGE = 125
_STATUS = {"new": "NEW", "partially_filled": "PARTIALLY_FILLED", "filled": "FILLED",
           "canceled": "CANCELED", "rejected": "REJECTED", "expired": "EXPIRED"}
_TYPES = {"MARKET": "market", "LIMIT": "limit"}
_REJECTS = {
    "insufficient_funds": (-2019, "Margin is insufficient."),
    "reduce_only": (-2022, "ReduceOnly Order is rejected."),
    "duplicate_client_id": (-4116, "ClientOrderId is duplicated."),
    "bad_quantity": (-1111, "Precision is over the maximum defined for this asset."),
    "bad_price": (-4014, "Price not increased by tick size."),
    "bad_position_side": (-4061, "Order's position side does not match user's setting."),
    "unsupported": (-1116, "Invalid orderType."),
}


def _f(x: float | None, decimals: int = 8) -> str:
    text = f"{(x or 0.0):.{decimals}f}".rstrip("0").rstrip(".")
    return text or "0"


class UsdmFutures:
    """The ``fapi`` endpoints of one binance venue (:meth:`routes`)."""

    def __init__(self, venue: BinanceVenue) -> None:
        self.venue = venue
        self.server = venue.server
        self.by_id: dict[str, str] = {venue.market_id(s): s for s in venue.symbols
                                      if venue.specs[s].is_swap}
        self.algos = AlgoBook(self)  # conditional orders (Algo Service): binance_algo.py

    @property
    def engine(self) -> Engine:
        return self.server.engine

    def symbol_of(self, params: dict[str, str], required: bool = True) -> str | None:
        market_id = params.get("symbol")
        if not market_id:
            if required:
                raise missing("symbol")
            return None
        symbol = self.by_id.get(market_id)
        if symbol is None:
            raise Refused(-1121, "Invalid symbol.")
        return symbol

    # ------------------------------------------------------------------ public
    def market_info(self, symbol: str) -> dict[str, Any]:
        spec = self.venue.specs[symbol]
        tick, lot = _f(spec.tick), _f(spec.lot)
        return {
            "symbol": self.venue.market_id(symbol), "pair": self.venue.market_id(symbol),
            "contractType": "PERPETUAL", "deliveryDate": 4133404800000, "onboardDate": 1569398400000,
            "status": "TRADING", "maintMarginPercent": "2.5000", "requiredMarginPercent": "5.0000",
            "baseAsset": spec.base, "quoteAsset": spec.quote, "marginAsset": spec.quote,
            "pricePrecision": spec.price_decimals, "quantityPrecision": spec.lot_decimals,
            "baseAssetPrecision": 8, "quotePrecision": 8, "underlyingType": "COIN",
            "underlyingSubType": ["PoW"], "settlePlan": 0, "triggerProtect": "0.0500",
            "liquidationFee": "0.012500", "marketTakeBound": "0.05", "maxMoveOrderLimit": 10000,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": "4529764", "tickSize": tick},
                {"filterType": "LOT_SIZE", "minQty": lot, "maxQty": "1000", "stepSize": lot},
                {"filterType": "MARKET_LOT_SIZE", "minQty": lot, "maxQty": "120", "stepSize": lot},
                {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                {"filterType": "MIN_NOTIONAL", "notional": "5"},
                {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500",
                 "multiplierDecimal": "4"},
            ],
            "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT",
                           "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"], "permissionSets": ["GRID", "COPY"],
        }

    async def exchange_info(self, request: web.Request) -> web.Response:
        return json_response({
            "timezone": "UTC", "serverTime": self.server.now_ms(), "futuresType": "U_MARGINED",
            "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                            "limit": 2400}],
            "exchangeFilters": [], "assets": [{"asset": "USDT", "marginAvailable": True,
                                               "autoAssetExchange": "-10000"}],
            "symbols": [self.market_info(s) for s in self.by_id.values()],
        })

    async def premium_index(self, request: web.Request) -> web.Response:
        symbol = request.query.get("symbol")
        if symbol and symbol not in self.by_id:
            return json_response({"code": -1121, "msg": "Invalid symbol."}, status=400)
        now = self.server.now_ms()
        derivs = self.engine.derivs
        rows = []
        for market_id, s in self.by_id.items():
            if symbol and market_id != symbol:
                continue
            mark = _f(self.engine.price(s, now))
            rows.append({"symbol": market_id, "markPrice": mark, "indexPrice": mark,
                         "estimatedSettlePrice": mark,
                         "lastFundingRate": _f(derivs.predicted_rate(s, now)),
                         "interestRate": "0.00010000", "nextFundingTime": derivs.next_funding_ms(now),
                         "time": now})
        return json_response(rows[0] if symbol else rows)

    async def funding_rate(self, request: web.Request) -> web.Response:
        q = request.query
        try:
            symbol = self.symbol_of(dict(q))
            start = number(dict(q), "startTime")
            end = number(dict(q), "endTime")
            limit = int(number(dict(q), "limit") or 100)
        except Refused as exc:
            return exc.response
        assert symbol is not None
        derivs = self.engine.derivs
        iv = derivs.funding_interval_ms
        now = self.server.now_ms()
        last = now - now % iv if end is None else min(now, int(end)) - min(now, int(end)) % iv
        limit = max(1, min(limit, 1000))
        if start is not None:  # the oldest ``limit`` from startTime on
            first = int(start) + (-int(start)) % iv
            times = list(range(first, last + 1, iv))[:limit]
        else:
            times = list(range(last - (limit - 1) * iv, last + 1, iv))
        return json_response([{"symbol": self.venue.market_id(symbol),
                               "fundingRate": _f(derivs.funding_rate(symbol, t)), "fundingTime": t,
                               "markPrice": _f(self.engine.price(symbol, t))} for t in times if t > 0])

    async def funding_info(self, request: web.Request) -> web.Response:
        hours = self.engine.derivs.funding_interval_ms // 3_600_000
        return json_response([{"symbol": m, "adjustedFundingRateCap": "0.03000000",
                               "adjustedFundingRateFloor": "-0.03000000",
                               "fundingIntervalHours": hours, "disclaimer": False}
                              for m in self.by_id])

    # ------------------------------------------------------------------ formatting
    def order_json(self, o: SimOrder) -> dict[str, Any]:
        avg = o.average
        kind = REGULAR_TYPE.get(o.type, o.type.upper())  # an algo order's: what it placed
        created = o.created_ms
        a = self.algos.algo_of.get(o.id)
        if a is not None:
            created = self.algos.trigger_time(a, o) or created
        return {
            "orderId": o.id, "symbol": self.venue.market_id(o.symbol), "status": _STATUS[o.status],
            "clientOrderId": o.client_id, "price": _f(o.price), "avgPrice": _f(avg),
            "origQty": _f(o.amount), "executedQty": _f(o.filled), "cumQty": _f(o.filled),
            "cumQuote": _f(o.cost), "timeInForce": "GTC", "type": kind,
            "reduceOnly": o.reduce_only, "closePosition": False, "side": o.side.upper(),
            "positionSide": "BOTH", "stopPrice": "0", "workingType": "CONTRACT_PRICE",
            "priceProtect": False, "origType": kind, "priceMatch": "NONE",
            "selfTradePreventionMode": "EXPIRE_MAKER", "goodTillDate": 0, "time": created,
            "updateTime": o.updated_ms,
        }

    def fill_json(self, f: Fill) -> dict[str, Any]:
        return {"buyer": f.side == "buy", "commission": _f(f.fee), "commissionAsset": f.fee_asset,
                "id": f.id, "maker": f.maker, "orderId": f.order_id, "price": _f(f.price),
                "qty": _f(f.qty), "quoteQty": _f(f.quote_qty), "realizedPnl": _f(f.pnl, 8),
                "side": f.side.upper(), "positionSide": "BOTH",
                "symbol": self.venue.market_id(f.symbol), "time": f.time_ms}

    def position_json(self, key: str, pos: Position | None, symbol: str, now: int,
                      v2: bool) -> dict[str, Any]:
        derivs = self.engine.derivs
        mid = self.venue.market_id(symbol)
        mark = self.engine.price(symbol, now)
        if pos is None or not pos.qty:
            d: dict[str, Any] = {"qty": 0.0, "entry": 0.0, "upnl": 0.0, "margin": 0.0, "maint": 0.0,
                                 "liq_price": None, "updated_ms": 0, "mode": derivs.mode_of(key, symbol)}
        else:
            d = derivs.position_dict(pos, now)
        isolated = d["mode"] == "isolated"
        row: dict[str, Any] = {
            "symbol": mid, "positionSide": "BOTH", "positionAmt": _f(d["qty"]),
            "entryPrice": _f(d["entry"]), "breakEvenPrice": _f(d["entry"]), "markPrice": _f(mark),
            "unRealizedProfit": _f(d["upnl"]), "liquidationPrice": _f(d["liq_price"]),
            "isolatedMargin": _f(d["margin"] + d["upnl"] if isolated else 0.0),
            "notional": _f(d["qty"] * mark), "marginAsset": "USDT",
            "isolatedWallet": _f(d["margin"] if isolated else 0.0),
            "initialMargin": _f(d["margin"]), "maintMargin": _f(d["maint"]),
            "positionInitialMargin": _f(d["margin"]), "openOrderInitialMargin": "0", "adl": 0,
            "bidNotional": "0", "askNotional": "0", "updateTime": d["updated_ms"],
        }
        if v2:
            row.update({"leverage": _f(derivs.leverage_of(key, symbol)),
                        "marginType": "isolated" if isolated else "cross",
                        "isAutoAddMargin": "false", "maxNotionalValue": "1000000"})
        return row

    # ------------------------------------------------------------------ signed endpoints
    async def leverage_bracket(self, request: web.Request, key: str, params: dict[str, str]) -> web.StreamResponse:
        symbol = self.symbol_of(params, required=False)
        rows = [{"symbol": m, "notionalCoef": 1.0, "brackets": [
            {"bracket": 1, "initialLeverage": MAX_LEVERAGE, "notionalCap": 1_000_000_000,
             "notionalFloor": 0, "maintMarginRatio": MAINT_RATE, "cum": 0.0}]}
            for m, s in self.by_id.items() if symbol is None or s == symbol]
        return json_response(rows[0] if symbol else rows)

    async def position_risk(self, request: web.Request, key: str, params: dict[str, str]) -> web.StreamResponse:
        symbol = self.symbol_of(params, required=False)
        now = self.server.now_ms()
        eng = self.engine
        eng.advance(now)
        v2 = request.path.startswith("/fapi/v2/")
        rows = []
        for s in self.by_id.values():
            if symbol is not None and s != symbol:
                continue
            pos = eng.derivs.positions.get((key, s, "net"))
            if v2 or (pos is not None and pos.qty):  # v3 lists open positions only
                rows.append(self.position_json(key, pos, s, now, v2))
        return json_response(rows)

    async def account(self, request: web.Request, key: str, params: dict[str, str]) -> web.StreamResponse:
        now = self.server.now_ms()
        eng = self.engine
        eng.advance(now)
        acct = eng.account(key)
        free, locked = acct.free("USDT"), acct.locked("USDT")
        positions = [self.position_json(key, p, p.symbol, now, False) for p in eng.derivs.open_positions(key)
                     if p.symbol in self.by_id.values()]
        upnl = sum(float(p["unRealizedProfit"]) for p in positions)
        wallet = free + locked
        asset = {"asset": "USDT", "walletBalance": _f(wallet), "unrealizedProfit": _f(upnl),
                 "marginBalance": _f(wallet + upnl), "maintMargin": _f(sum(float(p["maintMargin"])
                                                                           for p in positions)),
                 "initialMargin": _f(locked), "positionInitialMargin": _f(sum(
                     float(p["positionInitialMargin"]) for p in positions)),
                 "openOrderInitialMargin": _f(locked - sum(float(p["positionInitialMargin"])
                                                           for p in positions)),
                 "crossWalletBalance": _f(wallet), "crossUnPnl": _f(upnl),
                 "availableBalance": _f(free), "maxWithdrawAmount": _f(free), "updateTime": now}
        body = {"totalInitialMargin": asset["initialMargin"], "totalMaintMargin": asset["maintMargin"],
                "totalWalletBalance": asset["walletBalance"], "totalUnrealizedProfit": _f(upnl),
                "totalMarginBalance": asset["marginBalance"],
                "totalPositionInitialMargin": asset["positionInitialMargin"],
                "totalOpenOrderInitialMargin": asset["openOrderInitialMargin"],
                "totalCrossWalletBalance": _f(wallet), "totalCrossUnPnl": _f(upnl),
                "availableBalance": _f(free), "maxWithdrawAmount": _f(free),
                "assets": [asset], "positions": positions}
        return json_response(body)

    async def set_leverage(self, request: web.Request, key: str, params: dict[str, str]) -> web.StreamResponse:
        symbol = self.symbol_of(params)
        assert symbol is not None
        lever = params.get("leverage")
        if not lever:
            raise missing("leverage")
        if not lever.isdigit() or not 1 <= int(lever) <= MAX_LEVERAGE:
            raise Refused(-4028, f"Leverage {lever} is not valid")
        try:
            self.engine.with_derivs(self.server.now_ms(),
                                    lambda d: d.set_leverage(key, symbol, int(lever)))
        except Reject:
            raise Refused(-2027, "Exceeded the maximum allowable position at current leverage.") from None
        return json_response({"leverage": int(lever), "maxNotionalValue": "1000000000",
                              "symbol": self.venue.market_id(symbol)})

    async def margin_type(self, request: web.Request, key: str, params: dict[str, str]) -> web.StreamResponse:
        symbol = self.symbol_of(params)
        assert symbol is not None
        kind = params.get("marginType", "").upper()
        if kind not in ("ISOLATED", "CROSSED"):
            raise missing("marginType") if not kind else Refused(-4044, "The margin type is invalid.")
        mode = "isolated" if kind == "ISOLATED" else "cross"
        derivs = self.engine.derivs
        if derivs.mode_of(key, symbol) == mode:
            raise Refused(-4046, "No need to change margin type.")
        try:
            self.engine.with_derivs(self.server.now_ms(), lambda d: d.set_margin_mode(key, symbol, mode))
        except Reject:
            raise Refused(-4048, "Margin type cannot be changed if there exists position.") from None
        return json_response({"code": 200, "msg": "success"})

    async def get_dual(self, request: web.Request, key: str, params: dict[str, str]) -> web.StreamResponse:
        return json_response({"dualSidePosition": False})

    async def set_dual(self, request: web.Request, key: str, params: dict[str, str]) -> web.StreamResponse:
        if params.get("dualSidePosition", "").lower() == "true":
            raise Refused(-1000, "Hedge mode (dualSidePosition) is not simulated.")
        raise Refused(-4059, "No need to change position side.")

    async def new_order(self, request: web.Request, key: str, params: dict[str, str]) -> web.StreamResponse:
        symbol = self.symbol_of(params)
        assert symbol is not None
        side, raw_type = side_and_type(params)
        kind = _TYPES.get(raw_type)
        if kind is None:
            raise Refused(-1116, "Invalid orderType.")
        if params.get("positionSide", "BOTH") != "BOTH":
            raise Refused(-4061, "Order's position side does not match user's setting.")
        amount = number(params, "quantity")
        price = number(params, "price")
        if amount is None:
            raise missing("quantity")
        if kind == "limit":
            if price is None:
                raise missing("price")
            if params.get("timeInForce", "GTC") != "GTC":
                raise Refused(-1115, "Invalid timeInForce.")
        now = self.server.now_ms()
        try:
            o = self.engine.place(key, symbol, side.lower(), kind, now_ms=now, amount=amount,
                                  price=price, client_id=params.get("newClientOrderId") or None,
                                  reduce_only=params.get("reduceOnly", "false").lower() == "true")
        except Reject as rej:
            raise self.refused(rej) from None
        body = self.order_json(o)
        if params.get("newOrderRespType", "ACK") != "RESULT":  # ACK: as accepted, before matching
            body.update({"status": "NEW", "executedQty": "0", "cumQty": "0", "cumQuote": "0",
                         "avgPrice": "0", "updateTime": now})
        return await self.server.order_ack(request, json_response(body))

    def refused(self, rej: Reject) -> Refused:
        """binance's answer to an order the engine refuses."""
        code, msg = _REJECTS.get(rej.kind, (-1000, rej.message))
        return Refused(code, msg)

    def _find(self, key: str, params: dict[str, str]) -> SimOrder:
        """A regular order by ``orderId`` or ``origClientOrderId`` (the newest); algo orders
        that have not placed their order are not regular orders."""
        symbol = self.symbol_of(params)
        oid, cid = params.get("orderId"), params.get("origClientOrderId")
        if not oid and not cid:
            raise Refused(-1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
        eng, now = self.engine, self.server.now_ms()
        o: SimOrder | None = None
        if oid:
            o = eng.find(key, symbol=symbol, order_id=int(oid) if oid.isdigit() else None, now_ms=now)
        else:
            eng.advance(now)
            for cand in reversed(list(eng.orders.values())):
                if (cand.key == key and cand.symbol == symbol and cand.client_id == cid
                        and self.algos.visible(cand)):
                    o = None if eng.lagging(cand, now) else cand
                    break
        if o is None or not self.algos.visible(o):
            raise Refused(-2013, "Order does not exist.")
        return o

    async def get_order(self, request: web.Request, key: str, params: dict[str, str]) -> web.StreamResponse:
        return json_response(self.order_json(self._find(key, params)))

    async def cancel_order(self, request: web.Request, key: str, params: dict[str, str]) -> web.StreamResponse:
        o = self._find(key, params)
        try:
            o = self.engine.cancel(key, now_ms=self.server.now_ms(), order_id=o.id)
        except Reject:
            raise Refused(-2011, "Unknown order sent.") from None
        return json_response(self.order_json(o))

    async def open_orders(self, request: web.Request, key: str, params: dict[str, str]) -> web.StreamResponse:
        symbol = self.symbol_of(params, required=False)
        rows = [o for o in self.engine.open_orders(key, symbol, now_ms=self.server.now_ms())
                if self.venue.specs[o.symbol].is_swap and self.algos.visible(o)]
        return json_response([self.order_json(o) for o in rows])

    async def all_orders(self, request: web.Request, key: str, params: dict[str, str]) -> web.StreamResponse:
        symbol = self.symbol_of(params)
        eng = self.engine
        eng.advance(self.server.now_ms())
        rows = [o for o in eng.orders.values() if o.key == key and o.symbol == symbol
                and self.algos.visible(o)]
        limit = int(number(params, "limit") or 500)
        return json_response([self.order_json(o) for o in rows[-min(limit, 1000):]])

    async def user_trades(self, request: web.Request, key: str, params: dict[str, str]) -> web.StreamResponse:
        symbol = self.symbol_of(params)
        oid = params.get("orderId")
        fills = self.engine.account_fills(key, symbol=symbol, order_id=int(oid) if oid and oid.isdigit()
                                          else None, now_ms=self.server.now_ms())
        start, end = number(params, "startTime"), number(params, "endTime")
        fills = [f for f in fills if (start is None or f.time_ms >= start) and (end is None or f.time_ms <= end)]
        limit = int(number(params, "limit") or 500)
        return json_response([self.fill_json(f) for f in fills[-min(limit, 1000):]])

    async def income(self, request: web.Request, key: str, params: dict[str, str]) -> web.StreamResponse:
        symbol = self.symbol_of(params, required=False)
        eng = self.engine
        eng.advance(self.server.now_ms())
        kind = params.get("incomeType")
        rows: list[dict[str, Any]] = []
        if kind in (None, "", "FUNDING_FEE"):
            for i, p in enumerate(eng.derivs.payments):
                if p.key == key and (symbol is None or p.symbol == symbol) and p.symbol in self.by_id.values():
                    rows.append({"symbol": self.venue.market_id(p.symbol), "incomeType": "FUNDING_FEE",
                                 "income": _f(p.amount), "asset": "USDT", "info": "FUNDING_FEE",
                                 "time": p.time_ms, "tranId": 9_000_000 + i, "tradeId": ""})
        if kind in (None, "", "REALIZED_PNL", "COMMISSION"):
            for f in eng.account_fills(key, symbol=symbol):
                if f.symbol not in self.by_id.values():
                    continue
                if kind in (None, "", "REALIZED_PNL") and f.pnl:
                    rows.append({"symbol": self.venue.market_id(f.symbol), "incomeType": "REALIZED_PNL",
                                 "income": _f(f.pnl), "asset": "USDT", "info": "", "time": f.time_ms,
                                 "tranId": f.id, "tradeId": str(f.id)})
                if kind in (None, "", "COMMISSION") and f.fee:
                    rows.append({"symbol": self.venue.market_id(f.symbol), "incomeType": "COMMISSION",
                                 "income": _f(-f.fee), "asset": "USDT", "info": "", "time": f.time_ms,
                                 "tranId": f.id, "tradeId": str(f.id)})
        start, end = number(params, "startTime"), number(params, "endTime")
        rows = sorted((r for r in rows if (start is None or r["time"] >= start)
                       and (end is None or r["time"] <= end)), key=lambda r: r["time"])
        limit = int(number(params, "limit") or 100)
        return json_response(rows[-min(limit, 1000):])

    def routes(self) -> list[web.RouteDef]:
        v = self.venue
        return [
            web.get("/fapi/v1/exchangeInfo", self.exchange_info),
            web.get("/fapi/v1/klines", v.klines),
            web.get("/fapi/v1/ticker/24hr", v.ticker_24hr),
            web.get("/fapi/v1/ticker/price", v.ticker_price),
            web.get("/fapi/v2/ticker/price", v.ticker_price),  # ccxt's fetch_last_prices
            web.get("/fapi/v1/premiumIndex", self.premium_index),
            web.get("/fapi/v1/fundingRate", self.funding_rate),
            web.get("/fapi/v1/fundingInfo", self.funding_info),
            web.get("/fapi/v1/leverageBracket", signed(v, self.leverage_bracket)),
            web.get("/fapi/v2/positionRisk", signed(v, self.position_risk)),
            web.get("/fapi/v3/positionRisk", signed(v, self.position_risk)),
            web.get("/fapi/v2/account", signed(v, self.account)),
            web.get("/fapi/v3/account", signed(v, self.account)),
            web.post("/fapi/v1/leverage", signed(v, self.set_leverage)),
            web.post("/fapi/v1/marginType", signed(v, self.margin_type)),
            web.get("/fapi/v1/positionSide/dual", signed(v, self.get_dual)),
            web.post("/fapi/v1/positionSide/dual", signed(v, self.set_dual)),
            web.post("/fapi/v1/order", signed(v, self.new_order)),
            web.get("/fapi/v1/order", signed(v, self.get_order)),
            web.delete("/fapi/v1/order", signed(v, self.cancel_order)),
            web.get("/fapi/v1/openOrders", signed(v, self.open_orders)),
            web.get("/fapi/v1/allOrders", signed(v, self.all_orders)),
            web.get("/fapi/v1/userTrades", signed(v, self.user_trades)),
            web.get("/fapi/v1/income", signed(v, self.income)),
            *self.algos.routes(),  # /fapi/v1/algoOrder, openAlgoOrders, allAlgoOrders ...
        ]
