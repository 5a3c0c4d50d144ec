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
from btccxt_cli.model import (
    BrokerStatus,
    Candle,
    ConnectionStatus,
    DerivPosition,
    FeedStatus,
    Snapshot,
)

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


# a long with a liquidation price and funding paid, a short (cross) with funding received
SWAPS = [DerivPosition("BTC/USDT:USDT", 0.25, 58210.4, 59160.1, 237.43, 47012.7, 5, "isolated", 1.82),
         DerivPosition("ETH/USDT:USDT", -3.5, 2980.15, 3021.45, -144.55, 3890.2, 3, "cross", -0.64)]


def swaps_snapshot(n: int, positions: list[DerivPosition]) -> Snapshot:
    snap = feeds_snapshot(n)
    assert snap.broker is not None
    snap.broker.mode = "live"
    snap.broker.positions = {"BTC/USDT": 0.01, **{p.symbol: p.size for p in positions}}
    snap.broker.derivs = positions
    return snap


def many_swaps(k: int) -> list[DerivPosition]:
    return SWAPS + [DerivPosition(f"C{i:03d}/USDT:USDT", 10.0 * i, 10.0, 10.0 + i / 7, i * 1.43, None, 2,
                                  "isolated") for i in range(1, k - 1)]


def position_rows(text: str) -> dict[str, list[str]]:
    """The broker panel's position rows by symbol (their words, the panel's borders dropped)."""
    rows = {}
    for line in text.splitlines():
        words = line.strip("│ ").split()
        if words and words[0].endswith(":USDT") and words[1:2] in (["long"], ["short"]):
            rows[words[0]] = words
    return rows


@pytest.mark.parametrize(("width", "height"), [(80, 24), (140, 45)])
def test_swap_positions_golden(width: int, height: int) -> None:
    """Each position in a row of its own: symbol, side, size, unrealised P&L always; at 80
    columns the least important columns (entry, distance to liquidation) give way."""
    snap = swaps_snapshot(3, SWAPS)
    text = draw(DashboardView()(snap), width, height)
    assert len(text.splitlines()) <= height - 1 and max(len(line) for line in text.splitlines()) <= width
    assert_whole(text, snap.feeds)
    rows = position_rows(text)
    assert rows["BTC/USDT:USDT"][:3] == ["BTC/USDT:USDT", "long", "0.250"]  # the feed's amount decimals
    assert rows["ETH/USDT:USDT"][:3] == ["ETH/USDT:USDT", "short", "3.5"]  # size without its sign
    for sym, needles in {"BTC/USDT:USDT": ("+237.43", "47012.7", "5x", "iso", "-1.82"),
                         "ETH/USDT:USDT": ("-144.55", "3890.2", "3x", "cross", "+0.64")}.items():
        for needle in needles:
            assert needle in rows[sym], (needle, rows[sym])
    wide = width >= 140
    assert ("58210.4" in rows["BTC/USDT:USDT"]) is wide  # entry
    assert ("20.5%" in rows["BTC/USDT:USDT"]) is wide  # distance to liquidation
    assert "positions BTC/USDT 0.01" in text  # spot holdings stay in the fields; swaps only below
    assert "BTC/USDT:USDT 0.25" not in text
    golden = GOLDEN / f"swaps_{width}x{height}.txt"
    if REGEN:
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8"), f"layout changed: compare with {golden.name}"


@pytest.mark.parametrize("width", WIDTHS)
def test_swap_rows_stay_whole_at_every_width(width: int) -> None:
    text = draw(render(swaps_snapshot(3, SWAPS)), width, 60)
    assert max(len(line) for line in text.splitlines()) <= width
    rows = position_rows(text)
    assert set(rows) == {"BTC/USDT:USDT", "ETH/USDT:USDT"}
    assert all(row[3:] and any(w in row for w in ("+237.43", "-144.55")) for row in rows.values()), rows


@pytest.mark.parametrize(("width", "height", "shown"), [(80, 24, 2), (140, 45, 7)])
def test_many_positions_show_the_largest_upnl_first_and_count_the_rest(
        width: int, height: int, shown: int) -> None:
    positions = many_swaps(20)
    snap = swaps_snapshot(20, positions)
    text = draw(DashboardView()(snap), width, height)
    assert len(text.splitlines()) <= height - 1, text
    rows = position_rows(text)
    by_upnl = sorted(positions, key=lambda p: -abs(p.upnl))
    assert list(rows) == [p.symbol for p in by_upnl[:shown]], text
    rest = by_upnl[shown:]
    assert f"+{len(rest)} more positions (uPnL {sum(p.upnl for p in rest):+,.2f})" in text
    bars = [f for f in snap.feeds if any(line.split()[:1] == [f.symbol] for line in text.splitlines())]
    assert len(bars) >= 4  # the positions leave the Bars table some rows


def test_spot_runs_have_no_positions_table() -> None:
    text = draw(render(feeds_snapshot(3)), 140, 45)
    assert "uPnL" not in text and not position_rows(text)
    assert text == (GOLDEN / "screen_140x45_n3.txt").read_text(encoding="utf-8").replace(
        "running 0s", "running 754s")


def test_position_numbers_read_plainly_without_a_feed_and_zero_is_never_negative() -> None:
    """A position whose symbol has no feed (no market decimals): plain notation, never 2e+06;
    funding of 0 (and a tiny unrealised loss) show as +0.00, never -0.00."""
    pos = DerivPosition("1000PEPE/USDT:USDT", -2_000_000.0, 0.00001234, 0.00001201, -0.001, 0.0000155,
                        10, "isolated", 0.0)
    rows = position_rows(draw(render(swaps_snapshot(1, [pos])), 140, 45))
    assert rows["1000PEPE/USDT:USDT"][:9] == ["1000PEPE/USDT:USDT", "short", "2000000", "0.00001234",
                                              "0.00001201", "+0.00", "0.0000155", "29.1%", "10x"], rows
    assert rows["1000PEPE/USDT:USDT"][-1] == "+0.00"


def test_a_short_terminal_keeps_one_line_for_the_positions() -> None:
    text = draw(DashboardView()(swaps_snapshot(20, SWAPS)), 80, 16)
    assert len(text.splitlines()) <= 15, text
    assert "2 positions (uPnL +92.88)" in text and not position_rows(text)
