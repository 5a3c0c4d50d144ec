"""Run every benchmark and write bench/RESULTS.md.

    python bench/run_all.py [--quick] [--out bench/RESULTS.md]

Each benchmark prints its figure beside its reference, measured in the same run: the ccxt.pro
floor for latency, bare ccxt paging for backfill, ``python -c pass`` for startup, backtrader's
unbounded buffers for memory. ``--quick`` shortens every run (a smoke test, not figures).
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

BENCHES = [
    ("Startup: `btccxt --help` vs `python -c pass`", ["startup.py", "--runs", "15"], ["startup.py", "--runs", "3"]),
    ("Close-to-strategy latency vs the ccxt.pro floor (1s bars)",
     ["latency.py", "--bars", "20", "--symbols", "1", "100"],
     ["latency.py", "--bars", "3", "--symbols", "1", "5"]),
    ("Idle CPU of a live run (simulator in another process)", ["idle.py", "--seconds", "30"],
     ["idle.py", "--seconds", "3"]),
    ("Backfill: one year of 1m bars vs bare ccxt paging", ["backfill.py", "--rounds", "2"],
     ["backfill.py", "--bars", "20000", "--no-trace"]),
    ("Backtest: one year of 1m bars, btccxt backtest vs plain backtrader over a CSV",
     ["backtest.py", "--rounds", "2"], ["backtest.py", "--bars", "20000", "--rounds", "1"]),
    ("Memory: 1,000,000 bars, bounded vs unbounded buffers",
     ["memory.py", "--symbols", "10", "--bars-per-symbol", "100000", "--compare"],
     ["memory.py", "--symbols", "2", "--bars-per-symbol", "2000"]),
    ("Reconnects: threads, fds and sockets across socket drops", ["reconnects.py", "--drops", "300"],
     ["reconnects.py", "--drops", "5"]),
    ("Recovery: socket drop and outage end to LIVE (websocket, rest, threaded)",
     ["reconnects.py", "--recovery", "--drops", "5", "--outages", "10", "10", "30", "60"],
     ["reconnects.py", "--recovery", "--drops", "1", "--outages", "3"]),
    ("Cache verify: 100,000 1m bars checked against the exchange, vs their backfill",
     ["cache_verify.py"], ["cache_verify.py", "--bars", "5000"]),
    ("Bar grid arithmetic: assembler and gap detection speed", ["grids.py"], ["grids.py"]),
    ("Live orders: fill notification latency and REST load, WebSocket updates vs polling",
     ["orders.py", "--rounds", "20", "--idle", "60"], ["orders.py", "--rounds", "2", "--idle", "3"]),
    ("Chaos soak (10 symbols, 1s bars, websocket, faults every 10-40 s)",
     ["soak.py", "--duration", "600", "--seed", "7"],
     ["soak.py", "--duration", "30", "--every", "4", "6", "--seed", "7"]),
    ("Order chaos soak (live broker, binance and okx, random orders, faults every 5-15 s)",
     ["orders_soak.py", "--duration", "300", "--seed", "7"],
     ["orders_soak.py", "--duration", "20", "--every", "2", "4", "--seed", "7",
      "--ambiguous-timeout", "5"]),
    ("Dashboard: one frame (layout and render) vs a bare Rich table, 3/20/200 symbols",
     ["dashboard.py", "--frames", "200"], ["dashboard.py", "--frames", "5"]),
    ("Cache write lock held by another process: bar lateness, locked vs lock free (10 symbols)",
     ["cache_lock.py", "--symbols", "10", "--hold", "6", "--bars", "12"],
     ["cache_lock.py", "--symbols", "2", "--hold", "2", "--bars", "4"]),
    ("Kill switch: cancelling many resting orders (REST answers 50 ms late)",
     ["kill_switch.py", "--orders", "10", "40"], ["kill_switch.py", "--orders", "5"]),
    ("Stopping: SIGTERM to exit, normal, strategy stuck in next(), during start-up",
     ["stop.py", "--rounds", "5", "--grace", "2"], ["stop.py", "--rounds", "1", "--grace", "1"]),
    ("Notifications and health: an event record with/without the notifier, delivery, /readyz",
     ["notify.py"], ["notify.py", "--events", "2000", "--probes", "20"]),
]


def versions() -> str:
    import importlib.metadata as md

    def v(name: str) -> str:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return "-"

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return (f"- machine: {platform.machine()}, {os.cpu_count()} cores, {cpu}\n"
            f"- python {platform.python_version()}, ccxt {v('ccxt')}, backtrader {v('backtrader')}, "
            f"aiohttp {v('aiohttp')}, btccxt {v('btccxt')}\n"
            f"- date: {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    args = ap.parse_args()
    parts = ["# btccxt benchmark results", "",
             "Written by `python bench/run_all.py`; every figure sits beside its reference, "
             "measured in the same run on the same machine (simulator on 127.0.0.1, in-process).",
             "", versions(), ""]
    failed = 0
    for title, full, quick in BENCHES:
        argv = quick if args.quick else full
        print(f"== {title}: {' '.join(argv)}", flush=True)
        t0 = time.monotonic()
        p = subprocess.run([sys.executable, str(HERE / argv[0]), *argv[1:]], capture_output=True, text=True)
        dt = time.monotonic() - t0
        out = p.stdout.strip() or p.stderr.strip()[-3000:]
        print(out, flush=True)
        if p.returncode:
            failed += 1
        parts += [f"## {title}", "", f"`python bench/{' '.join(argv)}` ({dt:.0f} s, exit {p.returncode})",
                  "", "```", out, "```", ""]
    args.out.write_text("\n".join(parts))
    print(f"wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
