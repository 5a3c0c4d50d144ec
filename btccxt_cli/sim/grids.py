"""Where the simulated venues' bars open: the real exchanges' rules as ``BarGrid``s.

Each venue's ``grids`` table (venue interval -> grid) is built from these. They state the
exchanges' rules on the simulator's side, independently of the client's table in
``btccxt_cli.timeframes.bar_grid`` (only the grid arithmetic is shared), so the end-to-end
tests hold the client's rule against the simulator's.

Must not import ccxt or anything from the client side of btccxt.
"""

from __future__ import annotations

from btccxt_cli.sim.market import TIMEFRAMES_MS
from btccxt_cli.timeframes import HK_MS, MONDAY_MS, WEEK_MS, BarGrid

__all__ = ["EPOCH_GRIDS", "MONDAY_WEEK", "THURSDAY_WEEK", "UTC_MONTH", "hk_grid"]

#: the same lengths as epoch-aligned bar grids
EPOCH_GRIDS: dict[str, BarGrid] = {tf: BarGrid.fixed(ms) for tf, ms in TIMEFRAMES_MS.items()}

# The real exchanges' long bars (see each venue's ``grids``):
MONDAY_WEEK = BarGrid.fixed(WEEK_MS, MONDAY_MS)
"""Weeks from Monday 00:00 UTC (binance, bybit, okx/bitget ``1Wutc``)."""
THURSDAY_WEEK = BarGrid.fixed(WEEK_MS)
"""Weeks on multiples of 7 days since 1970-01-01, a Thursday (kucoin ``1week``, kraken)."""
UTC_MONTH = BarGrid(months=1)
"""Calendar months from the 1st, 00:00 UTC."""


def hk_grid(grid: BarGrid) -> BarGrid:
    """``grid`` on Hong Kong time (UTC+8): okx's and bitget's raw 6H..1M bars."""
    if grid.months:
        return BarGrid(months=grid.months, offset_ms=HK_MS)
    return BarGrid.fixed(grid.step_ms, grid.offset_ms - HK_MS)
