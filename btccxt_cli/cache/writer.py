"""The OHLCV cache as a live run uses it: writes queued to a thread, a broken file left alone.

    cache = LiveCache(path)          # or LiveCache(an OhlcvCache)
    cache.read(...)                  # warm-up reads, on the caller's thread (its own connection)
    cache.upsert(...)                # queues the bars and returns at once (never waits on SQLite)
    cache.close()                    # writes what is queued (bounded wait), stops the thread

Why: a feed delivers bars on the store's event loop. A synchronous write there waits up to
the busy timeout (10 s) whenever another process holds the write lock (a ``btccxt backfill``
committing a page), and every socket, watch and the order worker of that loop freezes with
it. Here a writer thread takes what is queued, merges it per series and upserts it through
its own connection; readers use another one, which WAL never blocks.

A lock held by another process is waited out (the rows stay queued and are written once it
is released). A cache that cannot be used (damaged or not a database, disk full or I/O
error, read-only: any other ``sqlite3.DatabaseError``, or a file that cannot be opened) is
reported ONCE, with the path, the cause and the repair, and left alone for the rest of the
run: reads return nothing (history comes from the exchange), writes are dropped. A live run
never dies of its cache.

Must not import: ccxt, typer, rich, backtrader.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections import deque
from collections.abc import Iterable
from typing import Any

from btccxt_cli.cache.sqlite import OhlcvCache
from btccxt_cli.model import Candle

__all__ = ["LiveCache", "REPAIR", "live_cache"]

logger = logging.getLogger(__name__)

REPAIR = ("to repair: free disk space if the disk is full; otherwise move the file away "
          "(`btccxt backfill` builds a new one) or use another cache file")
_BUSY_CODES = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED
_READER_OPEN_WAIT_S = 1.0

Item = tuple[str, str, str, list[Candle]]


def _is_busy(exc: BaseException) -> bool:
    """Another connection holds the lock: wait, the file is fine."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _BUSY_CODES
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class LiveCache:
    """An ``OhlcvCache`` whose writes run on a writer thread and whose failures warn once.

    Args:
        cache: the SQLite file, or an open ``OhlcvCache`` (reads use it; the writer opens its
            own connection to the same file, or shares it for ``":memory:"``; it is not closed
            here).
        max_pending: bars allowed to wait in the queue; beyond it the oldest are dropped (a
            later run fetches them again) and that is logged once.
        retry_s: seconds between tries while another process holds the write lock (each try
            itself waits up to the busy timeout).
        timeout: SQLite busy timeout of the connections opened here.
    """

    def __init__(self, cache: OhlcvCache | str | os.PathLike[str], *, max_pending: int = 200_000,
                 retry_s: float = 1.0, timeout: float = 10.0) -> None:
        given = cache if isinstance(cache, OhlcvCache) else None
        self.path = given.path if given is not None else str(cache)
        self.max_pending = max(1, int(max_pending))
        self.retry_s = retry_s
        self.timeout = timeout
        self.broken: str | None = None  # the cause, once the cache was found unusable
        self.written = 0  # bars committed by the writer thread
        self.dropped = 0  # bars not written (queue overflow, broken cache, not flushed at close)
        self._given = given
        self._reader: OhlcvCache | None = given
        self._cond = threading.Condition()
        self._queue: deque[Item] = deque()
        self._pending = 0  # bars in the queue
        self._writing = 0  # bars in the batch being written
        self._thread: threading.Thread | None = None
        self._running = False
        self._stop = False
        self._overflow_told = False
        self._reopen = False  # closed: the next read opens the reader again
        if self._reader is None:
            self._reader = self._open()

    def __repr__(self) -> str:
        return f"LiveCache({self.path!r})"

    # ------------------------------------------------------------ reads (caller's thread)
    def read(self, exchange: str, symbol: str, timeframe: str, since_ms: int | None = None,
             until_ms: int | None = None) -> list[Candle]:
        """Cached bars in ``[since, until)``; none when the cache is broken or locked."""
        if self.broken is not None:
            return []
        if self._reader is None and self._reopen:
            self._reopen = False
            self._reader = self._open()
        reader = self._reader
        if reader is None:  # it was locked when opened: history comes from the exchange
            return []
        try:
            return reader.read(exchange, symbol, timeframe, since_ms, until_ms)
        except sqlite3.Error as exc:
            if _is_busy(exc):
                logger.info("OHLCV cache %s is locked by another process; history comes from "
                            "the exchange", self.path)
            else:
                self._fail(exc)
            return []

    # ------------------------------------------------------------ writes (queued)
    def upsert(self, exchange: str, symbol: str, timeframe: str, candles: Iterable[Candle]) -> int:
        """Queue bars for the writer thread; returns at once (0: nothing written yet)."""
        rows = list(candles)
        if not rows or self.broken is not None:
            return 0
        told = False
        with self._cond:
            self._queue.append((exchange, symbol, timeframe, rows))
            self._pending += len(rows)
            while self._pending + self._writing > self.max_pending and len(self._queue) > 1:
                old = self._queue.popleft()
                self._pending -= len(old[3])
                self.dropped += len(old[3])
                if not self._overflow_told:
                    told = self._overflow_told = True
            if not self._running:  # (re)start: the thread clears the flag under this lock
                self._stop = False
                self._running = True
                self._thread = threading.Thread(target=self._run, name="btccxt-cache-writer",
                                                daemon=True)
                self._thread.start()
            self._cond.notify_all()
        if told:
            logger.warning("OHLCV cache %s: writes fall behind (more than %d bars queued); the "
                           "oldest are not cached", self.path, self.max_pending)
        return 0

    @property
    def pending(self) -> int:
        """Bars queued or being written."""
        with self._cond:
            return self._pending + self._writing

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued bar is written (or dropped as the cache broke)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._writing, timeout)

    def close(self, timeout: float = 2.0) -> None:
        """Write what is queued (waiting at most ``timeout`` s), stop the thread, close the
        connections opened here. A later ``upsert`` or ``read`` starts over."""
        done = self.flush(timeout)
        with self._cond:
            self._stop = True
            left = self._pending + self._writing
            self._cond.notify_all()
            thread = self._thread
        if not done and left:
            logger.warning("OHLCV cache %s: %d bars not written (the file stayed locked); a "
                           "later run fetches them again", self.path, left)
        if thread is not None and done:
            thread.join(timeout)
        if self._given is None:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
            self._reopen = True

    # ------------------------------------------------------------ internals
    def _open(self) -> OhlcvCache | None:
        """The readers' connection. Opening writes the schema row, which waits for another
        process's write lock: a second at most (a run must not start 10 s late for it)."""
        if self.broken is not None:
            return None
        try:
            return OhlcvCache(self.path, timeout=min(self.timeout, _READER_OPEN_WAIT_S))
        except (sqlite3.Error, OSError) as exc:
            if _is_busy(exc):  # opening writes its schema row; the writer retries on its own
                logger.info("OHLCV cache %s is locked by another process; history comes from "
                            "the exchange", self.path)
            else:
                self._fail(exc)
            return None

    def _fail(self, exc: BaseException) -> None:
        """Warn once (path, cause, repair) and leave the cache alone for the rest of the run."""
        with self._cond:
            if self.broken is not None:
                return
            self.broken = str(exc) or type(exc).__name__
            self.dropped += self._pending + self._writing
            self._queue.clear()
            self._pending = self._writing = 0
            self._cond.notify_all()
        logger.warning("OHLCV cache %s cannot be used (%s); this run goes on without caching "
                       "bars; %s", self.path, self.broken, REPAIR)

    def _run(self) -> None:
        """(writer thread) Take what is queued, merge it per series, upsert it."""
        writer: OhlcvCache | None = None
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self._queue or self._stop)
                    if not self._queue:
                        self._running = False
                        return
                    batch = list(self._queue)
                    self._queue.clear()
                    self._writing, self._pending = self._pending, 0
                left: list[Item] = []
                try:
                    if writer is None:
                        writer = self._writer_connection()
                    if writer is not None:
                        left = self._write(writer, batch)
                except (sqlite3.Error, OSError) as exc:  # opening the writer's connection
                    if _is_busy(exc):
                        left = batch
                    else:
                        self._fail(exc)
                except Exception as exc:  # not SQLite's: report it, drop the batch
                    logger.debug("OHLCV cache %s: write failed", self.path, exc_info=True)
                    self._fail(exc)
                with self._cond:
                    if self.broken is not None:
                        left = []
                    for item in reversed(left):  # locked: keep them first in line
                        self._queue.appendleft(item)
                        self._pending += len(item[3])
                    self._writing = 0
                    self._cond.notify_all()
                    if left:
                        self._cond.wait(self.retry_s)
        finally:
            with self._cond:
                if self._thread is threading.current_thread():
                    self._running = False
            if writer is not None and writer is not self._given and writer is not self._reader:
                writer.close()

    def _writer_connection(self) -> OhlcvCache | None:
        if self.path == ":memory:":
            return self._reader  # nothing else can open it
        return OhlcvCache(self.path, timeout=self.timeout)

    def _write(self, writer: OhlcvCache, batch: list[Item]) -> list[Item]:
        """Upsert ``batch`` merged per series; returns what a lock kept out (to retry)."""
        series: dict[tuple[str, str, str], dict[int, Candle]] = {}
        for ex, sym, tf, rows in batch:
            bars = series.setdefault((ex, sym, tf), {})
            for c in rows:
                bars[int(c[0])] = c  # a later delivery of the same bar wins
        keys = list(series)
        for i, key in enumerate(keys):
            bars = series[key]
            try:
                writer.upsert(*key, [bars[t] for t in sorted(bars)])
            except sqlite3.Error as exc:
                if not _is_busy(exc):
                    self._fail(exc)
                    return []
                return [(*k, [series[k][t] for t in sorted(series[k])]) for k in keys[i:]]
            self.written += len(bars)
            with self._cond:
                self._writing -= len(bars)
        return []


def live_cache(cache: Any) -> Any:
    """A path or an ``OhlcvCache`` as a ``LiveCache``; anything else (None, a ``LiveCache``,
    another object with ``read``/``upsert``) is returned as it is."""
    if isinstance(cache, (str, os.PathLike, OhlcvCache)):
        return LiveCache(cache)
    return cache
