"""Check cached bars against the exchange, and replace what differs (``btccxt cache verify``).

Role: :func:`verify_range` reads the window again from the exchange through a ``Backfiller``
into a throw-away in-memory cache (so the paging, closed-bar and gap rules are the
backfill's own), then compares bar by bar with the rows stored under ``source``. With
``fix=True`` it replaces differing rows, adds missing ones, removes rows the exchange does
not have and records the ranges the exchange confirmed empty.

Must not import: ccxt (the caller passes a client), typer, rich, backtrader, the simulator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from btccxt_cli.cache.backfill import Backfiller
from btccxt_cli.cache.sqlite import OhlcvCache
from btccxt_cli.errors import TemporaryError

__all__ = ["VerifyResult", "verify_range"]


@dataclass
class VerifyResult:
    """What one verification found (and did, with ``fix``).

    ``differ``: bar opens whose values differ; ``missing``: bars the exchange has and the cache
    lacks; ``extra``: cached bars the exchange does not have. ``start_ms``/``end_ms``: the window
    compared (end exclusive, never past the exchange's last closed bar).
    """

    source: str
    symbol: str
    timeframe: str
    start_ms: int
    end_ms: int
    exchange_bars: int = 0
    cached_bars: int = 0
    same: int = 0
    differ: list[int] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)
    extra: list[int] = field(default_factory=list)
    fixed: bool = False
    requests: int = 0

    @property
    def clean(self) -> bool:
        return not (self.differ or self.missing or self.extra)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "symbol": self.symbol, "timeframe": self.timeframe,
                "start": self.start_ms, "end": self.end_ms, "exchange_bars": self.exchange_bars,
                "cached_bars": self.cached_bars, "same": self.same, "differ": len(self.differ),
                "missing": len(self.missing), "extra": len(self.extra),
                "differ_ts": self.differ[:20], "missing_ts": self.missing[:20],
                "extra_ts": self.extra[:20], "clean": self.clean, "fixed": self.fixed,
                "requests": self.requests}


def verify_range(client: Any, cache: OhlcvCache, *, exchange_id: str, source: str, symbol: str,
                 timeframe: str, since_ms: int, until_ms: int | None, fix: bool = False,
                 max_retries: int = 8, backoff: Any = None) -> VerifyResult:
    """Compare the bars of ``[since, until)`` cached under ``source`` with the exchange's.

    Raises:
        UnsupportedError: unknown symbol or timeframe (nothing fetched).
        TemporaryError: the exchange kept failing, or the read was interrupted.
    """
    with OhlcvCache(":memory:") as fresh:
        bf = Backfiller(client, fresh, exchange_id=exchange_id, source=source, symbol=symbol,
                        timeframe=timeframe, since_ms=since_ms, until_ms=until_ms,
                        max_retries=max_retries, backoff=backoff)
        res = bf.run()
        if res.interrupted or (res.gaps is not None and res.gaps.missing):
            raise TemporaryError(f"{source} {symbol} {timeframe}: the exchange's bars could not "
                                 "all be read; nothing was compared", hint="rerun the command")
        start, end = res.start_ms, res.end_ms
        theirs = {c.ts: c for c in fresh.iter_read(source, symbol, timeframe, start, end)}
        empty = fresh.empty_ranges(source, symbol, timeframe, start, end)
    out = VerifyResult(source, symbol, timeframe, start, end, exchange_bars=len(theirs),
                       requests=res.requests)
    mine = {c.ts: c for c in cache.iter_read(source, symbol, timeframe, start, end)}
    out.cached_bars = len(mine)
    for ts, c in mine.items():
        other = theirs.get(ts)
        if other is None:
            out.extra.append(ts)
        elif tuple(other) == tuple(c):
            out.same += 1
        else:
            out.differ.append(ts)
    out.missing = sorted(set(theirs) - set(mine))
    if fix and not out.clean:
        replace = sorted(out.differ + out.missing)
        cache.upsert(source, symbol, timeframe, [theirs[ts] for ts in replace])
        for ts in out.extra:
            cache.delete(source, symbol, timeframe, ts, ts + 1)
        for a, b in empty:
            cache.mark_empty(source, symbol, timeframe, a, b)
        out.fixed = True
    return out
