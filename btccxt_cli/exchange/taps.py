"""Closed-candle taps for ccxt.pro: see every OHLCV message as it arrives, with its closed flag.

ccxt.pro parses binance's ``x`` and okx's ``confirm`` flags away and updates its candle cache
in place (field-notes.md), and ``watch_ohlcv`` returns only the newest rows of that cache, so
a stale update of an older candle is invisible in its return value. A tapped exchange class
calls ``sink(symbol, interval, candles, closed_flags)`` from inside ``handle_ohlcv`` for every
message, in arrival order, before ccxt resolves the waiting ``watch_ohlcv`` future.

Exchanges without a tap fall back to reading ``watch_ohlcv`` results (later-candle rule).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from btccxt_cli.model import Candle

__all__ = ["Sink", "tapped_class", "has_tap"]

logger = logging.getLogger(__name__)

Sink = Callable[[str, str, list[Candle], list[bool]], None]


def _binance(ex: Any, client: Any, message: dict) -> tuple[str, str, list[Candle], list[bool]] | None:
    """``{"e":"kline","E":..,"s":"BTCUSDT","k":{"t":..,"o":"..","c":"..","h":"..","l":"..",
    "v":"..","i":"1m","x":false,...}}``"""
    k = message.get("k")
    if not isinstance(k, dict) or message.get("e") != "kline":
        return None
    market_type = "spot" if ex.is_spot_url(client) else "contract"
    symbol = ex.safe_symbol(k.get("s"), None, None, market_type)
    row = Candle(int(k["t"]), float(k["o"]), float(k["h"]), float(k["l"]), float(k["c"]),
                 float(k.get("v") or 0.0))
    return symbol, str(k.get("i")), [row], [bool(k.get("x"))]


def _okx(ex: Any, client: Any, message: dict) -> tuple[str, str, list[Candle], list[bool]] | None:
    """``{"arg":{"channel":"candle1m","instId":"BTC-USDT"},
    "data":[["1700000000000","o","h","l","c","vol","volCcy","volCcyQuote","1"]]}``"""
    arg = message.get("arg") or {}
    channel = arg.get("channel") or ""
    if not channel.startswith("candle"):
        return None
    market = ex.safe_market(arg.get("instId"))
    rows, flags = [], []
    for r in message.get("data") or []:
        p = ex.parse_ohlcv(r, market)
        rows.append(Candle(int(p[0]), float(p[1]), float(p[2]), float(p[3]), float(p[4]),
                           float(p[5] or 0.0)))
        flags.append(len(r) > 8 and str(r[8]) == "1")
    return market["symbol"], channel[len("candle"):], rows, flags


_TAPS: dict[str, Callable[..., Any]] = {"binance": _binance, "okx": _okx}


def _bybit(ex: Any, client: Any, message: dict) -> tuple[str, str, list[Candle], list[bool]] | None:
    """``{"topic":"kline.1.BTCUSDT","data":[{"start":..,"end":..,"interval":"1","open":"..",
    "close":"..","high":"..","low":"..","volume":"..","turnover":"..","confirm":false,
    "timestamp":..}],"ts":..,"type":"snapshot"}``; spot and linear share ids, so the socket's
    URL (``/v5/public/spot``) decides the market type, as ccxt.pro does."""
    parts = str(message.get("topic") or "").split(".")
    if len(parts) < 3 or parts[0] != "kline":
        return None
    market_type = "spot" if "spot" in str(client.url) else "contract"
    market = ex.safe_market(parts[-1], None, None, market_type)
    rows, flags = [], []
    for item in message.get("data") or []:
        p = ex.parse_ws_ohlcv(item, market)
        rows.append(Candle(int(p[0]), float(p[1]), float(p[2]), float(p[3]), float(p[4]),
                           float(p[5] or 0.0)))
        flags.append(bool(item.get("confirm")))
    return market["symbol"], parts[1], rows, flags


_TAPS["bybit"] = _bybit  # kucoin has no closed flag: later-candle rule


def has_tap(exchange_id: str) -> bool:
    return exchange_id in _TAPS


def tapped_class(exchange_id: str, base: type) -> type:
    """A subclass of the ccxt.pro class ``base`` whose ``handle_ohlcv`` also feeds ``btccxt_sink``."""
    tap = _TAPS.get(exchange_id)
    if tap is None:
        return base

    def handle_ohlcv(self: Any, client: Any, message: dict) -> None:
        base.handle_ohlcv(self, client, message)
        sink = getattr(self, "btccxt_sink", None)
        if sink is None:
            return
        try:
            got = tap(self, client, message)
        except Exception:  # a parse problem must never break ccxt's own handling
            logger.exception("could not read OHLCV message %r", message)
            return
        if got is not None:
            sink(*got)

    return type(f"Tapped{base.__name__}", (base,), {"handle_ohlcv": handle_ohlcv, "btccxt_sink": None})
