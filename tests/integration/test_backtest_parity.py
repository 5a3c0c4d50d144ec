"""The headline of ``btccxt backtest``: it trades exactly as the live run did.

``btccxt run`` trades on paper against the simulator over WebSocket on three symbols of live
1-second bars, with a strategy that trades on nearly every bar, and a fourth symbol on 1-minute
bars (a second timeframe, aligned with the others by bar close) until that one has had a live
bar too (``--max-bars 1``): the simulator's clock is set off ours so that its next minute closes
about ``LEAD_S`` seconds after the start, not up to a minute later. Its bars land in the
cache (keyed for that simulator's seed), its orders in the events file. Then ``btccxt
backtest --offline`` over exactly the window the strategy traded in (from the first bar it saw
with every data LIVE to its last bar) must place the same orders (bar, symbol, side, size,
price, fee) and end with the same value and the same number of trades.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from btccxt_cli.cache.sqlite import OhlcvCache
from tests.cli.test_run_cli import btccxt, read_events

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FAST = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
SLOW = "BNB/USDT"  # 1m bars
LEAD_S = 30  # the simulator's next minute closes this long after the test starts (start-up is
# seconds, more on a loaded machine: the 1m bar must close after BNB/USDT is LIVE)


def _config(tmp_path: Path, sim_url: str) -> Path:
    cfg = tmp_path / "parity.yaml"
    cfg.write_text(f"""exchange:
  id: binance
  sim: {sim_url}
symbols:
  - BTC/USDT
  - ETH/USDT
  - SOL/USDT
  - {{symbol: {SLOW}, timeframe: 1m, backfill: 5}}
feed:
  mode: websocket
  timeframe: 1s
  backfill: 10
  cache: {tmp_path / "ohlcv.sqlite"}
strategy:
  path: {FIXTURES / "strategies" / "trade_often.py"}
  params: {{stake: 0.01}}
broker:
  cash: 10000
  commission: 0.001
  slippage: 0.0005
logging:
  level: INFO
""")
    return cfg


def _window(records: list[dict[str, Any]]) -> tuple[int, int]:
    """First bar the strategy saw with every data LIVE, and the end of its last 1s bar."""
    live: set[str] = set()
    first = None
    last = 0
    for r in records:
        if r["type"] == "state" and r["event"] == "LIVE":
            live.add(r["symbol"])
        elif r["type"] == "bar" and r["timeframe"] == "1s":
            if first is None and live == {*FAST, SLOW}:
                first = r["ts"]
            last = max(last, r["ts"])
    assert first is not None, "the strategy never saw every data LIVE"
    return first, last + 1000


def _live_orders(records: list[dict[str, Any]]) -> list[tuple]:
    return [(r["bar"], r["symbol"], r["side"], abs(r["size"]), r["price"], r["fee"])
            for r in records if r["type"] == "order" and r["event"] == "Completed"]


@pytest.mark.long
def test_backtest_places_the_live_runs_orders_and_ends_with_its_value(sim_factory: Any,
                                                                     tmp_path: Path) -> None:
    now = int(time.time() * 1000)  # the simulator's clock is behind ours (by up to a minute):
    minute = (now + LEAD_S * 1000) // 60_000 * 60_000  # backtest ends the window at our now
    sim = sim_factory(exchanges=("binance",), clock_offset_ms=minute - LEAD_S * 1000 - now)
    cfg = _config(tmp_path, sim.url("binance"))
    events = tmp_path / "events.jsonl"
    # until every symbol had a live bar: the 1m one (a minute later if start-up missed it)
    run = btccxt("run", str(cfg), "--plain", "--max-bars", "1", "--duration", "150", "--events",
                 str(events))
    out, err = run.communicate(timeout=180)
    assert run.returncode == 0, err[-3000:]
    records = read_events(events)
    since, until = _window(records)
    live_bars = {s: sum(1 for r in records if r["type"] == "bar" and r["symbol"] == s
                        and r["source"] == "live") for s in (*FAST, SLOW)}
    assert min(live_bars[s] for s in FAST) >= 10, live_bars
    assert live_bars[SLOW] >= 1, live_bars  # the second timeframe had a live bar too
    live = _live_orders(records)
    assert len(live) >= 10, "the strategy trades often"
    assert set(FAST) <= {o[1] for o in live}
    value = re.search(r"trades (\d+), P&L [-+][\d.]+, value ([\d.]+)", out)
    assert value is not None, out

    with OhlcvCache(tmp_path / "ohlcv.sqlite") as cache:  # the run's bars, under the seed's name
        assert {s[0] for s in cache.series()} == {"binance@sim:seed-1"}

    bt = btccxt("backtest", str(cfg), "--since", str(since), "--until", str(until), "--offline",
                "--json")
    bout, berr = bt.communicate(timeout=60)
    assert bt.returncode == 0, berr[-3000:]
    doc = json.loads(bout)
    mine = [(o["time"], o["symbol"], o["side"], o["size"], o["price"], o["fee"])
            for o in doc["orders"] if o["status"] == "Completed"]
    assert mine == live
    m = doc["metrics"]
    assert f"{m['final_value']:.2f}" == value.group(2)
    assert m["trades"] == int(value.group(1))
    assert doc["per_symbol"][SLOW]["bars"] >= 1
