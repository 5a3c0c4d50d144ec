"""The live broker's position checks without sockets (``bt/positions.py``); the same checks
run through cerebro and the simulator in ``tests/integration/test_broker_ledger.py``."""

from __future__ import annotations

import logging

import pytest

from btccxt_cli.bt.positions import OrderLimits, Positions, amount_tolerance

BTC = {"base": "BTC", "quote": "USDT", "precision": {"amount": 1e-05}}
TICK_SIZE, DECIMAL_PLACES = 4, 2


def positions(held: float = 0.0) -> Positions:
    p = Positions()
    p.markets = {"BTC/USDT": BTC}
    p.precision_mode = TICK_SIZE
    p.held = {"BTC/USDT": (held, 60_000.0)}
    return p


def test_amount_tolerance_is_half_the_amount_step() -> None:
    assert amount_tolerance(BTC, TICK_SIZE) == pytest.approx(5e-06)
    assert amount_tolerance({"precision": {"amount": 1}}, DECIMAL_PLACES) == pytest.approx(0.05)
    assert amount_tolerance({}, None, 5e7) == pytest.approx(0.05)  # 1e-9 of the amount
    assert amount_tolerance(None, None) == 1e-9


def test_a_sell_of_more_than_the_bot_holds_is_refused() -> None:
    p = positions(0.01)
    assert p.refuse("BTC/USDT", "sell", 0.01, 60_000.0, OrderLimits(), []) is None
    why = p.refuse("BTC/USDT", "sell", 0.011, 60_000.0, OrderLimits(), [])
    assert why is not None and "more than this bot holds (0.01 BTC; 0.01 free to sell)" in why
    # an open sell already takes part of it
    why = p.refuse("BTC/USDT", "sell", 0.006, 60_000.0, OrderLimits(), [("BTC/USDT", "sell", 0.005)])
    assert why is not None and "0.005 of it in open sells" in why
    assert p.refuse("BTC/USDT", "sell", 0.005, 60_000.0, OrderLimits(), [("BTC/USDT", "sell", 0.005)]) is None


def test_caps_count_open_orders_on_the_orders_side_and_never_stop_a_reduction() -> None:
    limits = OrderLimits(max_position={"BTC/USDT": 0.015}, max_notional={"BTC/USDT": 1000.0})
    p = positions(0.0)
    assert p.refuse("BTC/USDT", "buy", 0.01, 60_000.0, OrderLimits(max_position={"BTC/USDT": 0.015}),
                    []) is None
    why = p.refuse("BTC/USDT", "buy", 0.01, 60_000.0, limits, [("BTC/USDT", "buy", 0.01)])
    assert why is not None and "max_position[BTC/USDT] = 0.015" in why and "open buys 0.01" in why
    # an open sell does not make room for a buy: it may never fill
    why = positions(0.01).refuse("BTC/USDT", "buy", 0.01, 60_000.0, limits,
                                 [("BTC/USDT", "sell", 0.01)])
    assert why is not None and "would reach 0.02" in why
    why = p.refuse("BTC/USDT", "buy", 0.012, 100_000.0, OrderLimits(max_notional={"BTC/USDT": 1000.0}), [])
    assert why is not None and "max_notional[BTC/USDT] = 1000" in why
    # a position above the cap (adopted holdings) may always be sold down
    assert positions(1.0).refuse("BTC/USDT", "sell", 0.5, 60_000.0, limits, []) is None
    assert positions(1.0).refuse("BTC/USDT", "buy", 0.001, 60_000.0, limits, []) is not None


def test_a_balance_below_the_bots_position_is_warned_once(caplog: pytest.LogCaptureFixture) -> None:
    p = positions(0.5)
    with caplog.at_level(logging.WARNING, logger="btccxt_cli.bt.positions"):
        p.reconcile({"BTC": (0.5, 0.0, 0.5)}, [])
        p.reconcile({"BTC": (0.3, 0.0, 0.3)}, [("BTC/USDT", "sell", 0.1)])  # 0.4 of it to keep
        p.reconcile({"BTC": (0.3, 0.0, 0.3)}, [])
        p.reconcile({"BTC": (0.2, 0.0, 0.2)}, [])
        p.reconcile({"BTC": (0.5, 0.0, 0.5)}, [])  # back: armed again
        p.reconcile({"BTC": (0.1, 0.0, 0.1)}, [])
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 2, warned
    assert warned[0].startswith("the account holds 0.3 BTC, less than the bot's position of 0.4")
