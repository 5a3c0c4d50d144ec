"""Bar cache writes never hold up the event loop: a locked cache file delays no bar.

Another process (a ``btccxt backfill``) holding the cache's write lock used to freeze the
store's loop for up to the 10 s busy timeout at the next bar write, and with it every socket
and watch. Here a second SQLite connection holds an exclusive lock for several bars while the
simulator pushes them over WebSocket.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

from btccxt_cli.bt.store import CCXTStore
from btccxt_cli.cache.sqlite import OhlcvCache

from .harness import assert_matches_truth, run_feeds

SYM = "BTC/USDT"
HOLD = 5  # live bars (seconds) the lock is held


def test_a_locked_cache_delays_no_bar_and_gets_the_rows_once_released(sim: Any, tmp_path: Any) -> None:
    db = tmp_path / "ohlcv.sqlite"
    OhlcvCache(db).close()
    other = sqlite3.connect(db, isolation_level=None, timeout=10)  # the other process (waits out a write of ours)
    store = CCXTStore("binance", sim_url=sim.url("binance"), cache=db)
    live: list[Any] = []  # (bar, ms after its close when the strategy got it, locked?)
    state = {"locked": False, "unwritten": None}

    def on_next(strat: Any) -> None:
        seen = strat.p.result.bars[SYM]
        if not seen or seen[-1].source != "live" or (live and live[-1][0] is seen[-1]):
            return
        bar = seen[-1]
        live.append((bar, sim.now_ms() - (bar.ts + 1000), state["locked"]))
        n = len(live)
        if n == 1:
            other.execute("BEGIN EXCLUSIVE")
            state["locked"] = True
        elif n == 1 + HOLD:
            held = [b.ts for b, _, locked in live if locked]
            state["unwritten"] = other.execute(
                f"SELECT COUNT(*) FROM ohlcv WHERE ts IN ({','.join('?' * len(held))})",
                held).fetchone()[0]
            other.execute("COMMIT")
            state["locked"] = False

    try:
        res = run_feeds(store, [SYM], live_bars=HOLD + 3, backfill_bars=5, use_websocket=True,
                        on_next=on_next, timeout=60)
    finally:
        if state["locked"]:
            other.execute("ROLLBACK")
    assert not res.timed_out
    assert_matches_truth(sim, "binance", SYM, "1s", res.bars[SYM], tf_ms=1000)
    during = [(b.ts, late) for b, late, locked in live if locked]
    assert len(during) == HOLD
    # pushed at their close; with the loop frozen they would arrive seconds late
    assert all(late < 2_000 for _, late in during), during
    assert state["unwritten"] == 0, "the lock kept them out while it was held"

    # the rows are written once the lock is released (store.stop() flushed the queue)
    tick = threading.Event()
    cache = OhlcvCache(db)
    want = {s.ts: s.ohlcv for s in res.bars[SYM]}
    for _ in range(200):
        got = {c.ts: tuple(c[1:6]) for c in cache.read(store.cache_key, SYM, "1s")}
        if all(t in got for t in want):
            break
        tick.wait(0.05)
    assert {t: got.get(t) for t in want} == want
    other.close()
    cache.close()


def test_a_cache_damaged_under_its_history_warns_once_and_history_comes_from_the_exchange(
        sim: Any, tmp_path: Any, caplog: Any) -> None:
    import logging

    db = tmp_path / "ohlcv.sqlite"
    first = CCXTStore("binance", sim_url=sim.url("binance"), cache=db)
    run_feeds(first, ["BTC/USDT", "ETH/USDT"], live_bars=1, backfill_bars=400)
    with open(db, "r+b") as f:  # the disk garbles every page after the first
        f.seek(4096)
        f.write(b"\xff" * (db.stat().st_size - 4096))
    store = CCXTStore("binance", sim_url=sim.url("binance"), cache=db)
    with caplog.at_level(logging.WARNING):
        res = run_feeds(store, ["BTC/USDT", "ETH/USDT"], live_bars=2, backfill_bars=400)
    assert not res.timed_out
    for sym in ("BTC/USDT", "ETH/USDT"):
        seen = res.bars[sym]
        assert_matches_truth(sim, "binance", sym, "1s", seen, tf_ms=1000)
        assert sum(s.source == "backfill" for s in seen) >= 399  # from REST, in full
    told = [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and "OHLCV cache" in r.getMessage()]
    assert len(told) == 1 and str(db) in told[0] and "move the file away" in told[0], told
