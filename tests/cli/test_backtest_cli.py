"""``btccxt backtest`` as a user runs it: a subprocess, the YAML ``btccxt run`` reads, the
simulator by URL for the bars the cache lacks.

Covered: a cache miss downloaded first (backfill's progress) then replayed, and the same
result offline afterwards; ``--offline`` with a hole (exit 2, one line naming it); a window
with exchange-side gaps (ranges the exchange confirmed empty are skipped, not holes); every
output (summary, ``--json``, ``--trades``, ``--report``); sweeps; slippage; bad input.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from btccxt_cli.cache.sqlite import OhlcvCache
from btccxt_cli.model import Candle

from .test_run_cli import btccxt, read_events, write_config

SOURCE = "binance@sim:seed-1"
SMA = "name: sma_cross\n  params: {fast: 2, slow: 4}"


def _config(tmp_path: Path, sim: Any, *, broker: str = "", strategy: str = SMA,
            symbols: tuple[str, ...] = ("BTC/USDT", "ETH/USDT")) -> Path:
    cfg = write_config(tmp_path, sim.url("binance"), strategy=strategy, symbols=symbols,
                       extra=broker)
    db = tmp_path / "ohlcv.sqlite"
    cfg.write_text(cfg.read_text().replace("feed:\n", f"feed:\n  cache: {db}\n", 1))
    return cfg


def _window(seconds: int = 40) -> tuple[int, int]:
    now = int(time.time()) * 1000
    return now - seconds * 1000, now - 2000


def _backtest(cfg: Path, since: int, until: int, *args: str, timeout: float = 60) -> tuple[int, str, str]:
    p = btccxt("backtest", str(cfg), "--since", str(since), "--until", str(until), *args)
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


def test_a_cache_miss_is_downloaded_then_replayed_and_offline_gives_the_same(sim: Any,
                                                                            tmp_path: Path) -> None:
    cfg = _config(tmp_path, sim)
    since, until = _window()
    code, out, err = _backtest(cfg, since, until, "--json")
    assert code == 0, err[-3000:]
    assert f"{SOURCE} BTC/USDT 1s:" in err and "100%" in err  # backfill's progress lines
    doc = json.loads(out)
    assert list(doc) == ["window", "params", "metrics", "per_symbol", "orders", "trades"]
    assert list(doc["metrics"]) == ["start", "end", "bars", "initial_value", "final_value",
                                    "total_return", "max_drawdown", "sharpe", "trades",
                                    "win_rate", "avg_trade", "exposure", "fees"]
    for s in doc["window"]["series"]:
        assert s["warmup_bars"] == 5 and s["window_bars"] == (until - since) // 1000
    assert doc["per_symbol"]["BTC/USDT"]["bars"] == (until - since) // 1000
    assert doc["orders"], "sma_cross trades on the window's live bars"
    assert set(doc["orders"][0]) == {"time", "iso", "symbol", "side", "size", "price", "fee", "status"}
    with OhlcvCache(tmp_path / "ohlcv.sqlite") as cache:
        assert {s[0] for s in cache.series()} == {SOURCE}
        truth = {r[0]: r for r in sim.truth("binance", "BTC/USDT", "1s", since - 5000, until)}
        for c in cache.read(SOURCE, "BTC/USDT", "1s", since - 5000, until):
            assert tuple(c) == tuple(truth[c.ts][:6])
    code, out2, err2 = _backtest(cfg, since, until, "--json", "--offline")
    assert code == 0, err2[-3000:]
    assert "bars (" not in err2  # nothing downloaded
    assert json.loads(out2)["orders"] == doc["orders"]
    assert json.loads(out2)["metrics"] == doc["metrics"]


def test_offline_with_a_hole_is_one_line_naming_it(sim: Any, tmp_path: Path) -> None:
    cfg = _config(tmp_path, sim)
    since, until = _window()
    code, out, err = _backtest(cfg, since, until, "--offline")
    assert code == 2, err
    assert "Traceback" not in err
    [line] = err.strip().splitlines()
    assert line.startswith("error: --offline: the cache has no 1s bars of BTC/USDT from ")
    assert SOURCE in line and "--offline" in line and "download them" in line
    with OhlcvCache(tmp_path / "ohlcv.sqlite") as cache:
        assert cache.series() == []  # nothing was downloaded


def _fill(cache: OhlcvCache, sim: Any, symbol: str, start: int, end: int,
          skip: tuple[int, int] | None = None) -> None:
    rows = [Candle(*r[:6]) for r in sim.truth("binance", symbol, "1s", start, end)
            if skip is None or not skip[0] <= r[0] <= skip[1]]
    cache.upsert(SOURCE, symbol, "1s", rows)


def test_exchange_side_gaps_are_skipped_and_unknown_ones_refused(sim: Any, tmp_path: Path) -> None:
    cfg = _config(tmp_path, sim, symbols=("BTC/USDT",))
    since, until = _window()
    gap = (since + 10_000, since + 14_000)  # five bars without trades
    with OhlcvCache(tmp_path / "ohlcv.sqlite") as cache:
        _fill(cache, sim, "BTC/USDT", since - 5000, until, skip=gap)
    code, _, err = _backtest(cfg, since, until, "--offline")
    assert code == 2 and "from " in err and "Traceback" not in err  # not known to be empty
    with OhlcvCache(tmp_path / "ohlcv.sqlite") as cache:  # what backfill records for them
        cache.mark_empty(SOURCE, "BTC/USDT", "1s", *gap)
    code, out, err = _backtest(cfg, since, until, "--offline", "--json")
    assert code == 0, err[-3000:]
    doc = json.loads(out)
    assert doc["per_symbol"]["BTC/USDT"]["bars"] == (until - since) // 1000 - 5
    assert not [o for o in doc["orders"] if gap[0] <= o["time"] <= gap[1]]


def test_summary_json_trades_csv_and_html_report(sim: Any, tmp_path: Path) -> None:
    cfg = _config(tmp_path, sim)
    since, until = _window()
    trades, report = tmp_path / "out" / "trades.csv", tmp_path / "report.html"
    code, _, err = _backtest(cfg, since, until, "--trades", str(trades))
    assert code == 2 and "--trades" in err and "Traceback" not in err  # folder outside data dir
    trades = tmp_path / "trades.csv"
    code, out, err = _backtest(cfg, since, until, "--trades", str(trades), "--report", str(report))
    assert code == 0, err[-3000:]
    for label in ("period start", "final value", "total return", "max drawdown", "Sharpe",
                  "trades", "win rate", "average trade", "exposure", "fees", "BTC/USDT: bars"):
        assert label in out, out  # plain text: stdout is not a terminal
    assert f"wrote the report to {report}" in out
    code, jout, err = _backtest(cfg, since, until, "--json", "--offline")
    doc = json.loads(jout)
    rows = list(csv.DictReader(trades.open()))
    orders = [r for r in rows if r["kind"] == "order"]
    assert [(int(r["time"]), r["symbol"], r["side"], float(r["price"])) for r in orders] == \
        [(o["time"], o["symbol"], o["side"], o["price"]) for o in doc["orders"]]
    assert len([r for r in rows if r["kind"] == "trade"]) == len(doc["trades"]) == doc["metrics"]["trades"]
    # prices, fees and P&L as a person reads them: no float noise (59704.899999999994)
    noisy = [(k, v) for rec in doc["orders"] + doc["trades"] for k, v in rec.items()
             if isinstance(v, float) and v != round(v, 10)]
    assert noisy == [], noisy[:5]
    html = report.read_text().replace("\\u002f", "/")  # plotly's JSON escapes slashes
    assert "<html>" in html and 'src="http' not in html  # self-contained: plotly.js inlined
    for text in ("BTC/USDT: candles, buys and sells", "ETH/USDT: candles, buys and sells",
                 "equity", "drawdown (%)", "BTC/USDT buy"):
        assert text in html


def test_a_sweep_runs_every_combination_and_reports_a_failing_one(sim: Any, tmp_path: Path) -> None:
    cfg = _config(tmp_path, sim)
    since, until = _window()
    code, out, err = _backtest(cfg, since, until, "--param", "fast=2,4", "--param", "slow=4,6",
                               "--jobs", "2", "--sort", "total_return", "--json")
    assert code == 0, err[-3000:]
    runs = json.loads(out)["runs"]
    assert sorted((r["params"]["fast"], r["params"]["slow"]) for r in runs) == [(2, 4), (2, 6), (4, 4), (4, 6)]
    failed = [r for r in runs if r["error"]]
    assert [(r["params"]["fast"], r["params"]["slow"]) for r in failed] == [(4, 4)]
    assert "fast must be smaller than slow" in failed[0]["error"]
    assert runs[-1]["error"]  # failed runs last
    returns = [r["metrics"]["total_return"] for r in runs if not r["error"]]
    assert returns == sorted(returns, reverse=True)
    single = json.loads(_backtest(cfg, since, until, "--json", "--offline")[1])
    best = {(r["params"]["fast"], r["params"]["slow"]): r for r in runs}[(2, 4)]
    assert best["metrics"] == single["metrics"]  # a sweep's run is the single run


def test_slippage_moves_paper_fills_against_the_order(sim: Any, tmp_path: Path) -> None:
    since, until = _window()
    plain = _config(tmp_path, sim)
    code, out, err = _backtest(plain, since, until, "--json")
    assert code == 0, err[-3000:]
    base = json.loads(out)["orders"]
    slipped_cfg = _config(tmp_path, sim, broker="broker:\n  slippage: 0.01\n")
    code, out, err = _backtest(slipped_cfg, since, until, "--json", "--offline")
    assert code == 0, err[-3000:]
    slipped = json.loads(out)["orders"]
    assert base and [(o["time"], o["side"]) for o in slipped] == [(o["time"], o["side"]) for o in base]
    with OhlcvCache(tmp_path / "ohlcv.sqlite") as cache:
        bars = {(s, c.ts): c for s in ("BTC/USDT", "ETH/USDT")
                for c in cache.read(SOURCE, s, "1s", since, until)}
    for a, b in zip(base, slipped, strict=True):
        bar = bars[(a["symbol"], a["time"])]
        assert abs(a["price"] - bar.open) < 1e-9 * bar.open  # market orders: the next bar's open
        # 1 % against the order, never beyond the bar's range (backtrader's slip_out=False)
        want = min(bar.open * 1.01, bar.high) if a["side"] == "buy" else max(bar.open * 0.99, bar.low)
        assert abs(b["price"] - want) < 1e-9 * want
        assert b["price"] != a["price"] or bar.open in (bar.high, bar.low)


def _sim_ticks(sim: Any) -> dict[str, float]:
    """The simulator's price steps, as ccxt reads its markets."""
    from btccxt_cli.exchange.factory import make_exchange
    from btccxt_cli.runtime.assembly import tick_sizes

    client = make_exchange("binance", kind="sync", sim_url=sim.url("binance"))
    client.load_markets()
    return tick_sizes(client, ["BTC/USDT", "ETH/USDT"])


def _slipped(side: str, bar: Any, move: float) -> float:
    """A market fill at the bar's open moved ``move`` against the order, within the bar."""
    return min(bar.open + move, bar.high) if side == "buy" else max(bar.open - move, bar.low)


def test_slippage_in_ticks_moves_backtest_fills_by_ticks_times_tick_size(sim: Any,
                                                                       tmp_path: Path) -> None:
    ticks = _sim_ticks(sim)
    assert set(ticks) == {"BTC/USDT", "ETH/USDT"} and all(t > 0 for t in ticks.values())
    assert ticks["BTC/USDT"] != ticks["ETH/USDT"]  # each symbol slips by its own step
    since, until = _window()
    plain = _config(tmp_path, sim)
    code, out, err = _backtest(plain, since, until, "--json")
    assert code == 0, err[-3000:]
    base = json.loads(out)["orders"]
    with OhlcvCache(tmp_path / "ohlcv.sqlite") as cache:  # recorded when markets loaded
        assert cache.tick_sizes(SOURCE, ["BTC/USDT", "ETH/USDT"]) == ticks
        bars = {(s, c.ts): c for s in ("BTC/USDT", "ETH/USDT")
                for c in cache.read(SOURCE, s, "1s", since, until)}
    slipped_cfg = _config(tmp_path, sim, broker="broker:\n  slippage: {ticks: 3}\n")
    code, out, err = _backtest(slipped_cfg, since, until, "--json", "--offline")
    assert code == 0, err[-3000:]
    slipped = json.loads(out)["orders"]
    assert base and [(o["time"], o["side"]) for o in slipped] == [(o["time"], o["side"]) for o in base]
    moved = 0
    for a, b in zip(base, slipped, strict=True):
        bar = bars[(a["symbol"], a["time"])]
        assert abs(a["price"] - bar.open) < 1e-9 * bar.open
        want = _slipped(a["side"], bar, 3 * ticks[a["symbol"]])
        assert abs(b["price"] - want) < 1e-9 * want, (a, b, bar)
        moved += b["price"] == (bar.open + 3 * ticks[a["symbol"]] if a["side"] == "buy"
                                else bar.open - 3 * ticks[a["symbol"]])
    assert moved, "at least one fill moved by exactly 3 ticks (inside its bar)"


def test_tick_size_reads_both_ccxt_precision_modes() -> None:
    from btccxt_cli.runtime.assembly import tick_size

    assert tick_size({"precision": {"price": 0.05}}, 4) == 0.05  # TICK_SIZE
    assert tick_size({"precision": {"price": 2}}, 2) == 0.01  # DECIMAL_PLACES
    assert tick_size({"precision": {"price": None}}, 4) is None
    assert tick_size(None, 4) is None


def test_slippage_in_ticks_offline_without_a_recorded_tick_is_one_line(sim: Any,
                                                                       tmp_path: Path) -> None:
    cfg = _config(tmp_path, sim, symbols=("BTC/USDT",), broker="broker:\n  slippage: {ticks: 2}\n")
    since, until = _window()
    with OhlcvCache(tmp_path / "ohlcv.sqlite") as cache:  # bars, but markets never loaded
        _fill(cache, sim, "BTC/USDT", since - 5000, until)
    code, out, err = _backtest(cfg, since, until, "--offline")
    assert code == 2, err
    assert "Traceback" not in err
    [line] = err.strip().splitlines()
    assert "tick size" in line and "BTC/USDT" in line and "without --offline" in line, line
    code, out, err = _backtest(cfg, since, until, "--json")  # online once: markets recorded
    assert code == 0, err[-3000:]
    code, out, err = _backtest(cfg, since, until, "--json", "--offline")
    assert code == 0, err[-3000:]


def test_slippage_in_ticks_moves_paper_run_fills_the_same(sim: Any, tmp_path: Path) -> None:
    ticks = _sim_ticks(sim)
    strat = tmp_path / "flip.py"
    strat.write_text("""import backtrader as bt


class Flip(bt.Strategy):
    def next(self):
        for d in self.datas:
            if self.getposition(d).size:
                self.sell(data=d, size=0.001)
            else:
                self.buy(data=d, size=0.001)
""")
    cfg = write_config(tmp_path, sim.url("binance"), strategy=f"path: {strat}",
                       extra="broker:\n  slippage: {ticks: 2}\n")
    ev = tmp_path / "events.jsonl"
    p = btccxt("run", str(cfg), "--plain", "--max-bars", "4", "--events", str(ev))
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err[-3000:]
    fills = [r for r in read_events(ev) if r["type"] == "order" and r["event"] == "Completed"]
    assert {r["side"] for r in fills} == {"buy", "sell"}, fills
    moved = 0
    for r in fills:
        [t] = sim.truth("binance", r["symbol"], "1s", r["bar"], r["bar"] + 1000)
        bar = Candle(*t[:6])
        move = 2 * ticks[r["symbol"]]
        want = _slipped(r["side"], bar, move)
        assert abs(r["price"] - want) < 1e-9 * want, (r, bar)
        moved += r["price"] == (bar.open + move if r["side"] == "buy" else bar.open - move)
    assert moved, "at least one fill moved by exactly 2 ticks (inside its bar)"


def test_bad_input_is_one_line_like_run(sim: Any, tmp_path: Path) -> None:
    cfg = _config(tmp_path, sim)
    since, until = _window()
    for args, needle in ((["--param", "fats=1,2"], "did you mean 'fast'?"),
                         (["--param", "fast"], "NAME=V1,V2"),
                         (["--sort", "luck"], "--sort"),
                         (["--until", str(since - 1000)], "--until")):
        code, _, err = _backtest(cfg, since, until, *args) if args[0] != "--until" else \
            _backtest(cfg, since, since - 1000)
        assert code == 2 and needle in err and "Traceback" not in err, (args, err)
        assert len(err.strip().splitlines()) == 1, err
    bad = tmp_path / "bad.yaml"
    bad.write_text(cfg.read_text().replace("  mode: websocket\n", "  mode: websocket\n  modee: rest\n"))
    run = btccxt("run", str(bad), "--plain", "--max-bars", "1")
    run_err = run.communicate(timeout=60)[1]
    code, _, err = _backtest(bad, since, until)
    assert run.returncode == code == 2
    assert err == run_err and "modee" in err


def test_report_without_plotly_names_the_extra(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['plotly'] = None; sys.argv = ['btccxt', 'backtest', "
            f"{str(tmp_path / 'none.yaml')!r}, '--since', '1h', '--report', "
            f"{str(tmp_path / 'r.html')!r}]; from btccxt_cli.cli.app import main; main()")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    assert "--report needs plotly" in p.stderr and "btccxt[report]" in p.stderr
    assert not (tmp_path / "r.html").exists()


def test_ctrl_c_stops_a_backtest_with_one_line(sim: Any, tmp_path: Path) -> None:
    import signal

    started = tmp_path / "started"
    strat = tmp_path / "slow.py"
    strat.write_text(f"""import time
from pathlib import Path
import backtrader as bt


class Slow(bt.Strategy):
    def next(self):
        Path({str(started)!r}).touch()
        while True:  # until Ctrl-C
            time.sleep(0.01)
""")
    cfg = _config(tmp_path, sim, strategy=f"path: {strat}")
    since, until = _window()
    report = tmp_path / "r.html"
    p = btccxt("backtest", str(cfg), "--since", str(since), "--until", str(until), "--report",
               str(report))
    deadline = time.monotonic() + 60
    while not started.exists() and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # polling for the strategy's first bar (a condition, not a delay)
    assert started.exists(), p.communicate(timeout=5)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 130
    assert err.strip().splitlines()[-1] == ("interrupted: the backtest was stopped; no output "
                                            "file was written")
    assert "Traceback" not in err and not report.exists()


@pytest.mark.parametrize("option", ["--trades", "--report"])
def test_a_trades_or_report_file_named_like_the_config_is_refused_and_the_config_kept(
        tmp_path, option):
    cfg = tmp_path / "bt.yaml"
    cfg.write_text("exchange: {id: binance, sim: http://127.0.0.1:9}\nsymbols: [BTC/USDT]\n"
                   "feed: {timeframe: 1m}\nstrategy: {name: sma_cross}\n")
    before = cfg.read_text()
    p = subprocess.run([sys.executable, "-m", "btccxt_cli", "backtest", str(cfg), "--since", "1h",
                        option, str(cfg)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, p.stderr[-2000:]
    assert "is the config file of this command" in p.stderr and "Traceback" not in p.stderr
    assert cfg.read_text() == before


@pytest.mark.parametrize("case", ["unreachable-simulator", "unknown-symbol"])
def test_no_network_or_an_unknown_symbol_is_exit_2_at_the_configs_line(tmp_path, case):
    cfg = tmp_path / "bt.yaml"
    sim, symbol = ("http://127.0.0.1:9", "BTC/USDT") if case == "unreachable-simulator" \
        else ("true", "FOO/BAR")
    cfg.write_text(f"exchange: {{id: binance, sim: {sim}}}\nsymbols: [{symbol}]\n"
                   "feed: {timeframe: 1m}\nstrategy: {name: sma_cross}\n"
                   f"feed: {{timeframe: 1m, cache: {tmp_path / 'c.sqlite'}}}\n".replace(
                       "feed: {timeframe: 1m}\n", "", 1))
    p = subprocess.run([sys.executable, "-m", "btccxt_cli", "backtest", str(cfg), "--since", "10m"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, p.stderr[-2000:]
    (line,) = p.stderr.strip().splitlines()
    where = f"{cfg}:1:" if case == "unreachable-simulator" else f"{cfg}:2:"
    assert line.startswith(f"error: {where}") and "Traceback" not in p.stderr, line
    assert ("cannot reach the simulator" in line) if case == "unreachable-simulator" else \
        ("has no market FOO/BAR" in line)
def test_a_param_value_of_the_wrong_type_is_refused_before_running(sim: Any, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from btccxt_cli.cli.app import app

    cfg = _config(tmp_path, sim)
    for param, needle in (("fast=abc", "fast takes a whole number (int); got 'abc'"),
                          ("fast=2,2.5", "fast takes a whole number (int); got '2.5'"),
                          ("fast=true", "fast takes a whole number (int); got 'true'"),
                          ("stake=x", "stake takes a number (float); got 'x'")):
        result = CliRunner().invoke(app, ["backtest", str(cfg), "--since", "10m",
                                          "--param", param])
        assert result.exit_code == 2, (param, result.output, result.exception)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: --param: "), lines
        assert needle in lines[0] and "SmaCross" in lines[0], lines[0]


def test_param_values_are_checked_against_the_default_types() -> None:
    import backtrader as bt
    import pytest

    from btccxt_cli.errors import ConfigError
    from btccxt_cli.runtime.backtest import check_param_values

    class S(bt.Strategy):
        params = (("n", 3), ("x", 0.5), ("flag", False), ("label", "a"), ("anything", None))

    ok = check_param_values(S, {"n": [1, 2], "x": [1, 0.25], "flag": [True, False],
                                "label": [5, "b", True], "anything": [1, "z"]},
                            {"label": ["05", "b", "yes"]})
    assert ok == {"n": [1, 2], "x": [1, 0.25], "flag": [True, False],
                  "label": ["05", "b", "yes"], "anything": [1, "z"]}
    for bad, words in (({"n": [True]}, "n takes a whole number (int)"),
                       ({"x": ["fast"]}, "x takes a number (float)"),
                       ({"flag": [1]}, "flag takes true or false (bool)")):
        with pytest.raises(ConfigError, match=re.escape(words)):
            check_param_values(S, bad, {})


def test_a_sweep_whose_every_run_failed_exits_3(sim: Any, tmp_path: Path) -> None:
    cfg = _config(tmp_path, sim)
    since, until = _window(20)
    code, out, err = _backtest(cfg, since, until, "--param", "fast=4,6", "--param", "slow=4",
                               "--json")
    assert code == 3, err[-3000:]
    runs = json.loads(out)["runs"]
    assert len(runs) == 2 and all(r["error"] for r in runs)  # the table is still printed
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: every run of the sweep failed (2 of 2)"), last
    assert "fast must be smaller than slow" in last and "Traceback" not in err
