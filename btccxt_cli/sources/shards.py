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
"""

from __future__ import annotations

from typing import Any

__all__ = ["SHARD_SIZES", "DEFAULT_SHARD", "SUBSCRIBE_GAP_S", "shard_size", "market_kind",
           "pin_connection", "socket_key"]

#: (exchange, market kind) -> streams per batch subscription; kind None: every kind
SHARD_SIZES: dict[tuple[str, str | None], int] = {
    ("binance", "spot"): 1000,  # 1024 streams per socket (a little room for other channels)
    ("binance", "linear"): 200,  # USD-M: 200 streams per socket (ccxt's note)
    ("binance", "inverse"): 200,
    ("okx", None): 500,  # one request's args may total 64 KB (~1,300 candle args)
    ("bybit", "spot"): 10,  # 10 args per subscribe request on spot
    ("kucoin", None): 100,  # 100 topics per subscribe message
    ("bitget", None): 50,  # "fewer than 50 channels per connection" recommended
}
DEFAULT_SHARD = 200
#: at least this long between two (un)subscribe messages of ours on one socket: binance closes a
#: socket past 5 incoming messages a second (pongs count), and ccxt's own pacing (about 4 a
#: second after a pause) leaves no room for them
SUBSCRIBE_GAP_S = 0.35
_PIN_HASH = "multipleOHLCV"  # ccxt.pro binance's subscription hash of watch_ohlcv_for_symbols


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


def socket_key(exchange: Any, kind: str, index: int) -> tuple[str, int]:
    """Which socket a shard's messages go to: its own (``/ws/<index>``) where ccxt addresses
    sockets by a stream index (binance), else the market kind's one shared socket."""
    by_hash = (getattr(exchange, "options", None) or {}).get("streamBySubscriptionsHash")
    return (kind, index if by_hash is not None else 0)
