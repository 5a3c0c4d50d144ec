"""Bar grids: where each exchange's bars of each timeframe open, at known dates."""

from __future__ import annotations

import random
from datetime import datetime, timezone

import pytest

from btccxt_cli.bars.assembler import BarAssembler
from btccxt_cli.bars.gaps import find_gaps, plan_requests, range_bars
from btccxt_cli.model import Candle
from btccxt_cli.timeframes import HK_MS, BarGrid, bar_grid


def ms(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> int:
    return int(datetime(y, mo, d, h, mi, tzinfo=timezone.utc).timestamp() * 1000)


LEAP = ms(2024, 2, 29, 13, 7)  # a Thursday afternoon in a leap February

# (exchange, timeframe, a time, the open and close of the bar containing it)
TABLE = [
    ("binance", "1m", LEAP, ms(2024, 2, 29, 13, 7), ms(2024, 2, 29, 13, 8)),
    ("binance", "4h", LEAP, ms(2024, 2, 29, 12), ms(2024, 2, 29, 16)),
    ("binance", "12h", LEAP, ms(2024, 2, 29, 12), ms(2024, 3, 1)),
    ("binance", "1d", LEAP, ms(2024, 2, 29), ms(2024, 3, 1)),
    ("binance", "3d", LEAP, ms(2024, 2, 29), ms(2024, 3, 3)),  # multiples of 3 days since 1970
    ("binance", "1w", LEAP, ms(2024, 2, 26), ms(2024, 3, 4)),  # Monday to Monday
    ("binance", "1M", LEAP, ms(2024, 2, 1), ms(2024, 3, 1)),  # 29 days
    ("binance", "1M", ms(2023, 12, 31, 23, 59), ms(2023, 12, 1), ms(2024, 1, 1)),
    ("binance", "1M", ms(2024, 3, 1), ms(2024, 3, 1), ms(2024, 4, 1)),  # on the open itself
    ("binance", "1w", ms(2024, 3, 4), ms(2024, 3, 4), ms(2024, 3, 11)),
    ("okx", "6h", LEAP, ms(2024, 2, 29, 12), ms(2024, 2, 29, 18)),  # 6Hutc
    ("okx", "12h", LEAP, ms(2024, 2, 29, 12), ms(2024, 3, 1)),
    ("okx", "1d", LEAP, ms(2024, 2, 29), ms(2024, 3, 1)),  # 1Dutc, not 16:00 UTC
    ("okx", "1w", LEAP, ms(2024, 2, 26), ms(2024, 3, 4)),  # 1Wutc
    ("okx", "1M", LEAP, ms(2024, 2, 1), ms(2024, 3, 1)),  # 1Mutc
    ("okx", "3M", LEAP, ms(2024, 1, 1), ms(2024, 4, 1)),  # 3Mutc: quarters
    ("okx", "3M", ms(2024, 11, 30), ms(2024, 10, 1), ms(2025, 1, 1)),
    ("bybit", "1w", LEAP, ms(2024, 2, 26), ms(2024, 3, 4)),  # W
    ("bybit", "1M", LEAP, ms(2024, 2, 1), ms(2024, 3, 1)),  # M
    ("bitget", "1w", LEAP, ms(2024, 2, 26), ms(2024, 3, 4)),  # 1Wutc
    ("bitget", "1M", ms(2023, 2, 28, 23), ms(2023, 2, 1), ms(2023, 3, 1)),  # 28 days
    ("kucoin", "1w", LEAP, ms(2024, 2, 29), ms(2024, 3, 7)),  # 1week: Thursday to Thursday
    ("kucoin", "1w", ms(2024, 2, 28, 23, 59), ms(2024, 2, 22), ms(2024, 2, 29)),
    ("kucoin", "1M", ms(2024, 1, 31, 23, 59), ms(2024, 1, 1), ms(2024, 2, 1)),
    ("kraken", "1w", LEAP, ms(2024, 2, 29), ms(2024, 3, 7)),  # 10080: multiples of 7 days
    ("kraken", "2w", LEAP, ms(2024, 2, 17), ms(2024, 3, 3)),  # 21600 minutes: 15 days
    ("kraken", "1d", LEAP, ms(2024, 2, 29), ms(2024, 3, 1)),
    (None, "1w", LEAP, ms(2024, 2, 26), ms(2024, 3, 4)),  # an exchange not in the table
    (None, "1y", LEAP, ms(2024, 1, 1), ms(2025, 1, 1)),
]


@pytest.mark.parametrize("ex, tf, at, open_, close", TABLE)
def test_grid_of_each_exchange_at_known_dates(ex: str | None, tf: str, at: int, open_: int,
                                              close: int) -> None:
    g = bar_grid(ex, tf)
    assert g.open_of(at) == open_
    assert g.close_of(open_) == close == g.next_open(at)
    assert g.prev_open(close) == open_ and g.shift(open_, 1) == close
    assert g.length(open_) == close - open_
    assert g.on_grid(open_) and not g.on_grid(open_ + 1)
    assert g.ceil(open_) == open_ and g.ceil(open_ + 1) == close
    assert g.count(open_, close) == 2 and g.bars_in(open_, close) == 1
    assert g.opens_between(open_ - 1, close + 1) == [open_, close]


def test_okx_hong_kong_months_open_at_16_utc_the_day_before() -> None:
    hk = BarGrid(months=1, offset_ms=HK_MS)
    assert hk.open_of(LEAP) == ms(2024, 1, 31, 16)  # 13:07 UTC on the 29th is still February HKT
    assert hk.close_of(ms(2024, 1, 31, 16)) == ms(2024, 2, 29, 16)
    assert hk.open_of(ms(2024, 2, 29, 16)) == ms(2024, 2, 29, 16)  # March HKT begins


GRIDS = [bar_grid(ex, tf) for ex, tf in (("binance", "1w"), ("binance", "1M"), ("okx", "3M"),
                                         ("kucoin", "1w"), ("kraken", "2w"), ("binance", "3d"))]
GRIDS += [BarGrid(months=1, offset_ms=HK_MS), BarGrid.fixed(604_800_000, 316_800_000)]


@pytest.mark.parametrize("g", GRIDS, ids=str)
def test_grid_arithmetic_is_consistent_over_a_century(g: BarGrid) -> None:
    rnd = random.Random(7)
    for _ in range(2_000):
        t = rnd.randrange(-2_000_000_000_000, 4_000_000_000_000)  # 1906 .. 2096
        o = g.open_of(t)
        assert o <= t < g.close_of(o)
        i = g.index(t)
        assert g.open_at(i) == o and g.open_at(i + 1) == g.close_of(o)
        assert g.index(g.prev_open(o)) == i - 1
        assert 28 * 86_400_000 <= g.length(o) or g.regular
    opens = g.opens_between(0, 400 * 86_400_000)
    assert opens == sorted(set(opens)) and all(g.on_grid(x) for x in opens)
    assert len(opens) == g.bars_in(0, 400 * 86_400_000) == g.count(opens[0], opens[-1])


def test_a_grid_needs_a_length() -> None:
    with pytest.raises(ValueError):
        BarGrid()
    with pytest.raises(ValueError):
        BarGrid.fixed(0)


# --------------------------------------------------------------------------- gaps and plans
def test_gaps_and_request_plans_follow_monday_weeks_and_months() -> None:
    week = bar_grid("binance", "1w")
    mondays = [ms(2024, 1, 1) + i * 604_800_000 for i in range(10)]  # 2024-01-01 is a Monday
    have = mondays[:3] + mondays[5:]
    assert find_gaps(have, week, mondays[0], mondays[-1] + 1) == [(mondays[3], mondays[4])]
    month = bar_grid("binance", "1M")
    have = [ms(2024, 1, 1), ms(2024, 2, 1), ms(2024, 5, 1)]
    gaps = find_gaps(have, month, ms(2024, 1, 1), ms(2024, 7, 1))
    assert gaps == [(ms(2024, 3, 1), ms(2024, 4, 1)), (ms(2024, 6, 1), ms(2024, 6, 1))]
    assert [range_bars(r, month) for r in gaps] == [2, 1]
    assert plan_requests([(ms(2024, 1, 1), ms(2024, 12, 1))], month, 5) == [
        (ms(2024, 1, 1), ms(2024, 6, 1)), (ms(2024, 6, 1), ms(2024, 11, 1)),
        (ms(2024, 11, 1), ms(2025, 1, 1))]


def _bar(ts: int) -> Candle:
    return Candle(ts, 1.0, 2.0, 0.5, 1.5, 10.0)


def test_assembler_releases_monday_weeks_and_calendar_months() -> None:
    # before grids, the assembler expected a week at epoch multiples (Thursdays): binance's
    # Monday bars were never the expected one, so nothing was released and REST read again
    for ex, tf, opens in (
        ("binance", "1w", [ms(2024, 2, 5), ms(2024, 2, 12), ms(2024, 2, 19), ms(2024, 2, 26)]),
        ("binance", "1M", [ms(2023, 12, 1), ms(2024, 1, 1), ms(2024, 2, 1), ms(2024, 3, 1)]),
    ):
        g = bar_grid(ex, tf)
        asm = BarAssembler(g, last_ts=g.prev_open(opens[0]))
        now = opens[-1] + 3_600_000  # the last bar is forming
        out = asm.on_rest([_bar(t) for t in opens], since=opens[0], now_ms=now)
        assert [e.candle.ts for e in out] == opens[:-1]
        assert asm.expected == opens[-1]
        assert asm.rest_due(0) == g.close_of(opens[-1])  # no read before that bar has closed
        assert not asm.has_gap()
        # a month the exchange has no bar for is skipped, not waited for
        later = g.shift(opens[-1], 2)
        out = asm.on_rest([_bar(later)], since=opens[-1], now_ms=g.close_of(later) + 1)
        assert [e.candle.ts for e in out] == [later] and asm.skipped[-1] == (opens[-1], g.shift(later, -1))


# --------------------------------------------------------------------------- an unknown rule
def test_series_follows_rest_bars_that_open_elsewhere_than_the_rule_says(caplog) -> None:
    """An exchange outside the table with Sunday weeks: the series takes the exchange's
    alignment from its first REST answer (REST is its record) instead of waiting forever."""
    from btccxt_cli.sources.base import Series, SeriesParams

    sundays = [ms(2024, 2, 4) + i * 604_800_000 for i in range(5)]  # the last one is forming
    now = sundays[-1] + 3_600_000
    s = Series(SeriesParams("X/USDT", "1w", backfill_bars=4, exchange_id="elsewhere"),
               exchange_now_ms=lambda: now)
    s.begin()
    since, _limit = s.request()
    assert since == ms(2024, 1, 29)  # four weeks back on the rule's guess: Monday weeks
    with caplog.at_level("WARNING"):
        out = s.on_rest([_bar(t) for t in sundays if t >= since], since)
    assert [e.candle.ts for e in out] == sundays[:4]  # from the first week at or after `since`
    assert s.grid == BarGrid.fixed(604_800_000, sundays[0]) and s.assembler.expected == sundays[4]
    assert "following the exchange" in caplog.text and "Sun 2024-02-04" in caplog.text
    assert s.rest_due_in(0) > 0  # no read before the forming week closes: no loop


def test_series_ends_when_month_bars_open_elsewhere() -> None:
    """Months that do not open on the 1st cannot be followed: the feed says so and ends
    (before: it read REST in a loop for ever)."""
    from btccxt_cli.model import FeedState
    from btccxt_cli.sources.base import Series, SeriesParams

    now = ms(2024, 3, 20)
    s = Series(SeriesParams("X/USDT", "1M", backfill_bars=2, exchange_id="elsewhere"),
               exchange_now_ms=lambda: now)
    s.begin()
    since, _ = s.request()
    assert s.on_rest([_bar(ms(2024, 1, 15)), _bar(ms(2024, 2, 14))], since) == []
    assert s.phase == s.OVER and s.rest_due_in(0) is None
    events = []
    while (ev := s.pipe.get(0)) is not None:
        events.append(ev)
    assert [e.state for e in events if e.kind == "state"][-1] is FeedState.NOTSUPPORTED_TF
    assert events[-1].kind == "end" and "not on the 1st of a month" in events[-1].message
