"""A live run stopped by force treats open orders as a normal stop does (``cancel_on_stop``,
default off: they stay open at the exchange and in the orders database for the next run)."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_live_cli import (  # noqa: F401 - live_sim is a fixture
    KEY,
    SECRET,
    btccxt,
    live_sim,
    wait_for,
    write_config,
)
from tests.cli.test_run_stop import Output

pytestmark = pytest.mark.live

STUCK_AFTER_ORDER = """import time

import backtrader as bt


class StuckAfterOrder(bt.Strategy):
    def __init__(self):
        self.sent = False

    def next(self):
        if self.data._laststatus != self.data.LIVE:
            return
        if not self.sent:
            self.sent = True
            self.buy(size=0.001, price=round(self.data.close[0] * 0.8, 1), exectype=bt.Order.Limit)
            return
        print("STUCK", flush=True)
        time.sleep(1000)
"""


def test_a_forced_stop_leaves_open_orders_as_a_normal_stop_does(live_sim: Any, tmp_path: Path):  # noqa: F811
    cfg = write_config(tmp_path, live_sim.url("binance"))
    (tmp_path / "probe.py").write_text(STUCK_AFTER_ORDER)
    p = btccxt("run", str(cfg), "--plain", "--live", "--yes", "--stop-grace", "1")
    out = Output(p)
    try:
        wait_for(lambda: any(o["type"] == "limit" and o["status"] == "new"
                             for o in live_sim.orders("binance")), p)
        out.wait_for("STUCK")
        p.send_signal(signal.SIGTERM)
        stdout, err = out.finish(timeout=40)
    finally:
        p.kill()
    assert p.returncode == 4, err[-3000:]
    assert "stuck in next() at" in err and "probe.py" in err
    # the order rests at the exchange, and the orders database says so for the next run
    assert [o["status"] for o in live_sim.orders("binance") if o["type"] == "limit"] == ["new"]
    with sqlite3.connect(tmp_path / "orders.sqlite") as db:
        statuses = [row[0] for row in db.execute("SELECT status FROM orders WHERE type = 'limit'")]
    assert statuses == ["open"]
    for text in (stdout, err, (tmp_path / "run.log").read_text()):
        assert KEY not in text and SECRET not in text
