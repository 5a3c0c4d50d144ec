"""Plans on the simulator's seeded price path: when will it cross a price?

The market model is deterministic, so a test or a benchmark can pick a limit price the path
leaves alone for a while and then crosses, and move the simulated exchange's clock past the
crossing (``Simulator.clock_offset_ms``) to make the fill happen exactly when it wants.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from btccxt_cli.sim.accounts import Engine
from btccxt_cli.sim.market import MarketModel

__all__ = ["CrossPlan", "cross_plan"]


@dataclass(frozen=True)
class CrossPlan:
    side: str  # "buy" below the path or "sell" above it
    price: float  # on the market's tick grid
    when_ms: int  # the exchange time (a whole second) the path first reaches the price


def cross_plan(model: MarketModel, symbol: str, now_ms: int, *, quiet_s: float = 4.0,
               horizon_s: int = 900) -> CrossPlan:
    """A limit price the path does not touch for ``quiet_s`` seconds after ``now_ms``, then
    crosses.

    Buys below the lowest price of the quiet window (sampled every 50 ms), or sells above the
    highest, whichever the path reaches first, checked at whole seconds as the matching engine
    does. Raises ``ValueError`` if the path stays in range for ``horizon_s`` seconds.
    """
    spec = model.spec(symbol)
    eng = Engine(model, {symbol: spec}, [])
    start = (now_ms + int(quiet_s * 1000)) // 1000 * 1000 + 1000
    # every 50 ms, and every whole second before ``start`` (the engine's checks: 50 ms steps
    # from an unaligned ``now_ms`` never land on them, and a whole second priced past the
    # window's range filled the order seconds early)
    times = [now_ms + i * 50 for i in range(int(quiet_s * 20) + 1)]
    times += range((now_ms // 1000 + 1) * 1000, start, 1000)
    window = [eng.price(symbol, t) for t in times]
    # on the tick grid, away from the window (rounded to the nearest, a sell's price could
    # fall back inside the window's range and fill early)
    lo = round(math.floor((min(window) - spec.tick) / spec.tick) * spec.tick, spec.price_decimals)
    hi = round(math.ceil((max(window) + spec.tick) / spec.tick) * spec.tick, spec.price_decimals)
    for t in range(start, start + horizon_s * 1000, 1000):
        p = eng.price(symbol, t)
        if p <= lo:
            return CrossPlan("buy", lo, t)
        if p >= hi:
            return CrossPlan("sell", hi, t)
    raise ValueError(f"the price path of {symbol} stays in range for {horizon_s} s")
