"""Close-to-strategy latency, beside the ccxt.pro floor measured in the same run.

    python bench/latency.py [--bars 20] [--symbols 1 100 1000] [--runs 5] [--sim-process] [--trace]
                            [--modes websocket threaded rest]

For every closed 1s bar: from the simulator's ``perf_counter_ns()`` just before it sends the
bar's final update, to the strategy's ``next()`` seeing that bar (btccxt), or to a raw
``watch_ohlcv`` return that carries the final values (the ccxt.pro floor; past 100 symbols a
``watch_ohlcv_for_symbols`` loop, ccxt.pro's way to watch many). Simulator and
client share this process, so the clocks agree; ``--sim-process`` runs the simulator in a
process of its own, as an exchange would be (with 1,000 symbols of 1s bars an in-process
simulator's sending is most of the load), and reads the send times over its control API after
each run (``perf_counter_ns`` is the system's monotonic clock on Linux). Also REST calls per
60 live bars per symbol.

REST modes have no push to time from: their latency runs from the bar's end (wall clock) and
so includes the 250 ms settle delay by design. They poll once per bar per symbol; binance's rate limit (50 ms between calls) cannot
serve 100 symbols of 1 s bars, so the 100-symbol REST cases run with the limiter off
(``[no limiter]``): a simulator-only figure of our own overhead. 1,000 symbols are measured in
websocket mode only (REST cannot poll 1,000 symbols of 1 s bars).

Each case runs ``--runs`` times (the floor and btccxt alternate in one simulator); the summary
gives min / median / max over the runs of each run's p50 and p99, and the slowest bar of all.
"""

from __future__ import annotations

import argparse
import asyncio
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
from btccxt_cli.exchange.factory import make_exchange  # noqa: E402
from btccxt_cli.sim.app import SimThread  # noqa: E402

EX = "binance"


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def row(name: str, nsym: int, xs: list[float], rest60: str = "") -> str:
    if not xs:
        return f"{name:<28} {nsym:>4}  {'no samples':>30}"
    return (f"{name:<28} {nsym:>4} {len(xs):>6} {statistics.median(xs):>9.2f} {pct(xs, 0.99):>9.2f} "
            f"{max(xs):>9.2f} {rest60:>12}")


# ----------------------------------------------------------------------------- the floor
def measure_floor(sim: SimThread | SimProcess, symbols: list[str], bars: int) -> list[float]:
    """Raw ccxt.pro: one watch task per symbol; a sample where a return first carries a bar's
    final values (matched with the simulator's truth after the run)."""
    seen: list[tuple[str, int, int, tuple | None]] = []  # (symbol, bar open, perf ns, values)
    passed: dict[str, int] = {}  # symbol -> newest bar open seen
    first: dict[str, int] = {}

    def note(sym: str, rows: list, t: int) -> None:
        for r in rows:
            ts = int(r[0])
            start = first.setdefault(sym, ts + 1000)  # skip the bar in progress when we joined
            if ts >= start:
                seen.append((sym, ts, t, tuple(float(x) for x in r[1:6])))  # ccxt updates rows in place
                passed[sym] = max(passed.get(sym, 0), ts)

    def enough(sym: str) -> bool:  # a later bar began: the last bar wanted has had its final
        return sym in first and passed.get(sym, 0) >= first[sym] + bars * 1000

    async def watch(ex, sym: str, done: asyncio.Event) -> None:
        while not done.is_set() and not enough(sym):
            rows = await ex.watch_ohlcv(sym, "1s")
            note(sym, rows, time.perf_counter_ns())

    async def watch_all(ex, done: asyncio.Event) -> None:
        """Past 100 symbols: one ``watch_ohlcv_for_symbols`` (one watch per symbol would need
        a subscribe message each, 4 a second, over binance's 5 a second)."""
        pairs = [[s, "1s"] for s in symbols]
        while not done.is_set() and not all(enough(s) for s in symbols):
            got = await ex.watch_ohlcv_for_symbols(pairs)
            t = time.perf_counter_ns()
            for sym, by_tf in got.items():
                note(sym, by_tf.get("1s", []), t)

    async def main() -> None:
        ex = make_exchange(EX, kind="pro", sim_url=sim.url(EX))
        await ex.load_markets()
        done = asyncio.Event()
        work = [watch_all(ex, done)] if len(symbols) > 100 else [watch(ex, s, done) for s in symbols]
        try:
            await asyncio.wait_for(asyncio.gather(*work), bars + 60)
        except asyncio.TimeoutError:
            print("  (floor: timed out)", file=sys.stderr)
        finally:
            done.set()
            await ex.close()

    asyncio.run(main())
    return resolve(sim, seen)


def resolve(sim: SimThread | SimProcess, seen: list[tuple[str, int, int, tuple | None]]) -> list[float]:
    """Latency (ms) of each bar's first sighting that carries its final values (``None``
    values: a closed bar by construction), from the simulator's send of that final."""
    opens: dict[str, set[int]] = {}
    for sym, ts, _t, _v in seen:
        opens.setdefault(sym, set()).add(ts)
    sent: dict[tuple[str, int], int | None] = {}
    truth: dict[tuple[str, int], tuple] = {}
    checked = {sym for sym, _ts, _t, v in seen if v is not None}
    for sym, ts_set in opens.items():
        ordered = sorted(ts_set)
        if isinstance(sim, SimProcess):
            sent.update({(sym, ts): ns for ts, ns in sim.closes_sent_ns(sym, "1s", ordered).items()})
        else:
            sent.update({(sym, ts): sim.close_sent_ns(EX, sym, "1s", ts) for ts in ordered})
        if sym in checked:
            for r in sim.truth(EX, sym, "1s", ordered[0], ordered[-1] + 1000):
                truth[(sym, int(r[0]))] = tuple(float(x) for x in r[1:6])
    samples: list[float] = []
    done: set[tuple[str, int]] = set()
    for sym, ts, t, values in sorted(seen, key=lambda x: x[2]):
        key = (sym, ts)
        ns = sent.get(key)
        if key in done or ns is None or (values is not None and values != truth.get(key)):
            continue
        done.add(key)
        samples.append((t - ns) / 1e6)
    return samples


# ----------------------------------------------------------------------------- btccxt
def trace_report(sim: SimThread | SimProcess, trace: list[tuple[str, int, int, int]]) -> None:
    """``--trace``: where the time of each close went (after the first 3 closes), p50/p90/max
    over the closes: the simulator's first and last final sent, the first and last bar into
    a feed's pipe, the strategy's ``next()``."""
    closes: dict[int, list[tuple[str, int, int]]] = {}
    for name, ts, t, recv in trace:
        closes.setdefault(ts, []).append((name, t, recv))
    opens = sorted(closes)[3:]
    sent: dict[tuple[str, int], int | None] = {}
    for sym in {name for name, *_ in trace}:
        if isinstance(sim, SimProcess):
            sent.update({(sym, ts): ns for ts, ns in sim.closes_sent_ns(sym, "1s", opens).items()})
        else:
            sent.update({(sym, ts): sim.close_sent_ns(EX, sym, "1s", ts) for ts in opens})
    steps: dict[str, list[float]] = {}
    for ts in opens:
        rows = closes[ts]
        when = [ns for name, *_ in rows if (ns := sent.get((name, ts))) is not None]
        if not when:
            continue
        first = min(when)
        last_pipe, t_next = max(r[2] for r in rows), max(r[1] for r in rows)
        for label, ns in (("first final sent -> last final sent", max(when)),
                          ("first final sent -> first bar in a pipe", min(r[2] for r in rows)),
                          ("first final sent -> last bar in a pipe", last_pipe)):
            steps.setdefault(label, []).append((ns - first) / 1e6)
        steps.setdefault("last bar in a pipe -> next()", []).append((t_next - last_pipe) / 1e6)
        steps.setdefault("first final sent -> next()", []).append((t_next - first) / 1e6)
    for label, xs in steps.items():
        print(f"  trace {label:<40} p50 {statistics.median(xs):7.2f} p90 {pct(xs, 0.9):7.2f} "
              f"max {max(xs):7.2f} ms")


class Probe(bt.Strategy):
    params = (("bars", 20), ("sim", None), ("out", None), ("marks", None), ("seen", None),
              ("trace", None))

    def __init__(self) -> None:
        self._lens = {d: 0 for d in self.datas}
        self._live = {d: 0 for d in self.datas}

    def next(self) -> None:
        t = time.perf_counter_ns()
        for d in self.datas:
            if len(d) == self._lens[d]:
                continue
            self._lens[d] = len(d)
            ev = d.current_event()
            if ev.source.value != "live":
                continue
            if not any(self._live.values()) and "reset" not in self.p.marks:
                self.p.sim.reset_stats(EX)  # count REST calls from the first live bar on
                self.p.marks["reset"] = time.monotonic()
            self._live[d] += 1
            if self.p.marks.get("wall"):
                # REST modes: nothing is pushed; measure from the bar's end (wall clock)
                self.p.out.append((time.time_ns() - (ev.candle.ts + 1000) * 1_000_000) / 1e6)
                continue
            self.p.seen.append((d._name, ev.candle.ts, t, None))
            if self.p.trace is not None:
                self.p.trace.append((d._name, ev.candle.ts, t, ev.recv_ns))
        if all(v >= self.p.bars for v in self._live.values()):
            self.env.runstop()


def measure_btccxt(sim: SimThread | SimProcess, symbols: list[str], bars: int, mode: str,
                   limiter: bool = True, trace: bool = False) -> tuple[list[float], float]:
    store = CCXTStore(EX, sim_url=sim.url(EX), config={"enableRateLimit": limiter})
    cerebro = bt.Cerebro(stdstats=False, quicknotify=True)
    kw = {"websocket": {"use_websocket": True}, "threaded": {"use_threaded_data": True}, "rest": {}}[mode]
    for s in symbols:
        cerebro.adddata(store.getdata(dataname=s, name=s, timeframe=bt.TimeFrame.Seconds, compression=1,
                                      backfill_start=False, **kw), name=s)
    out: list[float] = []
    seen: list[tuple[str, int, int, None]] = []
    marks: dict = {"wall": mode != "websocket"}
    traced: list[tuple[str, int, int, int]] | None = [] if trace and mode == "websocket" else None
    cerebro.addstrategy(Probe, bars=bars, sim=sim, out=out, marks=marks, seen=seen, trace=traced)
    timer = threading.Timer(bars * 3 + 60, cerebro.runstop)
    timer.daemon = True
    timer.start()
    cerebro.run()
    timer.cancel()
    if traced:
        trace_report(sim, traced)
    klines = sim.stats(EX)["rest"].get("/api/v3/klines", 0)
    live_bars = bars * len(symbols)
    return out + resolve(sim, seen), klines / max(1, live_bars) * 60


def stats(xs: list[float]) -> tuple[float, float, float] | None:
    return (statistics.median(xs), pct(xs, 0.99), max(xs)) if xs else None


def spread(vals: list[float]) -> str:
    return f"{min(vals):.2f}/{statistics.median(vals):.2f}/{max(vals):.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bars", type=int, default=20)
    ap.add_argument("--symbols", type=int, nargs="+", default=[1, 100, 1000])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--modes", nargs="+", default=["websocket", "threaded", "rest"])
    ap.add_argument("--sim-process", action="store_true",
                    help="run the simulator in a process of its own (bars timed over its control API)")
    ap.add_argument("--trace", action="store_true",
                    help="websocket cases: print where each close's time went (first final sent, "
                         "last bar into a feed's pipe, next())")
    args = ap.parse_args()
    sim_cm = SimProcess(EX, max(args.symbols)) if args.sim_process else None
    names = sim_cm.names if sim_cm else [f"C{i:04d}/USDT" for i in range(max(args.symbols))]
    where = "in a process of its own" if sim_cm else "in this process"
    print(f"# close-to-strategy latency (ms), 1s bars, {args.bars} bars per symbol, {args.runs} runs per case, "
          f"simulator {where}")
    print(f"# {platform.node()} {platform.machine()} python {platform.python_version()} "
          f"ccxt {ccxt.__version__} backtrader {bt.__version__} "
          f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC")
    print(f"{'case':<28} {'sym':>4} {'n':>6} {'p50':>9} {'p99':>9} {'max':>9} {'REST/60 bars':>12}")
    summary: list[tuple[str, int, list[tuple[float, float, float]]]] = []
    with sim_cm or SimThread(exchanges=(EX,), symbols={EX: names}) as sim:
        for n in args.symbols:
            syms = names[:n]
            modes = [m for m in args.modes if n <= 100 or m == "websocket"]
            cases: dict[str, list[tuple[float, float, float]]] = {}
            for _run in range(args.runs):
                xs = measure_floor(sim, syms, args.bars)
                print(row("ccxt.pro floor (watch_ohlcv)", n, xs), flush=True)
                if (st := stats(xs)) is not None:
                    cases.setdefault("ccxt.pro floor (watch_ohlcv)", []).append(st)
                for mode in modes:
                    limiter = not (mode != "websocket" and n > 10)
                    xs, rest60 = measure_btccxt(sim, syms, args.bars, mode, limiter=limiter,
                                                 trace=args.trace)
                    label = f"btccxt {mode}" + ("" if limiter else " [no limiter]")
                    print(row(label, n, xs, f"{rest60:.1f}"), flush=True)
                    if (st := stats(xs)) is not None:
                        cases.setdefault(label, []).append(st)
            summary += [(label, n, runs) for label, runs in cases.items()]
    print("\n# over the runs: min/median/max of each run's p50 and p99; the slowest bar of all (ms)")
    print(f"{'case':<28} {'sym':>4} {'runs':>4} {'p50 min/med/max':>22} {'p99 min/med/max':>22} {'max':>9}")
    for label, n, runs in summary:
        print(f"{label:<28} {n:>4} {len(runs):>4} {spread([r[0] for r in runs]):>22} "
              f"{spread([r[1] for r in runs]):>22} {max(r[2] for r in runs):>9.2f}")
    print("\n# btccxt over the floor of the same run (issue 18's targets: p50 and p99 <= 2x, slowest bar <= 3x)")
    print(f"{'case':<28} {'sym':>4} {'runs':>4} {'p50 ratio min/med/max':>22} {'p99 ratio min/med/max':>22} "
          f"{'max ratio':>9}")
    floors = {n: runs for label, n, runs in summary if label.startswith("ccxt.pro floor")}
    for label, n, runs in summary:
        base = floors.get(n)
        if label.startswith("ccxt.pro floor") or base is None or len(base) != len(runs):
            continue
        r50 = [r[0] / f[0] for r, f in zip(runs, base, strict=True)]
        r99 = [r[1] / f[1] for r, f in zip(runs, base, strict=True)]
        worst = max(r[2] for r in runs) / max(f[2] for f in base)
        print(f"{label:<28} {n:>4} {len(runs):>4} {spread(r50):>22} {spread(r99):>22} {worst:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
