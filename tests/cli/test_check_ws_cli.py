"""``btccxt check-ws`` through Typer's CliRunner on the real app: exit codes, JSON, plain text.

Exit codes: 0 every step passed, 1 a warning (clock skew), 2 a failure (outage) or bad
arguments (one line on stderr, no traceback). Runs use 1s bars and a 1 s window.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from btccxt_cli.cli.app import app
from btccxt_cli.cli.check_ws import render_plain, render_table
from btccxt_cli.exchange.describe import SIMULATED_EXCHANGES
from btccxt_cli.exchange.diagnose import STEP_TITLES, CheckReport, Step

runner = CliRunner()
NOT_SIMULATED = next(e for e in ("deribit", "gate", "htx", "coinbase", "bitfinex", "bitmex")
                     if e not in SIMULATED_EXCHANGES)
FAST = ["--timeframe", "1s", "--seconds", "1"]


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return runner.invoke(app, ["check-ws", *args], env=env)


@pytest.mark.live
def test_built_in_simulator_passes_with_exit_0_and_json_parses() -> None:
    env = {"BTCCXT_TEST_KEY": "sk-check-ws-key-0001", "BTCCXT_TEST_SECRET": "sk-check-ws-secret-02"}
    result = invoke("okx", "--sim", *FAST, "--json", "--api-key-env", "BTCCXT_TEST_KEY",
                    "--secret-env", "BTCCXT_TEST_SECRET", env=env)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["verdict"] == "pass" and doc["exit_code"] == 0
    assert doc["exchange"] == "okx" and doc["timeframe"] == "1s"
    assert doc["sim_url"].startswith("http://127.0.0.1:")
    assert [s["name"] for s in doc["steps"]] == list(STEP_TITLES)
    creds = next(s for s in doc["steps"] if s["name"] == "credentials")
    assert creds["status"] == "skip" and "simulator" in creds["detail"]
    for key in ("rtt_ms", "skew_ms", "connect_ms", "first_candle_ms", "updates_per_s", "pong_ms",
                "total_s"):
        assert key in doc["timings"], key
    for secret in env.values():  # credentials are read from the environment, never printed
        assert secret not in result.output


@pytest.mark.live
def test_clock_skew_degrades_with_exit_1(sim_factory: Any) -> None:
    sim = sim_factory(exchanges=("binance",), clock_offset_ms=3000)
    result = invoke("binance", "--sim-url", sim.url("binance"), *FAST)
    assert result.exit_code == 1, result.output
    out = result.stdout
    assert out.startswith(f"check-ws binance BTC/USDT 1s (simulator at {sim.url('binance')})")
    assert "  WARN  clock skew" in out and "hint: sync your clock (NTP)" in out
    assert "verdict: DEGRADED (exit 1): 1 warning (clock skew)" in out
    assert "Traceback" not in result.output


@pytest.mark.live
def test_outage_fails_with_exit_2_and_reconnect_test_is_skipped(sim_factory: Any) -> None:
    sim = sim_factory(exchanges=("binance",))
    sim.outage("binance", 60)
    result = invoke("binance", "--sim-url", sim.url("binance"), *FAST, "--reconnect-test")
    assert result.exit_code == 2, result.output
    assert "  FAIL  REST" in result.stdout and "hint: the exchange is down" in result.stdout
    assert "verdict: FAILED (exit 2): 1 failed (REST)" in result.stdout
    assert "  SKIP  reconnect" in result.stdout  # nothing to reconnect to


@pytest.mark.live
def test_json_on_failure_still_parses(sim_factory: Any) -> None:
    sim = sim_factory(exchanges=("okx",))
    result = invoke("okx", "--sim-url", sim.url("okx"), "--symbol", "BTC-USDT", *FAST, "--json")
    assert result.exit_code == 2
    doc = json.loads(result.stdout)
    symbol = next(s for s in doc["steps"] if s["name"] == "symbol")
    assert symbol["status"] == "fail" and "did you mean BTC/USDT" in symbol["detail"]
    assert doc["verdict"] == "failed"


@pytest.mark.parametrize("args,message", [
    (["binanc"], "error: unknown exchange 'binanc' (did you mean 'binance'?)"),
    ([NOT_SIMULATED, "--sim"], f"error: the simulator does not speak {NOT_SIMULATED}; it serves binance, okx"),
    (["okx", "--sim", "--sim-url", "http://127.0.0.1:1"], "error: --sim and --sim-url exclude each other"),
    (["okx", "--sim-url", "127.0.0.1:9000"], "error: --sim-url '127.0.0.1:9000' is not a URL"),
    (["okx", "--api-key-env", "BTCCXT_SURELY_UNSET_VAR"],
     "error: --api-key-env BTCCXT_SURELY_UNSET_VAR: the environment variable is not set or empty"),
])
def test_bad_arguments_are_one_line_with_exit_2(args: list[str], message: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1
    assert result.stdout == "" and "Traceback" not in result.output


def _report() -> CheckReport:
    steps = [Step("rest", "pass", 0.25, "round trip 1.0 ms", metrics={"rtt_ms": 1.0}),
             Step("clock", "warn", 0.0, "exchange clock 3.00 s ahead", "sync your clock (NTP)"),
             Step("first_candle", "fail", 1.0, "no candle within 1 s", "try another symbol"),
             Step("reconnect", "skip", 0.0, "not asked (--reconnect-test)")]
    return CheckReport("okx", "BTC/USDT", "1m", steps, "failed", seconds=1.5)


def test_plain_and_table_rendering() -> None:
    plain = render_plain(_report())
    assert plain.splitlines()[0] == "check-ws okx BTC/USDT 1m (real exchange)"
    assert "  FAIL  first candle    1.00 s  no candle within 1 s" in plain
    assert "hint: try another symbol" in plain
    assert plain.splitlines()[-1] == ("verdict: FAILED (exit 2): 1 failed (first candle); "
                                      "1 warning (clock skew); 1 passed in 1.5 s")
    console = Console(width=120, color_system=None, record=True, force_terminal=False)
    console.print(render_table(_report()))
    text = console.export_text()
    for word in ("REST", "clock skew", "WARN", "FAIL", "SKIP", "hint: sync your clock (NTP)"):
        assert word in text
