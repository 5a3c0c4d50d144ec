"""A malformed Redis URL (``hub --check``, ``hub --url``, ``hub.url``, ``rate_limit.shared``) is
ONE line naming the option or the config's file:line and the fix, exit 2, before connecting."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from btccxt_cli.cli.app import app

runner = CliRunner()

BAD_URLS = ["http://x", "valkey://127.0.0.1:9", "redis://127.0.0.1:99999", "redis://[::1",
            "redis://127.0.0.1:0/0"]


def one_line(result) -> str:
    assert result.exit_code == 2, (result.output, result.exception)
    lines = [x for x in result.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def hub_config(tmp_path: Path, section: str) -> Path:
    cfg = tmp_path / "hub.yaml"
    cfg.write_text("exchange: {id: binance, sim: true}\nsymbols: [BTC/USDT]\n"
                   f"{section}\nstrategy: {{name: print_bars}}\n", encoding="utf-8")
    return cfg


@pytest.mark.parametrize("url", BAD_URLS)
def test_hub_check_a_malformed_url_is_one_line(url):
    line = one_line(runner.invoke(app, ["hub", "--check", url]))
    assert "--check: " in line and "redis://127.0.0.1:6379/0" in line


@pytest.mark.parametrize("url", BAD_URLS)
def test_hub_url_option_malformed_is_one_line(tmp_path, url):
    cfg = hub_config(tmp_path, "feed: {mode: websocket, timeframe: 1s, cache: false}")
    line = one_line(runner.invoke(app, ["hub", str(cfg), "--url", url, "--plain"]))
    assert "--url: " in line and "redis://127.0.0.1:6379/0" in line


def test_the_port_and_scheme_messages_say_what_is_wrong():
    line = one_line(runner.invoke(app, ["hub", "--check", "redis://127.0.0.1:99999"]))
    assert "port" in line and "1 to 65535" in line
    line = one_line(runner.invoke(app, ["hub", "--check", "valkey://127.0.0.1:9"]))
    assert "redis://, rediss:// or unix://" in line


@pytest.mark.parametrize("command", ["validate", "hub", "run"])
@pytest.mark.parametrize("section, key", [
    ("hub:\n  url: redis://127.0.0.1:99999/0", "hub.url"),
    ("rate_limit:\n  shared: redis://127.0.0.1:99999/0\nhub: {url: 'redis://127.0.0.1:6379/0'}",
     "rate_limit.shared"),
], ids=["hub.url", "rate_limit.shared"])
def test_a_config_url_with_a_bad_port_is_refused_at_its_line(tmp_path, command, section, key):
    cfg = hub_config(tmp_path, section)
    args = [command, str(cfg)] + (["--plain"] if command != "validate" else [])
    line = one_line(runner.invoke(app, args))
    assert line.startswith(f"error: {cfg}:4:") and f"{key}: " in line, line
    assert "port" in line and "1 to 65535" in line


CLOSED = "redis://127.0.0.1:9/0"  # a well-formed URL where nothing listens


@pytest.mark.parametrize("how", ["config", "--url"])
def test_a_hub_whose_redis_does_not_answer_at_the_start_is_one_line(tmp_path, how):
    """No Redis at the start: one line naming where the URL came from, exit 2; the hub does
    not start (nor its simulator) to wait for one."""
    cfg = hub_config(tmp_path, f"hub: {{url: '{CLOSED}'}}" if how == "config" else "")
    args = ["hub", str(cfg), "--duration", "3", "--plain"] + (["--url", CLOSED] if how == "--url" else [])
    line = one_line(runner.invoke(app, args))
    where = f"{cfg}:3:" if how == "config" else "--url:"
    assert where in line and "cannot reach Redis at redis://127.0.0.1:9/0" in line
    assert "btccxt hub --check" in line


def test_a_hub_runner_whose_redis_does_not_answer_at_the_start_is_one_line(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("exchange: {id: binance, sim: true}\nsymbols: [BTC/USDT]\n"
                   f"feed: {{timeframe: 1s, mode: hub}}\nhub: {{url: '{CLOSED}'}}\n"
                   "strategy: {name: print_bars}\n", encoding="utf-8")
    line = one_line(runner.invoke(app, ["run", str(cfg), "--plain", "--duration", "3"]))
    assert f"{cfg}:4:" in line and "hub.url: cannot reach Redis" in line
