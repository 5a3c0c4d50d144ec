"""Frozen values shared by every layer: candles, bar sources, feed states, status snapshots.

No I/O and no third-party imports.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = [
    "Candle", "BarSource", "FeedState", "FeedEvent", "FeedStatus", "ConnectionStatus",
    "BrokerStatus", "DerivPosition", "Snapshot", "DataNote",
]


class Candle(NamedTuple):
    """One OHLCV bar as the exchange reports it; ``ts`` is the bar's open time in ms (UTC)."""

    ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float

    @classmethod
    def from_ccxt(cls, row: list | tuple) -> Candle:
        """Copy a ccxt ``[ts, o, h, l, c, v]`` row (ccxt.pro updates its rows in place)."""
        return cls(int(row[0]), float(row[1]), float(row[2]), float(row[3]), float(row[4]),
                   float(row[5] or 0.0))


class BarSource(str, enum.Enum):
    """How a closed bar reached us."""

    BACKFILL = "backfill"
    LIVE = "live"
    GAPFILL = "gapfill"


class FeedState(str, enum.Enum):
    """Data states; the names match backtrader's data notifications."""

    CONNECTED = "CONNECTED"
    DISCONNECTED = "DISCONNECTED"
    CONNBROKEN = "CONNBROKEN"
    DELAYED = "DELAYED"
    LIVE = "LIVE"
    NOTSUBSCRIBED = "NOTSUBSCRIBED"
    NOTSUPPORTED_TF = "NOTSUPPORTED_TF"
    UNKNOWN = "UNKNOWN"
    OVER = "OVER"


@dataclass(frozen=True, slots=True)
class FeedEvent:
    """What a source hands to a feed: a closed bar or a state change, in delivery order.

    ``recv_ns`` is the ``perf_ns`` reading when the bar became known closed (for latency).
    """

    kind: str  # "bar" | "state" | "end"
    candle: Candle | None = None
    source: BarSource | None = None
    state: FeedState | None = None
    message: str = ""
    recv_ns: int = 0


@dataclass(frozen=True, slots=True)
class DataNote:
    """Something about a feed's bars worth telling: ``kind`` is

    * ``"skipped"``: bars ``first_ms .. last_ms`` (opens, inclusive; ``count`` bars) were not
      delivered: a REST answer covered them without rows (``reason`` says why);
    * ``"revised"``: the bar opened at ``first_ms`` (= ``last_ms``, ``count`` 1) came from REST
      with other values than ``was`` (a live final, a delivered bar, or the cached bar);
      ``now`` is REST's;
    * ``"history"``: history delivered ``count`` bars of the ``asked`` (``first_ms``: the first
      bar asked for, ``last_ms``: the last delivered); ``reason`` is the line for people.

    ``seq`` numbers one feed's notes from 1, so a reader knows which it has seen.
    """

    seq: int
    kind: str
    first_ms: int
    last_ms: int
    count: int
    reason: str
    was: Candle | None = None
    now: Candle | None = None
    asked: int = 0


@dataclass(slots=True)
class FeedStatus:
    """A copy of one feed's status for dashboards and metrics (taken under the feed's lock)."""

    symbol: str
    timeframe: str
    mode: str
    state: str = FeedState.UNKNOWN.value
    transport: str = ""
    last_bar: Candle | None = None
    bars: dict[str, int] = field(default_factory=lambda: {s.value: 0 for s in BarSource})
    reconnects: int = 0
    last_message_age_s: float | None = None
    last_error: str = ""
    rest_calls: int = 0
    gaps_filled: int = 0
    latency_ms_last: float | None = None
    latency_ms_p50: float | None = None
    latency_ms_p99: float | None = None
    backoff_s: float | None = None  # seconds until the next reconnect/retry, while waiting
    price_decimals: int | None = None  # the market's price precision (None: unknown)
    amount_decimals: int | None = None  # the market's amount precision (None: unknown)
    skipped: int = 0  # bars not delivered: REST answers covered them without a row
    skipped_ranges: tuple[tuple[int, int, int], ...] = ()  # the last few: (first, last, bars)
    revised: int = 0  # bars whose REST record differed from a value seen, delivered or cached
    history_short: str = ""  # history got fewer bars than asked: the line saying so
    notes: tuple[DataNote, ...] = ()  # the latest notes, oldest first (a shared tuple)


@dataclass(slots=True)
class ConnectionStatus:
    """One exchange connection as the dashboard shows it."""

    exchange: str
    mode: str
    state: str = "UNKNOWN"
    reconnects: int = 0
    rest_calls: int = 0
    rate_limited: int = 0
    backoff_s: float | None = None


@dataclass(slots=True)
class BrokerStatus:
    """Cash, value, positions and open orders (paper or live)."""

    mode: str = "paper"
    cash: float = 0.0
    value: float = 0.0
    positions: dict[str, float] = field(default_factory=dict)
    open_orders: int = 0
    trades: int = 0
    pnl: float = 0.0
    balances: dict[str, float] = field(default_factory=dict)  # asset -> total (live only)
    orders: list[str] = field(default_factory=list)  # one line per open order (live only)
    updates: str = ""  # live: how order changes arrive ("websocket", "reconnecting", "polling")
    derivs: list[DerivPosition] = field(default_factory=list)  # swap/futures positions


@dataclass(frozen=True, slots=True)
class DerivPosition:
    """One swap/futures position for the broker panel (paper or live).

    ``size`` in base units, signed (long > 0, short < 0); ``liquidation`` None when unknown;
    ``funding``: funding paid so far in this run (quote units; negative: received)."""

    symbol: str
    size: float
    entry: float
    mark: float
    upnl: float
    liquidation: float | None
    leverage: float
    margin_mode: str
    funding: float = 0.0

    @property
    def side(self) -> str:
        return "long" if self.size > 0 else "short" if self.size < 0 else "flat"


@dataclass(slots=True)
class Snapshot:
    """Everything the dashboard renders, copied at one instant (no live references)."""

    title: str
    elapsed_s: float
    feeds: list[FeedStatus] = field(default_factory=list)
    connection: ConnectionStatus | None = None
    broker: BrokerStatus | None = None
    events: list[str] = field(default_factory=list)
    closes: dict[str, list[float]] = field(default_factory=dict)  # recent closes per symbol
