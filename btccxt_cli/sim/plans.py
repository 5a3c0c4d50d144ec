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

__all__ = ["CrossPlan", "cross_plan", "TrailPlan", "trail_plan"]


@dataclass(frozen=True)
class CrossPlan:
    side: str  # "buy" below the path or "sell" above it
    price: float  # on the market's tick grid
    when_ms: int  # the earliest exchange time (ms) a request can see the path at the price;
    # at the next whole second it is past the price, so the engine fills there at the latest


STEP_MS = 5
"""The plan looks at the path every ``STEP_MS``: the engine also prices the path at the time
of each request ("now", any millisecond), not only at whole seconds."""


def cross_plan(model: MarketModel, symbol: str, now_ms: int, *, quiet_s: float = 4.0,
               horizon_s: int = 900) -> CrossPlan:
    """A limit price the path does not touch for ``quiet_s`` seconds after ``now_ms``, then
    crosses.

    Buys below the lowest price of the quiet window, or sells above the highest, whichever
    the path reaches first. The window is priced every ``STEP_MS`` and at every whole second
    (where the matching engine looks), and the price keeps one tick plus the largest move
    between two looks away from it. ``when_ms`` follows the last look before the path comes
    within that move of the price; a crossing that turns back before the next whole second
    would make the fill time uncertain, so the price then moves a tick further out. Raises
    ``ValueError`` if the path stays in range for ``horizon_s`` seconds.

    Earlier versions sampled every 50 ms with a margin of one tick: the BTC/USDT path moves
    more than a tick in 50 ms, and 4 of 200 plans crossed 1-5 s early (a stop filled before
    test_broker_stops moved the clock; a fill came before test_orders_db_lock took its lock).
    """
    spec = model.spec(symbol)
    eng = Engine(model, {symbol: spec}, [])
    tick = spec.tick
    start = (now_ms + int(quiet_s * 1000)) // 1000 * 1000 + 1000
    seq = [eng.price(symbol, t) for t in range(now_ms, start, STEP_MS)]
    slack = max((abs(b - a) for a, b in zip(seq, seq[1:], strict=False)), default=0.0)
    window = seq + [eng.price(symbol, t) for t in range((now_ms // 1000 + 1) * 1000, start, 1000)]
    lo_n = math.floor((min(window) - slack) / tick) - 1
    hi_n = math.ceil((max(window) + slack) / tick) + 1
    end = start + horizon_s * 1000
    for widen in range(100):
        lo = round((lo_n - widen) * tick, spec.price_decimals)
        hi = round((hi_n + widen) * tick, spec.price_decimals)
        for t in range(start, end, STEP_MS):
            p = eng.price(symbol, t)
            if p <= lo + slack or p >= hi - slack:
                break
        else:
            raise ValueError(f"the price path of {symbol} stays in range for {horizon_s} s")
        side, price = ("buy", lo) if p <= lo + slack else ("sell", hi)
        whole = -(-t // 1000) * 1000
        at = eng.price(symbol, whole)
        if (at <= price) if side == "buy" else (at >= price):
            # the look before was not that close: the path reaches the price after it
            return CrossPlan(side, price, t - STEP_MS + 1)
    raise ValueError(f"no price that the path of {symbol} crosses and stays past to a whole second")


@dataclass(frozen=True)
class TrailPlan:
    ratio: float  # the trail: a fraction of the best price
    when_ms: int  # a whole second by which a trailing stop placed at ``now_ms`` has triggered
    high: float  # the highest (a sell) or lowest (a buy) whole-second price until ``when_ms``
    peak: float  # the highest (lowest) price the path reaches at any time until ``when_ms``,
    # the most a trailing stop can have trailed from (the engine also looks between seconds)


TRAIL_RATIOS = (0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02)


def trail_plan(model: MarketModel, symbol: str, now_ms: int, side: str, *, quiet_s: float = 4.0,
               horizon_s: int = 3600, ratios: tuple[float, ...] = TRAIL_RATIOS) -> TrailPlan:
    """A trail that a trailing stop placed within a second of ``now_ms`` keeps for ``quiet_s``
    seconds, and a time by which it has certainly triggered.

    The path is priced every ``STEP_MS`` over the quiet window, from ``now_ms``; no price
    there is ``ratio`` back from the best before it (with the largest move between two looks
    as slack), so the stop cannot trigger whatever times the engine looks. After it, the
    engine looks at every whole second at least: a trailing stop has triggered by the first
    whole second that is ``ratio`` back from the best of the whole seconds before it (more
    looks only move its stop closer). The smallest of ``ratios`` that holds is taken; raises
    ``ValueError`` if none triggers within ``horizon_s`` seconds.
    """
    eng = Engine(model, {symbol: model.spec(symbol)}, [])
    sell = side == "sell"
    quiet_end = now_ms + int(quiet_s * 1000)
    seq = [eng.price(symbol, t) for t in range(now_ms, quiet_end + 1000, STEP_MS)]
    slack = max((abs(b - a) for a, b in zip(seq, seq[1:], strict=False)), default=0.0)
    first = (now_ms // 1000 + 2) * 1000  # the engine has the stop by then
    end = quiet_end + horizon_s * 1000
    for ratio in ratios:
        best = seq[0]
        held = True
        for p in seq:
            best = max(best, p) if sell else min(best, p)
            if (p - slack <= best * (1 - ratio)) if sell else (p + slack >= best * (1 + ratio)):
                held = False
                break
        if not held:
            continue
        top = None
        for t in range(first, end, 1000):
            p = eng.price(symbol, t)
            top = p if top is None else (max(top, p) if sell else min(top, p))
            if t > quiet_end and ((p <= top * (1 - ratio)) if sell else (p >= top * (1 + ratio))):
                return TrailPlan(ratio, t, top, _peak(eng, symbol, now_ms, t, sell))
    raise ValueError(f"no trail in {ratios} holds for {quiet_s} s and triggers within {horizon_s} s")


def _peak(eng: Engine, symbol: str, start_ms: int, end_ms: int, sell: bool) -> float:
    """The path's highest (``sell``) or lowest price in ``[start_ms, end_ms]`` at any
    millisecond: priced every ``STEP_MS``, widened by the largest move between two looks."""
    seq = [eng.price(symbol, t) for t in range(start_ms, end_ms + 1, STEP_MS)]
    slack = max((abs(b - a) for a, b in zip(seq, seq[1:], strict=False)), default=0.0)
    return max(seq) + slack if sell else min(seq) - slack
