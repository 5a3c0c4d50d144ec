"""Threads, file descriptors and sockets across many reconnects (they must not grow).

    python bench/reconnects.py [--drops 1000] [--symbols 3]

A store with WebSocket series on the simulator; the simulator drops every socket as soon as
all series are connected again, ``--drops`` times. Counts are sampled along the way; the
process holds both the simulator and the client, so both sides' sockets are counted.
"""

from __future__ import annotations

import argparse
import os
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--drops", type=int, default=1000)
    ap.add_argument("--symbols", type=int, default=3)
    args = ap.parse_args()
    syms = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "BNB/USDT"][: args.symbols]
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
