"""How fast `btccxt run` stops: a normal stop, a strategy stuck in next(), a signal during start-up.

    python bench/stop.py [--rounds 5] [--grace 2]

Runs the real CLI in subprocesses against the built-in simulator (``sim: true``, 1s bars) and
prints, per case, the time from the signal to the process's end (median and max) and the exit
codes seen:

* normal: SIGTERM after the first live bar (reference: the run's own stop, expected < 1 s);
* stuck: a strategy sleeping in next(), SIGTERM, ``--stop-grace G``: the time beyond G is the
  forced stop's own cost (closing feeds, store, events file, summary);
* start-up: SIGTERM at fixed delays after the process was started: from which delay on the
  signal is a normal stop (exit 0) rather than a kill by the signal (-15): the window before
  Python and the CLI are far enough to install the handler.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

CONFIG = """exchange: {{id: binance, sim: true}}
symbols: [BTC/USDT]
feed: {{mode: websocket, timeframe: 1s, backfill: 3}}
strategy: {{path: {strategy}}}
"""

STUCK = """import time

import backtrader as bt


class Stuck(bt.Strategy):
    def next(self):
        if len(self.data) > 4:
            print("STUCK", flush=True)
            time.sleep(1000)
"""

PLAIN = """import backtrader as bt


class Plain(bt.Strategy):
    def next(self):
        if len(self.data) > 4:
            print("LIVE", flush=True)
"""


def start(cfg: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "btccxt_cli", "run", str(cfg), "--plain", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def signal_on(p: subprocess.Popen, marker: str) -> tuple[float, int]:
    """Send SIGTERM once ``marker`` is printed; (seconds from the signal to the end, exit code)."""
    seen = threading.Event()

    def read() -> None:
        assert p.stdout is not None
        for line in p.stdout:
            if marker in line:
                seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if not seen.wait(60):
        p.kill()
        raise SystemExit(f"no {marker!r} within 60 s")
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    code = p.wait(60)
    return time.monotonic() - t0, code


def row(name: str, times: list[float], codes: list[int], note: str = "") -> None:
    print(f"{name:<34} median {statistics.median(times) * 1000:7.0f} ms   max "
          f"{max(times) * 1000:7.0f} ms   exit codes {sorted(set(codes))}{note}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--grace", type=float, default=2.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        configs = {}
        for name, code in (("plain", PLAIN), ("stuck", STUCK)):
            (d / f"{name}.py").write_text(code)
            configs[name] = d / f"{name}.yaml"
            configs[name].write_text(CONFIG.format(strategy=d / f"{name}.py"))
        times, codes = [], []
        for _ in range(args.rounds):
            t, c = signal_on(start(configs["plain"]), "LIVE")
            times.append(t)
            codes.append(c)
        row("normal stop (SIGTERM)", times, codes)
        times, codes = [], []
        for _ in range(args.rounds):
            t, c = signal_on(start(configs["stuck"], "--stop-grace", f"{args.grace:g}"), "STUCK")
            times.append(t)
            codes.append(c)
        row(f"stuck in next(), grace {args.grace:g} s", times, codes,
            f"   beyond the grace: median {(statistics.median(times) - args.grace) * 1000:.0f} ms")
        print("start-up: SIGTERM at a delay after the process started -> exit codes")
        for delay in (0.1, 0.2, 0.3, 0.4, 0.6, 1.0):
            seen = []
            for _ in range(args.rounds):
                p = start(configs["plain"])
                time.sleep(delay)  # a bench's fixed delay, not a synchronisation
                p.send_signal(signal.SIGTERM)
                seen.append(p.wait(60))
            print(f"  {delay:4.1f} s: {seen}")


if __name__ == "__main__":
    main()
