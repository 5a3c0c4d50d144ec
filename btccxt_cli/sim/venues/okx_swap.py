"""OKX v5 perpetual swaps (``-SWAP`` instruments, USDT-margined): positions, leverage, position
and margin modes, funding, as ccxt 4.5 calls them. Orders on swaps go through the regular
order endpoints (``okx_private.py``: ``tdMode`` cross|isolated, ``sz`` in contracts of
``ctVal`` base units, ``reduceOnly``, ``posSide``); the engine's rules are in
``sim/positions.py``.

Endpoints::

    GET  /api/v5/account/positions          [instType=SWAP] [instId=a,b] [posId]
    POST /api/v5/account/set-leverage       {instId lever mgnMode=cross|isolated [posSide]}
    GET  /api/v5/account/leverage-info      instId mgnMode
    POST /api/v5/account/set-position-mode  {posMode=net_mode|long_short_mode}
    GET  /api/v5/account/config             posMode, acctLv ... (ccxt's fetch_accounts)
    GET  /api/v5/account/bills(-archive)    type=8: funding fees (ccxt's fetch_funding_history)
    GET  /api/v5/public/funding-rate        instId (public)
    GET  /api/v5/public/funding-rate-history  instId [before] [after] [limit<=100] (public)
    GET  /api/v5/public/mark-price          [instType] [instId] (public)

Errors as okx sends them: 51000 "Parameter lever error" (leverage outside 1..100), 59000
"Settings failed. Close any open positions or orders before modifying settings." (margin or
position mode with something open), 51169 (reduce-only with nothing to reduce), 51008
(insufficient margin), 51001 (unknown instrument).

Must not import ccxt or anything from the client side of btccxt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from btccxt_cli.sim.ledger import Reject
from btccxt_cli.sim.positions import Position
from btccxt_cli.sim.venues.okx_common import (
    Refused,
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

__all__ = ["SwapAccount", "MAX_LEVER", "SETTINGS_REFUSED"]

MAX_LEVER = 100
SETTINGS_REFUSED = ("59000", "Settings failed. Close any open positions or orders before "
                             "modifying settings.")


def _err(code: str, msg: str, status: int = 200) -> web.Response:
    return json_response({"code": code, "msg": msg, "data": []}, status=status)


class SwapAccount:
    """The swap endpoints of one okx venue (:meth:`routes`)."""

    def __init__(self, venue: OkxVenue) -> None:
        self.venue = venue
        self.server = venue.server

    @property
    def engine(self) -> Engine:
        return self.server.engine

    def swap_symbol(self, params: dict[str, Any]) -> str:
        symbol = symbol_of(self.venue, params)
        assert symbol is not None
        if not self.venue.specs[symbol].is_swap:
            raise Refused("51000", "Parameter instId error")
        return symbol

    # ------------------------------------------------------------------ formatting
    def position_json(self, pos: Position, now: int) -> dict[str, Any]:
        v = self.venue
        d = self.engine.derivs.position_dict(pos, now)
        spec = v.specs[pos.symbol]
        contracts = v.contracts(pos.symbol, d["qty"])
        notional = abs(d["qty"]) * d["mark"]
        liq = d["liq_price"]
        return {
            "adl": "1", "availPos": num(abs(contracts)) if pos.mode == "isolated" else "",
            "avgPx": num(d["entry"], 10), "baseBal": "", "baseBorrowed": "", "baseInterest": "",
            "bePx": "", "bizRefId": "", "bizRefType": "", "cTime": str(d["created_ms"]),
            "ccy": spec.quote, "clSpotInUseAmt": "", "closeOrderAlgo": [], "deltaBS": "",
            "deltaPA": "", "fee": num(-d["fees"]), "fundingFee": num(d["funding"]),
            "gammaBS": "", "gammaPA": "", "idxPx": num(d["mark"]), "imr": num(
                notional / d["leverage"]) if pos.mode == "cross" else "",
            "instId": v.inst_id(pos.symbol), "instType": "SWAP", "interest": "",
            "last": num(d["mark"]), "lever": num(d["leverage"]),
            "liab": "", "liabCcy": "", "liqPenalty": "0",
            "liqPx": num(liq) if liq is not None else "",
            "margin": num(d["margin"]) if pos.mode == "isolated" else "",
            "markPx": num(d["mark"]), "maxSpotInUseAmt": "", "mgnMode": pos.mode,
            "mgnRatio": num((d["margin"] + d["upnl"]) / d["maint"]) if d["maint"] else "",
            "mmr": num(d["maint"]), "notionalUsd": num(notional), "optVal": "",
            "pendingCloseOrdLiabVal": "", "pnl": num(d["realised"]),
            "pos": num(contracts if pos.side == "net" else abs(contracts)), "posCcy": "",
            "posId": str(d["id"]), "posSide": pos.side, "quoteBal": "", "quoteBorrowed": "",
            "quoteInterest": "", "realizedPnl": num(d["realised"] - d["fees"] + d["funding"]),
            "spotInUseAmt": "", "spotInUseCcy": "", "thetaBS": "", "thetaPA": "",
            "tradeId": "", "uTime": str(d["updated_ms"]), "upl": num(d["upnl"]),
            "uplLastPx": num(d["upnl"]),
            "uplRatio": num(d["upnl"] / d["margin"]) if d["margin"] else "0",
            "uplRatioLastPx": num(d["upnl"] / d["margin"]) if d["margin"] else "0",
            "usdPx": "", "vegaBS": "", "vegaPA": "", "nonSettleAvgPx": "", "settledPnl": "",
        }

    # ------------------------------------------------------------------ private endpoints
    async def positions(self, request: web.Request, key: str, params: dict[str, Any]) -> web.StreamResponse:
        inst_type = params.get("instType")
        if inst_type not in (None, "", "MARGIN", "SWAP", "FUTURES", "OPTION"):
            raise Refused("51000", "Parameter instType error", 400)
        wanted: set[str] | None = None
        if params.get("instId"):
            wanted = set()
            for inst in str(params["instId"]).split(","):
                symbol = self.venue.by_id.get(inst)
                if symbol is None:
                    raise Refused("51001", "Instrument ID does not exist")
                wanted.add(symbol)
        now = self.server.now_ms()
        eng = self.engine
        eng.advance(now)
        rows = []
        if inst_type in (None, "", "SWAP"):
            for pos in eng.derivs.open_positions(key):
                if (wanted is None or pos.symbol in wanted) and (
                        not params.get("posId") or str(pos.id) == str(params["posId"])):
                    rows.append(self.position_json(pos, now))
        return ok(rows)

    async def set_leverage(self, request: web.Request, key: str, params: dict[str, Any]) -> web.StreamResponse:
        symbol = self.swap_symbol(params)
        mode = params.get("mgnMode")
        if mode not in ("cross", "isolated"):
            raise Refused("51000", "Parameter mgnMode error", 400)
        try:
            lever = float(params.get("lever", ""))
        except (TypeError, ValueError):
            raise Refused("51000", "Parameter lever error", 400) from None
        if not 1 <= lever <= MAX_LEVER:
            raise Refused("51000", "Parameter lever error", 400)
        pos_side = str(params.get("posSide") or "net")
        eng = self.engine
        if pos_side in ("long", "short") and not eng.derivs.is_hedged(key):
            raise Refused("51000", "Parameter posSide error", 400)
        try:
            eng.with_derivs(self.server.now_ms(), lambda d: d.set_leverage(
                key, symbol, lever, mode=mode, side=pos_side if mode == "isolated" else None))
        except Reject as rej:
            if rej.kind == "position_open":
                raise Refused(*SETTINGS_REFUSED) from None
            if rej.kind == "insufficient_funds":
                raise Refused("59108", "Your account leverage is too low and has insufficient "
                                       "margins. Please increase the leverage and try again.") from None
            raise Refused("51000", "Parameter lever error", 400) from None
        return ok([{"instId": self.venue.inst_id(symbol), "lever": num(lever), "mgnMode": mode,
                    "posSide": pos_side}])

    async def leverage_info(self, request: web.Request, key: str, params: dict[str, Any]) -> web.StreamResponse:
        mode = params.get("mgnMode")
        if mode not in ("cross", "isolated"):
            raise Refused("51000", "Parameter mgnMode error", 400)
        rows = []
        for inst in str(params.get("instId") or "").split(","):
            symbol = self.swap_symbol({"instId": inst})
            derivs = self.engine.derivs
            sides = ("long", "short") if derivs.is_hedged(key) and mode == "isolated" else ("net",)
            for side in sides:
                rows.append({"ccy": "", "instId": inst, "lever": num(derivs.leverage_of(key, symbol, side)),
                             "mgnMode": mode, "posSide": side})
        return ok(rows)

    async def set_position_mode(self, request: web.Request, key: str, params: dict[str, Any]) -> web.StreamResponse:
        mode = params.get("posMode")
        if mode not in ("net_mode", "long_short_mode"):
            raise Refused("51000", "Parameter posMode error", 400)
        eng = self.engine
        try:
            eng.with_derivs(self.server.now_ms(), lambda d: d.set_hedged(key, mode == "long_short_mode"))
        except Reject:
            raise Refused(*SETTINGS_REFUSED) from None
        return ok([{"posMode": mode}])

    async def config(self, request: web.Request, key: str, params: dict[str, Any]) -> web.StreamResponse:
        hedged = self.engine.derivs.is_hedged(key)
        return ok([{"acctLv": "2", "autoLoan": False, "ctIsoMode": "automatic", "greeksType": "PA",
                    "level": "Lv1", "levelTmp": "", "mgnIsoMode": "automatic",
                    "posMode": "long_short_mode" if hedged else "net_mode", "spotOffsetType": "",
                    "uid": "44705892343619584", "mainUid": "44705892343619584", "label": "btccxt-sim",
                    "roleType": "0", "traderInsts": [], "spotRoleType": "0", "spotTraderInsts": [],
                    "opAuth": "0", "kycLv": "1", "ip": "", "perm": "read_only,trade",
                    "liquidationGear": "-1", "enableSpotBorrow": False, "spotBorrowAutoRepay": False,
                    "type": "0", "settleCcy": "USDT", "settleCcyList": ["USDT"]}])

    async def bills(self, request: web.Request, key: str, params: dict[str, Any]) -> web.StreamResponse:
        if params.get("type") not in (None, "", "8"):
            return ok([])  # only funding fees are simulated
        eng = self.engine
        eng.advance(self.server.now_ms())
        rows = []
        for i, p in enumerate(eng.derivs.payments):
            if p.key != key or (params.get("instId") and self.venue.inst_id(p.symbol) != params["instId"]):
                continue
            spec = self.venue.specs[p.symbol]
            rows.append({"bal": "", "balChg": num(p.amount), "billId": str(1000 + i), "ccy": spec.quote,
                         "execType": "", "fee": "0", "from": "", "instId": self.venue.inst_id(p.symbol),
                         "instType": "SWAP", "mgnMode": "", "notes": "", "ordId": "", "pnl": num(p.amount),
                         "posBal": "", "posBalChg": "0", "subType": "173" if p.amount < 0 else "174",
                         "sz": num(abs(self.venue.contracts(p.symbol, p.qty))), "to": "",
                         "ts": str(p.time_ms), "type": "8"})
        return ok(limited(list(reversed(rows)), params))

    # ------------------------------------------------------------------ public endpoints
    async def funding_rate(self, request: web.Request) -> web.Response:
        inst = request.query.get("instId")
        if not inst:
            return _err("50014", "Parameter instId can not be empty.", 400)
        symbol = self.venue.by_id.get(inst)
        if symbol is None or not self.venue.specs[symbol].is_swap:
            return _err("51001", "Instrument ID does not exist")
        now = self.server.now_ms()
        derivs = self.engine.derivs
        nxt = derivs.next_funding_ms(now)
        iv = derivs.funding_interval_ms
        rate = num(derivs.predicted_rate(symbol, now), 8)
        return ok([{"formulaType": "noRate", "fundingRate": rate, "fundingTime": str(nxt),
                    "impactValue": "", "instId": inst, "instType": "SWAP", "interestRate": "0.0001",
                    "maxFundingRate": "0.003", "method": "current_period", "minFundingRate": "-0.003",
                    "nextFundingRate": "", "nextFundingTime": str(nxt + iv), "premium": "",
                    "settFundingRate": num(derivs.funding_rate(symbol, nxt - iv), 8),
                    "settState": "settled", "ts": str(now)}])

    async def funding_rate_history(self, request: web.Request) -> web.Response:
        q = request.query
        inst = q.get("instId")
        if not inst:
            return _err("50014", "Parameter instId can not be empty.", 400)
        symbol = self.venue.by_id.get(inst)
        if symbol is None or not self.venue.specs[symbol].is_swap:
            return _err("51001", "Instrument ID does not exist")
        try:
            limit = max(1, min(int(q.get("limit") or 100), 100))
            before = int(q["before"]) if q.get("before") else None
            after = int(q["after"]) if q.get("after") else None
        except ValueError:
            return _err("51000", "Parameter limit error", 400)
        derivs = self.engine.derivs
        iv = derivs.funding_interval_ms
        now = self.server.now_ms()
        newest = now - now % iv
        if after is not None:
            newest = min(newest, (after - 1) - (after - 1) % iv)
        times = []  # the newest ``limit`` settlements after ``before`` (and before ``after``)
        t = newest
        while len(times) < limit and (before is None or t > before) and t > 0:
            times.append(t)
            t -= iv
        rows = [{"fundingRate": num(r := derivs.funding_rate(symbol, t), 8), "fundingTime": str(t),
                 "formulaType": "noRate", "instId": inst, "instType": "SWAP", "method": "current_period",
                 "realizedRate": num(r, 8)} for t in times]
        return ok(rows)

    async def mark_price(self, request: web.Request) -> web.Response:
        inst = request.query.get("instId")
        now = self.server.now_ms()
        rows = []
        for symbol in self.venue.symbols:
            if not self.venue.specs[symbol].is_swap or (inst and self.venue.inst_id(symbol) != inst):
                continue
            rows.append({"instId": self.venue.inst_id(symbol), "instType": "SWAP",
                         "markPx": num(self.engine.price(symbol, now)), "ts": str(now)})
        return ok(rows)

    def routes(self) -> list[web.RouteDef]:
        v = self.venue
        return [
            web.get("/api/v5/account/positions", signed(v, self.positions)),
            web.post("/api/v5/account/set-leverage", signed(v, self.set_leverage)),
            web.get("/api/v5/account/leverage-info", signed(v, self.leverage_info)),
            web.post("/api/v5/account/set-position-mode", signed(v, self.set_position_mode)),
            web.get("/api/v5/account/config", signed(v, self.config)),
            web.get("/api/v5/account/bills", signed(v, self.bills)),
            web.get("/api/v5/account/bills-archive", signed(v, self.bills)),
            web.get("/api/v5/public/funding-rate", self.funding_rate),
            web.get("/api/v5/public/funding-rate-history", self.funding_rate_history),
            web.get("/api/v5/public/mark-price", self.mark_price),
        ]
