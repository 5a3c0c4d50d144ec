"""``OhlcvCache``: upserts, range reads, bounds, empty ranges, WAL, threads, default path."""

from __future__ import annotations

import sqlite3
import sys
import threading
from pathlib import Path

import pytest

from btccxt_cli.cache.sqlite import OhlcvCache, default_cache_path
from btccxt_cli.model import Candle

M = 60_000
KEY = ("binance", "BTC/USDT", "1m")


def bars(first: int, n: int, base: float = 100.0) -> list[Candle]:
    return [Candle(first + i * M, base + i, base + i + 2, base + i - 1, base + i + 1, 1.5 + i)
            for i in range(n)]


@pytest.fixture
def cache(tmp_path: Path):
    with OhlcvCache(tmp_path / "c.sqlite") as c:
        yield c


def test_never_creates_folders(tmp_path):
    """Callers check the path a user named (paths.check_output_file); the store creates nothing."""
    with pytest.raises(FileNotFoundError, match="does not exist"):
        OhlcvCache(tmp_path / "a" / "b" / "ohlcv.sqlite")
    assert not (tmp_path / "a").exists()


def test_a_full_disk_raises_its_own_cause_and_keeps_committed_rows(tmp_path):
    """SQLite ends the transaction itself on a full disk: the error is 'full', not the rollback's
    'no transaction is active' that used to hide it."""
    with OhlcvCache(tmp_path / "c.sqlite") as c:
        c.upsert(*KEY, bars(0, 10))
        pages = c.conn.execute("PRAGMA page_count").fetchone()[0]
        c.conn.execute(f"PRAGMA max_page_count = {pages + 1}")  # a disk with one page left
        with pytest.raises(sqlite3.OperationalError, match="full"):
            c.upsert(*KEY, bars(10 * M, 5_000))
        assert not c.conn.in_transaction
        assert c.count(*KEY) == 10 and c.read(*KEY) == bars(0, 10)


def test_creates_its_tables_and_uses_wal(tmp_path):
    path = tmp_path / "ohlcv.sqlite"
    with OhlcvCache(path) as c:
        assert c.journal_mode == "wal"
    assert path.exists()
    con = sqlite3.connect(path)
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"ohlcv", "empty_ranges", "meta"} <= tables
    cols = [r[1] for r in con.execute("PRAGMA table_info(ohlcv)")]
    assert cols == ["exchange", "symbol", "timeframe", "ts", "open", "high", "low", "close", "volume"]
    con.close()


def test_upsert_is_idempotent_and_counts_changes(cache):
    rows = bars(0, 10)
    assert cache.upsert(*KEY, rows) == 10
    assert cache.upsert(*KEY, rows) == 0  # same values: nothing rewritten
    assert cache.count(*KEY) == 10
    changed = rows[-1]._replace(close=999.0)
    assert cache.upsert(*KEY, [changed]) == 1
    assert cache.read(*KEY)[-1] == changed
    assert cache.upsert(*KEY, []) == 0
    assert cache.upsert(*KEY, iter(bars(10 * M, 2))) == 2  # any iterable


def test_read_ranges_are_half_open_and_sorted(cache):
    rows = bars(0, 10)
    cache.upsert(*KEY, reversed(rows))
    assert cache.read(*KEY) == rows
    assert cache.read(*KEY, 2 * M, 5 * M) == rows[2:5]
    assert cache.read(*KEY, since_ms=8 * M) == rows[8:]
    assert cache.read(*KEY, until_ms=M) == rows[:1]
    assert cache.read(*KEY, 5 * M, 5 * M) == []
    assert cache.count(*KEY, 2 * M, 5 * M) == 3
    assert isinstance(cache.read(*KEY)[0], Candle)


def test_series_are_separate(cache):
    cache.upsert(*KEY, bars(0, 3))
    cache.upsert("okx", "BTC/USDT", "1m", bars(0, 5))
    cache.upsert("binance", "BTC/USDT", "5m", bars(0, 7))
    assert cache.count(*KEY) == 3
    assert cache.count("okx", "BTC/USDT", "1m") == 5
    assert cache.bounds("binance", "ETH/USDT", "1m") is None
    assert [s[:4] for s in cache.series()] == [("binance", "BTC/USDT", "1m", 3),
                                              ("binance", "BTC/USDT", "5m", 7),
                                              ("okx", "BTC/USDT", "1m", 5)]


def test_bounds_and_timestamps(cache):
    assert cache.bounds(*KEY) is None
    cache.upsert(*KEY, bars(5 * M, 4))
    assert cache.bounds(*KEY) == (5 * M, 8 * M)
    assert list(cache.timestamps(*KEY)) == [5 * M, 6 * M, 7 * M, 8 * M]
    assert list(cache.timestamps(*KEY, 6 * M, 8 * M)) == [6 * M, 7 * M]


def test_iter_read_chunks_equal_read(cache):
    rows = bars(0, 2_503)
    cache.upsert(*KEY, rows)
    assert list(cache.iter_read(*KEY, chunk=100)) == rows
    assert list(cache.iter_read(*KEY, 10 * M, 20 * M, chunk=3)) == rows[10:20]
    assert list(cache.iter_read(*KEY, 10 * M, 10 * M)) == []
    it = cache.iter_read(*KEY, chunk=1000)
    first = next(it)
    cache.upsert(*KEY, bars(3_000 * M, 1))  # writes may interleave with a lazy read
    assert [first, *it][-1].ts == 3_000 * M


def test_mark_empty_merges_adjacent_and_overlapping(cache):
    cache.mark_empty(*KEY, 10 * M, 12 * M)
    cache.mark_empty(*KEY, 13 * M, 15 * M)  # adjacent
    cache.mark_empty(*KEY, 20 * M, 22 * M)
    assert cache.empty_ranges(*KEY) == [(10 * M, 15 * M), (20 * M, 22 * M)]
    cache.mark_empty(*KEY, 14 * M, 21 * M)  # bridges both
    assert cache.empty_ranges(*KEY) == [(10 * M, 22 * M)]
    cache.mark_empty(*KEY, 5 * M, 4 * M)  # inverted: ignored
    assert cache.empty_ranges(*KEY, 23 * M, 30 * M) == []
    assert cache.empty_ranges(*KEY, 22 * M, 30 * M) == [(10 * M, 22 * M)]
    assert cache.empty_ranges("okx", "BTC/USDT", "1m") == []


def test_delete(cache):
    cache.upsert(*KEY, bars(0, 10))
    cache.mark_empty(*KEY, 20 * M, 30 * M)
    assert cache.delete(*KEY, 0, 5 * M) == 5
    assert cache.empty_ranges(*KEY)  # a windowed delete keeps the empty ranges
    assert cache.delete(*KEY) == 5
    assert cache.empty_ranges(*KEY) == [] and cache.bounds(*KEY) is None


def test_persists_across_connections_and_other_readers(tmp_path):
    path = tmp_path / "c.sqlite"
    with OhlcvCache(path) as c:
        c.upsert(*KEY, bars(0, 5))
        other = sqlite3.connect(path)  # another process's reader, while we are open
        assert other.execute("SELECT COUNT(*) FROM ohlcv").fetchone()[0] == 5
        other.close()
    with OhlcvCache(path) as c:
        assert c.count(*KEY) == 5


def test_one_writer_many_reader_threads(cache):
    stop = threading.Event()
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            while not stop.is_set():
                got = cache.read(*KEY)
                assert [c.ts for c in got] == sorted(c.ts for c in got)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for page in range(50):
        cache.upsert(*KEY, bars(page * 10 * M, 10))
    stop.set()
    for t in threads:
        t.join(10)
    assert not errors and cache.count(*KEY) == 500


def test_closed_cache_refuses_and_close_is_idempotent(tmp_path):
    c = OhlcvCache(tmp_path / "c.sqlite")
    c.close()
    c.close()
    with pytest.raises(sqlite3.ProgrammingError):
        c.count(*KEY)


def test_memory_database():
    with OhlcvCache(":memory:") as c:
        c.upsert(*KEY, bars(0, 3))
        assert c.count(*KEY) == 3


def test_default_cache_path(monkeypatch, tmp_path):
    monkeypatch.setenv("BTCCXT_CACHE", str(tmp_path / "x.sqlite"))
    assert default_cache_path() == tmp_path / "x.sqlite"
    monkeypatch.delenv("BTCCXT_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    if sys.platform == "darwin":
        assert default_cache_path() == tmp_path / "Library/Application Support/btccxt/ohlcv.sqlite"
        return
    if sys.platform.startswith("win"):
        return
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_cache_path() == tmp_path / "xdg" / "btccxt" / "ohlcv.sqlite"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/path")  # invalid per the XDG spec: ignored
    assert default_cache_path() == tmp_path / ".local/share/btccxt/ohlcv.sqlite"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert default_cache_path() == tmp_path / ".local/share/btccxt/ohlcv.sqlite"
