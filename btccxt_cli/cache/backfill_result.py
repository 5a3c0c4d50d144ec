"""``BackfillResult``: what one backfill run did (counters, window, gap report).

Role: the value ``Backfiller.run()`` returns and ``btccxt backfill`` prints (``to_dict`` is the
``--json`` form of one symbol). A plain dataclass: no I/O.

Must not import: ccxt, typer, rich, backtrader, the simulator, ``cache.backfill`` (it imports
this one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from btccxt_cli.bars.gaps import GapReport, align_up, shortfall_text
from btccxt_cli.timeframes import as_grid

__all__ = ["BackfillResult"]


@dataclass
class BackfillResult:
    """What one ``Backfiller.run()`` did.

    Attributes:
        start_ms, end_ms: the window backfilled (first bar open, exclusive end: the bar
            forming when the run began is never included).
        expected_bars: bar slots the plan asked the exchange for.
        bars_fetched: closed bars received in the planned windows.
        bars_written: rows inserted or changed in the cache (unchanged re-reads not counted).
        cached_bars: bars of the window in the cache after the run.
        requests: ``fetch_ohlcv`` calls, failed ones included.
        retries: failed calls that were retried.
        rate_limit_waits: of those, 429/418 answers.
        waited_s: seconds spent waiting before retries.
        seconds: wall time of the run (by the injected clock).
        gaps: exchange-confirmed vs still-missing gaps of the window after the run.
        interrupted: ``request_stop()`` ended the run early.
    """

    exchange: str
    symbol: str
    timeframe: str
    start_ms: int
    end_ms: int
    expected_bars: int = 0
    bars_fetched: int = 0
    bars_written: int = 0
    cached_bars: int = 0
    requests: int = 0
    retries: int = 0
    rate_limit_waits: int = 0
    waited_s: float = 0.0
    seconds: float = 0.0
    gaps: GapReport | None = None
    interrupted: bool = False
    limit: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def asked_bars(self) -> int:
        """Bars the window holds (what was asked for), cached or not."""
        if self.gaps is None:
            return self.expected_bars
        return as_grid(self.gaps.tf_ms).bars_in(self.start_ms, self.end_ms)

    @property
    def shortfall(self) -> str:
        """The line saying the exchange gave fewer bars than asked ("" when it gave them all,
        or when some are still missing: a rerun may get those)."""
        g = self.gaps
        if g is None or self.interrupted or g.missing:
            return ""
        asked = self.asked_bars
        if self.cached_bars >= asked:
            return ""
        oldest = bool(g.exchange) and g.exchange[0][0] <= align_up(self.start_ms, g.tf_ms)
        exchange_id = self.exchange.split("@", 1)[0]  # a simulator's source: "kraken@sim:seed-1"
        return shortfall_text(exchange_id, self.timeframe, self.cached_bars, asked,
                              oldest_served=oldest)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (``btccxt backfill --json``)."""
        out: dict[str, Any] = {
            "exchange": self.exchange, "symbol": self.symbol, "timeframe": self.timeframe,
            "start": self.start_ms, "end": self.end_ms, "expected_bars": self.expected_bars,
            "bars_fetched": self.bars_fetched, "bars_written": self.bars_written,
            "cached_bars": self.cached_bars, "requests": self.requests, "retries": self.retries,
            "rate_limit_waits": self.rate_limit_waits, "waited_s": round(self.waited_s, 3),
            "seconds": round(self.seconds, 3), "limit": self.limit,
            "interrupted": self.interrupted, "asked_bars": self.asked_bars,
            "shortfall": self.shortfall or None,
        }
        if self.gaps is not None:
            out.update(self.gaps.to_dict())
        return out
