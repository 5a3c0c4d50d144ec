"""``btccxt run`` as a user runs it: a subprocess, a YAML file, the simulator by URL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SECRET = "sk-test-7c1e9d2b44aa"


def write_config(tmp_path: Path, sim_url: str, *, mode: str = "websocket", extra: str = "",
                 strategy: str = "name: print_bars", symbols=("BTC/USDT", "ETH/USDT")) -> Path:
    syms = "\n".join(f"  - {s}" for s in symbols)
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"""exchange:
  id: binance
  sim: {sim_url}
{extra}symbols:
{syms}
feed:
  mode: {mode}
  timeframe: 1s
  backfill: 5
  reconnect_delay: 0.2
  max_reconnect_delay: 1.0
strategy:
  {strategy}
logging:
  level: INFO
""")
    return cfg


def btccxt(*args: str, env: dict | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "btccxt_cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}, **kw)


def read_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("mode", ["rest", "threaded", "websocket"])
def test_run_ends_by_itself_and_events_match_truth(sim, tmp_path, mode):
    cfg = write_config(tmp_path, sim.url("binance"), mode=mode)
    ev = tmp_path / "events.jsonl"
    p = btccxt("run", str(cfg), "--plain", "--max-bars", "3", "--events", str(ev))
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err[-2000:]
    assert "stopped: --max-bars 3 reached" in out
    assert "Traceback" not in err
    records = read_events(ev)
    bars = [r for r in records if r["type"] == "bar"]
    for sym in ("BTC/USDT", "ETH/USDT"):
        mine = [r for r in bars if r["symbol"] == sym]
        ts = [r["ts"] for r in mine]
        assert ts == list(range(ts[0], ts[0] + 1000 * len(ts), 1000)), "once, in order, no gap"
        assert sum(r["source"] == "live" for r in mine) >= 3
        assert all("latency_ms" in r for r in mine if r["source"] == "live")
        truth = {row[0]: row for row in sim.truth("binance", sym, "1s", ts[0], ts[-1] + 1000)}
        for r in mine:
            t = truth[r["ts"]]
            assert (r["open"], r["high"], r["low"], r["close"], r["volume"]) == tuple(t[1:6])
        states = [r["event"] for r in records if r["type"] == "state" and r["symbol"] == sym]
        assert states[:2] == ["DELAYED", "LIVE"]


def test_sigint_stops_the_run_cleanly(sim, tmp_path):
    """SIGINT on a live run: a normal stop by itself (exit 0, its line, no traceback), not a
    kill. How fast is measured by bench/stop.py, not asserted here (a loaded CI machine took
    2.5 s once where an idle one takes well under 1 s)."""
    cfg = write_config(tmp_path, sim.url("binance"))
    ev = tmp_path / "events.jsonl"
    p = btccxt("run", str(cfg), "--plain", "--events", str(ev))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait for the first live bar (an event, not a sleep)
        if ev.exists() and '"source":"live"' in ev.read_text():
            break
        p.poll()
        assert p.returncode is None, p.stderr.read()
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)  # a hang guard, not a timing
    assert p.returncode == 0, err[-2000:]
    assert "stopped: signal SIGINT" in out
    assert "Traceback" not in err


def test_secrets_never_appear_in_output_or_events(sim, tmp_path):
    extra = ("  api_key: ${BTCCXT_TEST_KEY}\n  secret: ${BTCCXT_TEST_SECRET}\n"
             "  options: {fetchCurrencies: false, fetchMargins: false}\n")
    cfg = write_config(tmp_path, sim.url("binance"), extra=extra)
    ev = tmp_path / "events.jsonl"
    env = {"BTCCXT_TEST_KEY": SECRET, "BTCCXT_TEST_SECRET": SECRET + "-s"}
    p = btccxt("run", str(cfg), "--plain", "--max-bars", "2", "--events", str(ev), env=env)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err[-2000:]
    for text in (out, err, ev.read_text()):
        assert SECRET not in text


def test_a_raising_strategy_shows_its_own_traceback_and_stops(sim, tmp_path):
    strat = tmp_path / "boom.py"
    strat.write_text("""import backtrader as bt


class Boom(bt.Strategy):
    def next(self):
        if len(self.data) > 6:
            raise RuntimeError("strategy bug")
""")
    cfg = write_config(tmp_path, sim.url("binance"), strategy=f"path: {strat}")
    p = btccxt("run", str(cfg), "--plain")
    out, err = p.communicate(timeout=60)
    assert p.returncode == 3
    assert "boom.py" in err and 'raise RuntimeError("strategy bug")' in err
    assert "backtrader/cerebro.py" not in err, "only the user's frames"
    assert "the run was stopped" in err


def test_bad_config_exits_2_with_one_line(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("exchange:\n  id: binanse\nsymbols: [BTC/USDT]\nstrategy: {name: print_bars}\n")
    p = btccxt("run", str(cfg))
    out, err = p.communicate(timeout=30)
    assert p.returncode == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "bad.yaml:2" in lines[0] and "binance" in lines[0]
    assert "Traceback" not in err


def test_unknown_strategy_param_is_a_config_error(sim, tmp_path):
    cfg = write_config(tmp_path, sim.url("binance"),
                       strategy="name: sma_cross\n  params: {fats: 3, slow: 8}")
    p = btccxt("run", str(cfg), "--plain", "--max-bars", "1")
    out, err = p.communicate(timeout=60)
    assert p.returncode == 2
    assert "fats" in err and "did you mean 'fast'" in err


def test_validate_checks_symbols_against_a_running_simulator(sim, tmp_path):
    cfg = write_config(tmp_path, sim.url("binance"), symbols=("BTC/USDT", "ETH/USDC"))
    p = btccxt("validate", str(cfg))
    out, err = p.communicate(timeout=30)
    assert p.returncode == 2, out + err
    assert "ETH/USDC" in err and "Traceback" not in err
    ok = write_config(tmp_path, sim.url("binance"), symbols=("BTC/USDT", "ETH/USDT"))
    p = btccxt("validate", str(ok))
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err


@pytest.mark.parametrize("global_level", [None, "INFO"], ids=["config-level", "--log-level"])
def test_unset_credential_variables_are_named_once_at_the_configs_log_level(tmp_path, global_level):
    """Loading the config says which credential variables are unset (paper trading goes on
    without keys). The config is read before its logging.level is applied: the line still
    shows with logging.level INFO, and once when --log-level INFO shows it already."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("exchange:\n  id: okx\n  sim: true\n  api_key: ${NOPE_KEY}\n"
                   "  secret: ${NOPE_SECRET}\n  password: ${NOPE_PASS}\nsymbols: [BTC/USDT]\n"
                   "feed: {timeframe: 1s, backfill: 2}\nstrategy: {name: print_bars}\n"
                   "logging: {level: INFO}\n")
    pre = ["--log-level", global_level] if global_level else []
    p = btccxt(*pre, "run", str(cfg), "--plain", "--duration", "0.5")
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err[-2000:]
    assert err.count("NOPE_KEY, NOPE_SECRET, NOPE_PASS not set; paper trading") == 1, err[-2000:]
