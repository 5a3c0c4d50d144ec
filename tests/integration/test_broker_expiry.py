"""``valid=`` on live orders: the broker cancels an order when its time passes on the exchange's
clock and tells the strategy ``Expired``, as backtrader's own broker does in a backtest.

Real ccxt against the simulator; the time passes on the simulated exchange's clock.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import backtrader as bt
import pytest

from tests.integration.test_broker import ADOPT, Outcome, ended, final_ref, run
from tests.integration.test_broker_stops import _rows

pytestmark = pytest.mark.live


def _utc(ms: int) -> datetime.datetime:
    """A naive UTC datetime, as backtrader takes ``valid=`` on a UTC feed."""
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).replace(tzinfo=None)


@pytest.mark.parametrize(("exchange", "kind"), [
    ("binance", "limit"), ("okx", "limit"),
    ("binance", "stop"), ("okx", "stop"),  # okx: an algo order, cancelled as one
])
def test_an_order_expires_when_its_valid_time_passes_on_the_exchange(
        sim_factory: Any, tmp_path: Path, exchange: str, kind: str) -> None:
    sim = sim_factory(exchanges=(exchange,), balances={"USDT": 10_000.0, "BTC": 0.1})
    out = Outcome()
    plan: dict[str, Any] = {}

    def act(s: Any, n: int) -> None:
        if n == 1:
            plan["valid_ms"] = sim.now_ms() + 2_000
            valid = _utc(plan["valid_ms"])
            if kind == "limit":  # far below the price: it rests
                s.orders["o"] = s.buy(size=0.01, price=round(s.data.close[0] * 0.8, 1),
                                      exectype=bt.Order.Limit, valid=valid)
            else:  # a sell stop far below the price: it does not trigger
                s.orders["o"] = s.sell(size=0.01, price=round(s.data.close[0] * 0.5, 1),
                                       exectype=bt.Order.Stop, valid=valid)

    db = tmp_path / "o.sqlite"
    run(sim, exchange, act, ended(out, "o"), db=db, out=out, timeout=30.0, broker_kw=ADOPT)
    assert not out.timed_out, out.notes
    o = out.strategy.orders["o"]
    assert out.statuses(o.ref) == ["Submitted", "Accepted", "Expired"]
    assert "valid=" in (out.last(o.ref).reason or "")
    ex = sim.orders(exchange)
    assert len(ex) == 1 and ex[0]["status"] == "canceled"
    # cancelled on the exchange's clock once the time had passed, never before
    assert ex[0]["updated_ms"] >= plan["valid_ms"]
    assert all(b["locked"] == 0.0 for b in sim.balances(exchange).values())  # nothing held back
    (row,) = _rows(db)["orders"]
    assert row["status"] == "expired" and row["expires_ms"] == plan["valid_ms"]


@pytest.mark.parametrize("exchange", ["binance", "okx"])
def test_an_order_that_fills_before_its_valid_time_completes_and_market_orders_never_expire(
        sim_factory: Any, tmp_path: Path, exchange: str) -> None:
    sim = sim_factory(exchanges=(exchange,), balances={"USDT": 10_000.0})
    out = Outcome()

    def act(s: Any, n: int) -> None:
        if n == 1:
            s.orders["o"] = s.buy(size=0.01, price=round(s.data.close[0] * 1.02, 1),
                                  exectype=bt.Order.Limit, valid=datetime.timedelta(seconds=30))
            # backtrader never expires a market order, whatever its valid=
            s.orders["m"] = s.buy(size=0.01, valid=_utc(sim.now_ms() - 60_000))

    def done(s: Any) -> bool:
        return final_ref(out, "o") and final_ref(out, "m")

    db = tmp_path / "o.sqlite"
    run(sim, exchange, act, done, db=db, out=out, timeout=30.0)
    assert not out.timed_out, out.notes
    s = out.strategy
    assert out.statuses(s.orders["o"].ref)[-1] == "Completed"
    assert out.statuses(s.orders["m"].ref)[-1] == "Completed"
    rows = {r["type"]: r for r in _rows(db)["orders"]}
    assert rows["limit"]["status"] == "closed" and rows["limit"]["reason"] is None
    assert rows["limit"]["expires_ms"] is not None and rows["market"]["expires_ms"] is None
    assert sorted(o["status"] for o in sim.orders(exchange)) == ["filled", "filled"]


def test_an_order_whose_valid_time_has_passed_is_not_sent(sim_factory: Any, tmp_path: Path) -> None:
    sim = sim_factory(exchanges=("binance",), balances={"USDT": 10_000.0})
    out = Outcome()

    def act(s: Any, n: int) -> None:
        if n == 1:
            s.orders["o"] = s.buy(size=0.01, price=round(s.data.close[0] * 0.8, 1),
                                  exectype=bt.Order.Limit, valid=_utc(sim.now_ms() - 1_000))

    db = tmp_path / "o.sqlite"
    run(sim, "binance", act, ended(out, "o"), db=db, out=out)
    assert not out.timed_out, out.notes
    o = out.strategy.orders["o"]
    assert out.statuses(o.ref) == ["Submitted", "Expired"]
    assert "before it was sent" in out.last(o.ref).reason
    assert sim.orders("binance") == [] and _rows(db)["orders"] == []


def test_an_order_expires_in_the_next_run_when_its_time_passed_while_the_bot_was_down(
        sim_factory: Any, tmp_path: Path) -> None:
    # the exchange's clock jumps while the broker is down (its signed timestamps then lag)
    sim = sim_factory(exchanges=("binance",), balances={"USDT": 10_000.0}, check_timestamps=False)
    db = tmp_path / "o.sqlite"
    out1 = Outcome()
    plan: dict[str, Any] = {}

    def act1(s: Any, n: int) -> None:
        if n == 1:
            plan["valid_ms"] = sim.now_ms() + 60_000
            s.orders["o"] = s.buy(size=0.01, price=round(s.data.close[0] * 0.8, 1),
                                  exectype=bt.Order.Limit, valid=_utc(plan["valid_ms"]))

    def accepted(s: Any) -> bool:
        o = s.orders.get("o")
        return o is not None and "Accepted" in out1.statuses(o.ref)

    run(sim, "binance", act1, accepted, db=db, out=out1)
    assert not out1.timed_out, out1.notes
    cid = out1.last(out1.strategy.orders["o"].ref).client_id
    assert [o["status"] for o in sim.orders("binance")] == ["new"]  # left resting by the stop

    sim.sim.clock_offset_ms += 70_000  # its valid= time passes while no bot runs
    out2 = Outcome()

    def expired(s: Any) -> bool:
        return any(n.client_id == cid and n.status == "Expired" for n in out2.notes)

    run(sim, "binance", lambda s, n: None, expired, db=db, out=out2)
    assert not out2.timed_out, out2.notes
    assert [n.status for n in out2.notes if n.client_id == cid] == ["Accepted", "Expired"]
    (ex,) = sim.orders("binance")
    assert ex["status"] == "canceled" and ex["updated_ms"] >= plan["valid_ms"]
    (row,) = _rows(db)["orders"]
    assert row["client_id"] == cid and row["status"] == "expired"
