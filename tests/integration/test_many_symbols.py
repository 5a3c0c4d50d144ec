"""Many WebSocket series on one store: removing feeds unsubscribes them in the background, one
message per shard (ccxt paces socket messages, binance about 4 a second: one awaited
unsubscribe per feed made stopping 1,000 feeds take minutes)."""

from __future__ import annotations

import threading
import time

from btccxt_cli.bt.store import CCXTStore
from btccxt_cli.sources.base import SeriesParams

N = 40
SHARD = 20
SYMBOLS = [f"U{i:03d}/USDT" for i in range(N)]


def _wait(cond, timeout: float = 30.0) -> bool:
    done = threading.Event()
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            return False
        done.wait(0.05)  # polling a condition with a deadline, not a sleep as synchronisation
    return True


def test_removing_a_shard_of_feeds_sends_one_unsubscribe_and_returns_at_once(sim_factory):
    sim = sim_factory(exchanges=("binance",), symbols={"binance": SYMBOLS})
    store = CCXTStore("binance", sim_url=sim.url("binance"), config={"options": {"btccxtWsShard": SHARD}})
    try:
        handles = [store.attach(SeriesParams(symbol=s, timeframe="1s", mode="websocket",
                                             backfill_start=False, exchange_id="binance"))
                   for s in SYMBOLS]
        # every series has a closed bar: both shards are subscribed and flowing
        assert _wait(lambda: all(h.series.status().bars["live"] for h in handles))
        sockets = sim.stats("binance")["subscriptions"]
        assert sorted(len(v) for v in sockets.values() if v) == [SHARD, SHARD]
        first_shard = [h for h in handles if h.series.status().symbol in SYMBOLS[:SHARD]]
        for h in first_shard:
            store.detach(h)  # no wait for the exchange's answer per feed
        assert _wait(lambda: sim.stats("binance")["unsubscribe_requests"] >= 1)
        assert _wait(lambda: sorted(len(v) for v in sim.stats("binance")["subscriptions"].values()
                                    if v) == [SHARD])
        stats = sim.stats("binance")
        assert stats["unsubscribe_requests"] == 1, stats["unsubscribe_requests"]  # not one per feed
        assert stats["ws_limit_closes"] == 0
        left = [h for h in handles if h not in first_shard]
        assert all(h.series.phase == h.series.LIVE for h in left)
    finally:
        store.stop()
