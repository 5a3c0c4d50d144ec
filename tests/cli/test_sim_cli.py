"""``btccxt sim`` refuses a bad option before serving: one line naming it and the fix, exit 2."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from btccxt_cli.cli.app import app

runner = CliRunner()


def refused(*args: str) -> str:
    result = runner.invoke(app, ["sim", *args])
    assert result.exit_code == 2, (result.output, result.exception)
    lines = [x for x in result.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output and not result.stdout.strip()
    return lines[0]


@pytest.mark.parametrize("port", ["99999", "-1", "65536"])
def test_a_port_out_of_range_is_one_line(port):
    line = refused("-p", port, "-e", "binance")
    assert "--port: " in line and "1 to 65535" in line and "0 picks free ports" in line


def test_the_ports_of_every_exchange_must_fit():
    line = refused("-p", "65535", "-e", "binance", "-e", "okx")
    assert "--port: " in line and "65535 to 65536" in line and "at most 65534" in line


def test_a_negative_number_of_generated_symbols_is_refused():
    line = refused("--generate-symbols", "-5")
    assert "--generate-symbols: " in line and "-5" in line
