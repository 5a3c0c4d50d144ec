"""``btccxt backfill`` as users run it: CliRunner for output and exit codes, subprocesses for
Ctrl-C and kill -9 (resume). Everything against the simulator by URL."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from btccxt_cli.cache.sqlite import OhlcvCache
from btccxt_cli.cli.app import app
from btccxt_cli.cli.backfill import EXPORT_COLUMNS, parse_when

pytestmark = pytest.mark.live

M = 60_000
SRC = "binance@sim:seed-1"  # the cache's name of the simulator's bars (never plain binance)
runner = CliRunner()


def window(sim: Any, bars: int) -> tuple[int, int]:
    now = sim.now_ms()
    until = now - now % M - 5 * M
    return until - bars * M, until


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return runner.invoke(app, ["backfill", *args], env=env)


def klines(sim: Any) -> int:
    return sim.stats("binance")["rest"].get("/api/v3/klines", 0)


@pytest.mark.parametrize("text, expected", [
    ("now", 1_700_000_000_000),
    ("30d", 1_700_000_000_000 - 30 * 86_400_000),
    ("12h", 1_700_000_000_000 - 12 * 3_600_000),
    ("90m", 1_700_000_000_000 - 90 * M),
    ("2w", 1_700_000_000_000 - 14 * 86_400_000),
    ("2024-01-31", 1_706_659_200_000),
    ("2024-01-31T12:00", 1_706_702_400_000),
    ("2024-01-31T12:00:00Z", 1_706_702_400_000),
    ("2024-01-31T14:00:00+02:00", 1_706_702_400_000),
    ("1706702400000", 1_706_702_400_000),
    ("1706702400", 1_706_702_400_000),
])
def test_parse_when(text, expected):
    assert parse_when(text, 1_700_000_000_000) == expected


def test_parse_when_rejects_nonsense():
    with pytest.raises(ValueError, match="ISO date/time"):
        parse_when("yesterday", 0)


def test_json_summary(sim, tmp_path):
    since, until = window(sim, 2_500)
    db = tmp_path / "c.sqlite"
    r = invoke("BTC/USDT", "ETH/USDT", "--sim-url", sim.url("binance"), "--since", str(since),
               "--until", str(until), "--db", str(db), "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert (doc["exchange"], doc["timeframe"], doc["db"]) == ("binance", "1m", str(db))
    assert doc["source"] == SRC
    assert doc["interrupted"] is False and doc["error"] is None and doc["export"] is None
    assert [s["symbol"] for s in doc["symbols"]] == ["BTC/USDT", "ETH/USDT"]
    for s in doc["symbols"]:
        assert s["start"] == since and s["end"] == until
        assert s["bars_fetched"] == s["bars_written"] == s["cached_bars"] == 2_500
        assert s["requests"] == 3 and s["retries"] == 0 and s["rate_limit_waits"] == 0
        assert s["exchange_gaps"] == [] and s["missing_gaps"] == [] and s["complete"] is True
        assert {"seconds", "expected_bars", "limit", "waited_s", "interrupted"} <= set(s)
    with OhlcvCache(db) as cache:
        for sym in ("BTC/USDT", "ETH/USDT"):
            assert cache.read(SRC, sym, "1m") == sim.truth("binance", sym, "1m", since, until)
        # each market's price step, for an --offline backtest with slippage in ticks
        assert cache.tick_sizes(SRC, ["BTC/USDT", "ETH/USDT"]) == {"BTC/USDT": 0.1, "ETH/USDT": 0.01}
    # rerun: only the newest cached bar is read again
    r = invoke("BTC/USDT", "--sim-url", sim.url("binance"), "--since", str(since),
               "--until", str(until), "--db", str(db), "--json")
    s = json.loads(r.stdout)["symbols"][0]
    assert (s["requests"], s["bars_fetched"], s["bars_written"]) == (1, 1, 0)


def test_human_summary_and_exchange_gap(sim, tmp_path):
    from btccxt_cli.sim.market import LISTING_MS

    since, until = LISTING_MS - LISTING_MS % M - 60 * M, LISTING_MS + 120 * M
    r = invoke("BTC/USDT", "--sim-url", sim.url("binance"), "--since", str(since), "--until",
               str(until), "--db", str(tmp_path / "c.sqlite"))
    assert r.exit_code == 0, r.output
    line = r.stdout.splitlines()[0]
    assert line.startswith(f"{SRC} BTC/USDT 1m [2017-07-14T01:40:00Z .. ")
    assert "exchange has no bars for 60 (2017-07-14T01:40:00Z..2017-07-14T02:39:00Z)" in line
    assert "still missing" not in line
    assert f"cache: {tmp_path / 'c.sqlite'} (simulated bars, kept as {SRC})" in r.stdout
    assert "bars (100%)" in r.stderr  # plain progress lines when not on a terminal


@pytest.mark.parametrize("args, message", [
    (["FOO/USDT"], "unknown symbol 'FOO/USDT'"),
    (["BTC/USDT", "BTC/USDX"], "unknown symbol 'BTC/USDX' (did you mean 'BTC/USDT'?)"),
    (["BTC/USDT", "--timeframe", "7m"], "unknown timeframe '7m'"),
    (["BTC/USDT", "--timeframe", "1x"], "not a timeframe: '1x'"),
    (["BTC/USDT", "--exchange", "binanse"], "unknown exchange 'binanse' (did you mean 'binance'?)"),
    (["BTC/USDT", "--since", "yesterday"], "not a time: 'yesterday'"),
    (["BTC/USDT", "--since", "2d", "--until", "3d"], "must be after --since"),
    (["BTC/USDT", "--export", "xls", "--out", "x.xls"], "--export must be csv or parquet"),
    (["BTC/USDT", "--export", "csv"], "--export csv needs --out FILE"),
    (["BTC/USDT", "--sim"], "either --sim or --sim-url"),
    (["%%%"], "'%%%' is not a unified symbol (write BASE/QUOTE like BTC/USDT"),
    (["A" * 5_000 + "/USDT"], "'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA... (5005 characters)' is not"),
    (["BTC/USDT", "--since", "99999999999999999999"], "'99999999999999999999' is out of range"),
    (["BTC/USDT", "--since", "1" + "0" * 400 + "d"], "is out of range"),
    (["BTC/USDT", "--since", "2d", "--until", "99999999999999999999"], "is out of range"),
    (["BTC/USDT", "--since", "2099-01-01"], "--since: '2099-01-01' is 2099-01-01T00:00:00Z, not in "
                                           "the past"),
    (["BTC/USDT", "--since", "0d"], "--since: '0d' is "),
    (["BTC/USDT", "--since", "2099-01-01", "--until", "2098-01-01"], "not in the past"),
])
def test_bad_input_is_one_line_and_exit_2(sim, tmp_path, args, message):
    r = invoke(*args, "--sim-url", sim.url("binance"), "--db", str(tmp_path / "c.sqlite"))
    assert r.exit_code == 2, r.output
    assert message in r.stderr
    assert r.stderr.strip().count("\n") == 0 and r.stderr.startswith("error: ")
    assert "Traceback" not in r.output
    assert klines(sim) == 0


def bad_paths(tmp_path: Path) -> list[tuple[list[str], str]]:
    (tmp_path / "folder").mkdir()
    return [
        (["--db", str(tmp_path / "folder")], f"--db: cache '{tmp_path / 'folder'}' is a folder"),
        (["--db", str(tmp_path / "no" / "c.sqlite")],
         f"--db: cache '{tmp_path / 'no' / 'c.sqlite'}': folder '{tmp_path / 'no'}' does not exist "
         f"(create it first (mkdir -p {tmp_path / 'no'}) or choose an existing folder)"),
        (["--db", str(tmp_path / "c.sqlite"), "--export", "csv", "--out", str(tmp_path / "x" / "o.csv")],
         f"--out: export file '{tmp_path / 'x' / 'o.csv'}': folder '{tmp_path / 'x'}' does not exist"),
        (["--db", str(tmp_path / "c.sqlite"), "--export", "csv", "--out", str(tmp_path / "folder")],
         "--out: export file"),
        (["--db", str(tmp_path / "c.sqlite"), "--export", "csv", "--out", str(tmp_path / "c.sqlite")],
         "is the cache of this command"),
    ]


def test_bad_paths_are_refused_before_anything_is_created_or_downloaded(sim, tmp_path):
    for args, message in bad_paths(tmp_path):
        r = invoke("BTC/USDT", "--sim-url", sim.url("binance"), "--since", "2h", *args)
        assert r.exit_code == 2, (args, r.output)
        assert message in r.stderr and r.stderr.strip().count("\n") == 0, (args, r.stderr)
        assert "Traceback" not in r.output
    assert klines(sim) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"], "nothing created"


def test_a_cache_path_from_the_environment_is_checked_too(sim, tmp_path):
    r = invoke("BTC/USDT", "--sim-url", sim.url("binance"),
               env={"BTCCXT_CACHE": str(tmp_path / "gone" / "c.sqlite")})
    assert r.exit_code == 2 and r.stderr.startswith("error: $BTCCXT_CACHE: cache "), r.output
    assert not (tmp_path / "gone").exists() and klines(sim) == 0


def test_the_default_cache_folder_is_created_inside_the_data_folder(sim, tmp_path):
    r = invoke("BTC/USDT", "--sim-url", sim.url("binance"), "--since", "10m",
               env={"BTCCXT_CACHE": "", "XDG_DATA_HOME": str(tmp_path / "data"), "HOME": str(tmp_path)})
    assert r.exit_code == 0, r.output
    assert (tmp_path / "data" / "btccxt" / "ohlcv.sqlite").is_file()


def test_a_damaged_cache_is_one_line_before_any_download(sim, tmp_path):
    db = tmp_path / "c.sqlite"
    db.write_bytes(b"this is not an SQLite file " * 300)
    r = invoke("BTC/USDT", "--sim-url", sim.url("binance"), "--db", str(db))
    assert r.exit_code == 2, r.output
    assert r.stderr == (f"error: cache '{db}' is damaged or not a btccxt cache (file is not a "
                        "database) (move it away and backfill again, or pass another file with "
                        "--db)\n")
    assert klines(sim) == 0


def test_a_cache_damaged_inside_is_one_line_naming_it(sim, tmp_path):
    from btccxt_cli.model import Candle

    db = tmp_path / "c.sqlite"
    with OhlcvCache(db) as cache:
        cache.upsert(SRC, "BTC/USDT", "1m", [Candle(i * M, 1.0 + i, 2.0 + i, 0.5, 1.5, 3.0)
                                             for i in range(20_000)])
        cache.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with open(db, "r+b") as f:  # scribble over every 7th page after the first two
        for offset in range(8_192, db.stat().st_size, 7 * 4_096):
            f.seek(offset)
            f.write(b"\xff" * 64)
    r = invoke("BTC/USDT", "--sim-url", sim.url("binance"), "--since", "2h", "--db", str(db))
    assert r.exit_code == 2, r.output
    errors = [line for line in r.stderr.splitlines() if not line.endswith("%)")]
    assert errors == [f"error: cache '{db}' is damaged or not a btccxt cache (database disk image "
                      "is malformed) (move it away and backfill again, or pass another file with "
                      "--db)"], r.stderr
    assert "gaps not known" in r.stdout and klines(sim) == 0


def test_a_full_disk_names_its_cause_and_keeps_the_pages_before(sim, tmp_path, monkeypatch):
    """A disk with room for about one page of bars: SQLite's own page limit on the real file
    (it is a per-connection setting, so it is set on the connection the command opens)."""
    from btccxt_cli.cache import sqlite as store

    opened = store.OhlcvCache.__init__

    def small_disk(self: Any, *args: Any, **kwargs: Any) -> None:
        opened(self, *args, **kwargs)
        pages = self.conn.execute("PRAGMA page_count").fetchone()[0]
        self.conn.execute(f"PRAGMA max_page_count = {pages + 40}")

    monkeypatch.setattr(store.OhlcvCache, "__init__", small_disk)
    since, until = window(sim, 5_000)
    db = tmp_path / "c.sqlite"
    r = invoke("BTC/USDT", "--sim-url", sim.url("binance"), "--since", str(since), "--until",
               str(until), "--db", str(db))
    assert r.exit_code == 2, r.output
    errors = [line for line in r.stderr.splitlines() if not line.endswith("%)")]  # no progress
    assert len(errors) == 1 and "rollback" not in r.stderr, r.stderr
    assert errors[0].startswith(f"error: cache '{db}': the disk is full (database or disk is full)")
    assert "Traceback" not in r.output
    assert r.stdout.startswith(f"{SRC} BTC/USDT 1m [")  # the summary of what was done
    monkeypatch.undo()
    with OhlcvCache(db) as cache:
        kept = cache.count(SRC, "BTC/USDT", "1m")
    assert kept % 1_000 == 0 and 1_000 <= kept < 5_000, kept


def test_exchange_keeps_failing_is_exit_1_with_the_error_in_json(sim, tmp_path):
    sim.rest_errors("binance", status=500, count=50)
    r = invoke("BTC/USDT", "--sim-url", sim.url("binance"), "--db", str(tmp_path / "c.sqlite"),
               "--max-retries", "2", "--json")
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert doc["error"].startswith("binance: load markets: ") and doc["symbols"] == []
    assert "Traceback" not in r.output


def test_export_csv(sim, tmp_path):
    since, until = window(sim, 1_200)
    out = tmp_path / "bars.csv"
    r = invoke("BTC/USDT", "ETH/USDT", "--sim-url", sim.url("binance"), "--since", str(since),
               "--until", str(until), "--db", str(tmp_path / "c.sqlite"), "--export", "csv",
               "--out", str(out), "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["export"] == {"format": "csv", "path": str(out), "rows": 2_400}
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == EXPORT_COLUMNS
    body = rows[1:]
    for sym in ("BTC/USDT", "ETH/USDT"):
        mine = [r for r in body if r[1] == sym]
        truth = sim.truth("binance", sym, "1m", since, until)
        assert [(int(r[3]), *map(float, r[5:])) for r in mine] == [tuple(c) for c in truth]
        assert {(r[0], r[2]) for r in mine} == {(SRC, "1m")}  # exported as simulated
    assert body[0][4] and body[0][4].endswith("Z")


def test_export_parquet_without_pyarrow_is_exit_2(sim, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if not installed
    r = invoke("BTC/USDT", "--sim-url", sim.url("binance"), "--db", str(tmp_path / "c.sqlite"),
               "--export", "parquet", "--out", str(tmp_path / "x.parquet"))
    assert r.exit_code == 2
    assert "--export parquet needs pyarrow" in r.stderr and "btccxt[parquet]" in r.stderr
    assert klines(sim) == 0  # checked before any download


def test_export_parquet_roundtrip(sim, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    since, until = window(sim, 300)
    out = tmp_path / "x.parquet"
    r = invoke("BTC/USDT", "--sim-url", sim.url("binance"), "--since", str(since), "--until",
               str(until), "--db", str(tmp_path / "c.sqlite"), "--export", "parquet", "--out", str(out))
    assert r.exit_code == 0, r.output
    table = pq.read_table(out)
    assert table.column_names == list(EXPORT_COLUMNS)
    truth = sim.truth("binance", "BTC/USDT", "1m", since, until)
    cols = [table.column(c).to_pylist() for c in ("timestamp", "open", "high", "low", "close", "volume")]
    assert [tuple(r) for r in zip(*cols, strict=True)] == [tuple(c) for c in truth]
    first = table.column("datetime").to_pylist()[0]
    assert int(first.timestamp() * 1000) == truth[0][0] and first.tzinfo is not None


def test_help_shows_the_default_cache_path():
    r = runner.invoke(app, ["backfill", "--help"], env={"COLUMNS": "250", "TERMINAL_WIDTH": "250"})
    assert r.exit_code == 0
    # the default is rendered when the CLI module loads (before tests point BTCCXT_CACHE at a
    # temporary file), so check the file name and the override rather than the full path
    assert "ohlcv.sqlite" in r.stdout and "BTCCXT_CACHE" in r.stdout


# ---------------------------------------------------------------- subprocesses
def start_cli(sim: Any, db: Path, since: int, until: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "btccxt_cli", "backfill", "BTC/USDT", "--sim-url",
         sim.url("binance"), "--since", str(since), "--until", str(until), "--db", str(db)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})


def wait_first_page(p: subprocess.Popen) -> str:
    """Block until the child reports a committed page (a progress line with bars done > 0)."""
    assert p.stderr is not None
    for line in p.stderr:
        if "bars (" in line and not line.split(": ")[-1].startswith("0/"):
            return line
    raise AssertionError(f"no progress line; exit code {p.wait(10)}")


def test_ctrl_c_stops_after_the_page_and_rerun_resumes(sim, tmp_path):
    since, until = window(sim, 5_000)
    db = tmp_path / "c.sqlite"
    sim.rest_delay("binance", 250)  # slow pages, so the run is still going when we interrupt
    p = start_cli(sim, db, since, until)
    wait_first_page(p)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert "interrupted; rerun to resume" in out and "Traceback" not in err
    with OhlcvCache(db) as cache:
        kept = cache.count(SRC, "BTC/USDT", "1m")
    assert 1_000 <= kept < 5_000 and kept % 1_000 == 0
    sim.rest_delay("binance", 0)
    r = invoke("BTC/USDT", "--sim-url", sim.url("binance"), "--since", str(since), "--until",
               str(until), "--db", str(db), "--json")
    s = json.loads(r.stdout)["symbols"][0]
    assert s["expected_bars"] == 5_000 - kept + 1 and s["complete"]
    with OhlcvCache(db) as cache:
        assert cache.read(SRC, "BTC/USDT", "1m") == sim.truth("binance", "BTC/USDT", "1m", since, until)


def test_kill_9_loses_at_most_the_page_in_flight(sim, tmp_path):
    since, until = window(sim, 6_000)
    db = tmp_path / "c.sqlite"
    sim.rest_delay("binance", 250)
    p = start_cli(sim, db, since, until)
    wait_first_page(p)
    p.kill()  # SIGKILL: no handler, no cleanup
    p.communicate(timeout=30)
    assert p.returncode == -signal.SIGKILL
    with OhlcvCache(db) as cache:
        kept = cache.count(SRC, "BTC/USDT", "1m")
        assert kept >= 1_000 and kept % 1_000 == 0  # whole committed pages only
        assert cache.read(SRC, "BTC/USDT", "1m") == \
            sim.truth("binance", "BTC/USDT", "1m", since, since + kept * M)
    sim.rest_delay("binance", 0)
    sim.reset_stats("binance")
    r = invoke("BTC/USDT", "--sim-url", sim.url("binance"), "--since", str(since), "--until",
               str(until), "--db", str(db), "--json")
    s = json.loads(r.stdout)["symbols"][0]
    missing = 6_000 - kept + 1  # plus the newest cached bar
    assert s["expected_bars"] == missing and s["requests"] == -(-missing // 1_000) == klines(sim)
    with OhlcvCache(db) as cache:
        assert cache.count(SRC, "BTC/USDT", "1m") == 6_000
        assert cache.read(SRC, "BTC/USDT", "1m") == sim.truth("binance", "BTC/USDT", "1m", since, until)


def test_an_unreachable_simulator_is_exit_2_naming_the_option(tmp_path):
    db = tmp_path / "c.sqlite"
    r = subprocess.run([sys.executable, "-m", "btccxt_cli", "backfill", "BTC/USDT", "--sim-url",
                        "http://127.0.0.1:9", "--since", "1h", "--db", str(db)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("error: --sim-url: cannot reach the simulator at http://127.0.0.1:9")
    assert not db.exists()
