"""The WebSocket loop hands a complete bar close to the strategy's thread before it reads on.

``WsHub._sink`` is ours; it is called here as ccxt.pro's tapped ``handle_ohlcv`` calls it,
on a running event loop, with a real ccxt.pro client that never connects. The consumer
thread stands in for the strategy's (cerebro's feeds taking bars from their pipes).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import NamedTuple

from btccxt_cli.bars.closes import CloseCounter
from btccxt_cli.clock import ManualClock
from btccxt_cli.exchange.factory import make_exchange
from btccxt_cli.model import Candle
from btccxt_cli.sources.base import RestGate, Series, SeriesParams
from btccxt_cli.sources.pipe import Pipe, ring
from btccxt_cli.sources.rest import RestSchedule
from btccxt_cli.sources.ws import HAND_OVER_STALL_S, WsHub, _Sub

SYMS = ["AAA/USDT", "BBB/USDT", "CCC/USDT"]
MINUTE = 60_000


def test_a_close_counts_complete_with_as_many_live_bars_as_the_close_before():
    c = CloseCounter()
    assert c.recent_size() == 0
    assert [c.count(0), c.count(0), c.count(0)] == [False] * 3  # the first: size unknown
    assert c.recent_size() == 3
    assert [c.count(MINUTE), c.count(MINUTE), c.count(MINUTE)] == [False, False, True]
    assert c.count(0) is False  # a bar of an older close counts for nothing
    assert [c.count(2 * MINUTE), c.count(2 * MINUTE)] == [False, False]  # one series short
    assert c.recent_size() == 3  # the close before had three
    assert [c.count(3 * MINUTE), c.count(3 * MINUTE)] == [False, True]  # two is the size now
    assert not c.incomplete()
    assert c.count(4 * MINUTE) is False and c.incomplete()  # one of two: more to come


class _Rig(NamedTuple):
    hub: WsHub
    series: dict[str, Series]
    clock: ManualClock
    queued: list[int]  # events waiting in all the series' pipes (the store's counter)
    t0: int  # the open of the bar forming at the start


def _rig(*, handoff: bool = True) -> _Rig:
    """A hub with the three series of ``SYMS`` (1m, live, their pipes sharing one counter)."""
    clock = ManualClock(start_ms=10 * MINUTE)
    queued = [0]
    ex = make_exchange("binance", kind="pro", config={}, sim_url="http://127.0.0.1:9")
    hub = WsHub(ex, tapped=False, gate=RestGate(), clock=clock)
    series = {}
    for sym in SYMS:
        s = Series(SeriesParams(symbol=sym, timeframe="1m", mode="websocket", backfill_start=False),
                   exchange_now_ms=clock.time_ms, clock=clock, pipe=Pipe(queued=queued), name=sym)
        s.pipe.handoff = handoff
        s.begin()
        while s.pipe.get(0) is not None:  # its states
            pass
        hub._subs[(sym, "1m")] = _Sub(s, RestSchedule(s, hub.gate, clock, grace_s=1.0,
                                                      polling=False))
        series[sym] = s
    return _Rig(hub, series, clock, queued, clock.time_ms())


def _long_bounds(monkeypatch) -> None:
    """The hand-over's no-progress and overall bounds at 30 s: what ends a wait sooner is
    what the test is about."""
    from btccxt_cli.sources import ws

    monkeypatch.setattr(ws, "HAND_OVER_STALL_S", 30.0)
    monkeypatch.setattr(ws, "HAND_OVER_MAX_S", 30.0)


def _close(hub: WsHub, open_ms: int, syms: list[str]) -> None:
    for sym in syms:
        hub._sink(sym, "1m", [Candle(open_ms, 1.0, 2.0, 0.5, 1.5, 3.0)], [True])


def test_the_loop_waits_in_the_last_bar_of_a_close_until_the_strategy_took_it_all(monkeypatch):
    """Without the hand-over the loop went on to parse the next bars' first updates while
    the strategy's thread, woken for the close, waited for the GIL (about 5 ms at 100
    symbols). Here the consumer may start only as the close's last bar is read; it takes
    every bar while the loop is still inside that bar's ``_sink``, and the loop goes on as
    soon as the consumer waits for more (not on its no-progress bound, made long here)."""
    _long_bounds(monkeypatch)
    hub, series, clock, queued, t0 = _rig()
    go = threading.Event()
    inside = [False]
    taken: list[tuple[str, int, bool]] = []
    held: list[float] = []

    def consume() -> None:
        go.wait(10)
        while len(taken) < len(SYMS):
            for sym, s in series.items():
                ev = s.pipe.get(0)
                if ev is not None and ev.kind == "bar":
                    taken.append((sym, ev.candle.ts, inside[0]))
        series[SYMS[0]].pipe.wait(10)  # for more, as cerebro after next(): woken below

    async def main() -> None:
        clock.advance(60.0)
        _close(hub, t0, SYMS)  # the first close: its size is not known, no hand-over
        assert hub.handed_over == 0 and queued == [3]
        for s in series.values():
            while s.pipe.get(0) is not None:
                pass
        clock.advance(60.0)
        _close(hub, t0 + MINUTE, SYMS[:2])
        worker = threading.Thread(target=consume, daemon=True)
        worker.start()
        inside[0] = True
        go.set()
        start = time.perf_counter()
        _close(hub, t0 + MINUTE, SYMS[2:])  # the close is complete in here
        inside[0] = False
        held.append(time.perf_counter() - start)
        ring()
        worker.join(10)

    asyncio.run(main())
    assert hub.handed_over == 1
    assert queued == [0]
    assert sorted(taken) == [(sym, t0 + MINUTE, True) for sym in SYMS]
    assert held[0] < 10.0  # the loop went on while the consumer waited, not after its bounds


def test_a_strategy_thread_that_takes_nothing_holds_the_loop_only_briefly():
    """No consumer at all (or a strategy busy in a long ``next()``): the loop goes on after
    ``HAND_OVER_STALL_S`` without progress, and the bars stay in their pipes."""
    hub, _series, clock, queued, t0 = _rig()
    waited: list[float] = []

    async def main() -> None:
        for i in range(2):
            clock.advance(60.0)
            start = time.perf_counter()
            _close(hub, t0 + i * MINUTE, SYMS)
            waited.append(time.perf_counter() - start)

    asyncio.run(main())
    assert hub.handed_over == 1
    assert queued == [6]  # nothing lost, nothing taken
    assert waited[1] >= HAND_OVER_STALL_S  # it did wait for the close ...
    assert waited[1] < 5.0  # ... and came back (the bound is HAND_OVER_MAX_S: a loaded CI box)


def test_pipes_the_loop_itself_drains_are_never_waited_for():
    """The hub's publisher takes its pipes on the loop (``handoff`` off): nothing to wait for."""
    hub, _series, clock, queued, t0 = _rig(handoff=False)

    async def main() -> None:
        for i in range(3):
            clock.advance(60.0)
            _close(hub, t0 + i * MINUTE, SYMS)

    asyncio.run(main())
    assert hub.handed_over == 0 and queued == [9]


def test_another_thread_asking_the_loop_ends_the_hand_over_at_once(monkeypatch):
    """The strategy's ``next()`` sends an order: the broker asks the store's loop from the
    strategy's thread (``call_soon_threadsafe``). The loop stops handing over at once and
    runs it, without waiting for its no-progress bound (made long here)."""
    _long_bounds(monkeypatch)
    hub, series, clock, queued, t0 = _rig()
    ran = threading.Event()
    held: list[float] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        clock.advance(60.0)
        _close(hub, t0, SYMS)
        clock.advance(60.0)
        _close(hub, t0 + MINUTE, SYMS[:2])

        def strategy() -> None:  # takes the close, then "sends an order" before waiting
            taken = 0
            while taken < 6:
                for s in series.values():
                    if s.pipe.get(0) is not None:
                        taken += 1
            loop.call_soon_threadsafe(ran.set)

        worker = threading.Thread(target=strategy, daemon=True)
        worker.start()
        start = time.perf_counter()
        _close(hub, t0 + MINUTE, SYMS[2:])
        held.append(time.perf_counter() - start)
        await asyncio.sleep(0)
        worker.join(10)

    asyncio.run(main())
    assert hub.handed_over == 1 and queued == [0]
    assert ran.is_set()
    assert held[0] < 10.0  # not the 30 s bound: the order's callback ended the wait


def test_a_close_wakes_no_rest_keeper_that_sleeps_until_its_next_read():
    """A released live bar moves a keeper's next read later, never earlier: a keeper asleep
    until its read is due is left asleep (at every close all of them woke, in the middle of
    the close's burst of messages). A gap wakes its keeper to fill it now."""
    from btccxt_cli.sources.rest import rest_keeper

    hub, series, clock, _queued, t0 = _rig()
    subs = list(hub._subs.values())

    async def asleep() -> list[float]:
        for _ in range(1000):  # the keepers run on this loop: let them reach their wait
            if all(0.0 < sub.schedule.asleep_until < float("inf") for sub in subs):
                return [sub.schedule.asleep_until for sub in subs]
            await asyncio.sleep(0)
        raise AssertionError([sub.schedule.asleep_until for sub in subs])

    async def main() -> None:
        keepers = [asyncio.create_task(rest_keeper(sub.schedule, None, sub.wake)) for sub in subs]
        try:
            planned = await asleep()  # until the forming bar's end plus the grace
            for close in (t0, t0 + MINUTE):
                clock.advance(60.0)
                _close(hub, close, SYMS)
                assert not any(sub.wake.is_set() for sub in subs)
                await asyncio.sleep(0)
                assert [sub.schedule.asleep_until for sub in subs] == planned  # still asleep
            clock.advance(120.0)
            hub._sink(SYMS[0], "1m", [Candle(t0 + 3 * MINUTE, 1.0, 2.0, 0.5, 1.5, 3.0)], [True])
            assert series[SYMS[0]].assembler.has_gap() and subs[0].wake.is_set()
            assert not subs[1].wake.is_set()
            assert not subs[0].schedule.needs_wake()  # only a keeper with nothing planned
            subs[0].schedule.asleep_until = float("inf")
            assert subs[0].schedule.needs_wake()
        finally:
            for task in keepers:
                task.cancel()
            await asyncio.gather(*keepers, return_exceptions=True)

    asyncio.run(main())


def test_the_loop_yields_no_gil_per_pass_while_a_close_it_can_count_is_incomplete():
    """Between reads the loop gives the woken strategy's thread the GIL (``_hand_over``),
    for a single update's sake. In the middle of a close's burst that let the thread in for
    a part of the close (2-3 ms of the loop's reading lost at 100 symbols); while a close
    whose size is known still misses bars, the close's own hand-over follows its last bar."""
    hub, _series, clock, _queued, t0 = _rig()

    async def main() -> list[bool]:
        due = []
        clock.advance(60.0)
        hub._sink(SYMS[0], "1m", [Candle(t0, 1.0, 2.0, 0.5, 1.5, 3.0)], [True])
        due.append(hub._hand_over_due)  # the first close: its size is not known
        await asyncio.sleep(0)  # the pass ends: _hand_over runs
        _close(hub, t0, SYMS[1:])
        await asyncio.sleep(0)
        clock.advance(60.0)
        for sym in SYMS:
            hub._sink(sym, "1m", [Candle(t0 + MINUTE, 1.0, 2.0, 0.5, 1.5, 3.0)], [True])
            due.append(hub._hand_over_due)
        return due

    assert asyncio.run(main()) == [True, False, False, True]
