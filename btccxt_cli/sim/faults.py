"""Fault state of one simulated exchange: outages, stalls, reordering, injected REST errors.

The state is plain data read by the server on every request and push; the server applies it
(``app.ExchangeServer``). Times are seconds on the simulator's monotonic clock, so a
``ManualClock`` drives them in tests. Must not import anything from the client side.

Faults (one method each on ``Simulator``/``SimThread``, and ``POST /_sim/faults/<name>``):

=================== ====================================================================
``drop``            close every socket (close frame 1001) or reset it (TCP abort)
``outage``          for N seconds: refuse WS upgrades and/or REST with HTTP 503
``stall``           for N seconds: sockets stay open, pings answered, no pushes
``duplicate``       send every candle update twice
``reorder``         send a bar's final after the next bar's first update; swap partials
``delay_pushes``    hold every push back by N ms
``rest_errors``     answer the next N REST requests with 429/418/5xx (venue error body)
``rest_delay``      answer REST N ms late
``drop_subscription``  forget one symbol's streams server-side, without telling the client
``rest_hole``       REST answers (and subscription snapshots) lack one symbol's bars opening in
                    ``[start_ms, end_ms]`` (every symbol when ``symbol`` is empty): a span the
                    exchange has no bars for (a halt); live pushes and ``truth`` keep them
``order_ack_fault`` the next N order placements are executed, then the answer is delayed past
                    the client's timeout (``delay``), the connection reset (``reset``) or an
                    HTTP 500 sent (``500``): the ambiguous case a client must resolve by lookup
``lookup_lag``      for N ms after an order's create, lookups of it (by id or client id) answer
                    "no such order" with the exchange's own code (binance -2013, okx 51603): a
                    read replica lagging behind the matching engine
``clear_faults``    back to normal
=================== ====================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

__all__ = ["FaultState", "FAULT_NAMES", "REST_ERROR_STATUSES", "DROP_MODES", "ACK_FAULT_MODES"]

FAULT_NAMES = (
    "drop", "outage", "stall", "duplicate", "reorder", "delay_pushes", "rest_errors",
    "rest_delay", "drop_subscription", "clear_faults", "order_ack_fault", "rest_hole",
    "lookup_lag", "clock_jump",
)
MAX_CLOCK_JUMP_S = 7 * 86_400  # one jump moves the exchanges' clock at most a week ahead
REST_ERROR_STATUSES = (418, 429, 500, 502, 503)
DROP_MODES = ("close", "reset")
ACK_FAULT_MODES = ("delay", "reset", "500")


@dataclass
class FaultState:
    """What is currently wrong with one exchange (all off by default)."""

    ws_outage_until: float = 0.0
    rest_outage_until: float = 0.0
    stall_until: float = 0.0
    duplicate: bool = False
    reorder: bool = False
    push_delay_ms: int = 0
    rest_error_status: int = 0
    rest_error_count: int = 0
    rest_error_retry_after: float | None = None
    rest_delay_ms: int = 0
    ack_fault_mode: str = ""
    ack_fault_count: int = 0
    ack_fault_ms: int = 0
    rest_holes: tuple[tuple[str, int, int], ...] = ()  # (symbol or "", first open, last open)
    lookup_lag_ms: int = 0  # an order is not found by lookups for this long after its create

    def clear(self) -> None:
        for f in fields(self):
            setattr(self, f.name, f.default)

    # ------------------------------------------------------------------ setters (validated)
    def set_outage(self, now: float, seconds: float, ws: bool, rest: bool) -> None:
        seconds = _non_negative("seconds", seconds)
        if ws:
            self.ws_outage_until = now + seconds
        if rest:
            self.rest_outage_until = now + seconds

    def set_stall(self, now: float, seconds: float) -> None:
        self.stall_until = now + _non_negative("seconds", seconds)

    def set_rest_errors(self, status: int, count: int, retry_after: float | None) -> None:
        status = int(status)
        if status not in REST_ERROR_STATUSES:
            raise ValueError(f"status must be one of {REST_ERROR_STATUSES}, not {status}")
        self.rest_error_status = status
        self.rest_error_count = int(_non_negative("count", count))
        self.rest_error_retry_after = None if retry_after is None else _non_negative(
            "retry_after", retry_after)

    def set_ack_fault(self, mode: str, count: int, ms: float) -> None:
        if mode not in ACK_FAULT_MODES:
            raise ValueError(f"mode must be one of {ACK_FAULT_MODES}, not {mode!r}")
        self.ack_fault_mode = mode
        self.ack_fault_count = int(_non_negative("count", count))
        self.ack_fault_ms = int(_non_negative("ms", ms))

    def take_ack_fault(self) -> tuple[str, int] | None:
        """Consume one order-answer fault: ``(mode, ms)`` or ``None``."""
        if self.ack_fault_count <= 0:
            return None
        self.ack_fault_count -= 1
        return self.ack_fault_mode, self.ack_fault_ms

    def add_rest_hole(self, symbol: str, start_ms: int, end_ms: int) -> None:
        start_ms, end_ms = int(start_ms), int(end_ms)
        if end_ms < start_ms:
            raise ValueError(f"end_ms ({end_ms}) must be >= start_ms ({start_ms})")
        self.rest_holes = (*self.rest_holes, (str(symbol or ""), start_ms, end_ms))

    def in_rest_hole(self, symbol: str, open_ms: int) -> bool:
        """The bar of ``symbol`` opening at ``open_ms`` is left out of REST answers."""
        return any(a <= open_ms <= b and (not s or s == symbol) for s, a, b in self.rest_holes)

    def set_lookup_lag(self, ms: float) -> None:
        self.lookup_lag_ms = int(_non_negative("ms", ms))

    def set_push_delay(self, ms: float) -> None:
        self.push_delay_ms = int(_non_negative("ms", ms))

    def set_rest_delay(self, ms: float) -> None:
        self.rest_delay_ms = int(_non_negative("ms", ms))

    # ------------------------------------------------------------------ queries
    def ws_outage(self, now: float) -> bool:
        return now < self.ws_outage_until

    def rest_outage(self, now: float) -> bool:
        return now < self.rest_outage_until

    def stalled(self, now: float) -> bool:
        return now < self.stall_until

    def take_rest_error(self) -> tuple[int, float | None] | None:
        """Consume one injected REST error: ``(status, retry_after)`` or ``None``."""
        if self.rest_error_count <= 0:
            return None
        self.rest_error_count -= 1
        return self.rest_error_status, self.rest_error_retry_after

    def snapshot(self, now: float) -> dict[str, Any]:
        """JSON-ready view with remaining seconds instead of deadlines."""
        return {
            "ws_outage_s": max(0.0, round(self.ws_outage_until - now, 3)),
            "rest_outage_s": max(0.0, round(self.rest_outage_until - now, 3)),
            "stall_s": max(0.0, round(self.stall_until - now, 3)),
            "duplicate": self.duplicate,
            "reorder": self.reorder,
            "push_delay_ms": self.push_delay_ms,
            "rest_errors": {
                "status": self.rest_error_status,
                "remaining": self.rest_error_count,
                "retry_after": self.rest_error_retry_after,
            },
            "rest_delay_ms": self.rest_delay_ms,
            "rest_holes": [list(h) for h in self.rest_holes],
            "lookup_lag_ms": self.lookup_lag_ms,
            "order_ack_fault": {"mode": self.ack_fault_mode, "remaining": self.ack_fault_count,
                                "ms": self.ack_fault_ms},
        }


def _non_negative(name: str, value: float) -> float:
    v = float(value)
    if v < 0:
        raise ValueError(f"{name} must be >= 0, not {value}")
    return v
