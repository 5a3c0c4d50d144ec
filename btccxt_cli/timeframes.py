"""Timeframe arithmetic: parse "1m", bar grids (where bars open), backtrader TimeFrame mapping.

Bars of most timeframes open on multiples of their length since 1970-01-01 00:00 UTC, but not
all: a week opens on Monday at most exchanges (1970-01-01 was a Thursday), a month on the 1st
of a calendar month, and okx's (and bitget's) raw 6H..1M bars at midnight Hong Kong time. A
``BarGrid`` says where the bars of one timeframe open; ``bar_grid(exchange_id, timeframe)``
holds each exchange's real rule (docs/data-core.md, "Bar alignment"). Every piece of bar
arithmetic (assembler, gaps, backfill, feeds) asks a grid instead of computing ``ts % tf``.

Pure functions, no I/O, no third-party imports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "UNIT_MS",
    "parse_timeframe",
    "timeframe_ms",
    "bar_open",
    "bar_close",
    "BarGrid",
    "bar_grid",
    "as_grid",
    "DAY_MS",
    "WEEK_MS",
    "MONDAY_MS",
    "HK_MS",
    "from_backtrader",
    "to_backtrader",
    "BT_MINUTES",
]

UNIT_MS = {
    "s": 1_000,
    "m": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
    "w": 604_800_000,
    "M": 2_592_000_000,  # nominal 30 days; calendar months are not bar-aligned
    "y": 31_536_000_000,
}

_RE = re.compile(r"^(\d+)([smhdwMy])$")

# backtrader.TimeFrame constants, copied so that this module never imports backtrader.
BT_TICKS, BT_MICRO, BT_SECONDS, BT_MINUTES, BT_DAYS, BT_WEEKS, BT_MONTHS, BT_YEARS = (
    1, 2, 3, 4, 5, 6, 7, 8,
)
_BT_UNIT = {BT_SECONDS: "s", BT_MINUTES: "m", BT_DAYS: "d", BT_WEEKS: "w", BT_MONTHS: "M", BT_YEARS: "y"}


def parse_timeframe(tf: str) -> tuple[int, str]:
    """Split ``"15m"`` into ``(15, "m")``; raise ``ValueError`` on anything else."""
    m = _RE.match(tf.strip()) if isinstance(tf, str) else None
    if not m or int(m.group(1)) <= 0:
        raise ValueError(f"not a timeframe: {tf!r} (expected a number and a unit, like 1s, 1m, 4h, 1d)")
    return int(m.group(1)), m.group(2)


def timeframe_ms(tf: str) -> int:
    """Length of one bar of ``tf`` in milliseconds."""
    n, unit = parse_timeframe(tf)
    return n * UNIT_MS[unit]


def bar_open(ts_ms: int, tf_ms: int) -> int:
    """Open time of the bar that contains ``ts_ms`` (bars aligned to the epoch)."""
    return ts_ms - ts_ms % tf_ms


def bar_close(open_ms: int, tf_ms: int) -> int:
    """End of the bar opened at ``open_ms`` (exclusive)."""
    return open_ms + tf_ms


DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS
MONDAY_MS = 4 * DAY_MS  # 1970-01-05, the first Monday after the epoch (a Thursday)
HK_MS = 8 * 3_600_000  # Hong Kong time is UTC+8 all year (no daylight saving)


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _civil_month(days: int) -> int:
    """Months since 1970-01 of the date ``days`` after 1970-01-01."""
    z = days + 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    m = mp + 3 if mp < 10 else mp - 9
    y = yoe + era * 400 + (m <= 2)
    return (y - 1970) * 12 + m - 1


@dataclass(frozen=True, slots=True)
class BarGrid:
    """Where the bars of one timeframe open, and so where each one closes.

    Two kinds:

    * fixed length (``months == 0``): bars of ``step_ms`` open at ``offset_ms + k * step_ms``
      for every integer ``k`` (``BarGrid(WEEK_MS, MONDAY_MS)``: weeks from Monday 00:00 UTC);
    * calendar months (``months > 0``): a bar opens at 00:00 of the 1st of every ``months``-th
      month counted from January 1970 (so ``3`` gives quarters), on a calendar that runs
      ``offset_ms`` ahead of UTC (``HK_MS``: months of Hong Kong time open at 16:00 UTC the day
      before). Bars are 28 to 31 days long.

    Every bar has an index (``index``/``open_at``), so counting and stepping are exact for
    months too. ``nominal_ms`` is the length to use where only a rough size matters (timeouts).
    """

    step_ms: int = 0
    offset_ms: int = 0
    months: int = 0

    def __post_init__(self) -> None:
        if self.months < 0 or (self.months == 0 and self.step_ms <= 0):
            raise ValueError("a bar grid needs step_ms > 0 or months > 0")

    @classmethod
    def fixed(cls, step_ms: int, offset_ms: int = 0) -> BarGrid:
        if step_ms <= 0:
            raise ValueError("tf_ms must be positive")
        return cls(step_ms, offset_ms % step_ms)

    @property
    def nominal_ms(self) -> int:
        return self.step_ms if not self.months else self.months * UNIT_MS["M"]

    @property
    def regular(self) -> bool:
        """All bars have the same length (``step_ms``)."""
        return not self.months

    def index(self, ts_ms: int) -> int:
        """Index of the bar containing ``ts_ms`` (any integer; consecutive bars differ by 1)."""
        if not self.months:
            return (ts_ms - self.offset_ms) // self.step_ms
        return _civil_month((ts_ms + self.offset_ms) // DAY_MS) // self.months

    def open_at(self, index: int) -> int:
        """Open time of bar number ``index``."""
        if not self.months:
            return self.offset_ms + index * self.step_ms
        y, m = divmod(index * self.months, 12)
        return _days_from_civil(1970 + y, m + 1, 1) * DAY_MS - self.offset_ms

    def open_of(self, ts_ms: int) -> int:
        """Open time of the bar that contains ``ts_ms``."""
        if not self.months:
            return ts_ms - (ts_ms - self.offset_ms) % self.step_ms
        return self.open_at(self.index(ts_ms))

    def ceil(self, ts_ms: int) -> int:
        """The first bar open at or after ``ts_ms``."""
        o = self.open_of(ts_ms)
        return o if o == ts_ms else self.next_open(o)

    def next_open(self, open_ms: int) -> int:
        """Open of the bar after the one containing ``open_ms`` (= that bar's close)."""
        if not self.months:
            return self.open_of(open_ms) + self.step_ms
        return self.open_at(self.index(open_ms) + 1)

    close_of = next_open  # a bar ends (exclusive) where the next one opens

    def prev_open(self, open_ms: int) -> int:
        """Open of the bar before the one containing ``open_ms``."""
        if not self.months:
            return self.open_of(open_ms) - self.step_ms
        return self.open_at(self.index(open_ms) - 1)

    def shift(self, open_ms: int, bars: int) -> int:
        """Open of the bar ``bars`` bars after (negative: before) the one containing ``open_ms``."""
        if not self.months:
            return self.open_of(open_ms) + bars * self.step_ms
        return self.open_at(self.index(open_ms) + bars)

    def length(self, open_ms: int) -> int:
        """Length in ms of the bar containing ``open_ms``."""
        return self.step_ms if not self.months else self.next_open(open_ms) - self.open_of(open_ms)

    def on_grid(self, ts_ms: int) -> bool:
        return self.open_of(ts_ms) == ts_ms

    def count(self, first_open: int, last_open: int) -> int:
        """Bars in the inclusive range of opens ``[first_open, last_open]`` (0 if reversed)."""
        return max(0, self.index(last_open) - self.index(first_open) + 1)

    def bars_in(self, start_ms: int, end_ms: int) -> int:
        """How many bars open in the half-open window ``[start_ms, end_ms)``."""
        return max(0, self.index(self.ceil(end_ms)) - self.index(self.ceil(start_ms)))

    def opens_between(self, start_ms: int, end_ms: int) -> list[int]:
        """Every bar open in the half-open window ``[start_ms, end_ms)``."""
        if end_ms <= start_ms:
            return []
        first, last = self.index(self.ceil(start_ms)), self.index(end_ms - 1)
        return [self.open_at(k) for k in range(first, last + 1)]


def as_grid(tf: int | BarGrid) -> BarGrid:
    """A grid as is; a bar length in ms as the epoch-aligned grid of that length."""
    return tf if isinstance(tf, BarGrid) else BarGrid.fixed(int(tf))


#: weekday on which weekly bars open, per exchange (ms after the epoch's Thursday 00:00 UTC)
WEEK_OPENS: dict[str, int] = {
    "binance": MONDAY_MS, "okx": MONDAY_MS, "bybit": MONDAY_MS, "bitget": MONDAY_MS,
    # kucoin's 1week bars open on Thursday 00:00 UTC (Kucoin/kucoin-api-docs#350, #373);
    # kraken's interval=10080 bars are multiples of their length since the epoch
    "kucoin": 0, "kraken": 0,
}
#: real bar lengths where ccxt's timeframe name says otherwise: kraken's ``2w`` is its
#: interval 21600 minutes, 15 days
LENGTH_OVERRIDES: dict[tuple[str, str], int] = {("kraken", "2w"): 15 * DAY_MS}


def bar_grid(exchange_id: str | None, timeframe: str) -> BarGrid:
    """Where ``exchange_id``'s bars of the ccxt ``timeframe`` open, as btccxt reads them.

    Seconds to days: multiples of the length since the epoch (UTC midnight for days). Months
    and years: UTC calendar months. Weeks: Monday 00:00 UTC, except where ``WEEK_OPENS`` says
    Thursday (kucoin, kraken). okx and bitget have Hong Kong aligned raw bars from 6 h up, but
    btccxt asks both for the UTC ones (``6Hutc``, ``1Dutc``, ...) over REST and WebSocket alike.
    An exchange not in the table gets Monday weeks.
    """
    n, unit = parse_timeframe(timeframe)
    override = LENGTH_OVERRIDES.get(((exchange_id or "").lower(), timeframe))
    if override is not None:
        return BarGrid.fixed(override)
    if unit == "M":
        return BarGrid(months=n)
    if unit == "y":
        return BarGrid(months=12 * n)
    if unit == "w":
        return BarGrid.fixed(n * WEEK_MS, WEEK_OPENS.get((exchange_id or "").lower(), MONDAY_MS))
    return BarGrid.fixed(n * UNIT_MS[unit])


def to_backtrader(tf: str) -> tuple[int, int]:
    """``"5m"`` -> ``(bt.TimeFrame.Minutes, 5)``; hours become minutes as backtrader has no hours."""
    n, unit = parse_timeframe(tf)
    if unit == "h":
        return BT_MINUTES, n * 60
    rev = {v: k for k, v in _BT_UNIT.items()}
    return rev[unit], n


def from_backtrader(timeframe: int, compression: int) -> str:
    """``(bt.TimeFrame.Minutes, 60)`` -> ``"1h"``; raise ``ValueError`` for ticks and sub-second."""
    unit = _BT_UNIT.get(timeframe)
    if unit is None:
        raise ValueError("only Seconds, Minutes, Days, Weeks, Months and Years timeframes are supported")
    if unit == "m" and compression % 60 == 0:
        return f"{compression // 60}h"
    return f"{compression}{unit}"
