"""The orders database never holds up the event loop: a locked orders file delays no bar.

The live broker's order worker runs on the store's loop, with the WebSocket feeds. It used to
call SQLite there, so another process holding the orders database's write lock (a second
``btccxt`` on the same file, a backup, a viewer) froze every socket and watch at the next
order update for as long as it held it. Here a second SQLite connection holds an exclusive
lock for ``HOLD_S`` seconds while a resting order fills and 1 s bars keep coming.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import timezone
from pathlib import Path
from typing import Any

import pytest

from btccxt_cli.cache.orders import OrderStore
from tests.integration.test_broker import ADOPT, SYMBOL, Outcome, run
from tests.integration.test_broker_ws import _fills_in_db, _place_crossing

pytestmark = pytest.mark.live

EX = "binance"
HOLD_S = 3.0  # seconds the other connection holds the lock (from LOCK_BEFORE_MS before the fill)
LEAD_MS = 6000  # the exchange's clock jumps to this long before the crossing
LOCK_BEFORE_MS = 1500  # the lock is taken this long before the crossing
QUIET_S = 15.0  # no crossing for this long after the order is planned


def test_a_locked_orders_database_delays_no_bar_and_the_fill_is_told_once_released(
        sim_factory: Any, tmp_path: Path) -> None:
    sim = sim_factory(exchanges=(EX,), balances={"USDT": 10_000.0, "BTC": 0.1})
    db = tmp_path / "orders.sqlite"
    OrderStore(db).close()
    other = sqlite3.connect(db, isolation_level=None, timeout=0, check_same_thread=False)
    out = Outcome()
    plan: dict[str, Any] = {}
    state: dict[str, Any] = {"released_ns": None, "completed_ns": []}
    bars: list[tuple[int, int]] = []  # (bar open ms, perf_counter_ns when the strategy got it)
    released = threading.Event()

    def release() -> None:
        state["fills_while_locked"] = other.execute("SELECT COUNT(*) FROM fills").fetchone()[0]
        cid = state["cid"]
        state["exchange_status"] = {r["client_id"]: r for r in sim.orders(EX)}[cid]["status"]
        state["completed_before_release"] = len(state["completed_ns"])
        other.execute("COMMIT")
        state["released_ns"] = time.perf_counter_ns()
        released.set()

    def lock() -> None:
        other.execute("BEGIN EXCLUSIVE")  # the other process takes the write lock ...
        state["locked_at"] = sim.now_ms()
        state["locked_ns"] = time.perf_counter_ns()
        timer = threading.Timer(HOLD_S, release)  # ... and holds it HOLD_S seconds
        timer.daemon = True
        timer.start()

    def act(s: Any, n: int) -> None:
        now = time.perf_counter_ns()
        stamp = int(round(s.data.datetime.datetime(0).replace(tzinfo=timezone.utc).timestamp() * 1000))
        bars.append((s.data.series.grid.open_of(stamp), now))
        if n == 1:
            # the crossing comes QUIET_S after the order is planned; the clock jumps to
            # LEAD_MS before it once the order is accepted, which on a loaded machine took
            # seconds (with 6 s, CI once saw the fill before the lock was taken)
            _place_crossing(sim, s, plan, quiet_s=QUIET_S)
        o = s.orders.get("cross")
        if o is None or "Accepted" not in out.statuses(o.ref) or s.broker.updates_via != "websocket":
            return
        if "jumped" not in plan:
            plan["jumped"] = True
            state["cid"] = out.last(o.ref).client_id
            # the exchange's clock moves to a few bars before the crossing (the feed fills
            # the gap), then the crossing comes in real time
            sim.sim.clock_offset_ms += max(0, plan["when"] - LEAD_MS - sim.now_ms())
            # the other process takes the lock LOCK_BEFORE_MS before the crossing, on the
            # exchange's clock, from a thread of its own: a strategy thread that a loaded
            # machine delays must not let the fill in before the lock
            wait_s = max(0.0, (plan["when"] - LOCK_BEFORE_MS - sim.now_ms()) / 1000)
            locker = threading.Timer(wait_s, lock)
            locker.daemon = True
            state["locker"] = locker
            locker.start()

    def on_order(s: Any, order: Any) -> None:
        if order.getstatusname() == "Completed":
            state["completed_ns"].append(time.perf_counter_ns())

    def done(s: Any) -> bool:
        o = s.orders.get("cross")
        return o is not None and "Completed" in out.statuses(o.ref) and released.is_set()

    try:
        run(sim, EX, act, done, db=db, out=out, on_order=on_order, timeout=40.0,
            broker_kw={**ADOPT, "updates": "websocket", "poll_interval": 30.0,
                       "reconcile_interval": 60.0})
    finally:
        if "locker" in state:
            state["locker"].cancel()  # a run that ended early leaves no lock taken after it
            state["locker"].join()
        if "locked_ns" in state:
            released.wait(HOLD_S + 5.0)
        other.close()
    assert not out.timed_out, (out.notes, out.broker.sync.via_log if out.broker.sync else None)
    assert state["exchange_status"] == "filled", "the order filled while the lock was held"
    assert state["fills_while_locked"] == 0, (
        "the lock kept the fill out while it was held", plan, state.get("locked_at"))

    # bars the simulator pushed while the lock was held reached the strategy on time
    late = []
    for open_ms, got_ns in bars:
        sent = sim.close_sent_ns(EX, SYMBOL, "1s", open_ms)
        if sent is not None and state["locked_ns"] <= sent <= state["released_ns"]:
            late.append((open_ms, (got_ns - sent) / 1e6))
    assert state["locked_at"] < plan["when"]  # locked before the crossing
    assert late and max(ms for _, ms in late) < 500, late  # a frozen loop: a second or more late
    assert len(late) >= 2, (late, bars)

    # the fill: stored once the lock was released, then told once
    o = out.strategy.orders["cross"]
    assert out.statuses(o.ref) == ["Submitted", "Accepted", "Completed"]
    assert state["completed_before_release"] == 0
    assert len(state["completed_ns"]) == 1 and state["completed_ns"][0] > state["released_ns"]
    fills = _fills_in_db(db)
    assert len(fills) == 1 and fills[0]["delivered"] == 1 and fills[0]["client_id"] == state["cid"]
