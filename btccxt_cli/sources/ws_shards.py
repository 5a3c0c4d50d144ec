"""The messages a WebSocket hub sends per shard: subscribes spaced on each socket, removals
unsubscribed in batches in the background, and the pause between two watches of a tapped
shard (docs/data-core.md, "Many symbols"). ``shards.py`` says how big a shard is and where it
goes; this module says when its messages go.

Runs only on the store's event loop thread.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from btccxt_cli.exchange.taps import subscription_keys
from btccxt_cli.sources.coalesce import coalesce_subscribes
from btccxt_cli.sources.shards import (
    keep_successor_sockets,
    pace_sockets,
    pin_connection,
    pin_shard_sockets,
    shard_size,
    socket_key,
    spread_topics,
    subscribe_gap,
)

__all__ = ["ShardMessages", "REWATCH_S", "client_of", "until_dropped"]

logger = logging.getLogger(__name__)

REWATCH_S = 1.0  # a tapped batch watches its shard again this long after an answer


class _Shard(Protocol):
    kind: str
    index: int
    queued: bool
    subs: list[Any]


class _Spot:
    """A shard's address only (an unsubscribe of series that left their group)."""

    def __init__(self, kind: str, index: int) -> None:
        self.kind, self.index, self.queued, self.subs = kind, index, False, []


class ShardMessages:
    """Pacing and batching of one hub's (un)subscribe messages."""

    def __init__(self, exchange: Any) -> None:
        self.exchange = exchange
        pace_sockets(exchange)  # ccxt's own pacing of each socket within the exchange's rate
        keep_successor_sockets(exchange)  # a dropped socket's late close spares its successor
        coalesce_subscribes(exchange)  # kraken, bitget: many series' subscribes in one message
        spread_topics(exchange)  # kucoin, bitget: more sockets past 200 (49) topics
        pin_shard_sockets(exchange)  # bybit derivatives: a socket per shard
        self._sends: dict[tuple[str, int], float] = {}  # socket -> loop.time() of its next message
        self._unwatch: list[tuple[tuple[str, int] | None, str, str]] = []  # removed series
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def join_queued(self, groups: list[Any], kind: str, members: list[Any]) -> list[Any]:
        """Put new series into groups still waiting to send their subscribe (within the shard
        size): feeds added over seconds then cost a few messages, not one per 20 ms.
        Returns the series left over."""
        size = shard_size(self.exchange, kind)
        load: dict[int, int] = {}
        for g in groups:
            if g.kind == kind:
                load[g.index] = load.get(g.index, 0) + len(g.subs)
        for g in groups:
            if not members:
                break
            if g.kind != kind or not g.queued or not g.subs:
                continue
            free = size - load.get(g.index, 0)
            if free > 0:
                joining, members = members[:free], members[free:]
                for sub in joining:
                    sub.group = g
                g.subs.extend(joining)
                load[g.index] = load.get(g.index, 0) + len(joining)
        return members

    async def pace(self, shard: _Shard) -> None:
        """Wait for this shard's turn to send a message on its socket (``subscribe_gap``);
        on the wall clock, as the exchange counts."""
        gap = subscribe_gap(self.exchange)
        if gap <= 0:
            return  # ccxt's own pacing of the socket
        loop = asyncio.get_running_loop()
        key = socket_key(self.exchange, shard.kind, shard.index)
        now = loop.time()
        at = max(now, self._sends.get(key, now))
        self._sends[key] = at + gap
        if at > now:
            shard.queued = True
            try:
                await asyncio.sleep(at - now)
            finally:
                shard.queued = False

    def unwatch_soon(self, shard: tuple[str, int] | None, symbol: str, timeframe: str) -> None:
        """Unsubscribe a removed series once removals pause for 50 ms: one message per shard.

        In the background: ccxt paces socket messages (binance: 4 a second), so one awaited
        unsubscribe per series made stopping 1,000 feeds take minutes."""
        self._unwatch.append((shard, symbol, timeframe))
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(0.05, self._unwatch_now)

    def drop(self) -> None:
        """Nothing is watched any more (the store is stopping): send no unsubscribe. Closing
        the sockets ends every subscription, and a message sent after the close would open a
        socket again (left for the interpreter to find unclosed at exit)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._unwatch = []
        for t in self._tasks:
            t.cancel()
        self._tasks = set()

    def _unwatch_now(self) -> None:
        self._timer = None
        todo, self._unwatch = self._unwatch, []
        self._tasks = {t for t in self._tasks if not t.done()}
        shards: dict[tuple[str, int], list[list[str]]] = {}
        for shard, symbol, timeframe in todo:
            if shard is None:
                coro = self.exchange.un_watch_ohlcv(symbol, timeframe)
            else:
                shards.setdefault(shard, []).append([symbol, timeframe])
                continue
            self._tasks.add(asyncio.create_task(_quietly(coro, symbol)))
        for (kind, index), pairs in shards.items():
            self._tasks.add(asyncio.create_task(_quietly(self.unwatch_pairs(index, pairs, kind),
                                                         f"{len(pairs)} series")))

    async def unwatch_pairs(self, index: int, pairs: list[list[str]], kind: str) -> None:
        await self.pace(_Spot(kind, index))
        # pinned inside the task wait_for runs: ccxt reads the socket index as the call starts
        pin_connection(self.exchange, index)
        await self.exchange.un_watch_ohlcv_for_symbols(pairs)


async def _quietly(coro: Any, what: str) -> None:
    try:
        await asyncio.wait_for(coro, 5)
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.debug("unsubscribing %s not possible", what, exc_info=True)


def client_of(exchange: Any, pairs: list[list[str]]) -> Any:
    """The ccxt client (socket) holding the subscription of ``pairs``, if it can be told."""
    keys = subscription_keys(exchange, *pairs[0]) if pairs else set()
    return next((c for c in list(getattr(exchange, "clients", {}).values())
                 if any(k in (getattr(c, "subscriptions", None) or {}) for k in keys)), None)


async def until_dropped(client: Any, name: str) -> None:
    """(tapped batch) Pause before watching a shard again; raise if its socket fails.

    The tap hands every message to the series, so the group's watch answers carry nothing
    new; but each ``watch_ohlcv_for_symbols`` call costs ccxt work for every pair of the shard
    (a future per stream, raced) and an answer came with every message: with 1,000 symbols
    that was most of the loop's time. So the loop watches again only every ``REWATCH_S``;
    meanwhile one future of ours (``name``) waits on the shard's ccxt client, which ccxt fails
    with every other pending future of that client when the socket fails (and cancels when it
    closes), so a drop is told at once, as before.
    """
    import ccxt

    make = None if client is None else getattr(client, "future", None)
    if make is None:  # the client cannot be told: watch again at once, as ccxt would
        return
    closed = ccxt.NetworkError("btccxt: the shard's connection closed")
    if getattr(client, "error", None) is not None or client.closed():
        raise closed  # failed before our future was there to be told
    fut = make(name)
    try:
        await asyncio.wait_for(asyncio.shield(fut), REWATCH_S)
    except asyncio.TimeoutError:
        pass
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
    if fut.done():  # failed (or closed) while we waited, or while the wait was ending
        if fut.cancelled():
            raise closed
        exc = fut.exception()
        raise exc if isinstance(exc, Exception) else closed
