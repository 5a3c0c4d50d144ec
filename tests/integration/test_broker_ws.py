"""CCXTBroker order updates pushed by WebSocket (ccxt.pro ``watch_orders``), against the
simulator's private streams: real ccxt.pro signing and login, real sockets.

The crossing of a resting limit order is made deterministic by moving the simulated exchange's
clock past the moment its seeded price path crosses the limit
(``btccxt_cli.sim.plans.cross_plan``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import backtrader as bt
import pytest

from btccxt_cli.bt.ordersync import OrderSync
from btccxt_cli.cache.orders import OrderStore
from btccxt_cli.sim.plans import cross_plan
from tests.integration.test_broker import ADOPT, SYMBOL, Outcome, run

pytestmark = pytest.mark.live


def _place_crossing(sim: Any, s: Any, plan: dict[str, Any], quiet_s: float = 4.0) -> None:
    p = cross_plan(sim.model, SYMBOL, sim.now_ms(), quiet_s=quiet_s)
    plan.update(side=p.side, price=p.price, when=p.when_ms)
    fn = s.buy if p.side == "buy" else s.sell
    s.orders["cross"] = fn(size=0.01, price=p.price, exectype=bt.Order.Limit)


def _jump_past_crossing(sim: Any, plan: dict[str, Any]) -> None:
    """The exchange's clock moves past the crossing: its engine fills the order on its next look."""
    gap = plan["when"] + 2000 - sim.now_ms()
    if gap > 0:
        sim.sim.clock_offset_ms += gap


def _fills_in_db(db: Path) -> list[dict[str, Any]]:
    store = OrderStore(db)
    try:
        return list(store.dump()["fills"])
    finally:
        store.close()


@pytest.mark.parametrize("exchange", ["binance", "okx"])
def test_a_fill_reaches_the_strategy_by_push_without_a_poll(sim_factory: Any, tmp_path: Path,
                                                            exchange: str) -> None:
    # the tests jump the exchange's clock, which these fill tests are not about: no timestamp
    # check (a login refused for its timestamp is tests/integration/test_binance_login.py's)
    sim = sim_factory(exchanges=(exchange,), balances={"USDT": 10_000.0, "BTC": 0.1},
                      check_timestamps=False)
    out = Outcome()
    plan: dict[str, Any] = {}

    def act(s: Any, n: int) -> None:
        if n == 1:
            _place_crossing(sim, s, plan)
        o = s.orders.get("cross")
        if o is not None and "jumped" not in plan and "Accepted" in out.statuses(o.ref) \
                and s.broker.updates_via == "websocket":
            plan["jumped"] = True
            plan["polls"] = s.broker.sync.polls
            _jump_past_crossing(sim, plan)

    def done(s: Any) -> bool:
        o = s.orders.get("cross")
        return o is not None and "Completed" in out.statuses(o.ref)

    db = tmp_path / "o.sqlite"
    # polls every 30 s (60 s once the stream is up): within this test only a push can tell
    run(sim, exchange, act, done, db=db, out=out, timeout=30.0,
        broker_kw={**ADOPT, "updates": "websocket", "poll_interval": 30.0, "reconcile_interval": 60.0})
    assert not out.timed_out, (out.notes, out.broker.sync.via_log if out.broker.sync else None)
    o = out.strategy.orders["cross"]
    assert out.statuses(o.ref) == ["Submitted", "Accepted", "Completed"]
    sync: OrderSync = out.broker.sync
    assert sync.polls == plan["polls"], "a REST poll ran between the crossing and the fill"
    assert sync.ws_pushes >= 1
    assert sync.via_log[0] == "connecting" and "websocket" in sync.via_log
    last = out.last(o.ref)
    assert abs(last.size) == pytest.approx(0.01) and last.price == pytest.approx(plan["price"])
    ex = {r["client_id"]: r for r in sim.orders(exchange)}
    assert ex[last.client_id]["status"] == "filled" and ex[last.client_id]["filled"] == 0.01
    fills = _fills_in_db(db)
    assert len(fills) == 1 and fills[0]["delivered"] == 1
    assert out.broker.status().updates == "websocket"


@pytest.mark.parametrize("exchange", ["binance", "okx"])
def test_a_lost_order_stream_falls_back_to_polling_and_loses_nothing(
        sim_factory: Any, tmp_path: Path, exchange: str) -> None:
    # the tests jump the exchange's clock, which these fill tests are not about: no timestamp
    # check (a login refused for its timestamp is tests/integration/test_binance_login.py's)
    sim = sim_factory(exchanges=(exchange,), balances={"USDT": 10_000.0, "BTC": 0.1},
                      check_timestamps=False)
    out = Outcome()
    plan: dict[str, Any] = {}

    def act(s: Any, n: int) -> None:
        if n == 1:
            _place_crossing(sim, s, plan)
        o = s.orders.get("cross")
        if o is not None and "cut" not in plan and "Accepted" in out.statuses(o.ref) \
                and s.broker.updates_via == "websocket":
            plan["cut"] = True
            # every socket drops and none may connect for 3 s; REST still answers. The order
            # fills inside the gap, so only a REST poll can see it then.
            sim.outage(exchange, 3.0, ws=True, rest=False)
            _jump_past_crossing(sim, plan)

    def done(s: Any) -> bool:
        o = s.orders.get("cross")
        sync = s.broker.sync
        return o is not None and "Completed" in out.statuses(o.ref) and \
            "reconnecting" in sync.via_log and sync.via_log[-1] == "websocket"

    db = tmp_path / "o.sqlite"
    run(sim, exchange, act, done, db=db, out=out, timeout=40.0,
        broker_kw={**ADOPT, "updates": "websocket", "poll_interval": 0.2, "reconcile_interval": 60.0})
    sync: OrderSync = out.broker.sync
    assert not out.timed_out, (out.notes, sync.via_log)
    o = out.strategy.orders["cross"]
    assert out.statuses(o.ref) == ["Submitted", "Accepted", "Completed"]  # each exactly once
    up = sync.via_log.index("websocket")
    assert sync.via_log[0] == "connecting" and "reconnecting" in sync.via_log[up:]
    last = out.last(o.ref)
    assert abs(last.size) == pytest.approx(0.01) and last.price == pytest.approx(plan["price"])
    fills = _fills_in_db(db)
    assert len(fills) == 1 and fills[0]["delivered"] == 1
    assert len(sim.orders(exchange)) == 1


def test_polling_only_when_asked(sim_factory: Any, tmp_path: Path) -> None:
    sim = sim_factory(exchanges=("binance",), balances={"USDT": 10_000.0})
    out = Outcome()

    def act(s: Any, n: int) -> None:
        if n == 1:
            s.orders["m"] = s.buy(size=0.01)

    def done(s: Any) -> bool:
        o = s.orders.get("m")
        return o is not None and "Completed" in out.statuses(o.ref)

    run(sim, "binance", act, done, db=tmp_path / "o.sqlite", out=out,
        broker_kw={"updates": "poll"})
    assert not out.timed_out
    sync: OrderSync = out.broker.sync
    assert sync.via_log == ["polling"] and sync.ws_pushes == 0
    assert out.broker.status().updates == "polling"


def test_unknown_update_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="updates must be one of auto, websocket, poll"):
        OrderSync(None, None, "a", on_events=lambda ev: None, updates="push")  # type: ignore[arg-type]


def test_the_update_state_log_stays_bounded() -> None:
    """A long run whose stream drops again and again keeps the first state and the recent ones."""
    sync = OrderSync(None, None, "a", on_events=lambda ev: None)  # type: ignore[arg-type]
    sync._log_via("connecting")
    for i in range(5000):
        sync._log_via("websocket" if i % 2 else "reconnecting")
    assert len(sync.via_log) <= 1000
    assert sync.via_log[0] == "connecting" and sync.via_log[-1] == "websocket"


@pytest.mark.parametrize("exchange", ["binance", "okx"])
def test_fills_across_repeated_drops_are_told_once_each(sim_factory: Any, tmp_path: Path,
                                                        exchange: str) -> None:
    """Four orders fill while the sockets drop around the fills in different ways: the fill
    pushed then the socket closed, the socket reset then the fill, the fill alone, both at once."""
    # the tests jump the exchange's clock, which these fill tests are not about: no timestamp
    # check (a login refused for its timestamp is tests/integration/test_binance_login.py's)
    sim = sim_factory(exchanges=(exchange,), balances={"USDT": 10_000.0, "BTC": 0.1},
                      check_timestamps=False)
    out = Outcome()
    script = [("jump", "close"), ("reset", "jump"), ("jump",), ("reset", "jump", "close")]
    state: dict[str, Any] = {"round": 0, "orders": []}

    def act(s: Any, n: int) -> None:
        r = state["round"]
        if r >= len(script):
            return
        o = s.orders.get(r)
        if o is None:
            plan: dict[str, Any] = {}
            # a short quiet window: every jump of the exchange's clock is a gap the feed's
            # clock estimate lags by, and bars wait that long
            _place_crossing(sim, s, plan, quiet_s=1.5)
            s.orders[r] = s.orders.pop("cross")
            state["plan"] = plan
            state["orders"].append(s.orders[r])
            return
        statuses = out.statuses(o.ref)
        if "Completed" in statuses:
            state["round"] = r + 1
        elif "Accepted" in statuses and state.get("acted") != r and \
                s.broker.updates_via == "websocket":
            state["acted"] = r
            for step in script[r]:
                if step == "jump":
                    _jump_past_crossing(sim, state["plan"])
                else:
                    sim.drop(exchange, mode=step)

    def done(s: Any) -> bool:  # every order completed, and the stream back up
        return state["round"] >= len(script) and s.broker.updates_via == "websocket"

    db = tmp_path / "o.sqlite"
    run(sim, exchange, act, done, db=db, out=out, timeout=60.0,
        broker_kw={**ADOPT, "updates": "websocket", "poll_interval": 0.5, "reconcile_interval": 60.0},
        data_kw={"ws_reconnect_delay": 0.2, "ws_max_reconnect_delay": 0.5})
    sync: OrderSync = out.broker.sync
    assert not out.timed_out, (state["round"], out.notes, sync.via_log)
    for o in state["orders"]:
        assert out.statuses(o.ref) == ["Submitted", "Accepted", "Completed"]
    assert sync.via_log.count("reconnecting") >= 2 and sync.via_log[-1] == "websocket"
    ex = {r["client_id"]: r for r in sim.orders(exchange)}
    fills = _fills_in_db(db)
    assert len({f["trade_id"] for f in fills}) == len(fills)  # no fill twice
    for o in state["orders"]:
        cid = out.last(o.ref).client_id
        assert ex[cid]["status"] == "filled"
        mine = [f for f in fills if f["client_id"] == cid]
        assert len(mine) == ex[cid]["fills"] and all(f["delivered"] for f in mine)
        assert sum(f["amount"] for f in mine) == pytest.approx(0.01)

