"""REST retry delays after failed reads: polling modes retry at most once a bar (their normal
load), so the first good read after an outage comes within a bar of its end."""

from __future__ import annotations

import ccxt
import pytest

from btccxt_cli.clock import ManualClock
from btccxt_cli.model import FeedState
from btccxt_cli.sources.base import RestGate, Series, SeriesParams
from btccxt_cli.sources.rest import RestSchedule


def _schedule(clock: ManualClock, timeframe: str, *, polling: bool) -> RestSchedule:
    s = Series(SeriesParams("BTC/USDT", timeframe, mode="rest" if polling else "websocket",
                            backfill_start=False), exchange_now_ms=clock.time_ms, clock=clock)
    s.begin()
    return RestSchedule(s, RestGate(clock), clock, grace_s=0.25, polling=polling)


def _holds(sched: RestSchedule, clock: ManualClock, n: int) -> list[float]:
    out = []
    for _ in range(n):
        sched.on_error(ccxt.ExchangeNotAvailable("503"), None)
        hold = sched._not_before - clock.monotonic()
        out.append(hold)
        clock.advance(hold)
    return out


@pytest.mark.parametrize("timeframe,cap", [("1s", 1.0), ("5s", 5.0), ("1m", 60.0)])
def test_polling_retries_at_most_once_a_bar(timeframe, cap):
    clock = ManualClock()
    holds = _holds(_schedule(clock, timeframe, polling=True), clock, 10)
    assert max(holds) <= cap + 1e-9
    assert holds[0] < holds[-1] or cap == 1.0  # still a backoff below the bar's length


def test_websocket_gap_fills_keep_the_full_backoff_and_a_sign_of_life_releases_them():
    clock = ManualClock()
    sched = _schedule(clock, "1s", polling=False)
    holds = _holds(sched, clock, 7)
    assert holds[-1] > 30  # one second bars, but no REST storm from many series while down
    sched.retry_now()  # the exchange answers again (probe, socket message)
    assert sched._not_before == 0.0


def test_the_first_failed_read_is_disconnected_at_once():
    clock = ManualClock()
    sched = _schedule(clock, "1m", polling=True)
    sched.on_error(ccxt.ExchangeNotAvailable("503"), None)
    assert sched.series.state is FeedState.DISCONNECTED
