"""Notifications (runtime/notify.py) delivered by the real apprise to a real local receiver.

The receiver is an ``http.server`` on 127.0.0.1 (apprise's ``json://`` scheme posts one JSON
object per message); tests wait on the messages it received, with timeouts. Runs go through the
real CLI against the simulator, whose fault API drops the feed.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import subprocess
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_run_cli import btccxt, read_events, write_config
from tests.cli.test_run_stop import Output

TOKEN = "nt-S3cr3t-7f3a91c2e8"


class Receiver:
    """A local webhook receiver: ``status`` is what it answers (200, 500, or ``"hang"``: hold
    every request until ``release()``); ``messages`` the JSON bodies, in order."""

    def __init__(self, status: Any = 200) -> None:
        self.status = status
        self.messages: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.cond = threading.Condition()
        self.released = threading.Event()
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with rec.cond:
                    rec.messages.append(json.loads(body))
                    rec.paths.append(self.path)
                    rec.cond.notify_all()
                if rec.status == "hang":
                    rec.released.wait(60)
                self.send_response(500 if rec.status == 500 else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook/{TOKEN}"

    def wait_for(self, pred: Any, timeout: float = 30.0) -> list[dict[str, Any]]:
        with self.cond:
            ok = self.cond.wait_for(lambda: pred(self.messages), timeout)
            msgs = list(self.messages)
        assert ok, f"not received in {timeout} s: {msgs}"
        return msgs

    def text(self) -> str:
        with self.cond:
            return "\n".join(m["message"] for m in self.messages)

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make(status: Any = 200) -> Receiver:
        made.append(Receiver(status))
        return made[-1]

    yield make
    for r in made:
        r.close()


def notify_config(tmp_path: Path, sim, *, after: float, batch: float = 0.3, extra: str = "") -> Path:
    """tests/cli/test_run_cli.py's config (two 1s symbols over WebSocket) with notify:."""
    cfg = write_config(tmp_path, sim.url("binance"))
    cfg.write_text(cfg.read_text() + f"""notify:
  urls: ["${{BTCCXT_TEST_NOTIFY}}"]
  disconnected_after: {after}
  batch_seconds: {batch}
{extra}""")
    return cfg


def lines_with(msgs: list[dict[str, Any]], text: str) -> list[str]:
    return [line for m in msgs for line in m["message"].splitlines() if text in line]


def wait_lines(out: Output, text: str, n: int, timeout: float = 60.0) -> None:
    with out._new:
        ok = out._new.wait_for(lambda: sum(text in x for x in out.lines) >= n or "" in out.lines,
                               timeout)
    assert ok and sum(text in x for x in out.lines) >= n, "".join(out.err)[-2000:]


def test_a_feed_down_longer_than_the_threshold_notifies_once_and_once_back_live(
        sim, tmp_path, receiver):
    rec = receiver()
    cfg = notify_config(tmp_path, sim, after=1.0)
    ev = tmp_path / "events.jsonl"
    p = btccxt("run", str(cfg), "--plain", "--events", str(ev), env={"BTCCXT_TEST_NOTIFY": rec.url})
    out = Output(p)
    try:
        out.wait_for("[live]")
        sim.outage("binance", 4.0, ws=True, rest=False)  # the socket drops; upgrades refused 4 s
        rec.wait_for(lambda m: len(lines_with(m, "DISCONNECTED for")) >= 2)
        msgs = rec.wait_for(lambda m: len(lines_with(m, "back LIVE after")) >= 2)
        wait_lines(out, "[live]", sum("[live]" in x for x in out.lines) + 2)  # bars again
    finally:
        p.send_signal(signal.SIGINT)
        stdout, stderr = out.finish(30)
    assert p.returncode == 0, stderr[-2000:]
    msgs = rec.wait_for(lambda m: lines_with(m, "run stopped: signal SIGINT"))
    for sym in ("BTC/USDT", "ETH/USDT"):
        assert len([x for x in lines_with(msgs, "DISCONNECTED for") if x.startswith(sym)]) == 1
        assert len([x for x in lines_with(msgs, "back LIVE after") if x.startswith(sym)]) == 1
    # down first, back later; both symbols' drops in one message (the batching window)
    first_down = next(i for i, m in enumerate(msgs) if "DISCONNECTED for" in m["message"])
    first_up = next(i for i, m in enumerate(msgs) if "back LIVE" in m["message"])
    assert first_down < first_up
    assert len(lines_with([msgs[first_down]], "DISCONNECTED for")) == 2
    for text in (stdout, stderr, ev.read_text()):  # the URL's token is a secret
        assert TOKEN not in text
    assert all(TOKEN in path for path in rec.paths)  # ... that apprise did use
    stops = [r for r in read_events(ev) if r["type"] == "stop"]
    assert stops == [{"type": "stop", "event": "stopped", "reason": "signal SIGINT",
                      "time": stops[0]["time"]}]


def test_a_short_drop_says_nothing(sim, tmp_path, receiver):
    rec = receiver()
    cfg = notify_config(tmp_path, sim, after=30.0)
    p = btccxt("run", str(cfg), "--plain", env={"BTCCXT_TEST_NOTIFY": rec.url})
    out = Output(p)
    try:
        out.wait_for("[live]")
        sim.drop("binance")
        out.wait_for("event BTC/USDT DISCONNECTED")
        wait_lines(out, "event BTC/USDT LIVE", 2)  # back LIVE well inside the threshold
    finally:
        p.send_signal(signal.SIGINT)
        stdout, stderr = out.finish(30)
    assert p.returncode == 0, stderr[-2000:]
    msgs = rec.wait_for(lambda m: len(m) >= 1)
    assert [m["message"] for m in msgs] == ["run stopped: signal SIGINT"]


def test_events_within_the_window_go_out_as_one_message(receiver):
    from btccxt_cli.runtime.notify import Notifier, NotifyRules

    rec = receiver()
    n = Notifier([rec.url], NotifyRules(live=True), title="bot", batch_seconds=0.5).start()
    try:
        n({"type": "kill", "reason": "SIGUSR1"})
        n({"type": "order", "event": "Rejected", "side": "buy", "symbol": "BTC/USDT",
           "reason": "max_position"})
        n({"type": "order", "event": "Completed", "side": "sell", "symbol": "ETH/USDT", "size": 0.5,
           "price": 2000.0})
        n({"type": "bar", "symbol": "BTC/USDT"})  # not an event to tell
        n({"type": "stop", "event": "stopped", "reason": "kill switch: SIGUSR1"})
        msgs = rec.wait_for(lambda m: len(m) >= 1)
    finally:
        n.close()
    assert len(msgs) == 1
    assert msgs[0]["title"] == "bot (4 events)"
    assert msgs[0]["message"].splitlines() == [
        "KILL SWITCH (SIGUSR1): open orders cancelled, run stopping",
        "order Rejected buy BTC/USDT: max_position",
        "order filled sell ETH/USDT 0.5 @ 2000",
        "run stopped: kill switch: SIGUSR1"]


def test_the_rate_limit_merges_what_comes_after_it(receiver):
    from btccxt_cli.runtime.notify import Notifier, NotifyRules

    rec = receiver()
    n = Notifier([rec.url], NotifyRules(), batch_seconds=0, max_per_minute=1).start()
    try:
        n({"type": "kill", "reason": "first"})
        rec.wait_for(lambda m: len(m) >= 1)
        for i in range(3):
            n({"type": "stop", "event": "stopped", "reason": f"r{i}"})
    finally:
        n.close()  # pending lines go out at close, as one message, rate or not
    msgs = rec.wait_for(lambda m: len(m) >= 2)
    assert len(msgs) == 2
    assert msgs[1]["message"].splitlines() == ["run stopped: r0", "run stopped: r1", "run stopped: r2"]


@pytest.mark.parametrize("broken", ["500", "closed port"])
def test_a_broken_receiver_is_logged_once_per_streak_and_never_raises(receiver, caplog, broken):
    from btccxt_cli.log import register_notify_url
    from btccxt_cli.runtime.notify import Notifier, NotifyRules

    rec = receiver(500)
    url = rec.url
    if broken == "closed port":
        rec.close()
    register_notify_url(url)  # as the config loader does
    n = Notifier([url], NotifyRules(), batch_seconds=0).start()
    caplog.set_level(logging.INFO, logger="btccxt_cli.runtime.notify")
    try:
        for i in range(3):
            n({"type": "kill", "reason": f"k{i}"})
            done = n.delivered + n.failed
            _wait(lambda d=done: n.delivered + n.failed > d)
        assert n.failed == 3 and n.delivered == 0
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "delivery failed" in warnings[0].getMessage()
        if broken == "500":
            rec.status = 200
            n({"type": "kill", "reason": "ok"})
            _wait(lambda: n.delivered == 1)
            assert any("delivered again" in r.getMessage() for r in caplog.records)
    finally:
        n.close()
    assert TOKEN not in caplog.text


def _wait(pred: Any, timeout: float = 20.0) -> None:
    ev = threading.Event()
    deadline = threading.Timer(timeout, ev.set)
    deadline.start()
    try:
        while not pred():
            assert not ev.wait(0.02), "timed out"
    finally:
        deadline.cancel()


def test_a_hanging_receiver_never_holds_bars_back(sim, tmp_path, receiver):
    rec = receiver("hang")
    cfg = notify_config(tmp_path, sim, after=0.0, batch=0.0)
    p = btccxt("run", str(cfg), "--plain", env={"BTCCXT_TEST_NOTIFY": rec.url})
    out = Output(p)
    try:
        out.wait_for("[live]")
        sim.drop("binance")  # DISCONNECTED: told at once (threshold 0), and the receiver hangs
        rec.wait_for(lambda m: lines_with(m, "DISCONNECTED"))
        seen = sum("[live]" in x for x in out.lines)
        wait_lines(out, "[live]", seen + 4)  # bars keep coming while the delivery hangs
        assert len(rec.messages) == 1  # ... which is still the only one
    finally:
        p.send_signal(signal.SIGINT)
        stdout, stderr = out.finish(30)
        rec.release()
    assert p.returncode == 0, stderr[-2000:]
    assert TOKEN not in stdout + stderr


def test_notify_test_sends_one_message_and_never_prints_the_url(sim, tmp_path, receiver):
    rec = receiver()
    cfg = notify_config(tmp_path, sim, after=1.0)
    p = btccxt("notify-test", str(cfg), env={"BTCCXT_TEST_NOTIFY": rec.url})
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert out.strip() == "sent a test message to 1 notification URL"
    msgs = rec.wait_for(lambda m: len(m) >= 1)
    assert "test message" in msgs[0]["message"] and len(msgs) == 1
    assert TOKEN not in out + err

    rec.close()  # the service is down: exit 1, one line, no token
    p = btccxt("notify-test", str(cfg), env={"BTCCXT_TEST_NOTIFY": rec.url})
    out, err = p.communicate(timeout=60)
    assert p.returncode == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "not delivered" in lines[0] and "Traceback" not in err
    assert TOKEN not in out + err


def test_notify_test_names_a_bad_or_missing_url(tmp_path, sim):
    cfg = notify_config(tmp_path, sim, after=1.0)
    p = btccxt("notify-test", str(cfg), env={"BTCCXT_TEST_NOTIFY": f"nosuch://x/{TOKEN}"})
    out, err = p.communicate(timeout=60)
    assert p.returncode == 2
    assert "notify.urls[0]" in err and "nosuch" in err and TOKEN not in err
    assert len(err.strip().splitlines()) == 1
    bare = write_config(tmp_path, sim.url("binance"))
    p = btccxt("notify-test", str(bare))
    out, err = p.communicate(timeout=60)
    assert p.returncode == 2 and "no notification URL" in err


def test_validate_refuses_a_url_apprise_does_not_understand_as_run_does(sim, tmp_path):
    cfg = notify_config(tmp_path, sim, after=1.0)
    p = btccxt("validate", str(cfg), env={"BTCCXT_TEST_NOTIFY": f"nosuch://x/{TOKEN}"})
    out, err = p.communicate(timeout=60)
    assert p.returncode == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "run.yaml:" in lines[0] and "notify.urls[0]" in lines[0]
    assert TOKEN not in out + err


def test_run_refuses_a_url_apprise_does_not_understand_in_one_line(sim, tmp_path):
    cfg = notify_config(tmp_path, sim, after=1.0)
    p = btccxt("run", str(cfg), "--plain", "--max-bars", "1",
               env={"BTCCXT_TEST_NOTIFY": f"nosuch://x/{TOKEN}"})
    out, err = p.communicate(timeout=60)
    assert p.returncode == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "run.yaml:" in lines[0] and "notify.urls[0]" in lines[0]
    assert TOKEN not in out + err and "[live]" not in out


def test_a_strategy_error_and_the_kill_switch_are_told(sim, tmp_path, receiver):
    rec = receiver()
    strat = tmp_path / "boom.py"
    strat.write_text("""import backtrader as bt


class Boom(bt.Strategy):
    def next(self):
        if len(self.data) > 6:
            raise RuntimeError("strategy bug")
""")
    cfg = write_config(tmp_path, sim.url("binance"), strategy=f"path: {strat}")
    cfg.write_text(cfg.read_text() + 'notify:\n  urls: ["${BTCCXT_TEST_NOTIFY}"]\n')
    ev = tmp_path / "events.jsonl"
    p = btccxt("run", str(cfg), "--plain", "--events", str(ev), env={"BTCCXT_TEST_NOTIFY": rec.url})
    out, err = p.communicate(timeout=60)
    assert p.returncode == 3, err[-2000:]
    msgs = rec.wait_for(lambda m: len(m) >= 1)
    assert [m["message"] for m in msgs] == [
        "strategy error: the strategy raised RuntimeError: strategy bug; the run stopped"]
    recs = read_events(ev)
    assert recs[-1]["type"] == "error" and not [r for r in recs if r["type"] == "stop"]

    rec2 = receiver()
    cfg = notify_config(tmp_path, sim, after=60)
    p = btccxt("run", str(cfg), "--plain", env={"BTCCXT_TEST_NOTIFY": rec2.url})
    run = Output(p)
    try:
        run.wait_for("[live]")
        p.send_signal(signal.SIGUSR1)
        stdout, stderr = run.finish(30)
    finally:
        p.kill()
    assert p.returncode == 0, stderr[-2000:]
    msgs = rec2.wait_for(lambda m: lines_with(m, "run stopped"))
    text = rec2.text().splitlines()
    assert text == ["KILL SWITCH (SIGUSR1): open orders cancelled, run stopping",
                    "run stopped: kill switch: SIGUSR1"]


def test_a_live_run_tells_orders_rejected_and_filled_and_readyz_shows_the_order_stream(
        sim_factory, tmp_path, receiver):
    from btccxt_cli.sim.accounts import SimKey
    from tests.cli import test_live_cli as lc

    sim = sim_factory(exchanges=("binance",), api_keys=[SimKey(lc.KEY, lc.SECRET, lc.PASS)],
                      balances={"USDT": 5_000.0})
    rec = receiver()
    cfg = lc.write_config(tmp_path, sim.url("binance"))  # buys, rests a limit, oversells
    cfg.write_text(cfg.read_text() + 'notify:\n  urls: ["${BTCCXT_TEST_NOTIFY}"]\n'
                   "  batch_seconds: 0.2\nmetrics:\n  port: 0\n")
    p = btccxt("run", str(cfg), "--plain", "--live", "--yes",
               env={**lc.ENV, "BTCCXT_TEST_NOTIFY": rec.url}, stdin=subprocess.DEVNULL)
    run = Output(p)
    try:
        msgs = rec.wait_for(lambda m: lines_with(m, "order filled") and lines_with(m, "Rejected"))
        run.wait_for("/readyz)")
        base = re.search(r"metrics on (http://127\.0\.0\.1:\d+)/metrics", "".join(run.lines))[1]

        def stream_up() -> Any:
            with urllib.request.urlopen(base + "/readyz", timeout=5) as r:  # 200: ready
                body = json.loads(r.read())
            return body.get("broker", {}).get("updates") == "websocket" and body

        body = _until(stream_up)
        assert body["broker"] == {"updates": "websocket", "ready": True}
        assert body["account"]["mode"] == "live"
        (tmp_path / "STOP").write_text("")
        stdout, stderr = run.finish(30)
    finally:
        p.kill()
    assert p.returncode == 0, stderr[-2000:]
    msgs = rec.wait_for(lambda m: lines_with(m, "run stopped"))
    assert lines_with(msgs, "order filled buy BTC/USDT 0.001 @ ")
    rejected = lines_with(msgs, "order Rejected sell BTC/USDT: ")
    assert len(rejected) == 1 and "more than this bot holds" in rejected[0]
    assert lines_with(msgs, "KILL SWITCH (file ")
    for text in (stdout, stderr, rec.text()):
        assert lc.KEY not in text and lc.SECRET not in text and TOKEN not in text


def _until(pred: Any, timeout: float = 30.0) -> Any:
    done = threading.Event()
    timer = threading.Timer(timeout, done.set)
    timer.start()
    try:
        while not (got := _quiet(pred)):
            assert not done.wait(0.05), "timed out"
        return got
    finally:
        timer.cancel()


def _quiet(pred: Any) -> Any:
    try:
        return pred()
    except urllib.error.HTTPError:  # 503: not ready yet
        return None


OPEN_100X = """import backtrader as bt


class Open(bt.Strategy):
    params = (("side", "buy"),)

    def __init__(self):
        self.sent = False

    def next(self):
        if self.sent or self.data._laststatus != self.data.LIVE:
            return
        self.sent = True
        (self.buy if self.p.side == "buy" else self.sell)(size=0.1)
"""


@pytest.mark.long
def test_a_liquidation_of_a_live_swap_is_an_event_a_record_and_a_notification(
        sim_factory, tmp_path, receiver):
    """A live run holds 0.1 BTC at 100x isolated on okx's swap (long if the price path falls 1 %
    before it rises 1 %, else short: the shorter jump); the simulator's clock jumps to where the
    path reaches the liquidation price, and the exchange closes the position. The run says so:
    an event line, a ``{"type": "position", "event": "liquidation"}`` record, and a notification
    "LIQUIDATED ..."."""
    from btccxt_cli.exchange.factory import make_exchange
    from btccxt_cli.sim.accounts import SimKey
    from tests.cli import test_live_cli as lc

    swap = "BTC/USDT:USDT"
    sim = sim_factory(exchanges=("okx",), api_keys=[SimKey(lc.KEY, lc.SECRET, lc.PASS)],
                      balances={"USDT": 5_000.0}, check_timestamps=False)  # the test jumps its clock
    rec = receiver()
    eng = sim.sim.server("okx").engine
    t = now = sim.now_ms() - sim.now_ms() % 1000
    p0 = eng.price(swap, now)
    while 0.99 * p0 < eng.price(swap, t) < 1.01 * p0:  # which way the path goes 1 % first
        t += 10_000
        assert t - now < 10 * 86_400_000, "the price path never moved 1 %"
    side = "buy" if eng.price(swap, t) <= 0.99 * p0 else "sell"
    sign = 1 if side == "buy" else -1
    (tmp_path / "long.py").write_text(OPEN_100X)
    cfg = tmp_path / "live.yaml"
    cfg.write_text(f"""exchange:
  id: okx
  sim: {sim.url("okx")}
  api_key: ${{BTCCXT_LIVE_KEY}}
  secret: ${{BTCCXT_LIVE_SECRET}}
  password: ${{BTCCXT_LIVE_PASS}}
symbols: [{swap}]
feed:
  mode: websocket
  timeframe: 1s
  backfill: 2
strategy:
  path: long.py
  params: {{side: {side}}}
broker:
  mode: live
  orders_db: orders.sqlite
  poll_interval: 0.2
  kill_switch_file: STOP
  leverage: 100
  margin_mode: isolated
notify:
  urls: ["${{BTCCXT_TEST_NOTIFY}}"]
  batch_seconds: 0.2
events:
  file: events.jsonl
""")
    p = btccxt("run", str(cfg), "--plain", "--live", "--yes",
               env={**lc.ENV, "BTCCXT_TEST_NOTIFY": rec.url}, stdin=subprocess.DEVNULL)
    run = Output(p)
    try:
        rec.wait_for(lambda m: lines_with(m, f"order filled {side} BTC/USDT:USDT 0.1 @ "))
        ex = make_exchange("okx", sim_url=sim.url("okx"),
                           config={"apiKey": lc.KEY, "secret": lc.SECRET, "password": lc.PASS})
        (pos,) = ex.fetch_positions([swap])
        liq = float(pos["liquidationPrice"])
        t = start = sim.now_ms() - sim.now_ms() % 1000
        while (eng.price(swap, t) - liq) * sign > 0:  # where the path reaches it: 10 s steps
            t += 10_000
            assert t - start < 10 * 86_400_000, "the price path never reached the liquidation price"
        sim.sim.clock_offset_ms += t + 2000 - sim.now_ms()
        msgs = rec.wait_for(lambda m: lines_with(m, "LIQUIDATED"))
        (tmp_path / "STOP").write_text("")
        stdout, stderr = run.finish(30)
    finally:
        p.kill()
    held = f"{sign * 0.1:+g}"
    [line] = lines_with(msgs, "LIQUIDATED")
    assert line.startswith(f"LIQUIDATED {swap}: {held} -> +0 at "), line
    [record] = [r for r in read_events(tmp_path / "events.jsonl") if r["type"] == "position"]
    assert (record["event"], record["symbol"], record["before"], record["after"]) == \
        ("liquidation", swap, pytest.approx(sign * 0.1), 0.0)
    assert record["price"] > 0
    assert f"position {swap} {held} -> +0 at " in stdout
    for text in (stdout, stderr, rec.text()):
        assert lc.KEY not in text and lc.SECRET not in text and TOKEN not in text
