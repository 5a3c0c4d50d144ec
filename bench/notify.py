"""What notifications and health checks cost a run, beside the same work without them.

    python bench/notify.py [--events 20000] [--probes 200]

Prints:
- microseconds per event record written by ``RunMonitor.event`` (the events file) without a
  subscriber, and with the notifier subscribed (the strategy thread's whole share of it: a
  put in a bounded queue), with a receiver that answers at once and with one that hangs;
- milliseconds from a record to its message arriving at a local receiver (apprise ``json://``,
  batching window 0), p50 and max of 20;
- milliseconds per ``/readyz`` and ``/healthz`` answer over HTTP (3 feeds), beside ``/metrics``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from btccxt_cli.model import Candle, FeedStatus
from btccxt_cli.runtime.health import Health
from btccxt_cli.runtime.metrics import RunMetrics
from btccxt_cli.runtime.notify import Notifier, NotifyRules
from btccxt_cli.runtime.state import RunMonitor


def receiver(hang: bool) -> tuple[ThreadingHTTPServer, list[float], threading.Event]:
    got: list[float] = []
    release = threading.Event()

    class H(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            got.append(time.perf_counter())
            if hang:
                release.wait(60)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a: Any) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, got, release


def per_event_us(n: int, subscribe: Any) -> float:
    with tempfile.TemporaryDirectory() as d:
        mon = RunMonitor("bench", statuses=list, events_path=Path(d) / "ev.jsonl")
        if subscribe is not None:
            mon.subscribe(subscribe)
        t0 = time.perf_counter()
        for _ in range(n):
            mon.on_state("BTC/USDT", "LIVE")
        dt = time.perf_counter() - t0
        mon.close()
    return dt / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--probes", type=int, default=200)
    a = ap.parse_args()

    base = min(per_event_us(a.events, None) for _ in range(3))
    print(f"event record, no subscriber:                        {base:7.2f} us")
    for hang in (False, True):
        srv, got, release = receiver(hang)
        url = f"json://127.0.0.1:{srv.server_address[1]}/hook"
        n = Notifier([url], NotifyRules(), batch_seconds=2.0).start()
        cost = min(per_event_us(a.events, n) for _ in range(3))
        release.set()
        n.close(1.0)
        srv.shutdown()
        label = "event record, notifier subscribed" + (" (receiver hangs):" if hang else ":")
        print(f"{label:52s}{cost:7.2f} us")

    srv, got, _ = receiver(False)
    url = f"json://127.0.0.1:{srv.server_address[1]}/hook"
    n = Notifier([url], NotifyRules(), batch_seconds=0.0, max_per_minute=600).start()
    lat = []
    for i in range(21):
        k = len(got)
        t0 = time.perf_counter()
        n({"type": "kill", "reason": str(i)})
        while len(got) == k:
            time.sleep(0.0005)
        lat.append((got[k] - t0) * 1000)
    n.close()
    srv.shutdown()
    first, lat = lat[0], lat[1:]
    print(f"record -> message at the receiver: first {first:.0f} ms (apprise loads its plugins), "
          f"then p50 {statistics.median(lat):.1f} ms, max {max(lat):.1f} ms (json://, window 0)")

    feeds = [FeedStatus(f"S{i}/USDT", "1m", "websocket", state="LIVE",
                        last_bar=Candle(int(time.time() * 1000) // 60000 * 60000 - 60000, 1, 1, 1, 1, 1))
             for i in range(3)]
    m = RunMetrics(lambda: feeds, lambda: 0, "binance")
    port = m.serve(0, health=Health(lambda: feeds, exchange="binance"))
    for path in ("/healthz", "/readyz", "/metrics"):
        times = []
        for _ in range(a.probes):
            t0 = time.perf_counter()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                    r.read()
            except urllib.error.HTTPError as exc:
                exc.read()
            times.append((time.perf_counter() - t0) * 1000)
        print(f"GET {path:9s} p50 {statistics.median(times):.2f} ms, max {max(times):.2f} ms")
    m.close()


if __name__ == "__main__":
    main()
