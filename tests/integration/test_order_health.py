"""A live run through ``btccxt run``: one live run per orders database and run scope (issue 19
item 7), order figures on ``/metrics`` and the time sync on ``/readyz``."""

from __future__ import annotations

import json
import re
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from btccxt_cli.sim.accounts import SimKey
from tests.cli.test_live_cli import KEY, PASS, SECRET, btccxt, wait_for, write_config
from tests.cli.test_run_stop import Output

pytestmark = pytest.mark.live


@pytest.fixture
def live_sim(sim_factory: Any) -> Any:
    return sim_factory(exchanges=("binance",), api_keys=[SimKey(KEY, SECRET, PASS)],
                       balances={"USDT": 5_000.0})


def _resting(sim: Any) -> bool:
    return any(o["type"] == "limit" and o["status"] == "new" for o in sim.orders("binance"))


def test_a_second_live_run_on_the_same_scope_is_refused_in_one_line(
        live_sim: Any, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, live_sim.url("binance"))
    first = btccxt("run", str(cfg), "--plain", "--live", "--yes")
    try:
        wait_for(lambda: _resting(live_sim), first)
        mine = [o["client_id"] for o in live_sim.orders("binance") if o["type"] == "limit"]
        second = btccxt("run", str(cfg), "--plain", "--live", "--yes")
        out, err = second.communicate(timeout=60)
        assert second.returncode == 2, (out[-2000:], err[-2000:])
        lines = [line for line in err.splitlines() if "another live run" in line]
        assert len(lines) == 1, err
        assert f"(pid {first.pid}, started " in lines[0] and "orders.sqlite" in lines[0]
        assert "broker.run_scope" in err and "Traceback" not in err
        assert "LIVE TRADING" not in out  # refused before the summary and its prompt
        # the first run's order was neither adopted nor cancelled by the second
        assert _status(live_sim, mine) == ["new"]
        other = cfg.with_name("other.yaml")  # another scope (run_scope) runs beside it
        other.write_text(cfg.read_text().replace("broker:\n", "broker:\n  run_scope: other\n"))
        third = btccxt("run", str(other), "--plain", "--live", "--yes", "--duration", "3")
        out3, err3 = third.communicate(timeout=60)
        assert third.returncode == 0, err3[-2000:]
        assert _status(live_sim, mine) == ["new"]  # another scope's: not adopted, not cancelled
        (tmp_path / "STOP").write_text("")
        first.communicate(timeout=30)
    finally:
        first.kill()
    assert first.returncode == 0


def _status(sim: Any, client_ids: list[str]) -> list[str]:
    return [o["status"] for o in sim.orders("binance") if o["client_id"] in client_ids]


def test_metrics_show_order_figures_and_readyz_the_time_sync(live_sim: Any, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, live_sim.url("binance"))
    cfg.write_text(cfg.read_text() + "metrics:\n  port: 0\n")
    p = btccxt("run", str(cfg), "--plain", "--live", "--yes")
    run = Output(p)
    try:
        run.wait_for("/readyz)")
        base = re.search(r"metrics on (http://127\.0\.0\.1:\d+)/metrics", "".join(run.lines))[1]
        wait_for(lambda: _resting(live_sim), p)

        def readyz() -> dict[str, Any]:
            try:
                with urllib.request.urlopen(base + "/readyz", timeout=5) as r:
                    return json.loads(r.read())
            except urllib.error.HTTPError as exc:  # 503: not ready, same body
                return json.loads(exc.read())

        def metrics() -> str:
            with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
                return r.read().decode()

        _until(lambda: 'btccxt_orders{exchange="binance",state="tracked"} 1.0' in metrics())
        text = metrics()
        for event in ("rejects", "unknown_creates", "lost", "revived", "nonce_retries",
                      "worker_failures"):
            assert f'btccxt_order_events_total{{event="{event}",exchange="binance"}} 0.0' in text \
                or f'btccxt_order_events_total{{exchange="binance",event="{event}"}} 0.0' in text, text
        assert 'btccxt_orders{exchange="binance",state="stuck"} 0.0' in text
        assert "btccxt_exchange_clock_offset_seconds" in text
        body = _until(lambda: readyz().get("exchange_clock"))
        assert body["ready"] is True and abs(body["offset_ms"]) < 1000, body
        # the exchange's clock runs 20 s ahead of this machine's from now: /readyz says so
        live_sim.sim.clock_offset_ms += 20_000
        body = _until(lambda: (lambda b: not b["exchange_clock"]["ready"] and b)(readyz()))
        assert "off the exchange's (check NTP)" in body["exchange_clock"]["reason"], body
        (tmp_path / "STOP").write_text("")
        run.finish(30)
    finally:
        p.kill()


def _until(pred: Any, timeout: float = 30.0) -> Any:
    done = threading.Event()
    timer = threading.Timer(timeout, done.set)
    timer.start()
    try:
        while not (got := pred()):
            assert not done.wait(0.1), "timed out"
        return got
    finally:
        timer.cancel()
