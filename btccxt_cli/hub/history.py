"""History older than a stream, read by the hub for its runners (``keys.history``).

A runner's warm-up (``backfill_bars``, ``fromdate``) may reach back before its stream's first
entry and before what its local cache holds. It then asks the hub: it pushes a request
(``encode_history_request``) onto the ``history`` list and waits on ``history:{id}``. The
leading hub's thread takes the requests (``HistoryService.serve``, a few at a time), reads the
bars by REST on its store's loop, through its own exchange client and rate budget (runners
never call the exchange), and pushes the answer there with a TTL. The runner
(``hub/reader.py``) uses the unbroken run of bars that ends where its stream starts.

A request asks for at most ``HISTORY_MAX_BARS`` bars, the newest of its range.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from btccxt_cli.hub.keys import (
    HISTORY_MAX_BARS,
    HISTORY_REPLY_TTL_S,
    HubKeys,
    decode_history_request,
    encode_history_reply,
)
from btccxt_cli.model import Candle
from btccxt_cli.timeframes import timeframe_ms

__all__ = ["HistoryService"]

logger = logging.getLogger(__name__)

_RETRIES = 3  # attempts of one page on a temporary error (timeout, 5xx, 429)


class HistoryService:
    """The hub's side of history requests.

    Args:
        store: returns the hub's ``CCXTStore`` (None while it has none).
        keys: the hub's keys.
        ohlcv_limit: bars a REST page asks for.
        parallel: requests read at once.
        on_line: receives a line per answer (the hub's ``--plain`` output).
    """

    def __init__(self, store: Callable[[], Any], keys: HubKeys, *, ohlcv_limit: int = 100,
                 parallel: int = 8, on_line: Callable[[str], None] | None = None) -> None:
        self._store = store
        self.on_line = on_line
        self.keys = keys
        self.ohlcv_limit = max(1, ohlcv_limit)
        self.parallel = parallel
        self._done: deque[tuple[str, str, str]] = deque()  # (request id, answer, line)
        self._busy = 0
        self.served = 0  # answers pushed (tests, the dashboard)

    def serve(self, redis: Any) -> None:
        """The hub's thread: push the answers ready, then take requests while fewer than
        ``parallel`` are being read. Redis errors go to the caller (the hub's loop)."""
        while self._done:
            rid, answer, line = self._done[0]
            key = self.keys.history_reply(rid)
            pipe = redis.pipeline(transaction=False)
            pipe.rpush(key, answer)
            pipe.expire(key, HISTORY_REPLY_TTL_S)
            pipe.execute()
            self._done.popleft()
            self._busy -= 1
            self.served += 1
            if self.on_line is not None:
                self.on_line(line)
        store = self._store()
        while store is not None and self._busy < self.parallel:
            raw = redis.lpop(self.keys.history)
            if raw is None:
                return
            req = decode_history_request(raw)
            if req is None:
                logger.warning("hub: a malformed history request was dropped: %r", raw[:200])
                continue
            rid, symbol, timeframe, start, until = req
            self._busy += 1
            fut = store.run_async(self.fetch(store, symbol, timeframe, start, until))
            fut.add_done_callback(functools.partial(self._finished, rid, symbol, timeframe))

    def _finished(self, rid: str, symbol: str, timeframe: str, fut: Any) -> None:
        try:
            bars = fut.result()
        except Exception as exc:  # told to the runner, which goes on with what it has
            why = f"{type(exc).__name__}: {exc}"
            logger.warning("hub: reading history of %s %s for a runner failed: %s", symbol,
                           timeframe, why)
            self._done.append((rid, encode_history_reply(None, why),
                               f"history {symbol} {timeframe}: failed ({why})"))
            return
        line = f"history {symbol} {timeframe}: {len(bars)} bar(s) read for a runner"
        logger.info("hub: %s", line)
        self._done.append((rid, encode_history_reply(bars), line))

    async def fetch(self, store: Any, symbol: str, timeframe: str, start: int,
                    until: int) -> list[Candle]:
        """Bars opening in ``[start, until)`` (the newest ``HISTORY_MAX_BARS`` of them), page
        by page from the exchange, on the store's loop."""
        start = max(start, until - HISTORY_MAX_BARS * timeframe_ms(timeframe))
        ex = await store.async_exchange()
        out: list[Candle] = []
        since = start
        while since < until and len(out) < HISTORY_MAX_BARS:
            rows = await self._page(ex, symbol, timeframe, since)
            new = [Candle.from_ccxt(r) for r in rows
                   if r and r[0] is not None and since <= int(r[0]) < until]
            if not new:
                break
            out.extend(new)
            since = new[-1].ts + 1
        return out[-HISTORY_MAX_BARS:]  # the newest: they join the stream

    async def _page(self, ex: Any, symbol: str, timeframe: str, since: int) -> list:
        from btccxt_cli.exchange.errors import is_temporary

        for attempt in range(_RETRIES):
            try:
                return await ex.fetch_ohlcv(symbol, timeframe, since, self.ohlcv_limit)
            except Exception as exc:
                if not is_temporary(exc) or attempt == _RETRIES - 1:
                    raise
                await asyncio.sleep(0.5 * 2 ** attempt)
        return []
