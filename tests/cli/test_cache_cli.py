"""Simulated prices never enter the real cache, and ``btccxt cache`` (list, verify, drop) is the
way out of bad rows. Through the real CLI (CliRunner, and a subprocess for ``run``) against the
simulator; the only cache names used are the ones ``cache_source`` gives."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from btccxt_cli.cache.sqlite import OhlcvCache
from btccxt_cli.cli.app import app
from btccxt_cli.model import Candle

pytestmark = pytest.mark.live

M = 60_000
S1, S2 = "binance@sim:seed-1", "binance@sim:seed-2"
runner = CliRunner()


def btccxt(*args: str, input: str | None = None) -> Any:
    return runner.invoke(app, list(args), input=input)


def window(sim: Any, bars: int) -> tuple[int, int]:
    now = sim.now_ms()
    until = now - now % M - 5 * M
    return until - bars * M, until


def backfill(sim: Any, db: Path, since: int, until: int, *symbols: str) -> None:
    r = btccxt("backfill", *(symbols or ("BTC/USDT",)), "--sim-url", sim.url("binance"),
               "--since", str(since), "--until", str(until), "--db", str(db))
    assert r.exit_code == 0, r.output


def one_error_line(r: Any, exit_code: int = 2) -> str:
    assert r.exit_code == exit_code, r.output
    assert r.stderr.startswith("error: ") and r.stderr.strip().count("\n") == 0, r.stderr
    assert "Traceback" not in r.output
    return r.stderr


# ---------------------------------------------------------------- sources
def test_sim_backfill_never_lands_under_the_exchange_name_and_seeds_stay_apart(sim_factory, tmp_path):
    one = sim_factory(exchanges=("binance",), seed=1)
    two = sim_factory(exchanges=("binance",), seed=2)
    db = tmp_path / "c.sqlite"
    since, until = window(one, 300)
    backfill(one, db, since, until)
    backfill(two, db, since, until)
    with OhlcvCache(db) as cache:
        assert cache.count("binance", "BTC/USDT", "1m") == 0, "simulated bars never pose as binance's"
        assert cache.read(S1, "BTC/USDT", "1m") == one.truth("binance", "BTC/USDT", "1m", since, until)
        assert cache.read(S2, "BTC/USDT", "1m") == two.truth("binance", "BTC/USDT", "1m", since, until)
        assert cache.read(S1, "BTC/USDT", "1m") != cache.read(S2, "BTC/USDT", "1m")
    # the second seed's run did not trust the first one's rows: it fetched the whole window
    assert two.stats("binance")["rest"].get("/api/v3/klines", 0) == 1


def test_in_process_sim_backfill_is_kept_apart(tmp_path):
    db = tmp_path / "c.sqlite"
    r = btccxt("backfill", "BTC/USDT", "--sim", "--since", "2h", "--db", str(db), "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert (doc["exchange"], doc["source"]) == ("binance", S1)
    with OhlcvCache(db) as cache:
        assert [s[0] for s in cache.series()] == [S1]


@pytest.mark.parametrize("symbol, message", [
    ("NOPE/USDT", "unknown symbol 'NOPE/USDT' (did you mean"),
    ("BTC/USDX", "unknown symbol 'BTC/USDX' (did you mean 'BTC/USDT'?)"),
    ("A" * 5_000 + "/USDT", "(5005 characters)' is not a unified symbol"),
    ("%%%", "'%%%' is not a unified symbol"),
])
def test_in_process_sim_lists_only_the_markets_btccxt_sim_lists(tmp_path, symbol, message):
    db = tmp_path / "c.sqlite"
    r = btccxt("backfill", symbol, "--sim", "--since", "2h", "--db", str(db))
    assert message in one_error_line(r)
    if db.exists():
        with OhlcvCache(db) as cache:
            assert cache.series() == []


def test_run_with_sim_true_refuses_a_symbol_the_simulator_does_not_list(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("exchange:\n  id: binance\n  sim: true\nsymbols: [NOPE/USDT]\n"
                   "feed:\n  mode: rest\n  timeframe: 1s\n  backfill: 5\n"
                   "strategy:\n  name: print_bars\n")
    p = subprocess.run([sys.executable, "-m", "btccxt_cli", "run", str(cfg), "--plain",
                        "--duration", "5"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, p.stderr
    assert "NOPE/USDT" in p.stderr and "did you mean" in p.stderr and "Traceback" not in p.stderr


# ---------------------------------------------------------------- btccxt cache
def test_list_shows_each_source_apart(sim_factory, tmp_path):
    one = sim_factory(exchanges=("binance",), seed=1)
    two = sim_factory(exchanges=("binance",), seed=2)
    db = tmp_path / "c.sqlite"
    since, until = window(one, 120)
    backfill(one, db, since, until, "BTC/USDT", "ETH/USDT")
    backfill(two, db, since, until)
    with OhlcvCache(db) as cache:  # as an old backfill --sim left it: fake bars under binance
        cache.upsert("binance", "BTC/USDT", "1m", cache.read(S1, "BTC/USDT", "1m"))
        cache.upsert("binance@sim", "BTC/USDT", "1m", cache.read(S1, "BTC/USDT", "1m")[:3])  # old run
    r = btccxt("cache", "list", "--db", str(db), "--json")
    assert r.exit_code == 0, r.output
    got = [(s["source"], s["kind"], s["symbol"], s["timeframe"], s["bars"], s["first"], s["last"])
           for s in json.loads(r.stdout)["series"]]
    last = until - M
    assert got == [("binance", "exchange", "BTC/USDT", "1m", 120, since, last),
                   ("binance@sim", "simulator (seed unknown)", "BTC/USDT", "1m", 3, since, since + 2 * M),
                   (S1, "simulator (seed-1)", "BTC/USDT", "1m", 120, since, last),
                   (S1, "simulator (seed-1)", "ETH/USDT", "1m", 120, since, last),
                   (S2, "simulator (seed-2)", "BTC/USDT", "1m", 120, since, last)]
    text = btccxt("cache", "list", "--db", str(db))
    assert text.exit_code == 0 and f"  {S2}  BTC/USDT" in text.stdout and "exchange" in text.stdout
    old = btccxt("cache", "verify", "binance@sim", "BTC/USDT", "--db", str(db))
    assert "simulated bars of an unknown seed" in one_error_line(old)
    assert "btccxt cache drop binance@sim" in old.stderr


def test_verify_reports_then_fixes_rows_that_differ(sim, tmp_path):
    db = tmp_path / "c.sqlite"
    since, until = window(sim, 600)
    backfill(sim, db, since, until)
    truth = [Candle._make(c) for c in sim.truth("binance", "BTC/USDT", "1m", since, until)]
    args = ("cache", "verify", S1, "BTC/USDT", "--sim-url", sim.url("binance"), "--db", str(db))
    clean = btccxt(*args)
    assert clean.exit_code == 0, clean.output
    assert "600 cached, 600 on the exchange, 600 equal; the cache matches" in clean.stdout
    with OhlcvCache(db) as cache:
        cache.upsert(S1, "BTC/USDT", "1m", [truth[10]._replace(close=1.0),
                                           truth[20]._replace(volume=0.0)])
        cache.delete(S1, "BTC/USDT", "1m", truth[30].ts, truth[30].ts + 1)
        cache.upsert(S1, "BTC/USDT", "1m", [truth[40]._replace(ts=truth[40].ts + 1)])  # off-grid
    found = btccxt(*args, "--json")
    assert found.exit_code == 1, found.output
    doc = json.loads(found.stdout)
    assert (doc["differ"], doc["missing"], doc["extra"], doc["fixed"]) == (2, 1, 1, False)
    assert doc["differ_ts"] == [truth[10].ts, truth[20].ts] and doc["missing_ts"] == [truth[30].ts]
    assert (doc["start"], doc["end"], doc["exchange_bars"]) == (since, until, 600)
    fixed = btccxt(*args, "--fix")
    assert fixed.exit_code == 0, fixed.output
    assert "2 differ, 1 missing from the cache, 1 not on the exchange" in fixed.stdout
    assert "replaced with the exchange's bars" in fixed.stdout
    with OhlcvCache(db) as cache:
        assert cache.read(S1, "BTC/USDT", "1m") == truth
    again = btccxt(*args)
    assert again.exit_code == 0 and "the cache matches" in again.stdout


def test_verify_keeps_the_exchange_and_each_simulator_apart(sim_factory, tmp_path):
    one = sim_factory(exchanges=("binance",), seed=1)
    two = sim_factory(exchanges=("binance",), seed=2)
    db = tmp_path / "c.sqlite"
    since, until = window(one, 60)
    backfill(one, db, since, until)
    with OhlcvCache(db) as cache:
        cache.upsert("binance", "BTC/USDT", "1m", cache.read(S1, "BTC/USDT", "1m"))
    base = ("--db", str(db), "--since", str(since), "--until", str(until))
    cases = [
        (("binance", "BTC/USDT", "--sim-url", one.url("binance")),
         "'binance' holds the real exchange's bars: they are never checked against, or replaced by, a simulator"),
        ((S1, "BTC/USDT"), f"'{S1}' holds simulated bars: check them against a simulator "
                           "(start `btccxt sim -e binance --seed 1`"),
        ((S1, "BTC/USDT", "--sim-url", two.url("binance"), "--fix"), f"is not '{S1}'"),
        ((S1, "BTC/USDT", "--sim-url", "http://127.0.0.1:1"), "cannot reach the simulator"),
    ]
    for args, message in cases:
        r = btccxt("cache", "verify", *args, *base)
        assert message in one_error_line(r, 1 if "reach" in message else 2), args
    with OhlcvCache(db) as cache:
        assert cache.read(S1, "BTC/USDT", "1m") == one.truth("binance", "BTC/USDT", "1m", since, until)
    assert two.stats("binance")["rest"].get("/api/v3/klines", 0) == 0


def test_drop_asks_first_and_removes_only_what_was_named(sim, tmp_path):
    db = tmp_path / "c.sqlite"
    since, until = window(sim, 100)
    backfill(sim, db, since, until, "BTC/USDT", "ETH/USDT")
    with OhlcvCache(db) as cache:  # poisoned rows under the exchange's own name
        cache.upsert("binance", "BTC/USDT", "1m", cache.read(S1, "BTC/USDT", "1m"))
    no = btccxt("cache", "drop", "binance", "--db", str(db), input="n\n")
    assert no.exit_code == 1 and "100 bars of binance in" in no.stdout and "nothing dropped" in no.stdout
    eof = btccxt("cache", "drop", "binance", "--db", str(db))  # no terminal, no answer: a no
    assert eof.exit_code == 1 and "nothing dropped" in eof.stdout
    part = btccxt("cache", "drop", "binance", "BTC/USDT", "-t", "1m", "--since", str(since),
                  "--until", str(since + 10 * M), "--db", str(db), "--yes")
    assert part.exit_code == 0 and "dropped 10 bars" in part.stdout, part.output
    yes = btccxt("cache", "drop", "binance", "--db", str(db), input="y\n")
    assert yes.exit_code == 0 and "dropped 90 bars" in yes.stdout, yes.output
    with OhlcvCache(db) as cache:
        assert [s[:2] for s in cache.series()] == [(S1, "BTC/USDT"), (S1, "ETH/USDT")]
    gone = btccxt("cache", "drop", "binance", "--db", str(db), "--yes")
    assert "holds no bars of binance" in one_error_line(gone)


def test_cache_commands_refuse_a_missing_folder_or_damaged_file(tmp_path):
    missing = btccxt("cache", "list", "--db", str(tmp_path / "none.sqlite"))
    assert "there is no cache at" in one_error_line(missing)
    assert not (tmp_path / "none.sqlite").exists()
    folder = btccxt("cache", "list", "--db", str(tmp_path))
    assert "is a folder" in one_error_line(folder)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database, just text " * 200)
    damaged = btccxt("cache", "list", "--db", str(junk))
    assert "is damaged or not a btccxt cache" in one_error_line(damaged)
