"""The WebSocket limits a simulated exchange enforces the way the real one does.

Each venue declares its exchange's documented limits in ``Venue.ws_limits`` (docs/data-core.md,
"Many symbols"); ``Simulator(ws_limits={"binance": {"streams_per_connection": 20}})`` lowers
them so a test stays cheap. Keys (absent or 0: not enforced):

``streams_per_connection``  streams one socket may hold (binance: 1024, closes the socket;
                            kucoin: 400, bitget: 1000, refused)
``messages_per_second``     text messages a socket may send per second (binance: 5, bitget: 10,
                            closes it)
``messages_per_10s``        text messages a socket may send per 10 seconds (kucoin: 100,
                            refused)
``args_per_request``        arguments one subscribe request may carry (bybit spot: 10, kucoin:
                            100 topics; refused)
``request_bytes``           length of one request's arguments (okx: 64 KB, bitget: 4,096 bytes,
                            refused)
``args_chars``              length of all the topics one socket holds (bybit derivatives:
                            21,000 characters, refused)
``subscribes_per_hour``     subscribe requests a socket may send per hour (bitget: 240,
                            refused)

The message rate is counted on the wall clock (``time.monotonic``), not the simulator's
clock: it limits what crosses the socket, which ccxt paces in real time.

Must not import ccxt or anything from the client side of btccxt.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

__all__ = ["CLOSE_POLICY", "LIMIT_KEYS", "WsLimits"]

LIMIT_KEYS = ("streams_per_connection", "messages_per_second", "messages_per_10s",
              "args_per_request", "request_bytes", "args_chars", "subscribes_per_hour")
CLOSE_POLICY = 1008  # RFC 6455 policy violation: what binance closes an over-limit socket with


class WsLimits:
    """One venue's effective limits (its defaults with the simulator's overrides)."""

    def __init__(self, defaults: dict[str, int], overrides: dict[str, int] | None) -> None:
        unknown = set(overrides or {}) - set(LIMIT_KEYS)
        if unknown:
            raise ValueError(f"unknown WebSocket limits {sorted(unknown)} (known: {LIMIT_KEYS})")
        self.values: dict[str, int] = {**defaults, **(overrides or {})}

    def get(self, name: str) -> int:
        return int(self.values.get(name) or 0)

    def too_fast(self, extra: dict[str, Any]) -> bool:
        """Count one incoming message of a socket (its ``Connection.extra``); True when it
        is over ``messages_per_second`` within the last second or ``messages_per_10s``
        within the last 10 seconds."""
        windows = [(w, cap) for w, cap in ((1.0, self.get("messages_per_second")),
                                           (10.0, self.get("messages_per_10s"))) if cap]
        if not windows:
            return False
        now = time.monotonic()
        stamps: deque[float] = extra.setdefault("msg_times", deque())
        stamps.append(now)
        longest = max(w for w, _cap in windows)
        while stamps and now - stamps[0] >= longest:
            stamps.popleft()
        for window, cap in windows:
            if sum(1 for t in stamps if now - t < window) > cap:
                return True
        return False

    def too_many_subscribes(self, extra: dict[str, Any]) -> bool:
        """Count one subscribe request of a socket (its ``Connection.extra``); True when it is
        over ``subscribes_per_hour`` within the last hour (a refused one does not count)."""
        cap = self.get("subscribes_per_hour")
        if not cap:
            return False
        now = time.monotonic()
        stamps: deque[float] = extra.setdefault("subscribe_times", deque())
        while stamps and now - stamps[0] >= 3600.0:
            stamps.popleft()
        if len(stamps) >= cap:
            return True
        stamps.append(now)
        return False

    def too_many_streams(self, held: int, adding: int) -> bool:
        cap = self.get("streams_per_connection")
        return bool(cap) and held + adding > cap

    def too_many_args(self, args: list[Any], encoded_len: int) -> bool:
        cap, size = self.get("args_per_request"), self.get("request_bytes")
        return bool(cap and len(args) > cap) or bool(size and encoded_len > size)

    def too_many_chars(self, held: list[str], adding: list[str]) -> bool:
        """Whether the topics a socket holds and those it adds together exceed ``args_chars``."""
        cap = self.get("args_chars")
        return bool(cap) and sum(map(len, held)) + sum(map(len, adding)) > cap
