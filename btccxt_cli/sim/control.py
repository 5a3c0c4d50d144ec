"""The simulator's control API: JSON under ``/_sim/`` on each exchange's own port.

=======================================  ==========================================================
``GET  /_sim``                           index of this API
``GET  /_sim/stats``                     counters, subscriptions, faults (``Simulator.stats``)
``POST /_sim/reset_stats``               zero the counters
``GET  /_sim/truth?symbol=&timeframe=&since=&until=``   closed bars, oldest first
``GET  /_sim/close_sent?symbol=&timeframe=&opens=t1,t2``   when each bar's final update was
                                         first sent: ``time.perf_counter_ns()`` (on Linux the
                                         system's monotonic clock: comparable across processes)
``GET  /_sim/time``                      the exchange's clock
``GET  /_sim/identity``                  which prices this simulator serves (its seed)
``GET  /_sim/faults``                    current fault state
``GET  /_sim/orders?key=``               every order of the private API (one API key, or all)
``GET  /_sim/positions?key=``            every open swap position (one API key, or all)
``GET  /_sim/balances?key=``             balances of one API key (default: the test key)
``POST /_sim/faults/<name>``             apply a fault; JSON body = keyword arguments
=======================================  ==========================================================

Control requests are never counted in the REST stats and never hit by REST faults. Errors come
back as HTTP 400 ``{"error": "..."}``. Must not import anything from the client side.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from btccxt_cli.sim.faults import FAULT_NAMES
from btccxt_cli.sim.wire import json_response, loads

if TYPE_CHECKING:
    from btccxt_cli.sim.market import Candle
    from btccxt_cli.sim.server import ExchangeServer

logger = logging.getLogger(__name__)

__all__ = ["control_routes"]


def _bad(msg: str) -> web.Response:
    return json_response({"error": msg}, status=400)


class ControlTarget(Protocol):
    """The simulator methods the control API serves (``simulator.Simulator`` has them)."""

    seed: int
    clock_offset_ms: int

    def symbols(self, exchange: str) -> list[str]: ...

    def stats(self, exchange: str) -> dict[str, Any]: ...

    def reset_stats(self, exchange: str) -> None: ...

    def truth(self, exchange: str, symbol: str, timeframe: str, since_ms: int,
              until_ms: int) -> list[Candle]: ...

    def orders(self, exchange: str, key: str | None = None) -> list[dict[str, Any]]: ...

    def positions(self, exchange: str, key: str | None = None) -> list[dict[str, Any]]: ...

    def balances(self, exchange: str, key: str = ...) -> dict[str, dict[str, float]]: ...

    def fault(self, exchange: str, name: str, **kwargs: Any) -> Any: ...


def control_routes(sim: ControlTarget, server: ExchangeServer) -> list[web.RouteDef]:
    """Routes of the control API of one exchange server of ``sim``."""
    exchange = server.id

    async def index(request: web.Request) -> web.Response:
        return json_response({
            "exchange": exchange,
            "endpoints": ["GET /_sim/stats", "POST /_sim/reset_stats",
                          "GET /_sim/truth?symbol=&timeframe=&since=&until=",
                          "GET /_sim/close_sent?symbol=&timeframe=&opens=", "GET /_sim/time",
                          "GET /_sim/identity", "GET /_sim/faults", "POST /_sim/faults/<name>",
                          "GET /_sim/orders?key=", "GET /_sim/positions?key=",
                          "GET /_sim/balances?key="],
            "faults": list(FAULT_NAMES),
            "symbols": sim.symbols(exchange),
        })

    async def stats(request: web.Request) -> web.Response:
        return json_response(sim.stats(exchange))

    async def reset_stats(request: web.Request) -> web.Response:
        sim.reset_stats(exchange)
        return json_response({"ok": True})

    async def now(request: web.Request) -> web.Response:
        return json_response({"now_ms": server.now_ms(), "clock_offset_ms": sim.clock_offset_ms})

    async def identity(request: web.Request) -> web.Response:
        # every price is a function of (seed, symbol, timeframe, time): the seed names them
        return json_response({"simulator": "btccxt", "exchange": exchange, "seed": sim.seed,
                              "identity": f"seed-{sim.seed}"})

    async def truth(request: web.Request) -> web.Response:
        q = request.query
        try:
            symbol = q["symbol"]
            timeframe = q.get("timeframe", "1m")
            since = int(q["since"])
            until = int(q.get("until") or server.now_ms())
            candles = sim.truth(exchange, symbol, timeframe, since, until)
        except KeyError as exc:
            return _bad(f"missing query parameter {exc}")
        except ValueError as exc:
            return _bad(str(exc))
        return json_response({"exchange": exchange, "symbol": symbol, "timeframe": timeframe,
                              "candles": [list(c) for c in candles]})

    async def close_sent(request: web.Request) -> web.Response:
        q = request.query
        try:
            symbol, timeframe = q["symbol"], q.get("timeframe", "1m")
            opens = [int(x) for x in q["opens"].split(",") if x]
            sent = {str(t): sim.close_sent_ns(exchange, symbol, timeframe, t) for t in opens}
        except KeyError as exc:
            return _bad(f"missing query parameter {exc}")
        except ValueError as exc:
            return _bad(str(exc))
        return json_response({"exchange": exchange, "symbol": symbol, "timeframe": timeframe,
                              "sent_ns": sent})

    async def positions(request: web.Request) -> web.Response:
        return json_response({"exchange": exchange,
                              "positions": sim.positions(exchange, request.query.get("key") or None)})

    async def orders(request: web.Request) -> web.Response:
        return json_response({"exchange": exchange,
                              "orders": sim.orders(exchange, request.query.get("key") or None)})

    async def balances(request: web.Request) -> web.Response:
        try:
            if "key" in request.query:
                return json_response(sim.balances(exchange, request.query["key"]))
            return json_response(sim.balances(exchange))
        except KeyError:
            return _bad("no account has that API key")

    async def faults(request: web.Request) -> web.Response:
        return json_response(server.faults.snapshot(server.clock.monotonic()))

    async def apply_fault(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name == "clear":
            name = "clear_faults"
        body: Any = {}
        raw = await request.read()
        if raw.strip():
            try:
                body = loads(raw)
            except ValueError:
                return _bad("the body must be a JSON object of keyword arguments")
        if not isinstance(body, dict):
            return _bad("the body must be a JSON object of keyword arguments")
        try:
            result = sim.fault(exchange, name, **body)
        except (TypeError, ValueError, KeyError) as exc:
            return _bad(str(exc))
        logger.info("simulated %s: fault %s %s", exchange, name, body)
        return json_response({"ok": True, "fault": name, "args": body, "result": result})

    return [
        web.get("/_sim", index),
        web.get("/_sim/", index),
        web.get("/_sim/stats", stats),
        web.post("/_sim/reset_stats", reset_stats),
        web.get("/_sim/time", now),
        web.get("/_sim/identity", identity),
        web.get("/_sim/truth", truth),
        web.get("/_sim/close_sent", close_sent),
        web.get("/_sim/faults", faults),
        web.get("/_sim/orders", orders),
        web.get("/_sim/positions", positions),
        web.get("/_sim/balances", balances),
        web.post("/_sim/faults/{name}", apply_fault),
    ]
