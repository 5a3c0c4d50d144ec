"""``/healthz`` and ``/readyz``: liveness and readiness of a process that serves feeds.

Reusable: ``Health`` reads only callables (feed statuses, an event-loop probe, the broker's
order-update state), and ``mount(app, health)`` wraps any WSGI app (the Prometheus metrics
app of ``runtime/metrics.py``, or another process's) so one port serves ``/metrics``,
``/healthz`` and ``/readyz``. Bodies are JSON; the status is 200 when healthy/ready, else 503.

* ``/healthz``: the process answers, and the event loop runs a callback within
  ``loop_timeout`` seconds (when a probe is given).
* ``/readyz``: every feed is LIVE, its last bar closed less than two bar lengths ago (the
  exchange's bar grid, ``timeframes.bar_grid``), and in live mode the broker's order updates
  are not down (``reconnecting``). One entry per feed says which check failed. With
  ``exchange_clock``, the time sync too (:func:`clock_readiness`): not ready when this
  machine's clock is more than ``MAX_CLOCK_OFFSET_S`` off the exchange's, or the exchange
  clock was not read for longer than ``max_age_s``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from btccxt_cli.clock import SYSTEM_CLOCK, Clock
from btccxt_cli.model import FeedStatus

__all__ = ["Health", "feed_readiness", "clock_readiness", "mount", "serve", "PATHS",
           "MAX_CLOCK_OFFSET_S"]

logger = logging.getLogger(__name__)

PATHS = ("/healthz", "/readyz")
#: seconds this machine's clock may be off the exchange's before /readyz says not ready (the
#: offset is applied when signing, but a clock this far off needs fixing: NTP)
MAX_CLOCK_OFFSET_S = 5.0


def clock_readiness(offset_ms: float, age_s: float, max_age_s: float | None) -> dict[str, Any]:
    """The time sync's readiness: the last offset within ``MAX_CLOCK_OFFSET_S`` and read
    less than ``max_age_s`` ago (None: no age limit)."""
    reasons = []
    if abs(offset_ms) > MAX_CLOCK_OFFSET_S * 1000:
        reasons.append(f"this machine's clock is {offset_ms / -1000:+.1f} s off the exchange's "
                       "(check NTP)")
    if max_age_s is not None and age_s > max_age_s:
        reasons.append(f"the exchange clock was last read {age_s:.0f} s ago (more than "
                       f"{max_age_s:.0f} s)")
    return {"offset_ms": round(offset_ms), "age_s": round(age_s, 1), "max_age_s": max_age_s,
            "ready": not reasons, "reason": "; ".join(reasons)}


def feed_readiness(f: FeedStatus, exchange: str | None, now_ms: int) -> dict[str, Any]:
    """One feed's readiness: state LIVE and a last bar younger than two bar lengths."""
    from btccxt_cli.timeframes import bar_grid

    out: dict[str, Any] = {"symbol": f.symbol, "timeframe": f.timeframe, "state": f.state,
                           "last_bar": None, "last_bar_age_s": None, "max_age_s": None,
                           "reconnects": f.reconnects, "bars": dict(f.bars), "ready": False,
                           "reason": ""}
    reasons = []
    if f.state != "LIVE":
        reasons.append(f"state {f.state}")
    if f.last_bar is None:
        reasons.append("no bar yet")
    else:
        try:
            grid = bar_grid(exchange, f.timeframe)
            closed = grid.next_open(f.last_bar.ts)
            length = grid.length(f.last_bar.ts)
        except Exception:  # an unknown timeframe: readiness by state alone
            closed, length = f.last_bar.ts, None
        age = max(0.0, (now_ms - closed) / 1000.0)
        out["last_bar"] = f.last_bar.ts
        out["last_bar_age_s"] = round(age, 3)
        if length is not None:
            out["max_age_s"] = 2 * length / 1000.0
            if age * 1000.0 >= 2 * length:
                reasons.append(f"last bar closed {age:.1f} s ago (more than two bars)")
    out["ready"] = not reasons
    out["reason"] = "; ".join(reasons)
    return out


class Health:
    """Liveness and readiness of one process.

    Args:
        statuses: every feed's status (thread-safe).
        exchange: exchange id, for its bar grid (months, odd weeks); None: plain lengths.
        loop_probe: returns True when the event loop answered in time (called per request).
        broker: returns the live broker's order-update state (``websocket``, ``polling``,
            ``reconnecting``), or None for paper runs.
        extra: more fields for ``/readyz`` (e.g. broker figures, P&L), or None.
    """

    def __init__(self, statuses: Callable[[], list[FeedStatus]], *, exchange: str | None = None,
                 loop_probe: Callable[[], bool] | None = None,
                 broker: Callable[[], str | None] | None = None,
                 extra: Callable[[], dict[str, Any]] | None = None, clock: Clock = SYSTEM_CLOCK) -> None:
        self.statuses = statuses
        self.exchange = exchange
        self.loop_probe = loop_probe
        self.broker = broker
        self.extra = extra
        self.clock = clock
        #: ``(offset_ms, age_s, max_age_s)`` of the exchange clock's last reading, or None when
        #: it was never read (set by the runner; None: no time-sync check)
        self.exchange_clock: Callable[[], tuple[float, float, float | None] | None] | None = None

    def healthz(self) -> tuple[int, dict[str, Any]]:
        loop_ok = True
        if self.loop_probe is not None:
            try:
                loop_ok = bool(self.loop_probe())
            except Exception:
                loop_ok = False
        body = {"status": "ok" if loop_ok else "event loop not responding", "event_loop": loop_ok}
        return (200 if loop_ok else 503), body

    def readyz(self) -> tuple[int, dict[str, Any]]:
        now = self.clock.time_ms()
        feeds = [feed_readiness(f, self.exchange, now) for f in self.statuses()]
        ready = bool(feeds) and all(f["ready"] for f in feeds)
        body: dict[str, Any] = {"ready": ready, "feeds": feeds}
        if not feeds:
            body["reason"] = "no feed yet"
        if self.broker is not None:
            via = self.broker()
            if via is not None:
                up = via != "reconnecting"
                body["broker"] = {"updates": via, "ready": up}
                if not up:
                    ready = body["ready"] = False
        sync = self.exchange_clock() if self.exchange_clock is not None else None
        if sync is not None:
            body["exchange_clock"] = clock_readiness(*sync)
            if not body["exchange_clock"]["ready"]:
                ready = body["ready"] = False
        if self.extra is not None:
            try:
                body.update(self.extra())
            except Exception:
                logger.debug("readiness extras", exc_info=True)
        return (200 if ready else 503), body

    def answer(self, path: str) -> tuple[int, dict[str, Any]] | None:
        """The answer for ``path`` (``/healthz``, ``/readyz``), or None for other paths."""
        if path == "/healthz":
            return self.healthz()
        if path == "/readyz":
            return self.readyz()
        return None


_REASONS = {200: "200 OK", 503: "503 Service Unavailable"}


def mount(app: Callable[..., Iterable[bytes]] | None, health: Health) -> Callable[..., Iterable[bytes]]:
    """A WSGI app answering ``/healthz`` and ``/readyz`` from ``health``, the rest from ``app``
    (None: 404). E.g. ``serve(mount(prometheus_client.make_wsgi_app(registry), health), port)``."""

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path not in PATHS:
            if app is None:
                start_response("404 Not Found", [("Content-Type", "text/plain")])
                return [b"not found: /healthz, /readyz\n"]
            return app(environ, start_response)
        try:
            answer = health.answer(path)
            assert answer is not None
            code, body = answer
        except Exception as exc:  # a bug here must still answer, as not healthy
            logger.exception("answering %s", path)
            code, body = 503, {"error": type(exc).__name__}
        data = json.dumps(body, separators=(",", ":")).encode()
        start_response(_REASONS.get(code, f"{code} Error"),
                       [("Content-Type", "application/json"), ("Content-Length", str(len(data))),
                        ("Cache-Control", "no-store")])
        return [data]

    return wsgi


def serve(app: Callable[..., Iterable[bytes]], port: int, host: str = "127.0.0.1") -> Any:
    """Serve a WSGI app from daemon threads (one per request); returns the server
    (``server_address[1]`` is the bound port; ``shutdown()`` and ``server_close()`` stop it)."""
    import socket
    import threading
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    class _Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    class _Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
            pass

    server = make_server(host, port, app, _Server, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, name="btccxt-http", daemon=True).start()
    return server
