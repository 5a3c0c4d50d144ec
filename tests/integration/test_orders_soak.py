"""The order chaos soak (bench/orders_soak.py), short: CCXTBroker through cerebro against the
simulator, real ccxt / ccxt.pro, while every fault kind hits the sockets and the REST calls,
lagging lookups (an order "not found" for seconds after its create) included.

No order is duplicated or lost, each order's notifications are a valid sequence, every fill
reaches the strategy and the order database exactly once, and the broker ends with the
exchange's balances, across a crash point too: the strategy dies while told of a market order's
fill, and a new run on the same order database tells it once and goes on.

On okx's linear swap too (5x isolated, starting flat: shorts, flips, reduce-only closes): the
broker's position equals the exchange's (``fetch_positions`` and the simulator's), and no order
is refused as trading against a position the bot did not open.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import orders_soak  # noqa: E402

pytestmark = pytest.mark.live

SEED = 11
DURATION = 26.0  # seconds of trading; ~14 faults, so every kind at least once
EVERY = (1.4, 2.0)
#: the simulator never executes a create after answering it (its faults hit before the
#: handler, or after the engine ran it), so a short lookup window is safe here
AMBIGUOUS_TIMEOUT = 5.0
CRASHES = 1  # halfway: the strategy dies on a market order's fill; a new run goes on
#: swaps: shorter, faults more often: the restart after the crash point pauses them for ~5 s
#: (more on a loaded machine), and ~18 faults leave every kind at least once with room to spare
SWAP_DURATION, SWAP_EVERY = 22.0, (1.0, 1.2)


@pytest.mark.timeout(150)
@pytest.mark.parametrize(("exchange", "swap"), [("binance", False), ("okx", False), ("okx", True)],
                         ids=["binance", "okx", "okx-swap"])
@pytest.mark.long
@pytest.mark.xdist_group("soak")  # one soak at a time (--dist loadgroup)
def test_no_order_or_fill_is_lost_or_doubled_under_random_faults(
        sim_factory: Any, tmp_path: Path, exchange: str, swap: bool) -> None:
    sim = sim_factory(exchanges=(exchange,), **orders_soak.SIM_KW)
    result = orders_soak.soak(sim, exchange, duration=SWAP_DURATION if swap else DURATION,
                              seed=SEED, every=SWAP_EVERY if swap else EVERY,
                              db=tmp_path / "orders.sqlite", ambiguous_timeout=AMBIGUOUS_TIMEOUT,
                              settle_timeout=AMBIGUOUS_TIMEOUT + 40.0, crashes=CRASHES, swap=swap,
                              say=lambda s: None)
    checks = orders_soak.check(result)
    report = "\n".join(orders_soak.report(result, checks))
    context = report + "\nlast warnings:\n" + "\n".join(result.log[-30:])
    assert not result.timed_out and result.settled, context
    assert checks.problems == [], context
    assert checks.duplicates == checks.lost_fills == checks.lost_orders == 0, context
    assert checks.sequence_errors == checks.mismatches == checks.worker_errors == 0, context
    # the soak did what it is for: every fault kind, creates whose answer was lost, fills
    # (some in parts), cancels
    assert {kind for _, kind in result.faults} == set(orders_soak.FAULT_KINDS), context
    assert checks.found >= 1, context
    assert checks.final["Completed"] >= 3 and checks.final["Canceled"] >= 1, context
    assert checks.fills_exchange == checks.fills_told == checks.fills_db > 0, context
    assert len(result.crashes) == CRASHES, context
    crashed = [o for o in result.db_orders if o["client_id"] in result.crashes]
    assert [o["status"] for o in crashed] == ["closed"] * CRASHES, context
    if swap:  # shorts held and flips made; the position is the exchange's, as both show it
        assert checks.low < 0 < checks.high and checks.flips >= 1, context
        assert result.broker_position == pytest.approx(result.ccxt_position, abs=1e-9), context
        assert result.broker_position == pytest.approx(result.sim_position, abs=1e-9), context
