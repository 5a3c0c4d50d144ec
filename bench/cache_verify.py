"""What keeping sources apart and re-checking a cache cost: figures, never asserted.

    python bench/cache_verify.py [--bars 100000] [--lookups 200]

Against the in-process simulator (binance, rate limiter off, so the figures are our own cost):

* **source lookup**: ``cache_source("binance", sim_url)``, one ``GET /_sim/identity`` on
  loopback, the price of naming a simulator's bars apart (paid once per backfill or store);
* **backfill** of ``--bars`` 1m bars into a fresh cache file, beside **verify** of the same
  window (``btccxt cache verify``: read again into memory, compare bar by bar), clean and
  with every 100th bar changed, and the ``--fix`` of those;
* **list**: ``OhlcvCache.series()`` over the file (``btccxt cache list``).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from btccxt_cli.cache.backfill import Backfiller  # noqa: E402
from btccxt_cli.cache.source import cache_source  # noqa: E402
from btccxt_cli.cache.sqlite import OhlcvCache  # noqa: E402
from btccxt_cli.cache.verify import verify_range  # noqa: E402
from btccxt_cli.exchange.factory import make_exchange  # noqa: E402
from btccxt_cli.sim.app import SimThread  # noqa: E402

EX, SYMBOL, TF, TF_MS = "binance", "BTC/USDT", "1m", 60_000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bars", type=int, default=100_000)
    ap.add_argument("--lookups", type=int, default=200)
    args = ap.parse_args()
    print(f"python {platform.python_version()} on {platform.machine()}, {args.bars:,} {TF} bars, "
          f"{EX} simulator in-process, rate limiter off")
    with SimThread(exchanges=(EX,)) as sim, tempfile.TemporaryDirectory() as tmp:
        url = sim.url(EX)
        times = []
        for _ in range(args.lookups):
            t0 = time.perf_counter()
            source = cache_source(EX, url)
            times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        print(f"source lookup ({source}): p50 {statistics.median(times):.2f} ms, "
              f"p99 {times[int(len(times) * 0.99) - 1]:.2f} ms over {args.lookups}")

        now = sim.now_ms()
        until = now - now % TF_MS - 60 * TF_MS
        since = until - args.bars * TF_MS
        client = make_exchange(EX, sim_url=url, config={"enableRateLimit": False})
        with OhlcvCache(Path(tmp) / "bench.sqlite") as cache:
            t0 = time.perf_counter()
            Backfiller(client, cache, exchange_id=EX, source=source, symbol=SYMBOL, timeframe=TF,
                       since_ms=since, until_ms=until).run()
            backfill_s = time.perf_counter() - t0

            def verify(fix: bool = False) -> tuple[float, int]:
                t = time.perf_counter()
                r = verify_range(client, cache, exchange_id=EX, source=source, symbol=SYMBOL,
                                 timeframe=TF, since_ms=since, until_ms=until, fix=fix)
                return time.perf_counter() - t, len(r.differ)

            clean_s, _ = verify()
            bars = cache.read(source, SYMBOL, TF, since, until)
            cache.upsert(source, SYMBOL, TF, [b._replace(close=b.close + 1) for b in bars[::100]])
            found_s, differ = verify()
            fix_s, _ = verify(fix=True)
            t0 = time.perf_counter()
            series = cache.series()
            list_ms = (time.perf_counter() - t0) * 1000
    print(f"{'':<34}{'seconds':>9}{'bars/s':>11}")
    for name, s in (("backfill (reference)", backfill_s), ("verify, clean", clean_s),
                    (f"verify, {differ:,} differ", found_s), (f"verify --fix of {differ:,}", fix_s)):
        print(f"{name:<34}{s:>9.2f}{args.bars / s:>11,.0f}")
    print(f"verify / backfill: {clean_s / backfill_s:.2f}x; list of {len(series)} series: "
          f"{list_ms:.1f} ms")


if __name__ == "__main__":
    main()
