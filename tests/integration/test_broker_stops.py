"""Stop and stop-limit orders through CCXTBroker: binance (plain STOP_LOSS orders) and okx
(algo orders whose id changes to the order they place when they trigger).

The trigger is made deterministic by moving the simulated exchange's clock past the moment
its seeded price path crosses the stop (``btccxt_cli.sim.plans.cross_plan``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import backtrader as bt
import pytest

from btccxt_cli.cache.orders import OrderStore
from btccxt_cli.sim.plans import cross_plan
from tests.integration.test_broker import ADOPT, SYMBOL, Outcome, run

pytestmark = pytest.mark.live


def _stop_for(sim: Any) -> tuple[str, float, int]:
    """(side, stop price, trigger time): a sell stop the falling path reaches, or a buy stop
    the rising path reaches, untouched for the next seconds."""
    plan = cross_plan(sim.model, SYMBOL, sim.now_ms(), quiet_s=8.0)  # room for a slow CI
    return ("sell" if plan.side == "buy" else "buy"), plan.price, plan.when_ms


def _rows(db: Path) -> dict[str, Any]:
    store = OrderStore(db)
    try:
        return store.dump()
    finally:
        store.close()


@pytest.mark.parametrize("updates", ["poll", "websocket"])
@pytest.mark.parametrize("exchange", ["binance", "okx"])
@pytest.mark.parametrize("kind", ["stop", "stop_limit"])
def test_a_stop_rests_then_triggers_and_fills(sim_factory: Any, tmp_path: Path, exchange: str,
                                              kind: str, updates: str) -> None:
    sim = sim_factory(exchanges=(exchange,), balances={"USDT": 10_000.0, "BTC": 0.1})
    out = Outcome()
    plan: dict[str, Any] = {}

    def act(s: Any, n: int) -> None:
        if n == 1:
            side, stop, when = _stop_for(sim)
            plan.update(side=side, stop=stop, when=when)
            fn = s.buy if side == "buy" else s.sell
            if kind == "stop":
                s.orders["stop"] = fn(size=0.01, price=stop, exectype=bt.Order.Stop)
            else:  # a limit beyond the stop, so the triggered order is marketable
                limit = round(stop * (1.01 if side == "buy" else 0.99), 1)
                plan["limit"] = limit
                s.orders["stop"] = fn(size=0.01, price=stop, plimit=limit,
                                      exectype=bt.Order.StopLimit)
        o = s.orders.get("stop")
        if o is not None and "jumped" not in plan and "Accepted" in out.statuses(o.ref) and (
                updates == "poll" or s.broker.updates_via == "websocket"):
            plan["jumped"] = True
            plan["resting"] = [r["status"] for r in sim.orders(exchange)]
            gap = plan["when"] + 2000 - sim.now_ms()
            if gap > 0:
                sim.sim.clock_offset_ms += gap

    def done(s: Any) -> bool:
        o = s.orders.get("stop")
        return o is not None and any(n.ref == o.ref and n.status in ("Completed", "Rejected",
                                                                     "Canceled") for n in out.notes)

    db = tmp_path / "o.sqlite"
    run(sim, exchange, act, done, db=db, out=out, timeout=30.0,
        broker_kw={**ADOPT, "updates": updates})
    assert not out.timed_out, out.notes
    o = out.strategy.orders["stop"]
    assert out.statuses(o.ref) == ["Submitted", "Accepted", "Completed"], out.last(o.ref).reason
    last = out.last(o.ref)
    assert abs(last.size) == pytest.approx(0.01)
    # a stop sells at or below its stop, buys at or above it (the path may gap through it)
    if plan["side"] == "sell":
        assert last.price <= plan["stop"] + 1e-9
    else:
        assert last.price >= plan["stop"] - 1e-9
    if kind == "stop_limit":  # and never beyond its limit
        assert (last.price >= plan["limit"] - 1e-9) if plan["side"] == "sell" else \
            (last.price <= plan["limit"] + 1e-9)
    ex = sim.orders(exchange)
    assert len(ex) == 1 and ex[0]["status"] == "filled" and ex[0]["client_id"] == last.client_id
    assert plan["resting"] == ["new"]  # it rested untriggered until the clock moved
    dump = _rows(db)
    assert [(r["client_id"], r["status"], r["type"]) for r in dump["orders"]] == \
        [(last.client_id, "closed", "stop_market" if kind == "stop" else "stop_limit")]
    assert len(dump["fills"]) >= 1 and all(f["delivered"] for f in dump["fills"])
    assert not str(dump["orders"][0]["exchange_id"]).startswith("algo:")


@pytest.mark.parametrize("exchange", ["binance", "okx"])
def test_a_resting_stop_is_cancelled(sim_factory: Any, tmp_path: Path, exchange: str) -> None:
    sim = sim_factory(exchanges=(exchange,), balances={"USDT": 10_000.0, "BTC": 0.1})
    out = Outcome()

    def act(s: Any, n: int) -> None:
        if n == 1:  # far below the price: it will not trigger
            s.orders["stop"] = s.sell(size=0.01, price=round(s.data.close[0] * 0.5, 1),
                                      exectype=bt.Order.Stop)
        o = s.orders.get("stop")
        if o is not None and "Accepted" in out.statuses(o.ref) and "cancelled" not in s.orders:
            s.orders["cancelled"] = o
            s.cancel(o)

    def done(s: Any) -> bool:
        o = s.orders.get("stop")
        return o is not None and "Canceled" in out.statuses(o.ref)

    run(sim, exchange, act, done, db=tmp_path / "o.sqlite", out=out, broker_kw=ADOPT)
    assert not out.timed_out, out.notes
    o = out.strategy.orders["stop"]
    assert out.statuses(o.ref) == ["Submitted", "Accepted", "Canceled"]
    ex = sim.orders(exchange)
    assert len(ex) == 1 and ex[0]["status"] == "canceled"
    bal = sim.balances(exchange)
    assert bal["BTC"]["locked"] == 0.0  # the reserved coins are free again
