"""The WebSocket steps of ``btccxt check-ws``: connect, first candle, stream, keepalive, reconnect.

Role: :class:`SocketChecks`, the half of a check run that watches ``watch_ohlcv`` through a
:class:`~btccxt_cli.exchange.diagnose_probe.Probe` and records steps ``ws_connect``,
``first_candle``, ``stream``, ``keepalive`` and ``reconnect``. It is a mixin of ``diagnose._Run``,
which owns the run's state (the attributes declared on the class) and its ``add`` /
``skip_rest``; the REST steps and the run's order live there.

ccxt is imported inside ``check_reconnect`` only. Must not import: typer, rich, backtrader, the
simulator, or ``diagnose`` (it imports this one).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
from typing import Any

from btccxt_cli.clock import Clock
from btccxt_cli.exchange.diagnose_hints import SILENT_HINT, short_text
from btccxt_cli.exchange.diagnose_probe import Probe
from btccxt_cli.exchange.diagnose_report import Step, fmt_ms, iso_utc, ns_to_ms
from btccxt_cli.timeframes import BarGrid

__all__ = ["SocketChecks", "SILENCE_WARN_S", "EVENT_LAG_WARN_MS", "PONG_TIMEOUT_S",
           "MAX_STREAM_ERRORS", "CONNECT_TIMEOUT_S"]

SILENCE_WARN_S = 10.0
"""A gap between candle updates longer than this during the watch window is a warning."""
EVENT_LAG_WARN_MS = 1000.0
"""Median receive delay (local receive - exchange event time, skew-corrected) above this warns."""
PONG_TIMEOUT_S = 5.0
MAX_STREAM_ERRORS = 5
CONNECT_TIMEOUT_S = 15.0


async def _first(*items: asyncio.Future | asyncio.Event, timeout: float) -> None:
    """Wait until one of ``items`` is done (a future) or set (an event), or ``timeout`` passes."""
    helpers = [asyncio.ensure_future(i.wait()) for i in items if isinstance(i, asyncio.Event)]
    futures = {i for i in items if not isinstance(i, asyncio.Event)} | set(helpers)
    try:
        await asyncio.wait(futures, timeout=max(0.0, timeout), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for h in helpers:
            h.cancel()


async def _discard(task: asyncio.Future) -> None:
    if not task.done():
        task.cancel()
    with contextlib.suppress(BaseException):
        await task


class SocketChecks:
    """Steps 4-8 of a check run (mixed into ``diagnose._Run``, which sets these attributes)."""

    exchange: Any
    probe: Probe | None
    clock: Clock
    symbol: str
    timeframe: str
    seconds: float
    """How long to wait for the first candle, then how long to measure the stream."""
    skew_ms: float
    """Exchange clock minus ours, measured by the REST step (0 when unknown)."""
    grid: BarGrid | None
    reconnect_test: bool

    def add(self, name: str, status: str, t0_ns: int | None, detail: str, hint: str = "",
            **metrics: Any) -> Step:
        """Record a step (``diagnose._Run.add``)."""
        raise NotImplementedError

    def skip_rest(self, reason: str) -> None:
        """Record every step not decided yet as skipped (``diagnose._Run.skip_rest``)."""
        raise NotImplementedError

    def frames(self) -> int:
        return sum(t.frames for t in self.probe.taps) if self.probe is not None else 0

    def watch(self) -> asyncio.Future:
        return asyncio.ensure_future(self.exchange.watch_ohlcv(self.symbol, self.timeframe))

    def ws_fail(self, name: str, t0: int, exc: BaseException, **metrics: Any) -> None:
        assert self.probe is not None
        d = self.probe.explain(exc, "WebSocket")
        self.add(name, "fail", t0, d.detail, d.hint, error=d.kind, http_status=d.status, **metrics)

    async def check_socket(self) -> None:
        assert self.probe is not None
        probe = self.probe
        loop = asyncio.get_running_loop()
        t0 = self.clock.perf_ns()
        deadline = loop.time() + self.seconds
        probe.watch_key = (self.symbol, self.timeframe)
        task = self.watch()
        try:
            # connect: wait for the client to exist, then for its connected future
            await _first(task, probe.new_client,
                         timeout=CONNECT_TIMEOUT_S)
            tap = probe.tap
            if tap is not None and not task.done():
                await _first(task, tap.client.connected, timeout=CONNECT_TIMEOUT_S)
            if tap is not None and tap.connected_ns is None and task.done():
                await asyncio.sleep(0)  # let the connected future's callback run
            if tap is None or tap.connected_ns is None:
                if task.done() and task.exception() is not None:
                    self.ws_fail("ws_connect", t0, task.exception())  # type: ignore[arg-type]
                else:
                    self.add("ws_connect", "fail", t0, f"no connection within {CONNECT_TIMEOUT_S:g} s",
                             "the socket does not open: check firewall/proxy (WebSockets blocked?)")
                self.skip_rest("the socket did not connect")
                return
            connect_ms = ns_to_ms(tap.connected_ns - t0)
            # subscribe: the first frame after the subscribe request (ack, or data)
            await _first(task, tap.answered,
                         timeout=deadline - loop.time())
            metrics: dict[str, Any] = {"connect_ms": connect_ms}
            if tap.answer_ns is not None and tap.first_send_ns is not None:
                sub_ms = ns_to_ms(tap.answer_ns - tap.first_send_ns)
                metrics["subscribe_ms"] = sub_ms
                what = "subscribe acknowledged" if tap.ack else "first answer to the subscribe"
                detail = f"connected in {fmt_ms(connect_ms)}; {what} in {fmt_ms(sub_ms)}"
            elif task.done() and task.exception() is not None:
                self.ws_fail("ws_connect", t0, task.exception(), **metrics)  # type: ignore[arg-type]
                self.skip_rest("the subscription failed")
                return
            else:
                detail = (f"connected in {fmt_ms(connect_ms)}; no answer to the subscribe request "
                          f"within {self.seconds:g} s")
            self.add("ws_connect", "pass", t0, detail, **metrics)
            # first candle
            await _first(task, timeout=deadline - loop.time())
            if not task.done():
                self.add("first_candle", "fail", t0, f"connected and subscribed, but no candle within "
                         f"{self.seconds:g} s", SILENT_HINT, frames=tap.frames)
                self.skip_rest("no candle arrived")
                return
            if task.exception() is not None:
                self.ws_fail("first_candle", t0, task.exception())  # type: ignore[arg-type]
                self.skip_rest("the watch failed")
                return
            rows = task.result()
            first_ms = ns_to_ms(self.clock.perf_ns() - t0)
            last = rows[-1] if rows else None
            detail = f"{fmt_ms(first_ms)} after the watch call (connect + subscribe + first push)"
            if last is not None:
                detail += f"; candle open {iso_utc(last[0])}, close {last[4]}"
            self.add("first_candle", "pass", t0, detail, first_candle_ms=first_ms)
        finally:
            await _discard(task)
        await self.check_stream(last[0] if last is not None else None)
        await self.check_keepalive()
        await self.check_reconnect()

    async def check_stream(self, last_ts: int | None) -> None:
        """Watch like a consumer for ``seconds``; count what reached ccxt's candle cache."""
        assert self.probe is not None
        probe = self.probe
        loop = asyncio.get_running_loop()
        t0 = self.clock.perf_ns()
        frames0, lags0 = self.frames(), len(probe.event_lags_raw_ms)
        candles0, bars0, taps0 = len(probe.candle_ns), len(probe.new_bars), len(probe.taps)
        deadline = loop.time() + self.seconds
        newest = last_ts
        errors: list[BaseException] = []
        returns = 0
        while (remaining := deadline - loop.time()) > 0:
            task = self.watch()
            await _first(task, timeout=remaining)
            if not task.done():
                await _discard(task)
                break
            error = task.exception()
            if error is not None:  # like a feed: note it and watch again (ccxt re-dials)
                errors.append(error)
                if len(errors) >= MAX_STREAM_ERRORS:
                    break
                continue
            returns += 1
            rows = task.result()
            if rows and (newest is None or rows[-1][0] > newest):
                newest = int(rows[-1][0])
        end_ns = self.clock.perf_ns()
        elapsed = (end_ns - t0) / 1e9 or 1e-9
        stamps = [t0, *probe.candle_ns[candles0:], end_ns]
        gap_s = max((b - a) / 1e9 for a, b in zip(stamps, stamps[1:], strict=False))
        updates, frames = len(stamps) - 2, self.frames() - frames0
        event_lags = [v + self.skew_ms for v in probe.event_lags_raw_ms[lags0:]]
        bar_lags = [recv + self.skew_ms - ts for recv, ts in probe.new_bars[bars0:]]
        m: dict[str, Any] = {
            "updates": updates, "updates_per_s": round(updates / elapsed, 3),
            "frames_per_s": round(frames / elapsed, 3), "watch_returns": returns,
            "longest_silence_s": round(gap_s, 3), "redials": len(probe.taps) - taps0,
        }
        parts = [f"{updates} candle update{'' if updates == 1 else 's'} in {elapsed:.1f} s ({m['updates_per_s']:g}/s; "
                 f"{frames} frames, {m['frames_per_s']:g}/s), longest silence {gap_s:.2f} s"]
        if event_lags:
            m["event_delay_p50_ms"] = round(statistics.median(event_lags), 1)
            m["event_delay_max_ms"] = round(max(event_lags), 1)
            parts.append(f"receive delay after the exchange's event time p50 "
                         f"{fmt_ms(m['event_delay_p50_ms'])}, max {fmt_ms(m['event_delay_max_ms'])}")
        if bar_lags:
            m["new_bar_delay_p50_ms"] = round(statistics.median(bar_lags), 1)
            parts.append(f"new bars arrive {fmt_ms(m['new_bar_delay_p50_ms'])} after they open (p50)")
        warns: list[tuple[str, str]] = []
        if errors:
            d = probe.explain(errors[0], "WebSocket")
            m["stream_errors"] = len(errors)
            warns.append((f"the socket failed {len(errors)} time(s) during the window, first: "
                          f"{d.detail}", d.hint))
        elif updates == 0:
            warns.append((f"no update after the first candle in {elapsed:.1f} s", SILENT_HINT))
        if m["redials"]:
            warns.append((f"the socket closed and ccxt dialled again {m['redials']} time(s)",
                          "the exchange or a proxy drops the connection; expect gaps (btccxt "
                          "fills them from REST)"))
        elif gap_s > SILENCE_WARN_S:
            warns.append((f"silent for {gap_s:.1f} s", "a quiet market or a stalling socket; btccxt's "
                          "watchdog falls back to REST after `watchdog_silence`"))
        if event_lags and m["event_delay_p50_ms"] > EVENT_LAG_WARN_MS:
            warns.append(("updates arrive late", "check the network path and CPU load (the delay "
                          "includes the clock skew's uncertainty)"))
        if probe.last_row is not None:
            newest = max(newest or 0, int(probe.last_row[0]))
        if newest and self.grid is not None:
            now_ex = self.clock.time_ms() + self.skew_ms
            behind = self.grid.index(int(now_ex)) - self.grid.index(newest)
            m["bars_behind"] = behind
            if behind > 1:
                warns.append((f"the newest candle ({iso_utc(newest)} UTC) is {behind} bars behind the "
                              "exchange's clock", "the stream is stale: try another symbol or "
                              "timeframe, or REST mode"))
        detail = "; ".join(parts + [w[0] for w in warns])
        self.add("stream", "warn" if warns else "pass", t0, detail,
                 " / ".join(dict.fromkeys(w[1] for w in warns)), **m)

    async def check_keepalive(self) -> None:
        assert self.probe is not None
        tap = self.probe.tap
        t0 = self.clock.perf_ns()
        client = tap.client if tap is not None else None
        if client is None or client.closed():
            self.add("keepalive", "skip", t0, "no open socket to ping")
            return
        keep = f"ccxt pings every {client.keepAlive / 1000:g} s" if client.keepAlive else \
            "ccxt sends no pings"
        text_ping = getattr(client, "ping", None)
        tap.ponged.clear()
        try:
            if callable(text_ping):
                payload = text_ping(client)
                how = "text ping " + (payload if isinstance(payload, str) else json.dumps(payload))
                sent = self.clock.perf_ns()
                await client.send(payload)
            else:
                how = "protocol ping"
                sent = self.clock.perf_ns()
                await client.connection.ping()
        except Exception as exc:
            self.add("keepalive", "skip", t0, f"could not send a ping: {short_text(str(exc))}")
            return
        await _first(tap.ponged, timeout=PONG_TIMEOUT_S)
        extra = f"; server pings seen: {tap.server_pings}" if tap.server_pings else ""
        if tap.pong_ns is None or tap.pong_ns < sent:
            limit = client.keepAlive * client.maxPingPongMisses / 1000 if client.keepAlive else 0
            self.add("keepalive", "warn", t0, f"{how}: no pong within {PONG_TIMEOUT_S:g} s ({keep}){extra}",
                     f"ccxt drops a socket after {limit:g} s without a pong; expect reconnects" if limit
                     else "the exchange may drop idle sockets")
            return
        pong_ms = ns_to_ms(tap.pong_ns - sent)
        self.add("keepalive", "pass", t0, f"{how} -> pong in {fmt_ms(pong_ms)} ({keep}){extra}",
                 pong_ms=pong_ms)

    async def check_reconnect(self) -> None:
        import ccxt

        assert self.probe is not None
        t0 = self.clock.perf_ns()
        if not self.reconnect_test:
            self.add("reconnect", "skip", t0, "not asked (--reconnect-test)")
            return
        old = self.probe.tap
        if old is None or old.client.closed():
            self.add("reconnect", "skip", t0, "no open socket to close")
            return
        # what ccxt itself does on a socket error: reject pending watches, close with 1006 and
        # forget the client, so the next watch dials again (field notes: drops and reconnects)
        old.client.on_error(ccxt.NetworkError("btccxt check-ws: reconnect test (client-side close)"))
        task = self.watch()
        try:
            await _first(task, timeout=max(self.seconds, CONNECT_TIMEOUT_S))
            if not task.done():
                self.add("reconnect", "fail", t0, "no candle within "
                         f"{max(self.seconds, CONNECT_TIMEOUT_S):g} s after the socket was closed",
                         "the exchange does not serve the new connection: see the steps above")
                return
            if task.exception() is not None:
                self.ws_fail("reconnect", t0, task.exception())  # type: ignore[arg-type]
                return
        finally:
            await _discard(task)
        total_ms = ns_to_ms(self.clock.perf_ns() - t0)
        new = self.probe.tap
        m: dict[str, Any] = {"reconnect_ms": total_ms}
        detail = f"candles flow again {fmt_ms(total_ms)} after a client-side close"
        if new is not None and new is not old and new.connected_ns is not None:
            m["reconnect_connect_ms"] = ns_to_ms(new.connected_ns - t0)
            detail += f" (new socket connected after {fmt_ms(m['reconnect_connect_ms'])})"
        self.add("reconnect", "pass", t0, detail, **m)
