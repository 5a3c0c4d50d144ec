"""One series' skipped and revised bars, and history shorter than asked: counted, logged once
per range, and kept for the status (``model.FeedStatus``), the events file, the metrics and
the dashboard.

The assembler (``bars/assembler.py``) notes what it did (``take_notes``); ``SeriesNotes``
words it. A skipped range is logged as ONE warning, however many bars it holds; only the
latest ``KEEP`` notes are kept (numbered, so a reader knows what it missed), the counts are
exact. Reads (``fill``) may come from any thread; writes from the series' driver thread.

No ccxt, no backtrader.
"""

from __future__ import annotations

import logging
import threading
from collections import deque

from btccxt_cli.bars.gaps import served_history, shortfall_text
from btccxt_cli.model import Candle, DataNote, FeedStatus

__all__ = ["SeriesNotes"]


def _iso(ms: int) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class SeriesNotes:
    """Counts and notes of one series.

    Args:
        name: the series' name (the symbol) for log lines.
        timeframe: ccxt timeframe, e.g. ``"1m"``.
        exchange_id: whose history limit applies (``gaps.HISTORY_ROWS``).
        log: the series' logger.
    """

    KEEP = 64  # notes kept for readers (the events file); counts are exact regardless
    RANGES = 5  # skipped ranges shown in the status

    def __init__(self, name: str, timeframe: str, exchange_id: str | None, log: logging.Logger) -> None:
        self.name, self.timeframe, self.exchange_id, self.log = name, timeframe, exchange_id, log
        self._lock = threading.Lock()
        self._seq = 0
        self._notes: deque[DataNote] = deque(maxlen=self.KEEP)
        self._shared: tuple[DataNote, ...] = ()  # the same notes as a tuple, rebuilt per note
        self._ranges: deque[tuple[int, int, int]] = deque(maxlen=self.RANGES)
        self.skipped = 0  # bars
        self.revised = 0
        self.history_short = ""
        self.history_start: int | None = None  # the first bar history asked for
        self.oldest_missing = False  # history's first bars never came (a skip from its start)
        self.history_skipped = 0  # bars skipped while history loaded

    # ------------------------------------------------------------ writes (driver thread)
    def record(self, raw: list[tuple], *, history: bool) -> None:
        """Word, count and log what the assembler noted (``BarAssembler.take_notes``)."""
        for n in raw:
            if n[0] == "skipped":
                _, first, last, count = n
                reason = self._skip_reason(first, history)
                if history:
                    self.history_skipped += count
                self.log.warning("%s: %d %s bar%s skipped, %s .. %s: %s", self.name, count,
                                 self.timeframe, "" if count == 1 else "s", _iso(first), _iso(last),
                                 reason)
                self._add(DataNote(0, "skipped", first, last, count, reason), skipped=count)
            else:
                _, ts, was, now, released = n
                self.revised_bar(ts, was, now, "delivered bar" if released else "live final")

    def revised_bar(self, ts: int, was: Candle, now: Candle, what: str) -> None:
        """REST's record of the bar opened at ``ts`` differs from ``was`` (``what`` it was)."""
        reason = f"REST differs from the {what}"
        self.log.warning("%s: %s bar %s revised: %s (was %s, REST %s)", self.name, self.timeframe,
                         _iso(ts), reason, tuple(was)[1:], tuple(now)[1:])
        self._add(DataNote(0, "revised", ts, ts, 1, reason, was=was, now=now), revised=1)

    def cached_tail_read(self, tail: Candle, rows: list[Candle]) -> bool:
        """A REST answer after the warm-up: the newest cached bar ``tail`` (left for REST to
        read again) differs? Then it is a revision (REST's row is delivered, and cached).
        True once the answer told about it (or started after it: it never will)."""
        row = next((c for c in rows if c.ts == tail.ts), None)
        if row is None:
            return bool(rows) and rows[0].ts > tail.ts
        if row != tail and row is not rows[-1]:  # a later row: REST's is final
            self.revised_bar(tail.ts, tail, row, "cached bar")
        return True

    def history_done(self, got: int, asked: int, last_ms: int | None) -> str:
        """History is over with ``got`` of ``asked`` bars: the line saying so when fewer, or "".

        Fewer only counts when bars were skipped (or none came at all): the newest bar may
        just not be final yet when history ends, and then comes as a live bar."""
        if got >= asked or self.history_start is None or (not self.history_skipped and got):
            return ""
        line = shortfall_text(self.exchange_id, self.timeframe, got, asked,
                              oldest_served=self.oldest_missing)
        self.log.warning("%s: %s", self.name, line)
        last = last_ms if last_ms is not None else self.history_start
        with self._lock:
            self.history_short = line
        self._add(DataNote(0, "history", self.history_start, last, got, line, asked=asked))
        return line

    def _skip_reason(self, first: int, history: bool) -> str:
        if history and first == self.history_start:
            self.oldest_missing = True
            limit = served_history(self.exchange_id)
            if limit is not None:
                return f"{self.exchange_id} serves only its newest {limit} {self.timeframe} bars"
            return "the exchange has no older bars (its first opens later)"
        return "the exchange's REST answer has no bars there (no trades, or a halt)"

    def _add(self, note: DataNote, *, skipped: int = 0, revised: int = 0) -> None:
        with self._lock:
            self._seq += 1
            note = DataNote(self._seq, note.kind, note.first_ms, note.last_ms, note.count,
                            note.reason, note.was, note.now, note.asked)
            self._notes.append(note)
            self._shared = tuple(self._notes)
            if note.kind == "skipped":
                self._ranges.append((note.first_ms, note.last_ms, note.count))
            self.skipped += skipped
            self.revised += revised

    # ------------------------------------------------------------ reads (any thread)
    def fill(self, st: FeedStatus) -> None:
        """Copy the counts and the latest notes into a status copy."""
        with self._lock:
            st.skipped = self.skipped
            st.revised = self.revised
            st.history_short = self.history_short
            st.skipped_ranges = tuple(self._ranges)
            st.notes = self._shared
