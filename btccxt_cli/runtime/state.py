"""RunMonitor: what the run has seen, for the dashboard, the events file and the summary.

The strategy thread calls ``on_bar``/``on_state``; the dashboard thread calls
``snapshot()``. Both take one short lock; nothing here waits on rendering or I/O of the
other side. The events file is JSON Lines, one record per bar delivered to the strategy
and one per state change, flushed per line so that a killed run loses nothing written.
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
from btccxt_cli.model import BrokerStatus, ConnectionStatus, FeedStatus, Snapshot

__all__ = ["RunMonitor"]

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
        self._broker = BrokerStatus()
        self._started = clock.monotonic()
        self._on_line = on_line
        self._file: IO[str] | None = None
        if events_path is not None:
            events_path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(events_path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    # ------------------------------------------------------------ inputs (strategy thread)
    def on_bar(self, symbol: str, timeframe: str, ts: int, ohlcv: tuple[float, ...], source: str,
               latency_ms: float | None) -> None:
        rec: dict[str, Any] = {"type": "bar", "symbol": symbol, "timeframe": timeframe, "ts": ts,
                               "open": ohlcv[0], "high": ohlcv[1], "low": ohlcv[2], "close": ohlcv[3],
                               "volume": ohlcv[4], "source": source}
        if source == "live" and latency_ms is not None:
            rec["latency_ms"] = round(latency_ms, 3)
        with self._lock:
            self.bars[symbol] = self.bars.get(symbol, 0) + 1
            if source == "live":
                self.live_bars[symbol] = self.live_bars.get(symbol, 0) + 1
            self._closes.setdefault(symbol, deque(maxlen=32)).append(ohlcv[3])
        self._write(rec)
        if self._on_line is not None:
            lat = f" latency {latency_ms:.1f} ms" if rec.get("latency_ms") is not None else ""
            self._on_line(f"bar {symbol} {timeframe} {ts} O {ohlcv[0]:.8g} H {ohlcv[1]:.8g} "
                          f"L {ohlcv[2]:.8g} C {ohlcv[3]:.8g} V {ohlcv[4]:.8g} [{source}]{lat}")

    def on_state(self, symbol: str, state: str, message: str = "") -> None:
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
        if self._on_line is not None:
            self._on_line(f"event {text}")

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
        feeds = self._statuses()
        conn = self._connection() if self._connection is not None else None
        with self._lock:
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
            with self._lock:
                self._file.close()
                self._file = None


def _hms(ms: int) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%H:%M:%S")
