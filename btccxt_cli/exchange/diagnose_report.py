"""The values ``check_ws`` returns: one :class:`Step` per check, the :class:`CheckReport`.

Role: the report of ``btccxt check-ws`` (steps in run order with their titles, the verdict and its
exit code, ``--json`` form) and the few helpers that word numbers in a step's ``detail``
(``fmt_ms``, ``iso_utc``). Pure values: no I/O, no asyncio. ``cli/check_ws.py`` renders them.

Must not import: ccxt, typer, rich, backtrader, the simulator, or the other ``diagnose*``
modules (they import this one).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Step", "CheckReport", "STEP_TITLES", "VERDICT_EXIT", "verdict_of", "ns_to_ms",
           "fmt_ms", "iso_utc"]

STEP_TITLES = {
    "exchange": "exchange",
    "timeframe": "timeframe",
    "rest": "REST",
    "clock": "clock skew",
    "credentials": "credentials",
    "symbol": "symbol",
    "ws_connect": "WebSocket connect",
    "first_candle": "first candle",
    "stream": "message rate",
    "keepalive": "keepalive",
    "reconnect": "reconnect",
}
"""Step ids in the order they run, with the label a person reads."""


@dataclass
class Step:
    """One check: ``status`` is ``pass``, ``warn``, ``fail`` or ``skip``."""

    name: str
    status: str
    seconds: float
    """How long the step took (wall, from the injected clock's ``perf_ns``)."""
    detail: str
    hint: str = ""
    """For warn/fail: what a person can do about it."""
    metrics: dict[str, Any] = field(default_factory=dict)
    """Numbers behind ``detail`` (``rtt_ms``, ``skew_ms``, ``updates_per_s`` ...), for ``--json``."""

    @property
    def title(self) -> str:
        return STEP_TITLES.get(self.name, self.name)


VERDICT_EXIT = {"pass": 0, "degraded": 1, "failed": 2}


@dataclass
class CheckReport:
    """Everything ``check_ws`` found; ``verdict`` is ``pass``, ``degraded`` or ``failed``."""

    exchange: str
    symbol: str
    timeframe: str
    steps: list[Step]
    verdict: str
    sim_url: str | None = None
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        """0 every step passed (or was skipped), 1 a warning, 2 a failure."""
        return VERDICT_EXIT[self.verdict]

    def step(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)

    def timings(self) -> dict[str, float]:
        """Step durations plus the headline figures, in seconds or milliseconds as named."""
        out: dict[str, float] = {f"{s.name}_s": round(s.seconds, 6) for s in self.steps}
        for s in self.steps:
            for k, v in s.metrics.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    out[k] = v
        out["total_s"] = round(self.seconds, 6)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "exchange": self.exchange, "symbol": self.symbol, "timeframe": self.timeframe,
            "sim_url": self.sim_url, "verdict": self.verdict, "exit_code": self.exit_code,
            "steps": [{**asdict(s), "title": s.title} for s in self.steps],
            "timings": self.timings(),
        }


def verdict_of(steps: list[Step]) -> str:
    statuses = {s.status for s in steps}
    if "fail" in statuses:
        return "failed"
    return "degraded" if "warn" in statuses else "pass"


def ns_to_ms(ns: int) -> float:
    """Nanoseconds (``Clock.perf_ns`` differences) as milliseconds, to the microsecond."""
    return round(ns / 1e6, 3)


def fmt_ms(ms: float) -> str:
    """``12.3 ms`` below a second, ``1.23 s`` from there on."""
    return f"{ms / 1000:.2f} s" if abs(ms) >= 1000 else f"{ms:.1f} ms"


def iso_utc(ts_ms: int) -> str:
    """Epoch milliseconds as ``YYYY-MM-DD HH:MM:SS`` in UTC (a candle's open in a detail)."""
    return _dt.datetime.fromtimestamp(ts_ms / 1000, tz=_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
