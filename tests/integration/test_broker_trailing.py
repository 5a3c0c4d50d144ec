"""Trailing stops (``Order.StopTrail`` with ``trailpercent``) through CCXTBroker: the exchange
trails them. binance spot: a ``STOP_LOSS`` with ``trailingDelta``; okx spot and swaps: a
``move_order_stop`` algo order, whose id changes to the market order it places.

The trigger is made certain by moving the simulated exchange's clock past a second by which
the seeded price path has come back the trail from its best (``sim.plans.trail_plan``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import backtrader as bt
import pytest

from btccxt_cli.sim.plans import trail_plan
from tests.integration.test_broker import ADOPT, SYMBOL, Outcome, ended, run
from tests.integration.test_broker_stops import _rows
from tests.integration.test_broker_swaps import (
    SWAP,
    _jump,
    _run_3x,
    client,
    done_ref,
    exchange_size,
    swap_sim,
)

pytestmark = pytest.mark.live


def _trail(s: Any, sim: Any, plan: dict[str, Any], symbol: str, size: float) -> None:
    """A sell trailing stop with a trail the path keeps for 8 s, then comes back by."""
    tp = trail_plan(sim.model, symbol, sim.now_ms(), "sell", quiet_s=8.0)  # room for a slow CI
    plan.update(ratio=tp.ratio, when=tp.when_ms, peak=tp.peak)
    s.orders["trail"] = s.sell(size=size, exectype=bt.Order.StopTrail, trailpercent=tp.ratio)


def _jump_when_resting(s: Any, sim: Any, plan: dict[str, Any], out: Outcome, exchange: str) -> None:
    """Once the exchange has the stop: note what rests, then move the clock past the trigger."""
    st = s.orders.get("trail")
    if st is None or "jumped" in plan or "Accepted" not in out.statuses(st.ref):
        return
    plan["resting"] = [(r["type"], r["status"], r["trail"]) for r in sim.orders(exchange)]
    _jump(sim, plan)


@pytest.mark.parametrize("exchange", ["binance", "okx"])
def test_a_trailing_stop_rests_then_triggers_when_the_price_comes_back_its_trail(
        sim_factory: Any, tmp_path: Path, exchange: str) -> None:
    sim = sim_factory(exchanges=(exchange,), balances={"USDT": 10_000.0, "BTC": 0.1},
                      check_timestamps=False)  # the clock jumps ahead of the signed requests
    out = Outcome()
    plan: dict[str, Any] = {}

    def act(s: Any, n: int) -> None:
        if n == 1:
            _trail(s, sim, plan, SYMBOL, 0.01)
        _jump_when_resting(s, sim, plan, out, exchange)

    db = tmp_path / "o.sqlite"
    run(sim, exchange, act, ended(out, "trail"), db=db, out=out, timeout=30.0, broker_kw=ADOPT)
    assert not out.timed_out, out.notes
    st = out.strategy.orders["trail"]
    assert out.statuses(st.ref) == ["Submitted", "Accepted", "Completed"], out.last(st.ref).reason
    last = out.last(st.ref)
    assert last.size == pytest.approx(-0.01)
    # it sold only once the price had come back its trail from a price the path reached
    # (the stop is on the tick grid: half a tick either way)
    assert last.price <= plan["peak"] * (1 - plan["ratio"]) + 0.05
    assert plan["resting"] == [("stop_market", "new", plan["ratio"])]  # trailing, untriggered
    (ex,) = sim.orders(exchange)
    assert ex["status"] == "filled" and ex["client_id"] == last.client_id
    (row,) = _rows(db)["orders"]
    assert (row["type"], row["status"], row["trail"]) == ("trailing_stop", "closed", plan["ratio"])
    assert not str(row["exchange_id"]).startswith("algo:")  # okx: the order it placed


def test_a_trailing_stop_on_an_okx_swap_closes_the_long_it_guards(sim_factory: Any,
                                                                  tmp_path: Path) -> None:
    sim = swap_sim(sim_factory, "okx", check_timestamps=False)
    out = Outcome()
    plan: dict[str, Any] = {}

    def act(s: Any, n: int) -> None:
        if "open" not in s.orders:
            s.orders["open"] = s.buy(size=0.03)
        elif done_ref(out, "open") and "trail" not in s.orders:
            _trail(s, sim, plan, SWAP, 0.03)
        _jump_when_resting(s, sim, plan, out, "okx")

    db = tmp_path / "o.sqlite"
    _run_3x(sim, "okx", act, ended(out, "trail"), db, out)
    assert not out.timed_out, out.notes
    s = out.strategy
    st = s.orders["trail"]
    assert out.statuses(st.ref) == ["Submitted", "Accepted", "Completed"], out.last(st.ref).reason
    last = out.last(st.ref)
    assert last.size == pytest.approx(-0.03)  # in base units: 3 contracts of 0.01 BTC
    assert last.price <= plan["peak"] * (1 - plan["ratio"]) + 0.05
    assert out.broker.getposition(s.data).size == pytest.approx(0.0)
    assert exchange_size(client(sim, "okx")) == 0.0
    guard = {o["client_id"]: o for o in sim.orders("okx")}[last.client_id]
    assert guard["status"] == "filled" and guard["reduce_only"] is True  # it only closes


def test_trailing_stops_the_exchange_cannot_trail_are_refused_unsent(sim_factory: Any,
                                                                     tmp_path: Path) -> None:
    sim = sim_factory(exchanges=("binance",), balances={"USDT": 10_000.0, "BTC": 0.1})
    out = Outcome()
    tries = {
        "amount": {"trailamount": 100.0},
        "price": {"trailpercent": 0.01, "price": 50_000.0},
        "bips": {"trailpercent": 0.00125},  # 12.5 basis points
        "none": {},
        "limit": {"trailpercent": 0.01, "exectype": bt.Order.StopTrailLimit, "plimit": 40_000.0},
    }

    def act(s: Any, n: int) -> None:
        if n == 1:
            for key, kw in tries.items():
                s.orders[key] = s.sell(size=0.01, **{"exectype": bt.Order.StopTrail, **kw})

    def done(s: Any) -> bool:
        return len(s.orders) == len(tries) and all(
            "Rejected" in out.statuses(o.ref) for o in s.orders.values())

    run(sim, "binance", act, done, db=tmp_path / "o.sqlite", out=out, broker_kw=ADOPT)
    assert not out.timed_out, out.notes
    reason = {k: out.last(o.ref).reason for k, o in out.strategy.orders.items()}
    assert "use trailpercent=" in reason["amount"]
    assert "leave price= out" in reason["price"]
    assert "whole basis points" in reason["bips"]
    assert "trailpercent= between 0 and 1" in reason["none"]
    assert "not supported" in reason["limit"]
    assert sim.orders("binance") == []


def test_a_trailing_stop_on_a_binance_swap_is_refused_unsent(sim_factory: Any, tmp_path: Path) -> None:
    sim = swap_sim(sim_factory, "binance")
    out = Outcome()

    def act(s: Any, n: int) -> None:
        if n == 1:
            s.orders["trail"] = s.sell(size=0.01, exectype=bt.Order.StopTrail, trailpercent=0.01)

    _run_3x(sim, "binance", act, ended(out, "trail"), tmp_path / "o.sqlite", out)
    assert not out.timed_out, out.notes
    st = out.strategy.orders["trail"]
    assert out.statuses(st.ref) == ["Submitted", "Rejected"]
    assert "okx swaps" in out.last(st.ref).reason
    assert sim.orders("binance") == []


@pytest.mark.parametrize("exchange", ["binance", "okx"])
def test_a_resting_trailing_stop_is_adopted_by_the_next_run_and_cancelled(
        sim_factory: Any, tmp_path: Path, exchange: str) -> None:
    sim = sim_factory(exchanges=(exchange,), balances={"USDT": 10_000.0, "BTC": 0.1})
    db = tmp_path / "o.sqlite"
    out1 = Outcome()

    def act1(s: Any, n: int) -> None:
        if n == 1:  # a wide trail: it rests through both runs
            s.orders["trail"] = s.sell(size=0.01, exectype=bt.Order.StopTrail, trailpercent=0.2)

    def accepted(s: Any) -> bool:
        st = s.orders.get("trail")
        return st is not None and "Accepted" in out1.statuses(st.ref)

    run(sim, exchange, act1, accepted, db=db, out=out1, broker_kw=ADOPT)
    assert not out1.timed_out, out1.notes
    cid = out1.last(out1.strategy.orders["trail"].ref).client_id
    out2 = Outcome()

    def on_order(s: Any, order: Any) -> None:  # the adopted stop: cancel it
        if order.info.get("client_id") == cid and order.getstatusname() == "Accepted":
            s.cancel(order)

    def canceled(s: Any) -> bool:
        return any(n.client_id == cid and n.status == "Canceled" for n in out2.notes)

    run(sim, exchange, lambda s, n: None, canceled, db=db, out=out2, broker_kw=ADOPT,
        on_order=on_order)
    assert not out2.timed_out, out2.notes
    assert [n.status for n in out2.notes if n.client_id == cid] == ["Accepted", "Canceled"]
    (ex,) = sim.orders(exchange)
    assert ex["status"] == "canceled" and ex["trail"] == 0.2
    assert all(b["locked"] == 0.0 for b in sim.balances(exchange).values())
