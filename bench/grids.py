"""CPU cost of bar grids on the hot paths: the assembler releasing 1 s bars, gap detection over
a long 1m series, and the grid operations themselves (regular vs calendar-month grids).

    python bench/grids.py [--bars 200000]

Prints bars per second and nanoseconds per operation. The assembler and gap figures use only
the integer-length API, so the same script runs against a checkout from before bar grids.
"""

from __future__ import annotations

import argparse
import time


def best(fn, repeat: int = 5) -> float:
    """Fastest of ``repeat`` runs, in seconds."""
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return min(out)


def main() -> int:
    from btccxt_cli.bars.assembler import BarAssembler
    from btccxt_cli.bars.gaps import find_gaps
    from btccxt_cli.model import Candle

    ap = argparse.ArgumentParser()
    ap.add_argument("--bars", type=int, default=200_000)
    n = ap.parse_args().bars
    t0 = 1_700_000_000_000
    bars = [Candle(t0 + i * 1000, 1.0, 2.0, 0.5, 1.5, 1.0 + i) for i in range(n)]

    def live() -> None:
        a = BarAssembler(1000, last_ts=t0 - 1000, flagged=True)
        for c in bars:
            a.on_live([c], closed=True)

    def rest() -> None:
        a = BarAssembler(1000, last_ts=t0 - 1000)
        for i in range(0, n, 1000):
            a.on_rest(bars[i:i + 1000], since=t0 + i * 1000, now_ms=t0 + n * 1000 + 10_000)

    ts = [t0 + i * 60_000 for i in range(n * 5) if i % 97]  # 1m bars, some missing
    s = best(live, 3)
    print(f"assembler on_live, 1s bars, closed flags   {n / s:12,.0f} bars/s")
    s = best(rest, 3)
    print(f"assembler on_rest, 1s bars, 1000 a page    {n / s:12,.0f} bars/s")
    s = best(lambda: find_gaps(ts, 60_000, ts[0], ts[-1] + 60_000), 3)
    print(f"find_gaps, {len(ts):,} 1m bars              {len(ts) / s:12,.0f} bars/s")
    try:
        from btccxt_cli.timeframes import bar_grid
    except ImportError:
        print("(no bar grids in this checkout)")
        return 0
    for name, g in (("1s (regular)", bar_grid("binance", "1s")),
                    ("1w Monday (regular)", bar_grid("binance", "1w")),
                    ("1M (calendar)", bar_grid("binance", "1M"))):
        xs = [t0 + i * 7_777_777 for i in range(100_000)]
        s = best(lambda g=g, xs=xs: [g.next_open(x) for x in xs], 3)
        print(f"grid {name:22s} next_open   {s / len(xs) * 1e9:8.0f} ns")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
