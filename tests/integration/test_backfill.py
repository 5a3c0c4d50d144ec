"""``Backfiller`` against the simulator through real ccxt: exact bars, resume, faults, gaps."""

from __future__ import annotations

import math
from typing import Any

import pytest

from btccxt_cli.cache.backfill import Backfiller, request_limit
from btccxt_cli.cache.sqlite import OhlcvCache
from btccxt_cli.clock import SYSTEM_CLOCK, ManualClock
from btccxt_cli.errors import TemporaryError, UnsupportedError
from btccxt_cli.exchange.factory import make_exchange
from btccxt_cli.exchange.retry import Backoff
from btccxt_cli.sim.market import LISTING_MS

pytestmark = pytest.mark.live

M = 60_000
SYM = "BTC/USDT"


def window(sim: Any, bars: int, *, back: int = 10) -> tuple[int, int]:
    """A fixed window of ``bars`` closed 1m bars ending ``back`` bars before now."""
    now = sim.now_ms()
    until = now - now % M - back * M
    return until - bars * M, until


def ohlcv_requests(sim: Any, ex: str) -> int:
    rest = sim.stats(ex)["rest"]
    if ex == "binance":
        return rest.get("/api/v3/klines", 0)
    return rest.get("/api/v5/market/candles", 0) + rest.get("/api/v5/market/history-candles", 0)


@pytest.fixture
def cache(tmp_path):
    with OhlcvCache(tmp_path / "ohlcv.sqlite") as c:
        yield c


def filler(sim: Any, cache: OhlcvCache, since: int, until: int | None, *, ex: str = "binance",
           symbol: str = SYM, client: Any = None, **kw: Any) -> Backfiller:
    client = client or make_exchange(ex, sim_url=sim.url(ex))
    kw.setdefault("backoff", Backoff(0.05, 0.4))
    # these tests read the bars back by the exchange's name: named so on purpose (a
    # Backfiller left to name them calls them the simulator's, tested below)
    kw.setdefault("source", ex)
    return Backfiller(client, cache, exchange_id=ex, symbol=symbol, timeframe="1m",
                      since_ms=since, until_ms=until, **kw)


def test_request_limit_comes_from_ccxt_features():
    assert request_limit(make_exchange("binance")) == 1000
    assert request_limit(make_exchange("okx")) == 300


def test_backfill_equals_truth_binance(sim, cache):
    since, until = window(sim, 6_000)
    seen: list[tuple[int, int]] = []
    bf = filler(sim, cache, since, until, on_progress=lambda d, e: seen.append((d, e)))
    res = bf.run()
    truth = sim.truth("binance", SYM, "1m", since, until)
    assert len(truth) == 6_000
    assert cache.read("binance", SYM, "1m", since, until) == truth
    assert (res.bars_fetched, res.bars_written, res.cached_bars, res.expected_bars) == (6_000,) * 4
    assert res.requests == 6 == ohlcv_requests(sim, "binance")
    assert res.gaps is not None and res.gaps.complete and not res.gaps.exchange
    assert not res.interrupted and res.retries == 0
    assert seen[0] == (0, 6_000) and seen[-1] == (6_000, 6_000) and len(seen) == 7


def test_backfill_equals_truth_okx(sim, cache):
    since, until = window(sim, 700)
    res = filler(sim, cache, since, until, ex="okx").run()
    assert cache.read("okx", SYM, "1m", since, until) == sim.truth("okx", SYM, "1m", since, until)
    assert res.requests == math.ceil(700 / 300) == ohlcv_requests(sim, "okx")
    assert res.gaps is not None and res.gaps.complete


def test_resume_after_stop_fetches_only_what_is_missing(sim, cache):
    since, until = window(sim, 5_000)
    client = make_exchange("binance", sim_url=sim.url("binance"))
    pages: list[int] = []

    def stop_after_two(done: int, expected: int) -> None:
        if done:
            pages.append(done)
        if len(pages) == 2:
            bf.request_stop()

    bf = filler(sim, cache, since, until, client=client, on_progress=stop_after_two)
    first = bf.run()
    assert first.interrupted and first.requests == 2
    assert cache.count("binance", SYM, "1m") == 2_000
    assert first.gaps is not None and first.gaps.missing == ((since + 2_000 * M, until - M),)
    assert not first.gaps.exchange

    sim.reset_stats("binance")
    second = filler(sim, cache, since, until, client=client).run()
    # the 3,000 missing bars plus the newest cached one: 3,001 bars in 4 requests
    assert second.expected_bars == 3_001 and second.requests == 4 == ohlcv_requests(sim, "binance")
    assert second.bars_written == 3_000  # the re-read newest bar was unchanged
    stored = cache.read("binance", SYM, "1m", since, until)
    assert stored == sim.truth("binance", SYM, "1m", since, until)
    assert cache.count("binance", SYM, "1m") == 5_000  # no duplicates
    assert second.gaps is not None and second.gaps.complete and not second.interrupted


def test_keyboard_interrupt_keeps_committed_pages(sim, cache):
    since, until = window(sim, 5_000)

    def interrupt_after_three(done: int, expected: int) -> None:
        if done >= 3_000:
            raise KeyboardInterrupt

    bf = filler(sim, cache, since, until, on_progress=interrupt_after_three)
    with pytest.raises(KeyboardInterrupt):
        bf.run()
    assert cache.count("binance", SYM, "1m") == 3_000
    assert bf.result is not None and bf.result.bars_written == 3_000
    assert bf.result.gaps is not None and bf.result.gaps.missing_bars == 2_000
    filler(sim, cache, since, until).run()
    assert cache.read("binance", SYM, "1m", since, until) == sim.truth("binance", SYM, "1m", since, until)


def test_newest_cached_bar_is_always_refetched(sim, cache):
    since, until = window(sim, 1_500)
    filler(sim, cache, since, until).run()
    newest = cache.read("binance", SYM, "1m", until - M, until)[0]
    cache.upsert("binance", SYM, "1m", [newest._replace(close=newest.close + 1, volume=0.5)])
    sim.reset_stats("binance")
    res = filler(sim, cache, since, until).run()
    assert (res.requests, res.expected_bars, res.bars_fetched, res.bars_written) == (1, 1, 1, 1)
    assert ohlcv_requests(sim, "binance") == 1
    assert cache.read("binance", SYM, "1m", until - M, until) == [newest]
    # nothing cached in the window: only the older range is fetched, the newest bar is outside
    sim.reset_stats("binance")
    res = filler(sim, cache, since - 10 * M, since).run()
    assert res.expected_bars == 10 and res.requests == 1


def test_only_closed_bars_are_stored(sim_factory, cache):
    clock = ManualClock(start_ms=SYSTEM_CLOCK.time_ms() // M * M + 25_000)  # mid-bar
    sim = sim_factory(exchanges=("binance",), clock=clock)
    now = sim.now_ms()
    forming = now - now % M
    res = filler(sim, cache, forming - 300 * M, None, clock=clock).run()
    assert res.end_ms == forming
    assert cache.bounds("binance", SYM, "1m") == (forming - 300 * M, forming - M)
    assert cache.read("binance", SYM, "1m", forming - 300 * M, forming) == \
        sim.truth("binance", SYM, "1m", forming - 300 * M, forming)
    # an until in the future changes nothing: the forming bar is never stored
    clock.advance(20)  # still inside the same bar
    res = filler(sim, cache, forming - 5 * M, forming + 10 * M, clock=clock).run()
    assert res.end_ms == forming and cache.bounds("binance", SYM, "1m")[1] == forming - M


def test_429_with_retry_after_slows_down_without_losing_bars(sim, cache):
    since, until = window(sim, 3_000)
    bf = filler(sim, cache, since, until)
    bf.prepare()  # markets and clock first, so the injected errors hit the klines requests
    sim.rest_errors("binance", status=429, count=2, retry_after=1)
    res = bf.run()
    assert res.rate_limit_waits == 2 and res.retries == 2
    assert res.waited_s >= 2.0  # Retry-After honoured, not the 0.05 s backoff
    assert res.seconds >= 2.0
    assert res.requests == 5 == ohlcv_requests(sim, "binance")
    assert cache.read("binance", SYM, "1m", since, until) == sim.truth("binance", SYM, "1m", since, until)


def test_outage_and_5xx_back_off_and_recover(sim, cache):
    since, until = window(sim, 3_000)
    bf = filler(sim, cache, since, until, backoff=Backoff(0.1, 0.4), max_retries=30)
    bf.prepare()
    sim.outage("binance", 0.6, ws=False, rest=True)
    res = bf.run()
    assert res.retries >= 1 and res.rate_limit_waits == 0
    assert cache.read("binance", SYM, "1m", since, until) == sim.truth("binance", SYM, "1m", since, until)
    bf = filler(sim, cache, since - 500 * M, since, ex="okx", backoff=Backoff(0.05, 0.1))
    bf.prepare()
    sim.rest_errors("okx", status=502, count=2)
    res = bf.run()
    assert res.retries == 2 and res.gaps is not None and res.gaps.complete


def test_gives_up_after_max_retries_and_keeps_what_is_stored(sim, cache):
    since, until = window(sim, 3_000)

    def fail_after_first_page(done: int, expected: int) -> None:
        if done == 1_000:
            sim.rest_errors("binance", status=500, count=10)

    bf = filler(sim, cache, since, until, max_retries=3, backoff=Backoff(0.01, 0.02),
                on_progress=fail_after_first_page)
    with pytest.raises(TemporaryError, match="gave up after 3 failed attempts") as info:
        bf.run()
    assert "rerun" in str(info.value)
    assert cache.count("binance", SYM, "1m") == 1_000
    assert bf.result is not None and bf.result.requests == 4 and bf.result.retries == 2
    assert bf.result.gaps is not None and bf.result.gaps.missing_bars == 2_000


@pytest.mark.parametrize("ex", ["binance", "okx"])
def test_history_starting_after_since_is_an_exchange_gap(sim, cache, ex):
    since, until = LISTING_MS - 400 * M, LISTING_MS + 500 * M  # listing: 2017-07-14 02:40 UTC
    first = LISTING_MS - LISTING_MS % M + (M if LISTING_MS % M else 0)
    res = filler(sim, cache, since, until, ex=ex).run()
    assert res.gaps is not None
    assert res.gaps.exchange == ((since, first - M),)
    assert res.gaps.missing == () and res.gaps.complete
    assert cache.read(ex, SYM, "1m", since, until) == sim.truth(ex, SYM, "1m", since, until)
    assert cache.empty_ranges(ex, SYM, "1m") == [(since, first - M)]
    sim.reset_stats(ex)
    again = filler(sim, cache, since, until, ex=ex).run()  # the known-empty range is not asked again
    assert again.requests == 1 and again.expected_bars == 1
    assert again.gaps is not None and again.gaps.exchange == res.gaps.exchange


def test_unknown_symbol_and_timeframe_fail_before_any_download(sim, cache):
    since, until = window(sim, 100)
    with pytest.raises(UnsupportedError, match="unknown symbol 'BTC/USDX'.*did you mean 'BTC/USDT'"):
        filler(sim, cache, since, until, symbol="BTC/USDX").run()
    client = make_exchange("binance", sim_url=sim.url("binance"))
    with pytest.raises(UnsupportedError, match="unknown timeframe '7m'"):
        Backfiller(client, cache, symbol=SYM, timeframe="7m", since_ms=since, until_ms=until).run()
    with pytest.raises(UnsupportedError, match="not a timeframe"):
        Backfiller(client, cache, symbol=SYM, timeframe="1x", since_ms=since, until_ms=until)
    assert ohlcv_requests(sim, "binance") == 0
    assert cache.series() == []


def test_limit_is_capped_to_what_the_exchange_returns(sim, cache):
    since, until = window(sim, 650)
    res = filler(sim, cache, since, until, ex="okx", limit=5_000).run()
    assert res.limit == 300 and res.requests == 3
    res = filler(sim, cache, since - 100 * M, since, limit=40).run()
    assert res.limit == 40 and res.requests == 3  # a fresh binance series: 100 bars
    assert cache.read("binance", SYM, "1m", since - 100 * M, since) == \
        sim.truth("binance", SYM, "1m", since - 100 * M, since)


def test_request_stop_ends_a_long_retry_wait_at_once(sim, cache):
    import threading

    since, until = window(sim, 2_000)
    waiting = threading.Event()

    class LongDelays:  # our own policy object: the first failure asks for a 60 s wait
        def failure(self) -> float:
            waiting.set()
            return 60.0

        def success(self) -> None:
            pass

    bf = filler(sim, cache, since, until, backoff=LongDelays())
    bf.prepare()
    sim.rest_errors("binance", status=503, count=1)
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(bf.run()))
    t.start()
    assert waiting.wait(10)
    bf.request_stop()
    t.join(5)
    assert not t.is_alive()
    res = out[0]
    assert res.interrupted and res.retries == 1 and res.bars_written == 0
    assert res.gaps is not None and res.gaps.missing_bars == 2_000


@pytest.mark.parametrize("ex, tf", [("binance", "1s"), ("binance", "4h"), ("okx", "1h"),
                                    ("okx", "1d")])
def test_other_timeframes_equal_truth(sim, cache, ex, tf):
    from btccxt_cli.timeframes import timeframe_ms

    t = timeframe_ms(tf)
    now = sim.now_ms()
    until = now - now % t - 2 * t
    since = until - 350 * t
    client = make_exchange(ex, sim_url=sim.url(ex))
    bf = Backfiller(client, cache, symbol=SYM, timeframe=tf, since_ms=since, until_ms=until)
    res = bf.run()
    assert cache.read(bf.source, SYM, tf, since, until) == sim.truth(ex, SYM, tf, since, until)
    assert res.cached_bars == 350 and res.gaps is not None and res.gaps.complete


def test_a_simulators_bars_are_cached_under_its_own_name_not_the_exchanges(sim, cache):
    """A library user's Backfiller on a client pointed at the simulator, with no source named:
    the bars are the simulator's (``binance@sim:<identity>``), never posing as binance's."""
    since, until = window(sim, 120)
    Backfiller(make_exchange("binance", sim_url=sim.url("binance")), cache, symbol=SYM,
               timeframe="1m", since_ms=since, until_ms=until).run()
    (source, symbol, tf, bars, _, _), = cache.series()
    assert source.startswith("binance@sim:") and (symbol, tf, bars) == (SYM, "1m", 120)
