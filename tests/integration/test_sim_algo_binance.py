"""Binance USD-M conditional (stop) orders through the Algo Service, in the simulator through
unmodified ccxt: ``create_order`` with ``stopLossPrice`` / ``triggerPrice`` on a perpetual
(``POST /fapi/v1/algoOrder``), ``fetch_order`` / ``fetch_open_orders`` / ``fetch_orders`` /
``cancel_order`` / ``cancel_all_orders`` with ``{"trigger": True}``, the regular order an algo
order places when the price path reaches its trigger, and ccxt.pro's ``watch_orders``.

Every test runs on a ManualClock (``test_sim_swaps.start_sim``): the price path moves only when
the test moves the clock, to the very second it crosses a trigger."""

from __future__ import annotations

import asyncio
from typing import Any

import ccxt
import pytest

from btccxt_cli.clock import ManualClock
from btccxt_cli.exchange.factory import make_exchange
from tests.integration.test_sim_private_ws import run, until_order
from tests.integration.test_sim_swaps import (
    GOOD,
    START_USDT,
    SWAP,
    engine_price,
    one_position,
    start_sim,
)

pytestmark = pytest.mark.live

EX = "binance"
TRIGGER = {"trigger": True}
LEVERAGE = 20  # the binance venue's default


@pytest.fixture
def binance(sim_factory: Any) -> tuple[Any, Any, ManualClock]:
    return start_sim(sim_factory, EX)


def next_move(sim: Any, start_ms: int, below: bool) -> tuple[int, float]:
    """The first whole second after ``start_ms`` whose price is below (above) the price at
    ``start_ms``, and that price: a stop there triggers exactly at that second, not before."""
    p0 = engine_price(sim, EX, start_ms)
    t = start_ms - start_ms % 1000
    for _ in range(3600):
        t += 1000
        p = engine_price(sim, EX, t)
        if (below and p < p0) or (not below and p > p0):
            return t, p
    raise AssertionError("the price path never moved")


def account(ex: Any) -> dict[str, Any]:
    """``/fapi/v2/account`` as ccxt reads it (USD-M wallet, margins)."""
    return ex.fetch_balance({"type": "future"})["info"]


def test_sell_stop_market_rests_then_closes_a_long_at_its_trigger(binance: Any) -> None:
    sim, ex, clock = binance
    ex.create_order(SWAP, "market", "buy", 0.02)
    when, stop = next_move(sim, clock.time_ms(), below=True)
    o = ex.create_order(SWAP, "market", "sell", 0.02,
                        params={"stopLossPrice": stop, "reduceOnly": True, "clientOrderId": "slLong1"})
    info = o["info"]
    assert o["id"] == str(info["algoId"]) and o["clientOrderId"] == "slLong1"
    assert (o["status"], o["type"], o["side"], o["amount"], o["triggerPrice"], o["reduceOnly"]) == (
        "open", "market", "sell", 0.02, stop, True)
    assert (info["algoType"], info["orderType"], info["algoStatus"], info["actualOrderId"]) == (
        "CONDITIONAL", "STOP_MARKET", "NEW", "")
    # the algo order, by id, by client id, and among the open ones
    got = ex.fetch_order(o["id"], SWAP, TRIGGER)
    assert (got["status"], got["triggerPrice"], got["info"]["triggerTime"]) == ("open", stop, 0)
    assert ex.fetch_order(None, SWAP, {**TRIGGER, "clientOrderId": "slLong1"})["id"] == o["id"]
    assert [r["id"] for r in ex.fetch_open_orders(SWAP, params=TRIGGER)] == [o["id"]]
    # the regular endpoints know nothing of it yet
    assert ex.fetch_open_orders(SWAP) == []
    assert [r["side"] for r in ex.fetch_orders(SWAP)] == ["buy"]
    with pytest.raises(ccxt.OrderNotFound):
        ex.fetch_order(None, SWAP, {"clientOrderId": "slLong1"})
    # a second before the path reaches the stop: still resting, the long still open
    clock.set_ms(when - 1000)
    assert ex.fetch_order(o["id"], SWAP, TRIGGER)["info"]["algoStatus"] == "NEW"
    assert one_position(ex)["contracts"] == 0.02
    entry = one_position(ex)["entryPrice"]
    wallet_before = float(account(ex)["totalWalletBalance"])
    clock.set_ms(when)
    got = ex.fetch_order(o["id"], SWAP, TRIGGER)
    info = got["info"]
    assert (got["status"], info["algoStatus"], info["triggerTime"]) == ("closed", "FINISHED", when)
    spawned = info["actualOrderId"]
    assert spawned and spawned != o["id"] and float(info["actualPrice"]) == stop
    # the order it placed: a regular order like any other, filled at the trigger second
    reg = ex.fetch_order(spawned, SWAP)
    assert (reg["status"], reg["type"], reg["side"], reg["filled"], reg["average"]) == (
        "closed", "market", "sell", 0.02, stop)
    assert (reg["clientOrderId"], reg["timestamp"], reg["reduceOnly"]) == ("slLong1", when, True)
    assert ex.fetch_order(None, SWAP, {"clientOrderId": "slLong1"})["id"] == spawned
    assert [r["id"] for r in ex.fetch_orders(SWAP)][-1] == spawned
    trades = ex.fetch_my_trades(SWAP)
    assert [(t["order"], t["side"], t["price"], t["amount"], t["timestamp"]) for t in trades[-1:]] == [
        (spawned, "sell", stop, 0.02, when)]
    assert float(trades[-1]["info"]["realizedPnl"]) == pytest.approx(0.02 * (stop - entry), abs=1e-6)
    assert ex.fetch_positions([SWAP]) == []
    fee = 0.001 * 0.02 * stop
    assert float(account(ex)["totalWalletBalance"]) == pytest.approx(
        wallet_before + 0.02 * (stop - entry) - fee, abs=1e-6)
    # done: not open, nothing to cancel, listed among all algo orders
    assert ex.fetch_open_orders(SWAP, params=TRIGGER) == []
    assert [(r["id"], r["status"]) for r in ex.fetch_orders(SWAP, params=TRIGGER)] == [(o["id"], "closed")]
    with pytest.raises(ccxt.OrderNotFound):
        ex.cancel_order(o["id"], SWAP, TRIGGER)


def test_buy_stop_market_above_the_price_closes_a_short(binance: Any) -> None:
    sim, ex, clock = binance
    ex.create_order(SWAP, "market", "sell", 0.03)
    assert one_position(ex)["side"] == "short"
    when, stop = next_move(sim, clock.time_ms(), below=False)
    o = ex.create_order(SWAP, "market", "buy", 0.03,
                        params={"triggerPrice": stop, "reduceOnly": True, "clientOrderId": "slShort1"})
    assert (o["status"], o["side"], o["info"]["orderType"], o["triggerPrice"]) == (
        "open", "buy", "STOP_MARKET", stop)
    clock.set_ms(when - 1000)
    assert [r["id"] for r in ex.fetch_open_orders(SWAP, params=TRIGGER)] == [o["id"]]
    clock.set_ms(when)
    assert ex.fetch_open_orders(SWAP, params=TRIGGER) == []
    got = ex.fetch_order(None, SWAP, {**TRIGGER, "clientOrderId": "slShort1"})
    assert (got["id"], got["status"], got["info"]["triggerTime"]) == (o["id"], "closed", when)
    reg = ex.fetch_order(got["info"]["actualOrderId"], SWAP)
    assert (reg["side"], reg["filled"], reg["average"], reg["status"]) == ("buy", 0.03, stop, "closed")
    assert ex.fetch_positions([SWAP]) == []


def test_triggered_stop_limit_rests_as_a_regular_limit_order(binance: Any) -> None:
    sim, ex, clock = binance
    when, stop = next_move(sim, clock.time_ms(), below=True)
    limit = round(stop * 1.2, 1)  # a sell limit far above the price: it rests once placed
    o = ex.create_order(SWAP, "limit", "sell", 0.01, limit, params={"stopLossPrice": stop,
                                                                    "clientOrderId": "slLim1"})
    assert (o["info"]["orderType"], o["price"], o["type"]) == ("STOP", limit, "limit")
    margin = 0.01 * limit / LEVERAGE  # an opening order locks its margin from the start
    assert float(account(ex)["totalOpenOrderInitialMargin"]) == pytest.approx(margin)
    clock.set_ms(when)
    got = ex.fetch_order(o["id"], SWAP, TRIGGER)
    # binance calls it TRIGGERED (ccxt: closed) while the order it placed is open
    assert (got["info"]["algoStatus"], got["status"]) == ("TRIGGERED", "closed")
    spawned = got["info"]["actualOrderId"]
    reg = ex.fetch_order(spawned, SWAP)
    assert (reg["status"], reg["type"], reg["price"], reg["filled"], reg["timestamp"]) == (
        "open", "limit", limit, 0.0, when)
    assert [r["id"] for r in ex.fetch_open_orders(SWAP)] == [spawned]
    assert ex.fetch_open_orders(SWAP, params=TRIGGER) == []
    ex.cancel_order(spawned, SWAP)
    assert ex.fetch_order(spawned, SWAP)["status"] == "canceled"
    assert ex.fetch_order(o["id"], SWAP, TRIGGER)["info"]["algoStatus"] == "FINISHED"
    assert float(account(ex)["totalOpenOrderInitialMargin"]) == 0


def test_resting_algo_orders_cancel_and_refusals(binance: Any) -> None:
    sim, ex, clock = binance
    px = engine_price(sim, EX, clock.time_ms())
    stop = round(px * 0.9, 1)
    o = ex.create_order(SWAP, "market", "sell", 0.01, params={"stopLossPrice": stop,
                                                             "clientOrderId": "slA1"})
    margin = 0.01 * stop / LEVERAGE  # it would open a short: margin at the trigger price
    assert float(account(ex)["totalOpenOrderInitialMargin"]) == pytest.approx(margin)
    ex.cancel_order(o["id"], SWAP, TRIGGER)
    got = ex.fetch_order(o["id"], SWAP, TRIGGER)
    assert (got["status"], got["info"]["algoStatus"]) == ("canceled", "CANCELED")
    assert float(account(ex)["totalOpenOrderInitialMargin"]) == 0
    assert float(account(ex)["totalWalletBalance"]) == START_USDT
    with pytest.raises(ccxt.OrderNotFound):  # -2011: not open any more
        ex.cancel_order(o["id"], SWAP, TRIGGER)
    # by client id
    b = ex.create_order(SWAP, "market", "buy", 0.01, params={"stopLossPrice": round(px * 1.1, 1),
                                                            "clientOrderId": "slB2"})
    ex.cancel_order(None, SWAP, {**TRIGGER, "clientOrderId": "slB2"})
    assert ex.fetch_order(b["id"], SWAP, TRIGGER)["status"] == "canceled"
    # unknown ids
    with pytest.raises(ccxt.OrderNotFound):
        ex.fetch_order("3999999999999999", SWAP, TRIGGER)
    with pytest.raises(ccxt.OrderNotFound):
        ex.fetch_order(None, SWAP, {**TRIGGER, "clientOrderId": "neverSent9"})
    with pytest.raises(ccxt.OrderNotFound):
        ex.cancel_order("3999999999999999", SWAP, TRIGGER)
    # refusals, binance's codes
    with pytest.raises(ccxt.ExchangeError, match="-2021"):  # a sell stop above the price
        ex.create_order(SWAP, "market", "sell", 0.01, params={"stopLossPrice": round(px * 1.1, 1)})
    with pytest.raises(ccxt.ExchangeError, match="-2021"):  # a buy stop below it
        ex.create_order(SWAP, "market", "buy", 0.01, params={"triggerPrice": round(px * 0.9, 1)})
    with pytest.raises(ccxt.ExchangeError, match="-2022"):  # reduce-only with nothing to reduce
        ex.create_order(SWAP, "market", "sell", 0.01, params={"stopLossPrice": stop, "reduceOnly": True})
    with pytest.raises(ccxt.ExchangeError, match="-2019"):  # 20x of far more than the wallet
        ex.create_order(SWAP, "market", "sell", 100, params={"stopLossPrice": stop})
    with pytest.raises(ccxt.BadRequest, match="-1116"):  # take-profit types are not simulated
        ex.create_order(SWAP, "market", "sell", 0.01, params={"takeProfitPrice": round(px * 1.1, 1)})
    # cancel_all_orders with the trigger param cancels the resting algo orders of the symbol
    left = [ex.create_order(SWAP, "market", "sell", 0.01, params={"stopLossPrice": round(px * f, 1)})
            for f in (0.8, 0.7)]
    assert {r["id"] for r in ex.fetch_open_orders(SWAP, params=TRIGGER)} == {r["id"] for r in left}
    ex.cancel_all_orders(SWAP, params=TRIGGER)
    assert ex.fetch_open_orders(SWAP, params=TRIGGER) == []
    assert [r["status"] for r in ex.fetch_orders(SWAP, params=TRIGGER)] == ["canceled"] * 4
    # none of them ever became a regular order
    assert ex.fetch_orders(SWAP) == [] and ex.fetch_my_trades(SWAP) == []
    assert [r["status"] for r in sim.orders(EX)] == ["canceled"] * 4


def test_reduce_only_stop_with_nothing_left_to_reduce_is_rejected(binance: Any) -> None:
    sim, ex, clock = binance
    ex.create_order(SWAP, "market", "buy", 0.02)
    when, stop = next_move(sim, clock.time_ms(), below=True)
    o = ex.create_order(SWAP, "market", "sell", 0.02, params={"stopLossPrice": stop, "reduceOnly": True})
    ex.create_order(SWAP, "market", "sell", 0.02, params={"reduceOnly": True})  # closed by hand
    clock.set_ms(when)
    got = ex.fetch_order(o["id"], SWAP, TRIGGER)
    assert (got["status"], got["info"]["algoStatus"], got["info"]["actualOrderId"]) == (
        "rejected", "REJECTED", "")
    assert ex.fetch_positions([SWAP]) == []
    assert len(ex.fetch_orders(SWAP)) == 2  # the two market orders; the stop placed none


def test_watch_orders_sees_the_algo_order_and_the_order_it_places(binance: Any) -> None:
    """ccxt.pro's linear ``watch_orders`` (USD-M user data stream): ``ALGO_UPDATE`` NEW, then at
    the trigger the regular order (``ORDER_TRADE_UPDATE``) filled and the algo order FINISHED."""
    sim, ex, clock = binance
    ex.create_order(SWAP, "market", "buy", 0.02)
    when, stop = next_move(sim, clock.time_ms(), below=True)

    async def main() -> None:
        pro = make_exchange(EX, kind="pro", sim_url=sim.url(EX), config=GOOD)
        try:
            await pro.load_markets()
            watch = asyncio.ensure_future(pro.watch_orders(SWAP))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 5
            while not sim.stats(EX)["private_sessions"]:  # the socket is bound to the account
                assert loop.time() < deadline and not watch.done(), "no user data socket"
                await asyncio.sleep(0.02)  # polls a condition, with the deadline above
            o = await pro.create_order(SWAP, "market", "sell", 0.02, params={
                "stopLossPrice": stop, "reduceOnly": True, "clientOrderId": "slWs1"})
            pushed = await until_order(pro, lambda r: r["id"] == o["id"] and r["status"] == "open")
            assert (pushed["clientOrderId"], pushed["triggerPrice"], pushed["info"]["X"]) == (
                "slWs1", stop, "NEW")
            clock.set_ms(when)  # the matcher moves the engine to it and the pushes follow
            done = await until_order(pro, lambda r: r["id"] == o["id"] and r["status"] == "closed")
            spawned = done["info"]["ai"]
            assert done["info"]["X"] == "FINISHED" and done["info"]["tt"] == when and spawned
            filled = await until_order(pro, lambda r: r["id"] == spawned and r["status"] == "closed")
            assert (filled["clientOrderId"], filled["filled"], filled["average"], filled["type"]) == (
                "slWs1", 0.02, stop, "market")
            rest = await pro.fetch_order(o["id"], SWAP, TRIGGER)
            assert rest["info"]["actualOrderId"] == spawned
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
        finally:
            await pro.close()

    run(main())
