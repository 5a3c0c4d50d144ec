"""RunMonitor: what the run has seen, for the dashboard, the events file and the summary.

The strategy thread calls ``on_bar``/``on_state``; the dashboard thread calls
``snapshot()``. Both take one short lock; nothing here waits on rendering or I/O of the
other side. The events file is JSON Lines, one record per bar delivered to the strategy
and one per state change, flushed per line so that a killed run loses nothing written.

Skipped and revised bars, and history shorter than asked (``model.DataNote``), are read from
the feeds' statuses: at a feed's first bar, at a bar after a jump, at most every 0.25 s of
bars, at every state change and dashboard frame, and at close. Each becomes one record
(``skipped``, ``revised``, ``history``) and one line in the event log.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from btccxt_cli.clock import SYSTEM_CLOCK, Clock
from btccxt_cli.model import BrokerStatus, ConnectionStatus, DataNote, FeedStatus, Snapshot
from btccxt_cli.paths import check_output_file

__all__ = ["RunMonitor", "market_decimals"]

logger = logging.getLogger(__name__)


class RunMonitor:
    """Collects bars and events of one run.

    Args:
        title: dashboard title.
        statuses: returns the feeds' status snapshots (thread-safe).
        connection: returns the connection status (thread-safe).
        broker: returns the broker status (called from the strategy thread only).
        events_path: JSON Lines file to append to, or None.
        on_line: called with one plain line per bar and event (``--plain`` output).
    """

    def __init__(self, title: str, *, statuses: Callable[[], list[FeedStatus]],
                 connection: Callable[[], ConnectionStatus | None] | None = None,
                 events_path: Path | None = None, on_line: Callable[[str], None] | None = None,
                 clock: Clock = SYSTEM_CLOCK, history: int = 200) -> None:
        self.title = title
        self.clock = clock
        self._statuses = statuses
        self._connection = connection
        self._lock = threading.Lock()
        self._events: deque[str] = deque(maxlen=history)
        self._closes: dict[str, deque[float]] = {}
        self.live_bars: dict[str, int] = {}
        self.bars: dict[str, int] = {}
        self.seen: dict[str, dict[str, int]] = {}  # bars the strategy saw, by symbol and source
        self.decimals: dict[str, tuple[int | None, int | None]] = {}  # symbol -> price, amount
        self._last_feeds: dict[tuple[str, str], FeedStatus] = {}
        self._last_conn: ConnectionStatus | None = None
        self._broker = BrokerStatus()
        self._started = clock.monotonic()
        self._on_line = on_line
        self._subscribers: list[Callable[[dict[str, Any]], None]] = []
        self._file: IO[str] | None = None
        # data notes already written, per (symbol, timeframe): the last seq
        self._notes_lock = threading.Lock()
        self._notes_seen: dict[tuple[str, str], int] = {}
        self._notes_read = clock.monotonic()
        self._last_ts: dict[tuple[str, str], int] = {}
        self._tf_ms: dict[str, int] = {}
        if events_path is not None:
            # one policy for every output path: no silent folders outside btccxt's data folder
            events_path = check_output_file(events_path, what="events file", option="events file")
            self._file = open(events_path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    # ------------------------------------------------------------ inputs (strategy thread)
    def on_bar(self, symbol: str, timeframe: str, ts: int, ohlcv: tuple[float, ...], source: str,
               latency_ms: float | None) -> None:
        rec: dict[str, Any] = {"type": "bar", "symbol": symbol, "timeframe": timeframe, "ts": ts,
                               "open": ohlcv[0], "high": ohlcv[1], "low": ohlcv[2], "close": ohlcv[3],
                               "volume": ohlcv[4], "source": source}
        if source == "live" and latency_ms is not None:
            rec["latency_ms"] = round(latency_ms, 3)
        self._notes_due(symbol, timeframe, ts)
        with self._lock:
            self.bars[symbol] = self.bars.get(symbol, 0) + 1
            by_source = self.seen.setdefault(symbol, {"backfill": 0, "live": 0, "gapfill": 0})
            by_source[source] = by_source.get(source, 0) + 1
            if source == "live":
                self.live_bars[symbol] = self.live_bars.get(symbol, 0) + 1
            self._closes.setdefault(symbol, deque(maxlen=32)).append(ohlcv[3])
        self._write(rec)
        if self._on_line is not None:
            lat = f" latency {latency_ms:.1f} ms" if rec.get("latency_ms") is not None else ""
            self._on_line(f"bar {symbol} {timeframe} {iso_utc(ts)} O {ohlcv[0]:.8g} H {ohlcv[1]:.8g} "
                          f"L {ohlcv[2]:.8g} C {ohlcv[3]:.8g} V {ohlcv[4]:.8g} [{source}]{lat}")

    def on_state(self, symbol: str, state: str, message: str = "") -> None:
        self.take_notes()
        self.event(f"{symbol} {state}" + (f": {message}" if message else ""),
                   record={"type": "state", "event": state, "symbol": symbol, "message": message})

    def event(self, text: str, *, record: dict[str, Any] | None = None) -> None:
        """Add a line to the event log (and the events file when ``record`` is given)."""
        now = self.clock.time_ms()
        with self._lock:
            self._events.append(f"{_hms(now)} {text}")
        if record is not None:
            record.setdefault("time", now)
            self._write(record)
            for fn in self._subscribers:  # e.g. the notifier: it only queues the record
                try:
                    fn(dict(record))
                except Exception:
                    logger.debug("event subscriber failed", exc_info=True)
        if self._on_line is not None:
            self._on_line(f"event {text}")

    def subscribe(self, fn: Callable[[dict[str, Any]], None]) -> None:
        """Call ``fn`` with a copy of every event record the events file gets (bars excepted),
        on the thread that made it; ``fn`` must not block."""
        self._subscribers.append(fn)

    # ------------------------------------------------------------ data notes
    def _notes_due(self, symbol: str, timeframe: str, ts: int) -> None:
        """(strategy thread, per bar: cheap) Read the notes when a skip may lie before this bar."""
        key = (symbol, timeframe)
        prev = self._last_ts.get(key)
        self._last_ts[key] = ts
        tf = self._tf_ms.get(timeframe)
        if tf is None:
            from btccxt_cli.timeframes import timeframe_ms

            tf = self._tf_ms[timeframe] = timeframe_ms(timeframe)
        now = self.clock.monotonic()
        if prev is None or ts - prev > tf * 1.5 or now - self._notes_read >= 0.25:
            self.take_notes()

    def take_notes(self, feeds: list[FeedStatus] | None = None) -> None:
        """Write the feeds' data notes not written yet (any thread; in order per feed)."""
        with self._notes_lock:
            self._notes_read = self.clock.monotonic()
            for f in feeds if feeds is not None else self._statuses():
                if not f.notes:
                    continue
                key = (f.symbol, f.timeframe)
                seen = self._notes_seen.get(key, 0)
                new = [n for n in f.notes if n.seq > seen]
                if not new:
                    continue
                self._notes_seen[key] = new[-1].seq
                if new[0].seq > seen + 1:  # more came at once than a status keeps
                    lost = new[0].seq - seen - 1
                    self.event(f"{f.symbol} {f.timeframe}: {lost} earlier notes not listed "
                               f"(skipped {f.skipped} bars, revised {f.revised} in all)",
                               record={"type": "notes", "symbol": f.symbol,
                                       "timeframe": f.timeframe, "not_listed": lost})
                for n in new:
                    text, rec = _note_record(f.symbol, f.timeframe, n)
                    self.event(text, record=rec)

    def set_broker(self, status: BrokerStatus) -> None:
        with self._lock:
            self._broker = status

    def _write(self, rec: dict[str, Any]) -> None:
        f = self._file
        if f is None:
            return
        with self._lock:
            f.write(json.dumps(rec, separators=(",", ":")) + "\n")
            f.flush()

    # ------------------------------------------------------------ outputs (any thread)
    def snapshot(self) -> Snapshot:
        fresh = self._statuses()
        self.take_notes(fresh)
        for f in fresh:
            f.price_decimals, f.amount_decimals = self.decimals.get(f.symbol, (None, None))
        conn = self._connection() if self._connection is not None else None
        with self._lock:
            # a feed that stopped (detached from the store at the end of the run) keeps its
            # last status, so the last frame shows the run's last real state, not an empty table
            for f in fresh:
                if f.symbol in self.seen:  # counted as the strategy saw them, like the summary
                    f.bars = dict(self.seen[f.symbol])
                self._last_feeds[(f.symbol, f.timeframe)] = f
            feeds = list(self._last_feeds.values())
            if fresh or self._last_conn is None:
                self._last_conn = conn
            else:
                conn = self._last_conn
            return Snapshot(
                title=self.title,
                elapsed_s=self.clock.monotonic() - self._started,
                feeds=feeds,
                connection=conn,
                broker=BrokerStatus(**{k: getattr(self._broker, k) for k in BrokerStatus.__slots__}),
                events=list(self._events),
                closes={k: list(v) for k, v in self._closes.items()},
            )

    def close(self) -> None:
        if self._file is not None:
            self.take_notes()  # feeds still attached (a forced stop) may have told more
            with self._lock:
                self._file.close()
                self._file = None


def _note_record(symbol: str, timeframe: str, n: DataNote) -> tuple[str, dict[str, Any]]:
    """The event line and the events-file record of one data note."""
    head = f"{symbol} {timeframe}: "
    rec: dict[str, Any] = {"type": n.kind, "symbol": symbol, "timeframe": timeframe}
    if n.kind == "skipped":
        rec.update({"from": n.first_ms, "to": n.last_ms, "count": n.count, "reason": n.reason,
                    "from_iso": iso_utc(n.first_ms), "to_iso": iso_utc(n.last_ms)})
        many = "" if n.count == 1 else "s"
        return (f"{head}{n.count} bar{many} skipped {iso_utc(n.first_ms)}..{iso_utc(n.last_ms)}: "
                f"{n.reason}", rec)
    if n.kind == "revised":
        rec.update({"ts": n.first_ms, "reason": n.reason,
                    "was": None if n.was is None else list(n.was)[1:],
                    "now": None if n.now is None else list(n.now)[1:]})
        return f"{head}bar {iso_utc(n.first_ms)} revised: {n.reason}", rec
    rec.update({"event": "short", "asked": n.asked, "got": n.count, "from": n.first_ms,
                "to": n.last_ms, "message": n.reason})
    return head + n.reason, rec


def market_decimals(market: dict[str, Any], precision_mode: int | None) -> tuple[int | None, int | None]:
    """Price and amount decimals of a ccxt market (``precision`` as a tick size or as digits)."""
    from decimal import Decimal

    out: list[int | None] = []
    for key in ("price", "amount"):
        p = (market.get("precision") or {}).get(key)
        if p is None:
            out.append(None)
        elif precision_mode == 4:  # ccxt TICK_SIZE: 0.01 -> 2 decimals
            exp = Decimal(str(p)).normalize().as_tuple().exponent
            out.append(max(0, -exp) if isinstance(exp, int) else None)
        else:  # DECIMAL_PLACES (or digits)
            out.append(int(p))
    return out[0], out[1]


def iso_utc(ms: int) -> str:
    """A bar time for people: ISO 8601 in UTC (``2026-12-05T12:30:43Z``; ms when not whole)."""
    from datetime import datetime, timezone

    t = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + (f".{ms % 1000:03d}" if ms % 1000 else "") + "Z"


def _hms(ms: int) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%H:%M:%S")
