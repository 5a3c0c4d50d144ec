"""Socket observation for ``btccxt check-ws``: wrap (never replace) a ccxt.pro client to time it.

Role: :class:`Probe` wraps one ccxt.pro exchange instance. ``exchange.client`` is wrapped on the
instance so each new ccxt.pro ``Client`` gets a :class:`Tap` that time-stamps
(``Clock.perf_ns``) the connected future, the first ``send`` (the subscribe request), every
inbound frame (``handle_message``), decoded messages (``on_message_callback``: subscribe acks,
binance's event time ``E``) and changes of ``client.lastPong``. ``exchange.on_rest_response`` is
wrapped to remember the HTTP status of the last REST answer (ccxt's exceptions do not carry it),
which is how 451/403 geo-blocks are told apart, and ``exchange.fetch`` to time each HTTP request
without ccxt's rate-limit wait. ``Probe.after_message`` notices each change of the watched
candle in ccxt's cache.

Does not import ccxt (it only wraps an instance it is given). Must not import: ccxt, typer,
rich, backtrader, the simulator, or ``diagnose``/``diagnose_socket`` (they import this one).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from btccxt_cli.clock import Clock
from btccxt_cli.exchange.diagnose_hints import Diagnosis, explain_error

__all__ = ["Probe", "Tap"]


def _is_subscribe_ack(m: dict) -> bool:
    """binance ``{"result": null, "id": 1}``, okx ``{"event": "subscribe"}``, bybit
    ``{"op": "subscribe", "success": true}``, kucoin ``{"type": "ack"}``."""
    return ("result" in m and "id" in m) or m.get("event") == "subscribe" \
        or (m.get("op") == "subscribe" and m.get("success") is not False) or m.get("type") == "ack"


class Tap:
    """Time-stamps what one ccxt.pro ``Client`` does, by wrapping it on the instance."""

    def __init__(self, client: Any, clock: Clock, event_lags_raw_ms: list[float],
                 after_message: Callable[[int, int], None]) -> None:
        self.client = client
        self.clock = clock
        self.connected_ns: int | None = None
        self.first_send_ns: int | None = None
        self.answer_ns: int | None = None
        self.ack = False
        self.frames = 0
        self.server_pings = 0
        self.pong_ns: int | None = None
        self.event_lags_raw_ms = event_lags_raw_ms  # shared: local receive ms - event time E
        self.answered = asyncio.Event()
        self.ponged = asyncio.Event()
        client.connected.add_done_callback(self._on_connected)
        send, handle, on_message = client.send, client.handle_message, client.on_message_callback

        async def tapped_send(message: Any) -> Any:
            if self.first_send_ns is None:
                self.first_send_ns = self.clock.perf_ns()
            return await send(message)

        def tapped_handle(message: Any) -> Any:
            ns = self.clock.perf_ns()
            kind = getattr(getattr(message, "type", None), "name", "")
            if kind in ("TEXT", "BINARY"):
                self.frames += 1
                if self.first_send_ns is not None and self.answer_ns is None:
                    self.answer_ns = ns
                    self.answered.set()
            elif kind == "PING":
                self.server_pings += 1
            before = client.lastPong
            try:
                return handle(message)
            finally:
                if kind == "PONG" or client.lastPong != before or getattr(message, "data", None) == "pong":
                    self.pong_ns = ns
                    self.ponged.set()

        def tapped_on_message(c: Any, message: Any) -> Any:
            ns, wall = self.clock.perf_ns(), self.clock.time_ms()
            if isinstance(message, dict):
                if _is_subscribe_ack(message):
                    self.ack = True
                data = message.get("data") if isinstance(message.get("data"), dict) else message
                e = data.get("E") if "e" in data else None  # binance-style event time
                if isinstance(e, (int, float)) and e > 0:
                    self.event_lags_raw_ms.append(wall - float(e))
            try:
                return on_message(c, message)
            finally:
                after_message(ns, wall)

        client.send = tapped_send
        client.handle_message = tapped_handle
        client.on_message_callback = tapped_on_message

    def _on_connected(self, fut: asyncio.Future) -> None:
        if not fut.cancelled() and fut.exception() is None:
            self.connected_ns = self.clock.perf_ns()


class Probe:
    """Wraps one ccxt.pro exchange instance: a tap per socket client, the last REST status."""

    def __init__(self, exchange: Any, clock: Clock) -> None:
        self.exchange = exchange
        self.clock = clock
        self.taps: list[Tap] = []
        self.event_lags_raw_ms: list[float] = []
        self.watch_key: tuple[str, str] | None = None
        self.candle_ns: list[int] = []
        """perf_ns of every message that changed the watched candle in ccxt's cache."""
        self.new_bars: list[tuple[int, int]] = []
        """(local receive ms, open ms) of each message that brought a newer candle."""
        self.last_row: tuple[Any, ...] | None = None
        self.new_client = asyncio.Event()
        self.last_status: int | None = None
        rest_hook = exchange.on_rest_response

        def on_rest_response(code: Any, *args: Any, **kwargs: Any) -> Any:
            self.last_status = code if isinstance(code, int) else None
            return rest_hook(code, *args, **kwargs)

        exchange.on_rest_response = on_rest_response
        self.last_http: tuple[int, int, int, int] | None = None
        """(wall ms, perf ns) before and (perf ns, wall ms) after the last HTTP request, taken
        around ``exchange.fetch`` so that ccxt's rate-limit wait is not counted."""
        fetch = exchange.fetch

        async def timed_fetch(*args: Any, **kwargs: Any) -> Any:
            w0, p0 = clock.time_ms(), clock.perf_ns()
            try:
                return await fetch(*args, **kwargs)
            finally:
                self.last_http = (w0, p0, clock.perf_ns(), clock.time_ms())

        exchange.fetch = timed_fetch
        if hasattr(exchange, "clients"):  # ccxt.pro
            make_client = exchange.client

            def client(url: str) -> Any:
                c = make_client(url)
                if getattr(c, "_btccxt_tap", None) is None:
                    tap = Tap(c, clock, self.event_lags_raw_ms, self.after_message)
                    c._btccxt_tap = tap
                    self.taps.append(tap)
                    self.new_client.set()
                return c

            exchange.client = client

    def after_message(self, ns: int, wall_ms: int) -> None:
        """Called after ccxt handled a message: did the watched candle change in its cache?

        ``watch_ohlcv`` returns only when a call is pending, so updates that arrive between
        two calls are seen here, in ``exchange.ohlcvs[symbol][timeframe]``, and not there.
        """
        if self.watch_key is None:
            return
        symbol, timeframe = self.watch_key
        stored = ((getattr(self.exchange, "ohlcvs", None) or {}).get(symbol) or {}).get(timeframe)
        if not stored:
            return
        row = tuple(stored[-1][:6])
        if row == self.last_row:
            return
        previous, self.last_row = self.last_row, row
        self.candle_ns.append(ns)
        if previous is not None and row[0] > previous[0]:
            self.new_bars.append((wall_ms, int(row[0])))

    @property
    def tap(self) -> Tap | None:
        return self.taps[-1] if self.taps else None

    def explain(self, exc: BaseException, where: str = "REST") -> Diagnosis:
        return explain_error(exc, exchange=self.exchange, where=where,
                             status=self.last_status if where == "REST" else None)
