"""The dashboard view renders every field from a snapshot (colourless capture console)."""

from __future__ import annotations

from rich.console import Console

from btccxt_cli.dashboard.view import render, sparkline
from btccxt_cli.model import BrokerStatus, Candle, ConnectionStatus, FeedStatus, Snapshot


def snapshot() -> Snapshot:
    st = FeedStatus("BTC/USDT", "1m", "websocket", state="DISCONNECTED",
                    last_bar=Candle(1_700_000_040_000, 100.5, 101.25, 99.75, 100.0, 12.5),
                    bars={"backfill": 100, "live": 7, "gapfill": 2}, reconnects=3,
                    last_message_age_s=4.2, latency_ms_last=1.5)
    return Snapshot("btccxt test", 12.0, feeds=[st],
                    connection=ConnectionStatus("binance", "websocket", "DISCONNECTED", reconnects=3,
                                                rest_calls=9, rate_limited=1, backoff_s=2.5),
                    broker=BrokerStatus(cash=9_000.0, value=10_050.0, positions={"BTC/USDT": 0.01},
                                        open_orders=1, trades=2, pnl=50.0,
                                        balances={"USDT": 9_000.0, "BTC": 0.01},
                                        orders=["buy BTC/USDT 0.01 limit @ 60000 filled 0 [open]"],
                                        updates="reconnecting"),
                    events=["12:00:01 BTC/USDT DISCONNECTED: socket closed"],
                    closes={"BTC/USDT": [1.0, 2.0, 3.0]})


def test_render_shows_bars_connection_broker_and_events():
    console = Console(width=200, color_system=None, record=True)
    console.print(render(snapshot()))
    text = console.export_text()
    for needle in ("BTC/USDT", "DISCONNECTED", "22:14:00", "101.25", "99.75", "12.5", "100", "4.2s",
                   "backoff 2.5s", "REST calls 9", "429s 1", "cash 9,000.00", "value 10,050.00",
                   "P&L +50.00", "trades 2", "open orders 1", "BTC/USDT 0.01", "socket closed",
                   "BTC 0.01, USDT 9,000", "buy BTC/USDT 0.01 limit @ 60000 filled 0 [open]",
                   "updates   reconnecting",
                   sparkline([1.0, 2.0, 3.0])):
        assert needle in text, needle


def test_sparkline_edges():
    assert sparkline([]) == ""
    assert sparkline([5, 5]) == "▄▄"
    assert sparkline([1, 2]) == "▁█"
