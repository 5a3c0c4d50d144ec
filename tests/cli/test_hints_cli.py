"""Hints point the right way: what to do about the situation the user is actually in."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from btccxt_cli.cli.app import app

runner = CliRunner()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_validate_against_a_stopped_simulator_says_start_it(tmp_path: Path):
    url = f"http://127.0.0.1:{closed_port()}"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"exchange:\n  id: okx\n  sim: {url}\nsymbols: [BTC/USDT]\nstrategy: {{name: sma_cross}}\n")
    result = runner.invoke(app, ["validate", str(cfg)])
    assert result.exit_code != 0
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1
    assert f"the simulator at {url} is unreachable" in line
    assert "start it with `btccxt sim -e okx`" in line
    assert "--online" not in line  # it was not given
    assert line.count("check the network") == 0


def test_an_unknown_exchange_points_to_btccxt_exchanges():
    result = runner.invoke(app, ["check-ws", "nosuchex"])
    assert result.exit_code == 2
    assert "run `btccxt exchanges`" in result.output and "ccxt.exchanges" not in result.output


def test_run_against_a_stopped_simulator_says_start_it_once(tmp_path: Path):
    from tests.cli.test_run_cli import btccxt, write_config

    cfg = write_config(tmp_path, f"http://127.0.0.1:{closed_port()}")
    p = btccxt("run", str(cfg), "--plain")
    out, err = p.communicate(timeout=60)
    assert p.returncode == 2
    line = err.strip().splitlines()[-1]
    assert "start it with `btccxt sim`" in line
    assert "sim: true" not in line  # it already is a simulator
    assert line.count("check the network") == 0


def _okx_config_on_a_binance_sim(tmp_path: Path, url: str) -> Path:
    cfg = tmp_path / "okx.yaml"
    cfg.write_text(f"exchange:\n  id: okx\n  sim: {url}\nsymbols: [BTC/USDT]\n"
                   "strategy: {name: print_bars}\n")
    return cfg


@pytest.mark.parametrize("command", [
    ["validate"], ["run", "--plain", "--duration", "5"], ["backtest", "--since", "10m"],
    ["hub", "--url", "redis://127.0.0.1:1/0", "--plain", "--duration", "3"],
], ids=lambda c: c[0])
def test_a_config_sim_url_serving_another_exchange_points_at_exchange_id(sim_factory, tmp_path,
                                                                         command):
    url = sim_factory(exchanges=("binance",)).url("binance")
    cfg = _okx_config_on_a_binance_sim(tmp_path, url)
    result = runner.invoke(app, [command[0], str(cfg), *command[1:]])
    assert result.exit_code == 2, (result.output, result.exception)
    lines = [x for x in result.stderr.splitlines() if x.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith(f"error: {cfg}:2:") and "exchange.id: " in line, line
    assert f"the simulator at {url} serves binance, not okx" in line
    assert "set exchange.id: binance" in line and "btccxt sim -e okx" in line
    assert "--exchange" not in line and "unreachable" not in line


def test_backfill_from_a_sim_serving_another_exchange_names_its_exchange_option(sim_factory):
    url = sim_factory(exchanges=("binance",)).url("binance")
    result = runner.invoke(app, ["backfill", "-e", "okx", "--sim-url", url, "BTC/USDT",
                                 "--since", "10m"])
    assert result.exit_code == 2, (result.output, result.exception)
    assert "serves binance, not okx (pass --exchange binance" in result.stderr
