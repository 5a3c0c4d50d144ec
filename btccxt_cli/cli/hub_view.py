"""The hub's Rich dashboard: leadership, Redis, and one row per series (published, last bar,
state). Redrawn from ``HubPublisher.stats`` a few times a second on its own thread."""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from typing import Any

__all__ = ["HubView"]


class HubView:
    def __init__(self, hub: Any, url: str, refresh: float = 4.0) -> None:
        self.hub = hub
        self.url = url.split("@")[-1]
        self.refresh = refresh
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="hub view", daemon=True)
        self._live: Any = None
        self._seen: list[tuple[float, dict[str, int]]] = []  # (monotonic, published) samples

    def start(self) -> None:
        from rich.live import Live

        self._live = Live(self.render(), refresh_per_second=self.refresh, transient=False)
        self._live.start()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        if self._live is not None:
            self._live.update(self.render())
            self._live.stop()

    def _loop(self) -> None:
        while not self._stop.wait(1 / self.refresh):
            self._live.update(self.render())

    def rates(self, now: float | None = None) -> dict[str, float]:
        """Bars published per second per series over the last ~10 s."""
        import time

        now = time.monotonic() if now is None else now
        counts = dict(self.hub.stats.per_series)
        self._seen.append((now, counts))
        while len(self._seen) > 2 and now - self._seen[1][0] >= 10:
            self._seen.pop(0)
        t0, old = self._seen[0]
        dt = now - t0
        if dt <= 0:
            return {}
        return {k: (v - old.get(k, 0)) / dt for k, v in counts.items()}

    def render(self) -> Any:
        from rich.markup import escape
        from rich.table import Table

        st = self.hub.stats
        rates = self.rates()
        t = Table(title=escape(f"btccxt hub {self.hub.exchange} -> {self.url}  "
                  f"[{st.role}] redis {st.redis}  published {st.published} "
                  f"({sum(rates.values()):.1f}/s)  refused {st.refused}  queued {st.pending}"),
                  title_justify="left")
        for col in ("series", "state", "published", "bars/s", "last bar (UTC)"):
            t.add_column(col)
        for name in sorted(st.per_series):
            last = st.last_bar.get(name)
            when = (datetime.fromtimestamp(last / 1000, tz=timezone.utc).strftime("%H:%M:%S")
                    if last else "-")
            t.add_row(name, st.states.get(name, "-"), str(st.per_series[name]),
                      f"{rates.get(name, 0.0):.1f}", when)
        return t
