"""Notifications through apprise: a worker thread fed by the run's event records.

The notifier subscribes to ``RunMonitor``'s records (the same ones the events file gets). The
subscriber only puts the record in a bounded queue (never blocks; an overflow is counted and
said in the next message), so a slow or broken notification service never delays a bar or an
order. The worker turns records into lines (``NotifyRules``), collects the lines of a batching
window into one message, spaces messages by a rate limit, and delivers them with apprise
(imported in the worker only). A failed delivery is logged at WARNING once per failure streak
and never raised; the URLs are secrets (``log.register_secret``), never logged.

Events (``notify.events``): ``disconnected`` (a feed DISCONNECTED for longer than
``notify.disconnected_after``), ``live`` (that feed back LIVE), ``strategy_error``, ``kill``,
``order_rejected``, ``order_filled`` and ``position_closed`` (a swap position liquidated or
closed outside the bot; live runs), ``stopped`` (the run ended and why),
``daily_summary`` (once a day at ``notify.daily_summary_at`` UTC).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from btccxt_cli.clock import SYSTEM_CLOCK, Clock
from btccxt_cli.config.schema import NOTIFY_EVENTS  # every event (the default of notify.events)
from btccxt_cli.errors import ConfigError
from btccxt_cli.log import redact

__all__ = ["NOTIFY_EVENTS", "Notifier", "NotifyRules", "check_urls", "send_once"]

logger = logging.getLogger(__name__)


_REJECTED = {"Rejected", "Margin"}
_FILLED = {"Completed"}


@dataclass
class NotifyRules:
    """Which records become lines, and when (``DISCONNECTED`` only after a threshold).

    Runs on the worker thread only. ``feed(record, now)`` takes one record (monotonic ``now``);
    ``due(now)`` returns the lines of disconnections that crossed the threshold; ``wake_at()``
    the next monotonic time ``due`` has something.
    """

    events: frozenset[str] = frozenset(NOTIFY_EVENTS)
    disconnected_after: float = 60.0
    live: bool = False  # order events are sent for live runs only
    _down: dict[str, tuple[float, str, bool]] = field(default_factory=dict)  # symbol -> since, msg, told

    def feed(self, rec: dict[str, Any], now: float) -> list[str]:
        kind, ev = rec.get("type"), str(rec.get("event", ""))
        if kind == "state":
            return self._state(str(rec.get("symbol", "")), ev, str(rec.get("message") or ""), now)
        if kind == "kill" and "kill" in self.events:
            return [f"KILL SWITCH ({rec.get('reason', '')}): open orders cancelled, run stopping"]
        if kind == "error":  # the strategy raised: the run stops with it
            if "strategy_error" in self.events:
                return [f"strategy error: {rec.get('message', '')}; the run stopped"]
            return [f"run stopped: {rec.get('message', '')}"] if "stopped" in self.events else []
        if kind == "stop" and "stopped" in self.events:
            if ev == "forced":
                return [f"stopped by force: {rec.get('message', '')}"]
            if ev == "sys.exit":
                return [f"the strategy ended the run (exit code {rec.get('code')})"]
            return [f"run stopped: {rec.get('reason', '')}"]
        if kind == "position" and self.live and "position_closed" in self.events:
            what = "LIQUIDATED" if ev == "liquidation" else f"position closed ({ev})"
            return [f"{what} {rec.get('symbol', '')}: {float(rec.get('before', 0)):+g} -> "
                    f"{float(rec.get('after', 0)):+g} at {float(rec.get('price', 0)):.8g}"]
        if kind == "order" and self.live:
            if ev in _REJECTED and "order_rejected" in self.events:
                why = f": {rec['reason']}" if rec.get("reason") else ""
                return [f"order {ev} {rec.get('side', '')} {rec.get('symbol', '')}{why}"]
            if ev in _FILLED and "order_filled" in self.events:
                return [f"order filled {rec.get('side', '')} {rec.get('symbol', '')} "
                        f"{abs(rec.get('size', 0)):g} @ {rec.get('price', 0):.8g}"]
        return []

    def _state(self, symbol: str, state: str, message: str, now: float) -> list[str]:
        if state == "DISCONNECTED":
            if symbol not in self._down:
                self._down[symbol] = (now, message, False)
            return []
        if state != "LIVE" or symbol not in self._down:
            return []  # CONNECTED on the way back: still down until LIVE
        since, _msg, told = self._down.pop(symbol)
        if told and "live" in self.events:
            return [f"{symbol} back LIVE after {_span(now - since)} down"]
        return []

    def due(self, now: float) -> list[str]:
        out = []
        for symbol, (since, msg, told) in self._down.items():
            if not told and now - since >= self.disconnected_after:
                self._down[symbol] = (since, msg, True)
                if "disconnected" in self.events:
                    out.append(f"{symbol} DISCONNECTED for {_span(now - since)}"
                               + (f": {msg}" if msg else ""))
        return out

    def wake_at(self) -> float | None:
        times = [since + self.disconnected_after for since, _m, told in self._down.values() if not told]
        return min(times) if times else None


def _span(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s} s" if s < 120 else (f"{s // 60} min" if s < 7200 else f"{s / 3600:.1f} h")


class Notifier:
    """The worker: a bounded queue, a batching window and a rate limit in front of apprise.

    Args:
        urls: apprise URLs (secrets: registered for redaction by the config loader).
        rules: what becomes a line.
        title: the messages' title.
        batch_seconds: lines arriving within this window after the first go out as one message.
        max_per_minute: messages sent in any 60 s window (later lines wait and are merged).
        timeout: seconds one delivery may take.
        summary: returns the daily summary's lines (called on the worker thread), or None.
        summary_at: seconds after midnight UTC for the daily summary.
        send: delivers ``(title, body)`` and returns an error text or None; default: apprise.
    """

    def __init__(self, urls: Sequence[str], rules: NotifyRules, *, title: str = "btccxt",
                 batch_seconds: float = 2.0, max_per_minute: int = 10, timeout: float = 10.0,
                 summary: Callable[[], list[str]] | None = None, summary_at: float = 0.0,
                 clock: Clock = SYSTEM_CLOCK, queue_size: int = 1000,
                 send: Callable[[str, str], str | None] | None = None) -> None:
        self.urls = list(urls)
        self.rules = rules
        self.title = title
        self.batch_seconds = batch_seconds
        self.max_per_minute = max_per_minute
        self.timeout = timeout
        self.clock = clock
        self._summary = summary
        self._summary_at = summary_at
        self._send = send
        self._q: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=queue_size)
        self._dropped = 0
        self._drop_lock = threading.Lock()
        self._sent_at: deque[float] = deque()
        self._failing = False
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_summary: int | None = None
        self.delivered = 0  # messages delivered (tests, summary)
        self.failed = 0

    # ------------------------------------------------------------------ any thread
    def __call__(self, record: dict[str, Any]) -> None:
        """The subscriber: never blocks (a full queue drops the record and counts it)."""
        try:
            self._q.put_nowait(record)
        except queue.Full:
            with self._drop_lock:
                self._dropped += 1

    def start(self) -> Notifier:
        if self._summary is not None:
            self._next_summary = _next_daily(self.clock.time_ms(), self._summary_at)
        self._thread = threading.Thread(target=self._run, name="btccxt-notify", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 3.0) -> None:
        """Send what is pending at once (no batching wait) and stop, within ``timeout``."""
        if self._thread is None:
            return
        self._closing.set()
        try:
            self._q.put(None, timeout=0.1)
        except queue.Full:
            pass
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.warning("notifications: the last message was not delivered within %g s of the "
                           "stop; leaving it", timeout)
        self._thread = None

    # ------------------------------------------------------------------ worker thread
    def _run(self) -> None:
        lines: list[str] = []
        first_at: float | None = None
        while True:
            now = self.clock.monotonic()
            wake = [t for t in (self.rules.wake_at(), self._summary_wake(now)) if t is not None]
            if lines and first_at is not None:
                wake.append(max(first_at + self.batch_seconds, self._allowed_at(now)))
            wait = max(0.0, min(wake) - now) if wake else None
            closing = self._closing.is_set()
            try:
                rec = self._q.get(timeout=0 if closing else (None if wait is None else min(wait, 3600)))
            except queue.Empty:
                rec = None
            now = self.clock.monotonic()
            try:
                new = self.rules.feed(rec, now) if rec is not None else []
            except Exception:  # an odd record must not end the worker
                logger.warning("notifications: could not describe the event %r", rec, exc_info=True)
                new = []
            new += self.rules.due(now)
            new += self._daily()
            if new and not lines:
                first_at = now
            lines += new
            closing = self._closing.is_set()
            if closing and not self._q.empty():
                continue  # take every record already queued first
            ready = lines and first_at is not None and (
                closing or (now >= first_at + self.batch_seconds and now >= self._allowed_at(now)))
            if ready:
                self._deliver(lines)
                lines, first_at = [], None
            if closing and self._q.empty():
                return

    def _allowed_at(self, now: float) -> float:
        while self._sent_at and now - self._sent_at[0] >= 60.0:
            self._sent_at.popleft()
        if len(self._sent_at) < self.max_per_minute:
            return now
        return self._sent_at[0] + 60.0

    def _summary_wake(self, now: float) -> float | None:
        if self._next_summary is None:
            return None
        return now + max(0.0, (self._next_summary - self.clock.time_ms()) / 1000.0)

    def _daily(self) -> list[str]:
        if self._next_summary is None or self.clock.time_ms() < self._next_summary:
            return []
        self._next_summary = _next_daily(self.clock.time_ms(), self._summary_at)
        if "daily_summary" not in self.rules.events or self._summary is None:
            return []
        try:
            return ["daily summary:", *self._summary()]
        except Exception:
            logger.warning("notifications: the daily summary could not be made", exc_info=True)
            return []

    def _deliver(self, lines: list[str]) -> None:
        with self._drop_lock:
            dropped, self._dropped = self._dropped, 0
        if dropped:
            lines = [*lines, f"({dropped} more events were dropped: too many at once)"]
        body = redact("\n".join(lines))
        title = self.title if len(lines) == 1 else f"{self.title} ({len(lines)} events)"
        self._sent_at.append(self.clock.monotonic())
        try:
            error = (self._send or self._apprise_send)(title, body)
        except Exception as exc:  # never raised: a notifier must not stop the run
            error = f"{type(exc).__name__}: {exc}"
        if error is None:
            self.delivered += 1
            if self._failing:
                logger.info("notifications: delivered again")
            self._failing = False
            return
        self.failed += 1
        if not self._failing:
            logger.warning("notifications: delivery failed (%s); the run goes on, and later "
                           "failures are not logged until one succeeds", redact(error))
        self._failing = True

    def _apprise_send(self, title: str, body: str) -> str | None:
        return send_once(self.urls, title, body, timeout=self.timeout)


def _next_daily(now_ms: int, at_s: float) -> int:
    day = 86_400_000
    t = now_ms - now_ms % day + int(at_s * 1000)
    return t if t > now_ms else t + day


def _quiet_apprise() -> Any:
    """apprise, with its own log records kept off the root logger (they may hold a URL)."""
    import apprise

    lg = logging.getLogger(apprise.LOGGER_NAME if hasattr(apprise, "LOGGER_NAME") else "apprise")
    if not any(isinstance(h, logging.NullHandler) for h in lg.handlers):
        lg.addHandler(logging.NullHandler())
    lg.propagate = False
    return apprise


def send_once(urls: Sequence[str], title: str, body: str, *, timeout: float = 10.0) -> str | None:
    """Deliver one message to every URL; None when all got it, else what failed (no secrets)."""
    apprise = _quiet_apprise()
    ap = apprise.Apprise()
    for i, url in enumerate(urls):
        if not ap.add(url):
            return f"notify.urls[{i}] is not a URL apprise understands"
    result = ap.notify(body=body, title=title, timeout=timeout)
    failed = [r for r in getattr(result, "results", ()) if not r]
    if result and not failed:
        return None
    parts = []
    for r in failed:
        logs = [e.message for e in r.logs() if str(e.level) in ("WARNING", "ERROR", "CRITICAL")]
        parts.append(f"{r.name}: {logs[-1] if logs else r.status.name.lower()}")
    return redact("; ".join(parts) or "no service accepted the message")


def check_urls(urls: Sequence[str], source: Any = None) -> None:
    """Every URL is one apprise understands; else a ``ConfigError`` naming ``notify.urls[i]``
    (the URL itself is a secret: only its scheme is shown)."""
    if not urls:
        return
    apprise = _quiet_apprise()
    for i, url in enumerate(urls):
        if apprise.Apprise.instantiate(url) is None:
            scheme = url.split("://", 1)[0] if "://" in url else ""
            msg = (f"apprise does not understand this notification URL (scheme {scheme!r})"
                   if scheme else "this notification URL has no scheme (like json://, tgram://)")
            hint = "see https://github.com/caronc/apprise/wiki for the URL of each service"
            if source is not None:
                raise source.error(("notify", "urls", i), msg, hint=hint)
            raise ConfigError(msg, key=f"notify.urls[{i}]", hint=hint)
