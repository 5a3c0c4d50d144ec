"""Skipped and revised bars, and history shorter than asked, are counted, logged once per range
and told: assembler notes, series status, events-file records, Prometheus text, the dashboard.

Pure parts with a manual clock; the same paths against the simulator are in
tests/integration/test_skipped_bars.py.
"""

from __future__ import annotations

import json
import logging
import os

from rich.console import Console

from btccxt_cli.bars.assembler import BarAssembler
from btccxt_cli.bars.gaps import shortfall_text
from btccxt_cli.clock import ManualClock
from btccxt_cli.dashboard.view import DashboardView
from btccxt_cli.model import Candle, DataNote, FeedStatus, Snapshot
from btccxt_cli.runtime.state import RunMonitor
from btccxt_cli.sources.base import Series, SeriesParams

TF = 60_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % TF


def c(i: int, close: float = 1.5) -> Candle:
    return Candle(i * TF, 1.0, 2.0, 0.5, close, 10.0)


def test_a_skipped_range_is_one_note_with_its_bar_count():
    a = BarAssembler(TF, last_ts=9 * TF)
    a.on_rest([c(10), c(14), c(15)], since=10 * TF, now_ms=100 * TF)
    assert a.take_notes() == [("skipped", 11 * TF, 13 * TF, 3)]
    assert a.skipped_bars == 3 and a.take_notes() == []


def test_rest_revising_a_released_bar_is_noted_once():
    a = BarAssembler(TF, last_ts=9 * TF)
    a.on_rest([c(10), c(11), c(12)], since=10 * TF, now_ms=100 * TF)
    a.on_rest([c(11), c(12)], since=11 * TF, now_ms=100 * TF)  # the same values: nothing
    assert a.revised == 0 and a.take_notes() == []
    a.on_rest([c(11, close=1.7), c(12)], since=11 * TF, now_ms=100 * TF)
    a.on_rest([c(11, close=1.7), c(12)], since=11 * TF, now_ms=100 * TF)  # told already
    notes = a.take_notes()
    assert a.revised == 1 and len(notes) == 1
    kind, ts, was, now, released = notes[0]
    assert (kind, ts, was.close, now.close, released) == ("revised", 11 * TF, 1.5, 1.7, True)


def _kraken_series(clock: ManualClock) -> Series:
    p = SeriesParams(symbol="BTC/USD", timeframe="1m", backfill_bars=1000, exchange_id="kraken")
    return Series(p, exchange_now_ms=clock.time_ms, clock=clock)


def test_kraken_history_of_1000_gets_the_newest_720_and_says_so(caplog):
    clock = ManualClock(start_ms=T0 + 30_000)  # half way through a bar
    s = _kraken_series(clock)
    s.begin()
    forming = T0
    first = forming - 719 * TF  # kraken's answer: the newest 720 rows, the forming one last
    rows = [Candle(first + i * TF, 1.0, 2.0, 0.5, 1.5, 10.0) for i in range(720)]
    with caplog.at_level(logging.WARNING, logger="btccxt_cli.series"):
        s.on_rest(rows, since=forming - 1000 * TF)
    st = s.status()
    assert st.skipped == 281 and st.skipped_ranges == ((forming - 1000 * TF, first - TF, 281),)
    assert st.history_short == "kraken serves only its newest 720 1m bars: got 719 of 1000"
    assert [n.kind for n in st.notes] == ["skipped", "history"] and st.notes[1].asked == 1000
    assert st.notes[0].reason == "kraken serves only its newest 720 1m bars"
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 2, warned  # one line for the range (not per bar), one for history
    assert "281 1m bars skipped" in warned[0]


def test_a_skip_after_history_has_the_no_bars_reason_and_full_history_says_nothing():
    clock = ManualClock(start_ms=T0 + 30_000)
    p = SeriesParams(symbol="BTC/USDT", timeframe="1m", backfill_bars=5, exchange_id="binance")
    s = Series(p, exchange_now_ms=clock.time_ms, clock=clock)
    s.begin()
    s.on_rest([Candle(T0 - (5 - i) * TF, 1, 2, 0.5, 1.5, 1) for i in range(5)], since=T0 - 5 * TF)
    assert s.phase == s.LIVE and s.status().history_short == "" and s.status().notes == ()
    clock.advance(4 * 60)
    s.on_rest([Candle(T0, 1, 2, 0.5, 1.5, 1), Candle(T0 + 3 * TF, 1, 2, 0.5, 1.5, 1)], since=T0)
    st = s.status()
    assert st.skipped == 2 and st.notes[-1].reason.startswith("the exchange's REST answer has no bars")


def _status_with(notes: tuple[DataNote, ...], **kw) -> FeedStatus:
    return FeedStatus("BTC/USD", "1m", "rest", notes=notes, **kw)


def test_the_monitor_writes_each_note_once_and_says_when_some_were_not_kept(tmp_path):
    skip = DataNote(1, "skipped", T0, T0 + 2 * TF, 3, "the exchange's REST answer has no bars there")
    rev = DataNote(2, "revised", T0 + 5 * TF, T0 + 5 * TF, 1, "REST differs from the delivered bar",
                   was=c(1), now=c(1, close=1.7))
    hist = DataNote(5, "history", T0 - 999 * TF, T0, 719, "kraken serves only its newest 720 1m "
                    "bars: got 719 of 1000", asked=1000)
    statuses = [_status_with((skip,))]
    lines: list[str] = []
    mon = RunMonitor("t", statuses=lambda: statuses, events_path=tmp_path / "ev.jsonl",
                     on_line=lines.append, clock=ManualClock())
    mon.take_notes()
    statuses[0] = _status_with((skip, rev))
    mon.snapshot()  # a dashboard frame reads them too
    mon.on_state("BTC/USD", "LIVE")
    statuses[0] = _status_with((hist,))  # notes 3 and 4 fell off the status
    mon.close()
    recs = [json.loads(x) for x in (tmp_path / "ev.jsonl").read_text().splitlines()]
    kinds = [r["type"] for r in recs]
    assert kinds == ["skipped", "revised", "state", "notes", "history"], kinds
    assert {k: recs[0][k] for k in ("symbol", "timeframe", "from", "to", "count")} == {
        "symbol": "BTC/USD", "timeframe": "1m", "from": T0, "to": T0 + 2 * TF, "count": 3}
    assert recs[1]["was"][3] == 1.5 and recs[1]["now"][3] == 1.7
    assert recs[3]["not_listed"] == 2
    assert (recs[4]["asked"], recs[4]["got"]) == (1000, 719)
    assert any("3 bars skipped" in x for x in lines)
    assert any("kraken serves only its newest 720 1m bars: got 719 of 1000" in x for x in lines)


def test_metrics_count_skipped_and_revised_bars():
    from prometheus_client import generate_latest

    from btccxt_cli.runtime.metrics import RunMetrics

    st = FeedStatus("BTC/USD", "1m", "rest", skipped=281, revised=2)
    text = generate_latest(RunMetrics(lambda: [st], lambda: 0, "kraken").registry).decode()
    assert 'btccxt_skipped_bars_total{exchange="kraken",symbol="BTC/USD",timeframe="1m"} 281.0' in text
    assert 'btccxt_revised_bars_total{exchange="kraken",symbol="BTC/USD",timeframe="1m"} 2.0' in text


def _draw(snap: Snapshot, width: int) -> str:
    console = Console(width=width, height=40, record=True, color_system=None,
                      file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(DashboardView()(snap))
    console.file.close()
    return console.export_text()


def test_the_dashboard_shows_skipped_bars_where_there_is_room_and_the_key_columns_always():
    bar = Candle(T0, 1.0, 2.0, 0.5, 59153.2, 3.0)
    feeds = [FeedStatus("BTC/USD", "1m", "rest", state="LIVE", last_bar=bar, skipped=281, revised=1,
                        price_decimals=1)]
    snap = Snapshot("btccxt kraken rest BTC/USD", 10.0, feeds=feeds, events=["12:00:00 BTC/USD 1m: "
                    "281 bars skipped: kraken serves only its newest 720 1m bars"])
    wide = _draw(snap, 140)
    header = next(line for line in wide.splitlines() if line.startswith("symbol"))
    assert "skip" in header
    row = next(line for line in wide.splitlines() if line.startswith("BTC/USD"))
    assert "281/1r" in row.split()
    narrow = _draw(snap, 80)
    row = next(line for line in narrow.splitlines() if line.startswith("BTC/USD"))
    assert row.split()[:3] == ["BTC/USD", "1m", "LIVE"] and "59153.2" in row.split()
    assert "281 bars skipped" in narrow  # the event line, at any width


def test_shortfall_line_without_a_known_limit():
    assert shortfall_text("binance", "1s", 5, 10) == "binance has fewer 1s bars than asked: got 5 of 10"
    assert shortfall_text("kraken", "1m", 700, 1000) == "kraken has fewer 1m bars than asked: got 700 of 1000"


def _cached_series(clock: ManualClock, cache, backfill: int) -> Series:
    p = SeriesParams(symbol="BTC/USDT", timeframe="1m", backfill_bars=backfill, exchange_id="binance")
    return Series(p, exchange_now_ms=clock.time_ms, clock=clock, cache=cache, cache_key="binance")


def _bar(ts: int, close: float = 1.5) -> Candle:
    return Candle(ts, 1.0, 2.0, 0.5, close, 10.0)


def test_rest_revising_a_delivered_bar_is_told_and_the_cache_keeps_rests_record(tmp_path):
    from btccxt_cli.cache.sqlite import OhlcvCache

    cache = OhlcvCache(tmp_path / "c.sqlite")
    clock = ManualClock(start_ms=T0 + 30_000)
    s = _cached_series(clock, cache, 3)
    s.begin()
    s.on_rest([_bar(T0 - 3 * TF), _bar(T0 - 2 * TF), _bar(T0 - TF), _bar(T0)], since=T0 - 3 * TF)
    assert s.phase == s.LIVE and s.status().revised == 0
    s.on_rest([_bar(T0 - 2 * TF, close=1.9), _bar(T0 - TF), _bar(T0)], since=T0 - 2 * TF)
    st = s.status()
    assert st.revised == 1 and st.notes[-1].kind == "revised"
    assert st.notes[-1].reason == "REST differs from the delivered bar"
    assert [c.close for c in cache.read("binance", "BTC/USDT", "1m", T0 - 3 * TF, T0)] == [1.5, 1.9, 1.5]
    cache.close()


def test_the_newest_cached_bar_read_again_from_rest_with_other_values_is_a_revision(tmp_path):
    from btccxt_cli.cache.sqlite import OhlcvCache

    cache = OhlcvCache(tmp_path / "c.sqlite")
    cache.upsert("binance", "BTC/USDT", "1m", [_bar(T0 - i * TF) for i in range(5, 0, -1)])
    clock = ManualClock(start_ms=T0 + 30_000)
    s = _cached_series(clock, cache, 5)
    s.begin()
    s.warm_step()
    assert s.cached_bars == 4  # the newest cached bar is left for REST
    s.on_rest([_bar(T0 - TF, close=1.8), _bar(T0)], since=T0 - TF)
    st = s.status()
    assert st.bars["backfill"] == 5 and st.revised == 1
    assert st.notes[-1].reason == "REST differs from the cached bar"
    assert (st.notes[-1].was.close, st.notes[-1].now.close) == (1.5, 1.8)
    cache.close()


def test_history_ending_before_its_newest_bar_is_final_is_not_short(caplog):
    clock = ManualClock(start_ms=T0 + 100)  # 0.1 s into a bar: the one before is not settled
    p = SeriesParams(symbol="BTC/USDT", timeframe="1m", backfill_bars=5, exchange_id="binance")
    s = Series(p, exchange_now_ms=clock.time_ms, clock=clock)
    s.begin()
    with caplog.at_level(logging.WARNING, logger="btccxt_cli.series"):
        s.on_rest([Candle(T0 - (5 - i) * TF, 1, 2, 0.5, 1.5, 1) for i in range(5)], since=T0 - 5 * TF)
    st = s.status()
    assert s.phase == s.LIVE and st.bars["backfill"] == 4  # the fifth comes as a live bar
    assert st.history_short == "" and st.notes == () and not caplog.records
