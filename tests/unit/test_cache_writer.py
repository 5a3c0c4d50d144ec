"""``LiveCache``: the bar cache of a live run. Writes on a thread, a broken file warns once."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from btccxt_cli.cache.sqlite import OhlcvCache
from btccxt_cli.cache.writer import LiveCache
from btccxt_cli.model import Candle

EX, SYM, TF = "binance", "BTC/USDT", "1s"
T = 1_700_000_000_000


def bars(n: int, start: int = 0, close: float = 1.5) -> list[Candle]:
    return [Candle(T + (start + i) * 1000, 1.0, 2.0, 0.5, close, 3.0) for i in range(n)]


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and r.name.startswith("btccxt_cli")]


def test_writes_are_queued_merged_and_flushed(tmp_path: Path) -> None:
    db = tmp_path / "c.sqlite"
    cache = LiveCache(db)
    assert cache.upsert(EX, SYM, TF, bars(3)) == 0  # queued, not written here
    cache.upsert(EX, SYM, TF, bars(2, start=2, close=9.0))  # bar 2 again: the later one wins
    assert cache.flush(10)
    assert [c.close for c in cache.read(EX, SYM, TF)] == [1.5, 1.5, 9.0, 9.0]
    assert cache.written >= 4 and cache.pending == 0
    cache.close()
    cache.upsert(EX, SYM, TF, bars(1, start=4))  # a closed cache starts over
    cache.close()
    assert OhlcvCache(db).count(EX, SYM, TF) == 5


def test_a_lock_held_elsewhere_keeps_rows_queued_until_it_is_released(tmp_path: Path) -> None:
    db = tmp_path / "c.sqlite"
    OhlcvCache(db).close()
    other = sqlite3.connect(db, isolation_level=None)
    cache = LiveCache(db, timeout=0.05, retry_s=0.05)  # give up each try quickly, try again
    other.execute("BEGIN EXCLUSIVE")
    cache.upsert(EX, SYM, TF, bars(3))  # returns at once although the file is locked
    assert not cache.flush(0.3) and cache.pending == 3
    assert cache.read(EX, SYM, TF) == []  # readers are not blocked (WAL); nothing there yet
    other.execute("COMMIT")
    assert cache.flush(10)
    assert len(cache.read(EX, SYM, TF)) == 3 and cache.broken is None
    cache.close()
    other.close()


def test_a_cache_locked_when_the_run_starts_is_not_taken_for_broken(tmp_path: Path) -> None:
    db = tmp_path / "c.sqlite"
    OhlcvCache(db).close()
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    cache = LiveCache(db, timeout=0.05, retry_s=0.05)
    assert cache.broken is None and cache.read(EX, SYM, TF) == []  # history from the exchange
    cache.upsert(EX, SYM, TF, bars(2))
    other.execute("COMMIT")
    assert cache.flush(10) and cache.broken is None
    cache.close()
    assert len(cache.read(EX, SYM, TF)) == 2  # reopened after close
    cache.close()
    other.close()


def test_a_lock_held_elsewhere_does_not_hold_the_start_for_the_busy_timeout(tmp_path: Path) -> None:
    import threading

    db = tmp_path / "c.sqlite"
    OhlcvCache(db).close()
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    made: list[LiveCache] = []
    opener = threading.Thread(target=lambda: made.append(LiveCache(db)), daemon=True)  # 10 s busy timeout
    opener.start()
    opener.join(5.0)  # the readers' connection waits a second at most, not the 10 s
    assert made and made[0].broken is None
    other.execute("COMMIT")
    other.close()
    made[0].close()


def test_a_queue_that_overflows_drops_the_oldest_bars_and_says_so_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "c.sqlite"
    cache = LiveCache(db, max_pending=4)
    with caplog.at_level(logging.WARNING):
        with cache._cond:  # the writer thread takes nothing meanwhile: a writer far behind
            for i in range(4):
                cache.upsert(EX, SYM, TF, bars(2, start=2 * i))
            assert cache.pending == 4 and cache.dropped == 4
    assert cache.flush(10)
    [msg] = warnings_of(caplog)
    assert "fall behind" in msg and str(db) in msg
    assert [c.ts for c in cache.read(EX, SYM, TF)] == [T + 4000 + 1000 * i for i in range(4)]
    cache.close()


def test_a_file_that_is_not_a_database_warns_once_and_is_left_alone(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "c.sqlite"
    db.write_bytes(b"this is no database, just bytes " * 256)
    with caplog.at_level(logging.WARNING):
        cache = LiveCache(db)
        assert cache.read(EX, SYM, TF) == []
        cache.upsert(EX, SYM, TF, bars(3))
        assert cache.flush(5)
        assert cache.read(EX, SYM, TF) == []
        cache.close()
    [msg] = warnings_of(caplog)
    assert str(db) in msg and "not a database" in msg and "move the file away" in msg
    assert cache.broken and db.read_bytes().startswith(b"this is no database")  # untouched


def test_a_cache_damaged_during_the_run_warns_once_and_drops_later_writes(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "c.sqlite"
    with OhlcvCache(db) as c:
        c.upsert(EX, SYM, TF, bars(2000))  # a few pages of bars
    cache = LiveCache(db)
    assert len(cache.read(EX, SYM, TF)) == 2000
    with open(db, "r+b") as f:  # the disk garbles every page after the first
        f.seek(4096)
        f.write(b"\xff" * (db.stat().st_size - 4096))
    with caplog.at_level(logging.WARNING):
        cache.upsert(EX, SYM, TF, bars(5, start=3000))
        assert cache.flush(10)
        assert cache.read(EX, SYM, TF) == []
        cache.upsert(EX, SYM, TF, bars(5, start=4000))
        assert cache.flush(10)
        cache.close()
    [msg] = warnings_of(caplog)
    assert str(db) in msg and "malformed" in msg and "this run goes on without" in msg
    assert cache.dropped >= 5
