"""The runner in-process: config in, a run with a drop, a snapshot mid-run, nothing left behind."""

from __future__ import annotations

import threading

from rich.console import Console

from btccxt_cli.config.load import loads_config
from btccxt_cli.dashboard.view import render
from btccxt_cli.runtime.runner import Runner


def test_runner_survives_a_drop_renders_and_leaves_no_thread(sim, tmp_path):
    cfg = loads_config(f"""
exchange: {{id: binance, sim: "{sim.url('binance')}"}}
symbols: [BTC/USDT, ETH/USDT]
feed: {{mode: websocket, timeframe: 1s, backfill: 3, reconnect_delay: 0.2, max_reconnect_delay: 1.0}}
strategy: {{name: sma_cross, params: {{fast: 2, slow: 4}}}}
""", file="inline.yaml")
    lines: list[str] = []
    frames: list[str] = []
    state = {"dropped": False}

    def on_line(line: str) -> None:
        lines.append(line)
        live = sum("[live]" in x for x in lines)
        if live >= 4 and not state["dropped"]:
            state["dropped"] = True
            sim.drop("binance", mode="reset")
        if "DISCONNECTED" in line or (state["dropped"] and live % 4 == 0):
            console = Console(width=200, color_system=None, record=True)
            console.print(render(runner.monitor.snapshot()))
            frames.append(console.export_text())

    before = {t.ident for t in threading.enumerate()}
    runner = Runner(cfg, sim_url=sim.url("binance"), max_bars=8, on_line=on_line,
                    events=tmp_path / "ev.jsonl")
    summary = runner.run()
    assert summary.reason == "--max-bars 8 reached"
    assert all(c["live"] >= 8 for c in summary.bars.values())
    assert summary.reconnects >= 2  # both symbols came back
    assert any("DISCONNECTED" in f for f in frames), "the dashboard showed the drop"
    assert any("BTC/USDT" in f and "ETH/USDT" in f for f in frames)
    left = [t.name for t in threading.enumerate()
            if t.ident not in before and t.is_alive() and t.name.startswith("btccxt") and t.name != "btccxt-sim"]
    assert left == [], f"threads left behind: {left}"


def test_prometheus_metrics_are_served_during_a_run(sim):
    import urllib.request

    cfg = loads_config(f"""
exchange: {{id: binance, sim: "{sim.url('binance')}"}}
symbols: [BTC/USDT]
feed: {{mode: websocket, timeframe: 1s, backfill: 3}}
strategy: {{name: print_bars}}
metrics: {{port: 0}}
""", file="inline.yaml")
    scraped: list[str] = []
    history: list[str] = []

    def on_line(line: str) -> None:
        if "[backfill]" in line and not scraped:
            history.append(line)
        if "[live]" in line and not scraped:
            url = f"http://127.0.0.1:{runner.metrics.port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as r:  # loopback only
                scraped.append(r.read().decode())

    runner = Runner(cfg, sim_url=sim.url("binance"), max_bars=3, on_line=on_line)
    runner.run()
    text = scraped[0]
    # the history bars the strategy got: 3 asked, and a bar closing while they load is history too
    assert len(history) in (3, 4), history
    assert ('btccxt_bars_total{exchange="binance",source="backfill",symbol="BTC/USDT",timeframe="1s"} '
            f"{len(history)}.0") in text
    assert 'btccxt_feed_state{exchange="binance",state="LIVE",symbol="BTC/USDT"} 1.0' in text
    assert "btccxt_close_to_strategy_seconds_bucket" in text
    assert "btccxt_last_message_age_seconds" in text and "btccxt_store_rest_calls_total" in text
    assert runner.metrics is not None and runner.metrics.server is None, "server closed at the end"


HUNG = """import socket

import backtrader as bt


class Hung(bt.Strategy):
    params = (("port", 0),)

    def next(self):
        if len(self.data) > 3:
            conn = socket.create_connection(("127.0.0.1", self.p.port))
            conn.recv(1)  # a hung socket: the server never answers
"""


def test_a_strategy_hung_on_a_socket_is_stopped_by_force_and_everything_closed(sim, tmp_path):
    import socket

    from btccxt_cli.runtime.stopping import EXIT_FORCED

    strat = tmp_path / "hung.py"
    strat.write_text(HUNG)
    server = socket.create_server(("127.0.0.1", 0))
    cfg = loads_config(f"""
exchange: {{id: binance, sim: "{sim.url('binance')}"}}
symbols: [BTC/USDT]
feed: {{mode: websocket, timeframe: 1s, backfill: 2}}
strategy: {{path: "{strat}", params: {{port: {server.getsockname()[1]}}}}}
""", file="inline.yaml")
    forced: list = []
    hung: list = []

    def stop_when_hung() -> None:  # the strategy's connection arrives: it now waits forever
        conn, _ = server.accept()
        hung.append(conn)
        runner.stop("test stop")

    def on_force(summary) -> None:  # the CLI ends the process here; this test lets go instead
        forced.append((summary, runner.monitor._file))
        hung[0].close()  # the strategy's recv() returns: cerebro can end

    before = {t.ident for t in threading.enumerate()}
    runner = Runner(cfg, sim_url=sim.url("binance"), stop_grace=0.5, on_force=on_force,
                    events=tmp_path / "ev.jsonl")
    threading.Thread(target=stop_when_hung, daemon=True).start()
    try:
        summary_after = runner.run()
    finally:
        server.close()
    summary, events_file = forced[0]
    assert summary.exit_code == EXIT_FORCED
    assert summary.reason.startswith("test stop, then by force (exit 4): the strategy did not "
                                     "return within 0.5 s of test stop: stuck in next() at "
                                     f"{strat}:12: conn.recv(1)")
    assert summary_after.reason == summary.reason  # run() returned once the strategy let go
    assert events_file is None, "the events file was closed before on_force"
    assert '"event":"forced"' in (tmp_path / "ev.jsonl").read_text().splitlines()[-1]
    left = [t.name for t in threading.enumerate()
            if t.ident not in before and t.is_alive() and t.name.startswith("btccxt") and t.name != "btccxt-sim"]
    assert left == [], f"threads left behind: {left}"
