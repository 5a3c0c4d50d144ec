"""The simulator's private API through unmodified ccxt: its real signing code, the venues' own
errors, the matching engine behind them, and faults on private calls."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

import ccxt
import pytest

from btccxt_cli.clock import SYSTEM_CLOCK, ManualClock
from btccxt_cli.exchange.factory import make_exchange
from btccxt_cli.sim.accounts import DEFAULT_KEY, SimKey

pytestmark = pytest.mark.live

GOOD = {"apiKey": DEFAULT_KEY.key, "secret": DEFAULT_KEY.secret, "password": DEFAULT_KEY.passphrase}


def client(sim: Any, exchange: str, **cfg: Any) -> Any:
    conf = {**GOOD, **cfg}
    ex = make_exchange(exchange, sim_url=sim.url(exchange), market_types=["spot"], config=conf)
    return ex


@pytest.fixture
def sims(sim_factory: Any) -> Any:
    other = SimKey("second-key", "second-secret", "second-pass", balances={"USDT": 100.0})
    return sim_factory(exchanges=("binance", "okx"), api_keys=[DEFAULT_KEY, other],
                       balances={"USDT": 10_000.0, "BTC": 0.5})


# --------------------------------------------------------------------------- authentication
@pytest.mark.parametrize(("exchange", "cfg", "code"), [
    ("binance", {"secret": "wrong-secret"}, "-1022"),
    ("binance", {"apiKey": "no-such-key"}, "-2015"),
    ("okx", {"secret": "wrong-secret"}, "50113"),
    ("okx", {"apiKey": "no-such-key"}, "50111"),
    ("okx", {"password": "wrong-passphrase"}, "50105"),
])
def test_wrong_credentials_raise_authentication_error(sims: Any, exchange: str, cfg: dict[str, str],
                                                      code: str) -> None:
    ex = client(sims, exchange, **cfg)
    with pytest.raises(ccxt.AuthenticationError) as info:
        ex.fetch_balance()
    assert code in str(info.value)
    for secret in (DEFAULT_KEY.secret, DEFAULT_KEY.passphrase, "wrong-secret", "wrong-passphrase"):
        assert secret not in str(info.value)


@pytest.mark.parametrize("exchange", ["binance", "okx"])
def test_stale_timestamp_is_refused(sims: Any, exchange: str) -> None:
    ex = client(sims, exchange)
    ex.options["timeDifference"] = 60_000  # ccxt signs a timestamp 60 s in the past
    with pytest.raises(ccxt.InvalidNonce):
        ex.fetch_balance()


def test_each_key_has_its_own_account(sims: Any) -> None:
    a = client(sims, "binance")
    b = client(sims, "binance", apiKey="second-key", secret="second-secret")
    assert a.fetch_balance()["total"]["USDT"] == 10_000.0
    assert b.fetch_balance()["total"]["USDT"] == 100.0
    o = a.create_order("BTC/USDT", "limit", "buy", 0.001, 30_000.0)
    with pytest.raises(ccxt.OrderNotFound):
        b.fetch_order(o["id"], "BTC/USDT")
    assert b.fetch_open_orders("BTC/USDT") == []


# --------------------------------------------------------------------------- orders and fills
@pytest.mark.parametrize("exchange", ["binance", "okx"])
def test_order_lifecycle_balances_and_lookups(sims: Any, exchange: str) -> None:
    ex = client(sims, exchange)
    ex.load_markets()
    before = ex.fetch_balance()
    m = ex.create_order("BTC/USDT", "market", "buy", 0.01, params={"clientOrderId": "lifeA1"})
    got = ex.fetch_order(m["id"], "BTC/USDT")
    assert got["status"] == "closed" and got["filled"] == 0.01 and got["clientOrderId"] == "lifeA1"
    by_cid = ex.fetch_order(None, "BTC/USDT", {"clientOrderId": "lifeA1"})
    assert by_cid["id"] == m["id"]
    trades = ex.fetch_order_trades(m["id"], "BTC/USDT")
    assert len(trades) == 1 and trades[0]["fee"] == {"currency": "BTC", "cost": pytest.approx(1e-5)}
    px = trades[0]["price"]
    after = ex.fetch_balance()
    assert after["total"]["USDT"] == pytest.approx(before["total"]["USDT"] - 0.01 * px)
    assert after["total"]["BTC"] == pytest.approx(before["total"]["BTC"] + 0.01 - 1e-5)
    # a resting limit locks its quote; cancelling frees it
    lim = ex.create_order("BTC/USDT", "limit", "buy", 0.01, round(px * 0.8, 1),
                          params={"clientOrderId": "lifeB2"})
    assert [o["id"] for o in ex.fetch_open_orders("BTC/USDT")] == [lim["id"]]
    assert ex.fetch_balance()["used"]["USDT"] == pytest.approx(0.01 * round(px * 0.8, 1))
    ex.cancel_order(lim["id"], "BTC/USDT")
    assert ex.fetch_order(lim["id"], "BTC/USDT")["status"] == "canceled"
    assert ex.fetch_balance()["used"]["USDT"] == 0
    with pytest.raises(ccxt.OrderNotFound):
        ex.cancel_order(lim["id"], "BTC/USDT")
    with pytest.raises(ccxt.OrderNotFound):
        ex.fetch_order(None, "BTC/USDT", {"clientOrderId": "neverSent9"})
    assert [t["order"] for t in ex.fetch_my_trades("BTC/USDT")] == [m["id"]]
    assert len(sims.orders(exchange)) == 2


@pytest.mark.parametrize(("exchange", "fragment"), [
    ("binance", "Account has insufficient balance for requested action."),
    ("okx", "51008"),
])
def test_insufficient_funds_the_exchange_way(sims: Any, exchange: str, fragment: str) -> None:
    ex = client(sims, exchange)
    with pytest.raises(ccxt.InsufficientFunds) as info:
        ex.create_order("BTC/USDT", "market", "buy", 1.0)  # ~61k USDT, the account has 10k
    assert fragment in str(info.value)
    with pytest.raises(ccxt.InsufficientFunds):
        ex.create_order("BTC/USDT", "limit", "sell", 1.0, 100_000.0)  # holds 0.5 BTC
    assert sims.orders(exchange) == []


@pytest.mark.parametrize("exchange", ["binance", "okx"])
def test_duplicate_client_order_id_among_open_orders(sims: Any, exchange: str) -> None:
    ex = client(sims, exchange)
    ex.create_order("BTC/USDT", "limit", "buy", 0.001, 30_000.0, params={"clientOrderId": "dup1"})
    with pytest.raises(ccxt.InvalidOrder):
        ex.create_order("BTC/USDT", "limit", "buy", 0.001, 30_000.0, params={"clientOrderId": "dup1"})
    assert len(sims.orders(exchange)) == 1


def test_binance_stop_loss_order_rests_until_triggered(sims: Any) -> None:
    ex = client(sims, "binance")
    ex.load_markets()
    px = ex.fetch_ohlcv("BTC/USDT", "1s", limit=1)[-1][4]
    o = ex.create_order("BTC/USDT", "market", "sell", 0.01, params={"stopLossPrice": round(px * 0.5, 1)})
    got = ex.fetch_order(o["id"], "BTC/USDT")
    assert got["status"] == "open" and got["triggerPrice"] == round(px * 0.5, 1)
    assert ex.fetch_balance()["used"]["BTC"] == pytest.approx(0.01)


# --------------------------------------------------------------------------- okx algo orders
SYM = "BTC/USDT"
TRIGGER = {"trigger": True}
CONDITIONAL = {"trigger": True, "ordType": "conditional"}  # what stopLossPrice creates


@pytest.fixture
def okx_manual(sim_factory: Any) -> tuple[Any, ManualClock]:
    """okx on a ManualClock at the current time: the price path moves only when the test says.

    ccxt signs with the real time, so the 30 s timestamp window is off (the clock jumps)."""
    clock = ManualClock(start_ms=SYSTEM_CLOCK.time_ms())
    sim = sim_factory(exchanges=("okx",), clock=clock, check_timestamps=False,
                      balances={"USDT": 10_000.0, "BTC": 0.5})
    return sim, clock


def path_price(sim: Any, symbol: str, t_ms: int) -> float:
    """The simulator's traded price at ``t_ms``: the model price on the market's tick grid."""
    scale = sim.model.spec(symbol).price_scale
    return max(1, int(sim.model.price(symbol, t_ms) * scale + 0.5)) / scale


def next_move(sim: Any, symbol: str, start_ms: int, below: bool) -> tuple[int, float]:
    """The first whole second after ``start_ms`` whose price is below (above) the price at
    ``start_ms``, and that price: a stop there triggers exactly at that second, not before."""
    p0 = path_price(sim, symbol, start_ms)
    t = start_ms - start_ms % 1000
    for _ in range(3600):
        t += 1000
        p = path_price(sim, symbol, t)
        if (below and p < p0) or (not below and p > p0):
            return t, p
    raise AssertionError("the price path never moved")


def test_okx_stop_market_rests_as_an_algo_order_until_cancelled(sims: Any) -> None:
    ex = client(sims, "okx")
    ex.load_markets()
    px = ex.fetch_ohlcv(SYM, "1s", limit=1)[-1][4]
    stop = round(px * 0.5, 1)
    o = ex.create_order(SYM, "market", "sell", 0.01, params={"stopLossPrice": stop,
                                                            "clientOrderId": "slA1"})
    assert o["clientOrderId"] == "slA1" and o["info"]["algoId"] == o["id"]
    got = ex.fetch_order(o["id"], SYM, TRIGGER)
    assert (got["status"], got["type"], got["side"], got["amount"]) == ("open", "conditional", "sell", 0.01)
    assert got["stopLossPrice"] == stop and got["filled"] is None
    assert got["info"]["state"] == "live" and got["info"]["ordId"] == "" and got["info"]["slOrdPx"] == "-1"
    assert [r["id"] for r in ex.fetch_open_orders(SYM, params=CONDITIONAL)] == [o["id"]]
    assert ex.fetch_open_orders(SYM, params=TRIGGER) == []  # ordType defaults to "trigger"
    assert ex.fetch_open_orders(SYM) == []  # no regular order exists until it triggers
    assert ex.fetch_order(None, SYM, {**TRIGGER, "clientOrderId": "slA1"})["id"] == o["id"]
    with pytest.raises(ccxt.OrderNotFound):
        ex.fetch_order(None, SYM, {"clientOrderId": "slA1"})
    assert ex.fetch_balance()["used"]["BTC"] == pytest.approx(0.01)  # reserved like a stop order
    ex.cancel_order(o["id"], SYM, TRIGGER)
    got = ex.fetch_order(o["id"], SYM, TRIGGER)
    assert got["status"] == "canceled" and got["info"]["state"] == "canceled"
    assert ex.fetch_balance()["used"]["BTC"] == 0
    assert [r["id"] for r in ex.fetch_canceled_orders(SYM, params=CONDITIONAL)] == [o["id"]]
    with pytest.raises(ccxt.OrderNotFound):
        ex.cancel_order(o["id"], SYM, TRIGGER)
    with pytest.raises(ccxt.OrderNotFound):
        ex.fetch_order("2094566107385659999", SYM, TRIGGER)
    with pytest.raises(ccxt.OrderNotFound):
        ex.fetch_order(None, SYM, {**TRIGGER, "clientOrderId": "neverSent9"})
    # a stop-limit, cancelled by its client order id
    sl = ex.create_order(SYM, "limit", "sell", 0.01, round(px * 0.45, 1),
                         params={"stopLossPrice": stop, "clientOrderId": "slB2"})
    got = ex.fetch_order(sl["id"], SYM, TRIGGER)
    assert got["status"] == "open" and float(got["info"]["slOrdPx"]) == round(px * 0.45, 1)
    ex.cancel_order(None, SYM, {**TRIGGER, "clientOrderId": "slB2"})
    assert ex.fetch_order(sl["id"], SYM, TRIGGER)["status"] == "canceled"
    assert ex.fetch_balance()["used"]["BTC"] == 0
    # the engine held them as stop orders; neither ever became a regular order
    assert [(r["client_id"], r["type"], r["status"]) for r in sims.orders("okx")] == [
        ("slA1", "stop_market", "canceled"), ("slB2", "stop_limit", "canceled")]
    assert ex.fetch_closed_orders(SYM) == [] and ex.fetch_my_trades(SYM) == []


def test_okx_algo_orders_refused_the_okx_way(sims: Any) -> None:
    ex = client(sims, "okx")
    ex.load_markets()
    px = ex.fetch_ohlcv(SYM, "1s", limit=1)[-1][4]
    with pytest.raises(ccxt.InvalidOrder) as info:  # a sell stop above the price
        ex.create_order(SYM, "market", "sell", 0.01, params={"stopLossPrice": round(px * 1.5, 1)})
    assert "51280" in str(info.value)
    with pytest.raises(ccxt.InvalidOrder) as info:  # a buy stop below it
        ex.create_order(SYM, "market", "buy", 0.01, params={"stopLossPrice": round(px * 0.5, 1)})
    assert "51278" in str(info.value)
    with pytest.raises(ccxt.InsufficientFunds) as info:  # holds 0.5 BTC
        ex.create_order(SYM, "market", "sell", 1.0, params={"stopLossPrice": round(px * 0.5, 1)})
    assert "51008" in str(info.value)
    with pytest.raises(ccxt.BadRequest):  # take-profit legs are not simulated
        ex.create_order(SYM, "market", "sell", 0.01, params={"takeProfitPrice": round(px * 1.5, 1)})
    with pytest.raises(ccxt.BadRequest):  # nor a trigger order that waits for a rise to sell
        ex.create_order(SYM, "market", "sell", 0.01, params={"triggerPrice": round(px * 1.5, 1)})
    assert sims.orders("okx") == []


def test_okx_stop_market_triggers_and_its_order_fills(okx_manual: tuple[Any, ManualClock]) -> None:
    sim, clock = okx_manual
    ex = client(sim, "okx")
    ex.load_markets()
    start = sim.now_ms()
    when, stop = next_move(sim, SYM, start, below=True)
    before = ex.fetch_balance()["total"]
    o = ex.create_order(SYM, "market", "sell", 0.01, params={"stopLossPrice": stop,
                                                            "clientOrderId": "slC3"})
    assert ex.fetch_order(o["id"], SYM, TRIGGER)["status"] == "open"
    clock.set_ms(when)  # the path reaches the stop at this second
    got = ex.fetch_order(o["id"], SYM, TRIGGER)
    info = got["info"]
    assert info["state"] == "effective" and got["status"] == "closed"
    assert info["triggerTime"] == str(when) and info["actualSz"] == "0.01"
    spawned = info["ordId"]
    assert spawned and info["ordIdList"] == [spawned] and spawned != o["id"]
    reg = ex.fetch_order(spawned, SYM)
    assert (reg["status"], reg["filled"], reg["average"], reg["type"]) == ("closed", 0.01, stop, "market")
    assert reg["info"]["ordId"] == spawned and reg["info"]["algoId"] == o["id"]
    assert reg["info"]["algoClOrdId"] == "slC3" and reg["info"]["cTime"] == str(when)
    trades = ex.fetch_order_trades(spawned, SYM)
    assert [(t["order"], t["price"], t["amount"], t["timestamp"]) for t in trades] == [
        (spawned, stop, 0.01, when)]
    assert trades[0]["fee"] == {"currency": "USDT", "cost": pytest.approx(0.01 * stop * 0.001)}
    assert [t["order"] for t in ex.fetch_my_trades(SYM)] == [spawned]
    after = ex.fetch_balance()
    assert after["total"]["BTC"] == pytest.approx(before["BTC"] - 0.01)
    assert after["total"]["USDT"] == pytest.approx(before["USDT"] + 0.01 * stop * 0.999)
    assert after["used"]["BTC"] == 0
    assert [r["id"] for r in ex.fetch_closed_orders(SYM, params=CONDITIONAL)] == [o["id"]]
    assert ex.fetch_open_orders(SYM, params=CONDITIONAL) == []
    assert ex.fetch_order(None, SYM, {"clientOrderId": "slC3"})["info"]["ordId"] == spawned
    assert [r["info"]["ordId"] for r in ex.fetch_closed_orders(SYM)] == [spawned]
    assert ex.fetch_canceled_orders(SYM) == []
    with pytest.raises(ccxt.OrderNotFound):  # effective: nothing left to cancel
        ex.cancel_order(o["id"], SYM, TRIGGER)


def test_okx_triggered_stop_limit_rests_as_a_limit_order(okx_manual: tuple[Any, ManualClock]) -> None:
    sim, clock = okx_manual
    ex = client(sim, "okx")
    ex.load_markets()
    when, stop = next_move(sim, SYM, sim.now_ms(), below=True)
    limit = round(stop * 1.2, 1)  # a sell limit far above the price: it cannot fill at once
    o = ex.create_order(SYM, "limit", "sell", 0.01, limit, params={"stopLossPrice": stop})
    clock.set_ms(when)
    got = ex.fetch_order(o["id"], SYM, TRIGGER)
    # okx calls the algo order done ("effective", ccxt: closed, filled = amount) once it has
    # placed its order: whether that order fills is the regular order's business
    assert (got["status"], got["filled"], got["info"]["state"]) == ("closed", 0.01, "effective")
    spawned = got["info"]["ordId"]
    reg = ex.fetch_order(spawned, SYM)
    assert (reg["status"], reg["filled"], reg["price"], reg["type"]) == ("open", 0.0, limit, "limit")
    assert [r["info"]["ordId"] for r in ex.fetch_open_orders(SYM)] == [spawned]
    assert ex.fetch_balance()["used"]["BTC"] == pytest.approx(0.01)
    ex.cancel_order(spawned, SYM)
    assert ex.fetch_order(spawned, SYM)["status"] == "canceled"
    assert ex.fetch_order(o["id"], SYM, TRIGGER)["info"]["state"] == "effective"
    assert ex.fetch_balance()["used"]["BTC"] == 0
    assert [r["info"]["ordId"] for r in ex.fetch_canceled_orders(SYM)] == [spawned]
    assert ex.fetch_closed_orders(SYM) == []


def test_okx_trigger_order_through_async_ccxt(okx_manual: tuple[Any, ManualClock]) -> None:
    sim, clock = okx_manual

    async def main() -> None:
        ex = make_exchange("okx", kind="async", sim_url=sim.url("okx"), market_types=["spot"],
                           config=GOOD)
        try:
            await ex.load_markets()
            when, trigger = next_move(sim, SYM, sim.now_ms(), below=False)
            limit = round(trigger * 1.01, 1)  # a marketable buy limit once triggered
            before = (await ex.fetch_balance())["total"]
            o = await ex.create_order(SYM, "limit", "buy", 0.01, limit,
                                      params={"triggerPrice": trigger, "clientOrderId": "trgD4"})
            pending = await ex.fetch_open_orders(SYM, params=TRIGGER)
            assert [(r["id"], r["type"], r["triggerPrice"], r["price"]) for r in pending] == [
                (o["id"], "trigger", trigger, limit)]
            assert (await ex.fetch_balance())["used"]["USDT"] == pytest.approx(0.01 * limit)
            clock.set_ms(when)
            got = await ex.fetch_order(None, SYM, {**TRIGGER, "clientOrderId": "trgD4"})
            assert got["id"] == o["id"] and got["info"]["state"] == "effective"
            spawned = got["info"]["ordId"]
            reg = await ex.fetch_order(spawned, SYM)
            # filled at once as a taker, at the path's price (the trigger price)
            assert (reg["status"], reg["filled"], reg["average"]) == ("closed", 0.01, trigger)
            assert reg["info"]["source"] == "6" and float(reg["info"]["px"]) == limit
            trades = await ex.fetch_my_trades(SYM)
            assert [(t["order"], t["takerOrMaker"], t["timestamp"]) for t in trades] == [
                (spawned, "taker", when)]
            after = await ex.fetch_balance()
            assert after["total"]["BTC"] == pytest.approx(before["BTC"] + 0.01 * 0.999)
            assert after["total"]["USDT"] == pytest.approx(before["USDT"] - 0.01 * trigger)
            assert after["used"]["USDT"] == 0
            history = await ex.fetch_closed_orders(SYM, params=TRIGGER)
            assert [r["id"] for r in history] == [o["id"]]
        finally:
            await ex.close()

    asyncio.run(main())


# --------------------------------------------------------------------------- faults
@pytest.mark.parametrize(("exchange", "status", "error"), [
    ("binance", 429, ccxt.DDoSProtection),
    ("okx", 429, ccxt.RateLimitExceeded),
    ("binance", 503, ccxt.ExchangeNotAvailable),
    ("okx", 500, ccxt.ExchangeNotAvailable),
])
def test_injected_errors_hit_private_calls_before_they_execute(sims: Any, exchange: str, status: int,
                                                               error: type) -> None:
    ex = client(sims, exchange)
    ex.load_markets()
    sims.rest_errors(exchange, status=status, count=1)
    with pytest.raises(error):
        ex.create_order("BTC/USDT", "market", "buy", 0.01)
    assert sims.orders(exchange) == []


@pytest.mark.parametrize(("exchange", "mode", "error"), [
    ("binance", "delay", ccxt.RequestTimeout),
    ("okx", "delay", ccxt.RequestTimeout),
    ("binance", "reset", ccxt.NetworkError),
    ("okx", "reset", ccxt.NetworkError),
    ("binance", "500", ccxt.OperationFailed),
    ("okx", "500", ccxt.ExchangeNotAvailable),
])
def test_order_ack_fault_executes_then_fails_the_answer(sims: Any, exchange: str, mode: str,
                                                        error: type) -> None:
    ex = client(sims, exchange, timeout=800)
    ex.load_markets()
    sims.order_ack_fault(exchange, mode=mode, ms=2000)
    with pytest.raises(error):
        ex.create_order("BTC/USDT", "market", "buy", 0.01, params={"clientOrderId": "ackX1"})
    rows = sims.orders(exchange)
    assert [(r["client_id"], r["status"]) for r in rows] == [("ackX1", "filled")]
    # the only safe reaction: look it up by client id
    assert ex.fetch_order(None, "BTC/USDT", {"clientOrderId": "ackX1"})["status"] == "closed"
    assert sims.stats(exchange)["faults"]["order_ack_fault"]["remaining"] == 0


def test_control_api_shows_orders_and_balances(sims: Any) -> None:
    ex = client(sims, "okx")
    ex.create_order("BTC/USDT", "limit", "buy", 0.001, 30_000.0, params={"clientOrderId": "ctl1"})
    url = sims.url("okx")
    with urllib.request.urlopen(f"{url}/_sim/orders") as r:
        body = json.loads(r.read())
    assert [o["client_id"] for o in body["orders"]] == ["ctl1"]
    with urllib.request.urlopen(f"{url}/_sim/balances?key={DEFAULT_KEY.key}") as r:
        bal = json.loads(r.read())
    assert bal["USDT"] == {"free": pytest.approx(10_000 - 30.0), "locked": pytest.approx(30.0)}
    req = urllib.request.Request(f"{url}/_sim/faults/order_ack_fault", method="POST",
                                 data=json.dumps({"mode": "reset", "count": 2}).encode())
    with urllib.request.urlopen(req) as r:
        assert json.loads(r.read())["ok"] is True
    assert sims.stats("okx")["faults"]["order_ack_fault"] == {"mode": "reset", "remaining": 2,
                                                             "ms": 30000}


def test_btccxt_sim_takes_keys_and_balances_from_flags() -> None:
    import os
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-m", "btccxt_cli", "sim", "-e", "okx",
                          "--api-key", "flag-key:flag-secret:flag-pass", "--balance", "USDT=123",
                          "--balance", "btc=0.5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env={**os.environ})
    try:
        line = p.stdout.readline().split()
        assert line[0] == "okx", p.stderr.read() if not line else line
        ex = make_exchange("okx", sim_url=line[1], market_types=["spot"],
                           config={"apiKey": "flag-key", "secret": "flag-secret", "password": "flag-pass"})
        bal = ex.fetch_balance()
        assert bal["total"]["USDT"] == 123.0 and bal["total"]["BTC"] == 0.5
        ex.password = DEFAULT_KEY.passphrase
        ex.apiKey, ex.secret = DEFAULT_KEY.key, DEFAULT_KEY.secret
        with pytest.raises(ccxt.AuthenticationError):  # the flags replace the default key
            ex.fetch_balance()
    finally:
        p.terminate()
        p.communicate(timeout=10)
    assert p.returncode == 0
