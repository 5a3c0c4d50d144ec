"""CPU and memory of a live run with many symbols of 1m bars (simulator in another process).

    python bench/many_idle.py [--symbols 1000] [--minutes 3] [--exactbars 1] [--timeframe 1s]

One websocket feed of 1m bars per symbol (no backfill; ``--exactbars 1`` as ``btccxt run``); the
simulator (``btccxt sim --generate-symbols N``) runs in its own process, so only btccxt's CPU
is counted. After the feeds are LIVE, CPU is sampled every second (``time.process_time``) and
RSS every second (``/proc/self/statm``). Seconds within 3 s of a bar close (the minute) count
as "at the close", the others as "between closes": there a feed only receives the forming
candle's updates (binance: one every 2 s per symbol in the simulator).

``--timeframe 1s``: 1s bars instead, so that every bounded window of the run (the bars a
series keeps for revisions and lookups, its latency window, ccxt's candles) fills within
minutes and the RSS of the last third shows the plateau a 1m run reaches after hours.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import backtrader as bt  # noqa: E402
import ccxt  # noqa: E402

from btccxt_cli.bt.store import CCXTStore  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--symbols", type=int, default=1000)
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--exactbars", type=int, default=0)
    ap.add_argument("--timeframe", choices=("1m", "1s"), default="1m")
    args = ap.parse_args()
    tf = (bt.TimeFrame.Seconds, 1) if args.timeframe == "1s" else (bt.TimeFrame.Minutes, 1)
    sim = subprocess.Popen([sys.executable, "-m", "btccxt_cli", "sim", "-e", "binance", "--port", "0",
                            "--generate-symbols", str(args.symbols)], stdout=subprocess.PIPE, text=True)
    try:
        url = sim.stdout.readline().split()[1]
        store = CCXTStore("binance", sim_url=url)
        symbols = sorted(s for s in store.sync_exchange().markets if s.startswith("C"))[: args.symbols]
        cerebro = bt.Cerebro(stdstats=False, quicknotify=True, exactbars=args.exactbars)
        for s in symbols:
            cerebro.adddata(store.getdata(dataname=s, name=s, timeframe=tf[0], compression=tf[1],
                                          backfill_start=False, use_websocket=True), name=s)
        cerebro.addstrategy(bt.Strategy)
        rows: list[tuple[float, float, float]] = []  # (wall, cpu share, rss MB)
        marks: dict[str, float] = {}

        def sample() -> None:
            t0 = time.monotonic()
            while time.monotonic() - t0 < 120:  # until every feed is LIVE
                sts = store.status()
                if len(sts) == len(symbols) and all(st.state == "LIVE" for st in sts):
                    break
                threading.Event().wait(1.0)
            marks["live_s"] = time.monotonic() - t0
            end = time.monotonic() + args.minutes * 60
            cpu, t = time.process_time(), time.monotonic()
            while time.monotonic() < end:
                threading.Event().wait(1.0)
                cpu1, t1 = time.process_time(), time.monotonic()
                rows.append((time.time(), (cpu1 - cpu) / (t1 - t), rss_mb()))
                cpu, t = cpu1, t1
            cerebro.runstop()

        threading.Thread(target=sample, daemon=True).start()
        cerebro.run()
    finally:
        sim.terminate()
        sim.wait(10)
    near = [r for r in rows if min(r[0] % 60, 60 - r[0] % 60) <= 3.0]
    between = [r for r in rows if r not in near]
    print(f"# {len(symbols)} symbols of {args.timeframe} bars, websocket, exactbars={args.exactbars}, {args.minutes:g} min after all LIVE "
          f"({marks.get('live_s', 0):.1f} s), simulator in another process")
    print(f"# {platform.node()} {platform.machine()} python {platform.python_version()} "
          f"ccxt {ccxt.__version__} backtrader {bt.__version__} "
          f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC")
    for label, rs in (("between closes", between), ("at the close (+-3 s)", near)):
        if rs:
            cpu = [r[1] * 100 for r in rs]
            print(f"CPU {label:<22} median {statistics.median(cpu):6.2f} %  p90 "
                  f"{sorted(cpu)[int(0.9 * (len(cpu) - 1))]:6.2f} %  max {max(cpu):6.2f} % of one core "
                  f"({len(rs)} s)")
    if rows:
        rss = [r[2] for r in rows]
        third = max(1, len(rss) // 3)
        print(f"RSS MB: first {rss[0]:.1f}, median of first third {statistics.median(rss[:third]):.1f}, "
              f"of last third {statistics.median(rss[-third:]):.1f}, max {max(rss):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
