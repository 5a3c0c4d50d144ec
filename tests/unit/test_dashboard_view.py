"""The dashboard view at the widths people use (colourless, fixed-size capture consoles).

Golden renders live in tests/fixtures/dashboard/ so that a change of layout shows in review;
regenerate them with ``BTCCXT_REGEN_GOLDEN=1 python -m pytest tests/unit/test_dashboard_view.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from rich.console import Console

from btccxt_cli.dashboard.columns import price
from btccxt_cli.dashboard.view import DashboardView, render, sparkline
from btccxt_cli.model import BrokerStatus, Candle, ConnectionStatus, FeedStatus, Snapshot

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "dashboard"
REGEN = bool(os.environ.get("BTCCXT_REGEN_GOLDEN"))
WIDTHS = (80, 100, 120, 140, 200)
COUNTS = (1, 3, 20)

# symbol, timeframe, state, close, price decimals, amount decimals
MARKETS = [
    ("BTC/USDT", "1m", "LIVE", 59153.2, 2, 5),
    ("ETH/USDT", "1m", "DISCONNECTED", 3021.45, 2, 4),
    ("BTC/USDT:USDT", "5m", "DELAYED", 59160.1, 1, 3),
    ("SHIB/USDT", "1m", "LIVE", 0.00001234, 8, 0),
    ("SOL/USDT", "15m", "NOTSUBSCRIBED", 142.125, 3, 3),
] + [(f"C{i:03d}/USDT", "1m", ("LIVE", "CONNECTED", "DELAYED")[i % 3], 10.0 + i / 7, 4, 2)
     for i in range(1, 16)]


def feeds_snapshot(n: int, *, elapsed: float = 754.0) -> Snapshot:
    feeds = []
    for i, (sym, tf, state, close, pd, ad) in enumerate(MARKETS[:n]):
        bar = Candle(1_764_938_040_000, close * 0.999, close * 1.002, close * 0.997, close, 1234.56789 * (i + 1))
        feeds.append(FeedStatus(sym, tf, "websocket", state=state, last_bar=bar,
                                bars={"backfill": 500, "live": 20 + i, "gapfill": i % 4},
                                reconnects=i % 3, last_message_age_s=0.3 + i / 10,
                                latency_ms_last=11.0 + i, price_decimals=pd, amount_decimals=ad))
    return Snapshot(
        f"btccxt binance websocket {', '.join(f.symbol for f in feeds)}", elapsed, feeds=feeds,
        connection=ConnectionStatus("binance", "websocket", "DISCONNECTED", reconnects=2,
                                    rest_calls=1234, rate_limited=0, backoff_s=10.67),
        broker=BrokerStatus(cash=9_412.5, value=10_021.75, positions={"BTC/USDT": 0.01}, trades=3,
                            pnl=21.75),
        events=[f"12:30:{i:02d} BTC/USDT LIVE: bar {i} closed on time, sent to the strategy" for i in range(10)],
        closes={f.symbol: [1.0, 2.0, 3.0, 2.5, 4.0] for f in feeds})


def draw(renderable: object, width: int, height: int) -> str:
    console = Console(width=width, height=height, record=True, color_system=None, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(renderable)
    console.file.close()
    return "\n".join(line.rstrip() for line in console.export_text().splitlines()) + "\n"


def assert_whole(text: str, feeds: list[FeedStatus]) -> None:
    """Every given feed has a row with its symbol, timeframe, state and close as whole words."""
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.split()}
    for f in feeds:
        assert f.symbol in rows, f"{f.symbol} missing or cut:\n{text}"
        words = rows[f.symbol]
        close = price(f.last_bar.close if f.last_bar else None, f.price_decimals)
        for want in (f.timeframe, f.state, close):
            assert want in words, f"{want} of {f.symbol} missing or cut: {words}"


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("n", COUNTS)
def test_golden_render(width: int, n: int) -> None:
    snap = feeds_snapshot(n)
    text = draw(render(snap), width, 60)  # tall enough for every symbol on one page
    assert max(len(line) for line in text.splitlines()) <= width
    assert_whole(text, snap.feeds)
    golden = GOLDEN / f"w{width}_n{n}.txt"
    if REGEN:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8"), f"layout changed: compare with {golden.name}"


@pytest.mark.parametrize(("width", "height"), [(80, 24), (140, 45)])
@pytest.mark.parametrize("n", COUNTS)
def test_terminal_sizes_fit_and_page_through_every_symbol(width: int, height: int, n: int) -> None:
    """Never taller than the terminal (less a line, so Rich never crops or scrolls the frame);
    with more symbols than rows the table pages, and every symbol is shown whole on a page."""
    view = DashboardView(page_s=5.0)
    seen: set[str] = set()
    for page in range(6):
        snap = feeds_snapshot(n, elapsed=page * 5.0)
        text = draw(view(snap), width, height)
        assert len(text.splitlines()) <= height - 1, text
        assert max(len(line) for line in text.splitlines()) <= width
        rows = [f for f in snap.feeds if any(line.split()[:1] == [f.symbol] for line in text.splitlines())]
        assert_whole(text, rows)
        seen |= {f.symbol for f in rows}
        if page == 0:
            golden = GOLDEN / f"screen_{width}x{height}_n{n}.txt"
            if REGEN:
                golden.write_text(text, encoding="utf-8")
            assert text == golden.read_text(encoding="utf-8"), f"layout changed: compare with {golden.name}"
    assert seen == {f.symbol for f in feeds_snapshot(n).feeds}


def test_columns_keep_their_width_from_one_refresh_to_the_next() -> None:
    view = DashboardView()
    wide = feeds_snapshot(3)
    narrow = feeds_snapshot(3)
    for f in narrow.feeds:
        f.state = "LIVE"
        f.bars = {"backfill": 5, "live": 1, "gapfill": 0}
        f.last_bar = f.last_bar._replace(close=1.0) if f.last_bar else None
    first = draw(view(wide), 120, 40).splitlines()
    second = draw(view(narrow), 120, 40).splitlines()
    header = next(i for i, line in enumerate(first) if line.startswith("symbol"))
    assert first[header] == second[header]  # same columns at the same places
    assert len(first[header + 2]) == len(second[header + 2])


def test_prices_keep_the_market_precision() -> None:
    text = draw(render(feeds_snapshot(5)), 200, 40)
    assert "59153.20" in text  # 2 decimals, the trailing zero kept
    assert "0.00001234" in text  # 8 decimals, never 1.234e-05
    assert "142.125" in text


def test_panels_break_between_fields_never_inside_one() -> None:
    text = draw(render(feeds_snapshot(3)), 80, 40)
    for label in ("exchange binance", "state DISCONNECTED", "reconnects 2", "backoff 10.7s",
                  "REST calls 1234", "cash 9,412.50", "value 10,021.75", "P&L +21.75",
                  "positions BTC/USDT 0.01"):
        assert label in text, label


def test_render_shows_bars_connection_broker_and_events():
    st = FeedStatus("BTC/USDT", "1m", "websocket", state="DISCONNECTED",
                    last_bar=Candle(1_700_000_040_000, 100.5, 101.25, 99.75, 100.0, 12.5),
                    bars={"backfill": 100, "live": 7, "gapfill": 2}, reconnects=3,
                    last_message_age_s=4.2, latency_ms_last=1.5)
    snap = Snapshot("btccxt test", 12.0, feeds=[st],
                    connection=ConnectionStatus("binance", "websocket", "DISCONNECTED", reconnects=3,
                                                rest_calls=9, rate_limited=1, backoff_s=2.5),
                    broker=BrokerStatus(cash=9_000.0, value=10_050.0, positions={"BTC/USDT": 0.01},
                                        open_orders=1, trades=2, pnl=50.0,
                                        balances={"USDT": 9_000.0, "BTC": 0.01},
                                        orders=["buy BTC/USDT 0.01 limit @ 60000 filled 0 [open]"],
                                        updates="reconnecting"),
                    events=["12:00:01 BTC/USDT DISCONNECTED: socket closed"],
                    closes={"BTC/USDT": [1.0, 2.0, 3.0]})
    text = draw(render(snap), 200, 40)
    for needle in ("BTC/USDT", "DISCONNECTED", "22:14:00", "101.25", "99.75", "12.5", "100", "4.2s",
                   "backoff 2.5s", "REST calls 9", "429s 1", "cash 9,000.00", "value 10,050.00",
                   "P&L +50.00", "trades 2", "open orders 1", "BTC/USDT 0.01", "socket closed",
                   "BTC 0.01, USDT 9,000", "buy BTC/USDT 0.01 limit @ 60000 filled 0 [open]",
                   "updates   reconnecting", sparkline([1.0, 2.0, 3.0])):
        assert needle in text, needle


def test_sparkline_edges():
    assert sparkline([]) == ""
    assert sparkline([5, 5]) == "▄▄"
    assert sparkline([1, 2]) == "▁█"
