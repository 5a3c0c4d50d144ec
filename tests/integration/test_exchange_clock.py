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
from btccxt_cli.clock import SYSTEM_CLOCK, ManualClock
from btccxt_cli.sim.accounts import DEFAULT_KEY
from btccxt_cli.sources.base import SeriesParams

from .simtools import manual_sim

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
    # the exchange's clock stands mid-minute: started in the last second of a real minute,
    # the bar after the jump fell due 0.25 s later on our frozen clock, never idle in three
    # pumps (a run goes on and reads it, then idles): the test failed at :59
    now = SYSTEM_CLOCK.time_ms()
    sim = sim_factory(exchanges=("binance",), clock=ManualClock(start_ms=now - now % 60_000 + 30_000))
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


# --------------------------------------------------------------------------- clock resolution
def _bars(handle: Any) -> list[Any]:
    """The bar events waiting in a feed's pipe (taken out)."""
    out = []
    while (ev := handle.series.pipe.get(0)) is not None:
        if ev.kind == "bar":
            out.append(ev.candle)
    return out


def test_a_millisecond_clock_read_on_a_whole_second_is_taken_as_it_is(sim_factory: Any) -> None:
    sim, clock = manual_sim(sim_factory, "binance")
    clock.set_ms(clock.time_ms() // 1000 * 1000)  # the exchange's clock reads ...000
    store = CCXTStore("binance", sim_url=sim.url("binance"), clock=clock)
    try:
        store.sync_exchange()
        assert _error_ms(store, sim) == 0  # was +500: half a second ahead for ten minutes
    finally:
        store.stop()


def test_kraken_rest_mode_never_takes_the_forming_bar_for_a_closed_one(sim_factory: Any) -> None:
    # kraken's clock reads whole seconds and its OHLC answer always ends with the forming bar:
    # only the clock says whether that row is closed. Read on a whole second, the clock must not
    # be taken for half a second later (the settle is only 0.25 s).
    sim, clock = manual_sim(sim_factory, "kraken")
    clock.set_ms(clock.time_ms() // 1000 * 1000)
    store = CCXTStore("kraken", sim_url=sim.url("kraken"), clock=clock,
                      config={"enableRateLimit": False})  # kraken's limiter: 1 s per call
    try:
        h = store.attach(SeriesParams("BTC/USD", "1s", mode="rest", backfill_start=False,
                                      settle_s=0.25))
        assert store.exchange_now_ms() <= sim.now_ms()
        first = h.series.assembler.expected
        seen: list[Any] = []
        for _ in range(40):  # four bars, a tenth of a second at a time
            clock.advance(0.1)
            h.driver.pump(0)
            for c in _bars(h):
                assert c.ts + 1000 <= sim.now_ms(), f"bar {c.ts} released before its end"
                seen.append(c)
        assert [c.ts for c in seen][:3] == [first, first + 1000, first + 2000]
        truth = {r[0]: tuple(float(x) for x in r[1:6])
                 for r in sim.truth("kraken", "BTC/USD", "1s", first, seen[-1].ts + 1000)}
        assert all(tuple(c[1:6]) == truth[c.ts] for c in seen), "a bar with forming values"
    finally:
        store.stop()


# --------------------------------------------------------------------------- signing
KEYS = {"apiKey": DEFAULT_KEY.key, "secret": DEFAULT_KEY.secret, "password": DEFAULT_KEY.passphrase}


@pytest.mark.parametrize("exchange", ["binance", "okx"])
def test_signed_requests_carry_the_exchange_clock_not_ours(sim_factory: Any, exchange: str) -> None:
    # the exchange's clock is 40 s behind ours: stamped with our clock, every signed request
    # is refused (binance -1021, okx 50102: ccxt InvalidNonce); stamped with the measured one,
    # it is accepted, by the blocking and the asyncio clients alike
    sim = sim_factory(exchanges=(exchange,), clock_offset_ms=-40_000)
    store = CCXTStore(exchange, sim_url=sim.url(exchange), config=dict(KEYS))
    try:
        assert store.sync_exchange().fetch_balance()["free"]

        async def balance() -> Any:
            ex = await store.async_exchange()
            return await ex.fetch_balance()

        assert store.run_async(balance()).result(20)["free"]
    finally:
        store.stop()


def test_after_the_exchange_clock_moves_a_reading_makes_signing_right_again(sim_factory: Any) -> None:
    # what the order path does on InvalidNonce: read the clock (store.read_clock), send again
    import ccxt

    sim = sim_factory(exchanges=("binance",))
    store = CCXTStore("binance", sim_url=sim.url("binance"), config=dict(KEYS))

    async def balance() -> Any:
        ex = await store.async_exchange()
        return await ex.fetch_balance()

    try:
        assert store.run_async(balance()).result(20)["free"]
        sim.sim.clock_offset_ms += 30_000  # the exchange moves 30 s on: our stamps are stale
        with pytest.raises(ccxt.InvalidNonce):
            store.run_async(balance()).result(20)
        assert store.run_async(store.read_clock()).result(20)
        assert store.run_async(balance()).result(20)["free"]
    finally:
        store.stop()
