"""Binance USD-M perpetuals (``fapi``) in the simulator through unmodified ccxt: markets with
ccxt's default types, klines, leverage and margin type, a long closed reduce-only, a short
flipped to a long, funding rates and a payment, liquidation. ManualClock as in
``test_sim_swaps.py`` (whose helpers these tests share)."""

from __future__ import annotations

import asyncio
from typing import Any

import ccxt
import pytest

from btccxt_cli.clock import ManualClock
from btccxt_cli.exchange.factory import make_exchange
from tests.integration.test_sim_private_ws import cid, run, until_order
from tests.integration.test_sim_swaps import (
    FUNDING_S,
    GOOD,
    START_USDT,
    SWAP,
    engine_price,
    one_position,
    start_sim,
)

pytestmark = pytest.mark.live

EX = "binance"


@pytest.fixture
def binance(sim_factory: Any) -> tuple[Any, Any, ManualClock]:
    return start_sim(sim_factory, EX)


def wallet(ex: Any) -> float:
    """The USD-M wallet balance (ccxt's ``total`` is the margin balance: it has the open P&L)."""
    return float(ex.fetch_balance({"type": "future"})["info"]["totalWalletBalance"])


def test_binance_markets_with_default_types_include_the_perpetuals(binance: Any) -> None:
    sim, ex, clock = binance
    assert set(ex.markets) == set(sim.symbols(EX))
    swap = ex.market(SWAP)
    assert swap["swap"] and swap["linear"] and swap["id"] == "BTCUSDT" and swap["contractSize"] == 1
    assert ex.market("BTC/USDT")["id"] == "BTCUSDT"  # the same id, its own market
    cut = clock.time_ms() - clock.time_ms() % 60_000
    bars = ex.fetch_ohlcv(SWAP, "1m", since=cut - 10 * 60_000, limit=10)
    assert [tuple(b) for b in bars] == sim.truth(EX, SWAP, "1m", cut - 10 * 60_000, cut)


def test_binance_long_then_reduce_only_close_books_the_pnl(binance: Any) -> None:
    sim, ex, clock = binance
    ex.set_leverage(5, SWAP)
    ex.set_margin_mode("isolated", SWAP)
    with pytest.raises(ccxt.ExchangeError, match="-4046"):  # already isolated
        ex.set_margin_mode("isolated", SWAP)
    ex.create_order(SWAP, "market", "buy", 0.02)
    entry = engine_price(sim, EX, clock.time_ms())
    pos = one_position(ex)
    assert (pos["side"], pos["contracts"], pos["marginMode"]) == ("long", 0.02, "isolated")
    assert pos["entryPrice"] == entry and pos["initialMargin"] == pytest.approx(0.02 * entry / 5)
    with pytest.raises(ccxt.ExchangeError, match="-4048"):  # not with a position open
        ex.set_margin_mode("cross", SWAP)
    clock.advance(30)
    exit_px = engine_price(sim, EX, clock.time_ms())
    close = ex.create_order(SWAP, "market", "sell", 0.02, params={"reduceOnly": True})
    assert ex.fetch_positions([SWAP]) == []
    fees = 0.001 * 0.02 * (entry + exit_px)
    assert wallet(ex) == pytest.approx(START_USDT + 0.02 * (exit_px - entry) - fees, abs=1e-6)
    got = ex.fetch_order(close["id"], SWAP)
    assert got["reduceOnly"] is True and got["status"] == "closed"
    trade = ex.fetch_my_trades(SWAP)[-1]
    assert float(trade["info"]["realizedPnl"]) == pytest.approx(0.02 * (exit_px - entry), abs=1e-6)


def test_binance_short_flip_and_reduce_only_refusal(binance: Any) -> None:
    sim, ex, clock = binance
    with pytest.raises(ccxt.ExchangeError, match="-2022"):
        ex.create_order(SWAP, "market", "buy", 0.01, params={"reduceOnly": True})
    ex.create_order(SWAP, "market", "sell", 0.03)
    short = one_position(ex)
    assert (short["side"], short["contracts"], short["marginMode"]) == ("short", 0.03, "cross")
    clock.advance(5)
    flip_px = engine_price(sim, EX, clock.time_ms())
    ex.create_order(SWAP, "market", "buy", 0.05)
    long = one_position(ex)
    assert (long["side"], long["contracts"], long["entryPrice"]) == ("long", 0.02, flip_px)
    with pytest.raises(ccxt.ExchangeError, match="-2019"):  # 20x of far more than the wallet
        ex.create_order(SWAP, "market", "buy", 100)


def test_binance_funding_rates_and_a_payment(sim_factory: Any) -> None:
    sim, ex, clock = start_sim(sim_factory, EX, funding_s=FUNDING_S)
    eng = sim.sim.server(EX).engine
    rate = ex.fetch_funding_rate(SWAP)
    assert rate["fundingTimestamp"] == clock.time_ms() - 1000 + FUNDING_S * 1000
    assert rate["markPrice"] == engine_price(sim, EX, clock.time_ms())
    history = ex.fetch_funding_rate_history(SWAP, limit=5)
    assert [h["fundingRate"] for h in history] == [
        eng.derivs.funding_rate(SWAP, h["timestamp"]) for h in history]
    ex.create_order(SWAP, "market", "sell", 0.1)  # a short
    before = wallet(ex)
    clock.advance(FUNDING_S - 0.5)
    paid = ex.fetch_funding_history(SWAP)
    assert len(paid) == 1
    t = paid[0]["timestamp"]
    expected = 0.1 * engine_price(sim, EX, t) * eng.derivs.funding_rate(SWAP, t)
    assert paid[0]["amount"] == pytest.approx(expected, abs=1e-6)
    assert wallet(ex) - before == pytest.approx(expected, abs=1e-6)


def test_binance_isolated_position_is_liquidated_when_margin_runs_out(binance: Any) -> None:
    sim, ex, clock = binance
    ex.set_margin_mode("isolated", SWAP)
    ex.set_leverage(100, SWAP)
    ex.create_order(SWAP, "market", "sell", 0.1)  # a short: liquidated when the price rises
    pos = one_position(ex)
    liq, margin = pos["liquidationPrice"], pos["initialMargin"]
    assert pos["entryPrice"] < liq < pos["entryPrice"] * 1.02
    start = clock.time_ms()
    t = start - start % 1000 + 1000
    while engine_price(sim, EX, t) < liq:
        t += 1000
        assert t - start < 7 * 86_400_000, "the price path never reached the liquidation price"
    clock.advance((t - 1000 - clock.time_ms()) / 1000)
    assert one_position(ex)["contracts"] == 0.1
    clock.advance(1)
    assert ex.fetch_positions([SWAP]) == []
    order = ex.fetch_orders(SWAP)[-1]
    assert order["clientOrderId"].startswith("autoclose-") and order["side"] == "buy"
    fee = 0.001 * 0.1 * pos["entryPrice"]
    assert START_USDT - margin - fee - 1e-6 <= wallet(ex) < START_USDT - 0.5 * margin


def test_binance_usdm_user_data_stream_pushes_orders_and_the_position(binance: Any) -> None:
    """ccxt.pro's linear watch_orders (listen key, ``/private/ws``) sees a perpetual order open
    and close as REST reports it, with the reduce-only flag; the spot stream gets none of it."""
    sim, _ex, _clock = binance

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
            await pro.create_order(SWAP, "market", "buy", 0.02, params={"clientOrderId": "umOpen1"})
            opened = await until_order(pro, cid("umOpen1", "closed"))
            assert (opened["symbol"], opened["amount"], opened["filled"]) == (SWAP, 0.02, 0.02)
            await pro.create_order(SWAP, "market", "sell", 0.02,
                                   params={"clientOrderId": "umClose1", "reduceOnly": True})
            closed = await until_order(pro, cid("umClose1", "closed"))
            assert closed["reduceOnly"] is True
            rest = await pro.fetch_my_trades(SWAP)
            assert float(closed["info"]["rp"]) == pytest.approx(float(rest[-1]["info"]["realizedPnl"]))
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
        finally:
            await pro.close()

    run(main())
