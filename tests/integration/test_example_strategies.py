"""The example strategies in strategies/, run in-process against the simulator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from btccxt_cli.config.load import loads_config
from btccxt_cli.runtime.runner import Runner

SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]


def config(sim, strategy: str, symbols: list[str]) -> object:
    return loads_config(f"""
exchange: {{id: binance, sim: "{sim.url('binance')}"}}
symbols: [{", ".join(symbols)}]
feed: {{mode: websocket, timeframe: 1s, backfill: 8, reconnect_delay: 0.2, max_reconnect_delay: 1.0}}
strategy: {strategy}
""", file="inline.yaml")


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_rotate_best_trades_only_live_bars_and_holds_one_symbol(sim, tmp_path):
    ev = tmp_path / "ev.jsonl"
    runner = Runner(config(sim, "{name: rotate_best, params: {window: 3, every: 2, value: 100}}", SYMBOLS),
                    sim_url=sim.url("binance"), max_bars=10, events=ev)
    summary = runner.run()
    assert summary.reason == "--max-bars 10 reached"
    recs = records(ev)
    live_at = max(i for i, r in enumerate(recs) if r["type"] == "state" and r["event"] == "LIVE")
    orders = [i for i, r in enumerate(recs) if r["type"] == "order"]
    assert orders, "it traded"
    assert min(orders) > live_at, "no order before every data was LIVE (history bars never trade)"
    strat = runner.cerebro.runstrats[0][0]
    held = [d._name for d in strat.datas if strat.getposition(d).size]
    assert len(held) <= 1, held


@pytest.mark.long
def test_disconnect_guard_steps_aside_while_a_feed_is_down(sim, tmp_path):
    ev = tmp_path / "ev.jsonl"
    state = {"dropped": False}

    def on_line(line: str) -> None:  # on the strategy thread: drop once a position is open
        if not state["dropped"] and "order Completed buy" in line:
            state["dropped"] = True
            sim.drop("binance", mode="reset")

    runner = Runner(config(sim, "{name: disconnect_guard, params: {fast: 2, slow: 4, stake: 0.01}}",
                           SYMBOLS[:2]),
                    sim_url=sim.url("binance"), max_bars=16, events=ev, on_line=on_line)
    runner.run()
    assert state["dropped"]
    strat = runner.cerebro.runstrats[0][0]
    assert any(state == "DISCONNECTED" for _, state, _ in strat.guarded), strat.guarded
    recs = records(ev)
    for sym in SYMBOLS[:2]:
        # between DISCONNECTED and the next LIVE of a symbol, no buy is placed for it
        down = False
        for r in recs:
            if r.get("symbol") != sym:
                continue
            if r["type"] == "state":
                down = r["event"] in ("DISCONNECTED", "CONNECTED") or (down and r["event"] != "LIVE")
            elif r["type"] == "order" and r["side"] == "buy" and r["event"] == "Completed":
                assert not down, f"{sym}: a buy filled while the feed was down"
    # whatever was held when the feed went down was closed
    for sym, st, size in strat.guarded:
        if st == "DISCONNECTED" and size:
            after = recs[next(i for i, r in enumerate(recs) if r.get("symbol") == sym
                              and r.get("event") == "DISCONNECTED"):]
            assert any(r["type"] == "order" and r["side"] == "sell" for r in after if r.get("symbol") == sym)
