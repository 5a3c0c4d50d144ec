"""Backoff, pipe and series planning with a manual clock (no sockets)."""

from __future__ import annotations

import asyncio
import threading

from btccxt_cli.clock import ManualClock
from btccxt_cli.model import BarSource, Candle, FeedEvent, FeedState
from btccxt_cli.sources.base import Backoff, Pipe, RestGate, Series, SeriesParams
from btccxt_cli.sources.rest import RestSchedule

TF = 60_000


def test_backoff_doubles_with_jitter_caps_and_resets_after_healthy_period():
    clock = ManualClock()
    b = Backoff(5.0, 60.0, healthy_after=30.0, clock=clock, rng=lambda: 0.5)  # jitter factor 1.0
    assert [b.failure() for _ in range(6)] == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0]
    b.success()
    clock.advance(10)
    assert b.failure() == 60.0  # not healthy long enough
    b.success()
    clock.advance(31)
    assert b.failure() == 5.0  # reset after a healthy period
    lo = Backoff(1.0, 8.0, clock=clock, rng=lambda: 0.0).failure()
    hi = Backoff(1.0, 8.0, clock=clock, rng=lambda: 0.999).failure()
    assert lo == 0.8 and 1.19 < hi <= 1.2


def test_rest_gate_blocks_all_series_until_retry_after():
    clock = ManualClock()
    g = RestGate(clock)
    assert g.delay() == 0
    g.penalize(3.0)
    clock.advance(1.0)
    assert g.delay() == 2.0
    clock.advance(2.5)
    assert g.delay() == 0


def test_pipe_wait_room_releases_producer_when_consumer_drains():
    pipe = Pipe(high_water=10)
    pipe.put_many(FeedEvent("bar") for _ in range(12))
    released = threading.Event()

    async def producer():
        await pipe.wait_room()
        released.set()

    t = threading.Thread(target=lambda: asyncio.run(producer()))
    t.start()
    assert not released.wait(0.05)  # above high water: the producer waits
    for _ in range(8):
        pipe.get(0)
    assert released.wait(5)
    t.join(5)


def test_pipe_get_times_out_and_close_wakes_waiter():
    pipe = Pipe()
    assert pipe.get(0) is None
    done = threading.Event()

    def consumer():
        pipe.wait(30)
        done.set()

    t = threading.Thread(target=consumer)
    t.start()
    pipe.close()
    assert done.wait(5)
    t.join(5)


def _series(clock: ManualClock, **kw) -> Series:
    p = SeriesParams(symbol="BTC/USDT", timeframe="1m", **kw)
    return Series(p, exchange_now_ms=clock.time_ms, clock=clock)


def _rows(start: int, n: int) -> list[list[float]]:
    return [[start + i * TF, 1.0, 2.0, 0.5, 1.5, 10.0] for i in range(n)]


def drain(s: Series) -> list[FeedEvent]:
    out = []
    while (ev := s.pipe.get(0)) is not None:
        out.append(ev)
    return out


def test_series_history_then_live_schedule_one_read_per_bar():
    clock = ManualClock(start_ms=1_700_000_000_000 - 1_700_000_000_000 % TF + 30_000)  # mid-bar
    now = clock.time_ms()
    s = _series(clock, backfill_bars=5, ohlcv_limit=3, settle_s=0.25)
    s.begin()
    sched = RestSchedule(s, RestGate(clock), clock, grace_s=0.25, polling=True)
    start = now - now % TF - 5 * TF
    # history: pages of 3 from 5 bars back
    since, limit = sched.begin_call()
    assert (since, limit) == (start, 3)
    sched.on_rows(_rows(start, 3), since)
    since, limit = sched.begin_call()
    assert since == start + 3 * TF
    sched.on_rows(_rows(since, 3), since)  # 2 closed + the forming bar
    evs = drain(s)
    assert [e.state for e in evs if e.kind == "state"] == [FeedState.DELAYED, FeedState.LIVE]
    bars = [e for e in evs if e.kind == "bar"]
    assert [b.candle.ts for b in bars] == [start + i * TF for i in range(5)]
    assert {b.source for b in bars} == {BarSource.BACKFILL}
    # live: the next read is due at the forming bar's end + settle, not before
    forming = now - now % TF
    assert abs(sched.wait_s() - ((forming + TF + 250 - now) / 1000)) < 1e-6
    clock.set_ms(forming + TF + 250)
    assert sched.wait_s() <= 0
    since, limit = sched.begin_call()
    assert (since, limit) == (forming, 2)
    sched.on_rows(_rows(forming, 2), since)
    bars = [e for e in drain(s) if e.kind == "bar"]
    assert [b.candle.ts for b in bars] == [forming] and bars[0].source is BarSource.LIVE
    assert sched.wait_s() > 50  # nothing more until the next bar ends


def test_series_retries_shortly_when_the_exchange_has_not_closed_the_bar():
    clock = ManualClock(start_ms=1_700_000_000_000 - 1_700_000_000_000 % TF + 1_000)
    s = _series(clock, backfill_start=False, settle_s=0.25, retry_s=0.25)
    s.begin()
    sched = RestSchedule(s, RestGate(clock), clock, grace_s=0.25, polling=True)
    forming = clock.time_ms() - clock.time_ms() % TF
    clock.set_ms(forming + TF + 250)
    since, _ = sched.begin_call()
    sched.on_rows(_rows(forming - 2 * TF, 2), since)  # stale answer: the bar is missing
    assert 0.2 < sched.wait_s() <= 0.25
    clock.advance(0.25)
    since, _ = sched.begin_call()
    sched.on_rows(_rows(forming, 2), since)
    assert [e.candle.ts for e in drain(s) if e.kind == "bar"] == [forming]


def test_historical_feed_ends_after_history():
    clock = ManualClock(start_ms=1_700_000_000_000 - 1_700_000_000_000 % TF + 1_000)
    s = _series(clock, backfill_bars=2, historical=True)
    s.begin()
    sched = RestSchedule(s, RestGate(clock), clock, grace_s=0.25, polling=True)
    since, _ = sched.begin_call()
    sched.on_rows(_rows(since, 3), since)
    kinds = [e.kind for e in drain(s)]
    assert kinds == ["state", "bar", "bar", "end"]
    assert sched.wait_s() is None


def test_candle_from_ccxt_copies_values():
    row = [1, "1.5", 2, 1, 1.25, None]
    c = Candle.from_ccxt(row)
    row[4] = 99
    assert c == Candle(1, 1.5, 2.0, 1.0, 1.25, 0.0)


def test_status_reports_the_backoff_countdown():
    clock = ManualClock()
    s = _series(clock)
    assert s.status().backoff_s is None
    s.note_backoff(4.0)
    clock.advance(1.5)
    assert s.status().backoff_s == 2.5
    clock.advance(3.0)
    assert s.status().backoff_s is None
    s.note_backoff(1.0)
    s.note_backoff(None)
    assert s.status().backoff_s is None


def test_a_put_into_any_pipe_ends_a_wait_on_another():
    """Cerebro waits in one feed's _load at a time; another feed's bar must end that wait."""
    a, b = Pipe(), Pipe()
    got = []
    started = threading.Event()

    def consumer():
        started.set()
        got.append(a.get(30))  # would sleep 30 s without the shared doorbell

    t = threading.Thread(target=consumer)
    t.start()
    started.wait(5)
    for _ in range(100):  # until the consumer is inside its wait
        b.put(FeedEvent("bar"))
        t.join(0.05)
        if not t.is_alive():
            break
    assert not t.is_alive() and got == [None]
    assert len(b) >= 1


def test_pushed_bars_tell_the_exchange_time_they_prove():
    clock = ManualClock(start_ms=1_700_000_000_000)
    seen: list[int] = []
    s = Series(SeriesParams("BTC/USDT", "1m", mode="websocket", backfill_start=False),
               exchange_now_ms=clock.time_ms, clock=clock, flagged=True, observe_exchange_ms=seen.append)
    t = 1_700_000_000_000 - 1_700_000_000_000 % TF
    c0, c1 = Candle(t, 1, 2, 0.5, 1.5, 3), Candle(t + TF, 1.5, 2, 1, 1.2, 1)
    s.on_live([c0], [False])
    s.on_live([c0, c1], [True, False])
    assert seen == [t, t + TF]  # a forming bar proves its open; a closed one its close


def test_store_clock_estimate_only_moves_forward_on_proof():
    from btccxt_cli.bt.store import CCXTStore

    clock = ManualClock(start_ms=1_700_000_000_000)
    store = CCXTStore("binance", clock=clock)
    store.observe_exchange_ms(clock.time_ms() + 5_000)  # no measured offset yet: nothing
    assert store.exchange_now_ms() == clock.time_ms()
    store._offset_ms = 200
    store.observe_exchange_ms(clock.time_ms() + 100)  # behind the estimate: proves nothing
    assert store.exchange_now_ms() == clock.time_ms() + 200
    store.observe_exchange_ms(clock.time_ms() + 5_000)  # the exchange is further ahead
    assert store.exchange_now_ms() == clock.time_ms() + 5_000
    clock.advance(1.0)
    assert store.exchange_now_ms() == clock.time_ms() + 5_000


def _c(ts: int, close: float = 1.5) -> Candle:
    return Candle(ts, 1.0, 2.0, 0.5, close, 10.0)


def test_a_socket_series_starts_at_the_bar_its_first_update_is_about():
    """With no history, a series added at 10:00:30 starts at the 10:00 bar; but a subscription
    sent after that bar closed (1,000 symbols take paced subscribe messages) never gets its
    final, and REST had to confirm it: at start-up hundreds of such reads queued behind the
    rate limit, each holding its series' live bars back for up to 10 s. The first update
    decides: the first bar is the one it is about."""
    clock = ManualClock(start_ms=1_700_000_000_000 - 1_700_000_000_000 % TF + 30_000)
    forming = clock.time_ms() - 30_000
    s = _series(clock, mode="websocket", backfill_start=False)
    s.begin()
    drain(s)
    grace = s.p.grace_s
    clock.set_ms(forming + TF + 500)  # the subscription went out after that bar closed
    s.on_live([_c(forming + TF)], closed=False)  # its first update: the next bar forming
    clock.set_ms(forming + TF + int(grace * 1000) + 1)
    assert s.rest_due_in(grace) > 0  # no REST read for the bar the socket never covered
    s.on_live([_c(forming + TF, close=1.7)], closed=True)
    bars = [e for e in drain(s) if e.kind == "bar"]
    assert [(b.candle.ts, b.candle.close, b.source) for b in bars] == [(forming + TF, 1.7, BarSource.LIVE)]


def test_a_socket_series_keeps_the_bar_forming_at_its_start_when_the_update_covers_it():
    clock = ManualClock(start_ms=1_700_000_000_000 - 1_700_000_000_000 % TF + 30_000)
    forming = clock.time_ms() - 30_000
    s = Series(SeriesParams(symbol="BTC/USDT", timeframe="1m", mode="websocket", backfill_start=False),
               exchange_now_ms=clock.time_ms, clock=clock, flagged=True)
    s.begin()
    s.on_live([_c(forming)], closed=False)  # subscribed in time: that bar is the first
    s.on_live([_c(forming + TF)], closed=False)  # its final lost, the next bar seen
    assert s.assembler.expected == forming
    clock.set_ms(forming + TF + int(s.p.grace_s * 1000))
    assert s.rest_due_in(s.p.grace_s) <= 0  # REST confirms the first bar
    s.on_rest([_c(forming), _c(forming + TF)], since=forming)
    bars = [e for e in drain(s) if e.kind == "bar"]
    assert [b.candle.ts for b in bars] == [forming]
    # once a bar is out, a later update never moves the start
    s.on_live([_c(forming + 3 * TF)], closed=True)
    assert s.assembler.expected == forming + TF


def test_the_start_moves_only_before_the_first_release():
    from btccxt_cli.bars.assembler import BarAssembler

    a = BarAssembler(TF, last_ts=0, flagged=True)
    a.on_live([_c(TF)], closed=False)
    a.start_at(3 * TF)
    assert a.expected == 3 * TF and a.pending_opens == []
    a.start_at(TF)  # earlier: no-op
    assert a.expected == 3 * TF
    assert [e.candle.ts for e in a.on_live([_c(3 * TF)], closed=True)] == [3 * TF]
    a.start_at(10 * TF)  # after a release: no-op
    assert a.expected == 4 * TF
