"""Run cerebro with CCXTFeeds against the simulator and record what the strategy saw."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timezone
from typing import Any

import backtrader as bt

from btccxt_cli.bt.store import CCXTStore
from btccxt_cli.timeframes import BarGrid, as_grid


@dataclass
class Seen:
    ts: int  # bar open time (ms); for resampled data the backtrader stamp
    stamp: int
    ohlcv: tuple[float, float, float, float, float]
    source: str
    recv_ns: int
    next_ns: int


@dataclass
class RunResult:
    bars: dict[str, list[Seen]] = field(default_factory=dict)
    notes: list[tuple[str, str, str]] = field(default_factory=list)  # (data, status, message)
    #: what the strategy saw, in order: (data, "state", status) and (data, "bar", source)
    timeline: list[tuple[str, str, str]] = field(default_factory=list)
    timed_out: bool = False
    strategy: object = None


class Recorder(bt.Strategy):
    """Records every new bar of every data; stops after ``live_bars`` live bars on each."""

    params = (("live_bars", 3), ("result", None), ("on_next", None))

    def __init__(self) -> None:
        self._lens = {d: 0 for d in self.datas}
        self._live = {d: 0 for d in self.datas}
        for d in self.datas:
            self.p.result.bars[d._name] = []

    def notify_data(self, data, status, *args, **kwargs) -> None:
        msg = args[0] if args else ""
        self.p.result.notes.append((data._name, data._getstatusname(status), msg))
        self.p.result.timeline.append((data._name, "state", data._getstatusname(status)))

    def next(self) -> None:
        t = time.perf_counter_ns()
        for d in self.datas:
            n = len(d)
            if n <= self._lens[d]:
                continue
            self._lens[d] = n
            dt = d.datetime.datetime(0).replace(tzinfo=timezone.utc)
            stamp = int(round(dt.timestamp() * 1000))
            ev = d.current_event()
            # open time from the stamp (close - 1 ms: inside the bar, whatever its grid)
            ts = stamp if d.p.bar_stamp == "open" else d.series.grid.open_of(stamp)
            mine = ev is not None and ev.candle.ts == ts
            src = ev.source.value if mine else "?"
            recv = ev.recv_ns if mine else 0
            self.p.result.bars[d._name].append(
                Seen(ts, stamp, (d.open[0], d.high[0], d.low[0], d.close[0], d.volume[0]), src,
                     recv, t))
            self.p.result.timeline.append((d._name, "bar", src))
            if src == "live":
                self._live[d] += 1
        if self.p.on_next is not None:
            self.p.on_next(self)
        if all(v >= self.p.live_bars for v in self._live.values()):
            self.env.runstop()


def run_feeds(store: CCXTStore, symbols: list[str], *, timeframe=bt.TimeFrame.Seconds,
              compression: int = 1, live_bars: int = 3, timeout: float = 60.0,
              on_next=None, resample: tuple[int, int] | None = None, **feed_kw) -> RunResult:
    """Build cerebro with one feed per symbol, run until ``live_bars`` live bars each."""
    result = RunResult()
    cerebro = bt.Cerebro(stdstats=False, quicknotify=True)
    for sym in symbols:
        data = store.getdata(dataname=sym, name=sym, timeframe=timeframe, compression=compression,
                             **feed_kw)
        if resample:
            cerebro.resampledata(data, name=sym, timeframe=resample[0], compression=resample[1])
        else:
            cerebro.adddata(data, name=sym)
    cerebro.addstrategy(Recorder, live_bars=live_bars, result=result, on_next=on_next)

    def _timeout() -> None:
        result.timed_out = True
        cerebro.runstop()

    timer = threading.Timer(timeout, _timeout)
    timer.daemon = True
    timer.start()
    try:
        strats = cerebro.run()
        result.strategy = strats[0] if strats else None
    finally:
        timer.cancel()
    return result


def run_for(cerebro: Any, store: Any, timeout: float,
            expired: Callable[[], None] | None = None) -> None:
    """Run ``cerebro`` until its strategy stops it or ``timeout`` seconds pass (then
    ``expired()`` is called first), then stop ``store`` (its threads and sockets) whatever
    happened."""
    def expire() -> None:
        if expired is not None:
            expired()
        cerebro.runstop()

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    try:
        cerebro.run()
    finally:
        timer.cancel()
        store.stop()


def truth_map(sim, exchange: str, symbol: str, timeframe: str, since: int, until: int) -> dict[int, tuple]:
    return {row[0]: tuple(float(x) for x in row[1:6])
            for row in sim.truth(exchange, symbol, timeframe, since, until)}


def assert_matches_truth(sim, exchange: str, symbol: str, timeframe: str, seen: list[Seen],
                         *, tf_ms: int | BarGrid) -> None:
    """Each bar once, strictly increasing, contiguous, with the simulator's exact values.

    ``tf_ms``: the bar length, or the bar grid (weeks on Monday, calendar months)."""
    assert seen, f"{symbol}: no bars"
    grid = as_grid(tf_ms)
    ts = [s.ts for s in seen]
    bad = [(a, b) for a, b in zip(ts, ts[1:], strict=False) if b != grid.next_open(a)]
    assert not bad, f"{symbol}: {len(bad)} duplicated/out-of-order/gap steps, first {bad[:3]}"
    truth = truth_map(sim, exchange, symbol, timeframe, ts[0], grid.next_open(ts[-1]))
    for s in seen:
        assert s.ts in truth, f"{symbol}: bar {s.ts} not in the simulator's truth"
        assert s.ohlcv == truth[s.ts], f"{symbol}: bar {s.ts}: saw {s.ohlcv}, truth {truth[s.ts]}"


def check_live_after_the_gap(res: RunResult, sym: str) -> None:
    """LIVE comes back only once the bars missed while disconnected are delivered: none of
    them (``gapfill``) reaches the strategy after the LIVE that ends a disconnection."""
    seen: list[str] = []
    back = False
    for data, kind, what in res.timeline:
        if data != sym:
            continue
        seen.append(what)
        if kind == "state":
            back = what == "LIVE" and "DISCONNECTED" in seen
            if what == "DISCONNECTED":
                seen = ["DISCONNECTED"]
        elif back:
            assert what != "gapfill", f"{sym}: a missed bar after LIVE: {seen}"


def check_history(seen: list[Seen], n: int) -> None:
    """The first ``n`` bars are the ``n`` asked for as history, in order. The newest of them
    may not be final at the exchange when history ends (a start right after a bar closed):
    then it comes as a live bar, by design (``sources/notes.py``, ``history_done``)."""
    sources = [s.source for s in seen[:n]]
    assert sources[:n - 1] == ["backfill"] * (n - 1) and sources[n - 1] in ("backfill", "live"), \
        sources
