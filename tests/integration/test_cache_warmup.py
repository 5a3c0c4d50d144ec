"""Feeds warm up from the local cache: cached history first, REST only for what is missing."""

from __future__ import annotations

from btccxt_cli.bt.store import CCXTStore
from btccxt_cli.cache.sqlite import OhlcvCache

from .harness import assert_matches_truth, run_feeds

SRC = "binance@sim:seed-1"  # the simulator's bars, named by the seed it reports


def test_second_run_reads_history_from_the_cache_and_refetches_only_the_newest(sim, tmp_path):
    db = tmp_path / "ohlcv.sqlite"
    first = CCXTStore("binance", sim_url=sim.url("binance"), cache=db)
    res1 = run_feeds(first, ["BTC/USDT"], live_bars=2, backfill_bars=450, ohlcv_limit=100)
    assert_matches_truth(sim, "binance", "BTC/USDT", "1s", res1.bars["BTC/USDT"], tf_ms=1000)
    cache = OhlcvCache(db)
    assert cache.count(SRC, "BTC/USDT", "1s") >= 452  # history and live, written back
    assert cache.count("binance", "BTC/USDT", "1s") == 0, "simulator bars never pose as binance's"

    sim.reset_stats("binance")
    second = CCXTStore("binance", sim_url=sim.url("binance"), cache=db)
    marks = {}

    def on_next(strat):
        if "history_calls" not in marks and any(s.source == "live" for s in strat.p.result.bars["BTC/USDT"]):
            marks["history_calls"] = strat.datas[0].status().rest_calls

    res2 = run_feeds(second, ["BTC/USDT"], live_bars=2, backfill_bars=450, ohlcv_limit=100, on_next=on_next)
    seen = res2.bars["BTC/USDT"]
    assert_matches_truth(sim, "binance", "BTC/USDT", "1s", seen, tf_ms=1000)
    assert len(seen) >= 452
    # the first run needed 5 pages of 100; now one read starting at the newest cached bar
    assert marks["history_calls"] <= 2, marks
    series_cached = [e for e in seen if e.source == "backfill"]
    assert len(series_cached) >= 445


def test_a_changed_newest_bar_is_taken_from_the_exchange(sim, tmp_path):
    db = tmp_path / "ohlcv.sqlite"
    store = CCXTStore("binance", sim_url=sim.url("binance"), cache=db)
    res = run_feeds(store, ["ETH/USDT"], live_bars=1, backfill_bars=30)
    seen = res.bars["ETH/USDT"]
    cache = OhlcvCache(db)
    newest = cache.read(SRC, "ETH/USDT", "1s")[-1]
    cache.upsert(SRC, "ETH/USDT", "1s", [newest._replace(close=newest.close * 2)])  # stale
    store2 = CCXTStore("binance", sim_url=sim.url("binance"), cache=db)
    res2 = run_feeds(store2, ["ETH/USDT"], live_bars=1, backfill_bars=30)
    assert_matches_truth(sim, "binance", "ETH/USDT", "1s", res2.bars["ETH/USDT"], tf_ms=1000)
    assert any(s.ts == newest.ts for s in res2.bars["ETH/USDT"]), "the bar was delivered"
    assert seen
