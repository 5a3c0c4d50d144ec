"""bitget and kraken end to end: CCXTStore + CCXTFeed in cerebro against their simulated venues.

Backfill then live 1s bars (``1s`` is a simulator extra on both, see docs/simulator.md; on
kraken it travels as interval ``2``), in websocket and rest mode, and a TCP reset mid-run: every
bar the strategy sees equals the simulator's truth, once, in order, contiguous. Neither
exchange's candle pushes carry a closed flag, so bars close by the later-candle rule.

Both venues answer a subscription with a snapshot of recent candles (the closed ones final), as
the real exchanges do. The data core releases those with source "live" when they arrive before
the REST backfill, so "live" does not mean "formed after the start" here: the tests count bars
by their open time instead.

kraken's ccxt ``rateLimit`` is 1000 ms per public call: polling two 1 s series needs two calls a
second, so the rest-mode run lifts the limiter (the real kraken could not be polled that fast).
"""

from __future__ import annotations

from typing import Any

import pytest

from btccxt_cli.bt.store import CCXTStore

from .harness import assert_matches_truth, check_history, run_feeds
from .simtools import FAST, states

pytestmark = pytest.mark.live

EXCHANGES = ["bitget", "kraken"]
SYMBOLS = {"bitget": ["BTC/USDT", "ETH/USDT:USDT"], "kraken": ["BTC/USD", "ETH/USDT"]}


def bars_from(strat: Any, t_ms: int) -> int:
    """The fewest bars opening at or after ``t_ms`` that any data has seen."""
    bars = strat.p.result.bars
    return min(sum(s.ts >= t_ms for s in bars[d._name]) for d in strat.datas)


def stop_after(t_ms: int, n: int, then: Any = None, live: bool = False) -> Any:
    """An on_next hook: stop once every data has ``n`` bars opening at or after ``t_ms``
    (with ``live``: and its newest bar came live).

    Counting by time, not by ``source == "live"``: both venues open each subscription with a
    snapshot of recent candles, which the data core releases with source "live" although they
    are history (see the module docstring). ``live``: kraken's REST pace (one call a second)
    can bring a series' backfill up to the present after ``t_ms`` + ``n`` bars.
    """
    def hook(strat: Any) -> None:
        if then is not None:
            then(strat)
        bars = strat.p.result.bars
        if bars_from(strat, t_ms) >= n and (not live or all(
                bars[d._name] and bars[d._name][-1].source == "live" for d in strat.datas)):
            strat.env.runstop()

    return hook


@pytest.mark.parametrize("exchange", EXCHANGES)
@pytest.mark.parametrize("mode", ["websocket", "rest"])
def test_backfill_then_live_bars_equal_truth(sim_factory: Any, exchange: str, mode: str) -> None:
    sim = sim_factory(exchanges=(exchange,))
    config = {"rateLimit": 50} if exchange == "kraken" and mode == "rest" else None
    store = CCXTStore(exchange, sim_url=sim.url(exchange), config=config)
    kw = {"use_websocket": True} if mode == "websocket" else {}
    t0 = sim.now_ms()
    res = run_feeds(store, SYMBOLS[exchange], live_bars=10**9, backfill_bars=5, timeout=30,
                    on_next=stop_after(t0 + 1_000, 3, live=True), **kw)
    assert not res.timed_out
    for sym in SYMBOLS[exchange]:
        seen = res.bars[sym]
        assert_matches_truth(sim, exchange, sym, "1s", seen, tf_ms=1000)
        # history first (how far back depends on the exchange's start-up time), then live
        assert seen[0].source == "backfill" and seen[0].ts < t0
        assert sum(s.source == "backfill" for s in seen) >= 4 and sum(s.ts > t0 for s in seen) >= 3
        assert seen[-1].source == "live"
        if mode == "rest":
            check_history(seen, 5)
        else:  # the subscription snapshot may deliver the history before the REST backfill
            assert {s.source for s in seen} <= {"backfill", "live"}
        st = states(res, sym)
        assert st[:2] == ["DELAYED", "LIVE"] and "DISCONNECTED" not in st, st
    stats = sim.stats(exchange)
    assert stats["unknown_paths"] == {}
    # one socket carries every series (bitget: spot and swap alike); none in rest mode
    assert stats["ws_connections_total"] == (1 if mode == "websocket" else 0)


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_reset_mid_run_loses_nothing_and_resubscribes(sim_factory: Any, exchange: str) -> None:
    sim = sim_factory(exchanges=(exchange,))
    store = CCXTStore(exchange, sim_url=sim.url(exchange))
    subs: list[list[str]] = []
    t0 = sim.now_ms()
    dropped_at: list[int] = []

    def on_next(strat: Any) -> None:
        if not dropped_at and bars_from(strat, t0 + 1_000) >= 2:
            dropped_at.append(sim.now_ms())
            sim.drop(exchange, mode="reset")
        subs.append([s for streams in sim.stats(exchange)["subscriptions"].values() for s in streams])
        if dropped_at and bars_from(strat, dropped_at[0] + 1_000) >= 3:
            strat.env.runstop()

    res = run_feeds(store, SYMBOLS[exchange], live_bars=10**9, backfill_bars=3, timeout=40,
                    use_websocket=True, on_next=on_next, **FAST)
    assert not res.timed_out, "the run did not reach its bar count"
    for sym in SYMBOLS[exchange]:
        assert_matches_truth(sim, exchange, sym, "1s", res.bars[sym], tf_ms=1000)
        st = states(res, sym)
        assert "DISCONNECTED" in st, st
        assert "LIVE" in st[st.index("DISCONNECTED"):], st
    stats = sim.stats(exchange)
    assert stats["drops"] >= 1 and stats["ws_connections_total"] >= 2
    assert len(subs[-1]) == len(SYMBOLS[exchange]), subs[-1]  # every symbol subscribed again
