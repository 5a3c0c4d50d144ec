"""What the live broker's order worker and its parts share (``bt/ordersync.py``): the events
it hands the broker, the tracked order, the order types and the exchanges of each feature,
and small helpers on ccxt's answers. No backtrader; ccxt only inside functions.
"""

from __future__ import annotations

import json
import logging
import re
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from btccxt_cli.cache.orders import FillRecord, OrderRecord
from btccxt_cli.log import redact

__all__ = ["Event", "exchange_message", "reset_binance_login", "CCXT_TYPES", "WS_ORDER_EXCHANGES",
           "UPDATE_MODES", "ALGO_STOP_EXCHANGES", "ALGO_SWAP_STOP_EXCHANGES", "AUTH_TIMEOUT",
           "LOST_AFTER_MISSES", "algo_state", "EXPIRY_REASON", "STOP_TYPES",
           "trail_param", "exchange_now_ms"]

logger = logging.getLogger("btccxt_cli.bt.ordersync")

#: our order type -> (ccxt type, needs a trigger price)
CCXT_TYPES = {"market": ("market", False), "limit": ("limit", False),
              "stop_market": ("market", True), "stop_limit": ("limit", True),
              "trailing_stop": ("market", False)}
#: our order types the exchange holds until a trigger (okx: as algo orders)
STOP_TYPES = ("stop_market", "stop_limit", "trailing_stop")

_FINAL = {"closed": "closed", "canceled": "canceled", "cancelled": "canceled",
          "expired": "expired", "rejected": "rejected"}

_VIA_LOG_MAX = 1000

#: the reason stored with an order the broker cancels because its ``valid=`` passed; a cancel
#: the exchange confirms for an order with this reason is stored ``expired``
EXPIRY_REASON = "expired: its valid= time passed"

#: exchanges whose order stream (ccxt.pro ``watch_orders``) is tested against the simulator;
#: ``updates="auto"`` uses WebSocket updates on these and REST polling elsewhere
WS_ORDER_EXCHANGES = ("binance", "okx")

AUTH_TIMEOUT = 10.0
"""Seconds the order stream's login may take before it counts as failed (and is retried)."""

UPDATE_MODES = ("auto", "websocket", "poll")

#: exchanges whose stop orders are algo orders with ids of their own (okx, spot and swaps):
#: before the trigger the order is stored with exchange id ``algo:<algoId>`` and read with
#: ``{"trigger": True}``; at the trigger its id becomes the id of the order it placed
ALGO_STOP_EXCHANGES = ("okx",)
#: exchanges whose stop orders on swaps only are algo orders (binance USD-M's Algo Service;
#: its spot stops are plain orders)
ALGO_SWAP_STOP_EXCHANGES = ("binance",)
#: binance ``algoStatus`` -> okx's algo ``state``, the one the broker reads
_BINANCE_ALGO_STATES = {"NEW": "live", "TRIGGERING": "live", "TRIGGERED": "effective",
                        "FINISHED": "effective", "CANCELED": "canceled", "EXPIRED": "canceled",
                        "REJECTED": "order_failed"}

_ALGO = "algo:"

_SIGNED = re.compile(r"(signature|sign)=[^&\s\"']+", re.IGNORECASE)

#: a known order is given up as gone only after this many lookups found nothing, spread over
#: at least ``ambiguous_timeout`` seconds (lookups may lag a create: binance -2013, okx 51603)
LOST_AFTER_MISSES = 3

_MISS_WAIT_MAX = 8.0  # longest wait between lookups of a known order not found

@dataclass
class Event:
    """Something the strategy thread must apply. Kinds:

    ``ready`` (data: markets, balances, holdings {symbol: (size, price)}, precision_mode),
    ``adopt`` (rec), ``order`` (rec: the stored row after the change), ``fill`` (fill; data:
    {"holding": (size, price)}, the bot's position after it, when the fill is new),
    ``balance`` (data: {asset: (free, used, total)}),
    ``adopted`` (data: {symbol: (size, price)}, the positions ``adopt_holdings`` raised),
    ``orders`` (data: open order count), ``updates`` (data: {"via": "websocket" | "polling" |
    "reconnecting", "reason": str}).
    """

    kind: str
    rec: OrderRecord | None = None
    fill: FillRecord | None = None
    data: dict[str, Any] = field(default_factory=dict)

def exchange_message(exc: BaseException) -> str:
    """The exchange's own words from a ccxt error (``msg``/``sMsg`` of its JSON), secrets masked."""
    text = str(exc)
    start = text.find("{")
    if start >= 0:
        try:
            body = json.loads(text[start:])
        except ValueError:
            body = None
        if isinstance(body, dict):
            data = body.get("data")
            if isinstance(data, list) and data and isinstance(data[0], dict) and data[0].get("sMsg"):
                return redact(f"{data[0]['sMsg']} (code {data[0].get('sCode')})")
            if body.get("msg"):
                return redact(f"{body['msg']} (code {body.get('code')})")
    return redact(_SIGNED.sub(r"\1=***", text))

@dataclass
class _Tracked:
    rec: OrderRecord
    trades: set[str] = field(default_factory=set)
    traded: float = 0.0
    cancel_requested: bool = False
    cancel_sent: bool = False
    since_mono: float | None = None  # when the create outcome became unknown
    fees: dict[str, float] = field(default_factory=dict)  # the fills' fees, per currency
    missing_since: float | None = None  # a known order not found since (broker clock)
    misses: int = 0  # lookups in a row that did not find it
    next_lookup: float = 0.0  # no lookup before (broker clock): backoff while not found
    watch_until: float = 0.0  # watched after it was given up (sweep.Watch)
    watch_wait: float = 0.0

    def add(self, f: FillRecord) -> None:
        self.trades.add(f.trade_id)
        self.traded += f.amount
        cur = f.fee_currency or ""
        self.fees[cur] = self.fees.get(cur, 0.0) + f.fee

    @property
    def unsure(self) -> bool:
        """Whether the exchange may hold fills of it that were not read: its create's outcome
        is unknown or not yet answered, or a lookup did not find it lately."""
        return self.rec.status in ("unknown", "pending", "sending") or self.missing_since is not None

    @property
    def fee(self) -> float:
        """The fee of the fee currency (the one currency, or the largest of several)."""
        return self.fees.get(self.fee_currency or "", 0.0)

    @property
    def fee_currency(self) -> str | None:
        if not self.fees:
            return None
        return max(self.fees, key=lambda c: self.fees[c]) or None

def _stored() -> None:
    """Nothing: awaited on the database thread, it returns once the writes before it are done."""

def _write_failed(client_id: str, fut: Future) -> None:
    exc = fut.exception() if not fut.cancelled() else None
    if exc is not None:
        logger.error("order %s: its update could not be stored in the orders database (%s: %s); "
                     "is another program holding the file?", client_id, type(exc).__name__, exc)

def reset_binance_login(ex: Any) -> bool:
    """Undo what a refused binance WebSocket-API login leaves behind in ccxt 4.5.90's client.

    ccxt's ``ensure_user_data_stream_ws_subscribe_signature`` deletes the ``spot`` subscription
    twice when the exchange refuses the login (e.g. for its timestamp, -1021): the second
    ``del`` raises ``KeyError: 'spot'`` before the pending ``authenticate:signature:spot``
    future is rejected, and every later login then waits on that future for ever. Dropping
    both lets the next login start afresh. Returns True when there was something to drop."""
    try:
        url = ex.urls["api"]["ws"]["ws-api"]["spot"]
    except (AttributeError, KeyError, TypeError):
        return False
    client = (getattr(ex, "clients", None) or {}).get(url)
    if client is None:
        return False
    stale = client.futures.pop("authenticate:signature:spot", None)
    if stale is not None and not stale.done():
        stale.cancel()
    had = client.subscriptions.pop("spot", None) is not None
    return stale is not None or had

def _prime_balance_cache(ex: Any) -> None:
    """ccxt.pro binance (4.5.x) drops its connection on a balance push (sent with every order
    event) that arrives before its balance cache exists, which only a watch call creates after
    subscribing: create it before subscribing."""
    balance = getattr(ex, "balance", None)
    if getattr(ex, "id", "") == "binance" and isinstance(balance, dict) and "spot" not in balance:
        balance["spot"] = {}

def exchange_now_ms(store: Any, clock: Any) -> int:
    """Now on the exchange's clock: the store's estimate (never ahead of the exchange), the
    broker's clock for a store without one. What ``valid=`` expiries are measured on."""
    now = getattr(store, "exchange_now_ms", None)
    return int(now()) if now is not None else int(clock.time_ms())


def trail_param(trail: float) -> str:
    """ccxt's ``trailingPercent`` for a trail (a fraction): a plain decimal, no float noise
    (binance takes whole basis points, ``0.003`` -> ``"0.3"`` -> 30)."""
    return format(round(trail * 100, 8), "f").rstrip("0").rstrip(".")


def _is_algo(rec: OrderRecord) -> bool:
    return bool(rec.exchange_id and rec.exchange_id.startswith(_ALGO))


def algo_state(info: dict[str, Any]) -> tuple[str, str, str]:
    """An algo order as the exchange reports it (ccxt's ``info``): ``(state, placed, code)``,
    the state in okx's words (``live``, ``effective``, ``canceled``, ``order_failed``), the id
    of the order it placed ("" if none) and why it failed ("" if it did not). okx: ``state``,
    ``ordId``, ``failCode``; binance USD-M: ``algoStatus``, ``actualOrderId``."""
    if "algoStatus" in info:
        raw = str(info.get("algoStatus") or "").upper()
        placed = str(info.get("actualOrderId") or "")
        placed = "" if placed in ("0", "None") else placed
        state = _BINANCE_ALGO_STATES.get(raw, "live")
        if state == "effective" and not placed:  # no order placed: not yet, or never
            state = "order_failed" if raw == "FINISHED" else "live"
        return state, placed, (f"binance algoStatus {raw}" if state == "order_failed" else "")
    state = str(info.get("state") or "")
    code = f"okx code {info.get('failCode') or '?'}" if state == "order_failed" else ""
    return state, str(info.get("ordId") or ""), code


def _order_id(order: dict[str, Any]) -> str:
    """The order's own id (okx: ``ordId``; ccxt's ``id`` of an order a stop placed is the
    algo's)."""
    info = order.get("info") or {}
    return str(info.get("ordId") or order["id"]) if isinstance(info, dict) else str(order["id"])

def _status_unknown(exc: BaseException) -> bool:
    """The exchange's own words say the order may have been executed (binance -1006, -1007;
    okx 50004 "does not indicate success or failure")."""
    text = str(exc).lower()
    return any(k in text for k in ("status unknown", "-1006", "-1007", "does not indicate success"))
