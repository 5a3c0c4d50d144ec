"""Bar lateness while another process holds the OHLCV cache's write lock.

    python bench/cache_lock.py [--symbols 10] [--hold 6] [--bars 12] [--sync]

A WebSocket run on the simulator (1s bars, binance) writes every bar to its cache. After the
first live bar a second SQLite connection takes an exclusive lock (what a ``btccxt backfill``
committing a page does, for longer) and holds it for ``--hold`` bars. Printed: how late the
strategy saw each bar after its close (the moment the simulator sends its final update; same
clock), while the lock was held and outside it, and how long after the release the rows held
back were in the file. ``--sync`` writes on the event loop as before the writer thread (the
old behaviour, for comparison).
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import backtrader as bt  # noqa: E402

import btccxt_cli.cache.writer as writer  # noqa: E402
from btccxt_cli.bt.store import CCXTStore  # noqa: E402
from btccxt_cli.cache.sqlite import OhlcvCache  # noqa: E402
from btccxt_cli.sim.app import SimThread  # noqa: E402
from btccxt_cli.sim.venues import MAJORS  # noqa: E402


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


class Probe(bt.Strategy):
    params = (("sim", None), ("db", None), ("hold", 6), ("bars", 12), ("out", None))

    def __init__(self) -> None:
        self.lens = {d: 0 for d in self.datas}
        self.live = 0
        self.other = sqlite3.connect(self.p.db, isolation_level=None, check_same_thread=False)
        self.locked = False

    def notify_data(self, data, status, *args, **kwargs) -> None:
        pass

    def watch_rows(self, released: float) -> None:
        """(own thread) Seconds from the release until every bar held back is in the file."""
        held = list(self.p.out["held"])
        key = self.datas[0].series.cache_key
        conn = sqlite3.connect(self.p.db)
        tick = threading.Event()
        while time.perf_counter() - released < 15:
            n = sum(conn.execute("SELECT COUNT(*) FROM ohlcv WHERE exchange = ? AND symbol = ? "
                                 "AND timeframe = '1s' AND ts = ?", (key, s, t)).fetchone()[0]
                    for s, t in held)
            if n == len(held):
                self.p.out["written_after_s"] = time.perf_counter() - released
                break
            tick.wait(0.005)
        conn.close()

    def next(self) -> None:
        now = self.p.sim.now_ms()
        new = False
        for d in self.datas:
            if len(d) <= self.lens[d]:
                continue
            self.lens[d] = len(d)
            ev = d.current_event()
            if ev is None or ev.source.value != "live":
                continue
            new = True
            self.p.out["late"].append((now - (ev.candle.ts + 1000), self.locked))
            if self.locked:
                self.p.out["held"].append((d._name, ev.candle.ts))
        if not new:
            return
        self.live += 1
        if self.live == 1:
            self.other.execute("BEGIN EXCLUSIVE")
            self.locked = True
        elif self.live == 1 + self.p.hold and self.locked:
            self.other.execute("COMMIT")
            self.locked = False
            threading.Thread(target=self.watch_rows, args=(time.perf_counter(),), daemon=True).start()
        if self.live >= self.p.bars:
            self.env.runstop()


def run(symbols: int, hold: int, bars: int, sync: bool) -> dict:
    out: dict = {"late": [], "held": [], "written_after_s": None}
    with tempfile.TemporaryDirectory() as tmp, SimThread(exchanges=("binance",)) as sim:
        db = Path(tmp) / "ohlcv.sqlite"
        OhlcvCache(db).close()
        if sync:  # before: the store wrote through OhlcvCache on the loop
            writer_live_cache = writer.live_cache
            writer.live_cache = OhlcvCache  # type: ignore[assignment]
        try:
            store = CCXTStore("binance", sim_url=sim.url("binance"), cache=db)
        finally:
            if sync:
                writer.live_cache = writer_live_cache  # type: ignore[assignment]
        cerebro = bt.Cerebro(stdstats=False, quicknotify=True)
        for sym in MAJORS[:symbols]:
            cerebro.adddata(store.getdata(dataname=sym, name=sym, timeframe=bt.TimeFrame.Seconds,
                                          compression=1, use_websocket=True, backfill_bars=3),
                            name=sym)
        cerebro.addstrategy(Probe, sim=sim, db=str(db), hold=hold, bars=bars, out=out)
        timer = threading.Timer(bars + hold + 40, cerebro.runstop)
        timer.daemon = True
        timer.start()
        cerebro.run()
        timer.cancel()
        store.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--symbols", type=int, default=10)
    ap.add_argument("--hold", type=int, default=6, help="live bars the lock is held")
    ap.add_argument("--bars", type=int, default=12, help="live bars in all")
    ap.add_argument("--sync", action="store_true", help="write on the event loop (the old way)")
    a = ap.parse_args()
    out = run(a.symbols, a.hold, a.bars, a.sync)
    how = "on the event loop (old)" if a.sync else "writer thread"
    print(f"cache writes: {how}; {a.symbols} symbols, 1s bars, lock held {a.hold} bars")
    print(f"{'bars':<22} {'n':>5} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9}")
    for name, locked in (("while locked", True), ("lock free", False)):
        xs = [ms for ms, lk in out["late"] if lk is locked]
        if xs:
            print(f"{name:<22} {len(xs):>5} {statistics.median(xs):>9.0f} {pct(xs, 0.99):>9.0f} "
                  f"{max(xs):>9.0f}")
        else:
            print(f"{name:<22} {0:>5}  no bars")
    w = out["written_after_s"]
    print(f"rows held back by the lock: {len(out['held'])}; all in the file "
          + (f"{w * 1000:.0f} ms after the release" if w is not None else "NOT within 15 s"))


if __name__ == "__main__":
    main()
