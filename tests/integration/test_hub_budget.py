"""One REST budget for every process on an IP (rate_limit.shared, hub/budget.py), against the
simulator's binance request-weight limits and a real valkey-server."""

from __future__ import annotations

import threading
import time

import pytest

from btccxt_cli.cache.limits import share_rate_budget
from btccxt_cli.cache.sqlite import OhlcvCache
from btccxt_cli.exchange.factory import make_exchange

pytestmark = pytest.mark.live

EX = "binance"
RATE_LIMIT_MS = 100  # ccxt's spacing for the test's clients: 10 cost units a second, shared


def _fresh_budget(redis_server) -> None:
    r = redis_server.client()
    r.delete(f"btccxt:budget:{EX}:rest", f"btccxt:budget:{EX}:pause")
    r.close()


def test_ten_concurrent_backfills_share_one_budget_no_429_no_ban(sim_factory, redis_server, tmp_path):
    from btccxt_cli.cache.backfill import Backfiller

    _fresh_budget(redis_server)
    sim = sim_factory(exchanges=(EX,), weight_limit=400)
    symbols = sim.symbols(EX)[:10]
    now = sim.now_ms() // 1000 * 1000
    since, until = now - 300_000, now - 20_000  # 280 bars each: 3 requests of 100
    results: dict[str, object] = {}
    budgets = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(symbols))

    def one(i: int, sym: str) -> None:
        try:
            client = make_exchange(EX, kind="sync", sim_url=sim.url(EX),
                                   config={"rateLimit": RATE_LIMIT_MS})
            budgets.append(share_rate_budget(client, redis_server.url))
            cache = OhlcvCache(tmp_path / f"c{i}.sqlite")
            bf = Backfiller(client, cache, exchange_id=EX, source=f"{EX}@sim", symbol=sym,
                            timeframe="1s", since_ms=since, until_ms=until, limit=100)
            start.wait(30)
            results[sym] = bf.run()
            cache.close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i, s)) for i, s in enumerate(symbols)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    elapsed = time.monotonic() - t0
    assert not errors, errors
    weight = sim.stats(EX)["weight"]
    assert weight["answered_429"] == 0 and weight["answered_418"] == 0, weight
    for sym in symbols:
        res = results[sym]
        assert res.bars_written == 280, (sym, res)
        assert res.rate_limit_waits == 0
    tokens = sum(b.tokens for b in budgets)
    rate = 1000 / RATE_LIMIT_MS
    floor = (tokens - rate) / rate  # what the shared limit allows (one second of burst)
    print(f"ten backfills: {tokens:.0f} cost units at {rate:.0f}/s: {elapsed:.1f} s "
          f"(limit allows {floor:.1f} s); peak weight {weight['peak_1m']}")
    assert elapsed >= 0.9 * floor, "the processes together kept to the shared rate"
    assert elapsed <= 1.5 * floor + 8, "and no slower than it allows (plus start-up)"


def test_a_429_seen_by_one_process_pauses_every_process(sim_factory, redis_server):
    import ccxt

    _fresh_budget(redis_server)
    sim = sim_factory(exchanges=(EX,))
    a = make_exchange(EX, kind="sync", sim_url=sim.url(EX))
    b = make_exchange(EX, kind="sync", sim_url=sim.url(EX))
    for ex in (a, b):
        share_rate_budget(ex, redis_server.url)
        ex.load_markets()
    sim.rest_errors(EX, 429, count=1, retry_after=4)
    with pytest.raises((ccxt.RateLimitExceeded, ccxt.DDoSProtection)):
        a.fetch_ohlcv("BTC/USDT", "1s", limit=5)
    wait = b.btccxt_budget.take(1)  # the other process's next call waits out the Retry-After
    assert 3.0 <= wait <= 4.0, wait
    assert a.btccxt_budget.pauses == 1


def test_btccxt_backfill_draws_from_the_shared_budget(sim_factory, redis_server, tmp_path):
    import os
    import subprocess
    import sys

    _fresh_budget(redis_server)
    sim = sim_factory(exchanges=(EX,))
    env = dict(os.environ, BTCCXT_RATE_LIMIT_SHARED=redis_server.url)
    res = subprocess.run([sys.executable, "-m", "btccxt_cli", "backfill", "BTC/USDT", "-e", EX,
                          "-t", "1s", "--since", "5m", "--sim-url", sim.url(EX), "--db",
                          str(tmp_path / "c.sqlite"), "--limit", "100", "--json"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    r = redis_server.client()
    bucket = r.hgetall(f"btccxt:budget:{EX}:rest")
    r.close()
    assert bucket and float(bucket[b"tokens"]) < 20, bucket  # its calls drew tokens


def test_a_store_with_rate_limit_shared_draws_every_client_from_the_budget(sim_factory,
                                                                           redis_server):
    from btccxt_cli.bt.store import CCXTStore

    _fresh_budget(redis_server)
    sim = sim_factory(exchanges=(EX,))
    store = CCXTStore(EX, sim_url=sim.url(EX), rate_budget=redis_server.url)
    try:
        ex = store.sync_exchange()  # markets and the clock: two calls through the budget
        ex.fetch_ohlcv("BTC/USDT", "1s", limit=5)
        assert ex.btccxt_budget.calls >= 3
        aex = store.run_async(store.async_exchange()).result(30)  # the loop's client too
        assert aex.btccxt_budget.calls >= 1
    finally:
        store.stop()
