"""Timeframe arithmetic: parse "1m", bar open/close, backtrader TimeFrame mapping.

Pure functions, no I/O, no third-party imports.
"""

from __future__ import annotations

import re

__all__ = [
    "UNIT_MS",
    "parse_timeframe",
    "timeframe_ms",
    "bar_open",
    "bar_close",
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
