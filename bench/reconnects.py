"""Reconnects: threads, file descriptors and sockets across many drops (they must not grow),
and how soon a feed is LIVE again after a drop or an outage.

    python bench/reconnects.py [--drops 1000] [--symbols 3]
    python bench/reconnects.py --recovery [--mode websocket] [--drops 5] [--outages 10 10 30]

Leak check: a store with WebSocket series on the simulator; the simulator drops every socket
as soon as all series are connected again, ``--drops`` times. Counts are sampled along the
way; the process holds both the simulator and the client, so both sides' sockets are counted.

Recovery (``--recovery``): the feeds' default reconnect settings (5 s first delay, 60 s cap),
1s bars. Each socket drop is timed from the drop to every series' LIVE notification, each
outage (REST and WebSocket refused for N s) from its end to LIVE, and from its start to
DISCONNECTED. Faults follow each other ``--gap`` seconds after the last recovery, as they do
in the wild. Prints every sample and p50/p99/max.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from btccxt_cli.bt.store import CCXTStore  # noqa: E402
from btccxt_cli.sim.app import SimThread  # noqa: E402
from btccxt_cli.sources.base import SeriesParams  # noqa: E402


def counts() -> tuple[int, int, int]:
    fds = os.listdir("/proc/self/fd")
    socks = 0
    for fd in fds:
        try:
            socks += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return threading.active_count(), len(fds), socks


def run(drops: int, symbols: list[str], report_every: int, on_sample=None) -> list[tuple[int, int, int, int]]:
    """Drop ``drops`` times; returns samples (drops done, threads, fds, sockets)."""
    samples: list[tuple[int, int, int, int]] = []
    with SimThread(exchanges=("binance",), symbols={"binance": symbols}) as sim:
        store = CCXTStore("binance", sim_url=sim.url("binance"))
        handles = [store.attach(SeriesParams(s, "1s", mode="websocket", backfill_start=False,
                                             reconnect_delay=0.05, max_reconnect_delay=0.2))
                   for s in symbols]
        def drain() -> None:
            for h in handles:
                while h.series.pipe.get(0) is not None:
                    pass

        def wait_reconnected(before: list[int], timeout: float = 30.0) -> None:
            """Until every series has come back once more (its reconnect counter moved)."""
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                handles[0].series.pipe.wait(0.05)
                drain()
                if all(h.series.status().reconnects > b for h, b in zip(handles, before, strict=True)):
                    return
            raise TimeoutError("a series did not reconnect: " + "; ".join(
                f"{h.series.name} {h.series.status().state} r={h.series.status().reconnects} b={b} "
                f"err={h.series.status().last_error[:80]}" for h, b in zip(handles, before, strict=True)))

        end = time.monotonic() + 30  # until every series has delivered a live bar (socket up)
        while not all(h.series.status().bars["live"] for h in handles) and time.monotonic() < end:
            handles[0].series.pipe.wait(0.05)
            drain()
        for i in range(1, drops + 1):
            before = [h.series.status().reconnects for h in handles]
            sim.drop("binance", mode="reset" if i % 2 else "close")
            wait_reconnected(before)
            if i % report_every == 0 or i == 1:
                thr, fds, socks = counts()
                samples.append((i, thr, fds, socks))
                if on_sample:
                    on_sample(samples[-1])
        store.stop()
    return samples


class States:
    """Every state notification of every series, stamped (monotonic) as it leaves the pipe."""

    def __init__(self, handles: list) -> None:
        self.handles = handles
        self.log: list[tuple[float, str, str]] = []  # (monotonic, series, state)

    def pump(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            for h in self.handles:
                if h.driver is not None:  # rest mode: reads happen in the consumer's thread
                    h.driver.pump(0)
                while (ev := h.series.pipe.get(0)) is not None:
                    if ev.kind == "state" and ev.state is not None:
                        self.log.append((time.monotonic(), h.series.name, ev.state.value))
            left = end - time.monotonic()
            if left <= 0:
                return
            self.handles[0].series.pipe.wait(min(0.01, left))

    def first(self, name: str, state: str, after: float) -> float | None:
        return next((t for t, n, st in self.log if n == name and st == state and t >= after), None)

    def wait(self, state: str, after: float | dict[str, float], timeout: float) -> dict[str, float]:
        """Until every series reported ``state`` at or after ``after`` (a time, or one per
        series); their first such times."""
        end = time.monotonic() + timeout
        since = after if isinstance(after, dict) else {h.series.name: after for h in self.handles}
        while True:
            got = {h.series.name: self.first(h.series.name, state, since[h.series.name])
                   for h in self.handles}
            if all(v is not None for v in got.values()):
                return got  # type: ignore[return-value]
            if time.monotonic() > end:
                raise TimeoutError(f"no {state} within {timeout:.0f} s: {got}")
            self.pump(0.05)


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def summary(label: str, xs: list[float]) -> str:
    if not xs:
        return f"{label:<28} -"
    return (f"{label:<28} n={len(xs):<3} p50 {statistics.median(xs):6.2f} s  p99 {pct(xs, 0.99):6.2f} s  "
            f"max {max(xs):6.2f} s")


def recovery(mode: str, symbols: list[str], drops: int, outages: list[float], gap: float,
             **params: float) -> dict[str, list[float]]:
    """Time drops (drop -> LIVE) and outages (end -> LIVE, start -> DISCONNECTED); see the doc."""
    out: dict[str, list[float]] = {"drop_to_live": [], "outage_end_to_live": [],
                                   "fault_to_disconnected": [], "ws_refused_per_outage": []}
    with SimThread(exchanges=("binance",), symbols={"binance": symbols}) as sim:
        store = CCXTStore("binance", sim_url=sim.url("binance"))
        handles = [store.attach(SeriesParams(s, "1s", mode=mode, backfill_start=False, **params))
                   for s in symbols]
        st = States(handles)
        try:
            end = time.monotonic() + 30
            while not all(h.series.status().bars["live"] for h in handles) and time.monotonic() < end:
                st.pump(0.1)
            faults = ([("drop", 0.0)] * drops if mode == "websocket" else []) + [("outage", o) for o in outages]
            for i, (kind, secs) in enumerate(faults, 1):
                st.pump(gap)
                calls0 = store.gate.calls
                refused0 = sim.stats("binance")["ws_rejected"]
                t0 = time.monotonic()
                if kind == "drop":
                    sim.drop("binance", mode="reset" if i % 2 else "close")
                    ref = t0
                else:
                    sim.outage("binance", secs)
                    ref = t0 + secs
                down = st.wait("DISCONNECTED", t0, secs + 30)
                live = st.wait("LIVE", down, secs + 120)
                rec = [live[n] - ref for n in live]
                dis = [down[n] - t0 for n in down]
                out["drop_to_live" if kind == "drop" else "outage_end_to_live"] += rec
                out["fault_to_disconnected"] += dis
                refused = sim.stats("binance")["ws_rejected"] - refused0
                if kind == "outage":
                    out["ws_refused_per_outage"].append(refused)
                what = "drop" if kind == "drop" else f"outage {secs:g} s"
                print(f"  {i:>2} {what:<14} DISCONNECTED after {max(dis):6.2f} s, LIVE {max(rec):6.2f} s after "
                      f"{'the drop' if kind == 'drop' else 'its end'}; meanwhile {store.gate.calls - calls0} "
                      f"REST requests, {refused} WebSocket dials refused", flush=True)
        finally:
            store.stop()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--drops", type=int, default=None, help="(default: 1000; --recovery: 5)")
    ap.add_argument("--symbols", type=int, default=3)
    ap.add_argument("--recovery", action="store_true", help="time recoveries instead of counting leaks")
    ap.add_argument("--mode", default="websocket", choices=["websocket", "threaded", "rest"])
    ap.add_argument("--outages", type=float, nargs="*", default=[10.0, 10.0, 30.0])
    ap.add_argument("--gap", type=float, default=5.0, help="seconds of normal running between faults")
    args = ap.parse_args()
    syms = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "BNB/USDT"][: args.symbols]
    if args.recovery:
        drops = 5 if args.drops is None else args.drops
        print(f"# recovery: {len(syms)} series, 1s bars, {args.mode} mode, default reconnect settings; "
              f"{drops if args.mode == 'websocket' else 0} drops, outages {args.outages} s, {args.gap:g} s apart")
        r = recovery(args.mode, syms, drops if args.mode == "websocket" else 0, args.outages, args.gap)
        print(summary("drop -> LIVE", r["drop_to_live"]))
        print(summary("outage end -> LIVE", r["outage_end_to_live"]))
        print(summary("fault -> DISCONNECTED", r["fault_to_disconnected"]))
        return 0
    args.drops = 1000 if args.drops is None else args.drops
    print(f"# {args.drops} socket drops, {len(syms)} WebSocket series; counts after N drops")
    print(f"{'drops':>6} {'threads':>8} {'fds':>6} {'sockets':>8}")
    t0 = time.monotonic()
    run(args.drops, syms, max(1, args.drops // 10),
        on_sample=lambda s: print(f"{s[0]:>6} {s[1]:>8} {s[2]:>6} {s[3]:>8}", flush=True))
    dt = time.monotonic() - t0
    print(f"{args.drops} reconnects in {dt:.1f} s ({dt / args.drops * 1000:.0f} ms per drop and recovery)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
