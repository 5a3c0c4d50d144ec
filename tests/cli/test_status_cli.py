"""/healthz, /readyz and ``btccxt status`` against a real run (subprocess, the simulator by URL).

The run serves its metrics on a free port (``metrics.port: 0``) and says where in its plain
output; the simulator's fault API takes the feed down. Waits are on output lines and on the
endpoints' answers, with timeouts.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.cli.test_run_cli import btccxt, write_config
from tests.cli.test_run_stop import Output


def get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def until(pred: Any, timeout: float = 30.0, what: Any = None) -> Any:
    """Ask ``pred()`` every 50 ms until it returns something true (or fail after ``timeout``,
    showing ``what()``)."""
    done = threading.Event()
    timer = threading.Timer(timeout, done.set)
    timer.start()
    try:
        while True:
            got = pred()
            if got:
                return got
            assert not done.wait(0.05), f"condition not met in time: {what() if what else ''}"
    finally:
        timer.cancel()


def status(*args: str) -> tuple[int, str, str]:
    p = btccxt("status", *args)
    out, err = p.communicate(timeout=30)
    return p.returncode, out, err


def test_health_readiness_and_status_follow_a_run_and_its_feed_drop(sim, tmp_path):
    cfg = write_config(tmp_path, sim.url("binance"))
    cfg.write_text(cfg.read_text() + "metrics:\n  port: 0\n")
    p = btccxt("run", str(cfg), "--plain")
    out = Output(p)
    try:
        out.wait_for("/readyz)")
        base = re.search(r"metrics on (http://127\.0\.0\.1:\d+)/metrics", "".join(out.lines))[1]
        code, body = get(base + "/healthz")
        assert (code, body) == (200, {"status": "ok", "event_loop": True})
        ready = base + "/readyz"
        # both feeds' history is over once the strategy saw them LIVE (states travel in order
        # with the bars): the counts cannot move after that
        out.wait_for("event BTC/USDT LIVE")
        out.wait_for("event ETH/USDT LIVE")
        code, body = until(lambda: (r := get(ready))[0] == 200 and r, what=lambda: get(ready))
        assert body["ready"] is True and body["account"]["mode"] == "paper"
        feeds = {f["symbol"]: f for f in body["feeds"]}
        assert set(feeds) == {"BTC/USDT", "ETH/USDT"}
        printed = "".join(out.lines)
        for sym, f in feeds.items():
            assert f["state"] == "LIVE" and f["timeframe"] == "1s" and f["max_age_s"] == 2.0
            assert 0 <= f["last_bar_age_s"] < 2.0
            # 5 bars asked; the fifth may come live, and a bar that closes while history
            # loads is history too (docs/data-core.md): what the strategy was given counts
            told = len(re.findall(rf"^bar {re.escape(sym)} 1s .*\[backfill\]$", printed, re.M))
            assert f["bars"]["backfill"] == told >= 4, (f, printed[-2000:])

        # a 1 s bar late by two on a loaded machine is not ready for a moment: ask again
        rc, text, err = until(lambda: (r := status(base))[0] == 0 and r, what=lambda: status(base))
        assert "READY" in text and "BTC/USDT" in text and "ETH/USDT" in text and "LIVE" in text
        rc, text, err = until(lambda: (r := status(base, "--json"))[0] == 0 and r,
                              what=lambda: status(base, "--json"))
        assert json.loads(text)["ready"] is True

        sim.outage("binance", 6.0, ws=True, rest=False)  # the socket drops; upgrades refused

        def dropped() -> Any:  # not ready because a feed is down (not only a late bar)
            code, body = get(ready)
            return code == 503 and any(f["state"] == "DISCONNECTED" for f in body["feeds"]) \
                and (code, body)

        code, body = until(dropped, what=lambda: (get(ready), "".join(out.lines[-20:])))
        assert body["ready"] is False
        assert any(f["state"] == "DISCONNECTED" and "state DISCONNECTED" in f["reason"]
                   for f in body["feeds"])
        assert get(base + "/healthz")[0] == 200  # alive all the same
        rc, text, err = status(base, "--json")
        if rc == 0:  # back already on a slow machine: the drop was seen above
            assert json.loads(text)["ready"] is True
        else:
            assert rc == 1 and json.loads(text)["ready"] is False
        until(lambda: get(ready)[0] == 200, timeout=60, what=lambda: get(ready))  # LIVE again
        until(lambda: status(base)[0] == 0, what=lambda: status(base))
    finally:
        p.send_signal(signal.SIGINT)
        stdout, stderr = out.finish(30)
    assert p.returncode == 0, stderr[-2000:]


def test_status_of_a_closed_port_is_one_line_and_exit_2():
    with socket.socket() as s:  # a port nobody listens on (bound, never listening)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        rc, out, err = status(f"http://127.0.0.1:{port}")
    assert rc == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{port} is unreachable" in lines[0]
    assert "--metrics-port" in lines[0] and "Traceback" not in err


def test_a_stale_last_bar_is_not_ready():
    from btccxt_cli.clock import ManualClock
    from btccxt_cli.model import Candle, FeedStatus
    from btccxt_cli.runtime.health import Health

    clock = ManualClock(start_ms=1_700_000_040_000)  # a minute's start
    t0 = 1_700_000_040_000 - 60_000  # the 1m bar that just closed
    st = FeedStatus(symbol="BTC/USDT", timeframe="1m", mode="websocket", state="LIVE",
                    last_bar=Candle(t0, 1, 1, 1, 1, 1))
    h = Health(lambda: [st], exchange="binance", clock=clock)
    assert h.readyz()[0] == 200
    clock.advance(119.9)  # the next bar is late, but not two bars late
    assert h.readyz()[0] == 200
    clock.advance(0.2)
    code, body = h.readyz()
    assert code == 503 and "more than two bars" in body["feeds"][0]["reason"]
    assert Health(lambda: [], clock=clock).readyz()[0] == 503  # no feed yet: not ready
    assert h.healthz()[0] == 200
    assert Health(lambda: [st], loop_probe=lambda: False).healthz()[0] == 503
    live = Health(lambda: [], broker=lambda: "reconnecting", clock=clock)
    assert live.readyz()[1]["broker"] == {"updates": "reconnecting", "ready": False}


def test_health_mounts_on_its_own_for_other_processes_and_status_reads_it():
    """What `btccxt hub` (or any process with feeds) mounts: no metrics app needed."""
    from btccxt_cli.model import Candle, FeedStatus
    from btccxt_cli.runtime.health import Health, mount, serve

    feeds: list[FeedStatus] = []
    srv = serve(mount(None, Health(lambda: feeds, exchange="okx")), 0)
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        assert get(base + "/healthz")[0] == 200
        rc, out, err = status(base, "--json")
        assert rc == 1 and json.loads(out)["readiness"]["reason"] == "no feed yet"
        now = int(time.time() * 1000)
        feeds.append(FeedStatus(symbol="BTC/USDT", timeframe="1h", mode="websocket", state="LIVE",
                                last_bar=Candle(now // 3_600_000 * 3_600_000 - 3_600_000, 1, 1, 1, 1, 1)))
        rc, out, err = status(base)
        assert rc == 0 and "READY" in out and "BTC/USDT" in out
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(base + "/metrics", timeout=5)
        assert e.value.code == 404
    finally:
        srv.shutdown()
        srv.server_close()
