"""Swaps on the paper broker (paper runs and ``btccxt backtest``): margin and leverage from
backtrader's futures-like commission info, funding from the exchange's funding-rate history,
and the funding-rate feed, all against the simulator's binance USD-M perpetual with a short
funding interval.

Expected figures are computed by hand from the simulator's own answers: fills from the
backtest's orders, closes from ``sim.truth``, rates from ccxt ``fetch_funding_rate_history``
on a client of its own (not the cache the code under test wrote)."""

from __future__ import annotations

import csv
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from btccxt_cli.exchange.factory import make_exchange
from tests.cli.test_run_cli import btccxt, read_events
from tests.integration.harness import run_for

pytestmark = pytest.mark.live

SWAP = "BTC/USDT:USDT"
SOURCE = "binance@sim:seed-1"
CASH = 10_000.0
FEE = 0.001
LEV = 5.0

HOLD = '''import backtrader as bt


class Hold(bt.Strategy):
    """Open ``size`` on the first live bar (buy or sell), close it after ``hold`` live bars."""

    params = (("side", "buy"), ("size", 0.5), ("hold", 25))

    def start(self):
        self.live = False
        self.n = 0

    def notify_data(self, data, status, *args, **kwargs):
        if data._getstatusname(status) == "LIVE":
            self.live = True

    def next(self):
        if not self.live:
            return
        self.n += 1
        if self.n == 1:
            (self.buy if self.p.side == "buy" else self.sell)(size=self.p.size)
        elif self.n == self.p.hold:
            self.close()
'''


def _config(tmp_path: Path, sim_url: str, side: str, *, extra: str = "") -> Path:
    strat = tmp_path / "hold.py"
    strat.write_text(HOLD)
    cfg = tmp_path / "swap.yaml"
    cfg.write_text(f"""exchange:
  id: binance
  sim: {sim_url}
broker:
  leverage: {LEV:g}
  commission: {FEE}
{extra}symbols:
  - {SWAP}
feed:
  cache: {tmp_path / 'ohlcv.sqlite'}
  timeframe: 1s
  backfill: 5
strategy:
  path: {strat}
  params: {{side: {side}}}
""")
    return cfg


def _backtest(cfg: Path, since: int, until: int, *args: str) -> tuple[int, str, str]:
    p = btccxt("backtest", str(cfg), "--since", str(since), "--until", str(until), *args)
    out, err = p.communicate(timeout=90)
    return p.returncode, out, err


def _window() -> tuple[int, int]:
    now = int(time.time()) * 1000
    return now - 40_000, now - 2000


def _rates(sim: Any, since: int, until: int) -> dict[int, float]:
    ex = make_exchange("binance", sim_url=sim.url("binance"))
    got = ex.fetch_funding_rate_history(SWAP, since=since, limit=1000)
    return {int(r["timestamp"]): float(r["fundingRate"]) for r in got if since <= r["timestamp"] <= until}


def _close_at(sim: Any, t: int) -> float:
    """The close of the 1s bar that closes at ``t`` (the mark of a settlement at ``t``)."""
    [bar] = sim.truth("binance", SWAP, "1s", t - 1000, t)
    return float(bar[4])


def _by_hand(sim: Any, orders: list[dict[str, Any]], rates: dict[int, float]) -> tuple[float, float]:
    """(expected final value, funding paid) of one open-then-close round trip."""
    opened, closed = orders
    sign = 1.0 if opened["side"] == "buy" else -1.0
    size = opened["size"]
    price_pnl = sign * size * (closed["price"] - opened["price"])
    fees = FEE * size * (opened["price"] + closed["price"])
    # held through the bars [open fill's bar, close fill's bar): settlements in (open, close]
    funding = sum(sign * size * _close_at(sim, t) * r for t, r in rates.items()
                  if opened["time"] < t <= closed["time"])
    return CASH + price_pnl - fees - funding, funding


@pytest.fixture
def swap_sim(sim_factory: Any) -> Any:
    return sim_factory(exchanges=("binance",), funding_interval_s=5)


@pytest.mark.parametrize("side", ["buy", "sell"])
def test_a_backtested_long_and_short_book_price_pnl_minus_fees_minus_funding(
        swap_sim: Any, tmp_path: Path, side: str) -> None:
    cfg = _config(tmp_path, swap_sim.url("binance"), side)
    since, until = _window()
    code, out, err = _backtest(cfg, since, until, "--json")
    assert code == 0, err[-3000:]
    doc = json.loads(out)
    orders = doc["orders"]
    assert [o["side"] for o in orders] == ([side, "sell" if side == "buy" else "buy"])
    assert all(o["status"] == "Completed" and o["size"] == 0.5 for o in orders)
    # 0.5 BTC is ~3 times the cash: only the margin (price / 5) is locked, and a short opens
    assert orders[0]["price"] * 0.5 > 2 * CASH
    rates = _rates(swap_sim, since - 10_000, until)
    held = [t for t in rates if orders[0]["time"] < t <= orders[1]["time"]]
    assert len(held) >= 3, "the position is held over several settlements"
    want, funding = _by_hand(swap_sim, orders, rates)
    assert doc["per_symbol"][SWAP]["funding"] == pytest.approx(funding, abs=1e-9)
    assert doc["metrics"]["final_value"] == pytest.approx(want, abs=1e-6)
    assert doc["metrics"]["fees"] == pytest.approx(sum(o["fee"] for o in orders), abs=1e-9)
    assert funding != 0


@pytest.mark.parametrize("side", ["buy", "sell"])
def test_the_value_of_an_open_swap_is_cash_plus_its_price_pnl_minus_fee_and_funding(
        swap_sim: Any, tmp_path: Path, side: str) -> None:
    """Every cycle while the position is open, the broker's value is the starting cash plus
    the price P&L at the close, minus the fee and the funding so far (backtrader alone counts
    the margin at the close's price: off by ``size * (close - entry) / leverage``)."""
    from btccxt_cli.bt.replay import memory_rows
    from btccxt_cli.config.load import load_config
    from btccxt_cli.model import Candle
    from btccxt_cli.runtime.backtest import run_backtest

    cfg = load_config(_config(tmp_path, swap_sim.url("binance"), side))
    since, until = _window()
    bars = [Candle(*r[:6]) for r in swap_sim.truth("binance", SWAP, "1s", since - 5000, until)]
    rates = _rates(swap_sim, since - 10_000, until)
    res = run_backtest(cfg, tmp_path, memory_rows({(SWAP, "1s"): bars}), since, until, curve=True,
                       funding={SWAP: sorted(rates.items())})
    opened, closed = res.orders
    sign = 1.0 if side == "buy" else -1.0
    close_of = {c.ts + 1000: c.close for c in bars}
    checked = 0
    for stamp, value in res.curve:
        close_ms = stamp + 1  # bars are stamped at their close - 1 ms
        if not opened["time"] < close_ms <= closed["time"]:
            continue
        paid = sum(sign * 0.5 * close_of[t] * r for t, r in rates.items()
                   if opened["time"] < t <= close_ms)
        want = CASH - opened["fee"] + sign * 0.5 * (close_of[close_ms] - opened["price"]) - paid
        assert value == pytest.approx(want, abs=1e-6), (close_ms, value, want)
        checked += 1
    assert checked >= 20
    assert [p.time_ms for p in res.funding] == sorted(t for t in rates if opened["time"] < t <= closed["time"])


def test_an_offline_backtest_reads_the_cached_funding_and_names_a_missing_one(
        swap_sim: Any, tmp_path: Path) -> None:
    cfg = _config(tmp_path, swap_sim.url("binance"), "buy")
    since, until = _window()
    code, out, err = _backtest(cfg, since, until, "--json")
    assert code == 0, err[-3000:]
    online = json.loads(out)
    db = tmp_path / "ohlcv.sqlite"
    with sqlite3.connect(db) as conn:  # what the first run downloaded, under the sim's source
        stored = dict(conn.execute("SELECT ts, rate FROM funding WHERE exchange = ? AND symbol = ?",
                                   (SOURCE, SWAP)).fetchall())
        assert stored == _rates(swap_sim, min(stored), until)
        conn.execute("UPDATE funding SET rate = rate * 3")  # the cache, not the exchange, is read
    code, out, err = _backtest(cfg, since, until, "--json", "--offline")
    assert code == 0, err[-3000:]
    offline = json.loads(out)
    assert offline["orders"] == online["orders"]
    paid = online["per_symbol"][SWAP]["funding"]
    assert offline["per_symbol"][SWAP]["funding"] == pytest.approx(3 * paid, abs=1e-9)
    assert offline["metrics"]["final_value"] == pytest.approx(
        online["metrics"]["final_value"] - 2 * paid, abs=1e-6)
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM funding_ranges")
    code, out, err = _backtest(cfg, since, until, "--offline")
    assert code == 2, err
    assert "Traceback" not in err
    [line] = err.strip().splitlines()
    assert line.startswith(f"error: --offline: the cache has no funding rates of {SWAP} from "), line
    assert SOURCE in line and "without --offline" in line and "broker.funding: false" in line
    # broker.funding: false needs no rates
    cfg.write_text(cfg.read_text().replace("broker:\n", "broker:\n  funding: false\n", 1))
    code, out, err = _backtest(cfg, since, until, "--json", "--offline")
    assert code == 0, err[-3000:]
    assert json.loads(out)["per_symbol"][SWAP]["funding"] == 0


def test_a_paper_run_pays_funding_and_shows_it_in_the_broker_status(
        sim_factory: Any, tmp_path: Path) -> None:
    from btccxt_cli.config.load import load_config
    from btccxt_cli.runtime.runner import Runner

    sim = sim_factory(exchanges=("binance",), funding_interval_s=2)
    cfg = load_config(_config(tmp_path, sim.url("binance"), "buy", extra="  margin_mode: isolated\n"))
    before = {t.ident for t in threading.enumerate()}
    ev = tmp_path / "events.jsonl"
    runner = Runner(cfg, sim_url=sim.url("binance"), max_bars=9, config_dir=tmp_path, events=ev)
    summary = runner.run()
    assert summary.reason == "--max-bars 9 reached"
    st = runner.cerebro.broker.btccxt_swaps
    pays = st.payments
    assert len(pays) >= 2, pays
    [fill] = [r for r in read_events(ev) if r["type"] == "order" and r["event"] == "Completed"]
    assert pays[0].time_ms == fill["bar"] - fill["bar"] % 2000 + 2000  # none missed after the fill
    rates = _rates(sim, pays[0].time_ms, pays[-1].time_ms)
    assert [p.time_ms for p in pays] == sorted(rates)  # every settlement, once, in order
    for p in pays:
        assert p.size == 0.5
        assert p.rate == rates[p.time_ms]
        assert p.mark == _close_at(sim, p.time_ms)
        assert p.amount == pytest.approx(0.5 * p.mark * p.rate, abs=1e-12)
    broker = runner.monitor.snapshot().broker
    assert broker is not None and broker.mode == "paper"
    [row] = broker.derivs
    entry = runner.cerebro.broker.positions[runner.feeds[0]].price
    assert (row.symbol, row.size, row.side, row.entry) == (SWAP, 0.5, "long", entry)
    assert (row.leverage, row.margin_mode) == (LEV, "isolated")
    assert row.funding == pytest.approx(sum(p.amount for p in pays), abs=1e-12)
    assert row.liquidation == pytest.approx(entry * (1 - 1 / LEV) / (1 - 0.004))  # the paper's rule
    assert row.upnl == pytest.approx(0.5 * (row.mark - entry))
    assert broker.value == pytest.approx(CASH - FEE * 0.5 * entry + row.upnl - row.funding, abs=1e-6)
    left = [t.name for t in threading.enumerate() if t.ident not in before and t.is_alive()
            and t.name == "btccxt-funding"]
    assert left == []


def test_the_funding_feed_delivers_the_simulators_rates_in_order(sim_factory: Any,
                                                                 tmp_path: Path) -> None:
    import backtrader as bt

    from btccxt_cli.bt.funding_feed import CCXTFundingFeed
    from btccxt_cli.bt.store import CCXTStore
    from btccxt_cli.cache.sqlite import OhlcvCache

    sim = sim_factory(exchanges=("binance",), funding_interval_s=1)
    store = CCXTStore("binance", sim_url=sim.url("binance"))
    seen: list[tuple[int, float]] = []
    start_ms = int(time.time() * 1000)

    class Watch(bt.Strategy):
        def next(self) -> None:
            d = self.datas[0]
            ms = int(round(bt.num2date(d.datetime[0]).timestamp() * 1000))
            seen.append((ms, d.close[0]))
            if len(seen) >= 8 and ms > start_ms + 1000:  # history, then live settlements
                self.env.runstop()

    with OhlcvCache(tmp_path / "ohlcv.sqlite") as cache:
        cerebro = bt.Cerebro(stdstats=False, quicknotify=True)
        cerebro.adddata(CCXTFundingFeed(store=store, symbol=SWAP, backfill=5, cache=cache),
                        name="funding")
        cerebro.addstrategy(Watch)
        run_for(cerebro, store, 30)
        assert len(seen) >= 8 and seen[-1][0] > start_ms + 1000, f"delivered in 30 s: {seen}"
        truth = _rates(sim, seen[0][0], seen[-1][0])
        assert seen == sorted(truth.items())  # every settlement, in order, with its rate
        assert [b - a for (a, _), (b, _) in zip(seen, seen[1:], strict=False)] == [1000] * (len(seen) - 1)
        cached = cache.funding(SOURCE, SWAP)  # the history went through the cache
        assert len(cached) >= 4 and cached == seen[:len(cached)]


def test_funding_downloads_resume_where_the_cache_stops(sim_factory: Any, tmp_path: Path) -> None:
    from btccxt_cli.bt.funding import fill_funding, missing_funding
    from btccxt_cli.cache.sqlite import OhlcvCache

    sim = sim_factory(exchanges=("binance",), funding_interval_s=1)
    client = make_exchange("binance", sim_url=sim.url("binance"))
    client.load_markets()
    now = int(time.time()) * 1000
    a, m, b = now - 20_000, now - 10_500, now - 1000
    with OhlcvCache(tmp_path / "ohlcv.sqlite") as cache:
        assert fill_funding(cache, client, SOURCE, SWAP, a, m, page=4) == 10  # 3 pages
        assert missing_funding(cache, SOURCE, SWAP, a, b) == [(m + 1, b)]
        sim.reset_stats("binance")
        assert fill_funding(cache, client, SOURCE, SWAP, a, b, page=4) == 10  # only what it lacks
        asked = sim.stats("binance")["rest"]
        assert sum(n for path, n in asked.items() if "fundingRate" in path) == 3, asked
        assert cache.funding_ranges(SOURCE, SWAP) == [(a, b)]
        assert dict(cache.funding(SOURCE, SWAP)) == _rates(sim, a, b)
        assert fill_funding(cache, client, SOURCE, SWAP, a + 5000, b - 5000) == 0  # all cached


def test_the_funding_feed_beside_a_price_feed_gives_the_last_settled_rate(sim_factory: Any) -> None:
    """The documented use (docs/swaps.md): cerebro lines the two feeds up by time, each
    cycle sees the last settlement delivered, and every settlement arrives, in order."""
    import backtrader as bt

    from btccxt_cli.bt.funding_feed import CCXTFundingFeed
    from btccxt_cli.bt.store import CCXTStore

    sim = sim_factory(exchanges=("binance",), funding_interval_s=2)
    store = CCXTStore("binance", sim_url=sim.url("binance"))
    cycles: list[tuple[int, int, float]] = []

    def ms(num: float) -> int:
        return int(round(bt.num2date(num).timestamp() * 1000))

    class Both(bt.Strategy):
        def next(self) -> None:
            price, funding = self.datas
            cycles.append((ms(price.datetime[0]), ms(funding.datetime[0]), funding.close[0]))
            if len({f for _, f, _ in cycles}) >= 5:
                self.env.runstop()

    cerebro = bt.Cerebro(stdstats=False, quicknotify=True)
    cerebro.adddata(store.getdata(dataname=SWAP, timeframe=bt.TimeFrame.Seconds, compression=1,
                                  backfill_bars=3), name=SWAP)
    cerebro.adddata(CCXTFundingFeed(store=store, symbol=SWAP, backfill=2), name="funding")
    cerebro.addstrategy(Both)
    run_for(cerebro, store, 40)
    settled = sorted({(f, r) for _, f, r in cycles})
    assert len(settled) >= 5, cycles
    assert [f for _, f, _ in cycles] == sorted(f for _, f, _ in cycles)
    assert [p for p, _, _ in cycles] == sorted(p for p, _, _ in cycles)
    truth = _rates(sim, settled[0][0], settled[-1][0])
    assert settled == sorted(truth.items())


def test_the_paper_liquidation_estimate_is_where_the_paper_broker_liquidates() -> None:
    from btccxt_cli.bt.funding_broker import liquidation_estimate

    assert liquidation_estimate(60_000, 0.5, 5, "isolated") == pytest.approx(60_000 * 0.8 / 0.996)
    assert liquidation_estimate(60_000, -0.5, 5, "isolated") == pytest.approx(60_000 * 1.2 / 1.004)
    assert liquidation_estimate(60_000, 0.5, 5, "cross") is None  # the broker's, from its account
    assert liquidation_estimate(60_000, 0.0, 5, "isolated") is None


HOLD_FOREVER = '''import backtrader as bt


class Hold(bt.Strategy):
    params = (("side", "buy"), ("size", 0.01))

    def start(self):
        self.done = False

    def notify_data(self, data, status, *args, **kwargs):
        if data._getstatusname(status) == "LIVE" and not self.done:
            self.done = True
            (self.buy if self.p.side == "buy" else self.sell)(size=self.p.size)
'''


def _hold_at_125x(tmp_path: Path, sim: Any, side: str, timeframe: str) -> Path:
    """A config that opens ``side`` 0.01 BTC at 125x isolated on the first live bar and holds
    it (no funding)."""
    strat = tmp_path / "hold.py"
    strat.write_text(HOLD_FOREVER)
    cfg = tmp_path / "liq.yaml"
    cfg.write_text(f"""exchange:
  id: binance
  sim: {sim.url("binance")}
broker:
  leverage: 125
  margin_mode: isolated
  commission: {FEE}
  funding: false
symbols:
  - {SWAP}
feed:
  cache: {tmp_path / 'ohlcv.sqlite'}
  timeframe: {timeframe}
  backfill: 1
strategy:
  path: {strat}
  params: {{side: {side}}}
""")
    return cfg


def test_a_backtest_at_125x_is_liquidated_in_the_first_bar_that_reaches_the_price(
        swap_sim: Any, tmp_path: Path) -> None:
    """A day of the simulator's 1m bars: a long or a short of 0.01 BTC at 125x isolated (the
    side the bars liquidate first, found from the truth) is closed in the first bar whose low
    (high) reaches ``entry * (1 - 1/125) / 0.996`` (``(1 + 1/125) / 1.004``), at that price,
    and the run loses exactly that P&L, the entry fee and its funding."""
    now = int(time.time()) // 60 * 60_000
    since, until = now - 24 * 3_600_000, now - 3_600_000
    truth = swap_sim.truth("binance", SWAP, "1m", since, until)
    # live from since + 1 min: the order fills at the open of that bar (the close before it)
    entry = truth[1][1]

    def first(side: str) -> tuple[int, float] | None:
        lev = 125.0
        liq = entry * (1 - 1 / lev) / 0.996 if side == "buy" else entry * (1 + 1 / lev) / 1.004
        for i, (_, o, h, lo, _c, _v) in enumerate(truth[1:], start=1):  # from the fill's bar
            if (lo if side == "buy" else -h) <= (liq if side == "buy" else -liq):
                gap = o <= liq if side == "buy" else o >= liq
                return i, (o if gap else liq)
        return None

    found = {s: first(s) for s in ("buy", "sell")}
    side = min((s for s in found if found[s]), key=lambda s: found[s][0])  # type: ignore[index]
    i, price = found[side]  # type: ignore[misc]
    cfg = _hold_at_125x(tmp_path, swap_sim, side, "1m")
    trades, report = tmp_path / "trades.csv", tmp_path / "report.html"
    code, out, err = _backtest(cfg, since + 60_000, until, "--json", "--trades", str(trades),
                               "--report", str(report))
    assert code == 0, err[-3000:]
    doc = json.loads(out)
    opened, liquidated = doc["orders"]
    rows = [r for r in csv.DictReader(trades.open()) if r["kind"] == "order"]
    assert [r["liquidation"] for r in rows] == ["", "true"]
    assert f"{SWAP} liquidation" in report.read_text().replace("\\u002f", "/")
    assert (opened["side"], opened["time"]) == (side, truth[1][0])
    assert opened["price"] == pytest.approx(entry, rel=1e-12)
    assert liquidated == {**liquidated, "side": "sell" if side == "buy" else "buy", "size": 0.01,
                          "fee": 0.0, "status": "Completed", "liquidation": True,
                          "time": truth[i][0]}
    assert liquidated["price"] == pytest.approx(price, rel=1e-12)
    pnl = (price - entry) * 0.01 * (1 if side == "buy" else -1)
    assert doc["metrics"]["final_value"] == pytest.approx(CASH + pnl - FEE * 0.01 * entry, abs=1e-9)
    [trade] = doc["trades"]
    assert trade["pnl"] == pytest.approx(pnl, abs=1e-9)


def test_on_the_simulators_own_path_paper_liquidates_no_later_than_the_simulator(
        swap_sim: Any, tmp_path: Path) -> None:
    """The same rule on the same prices: a long or a short at 125x isolated, backtested on
    paper over the simulator's 1s bars, is liquidated in the first bar whose low (high)
    reaches the simulator's own liquidation price (``sim.positions.Position.liq_price``), at
    that price. The simulator's engine checks its mark at whole seconds and liquidates at the
    first one at or beyond that price: never before the paper bar, since a bar's low (high)
    is the lowest (highest) price of its second."""
    from btccxt_cli.bt.replay import memory_rows
    from btccxt_cli.config.load import load_config
    from btccxt_cli.model import Candle
    from btccxt_cli.runtime.backtest import run_backtest
    from btccxt_cli.sim.positions import Position

    eng = swap_sim.sim.server("binance").engine
    now = int(time.time()) * 1000
    day = [Candle(*r[:6]) for r in swap_sim.truth("binance", SWAP, "1s", now - 8 * 3_600_000,
                                                  now - 60_000)]

    def liq_of(entry: float, qty: float) -> float:
        got = Position(id=1, key="k", symbol=SWAP, side="net", qty=qty, entry=entry,
                       margin=abs(qty) * entry / 125, leverage=125, mode="isolated").liq_price()
        assert got is not None
        return got

    def reached(c: Any, liq: float, qty: float) -> bool:
        return c.low <= liq if qty > 0 else c.high >= liq

    # a window of 30 minutes whose position (opened at its second bar's open) the path takes
    found = next(((i, qty) for i in range(0, len(day) - 1800, 300) for qty in (0.01, -0.01)
                  if any(reached(c, liq_of(day[i + 1].open, qty), qty)
                         for c in day[i + 1:i + 1800])), None)
    assert found is not None, "the simulated path never moved 0.4 % within 30 min in 8 hours"
    i, qty = found
    bars = day[i:i + 1800]
    cfg = _hold_at_125x(tmp_path, swap_sim, "buy" if qty > 0 else "sell", "1s")
    res = run_backtest(load_config(cfg), tmp_path, memory_rows({(SWAP, "1s"): bars}),
                       bars[0].ts + 1000, bars[-1].ts + 1000)
    opened = res.orders[0]
    assert opened["time"] == bars[1].ts and opened["price"] == pytest.approx(bars[1].open)
    liq = liq_of(opened["price"], qty)
    first = next(c for c in bars[1:] if reached(c, liq, qty))
    assert len(res.orders) == 2
    liquidated = res.orders[1]
    assert liquidated.get("liquidation") is True and liquidated["time"] == first.ts
    gap = first.open <= liq if qty > 0 else first.open >= liq
    assert liquidated["price"] == pytest.approx(first.open if gap else liq, rel=1e-9)
    t = first.ts  # the simulator's check: its mark at whole seconds
    while (eng.price(SWAP, t) > liq) if qty > 0 else (eng.price(SWAP, t) < liq):
        t += 1000
    assert eng.price(SWAP, first.ts) == pytest.approx(first.open)  # the bar opens at its second
    assert t == first.ts if gap else t >= first.ts + 1000
    assert t - first.ts < 3_600_000


class _SettlementDuringStart:
    """The real ccxt client; the simulator's clock passes one settlement right after the
    history is read, before ``fetch_funding_rate`` answers (as a slow start can)."""

    def __init__(self, ex: Any, clock: Any, step_s: float) -> None:
        self.ex, self.clock, self.step_s, self.calls = ex, clock, step_s, 0

    def fetch_funding_rate_history(self, *args: Any, **kwargs: Any) -> Any:
        got = self.ex.fetch_funding_rate_history(*args, **kwargs)
        self.calls += 1
        if self.calls == 1:
            self.clock.advance(self.step_s)
        return got

    def fetch_funding_rate(self, *args: Any, **kwargs: Any) -> Any:
        return self.ex.fetch_funding_rate(*args, **kwargs)


def test_a_paper_runs_rates_miss_no_settlement_that_passes_while_they_start(
        sim_factory: Any) -> None:
    from btccxt_cli.bt.funding import LiveRates
    from btccxt_cli.clock import ManualClock

    now = int(time.time() * 1000)
    clock = ManualClock(start_ms=now - now % 2000 + 1500)  # 0.5 s before a settlement
    sim = sim_factory(exchanges=("binance",), funding_interval_s=2, clock=clock)
    ex = make_exchange("binance", sim_url=sim.url("binance"))
    ex.load_markets()
    start = clock.time_ms()
    rates = LiveRates(lambda: _SettlementDuringStart(ex, clock, 1.0), [SWAP], clock=clock,
                      settle_wait=0.0, retry=0.05).start()
    try:
        due = start + 500  # the settlement that passes during the start
        deadline = time.monotonic() + 20
        while rates.times(SWAP, start, start) is None and time.monotonic() < deadline:
            threading.Event().wait(0.02)
        clock.advance(4)  # two more settlements
        want = [due, due + 2000, due + 4000]
        while any(rates.rate(SWAP, t) is None for t in want) and time.monotonic() < deadline:
            threading.Event().wait(0.02)
        truth = _rates(sim, due, due + 4000)
        assert {t: rates.rate(SWAP, t) for t in want} == truth
        assert rates.times(SWAP, start, clock.time_ms()) == want
    finally:
        rates.stop()


RECORD = '''import json

import backtrader as bt


class Record(bt.Strategy):
    """Write every new settlement of the funding feed (time, rate) to ``out``."""

    params = (("out", ""),)

    def start(self):
        self.seen = []

    def next(self):
        f = self.getdatabyname("BTC/USDT:USDT funding")
        if len(f) and (not self.seen or self.seen[-1][0] != f.datetime[0]):
            self.seen.append((f.datetime[0], f.close[0]))

    def stop(self):
        with open(self.p.out, "w") as fh:
            json.dump([[bt.num2date(t).timestamp(), r] for t, r in self.seen], fh)
'''


def test_a_funding_feed_from_the_config_replays_the_cached_rates_in_a_backtest(
        swap_sim: Any, tmp_path: Path) -> None:
    """``symbols: [{symbol: ..., funding_feed: true}]``: the strategy reads the swap's funding
    rates as a feed named '<symbol> funding', with broker.funding off (rates for the feed only)."""
    cfg = _config(tmp_path, swap_sim.url("binance"), "buy", extra="  funding: false\n")
    (tmp_path / "record.py").write_text(RECORD)
    out_file = tmp_path / "seen.json"
    text = cfg.read_text().replace(f"  - {SWAP}\n", f"  - {{symbol: {SWAP}, funding_feed: true}}\n")
    text = text.replace(f"path: {tmp_path / 'hold.py'}", f"path: {tmp_path / 'record.py'}")
    text = text.replace("params: {side: buy}", f"params: {{out: {out_file}}}")
    cfg.write_text(text)
    since, until = _window()
    code, _out, err = _backtest(cfg, since, until)
    assert code == 0, err[-3000:]
    seen = {round(t * 1000): r for t, r in json.loads(out_file.read_text())}
    rates = _rates(swap_sim, since, until)
    inside = {t: r for t, r in rates.items() if since + 10_000 <= t <= until - 5000}
    assert len(inside) >= 3
    assert {t: seen[t] for t in inside} == pytest.approx(inside)  # every settlement, its rate
    assert list(seen) == sorted(seen)


def test_a_funding_feed_from_the_config_runs_live_beside_its_swap(sim_factory: Any,
                                                                  tmp_path: Path) -> None:
    from btccxt_cli.config.load import load_config
    from btccxt_cli.runtime.runner import Runner

    sim = sim_factory(exchanges=("binance",), funding_interval_s=2)
    cfg_path = _config(tmp_path, sim.url("binance"), "buy")
    (tmp_path / "record.py").write_text(RECORD)
    out_file = tmp_path / "seen.json"
    text = cfg_path.read_text().replace(f"  - {SWAP}\n", f"  - {{symbol: {SWAP}, funding_feed: true}}\n")
    text = text.replace(f"path: {tmp_path / 'hold.py'}", f"path: {tmp_path / 'record.py'}")
    text = text.replace("params: {side: buy}", f"params: {{out: {out_file}}}")
    cfg_path.write_text(text)
    runner = Runner(load_config(cfg_path), sim_url=sim.url("binance"), max_bars=8,
                    config_dir=tmp_path)
    summary = runner.run()
    assert summary.reason == "--max-bars 8 reached"
    seen = {round(t * 1000): r for t, r in json.loads(out_file.read_text())}
    rates = _rates(sim, min(seen), max(seen))
    assert seen == pytest.approx(rates) and len(seen) >= 3  # the history, then live settlements
