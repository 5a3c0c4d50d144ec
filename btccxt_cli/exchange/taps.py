"""Closed-candle taps for ccxt.pro: see every OHLCV message as it arrives, with its closed flag.

ccxt.pro parses binance's ``x`` and okx's ``confirm`` flags away and updates its candle cache
in place (field-notes.md), and ``watch_ohlcv`` returns only the newest rows of that cache, so
a stale update of an older candle is invisible in its return value. A tapped exchange class
calls ``sink(symbol, interval, candles, closed_flags)`` from inside ``handle_ohlcv`` for every
message, in arrival order, before ccxt resolves the waiting ``watch_ohlcv`` future.

Exchanges without a tap fall back to reading ``watch_ohlcv`` results (later-candle rule).

The taps read ccxt.pro internals (``handle_ohlcv``, the raw message layouts, ``safe_symbol``)
as of the ccxt range declared in ``pyproject.toml`` (``TESTED_CCXT``). A release that changes
them must not stop live data: a tap that raises is switched off after one warning
(``btccxt_tap_broken``), and the WebSocket hub checks at start that the tap fires for the
first answer of each subscription; if it does not, it reads ``watch_ohlcv`` results instead.
``subscription_keys`` names the keys ccxt.pro files an OHLCV subscription under.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from btccxt_cli.model import Candle

__all__ = ["forget_updates", "Sink", "tapped_class", "has_tap", "subscription_keys", "TESTED_CCXT"]

TESTED_CCXT = ">=4.5.90,<4.6"  # the range in pyproject.toml: the internals below as of these

logger = logging.getLogger(__name__)

Sink = Callable[[str, str, list[Candle], list[bool]], None]


def _symbol_of(ex: Any, client: Any, market_id: Any) -> str:
    """``ex.safe_symbol`` of a market id on ``client``'s socket (spot or contract, as ccxt.pro
    decides by the socket's URL), remembered per socket and id: thousands of messages a
    second ask the same few hundred. Forgotten when ccxt loads its markets again."""
    memo = ex.__dict__.get("_btccxt_symbols")
    by_id = getattr(ex, "markets_by_id", None)
    if memo is None or memo[0] is not by_id:
        memo = ex._btccxt_symbols = (by_id, {})
    key = (client.url, market_id)
    symbol = memo[1].get(key)
    if symbol is None:
        symbol = memo[1][key] = ex.safe_symbol(market_id, None, None,
                                               "spot" if ex.is_spot_url(client) else "contract")
    return symbol


def _binance(ex: Any, client: Any, message: dict) -> tuple[str, str, list[Candle], list[bool]] | None:
    """``{"e":"kline","E":..,"s":"BTCUSDT","k":{"t":..,"o":"..","c":"..","h":"..","l":"..",
    "v":"..","i":"1m","x":false,...}}``"""
    k = message.get("k")
    if not isinstance(k, dict) or message.get("e") != "kline":
        return None
    symbol = _symbol_of(ex, client, k.get("s"))
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


def _binance_waited(ex: Any, client: Any, symbol: str, interval: str) -> bool:
    """Whether a ``watch_ohlcv``/``watch_ohlcv_for_symbols`` call waits for this stream's next
    message (ccxt.pro's binance resolves ``ohlcv::{symbol}::{timeframe}``)."""
    timeframe = _TIMEFRAMES.get(interval)
    if timeframe is None:
        timeframe = _TIMEFRAMES[interval] = ex.find_timeframe(interval)
    return f"ohlcv::{symbol}::{timeframe}" in client.futures


_TIMEFRAMES: dict[str, str] = {}
_WAITED: dict[str, Callable[[Any, Any, str, str], bool]] = {"binance": _binance_waited}
"""With the tap on, ccxt.pro's own handling of a candle message (its candle cache and the
answer to a pending watch) is needed only while a watch waits for it: a tapped batch
subscription watches once, then waits on the socket (``sources.ws``), and the tap's sink
takes every message. Skipping it when nothing waits halves the cost of a message on the
event loop (binance; the other taps still let ccxt handle every message)."""


_NOT_PLAIN = ("event", "data", "status", "error", "id")


def _binance_candle(message: Any) -> dict | None:
    """The event ccxt.pro's binance ``handle_message`` would hand to ``handle_ohlcv`` when
    ``message`` is a plain kline event, bare or in a combined stream's wrapper
    (``{"stream": .., "data": {"e": "kline", ..}}``); None for anything else (ccxt routes it).
    ccxt looks each message up through a table of some 30 handlers it builds anew for every
    message; a close of 100 symbols is 100 of them in a burst."""
    if type(message) is not dict:
        return None
    if message.get("stream") is not None:
        message = message.get("data")
        if type(message) is not dict:
            return None
    if message.get("e") != "kline":
        return None
    for key in _NOT_PLAIN:  # wrappers, errors and request answers: ccxt's own route
        if key in message:
            return None
    return message


_ROUTES: dict[str, Callable[[Any], dict | None]] = {"binance": _binance_candle}


def has_tap(exchange_id: str) -> bool:
    return exchange_id in _TAPS


def tapped_class(exchange_id: str, base: type) -> type:
    """A subclass of the ccxt.pro class ``base`` whose ``handle_ohlcv`` also feeds ``btccxt_sink``
    (and, where ``_WAITED`` says how, skips ccxt's own handling while no watch waits); where
    ``_ROUTES`` knows the exchange's candle messages, they go to ``handle_ohlcv`` directly."""
    tap = _TAPS.get(exchange_id)
    if tap is None:
        return base

    waited = _WAITED.get(exchange_id)

    def handle_ohlcv(self: Any, client: Any, message: dict) -> None:
        sink = getattr(self, "btccxt_sink", None)
        if sink is None or self.btccxt_tap_broken:
            base.handle_ohlcv(self, client, message)
            return
        try:
            got = tap(self, client, message)
        except Exception:  # a parse problem must never break ccxt's own handling
            self.btccxt_tap_broken = True  # once: not a traceback per message
            logger.warning("the closed-candle tap cannot read this ccxt's OHLCV messages (tested: ccxt%s); "
                           "switched off", TESTED_CCXT, exc_info=True)
            base.handle_ohlcv(self, client, message)
            return
        if got is None or waited is None or waited(self, client, got[0], got[1]):
            base.handle_ohlcv(self, client, message)
        if got is not None:
            sink(*got)

    attrs: dict[str, Any] = {"handle_ohlcv": handle_ohlcv, "btccxt_sink": None, "btccxt_tap_broken": False}
    route = _ROUTES.get(exchange_id)
    if route is not None:
        def handle_message(self: Any, client: Any, message: Any) -> None:
            candle = route(message)
            if candle is None:
                base.handle_message(self, client, message)
            else:  # where ccxt's own routing would take it, without its per-message table
                self.handle_ohlcv(client, candle)

        attrs["handle_message"] = handle_message
    return type(f"Tapped{base.__name__}", (base,), attrs)


def forget_updates(ex: Any, pairs: list[list[str]]) -> int:
    """Bound ccxt.pro's per-symbol record of updates not yet returned by a watch.

    A candle cache (``ArrayCacheByTimestamp``) adds every candle's time to a set that only a
    ``watch_ohlcv`` answer for that symbol empties. With the tap, a shard's batch watch
    answers for one symbol now and then, so the sets of the others grew by a bar each bar:
    with 1,000 symbols of 1m bars ~90 MB a day. Here a set larger than its cache is marked to
    be emptied at the cache's next update (ccxt's own flag); returns how many. Reads ccxt's
    private fields defensively: if they change, nothing happens."""
    caches = getattr(ex, "ohlcvs", None)
    if not isinstance(caches, dict):
        return 0
    marked = 0
    for symbol, timeframe in pairs:
        cache = (caches.get(symbol) or {}).get(timeframe)
        tracker = getattr(cache, "_size_tracker", None)
        limit = getattr(getattr(cache, "_deque", None), "maxlen", None)
        if tracker is not None and limit and len(tracker) > limit and hasattr(cache, "_clear_updates"):
            cache._clear_updates = True
            marked += 1
    return marked


def subscription_keys(ex: Any, symbol: str, timeframe: str) -> set[str]:
    """The ``client.subscriptions`` keys ccxt.pro files the OHLCV stream (symbol, timeframe)
    under, by exchange (read from ccxt.pro's source; exact, so forgetting BTC/USDT 1m keeps
    5m and the BTC/USDT:USDT swap). kraken keys by symbol alone: all its timeframes go."""
    interval = str(ex.timeframes.get(timeframe, timeframe)) if getattr(ex, "timeframes", None) else timeframe
    try:
        mid = str(ex.market(symbol)["id"])
    except Exception:
        mid = symbol
    eid = str(getattr(ex, "id", ""))
    if eid == "okx":  # watch_ohlcv: channel:instId; watch_ohlcv_for_symbols: multi:channel:symbol
        return {f"candle{interval}:{mid}", f"multi:candle{interval}:{symbol}"}
    if eid == "kucoin":  # the topic (futures: limitCandle)
        return {f"/market/candles:{mid}_{interval}", f"/contractMarket/limitCandle:{mid}_{interval}"}
    if eid == "bitget":
        return {f"candles:{timeframe}:{symbol}"}
    if eid == "kraken":
        return {f"ohlcv@{symbol}"}
    return {f"ohlcv::{symbol}::{timeframe}"}  # binance, bybit (and ccxt's common layout)
