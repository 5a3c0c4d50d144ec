"""The store's estimate of the exchange clock follows the exchange when either clock moves.

The simulator's clock is moved with ``clock_offset_ms``; the store reads it again every
``clock_refresh`` seconds (REST: on the feed's thread when idle; WebSocket: on its loop).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from btccxt_cli.bt.store import CCXTStore
from btccxt_cli.clock import ManualClock
from btccxt_cli.sources.base import SeriesParams

pytestmark = pytest.mark.live


def _wait(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    tick = threading.Event()
    for _ in range(int(timeout / 0.05)):
        if cond():
            return True
        tick.wait(0.05)
    return cond()


def _error_ms(store: CCXTStore, sim: Any) -> int:
    return store.exchange_now_ms() - sim.now_ms()


def test_rest_mode_reads_the_exchange_clock_again_when_due(sim_factory: Any) -> None:
    sim = sim_factory(exchanges=("binance",))
    store = CCXTStore("binance", sim_url=sim.url("binance"), clock_refresh=600)
    try:
        store.sync_exchange()
        assert abs(_error_ms(store, sim)) < 300
        sim.sim.clock_offset_ms -= 3000  # the exchange's clock steps back 3 s
        store.refresh_clock_sync()  # not due yet: the old reading stays
        assert _error_ms(store, sim) > 2500
        store._offset_at -= 601  # as if ten minutes had passed since the reading
        store.refresh_clock_sync()
        assert abs(_error_ms(store, sim)) < 300
    finally:
        store.stop()


def test_rest_mode_driver_rereads_the_clock_while_idle(sim_factory: Any) -> None:
    sim = sim_factory(exchanges=("binance",))
    clock = ManualClock()  # our clock: it jumps a minute ahead of the exchange's
    store = CCXTStore("binance", sim_url=sim.url("binance"), clock=clock, clock_refresh=60)
    try:
        h = store.attach(SeriesParams("BTC/USDT", "1m", mode="rest", backfill_start=False))
        assert abs(_error_ms(store, sim)) < 300
        clock.advance(61.0)
        assert _error_ms(store, sim) > 55_000  # what a stale reading would believe
        for _ in range(3):  # a bar fell due in the jump: read it; then idle, the clock is read
            h.driver.pump(0)
        assert abs(_error_ms(store, sim)) < 300
        # two periods without an idle moment: the clock is read before the next bar's read
        clock.advance(121.0)
        h.driver.pump(0)
        assert abs(_error_ms(store, sim)) < 300
    finally:
        store.stop()


def test_websocket_mode_rereads_the_clock_on_its_loop(sim_factory: Any) -> None:
    sim = sim_factory(exchanges=("binance",))
    store = CCXTStore("binance", sim_url=sim.url("binance"), clock_refresh=0.2)
    try:
        store.attach(SeriesParams("BTC/USDT", "1s", mode="websocket", backfill_start=False))
        assert _wait(lambda: store._offset_ms is not None)
        sim.sim.clock_offset_ms -= 3000  # pushed bars cannot prove this: only a reading can
        assert _wait(lambda: abs(_error_ms(store, sim)) < 300), _error_ms(store, sim)
    finally:
        store.stop()
