"""The hub's command line: --check, config errors (one line, exit 2), and a runner killed with
-9 and restarted reads every bar it missed from the hub's stream."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest

from tests.hubtools import HubProc, free_port, hub_config, namespace
from tests.integration.harness import Seen, assert_matches_truth

pytestmark = pytest.mark.live

EX = "binance"


def _cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "btccxt_cli", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_check_a_working_url_and_a_dead_one(redis_server):
    ok = _cli("hub", "--check", redis_server.url)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "ok    server: valkey" in ok.stdout
    assert "refused the second time" in ok.stdout
    dead = _cli("hub", "--check", f"redis://127.0.0.1:{free_port()}/0")
    assert dead.returncode == 2
    assert dead.stdout.startswith("FAIL  connect") and "is Redis/Valkey running" in dead.stdout
    assert "Traceback" not in dead.stdout + dead.stderr


def test_hub_mode_without_url_is_one_line_naming_the_key(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("exchange: {id: binance}\nsymbols: [BTC/USDT]\nfeed: {mode: hub}\n"
                   "strategy: {name: print_bars}\n", encoding="utf-8")
    res = _cli("run", str(cfg), "--plain", "--duration", "2")
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "run.yaml:3" in lines[0] and "hub.url" in lines[0], res.stderr
    hub = _cli("hub", str(cfg))  # a hub reading from a hub
    assert hub.returncode == 2 and "a hub cannot read from a hub" in hub.stderr, hub.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("exchange: {id: binance}\nsymbols: [BTC/USDT]\nhub: {url: 'http://x'}\n",
                   encoding="utf-8")
    res = _cli("hub", str(bad))
    assert res.returncode == 2 and "bad.yaml:3" in res.stderr and "redis://" in res.stderr


def test_runner_killed_and_restarted_misses_and_doubles_nothing(sim_factory, redis_server, tmp_path):
    sim = sim_factory(exchanges=(EX,))
    ns = namespace()
    sym = sim.symbols(EX)[3]
    hub = HubProc(hub_config(tmp_path, "hub.yaml", sim_url=sim.url(EX), redis_url=redis_server.url,
                             ns=ns, symbols=[sym], backfill=30))
    runners: list[HubProc] = []
    try:
        hub.wait_for(": LIVE")
        cfg = hub_config(tmp_path, "run.yaml", sim_url="", redis_url=redis_server.url, ns=ns,
                         symbols=[sym], mode="hub", strategy="print_bars", backfill=20)
        first = HubProc(cfg, "--events", str(tmp_path / "ev1.jsonl"), command="run")
        runners.append(first)
        first.wait_for("[live]", count=3)
        first.kill()
        seen1 = [json.loads(x) for x in (tmp_path / "ev1.jsonl").read_text().splitlines()]
        last1 = max(r["ts"] for r in seen1 if r.get("type") == "bar")
        hub.wait_for(": LIVE")  # (still up)
        second = HubProc(cfg, "--events", str(tmp_path / "ev2.jsonl"), "--max-bars", "3",
                         command="run")
        runners.append(second)
        assert second.proc.wait(40) == 0, "\n".join(second.lines)
        recs = [json.loads(x) for x in (tmp_path / "ev2.jsonl").read_text().splitlines()]
        bars = [Seen(r["ts"], r["ts"], (r["open"], r["high"], r["low"], r["close"], r["volume"]),
                     r["source"], 0, 0) for r in recs if r.get("type") == "bar"]
        assert bars[0].ts <= last1, "the restarted runner's warm-up covers what the first saw last"
        assert_matches_truth(sim, EX, sym, "1s", bars, tf_ms=1000)
        assert [r["event"] for r in recs if r.get("type") == "state"][:2] == ["DELAYED", "LIVE"]
    finally:
        for r in runners:
            r.stop()
        hub.stop()


def test_the_hub_dashboard_shows_series_states_rates_and_redis(sim_factory, redis_server, tmp_path):
    from rich.console import Console

    from btccxt_cli.cli.hub_view import HubView
    from btccxt_cli.runtime.hubd import HubPublisher

    sim = sim_factory(exchanges=(EX,))
    sym = sim.symbols(EX)[0]
    live_bars = []
    three = threading.Event()

    def on_line(line: str) -> None:
        if line.endswith("(live)"):
            live_bars.append(line)
            if len(live_bars) >= 3:
                three.set()

    hub = HubPublisher(EX, [(sym, "1s")], redis_server.url, namespace=namespace(),
                       store_kwargs={"sim_url": sim.url(EX)}, backfill=0, on_line=on_line)
    view = HubView(hub, "redis://:hunter2@127.0.0.1:1/0")
    stop = threading.Event()
    runner = threading.Thread(target=hub.run, args=(stop,), daemon=True)
    runner.start()
    try:
        view.rates()  # the first sample
        assert three.wait(30), "the hub published no live bars"
        con = Console(record=True, width=120)
        con.print(view.render())
        text = con.export_text()
    finally:
        stop.set()
        runner.join(15)
    assert f"{sym}|1s" in text and "LIVE" in text and "[leader] redis up" in text
    assert "hunter2" not in text
    row = next(ln for ln in text.splitlines() if f"{sym}|1s" in ln)
    cells = [c.strip() for c in row.split("│")]
    assert cells[2] == "LIVE" and int(cells[3]) >= 3 and float(cells[4]) > 0, cells  # bars/s


def test_a_redis_password_never_shows(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("exchange: {id: binance}\nsymbols: [BTC/USDT]\nfeed: {mode: hub}\n"
                   f"hub: {{url: 'redis://:s3cretpw@127.0.0.1:{free_port()}/0'}}\n"
                   "strategy: {name: print_bars}\n", encoding="utf-8")
    res = _cli("run", str(cfg), "--plain", "--duration", "3")
    assert "s3cretpw" not in res.stdout + res.stderr
    # no Redis there at the start: one line at hub.url, exit 2, the password masked
    assert res.returncode == 2 and "hub.url: cannot reach Redis at 127.0.0.1:" in res.stderr, \
        res.stderr
    check = _cli("hub", "--check", str(cfg))
    assert check.returncode == 2 and "s3cretpw" not in check.stdout + check.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("exchange: {id: binance}\nsymbols: [BTC/USDT]\n"
                   "hub: {url: 'http://:s3cretpw@127.0.0.1:6379/0'}\n", encoding="utf-8")
    res = _cli("hub", str(bad))  # the value is echoed in the error, its password masked
    assert res.returncode == 2 and "hub.url" in res.stderr, res.stderr
    assert "s3cretpw" not in res.stdout + res.stderr, res.stderr
