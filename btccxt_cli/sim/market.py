"""Deterministic market truth for the exchange simulator.

Every price, candle and volume is a pure function of ``(seed, symbol, timeframe, times)``: no
state, no iteration over time, O(1) per call. The same model answers REST, WebSocket pushes and
the in-process ``truth()`` API, so a client can compare what it received with what is true.

The price path is ``base * exp(noise(t))`` where ``noise`` is a sum of four octaves of smooth
hash-based value noise at scales of 1 s, 1 min, 1 h and 1 d. Candles derive from it:

* ``o = price(open)``, ``c = price(open + tf)``, both rounded to the market's tick;
* ``h >= max(o, c)`` and ``l <= min(o, c)`` by a hash-based margin that grows with ``sqrt(tf)``;
* ``v > 0`` rounded down to the market's lot step.

Values are integers of ticks and lots internally; the floats returned are ``round(n * step, d)``,
so ``float(f"{x:.{d}f}") == x`` and what the venues send as strings parses back to the very same
float (see :meth:`MarketSpec.fmt_price`).

Timeframes are independent: a 1m bar's open/close equal the first 1s bar's open and the last 1s
bar's close (both come from :meth:`MarketModel.price`), but highs, lows and volumes are not
aggregated from smaller bars.

Must not import ccxt or anything from the client side of btccxt.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["Candle", "LISTING_MS", "MarketModel", "MarketSpec", "TIMEFRAMES_MS", "split_symbol"]

Candle = tuple[int, float, float, float, float, float]

#: Every simulated market starts trading here (2017-07-14 02:40 UTC); no bars exist before.
LISTING_MS = 1_500_000_000_000

#: Bar lengths that open on multiples of themselves since 1970-01-01 00:00 UTC, in milliseconds
#: (what the venues serve besides weeks and months).
TIMEFRAMES_MS: dict[str, int] = {
    "1s": 1_000,
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
    "3d": 259_200_000,
}

_M64 = (1 << 64) - 1
_G = 0x9E3779B97F4A7C15  # splitmix64 increment
_K1 = 0xBF58476D1CE4E5B9
_K2 = 0x94D049BB133111EB
_U53 = 2.0 ** -53
_U21 = 2.0 ** -21

# (lattice spacing in ms, amplitude of log-price noise)
_OCTAVES = ((1_000, 0.0002), (60_000, 0.0012), (3_600_000, 0.006), (86_400_000, 0.035))

# Plausible starting prices for well-known bases; others come from a hash.
_BASE_PRICES = {
    "BTC": 60_000.0, "ETH": 3_000.0, "SOL": 150.0, "XRP": 0.6, "BNB": 550.0, "ADA": 0.45,
    "DOGE": 0.12, "LTC": 80.0, "DOT": 7.0, "LINK": 15.0, "USDC": 1.0,
}


def _mix(x: int) -> int:
    """splitmix64 finaliser: a well-mixed 64-bit integer from any integer."""
    z = (x * _G) & _M64
    z = ((z ^ (z >> 30)) * _K1) & _M64
    z = ((z ^ (z >> 27)) * _K2) & _M64
    return z ^ (z >> 31)


def _unit(x: int) -> float:
    """A float in [0, 1) from any integer."""
    return (_mix(x) >> 11) * _U53


def split_symbol(symbol: str) -> tuple[str, str, str | None]:
    """``"BTC/USDT:USDT"`` -> ``("BTC", "USDT", "USDT")``; ``"BTC/USDT"`` -> ``("BTC", "USDT", None)``."""
    pair, _, settle = symbol.partition(":")
    base, sep, quote = pair.partition("/")
    if not sep or not base or not quote:
        raise ValueError(f"not a unified symbol: {symbol!r} (expected BASE/QUOTE or BASE/QUOTE:SETTLE)")
    return base, quote, settle or None


@dataclass(frozen=True)
class MarketSpec:
    """Static facts about one market: starting price, tick, lot and contract size.

    ``lot_decimals`` is the step of the *base* volume in candles. For a linear swap the exchange
    counts volume in contracts of ``contract_value`` base units, ``contract_lot`` contracts per
    step; the base lot is then ``contract_value * contract_lot``.
    """

    symbol: str
    base: str
    quote: str
    settle: str | None
    base_price: float
    price_decimals: int
    lot_decimals: int
    contract_value_decimals: int | None = None  # swaps: ctVal = 10**-n base units
    contract_lot_decimals: int = 2  # swaps: lotSz = 10**-n contracts

    @property
    def price_scale(self) -> int:
        return 10 ** self.price_decimals

    @property
    def lot_scale(self) -> int:
        return 10 ** self.lot_decimals

    @property
    def is_swap(self) -> bool:
        return self.settle is not None

    @property
    def tick(self) -> float:
        return 10.0 ** -self.price_decimals

    @property
    def lot(self) -> float:
        return 10.0 ** -self.lot_decimals

    def tick_str(self) -> str:
        return _step_str(self.price_decimals)

    def lot_str(self) -> str:
        return _step_str(self.lot_decimals)

    def fmt_price(self, x: float, decimals: int | None = None) -> str:
        """Format a model price as the venue sends it; ``float()`` of it gives back ``x``."""
        return f"{x:.{self.price_decimals if decimals is None else decimals}f}"

    def fmt_volume(self, x: float, decimals: int | None = None) -> str:
        return f"{x:.{self.lot_decimals if decimals is None else decimals}f}"


def _step_str(decimals: int) -> str:
    return "1" if decimals <= 0 else "0." + "0" * (decimals - 1) + "1"


class MarketModel:
    """The simulator's source of truth: a seeded, stateless price path and candles derived from it."""

    def __init__(self, seed: int = 1) -> None:
        self.seed = int(seed)
        self._keys: dict[str, tuple] = {}

    # ------------------------------------------------------------------ per-symbol constants
    def spec(self, symbol: str) -> MarketSpec:
        """Tick, lot and contract facts of ``symbol`` (derived from its base price)."""
        return _spec(symbol)

    def _key(self, symbol: str) -> tuple:
        k = self._keys.get(symbol)
        if k is None:
            spec = _spec(symbol)
            digest = hashlib.blake2b(f"{self.seed}:{symbol}".encode(), digest_size=16).digest()
            root = int.from_bytes(digest[:8], "little")
            octaves = tuple(
                (scale, amp, _mix(root + n + 1)) for n, (scale, amp) in enumerate(_OCTAVES)
            )
            vol_scale = 10_000.0 * (0.2 + 1.8 * _unit(root ^ 0x5EED)) if spec.base != "BTC" else 20_000.0
            k = (spec, root, octaves, vol_scale)
            self._keys[symbol] = k
        return k

    # ------------------------------------------------------------------ prices
    def price(self, symbol: str, t_ms: int) -> float:
        """The (unrounded) price of ``symbol`` at ``t_ms``; smooth, deterministic, any time."""
        spec, _root, octaves, _vs = self._key(symbol)
        return spec.base_price * math.exp(_noise(octaves, int(t_ms)))

    def _price_ticks(self, spec: MarketSpec, octaves: tuple, t_ms: int) -> int:
        p = spec.base_price * math.exp(_noise(octaves, t_ms))
        return max(1, int(p * 10 ** spec.price_decimals + 0.5))

    # ------------------------------------------------------------------ candles
    def candle(self, symbol: str, tf_ms: int, open_ms: int) -> Candle:
        """Final ``(ts, o, h, l, c, v)`` of the bar of ``tf_ms`` opened at ``open_ms``."""
        spec, root, octaves, vs = self._key(symbol)
        o = self._price_ticks(spec, octaves, open_ms)
        c = self._price_ticks(spec, octaves, open_ms + tf_ms)
        return _finish(spec, root, vs, tf_ms, open_ms, o, c)

    def candles(self, symbol: str, tf_ms: int, first_open_ms: int, count: int) -> list[Candle]:
        """``count`` consecutive final candles from ``first_open_ms`` (shares boundary prices)."""
        spec, root, octaves, vs = self._key(symbol)
        memo: list = [[None, 0.0, None] for _ in octaves]
        bp = spec.base_price
        scale = 10 ** spec.price_decimals
        exp = math.exp
        out: list[Candle] = []
        t = first_open_ms
        o = max(1, int(bp * exp(_noise(octaves, t, memo)) * scale + 0.5))
        for _ in range(count):
            c = max(1, int(bp * exp(_noise(octaves, t + tf_ms, memo)) * scale + 0.5))
            out.append(_finish(spec, root, vs, tf_ms, t, o, c))
            o = c
            t += tf_ms
        return out

    def _final_ticks(self, symbol: str, tf_ms: int, open_ms: int) -> tuple[int, int, int, int, int]:
        spec, root, octaves, vs = self._key(symbol)
        o = self._price_ticks(spec, octaves, open_ms)
        c = self._price_ticks(spec, octaves, open_ms + tf_ms)
        return _ticks(spec, root, vs, tf_ms, open_ms, o, c)

    def partial(self, symbol: str, tf_ms: int, open_ms: int, at_ms: int) -> Candle:
        """State of the bar opened at ``open_ms`` as seen at ``at_ms`` (the forming candle).

        ``o`` is final; the high and low grow monotonically from ``o`` towards the final high
        and low; ``c`` is ``price(at_ms)`` clamped into that growing range (so a forming
        candle never leaves its final range); ``v`` grows linearly to the final volume. From
        ``at_ms >= open_ms + tf_ms`` on this equals :meth:`candle`.
        """
        if at_ms >= open_ms + tf_ms:
            return self.candle(symbol, tf_ms, open_ms)
        spec, root, octaves, vs = self._key(symbol)
        o, h, lo, _c, v = self._final_ticks(symbol, tf_ms, open_ms)
        f = max(0.0, (at_ms - open_ms) / tf_ms)
        hz = _mix(root ^ _mix(tf_ms * 7 + open_ms * 13 + 5))
        t_high = 0.3 + 0.7 * ((hz >> 11) * _U53)
        t_low = 0.3 + 0.7 * (((hz * _K1) & _M64) >> 11) * _U53
        hp = o + math.ceil((h - o) * min(1.0, f / t_high))
        lp = o - math.ceil((o - lo) * min(1.0, f / t_low))
        c = self._price_ticks(spec, octaves, int(at_ms))
        c = min(hp, max(lp, c))
        vp = int(v * f)
        return _to_floats(spec, open_ms, o, hp, lp, c, vp)


def _lattice(i: int) -> float:
    """Lattice value in [0, 1) for the already-salted index ``i`` (splitmix64, inlined)."""
    z = (i * _G) & _M64
    z = ((z ^ (z >> 30)) * _K1) & _M64
    z = ((z ^ (z >> 27)) * _K2) & _M64
    return ((z ^ (z >> 31)) >> 11) * _U53


def _noise(octaves: tuple, t: int, memo: list | None = None) -> float:
    """Sum of smooth value-noise octaves at ``t``.

    ``memo`` (one ``[index, a, b]`` slot per octave) lets a caller walking forward in time reuse
    lattice values: slow octaves change their lattice cell rarely. Pure either way.
    """
    x = 0.0
    for n, (scale, amp, s) in enumerate(octaves):
        i, r = divmod(t, scale)
        if memo is not None:
            slot = memo[n]
            if slot[0] == i:
                a = slot[1]
                b = slot[2]
            elif slot[0] == i - 1 and slot[2] is not None:
                a = slot[2]
                b = None
                slot[0], slot[1], slot[2] = i, a, None
            else:
                a = _lattice(i + s)
                b = None
                slot[0], slot[1], slot[2] = i, a, None
            if r:
                if b is None:
                    b = _lattice(i + 1 + s)
                    slot[2] = b
                f = r / scale
                f = f * f * (3.0 - 2.0 * f)
                x += amp * (2.0 * (a + (b - a) * f) - 1.0)
            else:
                x += amp * (2.0 * a - 1.0)
            continue
        a = _lattice(i + s)
        if r:
            b = _lattice(i + 1 + s)
            f = r / scale
            f = f * f * (3.0 - 2.0 * f)
            x += amp * (2.0 * (a + (b - a) * f) - 1.0)
        else:
            x += amp * (2.0 * a - 1.0)
    return x


def _ticks(spec: MarketSpec, root: int, vol_scale: float, tf_ms: int, open_ms: int,
           o: int, c: int) -> tuple[int, int, int, int, int]:
    # one 64-bit hash split into three 21-bit uniforms: high margin, low margin, volume
    z = _mix(root ^ ((tf_ms * 0x2545F4914F6CDD1D + open_ms) & _M64))
    u1 = (z & 0x1FFFFF) * _U21
    u2 = ((z >> 21) & 0x1FFFFF) * _U21
    u3 = ((z >> 42) & 0x1FFFFF) * _U21
    if o > c:
        hi_ref, lo_ref = o, c
    else:
        hi_ref, lo_ref = c, o
    margin = hi_ref * 0.0005 * math.sqrt(tf_ms / 60_000.0)
    h = hi_ref + int(margin * u1 * u1)
    lo = lo_ref - int(margin * u2 * u2)
    if lo < 1:
        lo = 1
    notional = vol_scale * (tf_ms / 1000.0) * (0.25 + 1.5 * u3)
    v = int(notional / hi_ref * 10 ** (spec.price_decimals + spec.lot_decimals))
    return o, h, lo, c, (v if v > 0 else 1)


def _finish(spec: MarketSpec, root: int, vol_scale: float, tf_ms: int, open_ms: int,
            o: int, c: int) -> Candle:
    o, h, lo, c, v = _ticks(spec, root, vol_scale, tf_ms, open_ms, o, c)
    return _to_floats(spec, open_ms, o, h, lo, c, v)


def _to_floats(spec: MarketSpec, ts: int, o: int, h: int, lo: int, c: int, v: int) -> Candle:
    # int / 10**d is the correctly rounded double of the decimal n * 10**-d, which is exactly
    # what float() makes of the string the venues send
    ps = spec.price_scale
    return (ts, o / ps, h / ps, lo / ps, c / ps, v / spec.lot_scale)


@lru_cache(maxsize=4096)
def _spec(symbol: str) -> MarketSpec:
    base, quote, settle = split_symbol(symbol)
    bp = _BASE_PRICES.get(base)
    if bp is None:
        u = _unit(int.from_bytes(hashlib.blake2b(base.encode(), digest_size=8).digest(), "little"))
        bp = float(f"{10.0 ** (-2.0 + 5.0 * u):.6g}")  # 0.01 .. 1000
    mag = math.floor(math.log10(bp))
    price_dec = min(8, max(0, 5 - mag))  # ~6 significant digits, BTC 0.1 ... like the venues
    if settle is None:
        lot_dec = min(8, max(0, mag + 1))
        return MarketSpec(symbol, base, quote, None, bp, price_dec, lot_dec)
    # linear swap: contract value ~ 100..1000 quote units (at most 100 base units so the base lot
    # ctVal * lotSz stays a decimal fraction), lot 0.01 contract, okx-like
    ct_dec = min(6, max(-2, mag - 2))
    ct_lot_dec = 2
    return MarketSpec(symbol, base, quote, settle, bp, price_dec, max(0, ct_dec + ct_lot_dec),
                      contract_value_decimals=ct_dec, contract_lot_decimals=ct_lot_dec)
