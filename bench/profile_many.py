"""Where start-up time goes with many symbols: timestamps along the path, and cProfile of the
strategy's thread and the store's event-loop thread.

    python bench/profile_many.py [--symbols 1000] [--profile] [--top 25]

One websocket feed of 1s bars per symbol on binance (no backfill), as ``bench/many.py``.
Timestamps (seconds from ``cerebro.run()``), recorded by wrapping btccxt's functions in this
script only (nothing in the product is timed): the feeds set up (strategy ``start()``), the
hub's first and last ``add``, the first subscribe the simulator counted, the first and last
message of any series through the closed-flag tap, the first and last bar put in a pipe, and
the first and last series seen LIVE in ``next()``. ``--profile``: the two threads' cProfile,
top functions by own time and by cumulative time (the in-process simulator's thread is not
profiled; it is the same for the ccxt.pro floor).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import backtrader as bt  # noqa: E402

from btccxt_cli.bt.store import CCXTStore  # noqa: E402
from btccxt_cli.sim.app import SimThread  # noqa: E402
from btccxt_cli.sources import base, loop, ws  # noqa: E402

EX = "binance"
MARKS: dict[str, list[float]] = {}
T0 = [0.0]


def mark(name: str) -> None:
    t = time.perf_counter() - T0[0]
    m = MARKS.setdefault(name, [t, t, 0])
    m[1] = t
    m[2] += 1


def wrap(cls: type, name: str, label: str) -> None:
    fn = getattr(cls, name)

    def wrapped(self, *a, **kw):  # type: ignore[no-untyped-def]
        mark(label)
        return fn(self, *a, **kw)

    setattr(cls, name, wrapped)


class UntilLive(bt.Strategy):
    params = (("n", 0), ("sim", None), ("store", None), ("summary", None))

    def __init__(self) -> None:
        self._live: set = set()

    def start(self) -> None:
        mark("strategy start() (feeds set up)")

    def prenext(self) -> None:
        self.next()

    def stop(self) -> None:
        mark("strategy stop()")
        sts = self.p.store.status()
        self.p.summary.update(
            states=dict(Counter(st.state for st in sts)),
            bars={k: sum(st.bars[k] for st in sts) for k in sts[0].bars} if sts else {},
            rest_calls=sum(st.rest_calls for st in sts), reconnects=sum(st.reconnects for st in sts))

    def next(self) -> None:
        for d in self.datas:
            if d not in self._live and len(d) and d.current_event().source.value == "live":
                self._live.add(d)
                mark("series LIVE in next()")
        if len(self._live) == self.p.n:
            self.env.runstop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--symbols", type=int, default=1000)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--align-wait", type=float, default=None, help="the feeds' align_wait (default: theirs)")
    ap.add_argument("--sim-log", action="store_true", help="show the simulator's INFO log")
    ap.add_argument("--timeout", type=float, default=120.0, help="stop the run after this many seconds")
    args = ap.parse_args()
    names = [f"C{i:04d}/USDT" for i in range(args.symbols)]
    if args.sim_log:
        import logging

        logging.basicConfig(level=logging.WARNING)
        logging.getLogger("btccxt_cli.sim").setLevel(logging.INFO)
    wrap(ws.WsHub, "add", "hub add (series subscribed)")
    wrap(ws.WsHub, "_sink", "tap message (any series)")
    wrap(base.Series, "deliver", "bar into a pipe")
    profs: dict[str, cProfile.Profile] = {}
    if args.profile:
        run = loop.LoopThread._run

        def prof_run(self):  # type: ignore[no-untyped-def]
            p = profs["event-loop thread"] = cProfile.Profile()
            p.runcall(run, self)

        loop.LoopThread._run = prof_run  # type: ignore[method-assign]
    with SimThread(exchanges=(EX,), symbols={EX: names}) as sim:
        store = CCXTStore(EX, sim_url=sim.url(EX))
        cerebro = bt.Cerebro(stdstats=False, quicknotify=True)
        kw = {} if args.align_wait is None else {"align_wait": args.align_wait}
        for s in names:
            cerebro.adddata(store.getdata(dataname=s, name=s, timeframe=bt.TimeFrame.Seconds, compression=1,
                                          backfill_start=False, use_websocket=True, **kw), name=s)
        summary: dict = {}
        cerebro.addstrategy(UntilLive, n=len(names), sim=sim, store=store, summary=summary)
        sim.reset_stats(EX)

        def first_subscribe() -> None:
            while "series LIVE in next()" not in MARKS:
                if sim.stats(EX).get("subscribe_requests", 0):
                    mark("first subscribe at the simulator")
                    return
                time.sleep(0.01)

        timer = threading.Timer(args.timeout, cerebro.runstop)
        timer.daemon = True
        timer.start()
        T0[0] = time.perf_counter()
        threading.Thread(target=first_subscribe, daemon=True).start()
        if args.profile:
            p = profs["strategy thread"] = cProfile.Profile()
            p.runcall(cerebro.run)
        else:
            cerebro.run()
        mark("cerebro.run() returned (feeds stopped)")
        timer.cancel()
    print(f"# start-up path, {args.symbols} symbols of 1s bars on {EX}: seconds from cerebro.run()")
    print(f"{'step':<36} {'first s':>8} {'last s':>8} {'count':>7}")
    for name, (a, b, n) in sorted(MARKS.items(), key=lambda kv: kv[1][0]):
        print(f"{name:<36} {a:>8.3f} {b:>8.3f} {n:>7}")
    print(f"# at the strategy's stop: {summary}")
    for label, p in profs.items():
        for key in ("tottime", "cumulative"):
            out = io.StringIO()
            pstats.Stats(p, stream=out).sort_stats(key).print_stats(args.top)
            print(f"\n## {label}, by {key}\n" + "\n".join(out.getvalue().splitlines()[6:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
