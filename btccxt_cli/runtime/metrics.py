"""Prometheus metrics of a run, served by the standard client library (with ``/healthz`` and
``/readyz`` from ``runtime/health.py`` on the same port).

Counters and gauges are read from the feeds' thread-safe statuses when Prometheus scrapes
(a custom collector), so the bar path pays nothing for them; only the close-to-strategy
latency histogram is observed per live bar.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from btccxt_cli.model import FeedState, FeedStatus

__all__ = ["RunMetrics"]

logger = logging.getLogger(__name__)

_STATES = [s.value for s in FeedState]


class RunMetrics:
    """Registry, collector and HTTP server for one run.

    Args:
        statuses: returns every feed's status (thread-safe).
        rest_calls: returns the store's REST call count.
        exchange: exchange id, a label on every series.
    """

    def __init__(self, statuses: Callable[[], list[FeedStatus]], rest_calls: Callable[[], int],
                 exchange: str) -> None:
        from prometheus_client import CollectorRegistry, Histogram

        self.registry = CollectorRegistry()
        self.exchange = exchange
        self._statuses = statuses
        self._rest_calls = rest_calls
        self.latency = Histogram(
            "btccxt_close_to_strategy_seconds",
            "Time from a bar's close (exchange clock) to the strategy seeing it, live bars.",
            ["exchange", "symbol"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        #: the live broker's ``order_metrics()`` (set by the runner; None: paper)
        self.orders: Callable[[], dict[str, float]] | None = None
        #: the exchange clock: ``(offset_ms, age_s, max_age_s)`` of the last reading, or None
        self.exchange_clock: Callable[[], tuple[float, float, float | None] | None] | None = None
        self.registry.register(_Collector(self))
        self.server: Any = None
        self.port: int | None = None

    def observe_latency(self, symbol: str, ms: float) -> None:
        self.latency.labels(self.exchange, symbol).observe(max(0.0, ms / 1000.0))

    def serve(self, port: int, host: str = "127.0.0.1", health: Any = None) -> int:
        """Start the HTTP server in a daemon thread; returns the bound port.

        ``health`` (a ``runtime.health.Health``) adds ``/healthz`` and ``/readyz`` on the
        same port."""
        from prometheus_client import make_wsgi_app

        from btccxt_cli.runtime.health import mount, serve

        app = make_wsgi_app(self.registry)
        self.server = serve(mount(app, health) if health is not None else app, port, host)
        self.port = int(self.server.server_address[1])
        logger.info("Prometheus metrics on http://%s:%d/metrics%s", host, self.port,
                    " (health: /healthz, /readyz)" if health is not None else "")
        return self.port

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


class _Collector:
    def __init__(self, m: RunMetrics) -> None:
        self.m = m

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        ex = self.m.exchange
        bars = CounterMetricFamily("btccxt_bars", "Closed bars delivered to the strategy.",
                                   labels=["exchange", "symbol", "timeframe", "source"])
        reconnects = CounterMetricFamily("btccxt_reconnects", "WebSocket reconnects.",
                                         labels=["exchange", "symbol"])
        gaps = CounterMetricFamily("btccxt_gap_fills", "Gaps filled from REST.", labels=["exchange", "symbol"])
        rest = CounterMetricFamily("btccxt_rest_calls", "REST calls made.", labels=["exchange", "symbol"])
        tf_labels = ["exchange", "symbol", "timeframe"]
        skipped = CounterMetricFamily(
            "btccxt_skipped_bars", "Bars not delivered: REST answers covered them without a row.",
            labels=tf_labels)
        revised = CounterMetricFamily(
            "btccxt_revised_bars", "Bars whose REST record differed from a value seen, delivered "
            "or cached.", labels=tf_labels)
        state = GaugeMetricFamily("btccxt_feed_state", "1 for the feed's current state.",
                                  labels=["exchange", "symbol", "state"])
        age = GaugeMetricFamily("btccxt_last_message_age_seconds", "Seconds since the last message.",
                                labels=["exchange", "symbol"])
        for f in self.m._statuses():
            for src, n in f.bars.items():
                bars.add_metric([ex, f.symbol, f.timeframe, src], n)
            reconnects.add_metric([ex, f.symbol], f.reconnects)
            gaps.add_metric([ex, f.symbol], f.gaps_filled)
            rest.add_metric([ex, f.symbol], f.rest_calls)
            skipped.add_metric([ex, f.symbol, f.timeframe], f.skipped)
            revised.add_metric([ex, f.symbol, f.timeframe], f.revised)
            for st in _STATES:
                state.add_metric([ex, f.symbol, st], 1.0 if f.state == st else 0.0)
            if f.last_message_age_s is not None:
                age.add_metric([ex, f.symbol], f.last_message_age_s)
        total = CounterMetricFamily("btccxt_store_rest_calls", "REST calls made by the store.",
                                    labels=["exchange"])
        total.add_metric([ex], self.m._rest_calls())
        yield from (bars, reconnects, gaps, rest, skipped, revised, state, age, total)
        yield from self._orders(ex)

    def _orders(self, ex: str) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        figures = self.m.orders() if self.m.orders is not None else {}
        if figures:
            counts = CounterMetricFamily(
                "btccxt_order_events", "Live orders: rejects, unknown creates, orders given up on "
                "'not found' (lost) and found again (revived), timestamp retries, worker failures.",
                labels=["exchange", "event"])
            now = GaugeMetricFamily("btccxt_orders", "Live orders now: tracked, stuck (create "
                                    "outcome unknown or not found lately), watched after a verdict.",
                                    labels=["exchange", "state"])
            for k, v in figures.items():
                if k in ("tracked", "stuck", "watched"):
                    now.add_metric([ex, k], v)
                else:
                    counts.add_metric([ex, k], v)
            yield from (counts, now)
        clock = self.m.exchange_clock() if self.m.exchange_clock is not None else None
        if clock is not None:
            offset = GaugeMetricFamily("btccxt_exchange_clock_offset_seconds",
                                       "The exchange's clock minus ours, as last read.", labels=["exchange"])
            offset.add_metric([ex], clock[0] / 1000.0)
            age = GaugeMetricFamily("btccxt_exchange_clock_age_seconds",
                                    "Seconds since the exchange clock was last read.", labels=["exchange"])
            age.add_metric([ex], clock[1])
            yield from (offset, age)
