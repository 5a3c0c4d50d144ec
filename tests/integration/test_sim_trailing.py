"""Trailing stops in the simulator through unmodified ccxt: binance spot ``STOP_LOSS`` with
``trailingDelta``, okx ``move_order_stop`` (``callbackRatio``). On a ManualClock, second by
second, the stop is checked against the seeded price path: it follows the best price since
placement, never moves back, and the order sells at the first second the price is its trail
back from that best. Out-of-range trails are refused with the exchanges' own errors."""

from __future__ import annotations

from typing import Any

import ccxt
import pytest

from btccxt_cli.clock import SYSTEM_CLOCK, ManualClock
from btccxt_cli.exchange.factory import make_exchange
from btccxt_cli.sim.accounts import DEFAULT_KEY

pytestmark = pytest.mark.live

GOOD = {"apiKey": DEFAULT_KEY.key, "secret": DEFAULT_KEY.secret, "password": DEFAULT_KEY.passphrase}
SYMBOL = "BTC/USDT"
RATIO = 0.001  # 10 basis points: binance's smallest trail


def _start(sim_factory: Any, exchange: str) -> tuple[Any, Any, ManualClock]:
    now = SYSTEM_CLOCK.time_ms()
    clock = ManualClock(start_ms=now - now % 1000)  # whole seconds: where the engine looks
    sim = sim_factory(exchanges=(exchange,), clock=clock, check_timestamps=False,
                      balances={"USDT": 10_000.0, "BTC": 0.1})
    ex = make_exchange(exchange, sim_url=sim.url(exchange), config=GOOD)
    ex.load_markets()
    return sim, ex, clock


def _trailing_sell(ex: Any, exchange: str, percent: str) -> dict[str, Any]:
    params: dict[str, Any] = {"trailingPercent": percent}
    if exchange == "binance":
        params["stopLossOrTakeProfit"] = "stopLoss"
    return ex.create_order(SYMBOL, "market", "sell", 0.01, None, params)


@pytest.mark.parametrize("exchange", ["binance", "okx"])
def test_a_trailing_stop_follows_the_best_price_and_sells_when_the_price_comes_back(
        sim_factory: Any, exchange: str) -> None:
    sim, ex, clock = _start(sim_factory, exchange)
    engine = sim.sim.server(exchange).engine
    placed = clock.time_ms()
    _trailing_sell(ex, exchange, "0.1")
    (o,) = sim.orders(exchange)
    best = engine.price(SYMBOL, placed)
    assert o["trail"] == RATIO and o["stop_price"] == round(best * (1 - RATIO), 1)
    fill_at = None
    for _ in range(3600):  # the path's seconds, one by one, as the engine looks at them
        clock.advance(1.0)
        t = clock.time_ms()
        px = engine.price(SYMBOL, t)
        (o,) = sim.orders(exchange)
        if px <= round(best * (1 - RATIO), 1):
            fill_at = (t, px)
            break
        best = max(best, px)
        assert o["status"] == "new" and o["stop_price"] == round(best * (1 - RATIO), 1)
    assert fill_at is not None, "the path never came back 0.1 % within an hour"
    assert o["status"] == "filled" and o["updated_ms"] == fill_at[0]
    assert o["cost"] == pytest.approx(0.01 * fill_at[1])


def test_binance_refuses_a_trail_out_of_its_filter(sim_factory: Any) -> None:
    sim, ex, _ = _start(sim_factory, "binance")
    for percent in ("0.05", "25"):  # 5 and 2,500 basis points: the filter is 10 to 2,000
        with pytest.raises(ccxt.ExchangeError, match="TRAILING_DELTA"):
            _trailing_sell(ex, "binance", percent)
    assert sim.orders("binance") == []


def test_okx_refuses_a_callback_ratio_out_of_range(sim_factory: Any) -> None:
    sim, ex, _ = _start(sim_factory, "okx")
    with pytest.raises(ccxt.ExchangeError, match="callbackRatio"):
        _trailing_sell(ex, "okx", "0.05")  # 0.0005: below okx's 0.001
    assert sim.orders("okx") == []
