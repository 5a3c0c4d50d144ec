"""``check_ws``: a step-by-step connectivity check of one exchange's REST API and OHLCV socket.

Role: the data side of ``btccxt check-ws``. :func:`check_ws` runs the steps below against an
unmodified ccxt.pro client (optionally pointed at the simulator) and returns a
:class:`CheckReport`; rendering lives in ``cli/check_ws.py``. :func:`explain_error` turns a ccxt
exception into a short diagnosis and a hint a person can act on.

Steps (``Step.name``), each pass / warn / fail / skip:

    exchange      ccxt knows the id (else: closest ids); fetchOHLCV; ccxt.pro watchOHLCV
    timeframe     the timeframe is in the client's ``timeframes`` (else: the nearest ones)
    rest          ``fetch_time`` round trip, then ``load_markets`` (its duration)
    clock         local clock vs the exchange's ``fetch_time``; warn above 1 s
    credentials   with API keys only: ``fetch_balance`` (skipped on the simulator)
    symbol        listed in the markets (else: close matches)
    ws_connect    socket connected (ccxt's ``client.connected`` future) and the first answer
                  to the subscribe request
    first_candle  the first ``watch_ohlcv`` return, timed from the call
    stream        updates/s and frames/s over ``seconds``, longest silence, receive delays
    keepalive     one ping -> pong round trip (okx: text ``ping``; others: protocol ping)
    reconnect     optional: close the socket client-side (``client.on_error``), time until
                  candles flow again

How the socket is observed: the client is wrapped, never replaced (``diagnose_probe.Probe``, a
``Tap`` per ccxt.pro ``Client``): the connected future, the subscribe request, every inbound
frame, decoded messages and pongs are time-stamped with ``Clock.perf_ns``, and the HTTP status of
the last REST answer is remembered (ccxt's exceptions do not carry it), which is how 451/403
geo-blocks are told apart.

Modules (every public name stays importable from here):

    diagnose.py         check_ws and the run: steps 1-3 (exchange, timeframe, REST, clock,
                        credentials, symbol) and the order of all steps
    diagnose_socket.py  steps 4-8: ws_connect, first_candle, stream, keepalive, reconnect
    diagnose_probe.py   Probe / Tap: observe a ccxt.pro client without replacing it
    diagnose_hints.py   explain_error -> Diagnosis, nearest_timeframes, suggest_symbols, hints
    diagnose_report.py  Step, CheckReport, STEP_TITLES, verdict_of (pure values)

ccxt is imported inside functions only. Must not import: typer, rich, backtrader, the simulator.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

from btccxt_cli.clock import SYSTEM_CLOCK, Clock
from btccxt_cli.errors import BtccxtError
from btccxt_cli.exchange.diagnose_hints import (
    NTP_HINT,
    Diagnosis,
    explain_error,
    nearest_timeframes,
    suggest_symbols,
)
from btccxt_cli.exchange.diagnose_hints import SILENT_HINT as SILENT_HINT
from btccxt_cli.exchange.diagnose_probe import Probe
from btccxt_cli.exchange.diagnose_report import (
    STEP_TITLES,
    CheckReport,
    Step,
    fmt_ms,
    ns_to_ms,
    verdict_of,
)
from btccxt_cli.exchange.diagnose_report import VERDICT_EXIT as VERDICT_EXIT
from btccxt_cli.exchange.diagnose_socket import CONNECT_TIMEOUT_S as CONNECT_TIMEOUT_S
from btccxt_cli.exchange.diagnose_socket import EVENT_LAG_WARN_MS as EVENT_LAG_WARN_MS
from btccxt_cli.exchange.diagnose_socket import MAX_STREAM_ERRORS as MAX_STREAM_ERRORS
from btccxt_cli.exchange.diagnose_socket import PONG_TIMEOUT_S as PONG_TIMEOUT_S
from btccxt_cli.exchange.diagnose_socket import SILENCE_WARN_S as SILENCE_WARN_S
from btccxt_cli.exchange.diagnose_socket import SocketChecks
from btccxt_cli.timeframes import BarGrid, bar_grid

__all__ = [
    "Step",
    "CheckReport",
    "Diagnosis",
    "STEP_TITLES",
    "SKEW_WARN_MS",
    "check_ws",
    "explain_error",
    "suggest_symbols",
    "nearest_timeframes",
]

logger = logging.getLogger(__name__)

SKEW_WARN_MS = 1000.0
"""Clock skew above this is a warning (signed requests fail outside ``recvWindow``, bars drift)."""
TIME_SAMPLES = 3


class _Run(SocketChecks):
    """One check: its state, steps 1-3 and their order (steps 4-8 come from ``SocketChecks``)."""

    def __init__(self, exchange_id: str, symbol: str, timeframe: str, seconds: float,
                 sim_url: str | None, config: dict[str, Any] | None, reconnect_test: bool,
                 clock: Clock, on_step: Callable[[Step], None] | None) -> None:
        self.exchange_id, self.symbol, self.timeframe = exchange_id, symbol, timeframe
        self.seconds = max(0.1, float(seconds))
        self.sim_url, self.config = sim_url, dict(config or {})
        self.reconnect_test, self.clock, self.on_step = reconnect_test, clock, on_step
        self.steps: list[Step] = []
        self.exchange: Any = None
        self.probe: Probe | None = None
        self.skew_ms = 0.0
        self.grid: BarGrid | None = None
        self.ws_skip = ""  # why the WebSocket steps cannot run, once known

    def add(self, name: str, status: str, t0_ns: int | None, detail: str, hint: str = "",
            **metrics: Any) -> Step:
        secs = (self.clock.perf_ns() - t0_ns) / 1e9 if t0_ns is not None else 0.0
        step = Step(name, status, round(secs, 6), detail, hint if status in ("warn", "fail") else "",
                    {k: v for k, v in metrics.items() if v is not None})
        self.steps.append(step)
        if self.on_step is not None:
            self.on_step(step)
        return step

    def skip_rest(self, reason: str) -> None:
        done = {s.name for s in self.steps}
        for name in STEP_TITLES:
            if name not in done:
                self.add(name, "skip", None, reason)

    async def run(self) -> None:
        if not self.check_exchange():
            self.skip_rest("skipped: the exchange is not usable")
            return
        if not await self.check_rest():
            self.skip_rest("skipped: REST failed")
            return
        await self.check_credentials()
        if not self.check_symbol():
            self.skip_rest("no symbol to watch")
            return
        if self.ws_skip:
            self.skip_rest(self.ws_skip)
            return
        await self.check_socket()

    # ---------------------------------------------------------------- 1: exchange, timeframe
    def check_exchange(self) -> bool:
        from btccxt_cli.exchange.describe import describe
        from btccxt_cli.exchange.factory import make_exchange

        t0 = self.clock.perf_ns()
        try:
            facts = describe(self.exchange_id)
        except BtccxtError as exc:
            self.add("exchange", "fail", t0, exc.message,
                     exc.hint or "run `btccxt exchanges` for the ids ccxt knows")
            return False
        kind = "pro" if facts.has_watch_ohlcv else "async"
        try:
            self.exchange = make_exchange(self.exchange_id, kind=kind, config=self.config,
                                          sim_url=self.sim_url)
        except (BtccxtError, ValueError) as exc:
            self.add("exchange", "fail", t0, str(exc), getattr(exc, "hint", "") or "check the arguments")
            return False
        self.probe = Probe(self.exchange, self.clock)
        parts = [f"{facts.id} ({facts.name})", f"fetchOHLCV {'yes' if facts.has_fetch_ohlcv else 'no'}",
                 f"watchOHLCV {'yes' if facts.has_watch_ohlcv else 'no'}"]
        if self.sim_url:
            parts.append(f"simulator at {self.sim_url}")
        detail = ", ".join(parts)
        if not facts.has_watch_ohlcv:
            self.ws_skip = "ccxt.pro has no watchOHLCV for this exchange"
            self.add("exchange", "fail", t0, detail,
                     "ccxt.pro has no WebSocket OHLCV for this exchange: use feed.mode: rest, or "
                     "upgrade ccxt with `pip install -U ccxt`")
        elif not facts.has_fetch_ohlcv:
            self.add("exchange", "warn", t0, detail,
                     "no REST OHLCV: no backfill and no REST fallback after a disconnect")
        else:
            self.add("exchange", "pass", t0, detail)
        return self.check_timeframe()

    def check_timeframe(self) -> bool:
        t0 = self.clock.perf_ns()
        offered = list((getattr(self.exchange, "timeframes", None) or {}).keys())
        tf = self.timeframe
        with contextlib.suppress(ValueError):
            self.grid = bar_grid(self.exchange_id, tf)
        if not offered:
            self.add("timeframe", "pass", t0, f"ccxt declares no timeframes for {self.exchange_id}; "
                     f"trying {tf}")
            return True
        if tf in offered:
            self.add("timeframe", "pass", t0, f"{tf} offered ({len(offered)} timeframes)")
            return True
        near = nearest_timeframes(tf, offered)
        detail = f"{self.exchange_id} has no {tf} bars" + (f"; nearest: {', '.join(near)}" if near else "")
        self.ws_skip = f"timeframe {tf} is not offered"
        self.add("timeframe", "fail", t0, detail, "use one of: " + " ".join(offered))
        return True  # REST and the symbol are still worth checking

    # ---------------------------------------------------------------- 2: REST, clock
    async def check_rest(self) -> bool:
        """``fetch_time`` ``TIME_SAMPLES`` times (the first includes connection setup; the
        fastest gives the round trip and the skew, NTP-style), then ``load_markets``."""
        ex, probe = self.exchange, self.probe
        assert probe is not None
        t0 = self.clock.perf_ns()
        samples: list[tuple[float, float, float]] = []  # (rtt ms, server ms, local midpoint ms)
        try:
            if (ex.has or {}).get("fetchTime"):
                for _ in range(TIME_SAMPLES):
                    probe.last_status = probe.last_http = None
                    server_ms = await ex.fetch_time()
                    if not server_ms or probe.last_http is None:
                        break
                    w0, p0, p1, w1 = probe.last_http
                    samples.append((ns_to_ms(p1 - p0), float(server_ms), (w0 + w1) / 2))
            probe.last_status = None
            m0 = self.clock.perf_ns()
            markets = await ex.load_markets()
            markets_ms = ns_to_ms(self.clock.perf_ns() - m0)
        except Exception as exc:
            d = probe.explain(exc, "REST")
            self.add("rest", "fail", t0, d.detail, d.hint, error=d.kind, http_status=d.status)
            return False
        best = min(samples) if samples else None
        first = samples[0][0] if samples else None
        if best is not None and first is not None:
            detail = (f"round trip {fmt_ms(best[0])} (fetch_time, best of {len(samples)}; the "
                      f"first, with connection setup, {fmt_ms(first)}), ")
        else:
            detail = "no fetchTime; "
        detail += f"load_markets {fmt_ms(markets_ms)} ({len(markets)} markets)"
        self.add("rest", "pass", t0, detail, rtt_ms=best[0] if best else None,
                 first_request_ms=first, load_markets_ms=markets_ms)
        t1 = self.clock.perf_ns()
        if best is None:
            self.add("clock", "skip", t1, "the exchange has no fetchTime: skew not measured")
            return True
        rtt_ms, server_ms, local_ms = best
        self.skew_ms = round(server_ms - local_ms, 1)
        where = "ahead of" if self.skew_ms > 0 else "behind"
        detail = (f"exchange clock {fmt_ms(abs(self.skew_ms))} {where} the local clock "
                  f"(± {fmt_ms(rtt_ms / 2 + 1)})")
        status = "warn" if abs(self.skew_ms) > SKEW_WARN_MS else "pass"
        self.add("clock", status, t1, detail, NTP_HINT, skew_ms=self.skew_ms)
        return True

    async def check_credentials(self) -> None:
        t0 = self.clock.perf_ns()
        if not self.config.get("apiKey"):
            self.add("credentials", "skip", t0, "no API keys given: public data only")
            return
        if self.sim_url:
            self.add("credentials", "skip", t0, "the simulator does not check credentials")
            return
        assert self.probe is not None
        try:
            self.probe.last_status = None
            await self.exchange.fetch_balance()
        except Exception as exc:
            d = self.probe.explain(exc, "REST")
            self.add("credentials", "fail", t0, d.detail, d.hint, error=d.kind, http_status=d.status)
            return
        self.add("credentials", "pass", t0, "keys accepted (fetch_balance)")

    # ---------------------------------------------------------------- 3: symbol
    def check_symbol(self) -> bool:
        t0 = self.clock.perf_ns()
        markets = self.exchange.markets or {}
        market = markets.get(self.symbol)
        if market is None:
            options = suggest_symbols(self.symbol, markets)
            detail = f"{self.exchange_id} has no market {self.symbol}"
            if options:
                detail += "; did you mean " + " or ".join(options) + "?"
            self.add("symbol", "fail", t0, detail,
                     "spot symbols look like BTC/USDT, perpetual swaps like BTC/USDT:USDT",
                     suggestions=", ".join(options) or None)
            return False
        kind = market.get("type") or "market"
        if market.get("active") is False:
            self.add("symbol", "warn", t0, f"{self.symbol} is listed ({kind}, id {market.get('id')}) "
                     "but marked inactive", "the market may be halted or delisted; pick another")
        else:
            self.add("symbol", "pass", t0, f"listed ({kind}, id {market.get('id')})")
        return True


async def check_ws(exchange_id: str, *, symbol: str = "BTC/USDT", timeframe: str = "1m",
                   seconds: float = 30.0, sim_url: str | None = None,
                   config: dict[str, Any] | None = None, reconnect_test: bool = False,
                   clock: Clock = SYSTEM_CLOCK,
                   on_step: Callable[[Step], None] | None = None) -> CheckReport:
    """Check REST and the OHLCV WebSocket of ``exchange_id`` step by step; never raises for
    exchange trouble (it becomes a failed step), and always closes the client.

    Args:
        exchange_id: a ccxt id (``"binance"``, ``"okx"`` ...).
        symbol: unified symbol to watch.
        timeframe: candle timeframe to watch (``"1m"``).
        seconds: how long to wait for the first candle, and then how long to measure the stream.
        sim_url: a btccxt simulator's base URL instead of the real exchange.
        config: ccxt constructor config (``apiKey``, ``secret``, ``password`` ...).
        reconnect_test: also close the socket client-side and time the recovery.
        clock: the clock every timing is read from.
        on_step: called with each ``Step`` as soon as it is decided (progress display).
    """
    run = _Run(exchange_id, symbol, timeframe, seconds, sim_url, config, reconnect_test, clock,
               on_step)
    t0 = clock.perf_ns()
    try:
        await run.run()
    finally:
        if run.exchange is not None:
            try:
                await run.exchange.close()
            except Exception:  # closing must not hide the report
                logger.debug("closing %s failed", exchange_id, exc_info=True)
    return CheckReport(exchange_id, symbol, timeframe, run.steps, verdict_of(run.steps),
                       sim_url=sim_url, seconds=round((clock.perf_ns() - t0) / 1e9, 6))
