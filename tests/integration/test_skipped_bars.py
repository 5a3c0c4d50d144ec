"""Bars a REST answer lacks, and history shorter than asked, are told, against the simulator.

Issue 19 item 10: bars inside a REST-covered span that the answer lacks were skipped as "the
exchange has none" with a DEBUG line nobody read, and kraken, which serves only its newest 720
rows, silently turned ``backfill: 1000`` into 719 bars. Now they show in the events file, the
status, the metrics, the dashboard and the summaries.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console

from btccxt_cli.config.load import loads_config
from btccxt_cli.dashboard.view import DashboardView
from btccxt_cli.runtime.runner import Runner
from tests.cli.test_run_cli import read_events

KRAKEN_LINE = "kraken serves only its newest 720 1m bars: got 719 of 1000"


def _runner(cfg_text: str, sim_url: str, tmp_path: Path, **kw: Any) -> Runner:
    return Runner(loads_config(cfg_text, file="inline.yaml"), sim_url=sim_url,
                  events=tmp_path / "ev.jsonl", **kw)


def test_kraken_backfill_1000_says_it_got_the_newest_720(sim_factory, tmp_path):
    sim = sim_factory(exchanges=("kraken",))
    url = sim.url("kraken")
    cfg = f"""
exchange: {{id: kraken, sim: "{url}"}}
symbols: [BTC/USD]
feed: {{mode: rest, timeframe: 1m, backfill: 1000, ohlcv_limit: 720, cache: false}}
strategy: {{name: print_bars}}
"""
    lines: list[str] = []
    seen: dict[str, Any] = {}

    def on_line(line: str) -> None:
        lines.append(line)
        if line == "event BTC/USD LIVE" and "status" not in seen:
            seen["status"] = runner.store.status()[0]
            runner.stop("history checked")

    runner = _runner(cfg, url, tmp_path, on_line=on_line, duration=60)
    summary = runner.run()
    assert summary.reason == "history checked", summary.reason
    st = seen["status"]
    assert st.history_short == KRAKEN_LINE
    # 281 (282 when a minute turned between the start and the answer: kraken's 720 move on)
    assert st.bars["backfill"] == 719 and st.skipped in (281, 282)
    assert st.skipped_ranges[-1][2] == st.skipped
    events = read_events(tmp_path / "ev.jsonl")
    hist = [r for r in events if r["type"] == "history"]
    assert len(hist) == 1 and (hist[0]["asked"], hist[0]["got"]) == (1000, 719)
    assert hist[0]["message"] == KRAKEN_LINE
    skipped = [r for r in events if r["type"] == "skipped"]
    assert len(skipped) == 1 and skipped[0]["count"] == st.skipped  # one record for the range
    assert skipped[0]["reason"] == "kraken serves only its newest 720 1m bars"
    # the skip before the first bar after it, the shortfall before LIVE
    kinds = [r["type"] if r["type"] != "state" else r["event"] for r in events]
    assert kinds.index("skipped") < kinds.index("bar") and kinds.index("history") < kinds.index("LIVE")
    assert f"event BTC/USD 1m: {KRAKEN_LINE}" in lines  # --plain: one line
    assert f"  BTC/USD 1m: {KRAKEN_LINE}" in summary.lines()  # the exit summary


def test_kraken_backfill_command_says_it_got_fewer_bars_than_asked(sim_factory, tmp_path):
    sim = sim_factory(exchanges=("kraken",))
    db = tmp_path / "cache.sqlite"
    now = sim.now_ms()
    since = datetime.fromtimestamp((now - now % 60_000) / 1000 - 1000 * 60, tz=timezone.utc)
    since_text = since.strftime("%Y-%m-%dT%H:%M:%S")  # 1000 whole bars before the forming one
    p = subprocess.run([sys.executable, "-m", "btccxt_cli", "backfill", "BTC/USD", "-e", "kraken",
                        "--sim-url", sim.url("kraken"), "--since", since_text, "--db", str(db)],
                       capture_output=True, text=True, timeout=120, env={**os.environ})
    assert p.returncode == 0, p.stderr[-2000:]
    short = [line for line in p.stdout.splitlines() if "serves only" in line]
    assert len(short) == 1, p.stdout
    # 719 closed of kraken's 720 rows (718 of 1001 if a minute turned meanwhile)
    assert re.fullmatch(r"BTC/USD: kraken serves only its newest 720 1m bars: got 71[89] of 100[01]",
                        short[0]), short
    p = subprocess.run([sys.executable, "-m", "btccxt_cli", "backfill", "BTC/USD", "-e", "kraken",
                        "--sim-url", sim.url("kraken"), "--since", since_text, "--db", str(db), "--json"],
                       capture_output=True, text=True, timeout=120, env={**os.environ})
    assert p.returncode == 0, p.stderr[-2000:]
    doc = json.loads(p.stdout)["symbols"][0]
    # the cache keeps the first run's bars: a minute turned between the runs adds the newest
    assert doc["cached_bars"] in (718, 719, 720) and doc["asked_bars"] in (1000, 1001)
    assert doc["shortfall"].startswith("kraken serves only its newest 720")


def test_a_hole_in_rest_answers_shows_as_skipped_everywhere(sim, tmp_path):
    url = sim.url("binance")
    now = sim.now_ms()
    first = now - now % 1000 - 40_000
    last = first + 5_000  # six 1 s bars the exchange's REST answers lack
    sim.rest_hole("binance", "BTC/USDT", first, last)
    cfg = f"""
exchange: {{id: binance, sim: "{url}"}}
symbols: [BTC/USDT, ETH/USDT]
feed: {{mode: rest, timeframe: 1s, backfill: 80, cache: false}}
strategy: {{name: print_bars}}
metrics: {{port: 0}}
"""
    got: dict[str, Any] = {}
    done = threading.Event()

    def on_line(line: str) -> None:
        if "[live]" in line and not done.is_set():
            done.set()
            with urllib.request.urlopen(f"http://127.0.0.1:{runner.metrics.port}/metrics",
                                        timeout=5) as r:  # loopback only
                got["metrics"] = r.read().decode()
            snap = runner.monitor.snapshot()
            got["status"] = {f.symbol: f for f in snap.feeds}
            console = Console(width=140, height=40, record=True, color_system=None,
                              file=open(os.devnull, "w"))  # noqa: SIM115
            console.print(DashboardView()(snap))
            console.file.close()
            got["frame"] = console.export_text()
            runner.stop("checked")

    runner = _runner(cfg, url, tmp_path, on_line=on_line, duration=60)
    summary = runner.run()
    assert done.is_set(), summary.reason
    st = got["status"]["BTC/USDT"]
    assert st.skipped == 6 and st.skipped_ranges == ((first, last, 6),)
    assert got["status"]["ETH/USDT"].skipped == 0
    assert re.fullmatch(r"binance has fewer 1s bars than asked: got 7\d of 80", st.history_short)
    skipped = [r for r in read_events(tmp_path / "ev.jsonl") if r["type"] == "skipped"]
    assert [(r["symbol"], r["from"], r["to"], r["count"]) for r in skipped] == [
        ("BTC/USDT", first, last, 6)]
    assert skipped[0]["reason"].startswith("the exchange's REST answer has no bars there")
    labels = 'exchange="binance",symbol="BTC/USDT",timeframe="1s"'
    assert f"btccxt_skipped_bars_total{{{labels}}} 6.0" in got["metrics"]
    assert 'btccxt_skipped_bars_total{exchange="binance",symbol="ETH/USDT",timeframe="1s"} 0.0' \
        in got["metrics"]
    frame = got["frame"].splitlines()
    header = next(line for line in frame if line.startswith("symbol"))
    row = next(line for line in frame if line.startswith("BTC/USDT "))
    at = header.index("skip")
    assert row[at:at + 4].strip() == "6", (header, row)
    assert any("6 bars skipped" in line for line in frame)  # the Events panel
    assert "  BTC/USDT 1s: 6 bars skipped (REST answers had no rows for them), 0 revised by REST" \
        in summary.lines()


def test_rest_hole_through_the_control_api(sim):
    base = sim.url("binance")

    def post(body: dict) -> tuple[int, dict]:
        req = urllib.request.Request(f"{base}/_sim/faults/rest_hole", data=json.dumps(body).encode(),
                                     method="POST")
        try:
            with urllib.request.urlopen(req, timeout=5) as r:  # loopback only
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    assert post({"symbol": "ETH/USDT", "start_ms": 2_000, "end_ms": 1_000})[0] == 400
    assert post({"symbol": "ETH/USDT", "start_ms": 1_000, "end_ms": 2_000})[0] == 200
    with urllib.request.urlopen(f"{base}/_sim/faults", timeout=5) as r:
        assert json.loads(r.read())["rest_holes"] == [["ETH/USDT", 1_000, 2_000]]
    sim.clear_faults("binance")
    assert sim.stats("binance")["faults"]["rest_holes"] == []


def test_the_newest_cached_bar_revised_by_the_exchange_is_told_and_replaced(sim, tmp_path):
    from btccxt_cli.cache.source import cache_source
    from btccxt_cli.cache.sqlite import OhlcvCache
    from btccxt_cli.model import Candle

    url = sim.url("binance")
    source = cache_source("binance", url)
    now = sim.now_ms()
    start, end = now - now % 1000 - 90_000, now - now % 1000 - 20_000
    truth = [Candle.from_ccxt(row) for row in sim.truth("binance", "BTC/USDT", "1s", start, end)]
    tail = truth[-1]
    changed = tail._replace(close=tail.close + 1.0)  # as if the exchange revised it since
    db = tmp_path / "cache.sqlite"
    cache = OhlcvCache(db)
    cache.upsert(source, "BTC/USDT", "1s", truth[:-1] + [changed])
    cache.close()
    cfg = f"""
exchange: {{id: binance, sim: "{url}"}}
symbols: [BTC/USDT]
feed: {{mode: rest, timeframe: 1s, backfill: 60, cache: "{db}"}}
strategy: {{name: print_bars}}
"""
    got: dict[str, Any] = {}

    def on_line(line: str) -> None:
        if "[live]" in line and "status" not in got:
            got["status"] = runner.store.status()[0]
            runner.stop("checked")

    runner = _runner(cfg, url, tmp_path, on_line=on_line, duration=60)
    runner.run()
    assert got["status"].revised == 1 and got["status"].skipped == 0
    revised = [r for r in read_events(tmp_path / "ev.jsonl") if r["type"] == "revised"]
    assert len(revised) == 1 and revised[0]["ts"] == tail.ts
    assert revised[0]["reason"] == "REST differs from the cached bar"
    assert revised[0]["was"][3] == changed.close and revised[0]["now"][3] == tail.close
    cache = OhlcvCache(db)
    try:  # the cache holds the exchange's record again
        assert cache.read(source, "BTC/USDT", "1s", tail.ts, tail.ts + 1000) == [tail]
    finally:
        cache.close()
