"""How many streams one batch subscription may carry on each exchange, and which connection
it goes to, so a WebSocket never breaks the exchange's documented limits (docs/data-core.md,
"Many symbols").

ccxt.pro sends a ``watch_ohlcv_for_symbols`` call as one subscribe message on one socket. On
binance every such call goes to the same socket (``/ws/<n>``, the stream index ccxt keeps per
subscription hash, and the hash of this method is the constant ``multipleOHLCV``), so 1,100
symbols would be 1,100 streams on one socket, which binance closes. The hub therefore splits a
market type's series into shards of at most :func:`shard_size` streams and, where ccxt
addresses sockets by a stream index, gives each shard its own index (:func:`pin_connection`).
Elsewhere (okx, bybit: one socket per market type) the shards are separate subscribe messages
on the shared socket, paced by ccxt's per-socket throttle.

``options.btccxtWsShard`` in the exchange config overrides the size (tests lower it).

ccxt.pro paces the messages of each socket with the exchange's REST token bucket: about 133 a
second on kucoin and 20 on bitget, where kucoin refuses past 100 messages in 10 seconds and
bitget closes a socket past 10 a second. On those exchanges every series sends its own
subscribe message (ccxt has no batch OHLCV call there), so a few dozen symbols broke the limit
at start and after every drop. :func:`pace_sockets` sets ccxt's cost of one socket message so
that its pacing stays within :data:`MESSAGE_RATES` (``options.btccxtWsRate`` overrides it).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["SHARD_SIZES", "DEFAULT_SHARD", "SUBSCRIBE_GAPS", "subscribe_gap", "MESSAGE_RATES", "shard_size",
           "SOCKET_TOPICS", "SOCKET_PER_SHARD", "market_kind", "pin_connection", "socket_key",
           "pin_shard_sockets", "pace_sockets", "keep_successor_sockets", "spread_topics"]

#: (exchange, market kind) -> streams per batch subscription; kind None: every kind
SHARD_SIZES: dict[tuple[str, str | None], int] = {
    ("binance", "spot"): 1000,  # 1024 streams per socket (a little room for other channels)
    ("binance", "linear"): 200,  # USD-M: 200 streams per socket (ccxt's note)
    ("binance", "inverse"): 200,
    ("okx", None): 500,  # one request's args may total 64 KB (~1,300 candle args)
    ("bybit", "spot"): 10,  # 10 args per subscribe request on spot
    # (derivatives: 21,000 characters of topics per socket: a socket per shard of 200)
    # kucoin, bitget: ccxt.pro 4.5 has no batch OHLCV call there (one subscribe per series,
    # paced by pace_sockets); these apply if it gains one
    ("kucoin", None): 100,  # 100 topics per subscribe message (400 per socket)
    ("bitget", None): 50,  # "fewer than 50 channels per connection" recommended (1,000 max)
}
#: exchange -> messages a second ccxt may send on one socket: kucoin refuses past 100 in 10 s
#: (9 a second: at most 90 in any 10 s, plus the one ccxt's pacing lets through after a pause
#: and a ping every 18 s) and bitget closes a socket past 10 in any second (7: pings count)
MESSAGE_RATES: dict[str, float] = {"kucoin": 9.0, "bitget": 7.0}
#: exchange -> topics btccxt puts on one socket where ccxt.pro sends one subscribe per series
#: to one socket: kucoin refuses past 400 topics a socket, and paces each socket's subscribes
#: (above): 200 a socket subscribe 1,000 symbols over 5 sockets in ~23 s (380: 3 sockets,
#: 48 s), and a drop of all of them redials 5 (kucoin allows 30 connections a minute).
#: bitget allows 240 subscribe requests an hour on a connection, recommends fewer than 50
#: channels on one, and 100 connections an IP (300 opened in 5 minutes): 49 a socket
#: subscribe 1,000 symbols over 21 sockets in ~2.3 s with merged subscribes (coalesce.py;
#: one socket: 144 s and 1,000 requests)
SOCKET_TOPICS: dict[str, int] = {"kucoin": 200, "bitget": 49}
#: exchange -> market kinds where each shard gets its own socket although ccxt.pro has one per
#: kind: bybit derivatives hold at most 21,000 characters of topics a socket (1,000 kline
#: topics are ~17,000-27,000); a shard of 200 is ~5,000 (shard ``n`` on the kind's URL with the
#: fragment ``#<n>``, never sent: ccxt keys sockets by URL; :func:`pin_shard_sockets`)
SOCKET_PER_SHARD: dict[str, tuple[str, ...]] = {"bybit": ("linear", "inverse")}
DEFAULT_SHARD = 200
#: exchange -> at least this long between two (un)subscribe messages of ours on one socket:
#: binance closes a socket past 5 incoming messages a second (pongs count), and ccxt's own
#: pacing (about 4 a second after a pause) leaves no room for them. Elsewhere ccxt's pacing
#: (and ``MESSAGE_RATES``) alone: bybit documents no message rate (its limit is 10 args a
#: spot request), and a gap there made 1,000 symbols (100 requests) take 35 s to subscribe.
SUBSCRIBE_GAPS: dict[str, float] = {"binance": 0.35}
_PIN_HASH = "multipleOHLCV"  # ccxt.pro binance's subscription hash of watch_ohlcv_for_symbols


def subscribe_gap(exchange: Any) -> float:
    """Seconds between two subscribe messages of ours on one socket of ``exchange``."""
    return SUBSCRIBE_GAPS.get(str(getattr(exchange, "id", "")), 0.0)


def market_kind(market: dict[str, Any]) -> str:
    """``spot``, ``linear``, ``inverse`` or the market's type, as ccxt names socket kinds."""
    if market.get("spot") or market.get("type") == "spot":
        return "spot"
    if market.get("linear"):
        return "linear"
    if market.get("inverse"):
        return "inverse"
    return str(market.get("type"))


def shard_size(exchange: Any, kind: str) -> int:
    """Streams one batch subscription of ``kind`` markets may carry on ``exchange``."""
    override = (getattr(exchange, "options", None) or {}).get("btccxtWsShard")
    if override:
        return max(1, int(override))
    ex_id = str(getattr(exchange, "id", ""))
    for key in ((ex_id, kind), (ex_id, None)):
        if key in SHARD_SIZES:
            return SHARD_SIZES[key]
    return DEFAULT_SHARD


def pin_connection(exchange: Any, index: int) -> None:
    """Make ccxt's next batch OHLCV call of ``exchange`` use socket ``index`` (binance's
    ``/ws/<index>``); a no-op where ccxt does not address sockets by a stream index.

    Must be called right before the ccxt call, with no ``await`` between: ccxt reads the
    index synchronously when the call starts.
    """
    by_hash = (getattr(exchange, "options", None) or {}).get("streamBySubscriptionsHash")
    if by_hash is not None:
        by_hash[_PIN_HASH] = str(index)
    elif "btccxt_pin" in getattr(exchange, "__dict__", {}):
        exchange.btccxt_pin = index  # read (and cleared) by pin_shard_sockets' wrappers


def socket_key(exchange: Any, kind: str, index: int) -> tuple[str, int]:
    """Which socket a shard's messages go to: its own (``/ws/<index>``) where ccxt addresses
    sockets by a stream index (binance) or btccxt gives each shard one (``SOCKET_PER_SHARD``),
    else the market kind's one shared socket."""
    by_hash = (getattr(exchange, "options", None) or {}).get("streamBySubscriptionsHash")
    own = by_hash is not None or kind in SOCKET_PER_SHARD.get(str(getattr(exchange, "id", "")), ())
    return (kind, index if own else 0)


def pin_shard_sockets(exchange: Any) -> bool:
    """(bybit derivatives) Send each shard's (un)subscribe to its own socket: the kind's URL
    with the fragment ``#<index>`` for shard ``index`` > 0, as :func:`pin_connection` set it
    right before the ccxt call (ccxt reaches ``watch_topics`` without suspending). Wraps
    ``watch_topics`` and ``un_watch_topics``; returns whether it did."""
    kinds = SOCKET_PER_SHARD.get(str(getattr(exchange, "id", "")))
    if not kinds or "btccxt_pin" in getattr(exchange, "__dict__", {}):
        return False
    exchange.btccxt_pin = None
    watch_topics, un_watch_topics = exchange.watch_topics, exchange.un_watch_topics

    def address(url: str) -> str:
        index, exchange.btccxt_pin = exchange.btccxt_pin, None
        if index and any(url.endswith("/" + kind) for kind in kinds):
            return f"{url}#{index}"
        return url

    async def pinned_watch_topics(url: str, *args: Any, **kwargs: Any) -> Any:
        return await watch_topics(address(url), *args, **kwargs)

    async def pinned_un_watch_topics(url: str, *args: Any, **kwargs: Any) -> Any:
        return await un_watch_topics(address(url), *args, **kwargs)

    exchange.watch_topics, exchange.un_watch_topics = pinned_watch_topics, pinned_un_watch_topics
    return True


def pace_sockets(exchange: Any) -> float | None:
    """Make ccxt send at most ``MESSAGE_RATES[exchange.id]`` messages a second on each socket
    (``options.btccxtWsRate`` overrides it), through the cost ccxt charges a socket message
    in its token bucket (``options.ws.cost``, left alone when the config sets it). Returns the
    rate set, or None."""
    options = getattr(exchange, "options", None)
    if not isinstance(options, dict):
        return None
    rate = options.get("btccxtWsRate") or MESSAGE_RATES.get(str(getattr(exchange, "id", "")))
    refill = float((getattr(exchange, "tokenBucket", None) or {}).get("refillRate") or 0)  # per ms
    ws = dict(options.get("ws") or {})
    if not rate or refill <= 0 or "cost" in ws:
        return None
    ws["cost"] = refill * 1000.0 / float(rate)
    options["ws"] = ws
    return float(rate)


def keep_successor_sockets(exchange: Any) -> None:
    """Stop a closed socket's late close report from unregistering the socket that replaced it.

    ccxt.pro 4.5 reports a close by the server twice: for the close frame, then (1006) when
    its read loop ends. Each report deletes ``exchange.clients[url]``; when a watch opened the
    replacement in between, the second deletes the replacement, which stays open with its
    subscriptions while the next watches open a third socket and subscribe again there
    (measured: after one drop, every series of kucoin and bitget twice, on two sockets).
    Wraps ``exchange.on_close`` (ccxt hands it to each new client) to act only for the socket
    the url is registered to."""
    original = getattr(exchange, "on_close", None)
    if original is None or getattr(original, "btccxt_guard", False):
        return

    def on_close(client: Any, code: Any) -> Any:
        current = (getattr(exchange, "clients", None) or {}).get(getattr(client, "url", None))
        if current is not None and current is not client:
            return None  # a replaced socket: its successor stays registered
        return original(client, code)

    on_close.btccxt_guard = True  # type: ignore[attr-defined]
    exchange.on_close = on_close


def spread_topics(exchange: Any) -> int | None:
    """(kucoin, bitget) Spread the topics over sockets of at most ``SOCKET_TOPICS`` topics
    (``options.btccxtWsShard`` overrides it); returns the size, or None where not needed.

    ccxt.pro 4.5 subscribes every topic of these exchanges on one socket: kucoin's bullet
    token (``...&connectId=public``), which refuses the 401st topic, and bitget's public URL,
    where 1,000 topics would be 1,000 subscribe requests on one connection (bitget allows 240
    an hour). Each topic is given a socket index, kept across reconnects and freed by its
    unsubscribe; socket ``n`` > 0 is the same endpoint under another URL, so ccxt opens one
    socket per index: kucoin's ``connectId=public-<n>`` (the id is the client's to choose),
    bitget's ``#<n>`` (a fragment, never sent). Wraps kucoin's ``subscribe`` and
    ``un_subscribe``, and bitget's ``watch`` for its public (un)subscribe messages.
    """
    ex_id = str(getattr(exchange, "id", ""))
    if ex_id not in SOCKET_TOPICS or getattr(exchange, "btccxt_spread", None) is not None:
        return None
    options = getattr(exchange, "options", None) or {}
    size = max(1, int(options.get("btccxtWsShard") or SOCKET_TOPICS[ex_id]))
    spread = _Spread(size)
    if ex_id == "bitget":
        _spread_bitget(exchange, spread)
    else:
        _spread_kucoin(exchange, spread)
    exchange.btccxt_spread = spread.where
    return size


class _Spread:
    """Which socket index each topic is on, and how many topics each index holds."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.where: dict[str, int] = {}  # topic -> socket index
        self.load: dict[int, int] = {}

    def index(self, topic: str, adding: bool) -> int | None:
        """The topic's socket index (a new one's: the first with room); None for a topic
        that holds none and is not being added."""
        index = self.where.get(topic)
        if index is None and adding:
            index = next(i for i in range(len(self.load) + 1) if self.load.get(i, 0) < self.size)
            self.where[topic] = index
            self.load[index] = self.load.get(index, 0) + 1
        return index

    def free(self, topic: str) -> None:
        index = self.where.pop(topic, None)
        if index is not None:
            self.load[index] -= 1


def _spread_kucoin(exchange: Any, spread: _Spread) -> None:
    subscribe, un_subscribe = exchange.subscribe, exchange.un_subscribe

    def address(url: str, topic: str, adding: bool) -> str:
        index = spread.index(topic, adding)
        if not index or "connectId=" not in url:
            return url
        head, _sep, tail = url.partition("connectId=")
        conn_id, amp, rest = tail.partition("&")
        moved = f"{head}connectId={conn_id}-{index}{amp}{rest}"
        if moved not in (getattr(exchange, "clients", None) or {}):
            keep = getattr(exchange.client(url), "keepAlive", None)  # the token's ping interval
            if keep:
                exchange.client(moved).keepAlive = keep
        return moved

    async def spread_subscribe(url: str, message_hash: str, subscription_hash: str,
                               *args: Any, **kwargs: Any) -> Any:
        return await subscribe(address(url, subscription_hash, True), message_hash,
                               subscription_hash, *args, **kwargs)

    async def spread_un_subscribe(url: str, message_hash: str, topic: str, *args: Any,
                                  **kwargs: Any) -> Any:
        moved = address(url, topic, False)
        spread.free(topic)
        return await un_subscribe(moved, message_hash, topic, *args, **kwargs)

    exchange.subscribe, exchange.un_subscribe = spread_subscribe, spread_un_subscribe


def _bitget_topic(message: Any) -> tuple[str, str] | None:
    """``(op, topic)`` of a one-argument public (un)subscribe message, else None."""
    if not isinstance(message, dict) or message.get("op") not in ("subscribe", "unsubscribe"):
        return None
    args = message.get("args")
    if not isinstance(args, list) or len(args) != 1 or not isinstance(args[0], dict):
        return None
    return message["op"], json.dumps(args[0], sort_keys=True, default=str)


def _spread_bitget(exchange: Any, spread: _Spread) -> None:
    watch = exchange.watch
    ws_urls = ((getattr(exchange, "urls", None) or {}).get("api") or {}).get("ws") or {}
    public = {u for k, u in ws_urls.items() if k in ("public", "utaPublic") and isinstance(u, str)}

    def spread_watch(url: str, message_hash: Any, message: Any = None, *args: Any,
                     **kwargs: Any) -> Any:
        got = _bitget_topic(message) if url in public else None
        if got is not None:
            op, topic = got
            index = spread.index(topic, op == "subscribe")
            if op == "unsubscribe":
                spread.free(topic)
            if index:
                url = f"{url}#{index}"
        return watch(url, message_hash, message, *args, **kwargs)

    exchange.watch = spread_watch
