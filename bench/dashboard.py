"""Cost of one dashboard frame (layout + render to text) beside a bare Rich table of the same rows.

    python bench/dashboard.py [--frames 200]

Prints milliseconds per frame for 3, 20 and 200 symbols at 80, 140 and 200 columns. The frame
is drawn `refresh_per_second` times a second (default 4) on the dashboard's own thread.
"""

from __future__ import annotations

import argparse
import functools
import io
import sys
import time

from rich.console import Console
from rich.table import Table

from btccxt_cli.dashboard.view import DashboardView
from btccxt_cli.model import BrokerStatus, Candle, ConnectionStatus, FeedStatus, Snapshot


def snapshot(n: int) -> Snapshot:
    feeds = [FeedStatus(f"C{i:03d}/USDT", "1m", "websocket", state="LIVE",
                        last_bar=Candle(1_764_938_040_000, 100.0 + i, 101.0 + i, 99.0 + i, 100.5 + i, 12.5),
                        bars={"backfill": 500, "live": 20, "gapfill": 1}, last_message_age_s=0.3,
                        latency_ms_last=12.0, price_decimals=2, amount_decimals=4) for i in range(n)]
    return Snapshot("btccxt binance websocket", 60.0, feeds=feeds,
                    connection=ConnectionStatus("binance", "websocket", "LIVE"),
                    broker=BrokerStatus(cash=10_000.0, value=10_000.0),
                    events=[f"12:00:{i:02d} event {i}" for i in range(20)],
                    closes={f.symbol: [float(x) for x in range(16)] for f in feeds})


def draw_dashboard(console: Console, view: DashboardView, snap: Snapshot) -> None:
    console.file = io.StringIO()
    console.print(view(snap))


def draw_bare(console: Console, snap: Snapshot) -> None:
    """The floor: the four always-shown columns of as many rows as fit, in a default Table."""
    console.file = io.StringIO()
    t = Table()
    for col in ("symbol", "tf", "state", "close"):
        t.add_column(col)
    for f in snap.feeds[:35]:
        t.add_row(f.symbol, f.timeframe, f.state, f"{f.last_bar.close:.2f}" if f.last_bar else "-")
    console.print(t)


def per_frame(draw, frames: int) -> float:
    draw()  # warm up
    t0 = time.perf_counter()
    for _ in range(frames):
        draw()
    return (time.perf_counter() - t0) * 1000 / frames


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=200)
    args = ap.parse_args()
    print(f"{'symbols':>7} {'cols':>5} {'dashboard ms/frame':>19} {'bare table ms/frame':>20}")
    for n in (3, 20, 200):
        snap = snapshot(n)
        for width in (80, 140, 200):
            console = Console(width=width, height=45, file=io.StringIO(), color_system=None)
            view = DashboardView()
            dash = functools.partial(draw_dashboard, console, view, snap)
            bare = functools.partial(draw_bare, console, snap)
            print(f"{n:>7} {width:>5} {per_frame(dash, args.frames):>19.2f} {per_frame(bare, args.frames):>20.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
