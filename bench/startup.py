"""Startup time of `btccxt --help` beside a bare `python -c pass`, measured in the same run.

    python bench/startup.py [--runs 15]

Prints median and p90 wall times (ms) and the difference. Target: `btccxt --help` < 300 ms.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def timed(cmd: list[str], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def summary(xs: list[float]) -> str:
    xs = sorted(xs)
    return f"median {statistics.median(xs):7.1f} ms   p90 {xs[int(len(xs) * 0.9) - 1]:7.1f} ms"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    py = sys.executable
    timed([py, "-m", "btccxt_cli", "--help"], 2)  # warm the disk cache
    base = timed([py, "-c", "pass"], args.runs)
    help_ = timed([py, "-m", "btccxt_cli", "--help"], args.runs)
    ver = timed([py, "-m", "btccxt_cli", "--version"], args.runs)
    print(f"python -c pass      {summary(base)}")
    print(f"btccxt --help       {summary(help_)}")
    print(f"btccxt --version    {summary(ver)}")
    print(f"--help minus bare python: {statistics.median(help_) - statistics.median(base):.1f} ms (median)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
