"""``btccxt exchanges``: ccxt's exchanges read offline (the autouse loopback guard in
``tests/conftest.py`` fails any test that resolves or connects to anything but 127.0.0.1, so
these tests also prove the command needs no network)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from btccxt_cli.cli.app import app
from btccxt_cli.exchange.describe import SIMULATED_EXCHANGES

runner = CliRunner()


def test_plain_listing_shows_binance_and_okx_with_websocket_and_simulator() -> None:
    result = runner.invoke(app, ["exchanges"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["id", "name", "REST", "OHLCV", "WebSocket", "OHLCV", "timeframes",
                                "simulator"]
    rows = {line.split()[0]: line.split() for line in lines[1:-1]}
    assert rows["binance"][-4:-1] == ["yes", "yes", rows["binance"][-2]]
    assert rows["binance"][-1] == "verified" and rows["okx"][-1] == "verified"
    assert rows["okx"][-4:-2] == ["yes", "yes"]
    assert all(cells[-1] != "verified" for ex, cells in rows.items() if ex not in SIMULATED_EXCHANGES)
    assert len(rows) > 50
    assert lines[-1].startswith(f"{len(rows)} exchanges,")
    assert {ex for ex, cells in rows.items() if cells[-1] == "verified"} == set(SIMULATED_EXCHANGES)
    assert "verified with the btccxt simulator: binance, " in lines[-1] and "okx" in lines[-1]


def test_json_parses_and_ws_only_filters() -> None:
    full = json.loads(runner.invoke(app, ["exchanges", "--json"]).stdout)
    ws = runner.invoke(app, ["exchanges", "--json", "--ws-only"])
    assert ws.exit_code == 0
    only = json.loads(ws.stdout)
    assert full["count"] == len(full["exchanges"]) > only["count"] == len(only["exchanges"]) > 0
    assert all(e["ws_ohlcv"] for e in only["exchanges"])
    by_id = {e["id"]: e for e in full["exchanges"]}
    for ex in ("binance", "okx"):
        assert by_id[ex]["rest_ohlcv"] and by_id[ex]["ws_ohlcv"] and by_id[ex]["simulator"]
        assert by_id[ex]["timeframes"] > 10
    assert {e["id"] for e in full["exchanges"] if e["simulator"]} == set(SIMULATED_EXCHANGES)
    assert set(by_id["okx"]) == {"id", "name", "rest_ohlcv", "ws_ohlcv", "timeframes", "simulator"}
    assert full["ccxt_version"].count(".") == 2


def test_ws_only_plain() -> None:
    result = runner.invoke(app, ["exchanges", "--ws-only"])
    assert result.exit_code == 0
    rows = [line.split() for line in result.stdout.splitlines()[1:-1]]
    # the WebSocket column is second from the end, or third when "verified" follows the count
    assert rows and all((r[-3] if r[-1] == "verified" else r[-2]) == "yes" for r in rows)
    assert {"binance", "okx"} <= {r[0] for r in rows}
