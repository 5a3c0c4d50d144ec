"""A run's health endpoints and notifier, built from a ``Runner`` (runtime/runner.py).

``run_health``: the ``Health`` of ``runtime/health.py`` over the run's feeds, the store's
event loop and (live) the broker's order updates, with the account's figures for
``btccxt status``. ``run_notifier``: the ``Notifier`` of ``runtime/notify.py``, subscribed to
the run's event records.
"""

from __future__ import annotations

import logging
from typing import Any

from btccxt_cli.model import BrokerStatus
from btccxt_cli.runtime.health import Health
from btccxt_cli.runtime.notify import Notifier, NotifyRules, check_urls

__all__ = ["run_health", "run_notifier", "loop_probe"]

logger = logging.getLogger(__name__)


def run_health(runner: Any) -> Health:
    """/healthz and /readyz of a run (served on its metrics port)."""

    def broker() -> str | None:
        return getattr(runner.broker, "updates_via", None)

    def extra() -> dict[str, Any]:
        if runner.monitor is None:
            return {}
        snap = runner.monitor.snapshot()
        b = snap.broker or BrokerStatus()
        return {"title": snap.title, "uptime_s": round(snap.elapsed_s, 1),
                "account": {"mode": "live" if runner.live else "paper", "value": b.value,
                            "pnl": b.pnl, "trades": b.trades, "open_orders": b.open_orders}}

    return Health(runner.store.status, exchange=runner.config.exchange.id,
                  loop_probe=lambda: loop_probe(runner.store), broker=broker if runner.live else None,
                  extra=extra, clock=runner.clock)


def loop_probe(store: Any, timeout: float = 1.0) -> bool:
    """True when the store's event loop runs a callback within ``timeout`` (or has no loop)."""
    import asyncio

    lt = getattr(store, "_loop", None)
    loop = getattr(lt, "loop", None)
    if lt is None or loop is None or not lt.running or loop.is_closed():
        return True  # no loop thread (yet, or any more): nothing to be stuck
    fut = asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop)
    try:
        fut.result(timeout)
        return True
    except Exception:
        fut.cancel()
        return False


def run_notifier(runner: Any) -> Notifier:
    """The run's notifier, started and subscribed to its monitor's event records."""
    n = runner.config.notify
    check_urls(n.urls, runner.config.source)
    hh, mm = n.daily_summary_at.split(":")
    rules = NotifyRules(events=frozenset(n.events), disconnected_after=n.disconnected_after,
                        live=runner.live)
    notifier = Notifier(n.urls, rules, title=n.title, batch_seconds=n.batch_seconds,
                        max_per_minute=n.max_per_minute, timeout=n.timeout,
                        summary=lambda: daily_lines(runner.monitor),
                        summary_at=int(hh) * 3600 + int(mm) * 60, clock=runner.clock).start()
    runner.monitor.subscribe(notifier)
    return notifier


def daily_lines(monitor: Any) -> list[str]:
    """The daily summary: each feed's state, bars and reconnects; the account."""
    snap = monitor.snapshot()
    out = [f"{f.symbol} {f.timeframe} {f.state}, bars "
           + ", ".join(f"{k} {v}" for k, v in f.bars.items()) + f", reconnects {f.reconnects}"
           for f in snap.feeds]
    b = snap.broker or BrokerStatus()
    out.append(f"value {b.value:.2f}, P&L {b.pnl:+.2f}, trades {b.trades}, open orders {b.open_orders}")
    return out
