"""Start-up time to LIVE for many symbols on one exchange, against the simulator enforcing the
exchange's real (default) WebSocket limits, beside the floor its subscribe-rate limit implies.

    python bench/many.py [--symbols 1000] [--runs 3] [--exchange binance] [--sim-process]
                         [--backfill BARS [--cache FILE]]

One websocket feed of 1s bars per symbol (no backfill, so REST start-up work is not counted).
From ``cerebro.run()`` to each data's first pushed (live) bar in ``next()``: first/median/last
over the symbols, per run; "start": until the strategy's ``start()`` (cerebro and the feeds set
up, before any subscription). The floor: the subscribe messages the hub needs on its busiest socket, at the exchange's
documented message rate (binance: 5 a second per socket), plus one bar (a series' first live bar
closes after its subscription). Also the sockets used, subscribe messages sent and over-limit closes.

``--backfill BARS``: each feed first loads that many bars of history, through REST against the
simulator enforcing binance's request-weight limit (6,000 a minute, 429 past it); ``--cache
FILE``: with a local cache (a file that does not exist yet: the first run fills it, the next
runs warm up from it, and only what it lacks is fetched). Printed: REST calls, the peak weight
of any minute and the 429/418 answers.

``--sim-process``: the simulator runs in a process of its own (``btccxt sim``), as an exchange
would, instead of in btccxt's process: with 1,000 symbols of 1s bars it makes 5,000 updates a
second, and in-process it shares btccxt's interpreter (and its GIL).
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import backtrader as bt  # noqa: E402
import ccxt  # noqa: E402

from bench.simproc import SimProcess  # noqa: E402
from btccxt_cli.bt.store import CCXTStore  # noqa: E402
from btccxt_cli.sim.app import SimThread  # noqa: E402

RATE = {"binance": 5, "okx": 3}  # subscribe messages a second the exchange allows (per socket)


class UntilLive(bt.Strategy):
    params = (("t0", 0.0), ("live", None), ("stats", None), ("sim", None), ("exchange", ""))

    def __init__(self) -> None:
        self._lens = {d: 0 for d in self.datas}

    def start(self) -> None:
        self.p.stats["started_s"] = time.perf_counter() - self.p.t0  # cerebro and feeds set up

    def next(self) -> None:
        t = time.perf_counter() - self.p.t0
        for d in self.datas:
            if len(d) == self._lens[d]:
                continue
            self._lens[d] = len(d)
            if d._name not in self.p.live and d.current_event().source.value == "live":
                self.p.live[d._name] = t
        if len(self.p.live) == len(self.datas):
            self.p.stats.update(self.p.sim.stats(self.p.exchange))
            self.env.runstop()


def run_once(sim: SimThread | SimProcess, exchange: str, symbols: list[str], timeout: float,
             backfill: int = 0, cache: str | None = None) -> tuple[dict, dict]:
    store = CCXTStore(exchange, sim_url=sim.url(exchange), cache=cache)
    cerebro = bt.Cerebro(stdstats=False, quicknotify=True)
    for s in symbols:
        cerebro.adddata(store.getdata(dataname=s, name=s, timeframe=bt.TimeFrame.Seconds, compression=1,
                                      backfill_start=bool(backfill), backfill_bars=backfill or None,
                                      use_websocket=True), name=s)
    live: dict[str, float] = {}
    stats: dict = {}
    sim.reset_stats(exchange)
    timer = threading.Timer(timeout, cerebro.runstop)
    timer.daemon = True
    cerebro.addstrategy(UntilLive, t0=time.perf_counter(), live=live, stats=stats, sim=sim,
                        exchange=exchange)
    timer.start()
    cerebro.run()
    timer.cancel()
    return live, stats


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--symbols", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--exchange", default="binance", choices=sorted(RATE))
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--sim-process", action="store_true", help="run the simulator in a process of its own")
    ap.add_argument("--backfill", type=int, default=0, help="bars of history per feed first (REST)")
    ap.add_argument("--cache", default=None, help="local cache file for --backfill (filled by the first run)")
    args = ap.parse_args()
    if args.backfill and args.sim_process:
        ap.error("--backfill runs the simulator in this process (its weight limit is set here)")
    ex, n = args.exchange, args.symbols
    sim_cm = SimProcess(ex, n) if args.sim_process else None
    names = sim_cm.names if sim_cm else [f"C{i:04d}/USDT" for i in range(n)]
    where = "in a process of its own" if sim_cm else "in btccxt's process"
    print(f"# start-up to LIVE, {n} symbols of 1s bars on {ex} (the simulator's default limits, {where})")
    print(f"# {platform.node()} {platform.machine()} python {platform.python_version()} "
          f"ccxt {ccxt.__version__} backtrader {bt.__version__} "
          f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC")
    print(f"{'run':>3} {'live':>5} {'start s':>7} {'first s':>8} {'median s':>9} {'last s':>7} {'sockets':>7} "
          f"{'max streams/socket':>18} {'subscribes':>10} {'limit closes':>12} {'floor s':>7}"
          + (f" {'REST':>6} {'peak weight/min':>15} {'429':>4} {'418':>4}" if args.backfill else ""))
    lasts = []
    weight = {"weight_limit": 6000} if args.backfill else {}
    with sim_cm or SimThread(exchanges=(ex,), symbols={ex: names}, **weight) as sim:
        for r in range(args.runs):
            live, stats = run_once(sim, ex, names, args.timeout, args.backfill, args.cache)
            loads = [len(v) for v in stats.get("subscriptions", {}).values() if v]
            subs = stats.get("subscribe_requests", 0)
            per_socket = math.ceil(subs / max(1, len(loads)))
            floor = per_socket / RATE[ex] + 1.0  # the busiest socket's messages, then one 1s bar
            ts = sorted(live.values()) or [float("nan")]
            lasts.append(ts[-1])
            print(f"{r + 1:>3} {len(live):>5} {stats.get('started_s', 0):>7.2f} {ts[0]:>8.2f} {statistics.median(ts):>9.2f} {ts[-1]:>7.2f} "
                  f"{len(loads):>7} {max(loads, default=0):>18} {subs:>10} "
                  f"{stats.get('ws_limit_closes', 0):>12} {floor:>7.2f}"
                  + (f" {stats.get('rest_total', 0):>6} {w.get('peak_1m', 0):>15} {w.get('answered_429', 0):>4} "
                     f"{w.get('answered_418', 0):>4}" if (w := stats.get('weight') or {}) or args.backfill else ""),
                  flush=True)
    print(f"last series LIVE after: min {min(lasts):.2f} s, median {statistics.median(lasts):.2f} s, "
          f"max {max(lasts):.2f} s over {args.runs} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
