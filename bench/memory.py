"""Resident memory over a run that delivers >= 1,000,000 bars, bounded vs unbounded buffers.

    python bench/memory.py [--symbols 10] [--bars-per-symbol 100000] [--compare]

The bars flow through the whole pipeline: REST history paging (simulator, limiter off) ->
assembler -> feed pipe -> CCXTFeed -> cerebro -> a strategy with an SMA per data. It runs the
way ``btccxt run`` runs (``exactbars=1``, ``lookback=1000``) and then goes live. RSS (VmRSS)
is sampled every second. ``--compare`` also runs backtrader's default unbounded buffers for
reference.
"""

from __future__ import annotations

import argparse
import gc
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import backtrader as bt  # noqa: E402

from btccxt_cli.bt.store import CCXTStore  # noqa: E402
from btccxt_cli.sim.app import SimThread  # noqa: E402


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Counter(bt.Strategy):
    params = (("target", 0), ("state", None))

    def __init__(self) -> None:
        self.smas = [bt.ind.SMA(d.close, period=20) for d in self.datas]
        self._lens = {d: 0 for d in self.datas}

    def prenext(self) -> None:
        self.next()

    def next(self) -> None:
        st = self.p.state
        for d in self.datas:
            n = len(d)
            if n != self._lens[d]:
                self._lens[d] = n
                st["bars"] += 1
        if st["bars"] >= self.p.target:
            self.env.runstop()


def one_run(sim: SimThread, symbols: list[str], per_symbol: int, bounded: bool) -> list[tuple[float, int, float]]:
    store = CCXTStore("binance", sim_url=sim.url("binance"), config={"enableRateLimit": False})
    cerebro = bt.Cerebro(stdstats=False, quicknotify=True, exactbars=1 if bounded else 0)
    for s in symbols:
        cerebro.adddata(store.getdata(dataname=s, name=s, timeframe=bt.TimeFrame.Seconds, compression=1,
                                      backfill_bars=per_symbol, ohlcv_limit=1000, use_websocket=True,
                                      lookback=1000 if bounded else None), name=s)
    state = {"bars": 0}
    cerebro.addstrategy(Counter, target=per_symbol * len(symbols), state=state)
    samples: list[tuple[float, int, float]] = []
    stop = threading.Event()
    t0 = time.monotonic()

    def sampler() -> None:
        while not stop.wait(1.0):
            samples.append((time.monotonic() - t0, state["bars"], rss_mb()))

    th = threading.Thread(target=sampler, daemon=True)
    th.start()
    cerebro.run()
    stop.set()
    th.join()
    samples.append((time.monotonic() - t0, state["bars"], rss_mb()))
    return samples


def report(label: str, samples: list[tuple[float, int, float]]) -> None:
    print(f"\n## {label}")
    print(f"{'seconds':>8} {'bars':>10} {'RSS MB':>8}")
    step = max(1, len(samples) // 12)
    for s in samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else []):
        print(f"{s[0]:>8.1f} {s[1]:>10,} {s[2]:>8.1f}")
    half = [s for s in samples if s[1] >= samples[-1][1] / 2]
    if half:
        print(f"RSS from half-way to the end: {half[0][2]:.1f} -> {samples[-1][2]:.1f} MB "
              f"({samples[-1][2] - half[0][2]:+.1f} MB over {samples[-1][1] - half[0][1]:,} bars); "
              f"{samples[-1][1] / samples[-1][0]:,.0f} bars/s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--symbols", type=int, default=10)
    ap.add_argument("--bars-per-symbol", type=int, default=100_000)
    ap.add_argument("--compare", action="store_true", help="also run with unbounded buffers")
    args = ap.parse_args()
    names = [f"C{i:03d}/USDT" for i in range(args.symbols)]
    print(f"# {args.symbols} symbols x {args.bars_per_symbol:,} bars of 1s history, then live")
    with SimThread(exchanges=("binance",), symbols={"binance": names}) as sim:
        report("bounded (btccxt run: exactbars=1, lookback=1000)",
               one_run(sim, names, args.bars_per_symbol, bounded=True))
        if args.compare:
            gc.collect()
            report("unbounded (backtrader default)", one_run(sim, names, args.bars_per_symbol, bounded=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
