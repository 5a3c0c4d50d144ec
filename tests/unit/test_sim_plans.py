"""``cross_plan``: the path leaves the planned price alone at every whole second (where the
matching engine looks) until the planned crossing, then crosses it. A plan that crossed
seconds early let fills in before tests were ready for them (test_orders_db_lock.py failed
in CI: 10 of 300 plans crossed early, at a whole second of the quiet window the 50 ms samples
missed, or at a price rounded back into the window's range)."""

from __future__ import annotations

import random

import pytest

from btccxt_cli.sim.accounts import Engine
from btccxt_cli.sim.market import MarketModel
from btccxt_cli.sim.plans import cross_plan


@pytest.mark.parametrize("symbol", ["BTC/USDT", "ETH/USDT"])
def test_the_path_crosses_the_planned_price_first_at_the_planned_second(symbol):
    model = MarketModel(1)
    spec = model.spec(symbol)
    eng = Engine(model, {symbol: spec}, [])
    rnd = random.Random(5)
    for _ in range(150):
        now = 1_796_534_000_000 + rnd.randrange(0, 10**8)
        plan = cross_plan(model, symbol, now, quiet_s=15.0)

        def crosses(t: int, plan=plan) -> bool:
            x = eng.price(symbol, t)
            return x <= plan.price if plan.side == "buy" else x >= plan.price

        assert plan.when_ms >= now + 15_000 and plan.when_ms % 1000 == 0
        early = [t for t in range((now // 1000 + 1) * 1000, plan.when_ms, 1000) if crosses(t)]
        assert not early, (now, plan, early)
        assert crosses(plan.when_ms), (now, plan)
        assert round(plan.price / spec.tick) * spec.tick == pytest.approx(plan.price)
