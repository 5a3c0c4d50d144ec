"""Chaos soak: a real `btccxt run` against the simulator while faults are injected at random.

    python bench/soak.py [--duration 600] [--symbols 10] [--mode websocket] [--every 10 40] [--seed 1]

Faults (one every EVERY seconds, drawn at random): socket drops (close frame or TCP reset),
outages up to 10 s (REST and WebSocket refused), stalls (socket open, nothing pushed), a window
of duplicated and reordered updates, REST 429/5xx right after a drop (so gap fills meet them),
and a silently lost subscription. Afterwards every bar the strategy saw (the events file) is
compared with the simulator's truth. Exit code 1 when anything was lost, doubled, out of order
or wrong.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from btccxt_cli.sim.app import SimThread  # noqa: E402
from btccxt_cli.timeframes import timeframe_ms  # noqa: E402

EX = "binance"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Chaos:
    """Injects one random fault every [lo, hi] seconds until stopped."""

    def __init__(self, sim: SimThread, symbols: list[str], rng: random.Random, every: tuple[float, float]):
        self.sim, self.symbols, self.rng, self.every = sim, symbols, rng, every
        self.log: list[tuple[int, str]] = []  # (wall ms, fault)
        self.stop = threading.Event()

    def run(self) -> None:
        kinds = ["drop_close", "drop_reset", "outage", "stall", "dup_reorder", "rest_errors_after_drop",
                 "lost_subscription"]
        cycle: list[str] = []
        while not self.stop.wait(self.rng.uniform(*self.every)):
            if not cycle:  # every kind once, in a seeded random order, before any repeats
                cycle = self.rng.sample(kinds, len(kinds))
            kind = cycle.pop()
            t = now_ms()
            sim = self.sim
            if kind == "drop_close":
                sim.drop(EX, mode="close")
            elif kind == "drop_reset":
                sim.drop(EX, mode="reset")
            elif kind == "outage":
                secs = round(self.rng.uniform(1, 10), 1)
                sim.outage(EX, secs)
                kind += f" {secs}s"
            elif kind == "stall":
                secs = round(self.rng.uniform(3, 8), 1)
                sim.stall(EX, secs)
                kind += f" {secs}s"
            elif kind == "dup_reorder":
                sim.duplicate(EX, True)
                sim.reorder(EX, True)
                self.stop.wait(10)
                sim.duplicate(EX, False)
                sim.reorder(EX, False)
            elif kind == "rest_errors_after_drop":
                status = self.rng.choice([429, 500, 502, 503])
                sim.rest_errors(EX, status=status, count=self.rng.randint(2, 6), retry_after=1.0)
                sim.drop(EX, mode="reset")
                kind += f" {status}"
            elif kind == "lost_subscription":
                sym = self.rng.choice(self.symbols)
                sim.drop_subscription(EX, sym)
                kind += f" {sym}"
            self.log.append((t, kind))
            print(f"  fault at +{(t - self.t0) / 1000:6.1f}s: {kind}", flush=True)

    t0 = 0


def analyse(sim: SimThread, events: list[dict], tf: str, faults: list[tuple[int, str]],
            mode: str = "websocket") -> dict:
    tf_ms = timeframe_ms(tf)
    bars: dict[str, list[dict]] = defaultdict(list)
    states: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for e in events:
        if e.get("type") == "bar":
            bars[e["symbol"]].append(e)
        elif e.get("type") == "state":
            states[e["symbol"]].append((e["time"], e["event"]))
    out = {"expected": 0, "delivered": 0, "lost": 0, "duplicated": 0, "out_of_order": 0, "wrong": 0,
           "gapfill_bars": 0, "reconnects": 0, "recoveries_s": [], "drop_to_disconnected_ms": []}
    for sym, bs in bars.items():
        ts = [b["ts"] for b in bs]
        first, last = min(ts), max(ts)
        expected = set(range(first, last + tf_ms, tf_ms))
        truth = {row[0]: row for row in sim.truth(EX, sym, tf, first, last + tf_ms)}
        out["expected"] += len(expected)
        out["delivered"] += len(ts)
        out["lost"] += len(expected - set(ts))
        out["duplicated"] += len(ts) - len(set(ts))
        out["out_of_order"] += sum(1 for a, b in zip(ts, ts[1:], strict=False) if b <= a)
        out["gapfill_bars"] += sum(1 for b in bs if b["source"] == "gapfill")
        for b in bs:
            t = truth.get(b["ts"])
            if t is None or (b["open"], b["high"], b["low"], b["close"], b["volume"]) != tuple(t[1:6]):
                out["wrong"] += 1
        down_at = None
        for when, st in states[sym]:
            if st == "DISCONNECTED" and down_at is None:
                down_at = when
            elif st == "LIVE" and down_at is not None:
                out["reconnects"] += 1
                out["recoveries_s"].append((when - down_at) / 1000)
                down_at = None
    out["fault_end_to_live"] = recovery_times(states, faults)
    out["fault_end_to_live_s"] = [secs for _, secs in out["fault_end_to_live"]]
    # how fast a fault became a DISCONNECTED notification (any symbol, before the next fault);
    # polling modes see only what breaks REST (socket faults and 429s are no disconnection)
    kinds = ("drop", "outage", "rest_errors_after_drop", "stall") if mode == "websocket" else (
        "outage", "rest_errors_after_drop 5")
    nexts = [t for t, _ in faults[1:]] + [1 << 62]
    for (t, kind), nxt in zip(faults, nexts, strict=True):
        if not kind.startswith(kinds):
            continue
        firsts = [when for s in states.values() for when, st in s if st == "DISCONNECTED" and t <= when < nxt]
        if firsts:
            out["drop_to_disconnected_ms"].append(min(firsts) - t)
    return out


def fault_end(t: int, kind: str) -> int:
    """When a fault is over (wall ms): outages and stalls last their seconds, the rest is a moment."""
    if kind.startswith(("outage", "stall")):
        return t + int(float(kind.split()[1].rstrip("s")) * 1000)
    return t


def recovery_times(states: dict[str, list[tuple[int, str]]],
                   faults: list[tuple[int, str]]) -> list[tuple[str, float]]:
    """Per fault and symbol it took down (DISCONNECTED before the next fault): seconds from the
    fault's end (the exchange answering again) to that symbol's next LIVE."""
    out: list[tuple[str, float]] = []  # (fault kind, seconds)
    starts = [t for t, _ in faults] + [1 << 62]
    for i, (t, kind) in enumerate(faults):
        end = fault_end(t, kind)
        for seq in states.values():
            down = next((w for w, st in seq if st == "DISCONNECTED" and t <= w < starts[i + 1]), None)
            if down is None:
                continue
            live = next((w for w, st in seq if st == "LIVE" and w >= down), None)
            if live is not None:
                out.append((kind, max(0.0, (live - end) / 1000)))
    return out


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=600)
    ap.add_argument("--symbols", type=int, default=10)
    ap.add_argument("--mode", default="websocket", choices=["websocket", "threaded", "rest"])
    ap.add_argument("--timeframe", default="1s")
    ap.add_argument("--every", type=float, nargs=2, default=(10, 40), metavar=("MIN", "MAX"))
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    names = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "BNB/USDT", "ADA/USDT", "DOGE/USDT",
             "LTC/USDT", "DOT/USDT", "LINK/USDT"][: args.symbols]
    names += [f"C{i:03d}/USDT" for i in range(args.symbols - len(names))]
    print(f"# soak: {len(names)} symbols, {args.timeframe} bars, {args.mode} mode, {args.duration:.0f} s, "
          f"a fault every {args.every[0]:g}-{args.every[1]:g} s, seed {seed}", flush=True)
    with tempfile.TemporaryDirectory() as tmp, SimThread(exchanges=(EX,), symbols={EX: names}) as sim:
        cfg = Path(tmp) / "soak.yaml"
        ev = Path(tmp) / "events.jsonl"
        cfg.write_text(
            f"exchange: {{id: {EX}, sim: \"{sim.url(EX)}\"}}\n"
            f"symbols: [{', '.join(names)}]\n"
            f"feed: {{mode: {args.mode}, timeframe: {args.timeframe}, backfill: 5, reconnect_delay: 0.5,"
            f" max_reconnect_delay: 5.0, watchdog_silence: 3.0}}\n"
            "strategy: {name: print_bars, params: {level: DEBUG}}\n"
            "logging: {level: WARNING}\n")
        proc = subprocess.Popen([sys.executable, "-m", "btccxt_cli", "run", str(cfg), "--plain",
                                 "--events", str(ev)], stdout=subprocess.DEVNULL,
                                stderr=open(Path(tmp) / "stderr.log", "w"), env={**os.environ})  # noqa: SIM115
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (ev.exists() and '"source":"live"' in ev.read_text()):
            if proc.poll() is not None:
                print((Path(tmp) / "stderr.log").read_text()[-3000:])
                return 2
            time.sleep(0.2)
        chaos = Chaos(sim, names, rng, tuple(args.every))
        chaos.t0 = now_ms()
        th = threading.Thread(target=chaos.run, daemon=True)
        th.start()
        end = time.monotonic() + args.duration
        while time.monotonic() < end and proc.poll() is None:
            time.sleep(0.5)
        chaos.stop.set()
        th.join(15)
        sim.clear_faults(EX)
        time.sleep(3)  # let the last recoveries finish before stopping
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = -9
        events = [json.loads(line) for line in ev.read_text().splitlines() if line.strip()]
        r = analyse(sim, events, args.timeframe, chaos.log, args.mode)
        rec = r["recoveries_s"]
        d2d = r["drop_to_disconnected_ms"]
        print(f"\n# soak report (seed {seed})")
        print(f"faults injected        {len(chaos.log)}")
        for k in ("expected", "delivered", "lost", "duplicated", "out_of_order", "wrong", "gapfill_bars",
                  "reconnects"):
            print(f"{k:<22} {r[k]}")
        print(f"longest recovery       {max(rec):.2f} s" if rec else "longest recovery       -")
        if rec:
            print(f"median recovery        {statistics.median(rec):.2f} s")
        fe = r["fault_end_to_live_s"]
        if fe:
            print(f"fault end -> LIVE      p50 {statistics.median(fe):.2f} s, p99 {pct(fe, 0.99):.2f} s, "
                  f"max {max(fe):.2f} s ({len(fe)} recoveries)")
            worst: dict[str, float] = {}
            for kind, secs in r["fault_end_to_live"]:
                worst[kind.split()[0]] = max(worst.get(kind.split()[0], 0.0), secs)
            print("  slowest by fault     " + ", ".join(f"{k} {v:.2f} s" for k, v in sorted(worst.items())))
        if d2d:
            print(f"fault -> DISCONNECTED  median {statistics.median(d2d):.0f} ms, max {max(d2d):.0f} ms "
                  f"({len(d2d)} faults)")
        print(f"run exit code          {code}")
        if code != 0:
            print((Path(tmp) / "stderr.log").read_text()[-3000:])
        bad = r["lost"] + r["duplicated"] + r["out_of_order"] + r["wrong"]
        print("RESULT: " + ("PASS" if bad == 0 and code == 0 else "FAIL"))
        return 0 if bad == 0 and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
