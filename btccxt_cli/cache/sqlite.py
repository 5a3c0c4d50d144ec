"""``OhlcvCache``: closed OHLCV bars in one SQLite file, keyed by (exchange, symbol, tf, ts).

Schema (created on first open; ``docs/backfill.md`` documents it for users)::

    ohlcv(exchange TEXT, symbol TEXT, timeframe TEXT, ts INTEGER,
          open REAL, high REAL, low REAL, close REAL, volume REAL,
          PRIMARY KEY(exchange, symbol, timeframe, ts)) WITHOUT ROWID
    empty_ranges(exchange TEXT, symbol TEXT, timeframe TEXT, start_ms INTEGER, end_ms INTEGER,
                 PRIMARY KEY(exchange, symbol, timeframe, start_ms)) WITHOUT ROWID
    meta(key TEXT PRIMARY KEY, value TEXT)
    markets(exchange TEXT, symbol TEXT, tick_size REAL, PRIMARY KEY(exchange, symbol)) WITHOUT ROWID
    funding(exchange TEXT, symbol TEXT, ts INTEGER, rate REAL,
            PRIMARY KEY(exchange, symbol, ts)) WITHOUT ROWID
    funding_ranges(exchange TEXT, symbol TEXT, start_ms INTEGER, end_ms INTEGER,
                   PRIMARY KEY(exchange, symbol, start_ms)) WITHOUT ROWID

``ts`` is the bar's open time in epoch milliseconds (UTC). ``empty_ranges`` holds bar-open
ranges (both ends inclusive) the exchange confirmed it has no bars for, merged per series, so
a rerun does not ask again. ``markets`` holds each market's price step (tick size) as last
loaded from the exchange, so an offline backtest knows it. ``funding`` holds swaps' funding
rates by settlement time (``ts``, epoch ms), and ``funding_ranges`` the time ranges (both ends
inclusive, merged) whose settlements were all downloaded, so a rerun or an offline backtest
knows what it has. The journal is WAL with
``synchronous=NORMAL``: a committed page
survives a killed process, and readers in other processes never block the writer.

One connection, shared by threads under a lock (``check_same_thread=False``): meant for one
writer thread plus readers. Every write is its own transaction.

Must not import: ccxt, typer, rich, backtrader.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from array import array
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from btccxt_cli.bars.gaps import Range, merge_ranges
from btccxt_cli.errors import BtccxtError
from btccxt_cli.model import Candle
from btccxt_cli.paths import data_dir
from btccxt_cli.timeframes import timeframe_ms

__all__ = ["OhlcvCache", "CacheError", "cache_error", "default_cache_path", "SCHEMA_VERSION"]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_MAX_TS = (1 << 63) - 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ohlcv (
    exchange TEXT NOT NULL, symbol TEXT NOT NULL, timeframe TEXT NOT NULL, ts INTEGER NOT NULL,
    open REAL NOT NULL, high REAL NOT NULL, low REAL NOT NULL, close REAL NOT NULL,
    volume REAL NOT NULL,
    PRIMARY KEY (exchange, symbol, timeframe, ts)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS empty_ranges (
    exchange TEXT NOT NULL, symbol TEXT NOT NULL, timeframe TEXT NOT NULL,
    start_ms INTEGER NOT NULL, end_ms INTEGER NOT NULL,
    PRIMARY KEY (exchange, symbol, timeframe, start_ms)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS markets (
    exchange TEXT NOT NULL, symbol TEXT NOT NULL, tick_size REAL NOT NULL,
    PRIMARY KEY (exchange, symbol)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS funding (
    exchange TEXT NOT NULL, symbol TEXT NOT NULL, ts INTEGER NOT NULL, rate REAL NOT NULL,
    PRIMARY KEY (exchange, symbol, ts)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS funding_ranges (
    exchange TEXT NOT NULL, symbol TEXT NOT NULL, start_ms INTEGER NOT NULL, end_ms INTEGER NOT NULL,
    PRIMARY KEY (exchange, symbol, start_ms)
) WITHOUT ROWID;
"""

# Rows whose values did not change are not rewritten, so the count says what changed.
_UPSERT = """
INSERT INTO ohlcv (exchange, symbol, timeframe, ts, open, high, low, close, volume)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (exchange, symbol, timeframe, ts) DO UPDATE SET
    open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
    volume = excluded.volume
WHERE open IS NOT excluded.open OR high IS NOT excluded.high OR low IS NOT excluded.low
   OR close IS NOT excluded.close OR volume IS NOT excluded.volume
"""

_SERIES = "exchange = ? AND symbol = ? AND timeframe = ?"


def default_cache_path() -> Path:
    """Where ``btccxt backfill`` keeps its cache unless told otherwise.

    ``$BTCCXT_CACHE`` if set; else ``ohlcv.sqlite`` in btccxt's data folder
    (``paths.data_dir()``: ``$XDG_DATA_HOME/btccxt``, default ``~/.local/share/btccxt``;
    ``~/Library/Application Support/btccxt`` on macOS; ``%LOCALAPPDATA%\\btccxt`` on Windows).
    Nothing is created here.
    """
    env = os.environ.get("BTCCXT_CACHE")
    if env:
        return Path(env).expanduser()
    return data_dir() / "ohlcv.sqlite"


class CacheError(BtccxtError):
    """The cache file cannot be used (full disk, damaged, read-only, locked): exit 2."""

    exit_code = 2


def cache_error(path: str | os.PathLike[str], exc: sqlite3.Error) -> CacheError:
    """One line a person can act on for an SQLite failure of the cache file ``path``."""
    text = str(exc)
    low = text.lower()
    where = f"cache {str(path)!r}"
    if "full" in low:
        return CacheError(f"{where}: the disk is full ({text}); bars committed before are kept",
                          hint="free some space, or pass a file on another disk with --db")
    if "not a database" in low or "malformed" in low or "corrupt" in low:
        return CacheError(f"{where} is damaged or not a btccxt cache ({text})",
                          hint="move it away and backfill again, or pass another file with --db")
    if "readonly" in low or "read-only" in low:
        return CacheError(f"{where} is read-only ({text})",
                          hint="fix its permissions, or pass another file with --db")
    if "locked" in low or "busy" in low:
        return CacheError(f"{where} is locked by another process ({text})",
                          hint="wait for the other backfill or run to finish, then rerun")
    return CacheError(f"{where}: {text}", hint="pass another file with --db")


class OhlcvCache:
    """SQLite store of closed bars; safe to share between threads (one writer at a time).

    Args:
        path: the database file, or ``":memory:"``. Its folder must exist: callers check the
            path a user named first (``paths.check_output_file``), nothing is created here.
        timeout: seconds to wait for another process's write lock.

    Timestamps are bar opens in epoch ms; reads take the half-open window ``[since, until)``
    (``None`` = unbounded) and return bars oldest first.
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 10.0) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            p = Path(self.path).expanduser()
            if not p.parent.is_dir():
                raise FileNotFoundError(f"folder {str(p.parent)!r} of the cache does not exist")
            self.path = str(p)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = sqlite3.connect(
            self.path, timeout=timeout, check_same_thread=False, isolation_level=None)
        conn = self._conn
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
            conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                         (str(SCHEMA_VERSION),))
        except sqlite3.DatabaseError:
            conn.close()
            self._conn = None
            raise

    # ------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> OhlcvCache:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"OhlcvCache({self.path!r})"

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise sqlite3.ProgrammingError("the cache is closed")
        return self._conn

    @property
    def journal_mode(self) -> str:
        with self._lock:
            return str(self.conn.execute("PRAGMA journal_mode").fetchone()[0])

    # ------------------------------------------------------------ writes
    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction under the lock. SQLite ends a transaction by itself on some
        errors (a full disk): the rollback then is skipped, so the real cause is what raises."""
        with self._lock:
            conn = self.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def upsert(self, exchange: str, symbol: str, timeframe: str, candles: Iterable[Candle]) -> int:
        """Insert or update bars in one transaction; returns the rows inserted or changed.

        Bars already stored with identical values are left alone (not counted).
        """
        rows = [(exchange, symbol, timeframe, int(c[0]), float(c[1]), float(c[2]), float(c[3]),
                 float(c[4]), float(c[5])) for c in candles]
        if not rows:
            return 0
        with self._write() as conn:
            n = conn.executemany(_UPSERT, rows).rowcount
        return max(0, n)

    def mark_empty(self, exchange: str, symbol: str, timeframe: str, start_ms: int,
                   end_ms: int) -> None:
        """Record that the exchange has no bars opening in ``[start_ms, end_ms]`` (inclusive).

        Overlapping or adjacent ranges of the series are merged into one row.
        """
        if end_ms < start_ms:
            return
        tf = timeframe_ms(timeframe)
        with self._write() as conn:
            near = conn.execute(
                f"SELECT start_ms, end_ms FROM empty_ranges WHERE {_SERIES} "
                "AND start_ms <= ? AND end_ms >= ?",
                (exchange, symbol, timeframe, end_ms + tf, start_ms - tf)).fetchall()
            merged = merge_ranges([(start_ms, end_ms), *near], tf)
            conn.executemany(f"DELETE FROM empty_ranges WHERE {_SERIES} AND start_ms = ?",
                             [(exchange, symbol, timeframe, a) for a, _ in near])
            conn.executemany(
                "INSERT OR REPLACE INTO empty_ranges (exchange, symbol, timeframe, start_ms, "
                "end_ms) VALUES (?, ?, ?, ?, ?)",
                [(exchange, symbol, timeframe, a, b) for a, b in merged])

    def delete(self, exchange: str, symbol: str, timeframe: str, since_ms: int | None = None,
               until_ms: int | None = None) -> int:
        """Remove bars in ``[since, until)``, and the confirmed-empty ranges touching it (they
        are asked for again by the next backfill)."""
        lo, hi = _bounds(since_ms, until_ms)
        with self._write() as conn:
            n = conn.execute(f"DELETE FROM ohlcv WHERE {_SERIES} AND ts >= ? AND ts < ?",
                             (exchange, symbol, timeframe, lo, hi)).rowcount
            conn.execute(f"DELETE FROM empty_ranges WHERE {_SERIES} AND end_ms >= ? AND start_ms < ?",
                         (exchange, symbol, timeframe, lo, hi))
        return n

    def put_tick_sizes(self, exchange: str, ticks: dict[str, float]) -> None:
        """Record the price step of each symbol (markets just loaded from the exchange)."""
        rows = [(exchange, sym, float(t)) for sym, t in ticks.items() if t and t > 0]
        if not rows:
            return
        with self._write() as conn:
            conn.executemany("INSERT OR REPLACE INTO markets (exchange, symbol, tick_size) "
                             "VALUES (?, ?, ?)", rows)

    def put_funding(self, exchange: str, symbol: str, rates: Iterable[tuple[int, float]],
                    covered: Range | None = None) -> None:
        """Store funding rates ``(settlement ms, rate)`` and, in the same transaction, record
        that every settlement in ``covered`` (ms, both ends inclusive) is now stored."""
        rows = [(exchange, symbol, int(t), float(r)) for t, r in rates]
        with self._write() as conn:
            conn.executemany("INSERT OR REPLACE INTO funding (exchange, symbol, ts, rate) "
                             "VALUES (?, ?, ?, ?)", rows)
            if covered is None or covered[1] < covered[0]:
                return
            a, b = int(covered[0]), int(covered[1])
            near = conn.execute("SELECT start_ms, end_ms FROM funding_ranges WHERE exchange = ? "
                                "AND symbol = ? AND start_ms <= ? AND end_ms >= ?",
                                (exchange, symbol, b + 1, a - 1)).fetchall()
            merged = merge_ranges([(a, b), *near], 1)
            conn.executemany("DELETE FROM funding_ranges WHERE exchange = ? AND symbol = ? "
                             "AND start_ms = ?", [(exchange, symbol, s) for s, _ in near])
            conn.executemany("INSERT OR REPLACE INTO funding_ranges (exchange, symbol, start_ms, "
                             "end_ms) VALUES (?, ?, ?, ?)",
                             [(exchange, symbol, s, e) for s, e in merged])

    # ------------------------------------------------------------ reads
    def funding(self, exchange: str, symbol: str, since_ms: int | None = None,
                until_ms: int | None = None) -> list[tuple[int, float]]:
        """Stored funding rates ``(settlement ms, rate)`` with ``since <= ts < until``, in order."""
        lo, hi = _bounds(since_ms, until_ms)
        with self._lock:
            rows = self.conn.execute("SELECT ts, rate FROM funding WHERE exchange = ? AND symbol = ? "
                                     "AND ts >= ? AND ts < ? ORDER BY ts",
                                     (exchange, symbol, lo, hi)).fetchall()
        return [(int(t), float(r)) for t, r in rows]

    def funding_ranges(self, exchange: str, symbol: str) -> list[Range]:
        """The time ranges (ms, inclusive) whose funding settlements are all stored, in order."""
        with self._lock:
            rows = self.conn.execute("SELECT start_ms, end_ms FROM funding_ranges WHERE exchange = ? "
                                     "AND symbol = ? ORDER BY start_ms", (exchange, symbol)).fetchall()
        return [(int(a), int(b)) for a, b in rows]

    def tick_sizes(self, exchange: str, symbols: Iterable[str]) -> dict[str, float]:
        """The recorded price step of each of ``symbols`` that has one."""
        with self._lock:
            rows = self.conn.execute("SELECT symbol, tick_size FROM markets WHERE exchange = ?",
                                     (exchange,)).fetchall()
        want = set(symbols)
        return {str(s): float(t) for s, t in rows if s in want}

    def read(self, exchange: str, symbol: str, timeframe: str, since_ms: int | None = None,
             until_ms: int | None = None) -> list[Candle]:
        """Bars with ``since <= ts < until``, oldest first."""
        lo, hi = _bounds(since_ms, until_ms)
        with self._lock:
            rows = self.conn.execute(
                "SELECT ts, open, high, low, close, volume FROM ohlcv "
                f"WHERE {_SERIES} AND ts >= ? AND ts < ? ORDER BY ts",
                (exchange, symbol, timeframe, lo, hi)).fetchall()
        return list(map(Candle._make, rows))

    def iter_read(self, exchange: str, symbol: str, timeframe: str, since_ms: int | None = None,
                  until_ms: int | None = None, *, chunk: int = 10_000) -> Iterator[Candle]:
        """Like :meth:`read`, but lazily: ``chunk`` rows per query, no lock held between them.

        Each chunk is a separate keyset query (``ts > last``), so writes may interleave and
        memory stays bounded for exports of any size.
        """
        lo, hi = _bounds(since_ms, until_ms)
        sql = ("SELECT ts, open, high, low, close, volume FROM ohlcv "
               f"WHERE {_SERIES} AND ts >= ? AND ts < ? ORDER BY ts LIMIT ?")
        while lo < hi:
            with self._lock:
                rows = self.conn.execute(sql, (exchange, symbol, timeframe, lo, hi, chunk)).fetchall()
            if not rows:
                return
            yield from map(Candle._make, rows)
            if len(rows) < chunk:
                return
            lo = rows[-1][0] + 1

    def timestamps(self, exchange: str, symbol: str, timeframe: str, since_ms: int | None = None,
                   until_ms: int | None = None) -> array:
        """Bar opens in ``[since, until)``, ascending, as a compact ``array('q')``."""
        lo, hi = _bounds(since_ms, until_ms)
        out = array("q")
        with self._lock:
            cur = self.conn.execute(
                f"SELECT ts FROM ohlcv WHERE {_SERIES} AND ts >= ? AND ts < ? ORDER BY ts",
                (exchange, symbol, timeframe, lo, hi))
            while True:
                rows = cur.fetchmany(50_000)
                if not rows:
                    break
                out.extend(r[0] for r in rows)
        return out

    def bounds(self, exchange: str, symbol: str, timeframe: str) -> tuple[int, int] | None:
        """``(oldest ts, newest ts)`` of the series, or None when it holds no bar."""
        with self._lock:
            row = self.conn.execute(f"SELECT MIN(ts), MAX(ts) FROM ohlcv WHERE {_SERIES}",
                                    (exchange, symbol, timeframe)).fetchone()
        return None if row is None or row[0] is None else (int(row[0]), int(row[1]))

    def count(self, exchange: str, symbol: str, timeframe: str, since_ms: int | None = None,
              until_ms: int | None = None) -> int:
        """Number of bars in ``[since, until)``."""
        lo, hi = _bounds(since_ms, until_ms)
        with self._lock:
            row = self.conn.execute(f"SELECT COUNT(*) FROM ohlcv WHERE {_SERIES} AND ts >= ? AND ts < ?",
                                    (exchange, symbol, timeframe, lo, hi)).fetchone()
        return int(row[0])

    def empty_ranges(self, exchange: str, symbol: str, timeframe: str, since_ms: int | None = None,
                     until_ms: int | None = None) -> list[Range]:
        """Confirmed-empty ranges (inclusive bar opens) that touch ``[since, until)``, ascending."""
        lo, hi = _bounds(since_ms, until_ms)
        with self._lock:
            rows = self.conn.execute(
                f"SELECT start_ms, end_ms FROM empty_ranges WHERE {_SERIES} "
                "AND end_ms >= ? AND start_ms < ? ORDER BY start_ms",
                (exchange, symbol, timeframe, lo, hi)).fetchall()
        return [(int(a), int(b)) for a, b in rows]

    def series(self) -> list[tuple[str, str, str, int, int, int]]:
        """Every stored series: ``(exchange, symbol, timeframe, bars, oldest ts, newest ts)``."""
        with self._lock:
            rows = self.conn.execute(
                "SELECT exchange, symbol, timeframe, COUNT(*), MIN(ts), MAX(ts) FROM ohlcv "
                "GROUP BY exchange, symbol, timeframe ORDER BY exchange, symbol, timeframe").fetchall()
        return [tuple(r) for r in rows]  # type: ignore[misc]


def _bounds(since_ms: int | None, until_ms: int | None) -> tuple[int, int]:
    lo = -_MAX_TS if since_ms is None else int(since_ms)
    hi = _MAX_TS if until_ms is None else int(until_ms)
    return lo, hi
