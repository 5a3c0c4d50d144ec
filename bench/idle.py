"""CPU used by an idle live run: feeds waiting for the next bar.

    python bench/idle.py [--seconds 30] [--symbols 3] [--timeframe 1m]

The simulator runs in its own process (``btccxt sim``) so that only btccxt's CPU is counted.
Between bar closes a live feed only receives forming-candle updates (websocket) or sleeps
until the next scheduled read (rest/threaded); ``_load`` waits on its pipe, never spins.
Prints CPU seconds per wall second (1.0 = one core busy) for each mode.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import backtrader as bt  # noqa: E402

from btccxt_cli.bt.store import CCXTStore  # noqa: E402


def measure(url: str, mode: str, symbols: list[str], tf: str, seconds: float) -> float:
    store = CCXTStore("binance", sim_url=url)
    cerebro = bt.Cerebro(stdstats=False, quicknotify=True, exactbars=1)
    kw = {"websocket": {"use_websocket": True}, "threaded": {"use_threaded_data": True}, "rest": {}}[mode]
    unit = {"m": bt.TimeFrame.Minutes, "s": bt.TimeFrame.Seconds}[tf[-1]]
    for s in symbols:
        cerebro.adddata(store.getdata(dataname=s, name=s, timeframe=unit, compression=int(tf[:-1]),
                                      backfill_start=False, **kw), name=s)
    cerebro.addstrategy(bt.Strategy)
    marks: dict[str, float] = {}

    def window() -> None:  # skip start-up, then measure a quiet window
        time.sleep(5)
        marks["cpu0"], marks["t0"] = time.process_time(), time.monotonic()
        time.sleep(seconds)
        marks["cpu1"], marks["t1"] = time.process_time(), time.monotonic()
        cerebro.runstop()

    threading.Thread(target=window, daemon=True).start()
    cerebro.run()
    return (marks["cpu1"] - marks["cpu0"]) / (marks["t1"] - marks["t0"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--symbols", type=int, default=3)
    ap.add_argument("--timeframe", default="1m")
    args = ap.parse_args()
    syms = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "BNB/USDT"][: args.symbols]
    sim = subprocess.Popen([sys.executable, "-m", "btccxt_cli", "sim", "-e", "binance", "--port", "0"],
                           stdout=subprocess.PIPE, text=True)
    try:
        url = sim.stdout.readline().split()[1]
        print(f"# idle CPU: {len(syms)} symbols, {args.timeframe} bars, {args.seconds:g} s window, "
              "simulator in another process")
        for mode in ("websocket", "threaded", "rest"):
            cpu = measure(url, mode, syms, args.timeframe, args.seconds)
            print(f"{mode:<10} {cpu * 100:6.2f} % of one core", flush=True)
    finally:
        sim.terminate()
        sim.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
