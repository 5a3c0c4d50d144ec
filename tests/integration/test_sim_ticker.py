"""Tickers in the simulator through unmodified ccxt: ``fetch_ticker`` on binance spot
(``/api/v3/ticker/24hr``) and USD-M (``/fapi/v1/ticker/24hr``), okx spot and swaps
(``/api/v5/market/ticker``), binance's ticker lists and last prices, the exchanges' errors for
unknown symbols, and the live broker's ``last_price`` reading the ticker.

Every test runs on a ManualClock, so "now" is one instant: ``last`` must be the matching
engine's price at it, and the 24 h open/high/low/volume what the simulator's own 1h bars of the
window say (``truth()`` for closed bars, the venue's klines for the forming one)."""

from __future__ import annotations

import asyncio
from typing import Any

import ccxt
import pytest

from btccxt_cli.bt.adoption import last_price
from btccxt_cli.clock import ManualClock
from btccxt_cli.exchange.factory import make_exchange

pytestmark = pytest.mark.live

MIN = 60_000
HOUR = 3_600_000
DAY = 24 * HOUR
FULL_HOUR = 1_700_002_800_000  # 2023-11-14 23:00 UTC
MID_HOUR = FULL_HOUR + 37 * MIN + 12_345
NEW_LOW = 1_700_009_635_000  # BTC/USDT (seed 1) below every 1h bar of the window, forming one too
CASES = [("binance", "BTC/USDT"), ("binance", "BTC/USDT:USDT"),
         ("okx", "BTC/USDT"), ("okx", "BTC/USDT:USDT")]


def start(sim_factory: Any, exchange: str, at_ms: int, kind: str = "sync") -> tuple[Any, Any]:
    """``exchange`` alone on a ManualClock at ``at_ms`` and a public ccxt client of it."""
    sim = sim_factory(exchanges=(exchange,), clock=ManualClock(start_ms=at_ms),
                      check_timestamps=False)
    # no client-side throttling: a ticker of every market costs binance's weight 40
    return sim, make_exchange(exchange, kind=kind, sim_url=sim.url(exchange),
                              config={"enableRateLimit": False})


def engine_price(sim: Any, exchange: str, symbol: str, t_ms: int) -> float:
    """The matching engine's traded price of ``symbol`` at ``t_ms``."""
    return sim.sim.server(exchange).engine.price(symbol, t_ms)


def ticker_volume(ex: Any, symbol: str, base: float) -> float:
    """What ccxt's ticker reports as ``baseVolume`` for ``base`` units: okx's swap tickers
    count contracts (``vol24h``), and ccxt passes that on."""
    market = ex.market(symbol)
    return base / market["contractSize"] if ex.id == "okx" and market["swap"] else base


def check_top_of_book(ex: Any, symbol: str, t: dict[str, Any], last: float) -> None:
    """bid/ask one tick around ``last`` (binance's USD-M ticker has none, as binance's)."""
    market = ex.market(symbol)
    if ex.id == "binance" and market["swap"]:
        assert t["bid"] is None and t["ask"] is None
        return
    tick = market["precision"]["price"]
    assert t["bid"] == pytest.approx(last - tick, abs=tick / 100)
    assert t["ask"] == pytest.approx(last + tick, abs=tick / 100)
    assert t["bidVolume"] > 0 and t["askVolume"] > 0


@pytest.mark.parametrize(("exchange", "symbol"), CASES)
def test_ticker_at_a_full_hour_is_the_24_closed_hourly_bars(sim_factory: Any, exchange: str,
                                                            symbol: str) -> None:
    sim, ex = start(sim_factory, exchange, FULL_HOUR)
    t = ex.fetch_ticker(symbol)
    now = sim.now_ms()
    assert now == FULL_HOUR
    last = engine_price(sim, exchange, symbol, now)
    assert t["symbol"] == symbol
    assert t["last"] == last and t["close"] == last
    assert t["timestamp"] == now
    rows = sim.truth(exchange, symbol, "1h", now - DAY, now)
    assert [r[0] for r in rows] == list(range(now - DAY, now, HOUR))
    assert last == rows[-1][4]  # at the full hour the price is the last bar's close
    assert t["open"] == rows[0][1]
    assert t["high"] == max(r[2] for r in rows)
    assert t["low"] == min(r[3] for r in rows)
    assert t["high"] >= t["last"] >= t["low"]
    assert t["baseVolume"] == pytest.approx(ticker_volume(ex, symbol, sum(r[5] for r in rows)),
                                            rel=1e-12)
    check_top_of_book(ex, symbol, t, last)
    stats = sim.stats(exchange)
    assert stats["unknown_paths"] == {}
    path = {"binance": "/fapi/v1/ticker/24hr" if ":" in symbol else "/api/v3/ticker/24hr",
            "okx": "/api/v5/market/ticker"}[exchange]
    assert stats["rest"][path] == 1


@pytest.mark.parametrize(("exchange", "symbol"), CASES)
def test_ticker_mid_hour_counts_the_forming_bar(sim_factory: Any, exchange: str,
                                                symbol: str) -> None:
    sim, ex = start(sim_factory, exchange, MID_HOUR)
    t = ex.fetch_ticker(symbol)
    now = sim.now_ms()
    last = engine_price(sim, exchange, symbol, now)
    assert t["last"] == last and t["timestamp"] == now
    # the window: the bar holding now - 24 h, the closed bars since, the forming bar
    first = FULL_HOUR - DAY
    bars = ex.fetch_ohlcv(symbol, "1h", since=first, limit=25)
    assert [b[0] for b in bars] == list(range(first, FULL_HOUR + 1, HOUR))
    closed = sim.truth(exchange, symbol, "1h", first, FULL_HOUR)
    assert [list(r) for r in closed] == [list(b) for b in bars[:-1]]
    assert t["open"] == bars[0][1]
    # a trade at the price now is in the window, even where the forming bar's range lags it
    assert t["high"] == max(max(b[2] for b in bars), last)
    assert t["low"] == min(min(b[3] for b in bars), last)
    assert t["high"] >= t["last"] >= t["low"]
    assert t["baseVolume"] == pytest.approx(ticker_volume(ex, symbol, sum(b[5] for b in bars)),
                                            rel=1e-12)
    check_top_of_book(ex, symbol, t, last)


@pytest.mark.parametrize("exchange", ["binance", "okx"])
def test_ticker_low_is_the_price_now_at_a_new_24h_low(sim_factory: Any, exchange: str) -> None:
    """The forming bar's range grows towards its final one and lags the price path, so the
    price now can lie below every bar of the window: the ticker's low is then the price now."""
    sim, ex = start(sim_factory, exchange, NEW_LOW)
    t = ex.fetch_ticker("BTC/USDT")
    last = engine_price(sim, exchange, "BTC/USDT", NEW_LOW)
    first = NEW_LOW - NEW_LOW % HOUR - DAY
    bars = ex.fetch_ohlcv("BTC/USDT", "1h", since=first, limit=25)
    assert len(bars) == 25 and bars[0][0] == first
    assert t["last"] == last < min(b[3] for b in bars)
    assert t["low"] == last
    assert t["high"] == max(b[2] for b in bars)


def test_binance_unknown_or_missing_symbol(sim_factory: Any) -> None:
    _sim, ex = start(sim_factory, "binance", MID_HOUR)
    ex.load_markets()
    for call in (ex.publicGetTicker24hr, ex.publicGetTickerPrice, ex.fapiPublicGetTicker24hr,
                 ex.fapiPublicV2GetTickerPrice):
        with pytest.raises(ccxt.BadSymbol, match="-1121"):
            call({"symbol": "NOPEUSDT"})
    with pytest.raises(ccxt.BadSymbol, match="-1121"):  # one unknown in a list
        ex.publicGetTicker24hr({"symbols": '["BTCUSDT","NOPEUSDT"]'})
    with pytest.raises(ccxt.BadRequest, match="-1102"):
        ex.publicGetTicker24hr({"symbol": ""})
    with pytest.raises(ccxt.BadRequest, match="-1128"):
        ex.publicGetTicker24hr({"symbol": "BTCUSDT", "symbols": '["BTCUSDT"]'})
    with pytest.raises(ccxt.BadSymbol):  # ccxt itself refuses a symbol it has no market of
        ex.fetch_ticker("NOPE/USDT")


def test_okx_unknown_or_missing_instrument(sim_factory: Any) -> None:
    _sim, ex = start(sim_factory, "okx", MID_HOUR)
    ex.load_markets()
    for inst in ("NOPE-USDT", "BTC-USDT-NOPE", "ETH-BTC"):
        with pytest.raises(ccxt.BadSymbol, match="51001"):
            ex.publicGetMarketTicker({"instId": inst})
    with pytest.raises(ccxt.BadRequest, match="50014"):
        ex.publicGetMarketTicker({})
    with pytest.raises(ccxt.BadSymbol):
        ex.fetch_ticker("NOPE/USDT:USDT")


def test_binance_ticker_lists_and_last_prices(sim_factory: Any) -> None:
    sim, ex = start(sim_factory, "binance", MID_HOUR)
    now = sim.now_ms()
    price = {s: engine_price(sim, "binance", s, now) for s in sim.symbols("binance")}
    tickers = ex.fetch_tickers(["BTC/USDT", "ETH/USDT"])  # symbols=[...]
    assert sorted(tickers) == ["BTC/USDT", "ETH/USDT"]
    assert all(t["last"] == price[s] for s, t in tickers.items())
    spot = [s for s in sim.symbols("binance") if ":" not in s]
    everything = ex.fetch_tickers()  # no symbol: every spot market
    assert sorted(everything) == sorted(spot)
    one = ex.fetch_ticker("ETH/USDT")
    assert {k: v for k, v in one.items() if k != "info"} == {
        k: v for k, v in everything["ETH/USDT"].items() if k != "info"}
    assert ex.publicGetTickerPrice({"symbol": "BTCUSDT"}) == {
        "symbol": "BTCUSDT", "price": f"{price['BTC/USDT']:.8f}"}
    spot_last = ex.fetch_last_prices(["BTC/USDT", "SOL/USDT"])
    assert {s: p["price"] for s, p in spot_last.items()} == {
        "BTC/USDT": price["BTC/USDT"], "SOL/USDT": price["SOL/USDT"]}
    swap_last = ex.fetch_last_prices(["BTC/USDT:USDT"])  # /fapi/v2/ticker/price
    assert swap_last["BTC/USDT:USDT"]["price"] == price["BTC/USDT:USDT"]
    assert swap_last["BTC/USDT:USDT"]["timestamp"] == now


@pytest.mark.parametrize("exchange", ["binance", "okx"])
def test_broker_last_price_reads_the_ticker(sim_factory: Any, exchange: str) -> None:
    """``bt/adoption.last_price`` (the entry price of adopted coins) gets the engine's price from
    the ticker, without falling back to 1m candles."""
    sim, ex = start(sim_factory, exchange, MID_HOUR, kind="async")

    async def read() -> float:
        try:
            return await last_price(ex, "BTC/USDT")
        finally:
            await ex.close()

    assert asyncio.run(read()) == engine_price(sim, exchange, "BTC/USDT", sim.now_ms())
    stats = sim.stats(exchange)
    assert stats["unknown_paths"] == {}
    assert not [p for p in stats["rest"] if "klines" in p or "candles" in p]
