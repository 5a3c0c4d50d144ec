"""Perpetual swaps in the simulator through unmodified ccxt (its real signing and parsing):
markets with ccxt's default types, leverage, long and short positions, reduce-only closes, a
flip, hedged (long/short) mode, funding rates and payments, and liquidation.

Every test runs on a ManualClock: the price path, funding times and liquidation checks move
only when the test advances the clock (ccxt signs with the real time, so the timestamp windows
are off)."""

from __future__ import annotations

from typing import Any

import ccxt
import pytest

from btccxt_cli.clock import SYSTEM_CLOCK, ManualClock
from btccxt_cli.exchange.factory import make_exchange
from btccxt_cli.sim.accounts import DEFAULT_KEY
from tests.integration.simtools import get_json
from tests.integration.test_sim_private_ws import cid, ready, run, until_order

pytestmark = pytest.mark.live

GOOD = {"apiKey": DEFAULT_KEY.key, "secret": DEFAULT_KEY.secret, "password": DEFAULT_KEY.passphrase}
SWAP = "BTC/USDT:USDT"
START_USDT = 10_000.0
FUNDING_S = 60  # a funding settlement every simulated minute


def start_sim(sim_factory: Any, exchange: str, funding_s: float = 8 * 3600) -> tuple[Any, Any, ManualClock]:
    """``exchange`` on a ManualClock one second after a funding time (so no settlement falls in
    a test that does not wait for one) and a signed ccxt client with its markets loaded
    (ccxt's default market types)."""
    now = SYSTEM_CLOCK.time_ms()
    period = int(funding_s * 1000)
    clock = ManualClock(start_ms=now - now % period + 1000)
    sim = sim_factory(exchanges=(exchange,), clock=clock, check_timestamps=False,
                      balances={"USDT": START_USDT}, funding_interval_s=funding_s)
    ex = make_exchange(exchange, sim_url=sim.url(exchange), config=GOOD)
    ex.load_markets()
    return sim, ex, clock


@pytest.fixture
def okx(sim_factory: Any) -> tuple[Any, Any, ManualClock]:
    return start_sim(sim_factory, "okx")


def engine_price(sim: Any, exchange: str, t_ms: int) -> float:
    """The traded (and mark) price at ``t_ms``, read from the simulator's engine."""
    return sim.sim.server(exchange).engine.price(SWAP, t_ms)


def usdt(ex: Any) -> float:
    return float(ex.fetch_balance()["USDT"]["total"])


def one_position(ex: Any) -> dict[str, Any]:
    positions = ex.fetch_positions([SWAP])
    assert len(positions) == 1, positions
    return positions[0]


def test_okx_markets_with_default_types_include_the_swaps(okx: Any) -> None:
    sim, ex, _clock = okx
    swap = ex.market(SWAP)
    assert swap["swap"] and swap["linear"] and swap["contractSize"] == 0.01
    assert set(ex.markets) == set(sim.symbols("okx"))


def test_okx_long_then_reduce_only_close_books_the_pnl(okx: Any) -> None:
    sim, ex, clock = okx
    ex.set_leverage(5, SWAP, {"mgnMode": "isolated"})
    buy = ex.create_order(SWAP, "market", "buy", 2, params={"tdMode": "isolated"})
    entry = engine_price(sim, "okx", clock.time_ms())
    pos = one_position(ex)
    assert (pos["side"], pos["contracts"], pos["marginMode"], pos["leverage"]) == ("long", 2, "isolated", 5)
    assert pos["entryPrice"] == entry
    notional = 2 * 0.01 * entry
    assert pos["initialMargin"] == pytest.approx(notional / 5)
    assert pos["liquidationPrice"] == pytest.approx(
        (entry * 0.02 - notional / 5) / (0.02 * (1 - 0.004)), rel=1e-6)
    assert ex.fetch_balance()["USDT"]["used"] == pytest.approx(notional / 5)
    clock.advance(30)
    exit_px = engine_price(sim, "okx", clock.time_ms())
    assert one_position(ex)["unrealizedPnl"] == pytest.approx(0.02 * (exit_px - entry), abs=1e-6)
    close = ex.create_order(SWAP, "market", "sell", 2, params={"tdMode": "isolated", "reduceOnly": True})
    assert ex.fetch_positions([SWAP]) == []
    fees = 0.001 * 0.02 * (entry + exit_px)  # taker both ways, in USDT
    assert usdt(ex) == pytest.approx(START_USDT + 0.02 * (exit_px - entry) - fees, abs=1e-6)
    assert ex.fetch_balance()["USDT"]["used"] == 0
    got = ex.fetch_order(close["id"], SWAP)
    assert got["reduceOnly"] is True and got["status"] == "closed" and got["filled"] == 2
    assert float(got["info"]["pnl"]) == pytest.approx(0.02 * (exit_px - entry), abs=1e-6)
    assert ex.fetch_order(buy["id"], SWAP)["info"]["lever"] == "5"


def test_okx_short_flip_and_reduce_only_refusals(okx: Any) -> None:
    sim, ex, clock = okx
    with pytest.raises(ccxt.ExchangeError, match="51169"):  # nothing to reduce
        ex.create_order(SWAP, "market", "buy", 1, params={"reduceOnly": True})
    ex.create_order(SWAP, "market", "sell", 3)  # cross, net mode: a short of 3 contracts
    short = one_position(ex)
    assert (short["side"], short["contracts"], short["marginMode"]) == ("short", 3, "cross")
    with pytest.raises(ccxt.ExchangeError, match="51169"):  # a sell would add to the short
        ex.create_order(SWAP, "market", "sell", 1, params={"reduceOnly": True})
    clock.advance(5)
    flip_px = engine_price(sim, "okx", clock.time_ms())
    ex.create_order(SWAP, "market", "buy", 5)  # closes 3, opens a long of 2
    long = one_position(ex)
    assert (long["side"], long["contracts"], long["entryPrice"]) == ("long", 2, flip_px)
    assert long["id"] != short["id"]
    # the simulator's own view, in process and over the control API: 2 contracts of 0.01 BTC
    (mine,) = sim.positions("okx", DEFAULT_KEY.key)
    assert (mine["qty"], mine["entry"], mine["mode"]) == (pytest.approx(0.02), flip_px, "cross")
    shown = get_json(sim.url("okx") + "/_sim/positions")["positions"]
    assert [(p["symbol"], p["qty"]) for p in shown] == [(SWAP, pytest.approx(0.02))]
    # a reduce-only order larger than the position fills only up to it
    ex.create_order(SWAP, "market", "sell", 4, params={"reduceOnly": True})
    assert ex.fetch_positions([SWAP]) == []
    trades = ex.fetch_my_trades(SWAP)
    assert [t["amount"] for t in trades] == [3, 5, 2]


def test_okx_hedged_mode_holds_long_and_short_and_settings_wait_for_flat(okx: Any) -> None:
    _sim, ex, _clock = okx
    ex.set_position_mode(True)
    assert ex.fetch_position_mode()["hedged"] is True
    ex.create_order(SWAP, "market", "buy", 1, params={"posSide": "long"})
    ex.create_order(SWAP, "market", "sell", 2, params={"posSide": "short"})
    sides = {p["side"]: p["contracts"] for p in ex.fetch_positions([SWAP])}
    assert sides == {"long": 1, "short": 2}
    with pytest.raises(ccxt.ExchangeError, match="59000"):
        ex.set_position_mode(False)
    ex.create_order(SWAP, "market", "sell", 1, params={"posSide": "long"})  # closes the long
    ex.create_order(SWAP, "market", "buy", 2, params={"posSide": "short"})  # closes the short
    assert ex.fetch_positions([SWAP]) == []
    ex.set_position_mode(False)
    assert ex.fetch_position_mode()["hedged"] is False


def test_okx_funding_rate_history_and_a_payment(sim_factory: Any) -> None:
    sim, ex, clock = start_sim(sim_factory, "okx", funding_s=FUNDING_S)
    eng = sim.sim.server("okx").engine
    rate = ex.fetch_funding_rate(SWAP)
    assert rate["fundingTimestamp"] == clock.time_ms() - 1000 + FUNDING_S * 1000
    assert int(rate["info"]["nextFundingTime"]) - rate["fundingTimestamp"] == FUNDING_S * 1000
    history = ex.fetch_funding_rate_history(SWAP, limit=5)
    assert len(history) == 5
    for h in history:
        assert h["timestamp"] % (FUNDING_S * 1000) == 0
        assert h["fundingRate"] == pytest.approx(eng.derivs.funding_rate(SWAP, h["timestamp"]))
    ex.set_leverage(10, SWAP)
    ex.create_order(SWAP, "market", "buy", 10)  # a long of 0.1 BTC
    before = usdt(ex)
    clock.advance(FUNDING_S - 0.5)  # one settlement passes
    after = usdt(ex)
    paid = ex.fetch_funding_history(SWAP)
    assert len(paid) == 1
    t = paid[0]["timestamp"]
    expected = -0.1 * engine_price(sim, "okx", t) * eng.derivs.funding_rate(SWAP, t)
    assert paid[0]["amount"] == pytest.approx(expected, abs=1e-6)
    assert after - before == pytest.approx(expected, abs=1e-6)
    assert float(one_position(ex)["info"]["fundingFee"]) == pytest.approx(expected, abs=1e-6)


def test_okx_isolated_position_is_liquidated_when_margin_runs_out(okx: Any) -> None:
    sim, ex, clock = okx
    ex.set_leverage(100, SWAP, {"mgnMode": "isolated"})
    ex.create_order(SWAP, "market", "buy", 10, params={"tdMode": "isolated"})
    pos = one_position(ex)
    liq, margin = pos["liquidationPrice"], pos["initialMargin"]
    assert pos["entryPrice"] > liq > pos["entryPrice"] * 0.98
    start = clock.time_ms()
    t = start - start % 1000 + 1000
    while engine_price(sim, "okx", t) > liq:  # the first second the path is at or below it
        t += 1000
        assert t - start < 7 * 86_400_000, "the price path never reached the liquidation price"
    clock.advance((t - 1000 - clock.time_ms()) / 1000)  # one second before: still open
    assert one_position(ex)["contracts"] == 10
    clock.advance(1)
    assert ex.fetch_positions([SWAP]) == []
    trades = ex.fetch_my_trades(SWAP)
    assert trades[-1]["side"] == "sell" and trades[-1]["amount"] == 10
    assert trades[-1]["info"]["clOrdId"].startswith("autoclose-")
    fee = 0.001 * 0.1 * pos["entryPrice"]
    assert usdt(ex) >= START_USDT - margin - fee - 1e-6  # an isolated position loses its margin at most
    assert usdt(ex) < START_USDT - 0.5 * margin


def _first_fall(sim: Any, clock: ManualClock, below: float) -> int:
    """Seconds from now to the first whole second the path is below ``below``."""
    now = clock.time_ms()
    t = now - now % 1000 + 1000
    while engine_price(sim, "okx", t) >= below:
        t += 1000
        assert t - now < 86_400_000, "the price path never fell that far"
    return (t - now + 999) // 1000


def test_okx_swap_stop_loss_algo_order_in_contracts_closes_the_long(okx: Any) -> None:
    """A reduce-only ``conditional`` algo order on the swap (ccxt's ``stopLossPrice``): sized
    in contracts, listed with ``instType`` SWAP, resting until the path falls to it, then the
    market order okx places closes the long."""
    sim, ex, clock = okx
    ex.set_leverage(5, SWAP, {"mgnMode": "isolated"})
    ex.create_order(SWAP, "market", "buy", 2, params={"marginMode": "isolated"})
    stop = round(engine_price(sim, "okx", clock.time_ms()) * 0.999, 1)
    algo = ex.create_order(SWAP, "market", "sell", 2, None, {
        "stopLossPrice": stop, "marginMode": "isolated", "reduceOnly": True,
        "clientOrderId": "swStop1"})
    got = ex.fetch_order(algo["id"], SWAP, {"trigger": True})
    info = got["info"]
    assert (got["status"], got["amount"], info["sz"], info["instType"]) == ("open", 2, "2", "SWAP")
    assert (info["tdMode"], info["reduceOnly"], info["lever"], info["slTriggerPx"]) == \
        ("isolated", "true", "5", str(stop))
    pending = ex.fetch_open_orders(SWAP, params={"trigger": True, "ordType": "conditional"})
    assert [o["id"] for o in pending] == [algo["id"]]
    assert ex.fetch_open_orders(params={"trigger": True, "ordType": "conditional",
                                        "instType": "SPOT"}) == []
    clock.advance(_first_fall(sim, clock, stop) + 1)
    info = ex.fetch_order(algo["id"], SWAP, {"trigger": True})["info"]
    assert (info["state"], info["actualSz"]) == ("effective", "2")
    placed = ex.fetch_order(info["ordId"], SWAP)
    assert (placed["status"], placed["filled"], placed["reduceOnly"]) == ("closed", 2, True)
    assert placed["average"] <= stop and placed["info"]["algoId"] == algo["id"]
    assert ex.fetch_positions([SWAP]) == []


def test_okx_swap_reduce_only_stop_with_nothing_left_to_reduce_fails_at_its_trigger(
        okx: Any) -> None:
    sim, ex, clock = okx
    ex.create_order(SWAP, "market", "buy", 2, params={"marginMode": "cross"})
    stop = round(engine_price(sim, "okx", clock.time_ms()) * 0.999, 1)
    algo = ex.create_order(SWAP, "market", "sell", 2, None, {
        "stopLossPrice": stop, "marginMode": "cross", "reduceOnly": True})
    ex.create_order(SWAP, "market", "sell", 2, params={"marginMode": "cross", "reduceOnly": True})
    clock.advance(_first_fall(sim, clock, stop) + 1)
    info = ex.fetch_order(algo["id"], SWAP, {"trigger": True})["info"]
    assert (info["state"], info["failCode"], info["ordId"]) == ("order_failed", "51169", "")
    assert ex.fetch_positions([SWAP]) == []  # no short opened


def test_okx_swap_algo_order_sizes_are_whole_contracts(okx: Any) -> None:
    _sim, ex, _clock = okx
    with pytest.raises(ccxt.ExchangeError, match="51121"):
        ex.private_post_trade_order_algo({"instId": "BTC-USDT-SWAP", "tdMode": "cross",
                                          "side": "sell", "ordType": "conditional", "sz": "0.005",
                                          "slTriggerPx": "1000", "slOrdPx": "-1"})


def test_okx_private_stream_pushes_swap_orders_in_contracts(okx: Any) -> None:
    """ccxt.pro's watch_orders (okx ``orders`` channel, instType ANY) sees a swap order as REST
    reports it: contracts, not base units, and reduce-only."""
    sim, _ex, _clock = okx

    async def main() -> None:
        pro = make_exchange("okx", kind="pro", sim_url=sim.url("okx"), config=GOOD)
        try:
            await ready(pro)
            await pro.create_order(SWAP, "market", "buy", 3, params={"clientOrderId": "swOpen1"})
            opened = await until_order(pro, cid("swOpen1", "closed"))
            assert (opened["symbol"], opened["amount"], opened["filled"]) == (SWAP, 3, 3)
            assert opened["info"]["instType"] == "SWAP" and opened["reduceOnly"] is False
            await pro.create_order(SWAP, "market", "sell", 3,
                                   params={"clientOrderId": "swClose1", "reduceOnly": True})
            closed = await until_order(pro, cid("swClose1", "closed"))
            assert closed["reduceOnly"] is True and closed["filled"] == 3
            assert float(closed["info"]["pnl"]) == pytest.approx(
                float((await pro.fetch_order(closed["id"], SWAP))["info"]["pnl"]))
        finally:
            await pro.close()

    run(main())


def test_btccxt_sim_takes_the_funding_interval_from_a_flag() -> None:
    import os
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-m", "btccxt_cli", "sim", "-e", "okx",
                          "--funding-interval", "120"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env={**os.environ})
    try:
        line = p.stdout.readline().split() if p.stdout else []
        assert line and line[0] == "okx", p.stderr.read() if p.stderr else line
        ex = make_exchange("okx", sim_url=line[1])
        rate = ex.fetch_funding_rate(SWAP)
        assert int(rate["info"]["nextFundingTime"]) - rate["fundingTimestamp"] == 120_000
    finally:
        p.terminate()
        p.communicate(timeout=10)
    assert p.returncode == 0
