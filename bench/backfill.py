"""Backfill throughput: our ``Backfiller`` beside bare ccxt paging, in the same run.

    python bench/backfill.py [--bars 525600] [--symbol BTC/USDT] [--rounds 1] [--no-trace]

One year of 1m bars (525,600) of one symbol from the in-process simulator (binance, 1000 bars
per request), with ccxt's rate limiter OFF (``enableRateLimit: False``) so the figure is our
own overhead, not the exchange's pacing:

* **bare ccxt**: a plain ``fetch_ohlcv(since=, limit=1000, params={"until": ...})`` loop with
  the same client settings, rows counted and dropped (no storage);
* **backfill**: ``Backfiller.run()`` into a fresh SQLite file (plan, page, filter closed
  bars, upsert one transaction per page, mark gaps, final gap report).

The simulator shares this process (and its GIL), as it does in the tests; both measurements
pay that equally. Peak memory: ``ru_maxrss`` of the whole process (simulator, ccxt and both
runs included), and, unless ``--no-trace``, a separate backfill run under ``tracemalloc``
(Python allocations of everything in the process during that run; slower, so it is not timed).
Targets: backfill within 1.5x of bare ccxt paging, peak memory under 300 MB.
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from btccxt_cli.cache.backfill import Backfiller  # noqa: E402
from btccxt_cli.cache.sqlite import OhlcvCache  # noqa: E402
from btccxt_cli.exchange.factory import make_exchange  # noqa: E402
from btccxt_cli.sim.app import SimThread  # noqa: E402

EX = "binance"
TF = "1m"
TF_MS = 60_000
CONFIG = {"enableRateLimit": False}


def client(sim: SimThread):
    ex = make_exchange(EX, sim_url=sim.url(EX), config=dict(CONFIG))
    ex.load_markets()
    return ex


def bare_paging(sim: SimThread, symbol: str, since: int, until: int) -> tuple[float, int, int]:
    """Seconds, rows and requests of a plain ccxt paging loop (nothing stored)."""
    ex = client(sim)
    t0 = time.perf_counter()
    s, rows, requests = since, 0, 0
    while s < until:
        e = min(until, s + 1000 * TF_MS)
        page = ex.fetch_ohlcv(symbol, TF, since=s, limit=(e - s) // TF_MS, params={"until": e - 1})
        requests += 1
        rows += len(page)
        s = e
    return time.perf_counter() - t0, rows, requests


def backfill(sim: SimThread, symbol: str, since: int, until: int, *, trace: bool = False
             ) -> tuple[float, int, int, int]:
    """Seconds, bars written, requests, tracemalloc peak bytes (0 if not traced)."""
    ex = client(sim)
    with tempfile.TemporaryDirectory() as tmp, OhlcvCache(Path(tmp) / "bench.sqlite") as cache:
        bf = Backfiller(ex, cache, exchange_id=EX, symbol=symbol, timeframe=TF, since_ms=since,
                        until_ms=until)
        bf.prepare()
        if trace:
            tracemalloc.start()
        t0 = time.perf_counter()
        res = bf.run()
        seconds = time.perf_counter() - t0
        peak = 0
        if trace:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        assert res.gaps is not None and res.gaps.complete, res.to_dict()
        assert cache.count(EX, symbol, TF, since, until) == (until - since) // TF_MS
    return seconds, res.bars_written, res.requests, peak


def maxrss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bars", type=int, default=525_600, help="1m bars to fetch (default: one year)")
    ap.add_argument("--symbol", default="BTC/USDT")
    ap.add_argument("--rounds", type=int, default=1, help="alternate bare/backfill this many times; best kept")
    ap.add_argument("--no-trace", action="store_true", help="skip the tracemalloc run")
    args = ap.parse_args()

    print(f"python {platform.python_version()} on {platform.machine()}, {args.bars:,} {TF} bars, "
          f"{EX}, rate limiter off")
    with SimThread(exchanges=(EX,), symbols={EX: [args.symbol]}) as sim:
        now = sim.now_ms()
        until = now - now % TF_MS - 60 * TF_MS
        since = until - args.bars * TF_MS
        bare_best = ours_best = float("inf")
        for r in range(args.rounds):
            bare_s, rows, breq = bare_paging(sim, args.symbol, since, until)
            ours_s, written, oreq, _ = backfill(sim, args.symbol, since, until)
            print(f"round {r + 1}: bare ccxt {bare_s:6.2f} s ({rows:,} rows, {breq} requests), "
                  f"backfill {ours_s:6.2f} s ({written:,} bars written, {oreq} requests)")
            bare_best, ours_best = min(bare_best, bare_s), min(ours_best, ours_s)
        rss_timed = maxrss_mb()
        peak = 0
        if not args.no_trace:
            _, _, _, peak = backfill(sim, args.symbol, since, until, trace=True)
    print()
    print(f"{'':<22}{'seconds':>10}{'bars/s':>12}")
    print(f"{'bare ccxt paging':<22}{bare_best:>10.2f}{args.bars / bare_best:>12,.0f}")
    print(f"{'btccxt backfill':<22}{ours_best:>10.2f}{args.bars / ours_best:>12,.0f}")
    ratio = ours_best / bare_best
    print(f"ratio backfill / bare: {ratio:.2f}x (target <= 1.5x) {'OK' if ratio <= 1.5 else 'MISSED'}")
    print(f"peak RSS of the whole process after the timed runs: {rss_timed:.0f} MB "
          f"(target < 300 MB) {'OK' if rss_timed < 300 else 'MISSED'}")
    if peak:
        print(f"tracemalloc peak during one backfill run: {peak / 2**20:.1f} MB")


if __name__ == "__main__":
    main()
