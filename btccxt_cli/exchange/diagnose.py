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

How the socket is observed: the client is wrapped, never replaced. ``exchange.client`` is wrapped
on the instance so each new ccxt.pro ``Client`` gets a :class:`_Tap` that time-stamps
(``Clock.perf_ns``) the connected future, the first ``send`` (the subscribe request), every
inbound frame (``handle_message``), decoded messages (``on_message_callback``: subscribe acks,
binance's event time ``E``) and changes of ``client.lastPong``. ``exchange.on_rest_response`` is
wrapped to remember the HTTP status of the last REST answer (ccxt's exceptions do not carry it),
which is how 451/403 geo-blocks are told apart.

ccxt is imported inside functions only. Must not import: typer, rich, backtrader, the simulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import json
import logging
import re
import socket
import statistics
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from btccxt_cli.clock import SYSTEM_CLOCK, Clock
from btccxt_cli.errors import BtccxtError
from btccxt_cli.exchange.errors import retry_after_s
from btccxt_cli.log import redact
from btccxt_cli.timeframes import bar_open, timeframe_ms

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

SKEW_WARN_MS = 1000.0
"""Clock skew above this is a warning (signed requests fail outside ``recvWindow``, bars drift)."""
SILENCE_WARN_S = 10.0
"""A gap between candle updates longer than this during the watch window is a warning."""
EVENT_LAG_WARN_MS = 1000.0
"""Median receive delay (local receive - exchange event time, skew-corrected) above this warns."""
PONG_TIMEOUT_S = 5.0
TIME_SAMPLES = 3
MAX_STREAM_ERRORS = 5
CONNECT_TIMEOUT_S = 15.0

SILENT_HINT = ("the exchange accepts the subscription but sends nothing; try another "
               "symbol/timeframe or REST mode (feed.mode: rest)")
NTP_HINT = "sync your clock (NTP), e.g. `sudo timedatectl set-ntp true` or chrony"


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


# --------------------------------------------------------------------------- error diagnosis
@dataclass(frozen=True)
class Diagnosis:
    """What went wrong, in words: ``kind`` is a stable label (``dns``, ``geo_blocked`` ...)."""

    kind: str
    detail: str
    hint: str
    status: int | None = None


_DNS_TEXT = re.compile(r"name or service not known|nodename nor servname|temporary failure in "
                       r"name resolution|getaddrinfo failed|no address associated|"
                       r"name resolution|could not resolve|dns", re.IGNORECASE)
_REFUSED_TEXT = re.compile(r"connect call failed|connection refused|cannot connect to host|"
                           r"network is unreachable|no route to host", re.IGNORECASE)
# ccxt: "binance GET https://... 451 Unavailable For Legal Reasons ..."; aiohttp WS: "503, message="
_STATUS_TEXT = re.compile(r"(?:^|\s)([1-5]\d\d)(?=[ ,])")


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc``, its causes/contexts, and exceptions passed as arguments (ccxt's ``NetworkError(e)``)."""
    seen: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo and len(seen) < 12:
        e = todo.pop(0)
        if any(e is s for s in seen):
            continue
        seen.append(e)
        todo += [a for a in getattr(e, "args", ()) if isinstance(a, BaseException)]
        for nxt in (e.__cause__, e.__context__):
            if nxt is not None:
                todo.append(nxt)
    return seen


def _status_of(exc: BaseException, status: int | None) -> int | None:
    if status is not None and status >= 400:
        return status
    for e in _chain(exc):
        s = getattr(e, "status", None)
        if isinstance(s, int) and s >= 400:
            return s
    m = _STATUS_TEXT.search(str(exc))
    return int(m.group(1)) if m and int(m.group(1)) >= 400 else None


def _short(text: str, limit: int = 180) -> str:
    text = redact(" ".join(str(text).split()))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def explain_error(exc: BaseException, *, exchange: Any = None, where: str = "REST",
                  status: int | None = None) -> Diagnosis:
    """Classify ``exc`` (a ccxt or network exception) and say what to do about it.

    Args:
        exc: the exception a ccxt call raised.
        exchange: the client, to read ``Retry-After`` from its last response headers.
        where: ``"REST"`` or ``"WebSocket"``, used in the wording.
        status: the HTTP status of the answer that raised, when known.
    """
    import ccxt

    chain = _chain(exc)
    text = " ".join(str(e) for e in chain)
    code = _status_of(exc, status)
    name = getattr(exchange, "id", None) or "the exchange"
    lead = "" if where == "REST" else f"{where}: "
    root = chain[-1]
    cause = f" <- {type(root).__name__}: {root}" if root is not exc and str(root) not in str(exc) else ""
    short = _short(f"{type(exc).__name__}: {exc}{cause}", 240)
    if isinstance(exc, (ccxt.DDoSProtection, ccxt.RateLimitExceeded)) or code in (429, 418):
        wait = retry_after_s(exchange) if exchange is not None else None
        when = f"wait {wait:g} s (Retry-After)" if wait is not None else "wait a minute"
        if code == 418:
            return Diagnosis("banned", f"{lead}IP banned for now (HTTP 418 after ignored 429s)",
                             f"{when} before trying again; send fewer requests", code)
        return Diagnosis("rate_limited", f"{lead}rate limited" + (f" (HTTP {code})" if code else ""),
                         f"{when}, then retry; lower the request rate (fewer symbols, longer "
                         "timeframe, no other bots on this IP)", code)
    if isinstance(exc, ccxt.AuthenticationError):
        return Diagnosis("auth", f"{lead}credentials rejected: {short}",
                         "check the API key, secret and passphrase (the --api-key-env/--secret-env/"
                         "--password-env variables), the key's permissions and its IP whitelist", code)
    if code in (451, 403):
        what = "unavailable for legal reasons" if code == 451 else "forbidden"
        return Diagnosis("geo_blocked", f"{lead}HTTP {code} ({what}): {name} refuses requests "
                         "from this location or network",
                         "run from a region the exchange serves (or its regional variant, e.g. "
                         "binanceus); check VPN/proxy and firewall rules", code)
    if isinstance(exc, ccxt.OnMaintenance):
        return Diagnosis("maintenance", f"{lead}{name} is under maintenance: {short}",
                         "wait and retry; check the exchange's status page", code)
    dns = any(isinstance(e, socket.gaierror) or type(e).__name__ == "ClientConnectorDNSError"
              for e in chain) or (isinstance(exc, (ccxt.NetworkError, OSError))
                                  and _DNS_TEXT.search(text) is not None)
    if dns:
        return Diagnosis("dns", f"{lead}DNS lookup failed (no network?): {short}",
                         "check the internet connection and DNS (resolver, VPN, proxy settings)", code)
    if isinstance(exc, ccxt.RequestTimeout) or isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return Diagnosis("timeout", f"{lead}timed out: {short}",
                         "the network is slow or filtered; check firewall/proxy and retry", code)
    if code is not None and code >= 500:
        label = "WebSocket upgrade refused" if where == "WebSocket" else "answered"
        hint = "the exchange is down or overloaded; retry later and check its status page"
        if where == "WebSocket":
            hint += "; a proxy that blocks WebSockets does this too (REST mode may still work)"
        return Diagnosis("unavailable", f"{lead}{label} with HTTP {code}: {short}", hint, code)
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or _REFUSED_TEXT.search(text) \
            or isinstance(exc, ccxt.ExchangeNotAvailable):
        return Diagnosis("unreachable", f"{lead}cannot connect: {short}",
                         "check the network, firewall or proxy; is the exchange (or `btccxt sim`) "
                         "running at that address?", code)
    if isinstance(exc, ccxt.BadSymbol):
        return Diagnosis("bad_symbol", f"{lead}unknown symbol: {short}",
                         "check the symbol (spot BTC/USDT, perpetual swap BTC/USDT:USDT)", code)
    if isinstance(exc, ccxt.NotSupported):
        return Diagnosis("unsupported", f"{lead}not supported: {short}",
                         "use another mode or exchange", code)
    if isinstance(exc, (ccxt.NetworkError, OSError)):
        return Diagnosis("network", f"{lead}network error: {short}",
                         "check the network; btccxt retries such errors with backoff", code)
    if isinstance(exc, ccxt.ExchangeError):
        return Diagnosis("exchange_error", f"{lead}the exchange refused the request: {short}",
                         "read the exchange's message above", code)
    if isinstance(exc, BtccxtError):
        return Diagnosis("error", f"{lead}{_short(str(exc))}", exc.hint, code)
    return Diagnosis("error", f"{lead}{short}", "unexpected error; rerun with --log-level DEBUG", code)


# --------------------------------------------------------------------------- suggestions
def nearest_timeframes(value: str, offered: list[str]) -> list[str]:
    """The offered timeframes just below and just above ``value`` (or close spellings)."""
    try:
        target = timeframe_ms(value)
    except ValueError:
        return difflib.get_close_matches(value, offered, n=2, cutoff=0.3)
    lengths: list[tuple[int, str]] = []
    for tf in offered:
        with contextlib.suppress(ValueError, KeyError):
            lengths.append((timeframe_ms(tf), tf))
    lengths.sort()
    below = [tf for ms, tf in lengths if ms < target][-1:]
    above = [tf for ms, tf in lengths if ms > target][:1]
    return below + above


def _squash(s: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", s.upper())


def suggest_symbols(symbol: str, markets: Mapping[str, Any], n: int = 3) -> list[str]:
    """Close matches of ``symbol`` among ``markets``: case, ``BTCUSDT``/``BTC-USDT`` ids, the
    swap form ``BTC/USDT:USDT``, then similar spellings."""
    names = list(markets)
    out: list[str] = []

    def add(s: str | None) -> None:
        if s and s in markets and s not in out:
            out.append(s)

    upper = {k.upper(): k for k in names}
    add(upper.get(symbol.upper()))
    squashed = _squash(symbol)
    for k, m in markets.items():
        mid = str(m.get("id", "")) if isinstance(m, Mapping) else ""
        if squashed and (_squash(mid) == squashed or _squash(k.split(":")[0]) == squashed):
            add(k)
    quote = symbol.split("/")[-1].split(":")[0]
    add(f"{symbol}:{quote}")
    if not out:
        for close in difflib.get_close_matches(symbol, names, n=n, cutoff=0.6):
            add(close)
    return out[:n]


# --------------------------------------------------------------------------- socket taps
def _is_subscribe_ack(m: dict) -> bool:
    """binance ``{"result": null, "id": 1}``, okx ``{"event": "subscribe"}``, bybit
    ``{"op": "subscribe", "success": true}``, kucoin ``{"type": "ack"}``."""
    return ("result" in m and "id" in m) or m.get("event") == "subscribe" \
        or (m.get("op") == "subscribe" and m.get("success") is not False) or m.get("type") == "ack"


class _Tap:
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


class _Probe:
    """Wraps one ccxt.pro exchange instance: a tap per socket client, the last REST status."""

    def __init__(self, exchange: Any, clock: Clock) -> None:
        self.exchange = exchange
        self.clock = clock
        self.taps: list[_Tap] = []
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
                    tap = _Tap(c, clock, self.event_lags_raw_ms, self.after_message)
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
    def tap(self) -> _Tap | None:
        return self.taps[-1] if self.taps else None

    def explain(self, exc: BaseException, where: str = "REST") -> Diagnosis:
        return explain_error(exc, exchange=self.exchange, where=where,
                             status=self.last_status if where == "REST" else None)


# --------------------------------------------------------------------------- the run
def _ms(ns: int) -> float:
    return round(ns / 1e6, 3)


def _fmt_ms(ms: float) -> str:
    return f"{ms / 1000:.2f} s" if abs(ms) >= 1000 else f"{ms:.1f} ms"


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


class _Run:
    def __init__(self, exchange_id: str, symbol: str, timeframe: str, seconds: float,
                 sim_url: str | None, config: dict[str, Any] | None, reconnect_test: bool,
                 clock: Clock, on_step: Callable[[Step], None] | None) -> None:
        self.exchange_id, self.symbol, self.timeframe = exchange_id, symbol, timeframe
        self.seconds = max(0.1, float(seconds))
        self.sim_url, self.config = sim_url, dict(config or {})
        self.reconnect_test, self.clock, self.on_step = reconnect_test, clock, on_step
        self.steps: list[Step] = []
        self.exchange: Any = None
        self.probe: _Probe | None = None
        self.skew_ms = 0.0
        self.tf_ms: int | None = None
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
        self.probe = _Probe(self.exchange, self.clock)
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
            self.tf_ms = timeframe_ms(tf)
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
                    samples.append((_ms(p1 - p0), float(server_ms), (w0 + w1) / 2))
            probe.last_status = None
            m0 = self.clock.perf_ns()
            markets = await ex.load_markets()
            markets_ms = _ms(self.clock.perf_ns() - m0)
        except Exception as exc:
            d = probe.explain(exc, "REST")
            self.add("rest", "fail", t0, d.detail, d.hint, error=d.kind, http_status=d.status)
            return False
        best = min(samples) if samples else None
        first = samples[0][0] if samples else None
        if best is not None and first is not None:
            detail = (f"round trip {_fmt_ms(best[0])} (fetch_time, best of {len(samples)}; the "
                      f"first, with connection setup, {_fmt_ms(first)}), ")
        else:
            detail = "no fetchTime; "
        detail += f"load_markets {_fmt_ms(markets_ms)} ({len(markets)} markets)"
        self.add("rest", "pass", t0, detail, rtt_ms=best[0] if best else None,
                 first_request_ms=first, load_markets_ms=markets_ms)
        t1 = self.clock.perf_ns()
        if best is None:
            self.add("clock", "skip", t1, "the exchange has no fetchTime: skew not measured")
            return True
        rtt_ms, server_ms, local_ms = best
        self.skew_ms = round(server_ms - local_ms, 1)
        where = "ahead of" if self.skew_ms > 0 else "behind"
        detail = (f"exchange clock {_fmt_ms(abs(self.skew_ms))} {where} the local clock "
                  f"(± {_fmt_ms(rtt_ms / 2 + 1)})")
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

    # ---------------------------------------------------------------- 4-8: the socket
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
            connect_ms = _ms(tap.connected_ns - t0)
            # subscribe: the first frame after the subscribe request (ack, or data)
            await _first(task, tap.answered,
                         timeout=deadline - loop.time())
            metrics: dict[str, Any] = {"connect_ms": connect_ms}
            if tap.answer_ns is not None and tap.first_send_ns is not None:
                sub_ms = _ms(tap.answer_ns - tap.first_send_ns)
                metrics["subscribe_ms"] = sub_ms
                what = "subscribe acknowledged" if tap.ack else "first answer to the subscribe"
                detail = f"connected in {_fmt_ms(connect_ms)}; {what} in {_fmt_ms(sub_ms)}"
            elif task.done() and task.exception() is not None:
                self.ws_fail("ws_connect", t0, task.exception(), **metrics)  # type: ignore[arg-type]
                self.skip_rest("the subscription failed")
                return
            else:
                detail = (f"connected in {_fmt_ms(connect_ms)}; no answer to the subscribe request "
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
            first_ms = _ms(self.clock.perf_ns() - t0)
            last = rows[-1] if rows else None
            detail = f"{_fmt_ms(first_ms)} after the watch call (connect + subscribe + first push)"
            if last is not None:
                detail += f"; candle open {_iso(last[0])}, close {last[4]}"
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
                         f"{_fmt_ms(m['event_delay_p50_ms'])}, max {_fmt_ms(m['event_delay_max_ms'])}")
        if bar_lags:
            m["new_bar_delay_p50_ms"] = round(statistics.median(bar_lags), 1)
            parts.append(f"new bars arrive {_fmt_ms(m['new_bar_delay_p50_ms'])} after they open (p50)")
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
        if newest and self.tf_ms:
            now_ex = self.clock.time_ms() + self.skew_ms
            behind = (bar_open(int(now_ex), self.tf_ms) - newest) // self.tf_ms
            m["bars_behind"] = behind
            if behind > 1:
                warns.append((f"the newest candle ({_iso(newest)} UTC) is {behind} bars behind the "
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
            self.add("keepalive", "skip", t0, f"could not send a ping: {_short(str(exc))}")
            return
        await _first(tap.ponged, timeout=PONG_TIMEOUT_S)
        extra = f"; server pings seen: {tap.server_pings}" if tap.server_pings else ""
        if tap.pong_ns is None or tap.pong_ns < sent:
            limit = client.keepAlive * client.maxPingPongMisses / 1000 if client.keepAlive else 0
            self.add("keepalive", "warn", t0, f"{how}: no pong within {PONG_TIMEOUT_S:g} s ({keep}){extra}",
                     f"ccxt drops a socket after {limit:g} s without a pong; expect reconnects" if limit
                     else "the exchange may drop idle sockets")
            return
        pong_ms = _ms(tap.pong_ns - sent)
        self.add("keepalive", "pass", t0, f"{how} -> pong in {_fmt_ms(pong_ms)} ({keep}){extra}",
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
        total_ms = _ms(self.clock.perf_ns() - t0)
        new = self.probe.tap
        m: dict[str, Any] = {"reconnect_ms": total_ms}
        detail = f"candles flow again {_fmt_ms(total_ms)} after a client-side close"
        if new is not None and new is not old and new.connected_ns is not None:
            m["reconnect_connect_ms"] = _ms(new.connected_ns - t0)
            detail += f" (new socket connected after {_fmt_ms(m['reconnect_connect_ms'])})"
        self.add("reconnect", "pass", t0, detail, **m)


def _iso(ts_ms: int) -> str:
    import datetime as _dt

    return _dt.datetime.fromtimestamp(ts_ms / 1000, tz=_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


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
