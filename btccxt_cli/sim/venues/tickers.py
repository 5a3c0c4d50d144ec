"""The 24 h statistics the venues' ticker endpoints report (binance ``/api/v3/ticker/24hr``,
okx ``/api/v5/market/ticker``), computed from the venue's own 1h bars.

The window holds the 1h bars whose open lies in ``[open_of(now - 24 h), now]``: the bar holding
the moment 24 h ago, the closed bars since and the forming bar as its partial state (what the
venue's klines / candles endpoint answers for that window). So at a full hour the window is
exactly the 24 closed bars before it, otherwise up to 25 h long.

* ``last``: the matching engine's traded price now (``engine.price(symbol, now)``), what a
  market order would fill at;
* ``open``: the first bar's open; ``high`` / ``low``: the bars' extremes, widened to ``last``
  (the forming bar's close is the price clamped into its growing range, so the price now can
  lie just outside it; a trade at ``last`` is in the window);
* ``volume``: the bars' base volume (exact, in lots); ``quote_volume`` the sum over the bars
  of ``v * (o + h + l + c) / 4``, as the klines' quote volume;
* ``bid`` / ``ask``: one tick below and above ``last``; their size the volume of the current
  1 s bar (what the engine fills in this second with ``liquidity=1``).

Must not import ccxt or anything from the client side of btccxt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from btccxt_cli.sim.market import Candle

if TYPE_CHECKING:
    from btccxt_cli.sim.venues import Venue

__all__ = ["DayStats", "day_stats"]

WINDOW_BARS = 24


@dataclass(frozen=True)
class DayStats:
    """The 24 h statistics of one market at ``now`` (see the module docstring)."""

    now: int
    open_time: int  # open of the window's first bar (``now`` when there is none)
    last: float
    bid: float
    ask: float
    top_size: float  # base units at the bid and at the ask
    open: float
    high: float
    low: float
    lots: int  # base volume in lots of the market
    volume: float  # base volume, ``lots / lot_scale``
    quote_volume: float
    bars: list[Candle]


def day_stats(venue: Venue, symbol: str) -> DayStats:
    """The 24 h statistics of ``symbol`` on ``venue`` now, from the venue's 1h bars."""
    server = venue.server
    spec = venue.specs[symbol]
    now = server.now_ms()
    grid = venue.grid_for("1h")
    start = grid.shift(now, -WINDOW_BARS)
    bars = server.bars(symbol, grid, start=start, end=now, limit=WINDOW_BARS + 1,
                       from_start=True)
    last = server.engine.price(symbol, now)
    scale = spec.price_scale
    ticks = int(round(last * scale))
    bid = max(1, ticks - 1) / scale
    ask = (ticks + 1) / scale
    sec = now - now % 1000
    top = server.model.candle(symbol, 1000, sec)[5]
    if not bars:  # before the listing, or a ``rest_hole`` fault over the whole window
        return DayStats(now, now, last, bid, ask, top, last, last, last, 0, 0.0, 0.0, [])
    lots = sum(int(round(c[5] * spec.lot_scale)) for c in bars)
    quote = sum(c[5] * (c[1] + c[2] + c[3] + c[4]) / 4.0 for c in bars)
    high = max(max(c[2] for c in bars), last)
    low = min(min(c[3] for c in bars), last)
    return DayStats(now, bars[0][0], last, bid, ask, top, bars[0][1], high, low, lots,
                    lots / spec.lot_scale, quote, bars)
