"""bybit and kucoin end to end: CCXTStore + CCXTFeed in cerebro against their simulated venues.

Backfill then live 1s bars (``1s`` is a simulator extra on both, see docs/simulator.md), in
websocket and rest mode, and a TCP reset mid-run: every bar the strategy sees equals the
simulator's truth, once, in order, contiguous. bybit's socket carries a closed flag (``confirm``,
read by the tap in ``exchange/taps.py``); kucoin's does not, so its bars close by the
later-candle rule.
"""

from __future__ import annotations

from typing import Any

import pytest

from btccxt_cli.bt.store import CCXTStore

from .harness import assert_matches_truth, check_history, run_feeds
from .simtools import FAST, after_live, states

pytestmark = pytest.mark.live

EXCHANGES = ["bybit", "kucoin"]
SYMBOLS = {"bybit": ["BTC/USDT", "ETH/USDT:USDT"], "kucoin": ["BTC/USDT", "ETH/USDT"]}
SOCKETS = {"bybit": 2, "kucoin": 1}  # bybit: one socket for spot, one for linear


@pytest.mark.parametrize("exchange", EXCHANGES)
@pytest.mark.parametrize("mode", ["websocket", "rest"])
def test_backfill_then_live_bars_equal_truth(sim_factory: Any, exchange: str, mode: str) -> None:
    sim = sim_factory(exchanges=(exchange,))
    store = CCXTStore(exchange, sim_url=sim.url(exchange))
    kw = {"use_websocket": True} if mode == "websocket" else {}
    res = run_feeds(store, SYMBOLS[exchange], live_bars=3, backfill_bars=5, timeout=30, **kw)
    assert not res.timed_out
    for sym in SYMBOLS[exchange]:
        seen = res.bars[sym]
        assert_matches_truth(sim, exchange, sym, "1s", seen, tf_ms=1000)
        check_history(seen, 5)
        assert seen[-1].source == "live"
        st = states(res, sym)
        assert st[:2] == ["DELAYED", "LIVE"] and "DISCONNECTED" not in st, st
    stats = sim.stats(exchange)
    assert stats["unknown_paths"] == {}
    if mode == "websocket":
        assert stats["ws_connections_total"] == SOCKETS[exchange]
    else:
        assert stats["ws_connections_total"] == 0


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_reset_mid_run_loses_nothing_and_resubscribes(sim_factory: Any, exchange: str) -> None:
    sim = sim_factory(exchanges=(exchange,))
    store = CCXTStore(exchange, sim_url=sim.url(exchange))
    subs: list[list[str]] = []

    def on_next(strat: Any) -> None:
        drop(strat)
        subs.append([s for streams in sim.stats(exchange)["subscriptions"].values() for s in streams])

    drop = after_live(2, lambda: sim.drop(exchange, mode="reset"))
    res = run_feeds(store, SYMBOLS[exchange], live_bars=6, backfill_bars=3, timeout=40,
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
