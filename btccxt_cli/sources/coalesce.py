"""Many series' subscribes in one message, where ccxt.pro sends one per series (kraken, bitget).

ccxt.pro 4.5 has no batch OHLCV call on kraken and bitget: every ``watch_ohlcv`` sends its own
subscribe message, and ccxt paces a socket's messages (kraken: one a second, its REST
``rateLimit``; bitget: btccxt's 7 a second, ``shards.pace_sockets``). 1,000 kraken symbols
took about 17 minutes to subscribe, at start and after every drop. Both exchanges take a list
in one subscribe: kraken's v2 ``params.symbol`` and bitget's ``args``.

:func:`coalesce_subscribes` wraps the exchange's ``watch``: a one-symbol OHLCV subscribe is
registered with ccxt as usual (its future, its subscription, the socket's connect) but not
sent; it joins its socket's queue, and one sender per socket sends the queue as merged
messages, each as soon as ccxt's pacing of that socket lets it (``options.btccxtWsCoalesce:
false`` in the exchange config turns this off). The first message waits
``GATHER_S`` for the series attached together; while it waits for its turn, the next
gathers every subscribe that came meanwhile (the restores after a drop, one by one). Each
series still waits on its own ``watch_ohlcv``, whose answers ccxt routes by symbol as before.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

__all__ = ["coalesce_subscribes", "GATHER_S", "KRAKEN_SYMBOLS", "BITGET_ARGS_BYTES"]

logger = logging.getLogger(__name__)

GATHER_S = 0.02  # series attached together (within this) share the first message
#: symbols in one kraken subscribe: kraken documents no number (ccxt's own watch_tickers
#: sends any number in one message)
KRAKEN_SYMBOLS = 100
#: bitget: "the total length of multiple channels cannot exceed 4096 bytes" in one request
BITGET_ARGS_BYTES = 4000


def _kraken_split(message: Any) -> tuple[str, Any] | None:
    """``{"method": "subscribe", "params": {"channel": "ohlc", "symbol": [s], "interval": 1},
    "req_id": ..}`` -> (what a merged message shares, ``s``)."""
    if not isinstance(message, dict) or message.get("method") != "subscribe":
        return None
    params = message.get("params")
    if not isinstance(params, dict) or params.get("channel") != "ohlc":
        return None
    symbols = params.get("symbol")
    if not isinstance(symbols, list) or len(symbols) != 1:
        return None
    shared = {k: v for k, v in params.items() if k != "symbol"}
    return json.dumps(shared, sort_keys=True, default=str), symbols[0]


def _kraken_merge(first: dict, items: list[Any]) -> dict:
    return {**first, "params": {**first["params"], "symbol": list(items)}}


def _kraken_fits(items: list[Any], item: Any) -> bool:
    return len(items) < KRAKEN_SYMBOLS


def _bitget_split(message: Any) -> tuple[str, Any] | None:
    """``{"op": "subscribe", "args": [{"instType": .., "channel": "candle1m", "instId": ..}]}``
    -> (what a merged message shares, the arg)."""
    if not isinstance(message, dict) or message.get("op") != "subscribe":
        return None
    args = message.get("args")
    if not isinstance(args, list) or len(args) != 1 or not isinstance(args[0], dict):
        return None
    if not str(args[0].get("channel", "")).startswith("candle"):
        return None
    shared = {k: v for k, v in message.items() if k != "args"}
    return json.dumps(shared, sort_keys=True, default=str), args[0]


def _bitget_merge(first: dict, items: list[Any]) -> dict:
    return {**first, "args": list(items)}


def _bitget_fits(items: list[Any], item: Any) -> bool:
    return len(json.dumps([*items, item], separators=(",", ":"))) <= BITGET_ARGS_BYTES


class _Spec:
    def __init__(self, split: Callable[[Any], tuple[str, Any] | None],
                 merge: Callable[[dict, list[Any]], dict],
                 fits: Callable[[list[Any], Any], bool]) -> None:
        self.split, self.merge, self.fits = split, merge, fits


_SPECS: dict[str, _Spec] = {
    "kraken": _Spec(_kraken_split, _kraken_merge, _kraken_fits),
    "bitget": _Spec(_bitget_split, _bitget_merge, _bitget_fits),
}


class _Queue:
    """One socket's subscribes not yet sent, in order, by what their messages share."""

    def __init__(self) -> None:
        self.by_key: dict[str, tuple[dict, list[Any]]] = {}
        self.task: asyncio.Task[None] | None = None

    def add(self, key: str, message: dict, item: Any) -> None:
        self.by_key.setdefault(key, (message, []))[1].append(item)

    def take(self, spec: _Spec) -> dict | None:
        """The next merged message (as much of the oldest key's queue as one message
        carries), or None when nothing is queued."""
        for key, (first, items) in self.by_key.items():
            n = 1
            while n < len(items) and spec.fits(items[:n], items[n]):
                n += 1
            out, rest = items[:n], items[n:]
            if rest:
                self.by_key[key] = (first, rest)
            else:
                del self.by_key[key]
            return spec.merge(first, out)
        return None


def coalesce_subscribes(exchange: Any) -> bool:
    """Send the one-symbol OHLCV subscribes of ``exchange`` (kraken, bitget) as merged
    messages (module doc); a no-op elsewhere. Returns whether it wrapped ``watch``."""
    spec = _SPECS.get(str(getattr(exchange, "id", "")))
    options = getattr(exchange, "options", None) or {}
    if spec is None or getattr(exchange, "btccxt_coalesce", None) is not None \
            or options.get("btccxtWsCoalesce") is False:
        return False
    watch = exchange.watch
    queues: dict[Any, _Queue] = {}  # ccxt client -> its queue while its sender runs
    exchange.btccxt_coalesce = queues

    def coalescing_watch(url: str, message_hash: Any, message: Any = None,
                         subscribe_hash: Any = None, subscription: Any = None) -> Any:
        got = spec.split(message) if subscribe_hash is not None else None
        if got is None:
            return watch(url, message_hash, message, subscribe_hash, subscription)
        client = exchange.client(url)
        new = not client.subscriptions.get(subscribe_hash)
        # ccxt registers the future and the subscription and connects; it sends nothing
        future = watch(url, message_hash, None, subscribe_hash, subscription)
        if new:
            queue = queues.get(client)
            if queue is None:
                queue = queues[client] = _Queue()
                queue.task = asyncio.ensure_future(_send(client, queue))
            queue.add(got[0], message, got[1])
        return future

    async def _send(client: Any, queue: _Queue) -> None:
        try:
            await asyncio.sleep(GATHER_S)
            try:
                await client.connected
            except Exception:  # ccxt failed every watch of this socket: they subscribe again
                return
            options = exchange.safe_value(exchange.options, "ws") or {}
            cost = exchange.safe_value(options, "cost", 1)
            while True:
                if exchange.enableRateLimit:
                    await client.throttle(cost)  # the socket's pacing, as ccxt's own sends
                message = queue.take(spec)
                if message is None:
                    return
                try:
                    await client.send(message)
                except Exception as exc:  # as ccxt does with a failed send
                    client.on_error(exc)
                    return
        finally:
            if queues.get(client) is queue:
                del queues[client]

    exchange.watch = coalescing_watch
    return True
