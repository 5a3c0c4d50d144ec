"""Simulated accounts' building blocks: API keys and signatures, orders, fills, order events
and balances. Pure data (no sockets, no asyncio, no wire formats); ``accounts.Engine`` changes
them, the venues read them.

Must not import ccxt, aiohttp or anything from the client side of btccxt.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "SimKey", "DEFAULT_KEY", "DEFAULT_BALANCES", "parse_key_spec", "parse_balance_spec",
    "hmac_sha256_hex", "hmac_sha256_b64", "same_signature", "Reject", "Fill", "SimOrder",
    "Account", "OrderEvent", "OrderListener", "ORDER_TYPES", "OPEN_STATES", "EVENT_KINDS",
    "EPS", "tidy", "order_dict", "is_on_grid",
]

#: Starting balances of every simulated account unless the key or the simulator says otherwise.
DEFAULT_BALANCES: dict[str, float] = {"USDT": 100_000.0, "BTC": 1.0, "ETH": 10.0}

ORDER_TYPES = ("market", "limit", "stop_market", "stop_limit")
OPEN_STATES = ("new", "partially_filled")
#: what an :class:`OrderEvent` reports: accepted, a stop reached its price, one fill, closed
EVENT_KINDS = ("new", "triggered", "trade", "canceled", "expired")
EPS = 1e-12


@dataclass(frozen=True)
class SimKey:
    """One API key the simulator accepts (on every simulated exchange).

    ``passphrase`` is what okx calls the API password (required there). ``balances`` are the
    account's starting balances (default: the simulator's ``balances`` or
    :data:`DEFAULT_BALANCES`). The secret never appears in a ``repr``.
    """

    key: str
    secret: str
    passphrase: str | None = None
    balances: Mapping[str, float] | None = None

    def __repr__(self) -> str:
        return f"SimKey(key={self.key!r}, secret='***', passphrase={'***' if self.passphrase else None})"


#: The test key every simulator accepts unless ``api_keys`` replaces it.
DEFAULT_KEY = SimKey("btccxt-sim-key", "btccxt-sim-secret", "btccxt-sim-passphrase")


def parse_key_spec(text: str) -> SimKey:
    """``KEY:SECRET`` or ``KEY:SECRET:PASSPHRASE`` (the ``btccxt sim --api-key`` notation)."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError("an API key is written KEY:SECRET or KEY:SECRET:PASSPHRASE")
    return SimKey(parts[0], parts[1], parts[2] if len(parts) == 3 else None)


def parse_balance_spec(text: str) -> tuple[str, float]:
    """``USDT=10000`` -> ``("USDT", 10000.0)`` (``btccxt sim --balance``)."""
    asset, sep, amount = text.partition("=")
    try:
        value = float(amount)
    except ValueError:
        value = -1.0
    if not sep or not asset or not math.isfinite(value) or value < 0:
        raise ValueError(f"a balance is written ASSET=AMOUNT with AMOUNT >= 0, not {text!r}")
    return asset.strip().upper(), value


# --------------------------------------------------------------------------- signatures
def hmac_sha256_hex(secret: str, payload: str) -> str:
    """binance: lower-case hex HMAC-SHA256 of ``payload``."""
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def hmac_sha256_b64(secret: str, payload: str) -> str:
    """okx: base64 HMAC-SHA256 of ``payload``."""
    return base64.b64encode(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()).decode()


def same_signature(expected: str, given: str) -> bool:
    """Constant-time comparison."""
    return hmac.compare_digest(expected.encode(), given.encode())


# --------------------------------------------------------------------------- values
class Reject(Exception):
    """The engine refuses a request; ``kind`` is what the venue maps to its own error code.

    Kinds: ``insufficient_funds``, ``duplicate_client_id``, ``unknown_order``, ``bad_quantity``,
    ``bad_price``, ``min_notional``, ``unknown_symbol``, ``unsupported``; derivatives:
    ``reduce_only`` (nothing to reduce in that direction), ``bad_leverage``, ``position_open``
    (a setting that cannot change while positions or orders are open), ``bad_position_side``.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass
class Fill:
    """One execution of one order."""

    id: int
    order_id: int
    client_id: str
    symbol: str
    side: str
    price: float
    qty: float
    quote_qty: float
    fee: float
    fee_asset: str
    fee_rate: float
    maker: bool
    time_ms: int
    pnl: float = 0.0  # derivatives: profit or loss this fill realised (settle currency)


@dataclass
class SimOrder:
    """One order as the exchange keeps it. ``status``: new, partially_filled, filled, canceled,
    rejected, expired."""

    id: int
    key: str
    client_id: str
    symbol: str
    side: str  # buy | sell
    type: str  # market | limit | stop_market | stop_limit
    amount: float
    price: float | None
    stop_price: float | None
    created_ms: int
    updated_ms: int
    status: str = "new"
    filled: float = 0.0
    cost: float = 0.0
    quote_amount: float | None = None  # market buy by quote amount (binance quoteOrderQty)
    locked: float = 0.0  # still locked for this order (quote for buys, base for sells)
    triggered: bool = False
    fills: list[Fill] = field(default_factory=list)
    # derivatives: reduce-only, the position side it trades (net | long | short), margin mode
    reduce_only: bool = False
    pos_side: str = "net"
    margin_mode: str = ""
    # a trailing stop (stop_market): its stop follows the best price since placement (the
    # highest for a sell, the lowest for a buy) at this fraction from it
    trail: float | None = None
    trail_best: float | None = None

    def follow(self, px: float, decimals: int) -> None:
        """A trailing stop's stop after the price ``px`` (on the tick grid, never backwards)."""
        if self.trail is None:
            return
        best = self.trail_best
        if best is None or (px > best if self.side == "sell" else px < best):
            self.trail_best = best = px
            self.stop_price = round(best * (1 - self.trail if self.side == "sell" else 1 + self.trail),
                                    decimals)

    @property
    def remaining(self) -> float:
        return max(0.0, tidy(self.amount - self.filled))

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATES

    @property
    def average(self) -> float | None:
        return self.cost / self.filled if self.filled > 0 else None

    @property
    def fee_total(self) -> float:
        return tidy(sum(f.fee for f in self.fills))

    @property
    def fee_asset(self) -> str | None:
        return self.fills[-1].fee_asset if self.fills else None

    @property
    def limit_price(self) -> float | None:
        """The price a resting order waits for (limit orders, triggered stop-limits)."""
        return self.price if self.type in ("limit", "stop_limit") else None


@dataclass(frozen=True)
class OrderEvent:
    """One change of one order, as the engine made it (what the private streams push).

    Attributes:
        kind: one of :data:`EVENT_KINDS`: ``new`` (accepted; a market order's fills follow as
            ``trade`` events), ``triggered`` (a stop reached its stop price), ``trade`` (one
            fill), ``canceled``, ``expired``.
        key: the API key whose order it is (accounts are per key).
        order: a snapshot of the order right after the change (status, filled, cost and
            ``fills`` as they were then; later changes do not show in it).
        fill: the fill of a ``trade`` event, else None.
        balances: ``{asset: (free, locked)}`` of the order's base and quote currency right after
            the change.
        time_ms: when it happened on the exchange's clock (a fill's own time).
    """

    kind: str
    key: str
    order: SimOrder
    fill: Fill | None
    balances: dict[str, tuple[float, float]]
    time_ms: int


#: a callable the engine calls with every :class:`OrderEvent`
OrderListener = Callable[[OrderEvent], None]


class Account:
    """Balances of one API key on one exchange: ``{asset: [free, locked]}``."""

    def __init__(self, key: SimKey, balances: Mapping[str, float]) -> None:
        self.key = key
        self.balances: dict[str, list[float]] = {a.upper(): [float(v), 0.0] for a, v in balances.items()}

    def free(self, asset: str) -> float:
        return self.balances.get(asset, [0.0, 0.0])[0]

    def locked(self, asset: str) -> float:
        return self.balances.get(asset, [0.0, 0.0])[1]

    def _row(self, asset: str) -> list[float]:
        return self.balances.setdefault(asset, [0.0, 0.0])

    def add_free(self, asset: str, amount: float) -> None:
        row = self._row(asset)
        row[0] = tidy(row[0] + amount)

    def lock(self, asset: str, amount: float) -> None:
        row = self._row(asset)
        row[0] = tidy(row[0] - amount)
        row[1] = tidy(row[1] + amount)

    def unlock(self, asset: str, amount: float) -> None:
        self.lock(asset, -amount)

    def spend_locked(self, asset: str, amount: float) -> None:
        row = self._row(asset)
        row[1] = tidy(row[1] - amount)

    def snapshot(self) -> dict[str, tuple[float, float]]:
        return {a: (v[0], v[1]) for a, v in sorted(self.balances.items())}

def tidy(x: float) -> float:
    """Round away float noise (12 decimals is far below any lot or tick)."""
    return round(x, 12)



def order_dict(o: SimOrder) -> dict[str, Any]:
    """A JSON-ready copy of one order (the secret-free account key included)."""
    return {"id": o.id, "key": o.key, "client_id": o.client_id, "symbol": o.symbol, "side": o.side,
            "type": o.type, "amount": o.amount, "price": o.price, "stop_price": o.stop_price,
            "status": o.status, "filled": o.filled, "cost": o.cost, "fee": o.fee_total,
            "fee_asset": o.fee_asset, "created_ms": o.created_ms, "updated_ms": o.updated_ms,
            "fills": len(o.fills), "reduce_only": o.reduce_only, "trail": o.trail}


def is_on_grid(value: float, decimals: int) -> bool:
    scaled = float(value) * 10 ** decimals
    return abs(scaled - round(scaled)) <= 1e-6 * max(1.0, abs(scaled)) ** 0.5
