"""rest and threaded mode: the first failed REST read reports DISCONNECTED at once, and the
next good read reports LIVE (through CONNECTED), with the bars in between intact."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from btccxt_cli.bt.store import CCXTStore, FeedHandle
from btccxt_cli.model import FeedEvent
from btccxt_cli.sources.base import SeriesParams


def collect(h: FeedHandle, until: Callable[[list[FeedEvent]], bool], timeout: float = 15.0) -> list[FeedEvent]:
    """Run the feed (rest mode: its reads happen here) and gather its events until ``until``."""
    got: list[FeedEvent] = []
    end = time.monotonic() + timeout
    while not until(got):
        assert time.monotonic() < end, [(e.kind, e.state) for e in got]
        if h.driver is not None:
            h.driver.pump(0.05)
        else:
            h.series.pipe.wait(0.05)
        while (ev := h.series.pipe.get(0)) is not None:
            got.append(ev)
    return got


def states(evs: list[FeedEvent]) -> list[str]:
    return [e.state.value for e in evs if e.kind == "state" and e.state is not None]


@pytest.mark.parametrize("mode", ["rest", "threaded"])
def test_first_failed_read_is_disconnected_and_the_next_good_read_live(sim, mode):
    store = CCXTStore("binance", sim_url=sim.url("binance"), clock_refresh=0)
    h = store.attach(SeriesParams("BTC/USDT", "1s", mode=mode, backfill_start=False))
    try:
        collect(h, lambda evs: any(e.kind == "bar" for e in evs))
        calls = h.series.status().rest_calls
        sim.rest_errors("binance", status=503, count=1)  # the next read fails (binance: unavailable)
        evs = collect(h, lambda evs: "DISCONNECTED" in states(evs))
        assert h.series.status().rest_calls == calls + 1, "DISCONNECTED at the first failed read"
        assert "ExchangeNotAvailable" in evs[-1].message
        evs = collect(h, lambda evs: "LIVE" in states(evs))
        assert states(evs) == ["CONNECTED", "LIVE"]
        assert h.series.status().rest_calls == calls + 2, "LIVE at the next good read"
    finally:
        store.stop()
