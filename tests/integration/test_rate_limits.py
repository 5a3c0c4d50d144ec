"""Rate limits: request weight is respected, 429s are honoured, drops don't become REST storms."""

from __future__ import annotations

import pytest

from btccxt_cli.bt.store import CCXTStore

from .harness import assert_matches_truth, run_feeds

NAMES = [f"C{i:03d}/USDT" for i in range(50)]


@pytest.mark.long
def test_rest_mode_with_50_symbols_stays_within_the_request_weight(sim_factory):
    sim = sim_factory(exchanges=("binance",), symbols={"binance": NAMES}, weight_limit=300)
    store = CCXTStore("binance", sim_url=sim.url("binance"), weight_limit=300)
    res = run_feeds(store, NAMES, live_bars=10**9, backfill_start=False, timeout=25)
    assert res.timed_out  # the run was stopped by time, as intended
    weight = sim.stats("binance")["weight"]
    assert weight["answered_418"] == 0, "never banned"
    assert weight["answered_429"] == 0, "never even rate limited"
    assert weight["peak_1m"] <= 300
    assert store.gate.weight_pauses >= 1, "the store paused before the limit"
    for sym in NAMES:
        assert_matches_truth(sim, "binance", sym, "1s", res.bars[sym], tf_ms=1000)


@pytest.mark.long
def test_a_reconnect_storm_does_not_become_a_rest_storm(sim_factory):
    names = NAMES[:10]
    sim = sim_factory(exchanges=("binance",), symbols={"binance": names})
    store = CCXTStore("binance", sim_url=sim.url("binance"))
    drops = {"n": 0, "at": 0}

    def on_next(strat):
        live = min(sum(s.source == "live" for s in strat.p.result.bars[d._name]) for d in strat.datas)
        if drops["n"] < 5 and live >= drops["at"] + 2:
            if drops["n"] == 0:
                sim.reset_stats("binance")
            drops["n"] += 1
            drops["at"] = live
            sim.drop("binance", mode="reset")

    res = run_feeds(store, names, live_bars=14, backfill_bars=2, use_websocket=True, timeout=90,
                    on_next=on_next, ws_reconnect_delay=0.2, ws_max_reconnect_delay=1.0)
    assert not res.timed_out and drops["n"] == 5
    for sym in names:
        assert_matches_truth(sim, "binance", sym, "1s", res.bars[sym], tf_ms=1000)
    klines = sim.stats("binance")["rest"].get("/api/v3/klines", 0)
    # at most a gap fill or two per symbol per drop, never a poll per message
    assert klines <= len(names) * (2 * drops["n"] + 1), klines
