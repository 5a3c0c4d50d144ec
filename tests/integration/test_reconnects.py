"""Threads, file descriptors and sockets stay flat across repeated socket drops."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import reconnects  # noqa: E402


def test_no_thread_fd_or_socket_growth_across_drops():
    samples = reconnects.run(24, ["BTC/USDT", "ETH/USDT"], report_every=6)
    first, last = samples[1], samples[-1]  # after 6 and after 24 drops
    assert last[1] <= first[1], f"threads grew: {samples}"
    assert last[2] <= first[2] + 4, f"file descriptors grew: {samples}"
    assert last[3] <= first[3] + 4, f"sockets grew: {samples}"


# With a first reconnect delay of 20 s, only an immediate redial (after a drop) or a wake-up by
# the exchange's first sign of life (after an outage) can be LIVE within these bounds; the
# backoff alone would take 16 s or more. Figures at default settings: bench/reconnects.py.
SLOW_BACKOFF = {"reconnect_delay": 20.0, "max_reconnect_delay": 60.0}


def test_a_dropped_socket_is_redialled_at_once_and_live_again():
    r = reconnects.recovery("websocket", ["BTC/USDT", "ETH/USDT"], drops=2, outages=[], gap=2.0,
                            **SLOW_BACKOFF)
    assert len(r["drop_to_live"]) == 4
    assert max(r["drop_to_live"]) < 3.0, r


def test_after_an_outage_the_feed_is_live_as_soon_as_the_exchange_answers():
    r = reconnects.recovery("websocket", ["BTC/USDT", "ETH/USDT"], drops=0, outages=[10.0], gap=1.0,
                            **SLOW_BACKOFF)
    assert len(r["outage_end_to_live"]) == 2
    assert max(r["outage_end_to_live"]) < 3.0, r
    # while down the backoff paces the redials (0 s, then 20 s): not the probe's once a second
    assert r["ws_refused_per_outage"][0] <= 2, r
